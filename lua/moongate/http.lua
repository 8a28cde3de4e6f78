-- moongate.http: a non-blocking HTTP/1.1 client on the worker's event loop,
-- with pooled keep-alive connections. It works in every request phase
-- (header_filter and log included) and in timers: the coroutine yields
-- while the calls run and resumes when they have all ended.
--
--   local res, err = moongate.http.request {
--       method = "POST", url = "http://127.0.0.1:9001/check",
--       headers = { ["Content-Type"] = "application/json" },
--       body = '{"user":"alice"}', timeout = 2,
--   }
--   -- res.status, res.headers["content-type"], res.body
--
--   local results = moongate.http.request_many { {url = a}, {url = b} }
--   -- results[i] is a response table, or { error = "timeout" }
--
-- http:// and https:// URLs. https verifies the server's certificate and
-- name against the system's CA bundle, or the CA file `ssl_ca`, unless
-- `ssl_verify = false`. A host name is resolved with a cache of 10 s.

local ffi = require "ffi"
local cjson = require "cjson.safe"
local add_value = require "moongate.multimap"

local C = ffi.C

ffi.cdef [[
typedef struct {
    const char *method;
    const char *url;
    const char *const *headers;
    const char *body;
    size_t body_len;
    double connect_timeout, send_timeout, read_timeout;
    size_t max_body;
    const char *ssl_ca;
    bool ssl_no_verify;
} gw_httpc_req_t;
typedef struct {
    int status;
    const char *error;
    char **headers;
    size_t nheaders;
    char *body;
    size_t body_len;
} gw_httpc_res_t;
typedef struct gw_pdk_batch_s gw_pdk_batch_t;
gw_pdk_batch_t *gw_pdk_http_begin(int n, char *err, size_t errlen);
int gw_pdk_http_add(gw_pdk_batch_t *b, int i, const gw_httpc_req_t *req, char *err,
                    size_t errlen);
int gw_pdk_http_wait(gw_pdk_batch_t *b);
gw_httpc_res_t *gw_pdk_http_result(gw_pdk_batch_t *b, int i);
void gw_pdk_http_end(gw_pdk_batch_t *b);
]]

local GW_OK, GW_AGAIN = 0, -2
local errbuf = ffi.new("char[256]")

local M = {}

-- Check one request table and turn it into a gw_httpc_req_t; `keep`
-- anchors the Lua strings and arrays the C side reads during the call.
local function prepare(i, opts, keep)
    local fname = "moongate.http"
    if type(opts) ~= "table" then
        error(("%s: request #%d must be a table"):format(fname, i), 4)
    end
    if type(opts.url) ~= "string" then
        error(("%s: request #%d: url must be a string"):format(fname, i), 4)
    end
    local body = opts.body
    local headers = opts.headers or {}
    if type(body) == "table" then
        local encoded, err = cjson.encode(body)
        if not encoded then
            error(("%s: request #%d: cannot encode body: %s"):format(fname, i, err), 4)
        end
        body = encoded
        if headers["Content-Type"] == nil and headers["content-type"] == nil then
            headers = setmetatable({ ["Content-Type"] = "application/json" }, { __index = headers })
            for k, v in pairs(opts.headers or {}) do
                headers[k] = v
            end
        end
    elseif body ~= nil and type(body) ~= "string" then
        error(("%s: request #%d: body must be a string or a table"):format(fname, i), 4)
    end
    local list = {}
    for name, value in pairs(headers) do
        if type(value) == "table" then
            for _, v in ipairs(value) do
                list[#list + 1] = name
                list[#list + 1] = tostring(v)
            end
        else
            list[#list + 1] = name
            list[#list + 1] = tostring(value)
        end
    end
    local carr = ffi.new("const char *[?]", #list + 1)
    for k, s in ipairs(list) do
        carr[k - 1] = s
    end
    if opts.ssl_verify ~= nil and type(opts.ssl_verify) ~= "boolean" then
        error(("%s: request #%d: ssl_verify must be a boolean"):format(fname, i), 4)
    end
    if opts.ssl_ca ~= nil and (type(opts.ssl_ca) ~= "string" or opts.ssl_ca == "") then
        error(("%s: request #%d: ssl_ca must be a file path"):format(fname, i), 4)
    end
    keep[#keep + 1] = { list, carr, body, opts.url, opts.method, opts.ssl_ca }
    local timeout = opts.timeout or 10
    local req = ffi.new("gw_httpc_req_t")
    req.method = opts.method or "GET"
    req.url = opts.url
    req.headers = carr
    req.body = body
    req.body_len = body and #body or 0
    req.connect_timeout = opts.connect_timeout or timeout
    req.send_timeout = opts.send_timeout or timeout
    req.read_timeout = opts.read_timeout or timeout
    req.max_body = opts.max_body or 0
    req.ssl_ca = opts.ssl_ca
    req.ssl_no_verify = opts.ssl_verify == false
    return req
end

-- A result as a Lua table: { status, headers (lower-case), body } or
-- { error = "..." }.
local function result(res)
    if res == nil then
        return { error = "not started" }
    end
    if res.error ~= nil then
        return { error = ffi.string(res.error) }
    end
    local headers = {}
    for i = 0, tonumber(res.nheaders) - 1 do
        add_value(headers, ffi.string(res.headers[2 * i]):lower(),
            ffi.string(res.headers[2 * i + 1]))
    end
    return {
        status = res.status,
        headers = headers,
        body = ffi.string(res.body, res.body_len),
    }
end

--- Run several requests at once and wait for all of them. Returns a list
-- with, for each request in order, its response { status, headers, body }
-- or { error = message }. Each request is a table: url (required), method,
-- headers, body (a string, or a table sent as JSON), timeout (seconds, for
-- connect, send and read each; or connect_timeout, send_timeout,
-- read_timeout), max_body (bytes; 8 MiB by default), ssl_verify (https:
-- check the certificate and the host name; true by default), ssl_ca (https:
-- a PEM file of the CAs to trust instead of the system's; loaded once per
-- worker).
function M.request_many(requests)
    if type(requests) ~= "table" or #requests == 0 then
        error("moongate.http.request_many: expected a list of requests", 2)
    end
    require("moongate")._need_own_coroutine("moongate.http")
    local keep = {}
    local reqs = {}
    for i, opts in ipairs(requests) do
        reqs[i] = prepare(i, opts, keep)
    end
    local batch = C.gw_pdk_http_begin(#reqs, errbuf, 256)
    if batch == nil then
        error("moongate.http: " .. ffi.string(errbuf), 2)
    end
    local out = {}
    for i, req in ipairs(reqs) do
        if C.gw_pdk_http_add(batch, i - 1, req, errbuf, 256) ~= GW_OK then
            out[i] = { error = ffi.string(errbuf) }
        end
    end
    if C.gw_pdk_http_wait(batch) == GW_AGAIN then
        coroutine.yield()
    end
    for i = 1, #reqs do
        out[i] = out[i] or result(C.gw_pdk_http_result(batch, i - 1))
    end
    C.gw_pdk_http_end(batch)
    return out
end

--- One request (see request_many): the response, or nil, err.
function M.request(opts)
    if type(opts) ~= "table" then
        error("moongate.http.request: expected a table", 2)
    end
    local res = M.request_many({ opts })[1]
    if res.error then
        return nil, res.error
    end
    return res
end

return M
