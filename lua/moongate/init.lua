-- The PDK: what plugins use to read and change a request, through
-- `local moongate = require "moongate"`. Functions that act on a request
-- work only inside a request's phases and raise an error naming the phase
-- otherwise; docs/pdk.md says which phases each one works in. Calls that
-- wait (moongate.sleep) yield the request's coroutine to the event loop.

local ffi = require "ffi"
local cjson = require "cjson.safe"
local add_value = require "moongate.multimap"
local tls = require "moongate.tls"

local C = ffi.C

ffi.cdef [[
typedef struct { const char *p; size_t len; } gw_str_t;
int gw_pdk_phase(void);
const char *gw_pdk_phase_name(void);
const char *gw_pdk_request_id(void);
const char *gw_pdk_route_name(void);
const char *gw_pdk_req_method(size_t *len);
const char *gw_pdk_req_path(size_t *len);
const char *gw_pdk_req_target(size_t *len);
const char *gw_pdk_req_query(size_t *len);
const char *gw_pdk_req_host(size_t *len);
int gw_pdk_req_http_version(void);
int gw_pdk_req_client_ip(char *buf, size_t size);
double gw_pdk_req_start_time(void);
double gw_pdk_req_bytes_received(void);
int gw_pdk_req_header_count(void);
int gw_pdk_req_header(int i, gw_str_t *name, gw_str_t *value);
int gw_pdk_req_body(size_t max, const char **p, size_t *len, char *err, size_t errlen);
int gw_pdk_header_op(int side, int op, const char *name, size_t nlen, const char *value,
                     size_t vlen, char *err, size_t errlen);
int gw_pdk_upstream_set_path(const char *path, size_t len, char *err, size_t errlen);
int gw_pdk_upstream_set_query(const char *q, size_t len, char *err, size_t errlen);
int gw_pdk_upstream_set_method(const char *m, size_t len, char *err, size_t errlen);
int gw_pdk_upstream_set_upstream(const char *name, size_t len, char *err, size_t errlen);
int gw_pdk_upstream_set_timeouts(double connect, double send, double read, char *err,
                                 size_t errlen);
int gw_pdk_upstream_set_retries(int retries, char *err, size_t errlen);
int gw_pdk_upstream_set_body(const char *p, size_t len, char *err, size_t errlen);
int gw_pdk_upstream_set_target(const char *host, size_t len, int port, char *err, size_t errlen);
int gw_pdk_body_chunk(const char **p, size_t *len, int *eof, char *err, size_t errlen);
int gw_pdk_body_emit(const char *p, size_t len, char *err, size_t errlen);
int gw_pdk_exit(int status, const char *body, size_t len, char *err, size_t errlen);
int gw_pdk_resp_status(void);
int gw_pdk_resp_set_status(int status, char *err, size_t errlen);
double gw_pdk_resp_bytes_sent(void);
int gw_pdk_resp_header_count(void);
int gw_pdk_resp_header(int i, gw_str_t *name, gw_str_t *value);
int gw_pdk_header_find(int resp, int from, const char *name, size_t len, gw_str_t *value);
int gw_pdk_sleep(double seconds, char *err, size_t errlen);
void gw_pdk_log(int level, const char *msg, size_t len);
int gw_pdk_timer_start(int id, double delay, double interval, char *err, size_t errlen);
void gw_pdk_timer_cancel(int id);
]]

local GW_OK, GW_AGAIN = 0, -2
local SIDE_UPSTREAM, SIDE_RESPONSE, SIDE_EXIT = 0, 1, 2
local HDR_SET, HDR_ADD, HDR_CLEAR = 0, 1, 2

local errbuf = ffi.new("char[256]")
local lenp = ffi.new("size_t[1]")
local name_s = ffi.new("gw_str_t[1]")
local value_s = ffi.new("gw_str_t[1]")
local ipbuf = ffi.new("char[64]")

local M = {
    request = {},
    upstream = {},
    response = {},
    log = {},
    json = cjson,
    shared = require "moongate.shared",
    http = require "moongate.http",
    redis = require "moongate.redis",
    crypto = require "moongate.crypto",
    consumer = {},
    timer = {},
}

-- Raised by moongate.response.exit to end the phase; the runtime catches it.
M._exit_sentinel = setmetatable({}, {
    __tostring = function()
        return "moongate.response.exit"
    end,
})

-- The ctx table of the request whose coroutine is running.
local ctx_of = setmetatable({}, { __mode = "k" })

function M._set_ctx(ctx)
    ctx_of[coroutine.running()] = ctx
end

--- Raise unless the running coroutine is the one the gateway runs the
-- phase or timer in: a waiting call made from a coroutine a plugin created
-- itself would yield to the plugin, not to the event loop.
function M._need_own_coroutine(fname)
    local co = coroutine.running()
    if not co or ctx_of[co] == nil then
        error(fname .. ": call it from the phase itself, not from a coroutine of your own", 3)
    end
end

setmetatable(M, {
    __index = function(_, key)
        if key == "ctx" then
            local co = coroutine.running()
            return co and ctx_of[co] or nil
        end
        return nil
    end,
})

local PHASE_TIMER = 16

-- Raise unless a request phase is running.
local function need_request(fname)
    local phase = C.gw_pdk_phase()
    if phase == 0 or phase == PHASE_TIMER then
        error(fname .. ": not available outside a request phase", 3)
    end
end

local function check_string(fname, what, v, level)
    if type(v) ~= "string" then
        error(("%s: %s must be a string, got %s"):format(fname, what, type(v)), level or 3)
    end
end

local function cstring(fn, fname)
    need_request(fname)
    local p = fn(lenp)
    if p == nil then
        return nil
    end
    return ffi.string(p, lenp[0])
end

-- ---- moongate.request: the client's request, as received ----

local request = M.request

function request.get_method()
    return cstring(C.gw_pdk_req_method, "moongate.request.get_method")
end

--- The path, normalised (percent-decoded, dot segments resolved), as routed.
function request.get_path()
    return cstring(C.gw_pdk_req_path, "moongate.request.get_path")
end

--- The request target as received: raw path and query.
function request.get_raw_target()
    return cstring(C.gw_pdk_req_target, "moongate.request.get_raw_target")
end

--- The raw query string without "?", or nil when there is none.
function request.get_raw_query()
    return cstring(C.gw_pdk_req_query, "moongate.request.get_raw_query")
end

local function unescape(s)
    s = s:gsub("+", " ")
    return (s:gsub("%%(%x%x)", function(h)
        return string.char(tonumber(h, 16))
    end))
end

--- The query arguments: name -> value, or a list of values when repeated;
-- an argument without "=" is true.
function request.get_query()
    local raw = request.get_raw_query()
    local args = {}
    if not raw then
        return args
    end
    for pair in raw:gmatch("[^&]+") do
        local k, v = pair:match("^([^=]*)=(.*)$")
        local key, value
        if k then
            key, value = unescape(k), unescape(v)
        else
            key, value = unescape(pair), true
        end
        add_value(args, key, value)
    end
    return args
end

--- The host the client asked for (Host header or absolute URI), without port.
function request.get_host()
    return cstring(C.gw_pdk_req_host, "moongate.request.get_host")
end

function request.get_scheme()
    need_request("moongate.request.get_scheme")
    return tls.scheme()
end

--- The client's TLS certificate (see lua/moongate/tls.lua for the fields).
function request.get_client_certificate()
    need_request("moongate.request.get_client_certificate")
    return tls.client_certificate()
end

--- 1.0 or 1.1.
function request.get_http_version()
    need_request("moongate.request.get_http_version")
    return C.gw_pdk_req_http_version() / 10
end

function request.get_client_ip()
    need_request("moongate.request.get_client_ip")
    local n = C.gw_pdk_req_client_ip(ipbuf, 64)
    return ffi.string(ipbuf, n)
end

--- When the request started, in seconds since the epoch (with fractions).
function request.get_start_time()
    need_request("moongate.request.get_start_time")
    return C.gw_pdk_req_start_time()
end

function request.get_id()
    need_request("moongate.request.get_id")
    return ffi.string(C.gw_pdk_request_id())
end

local function header_at(getter, i)
    if getter(i, name_s, value_s) ~= GW_OK then
        return nil
    end
    return ffi.string(name_s[0].p, name_s[0].len), ffi.string(value_s[0].p, value_s[0].len)
end

-- All headers of one side as { lower-case name = value or list of values }.
local function all_headers(count, getter)
    local out = {}
    for i = 0, count - 1 do
        local name, value = header_at(getter, i)
        add_value(out, name:lower(), value)
    end
    return out
end

-- The first value of header `name` (any case) of the request (resp 0) or
-- the response (resp 1), or nil.
local function first_header(resp, name)
    if C.gw_pdk_header_find(resp, 0, name, #name, value_s) < 0 then
        return nil
    end
    return ffi.string(value_s[0].p, value_s[0].len)
end

--- The first value of a request header (the name in any case), or nil.
--- Bytes read from the client: the request head, its body (decoded), and,
-- for an upgraded connection (status 101), everything received over the
-- tunnel.
function request.get_bytes_received()
    need_request("moongate.request.get_bytes_received")
    return C.gw_pdk_req_bytes_received()
end

function request.get_header(name)
    need_request("moongate.request.get_header")
    check_string("moongate.request.get_header", "name", name)
    return first_header(0, name)
end

local bodyp = ffi.new("const char *[1]")
local GW_DECLINED = -4

--- The whole request body (chunked bodies decoded), waiting for it to
-- arrive; only in rewrite and access. Returns the body, or nil, "body too
-- large" when it is longer than max_bytes (default 1 MiB; never more than
-- the route's max_body_size). The body is still sent upstream.
function request.get_body(max_bytes)
    need_request("moongate.request.get_body")
    M._need_own_coroutine("moongate.request.get_body")
    max_bytes = max_bytes or 1048576
    if type(max_bytes) ~= "number" or not (max_bytes >= 0) then
        error("moongate.request.get_body: max_bytes must be a number >= 0", 2)
    end
    local rc = C.gw_pdk_req_body(max_bytes, bodyp, lenp, errbuf, 256)
    while rc == GW_AGAIN do
        coroutine.yield()
        rc = C.gw_pdk_req_body(max_bytes, bodyp, lenp, errbuf, 256)
    end
    if rc == GW_OK then
        return ffi.string(bodyp[0], lenp[0])
    elseif rc == GW_DECLINED then
        return nil, "body too large"
    end
    error("moongate.request.get_body: " .. ffi.string(errbuf), 2)
end

--- Every request header: lower-case name -> value, or a list when repeated.
function request.get_headers()
    need_request("moongate.request.get_headers")
    return all_headers(C.gw_pdk_req_header_count(), C.gw_pdk_req_header)
end

-- ---- moongate.upstream: the request sent to the upstream ----

local function header_op(fname, side, op, name, value)
    local phase = C.gw_pdk_phase()
    if phase == 0 or phase == PHASE_TIMER then
        error(fname .. ": not available outside a request phase", 4)
    end
    check_string(fname, "name", name, 4)
    if op ~= HDR_CLEAR then
        if type(value) == "number" then
            value = tostring(value)
        end
        check_string(fname, "value", value, 4)
    else
        value = ""
    end
    local rc = C.gw_pdk_header_op(side, op, name, #name, value, #value, errbuf, 256)
    if rc ~= GW_OK then
        error(fname .. ": " .. ffi.string(errbuf), 3)
    end
end

local upstream = M.upstream

--- Replace (or add) a header of the request sent upstream.
function upstream.set_header(name, value)
    header_op("moongate.upstream.set_header", SIDE_UPSTREAM, HDR_SET, name, value)
end

--- Add a header to the request sent upstream, keeping existing ones.
function upstream.add_header(name, value)
    header_op("moongate.upstream.add_header", SIDE_UPSTREAM, HDR_ADD, name, value)
end

--- Remove a header from the request sent upstream.
function upstream.clear_header(name)
    header_op("moongate.upstream.clear_header", SIDE_UPSTREAM, HDR_CLEAR, name)
end

--- Send the request upstream with this path (the query is kept).
function upstream.set_path(path)
    need_request("moongate.upstream.set_path")
    check_string("moongate.upstream.set_path", "path", path)
    local rc = C.gw_pdk_upstream_set_path(path, #path, errbuf, 256)
    if rc ~= GW_OK then
        error("moongate.upstream.set_path: " .. ffi.string(errbuf), 2)
    end
end

local function escape(s)
    return (tostring(s):gsub("[^%w%-%._~]", function(c)
        return ("%%%02X"):format(c:byte())
    end))
end

--- Send the request upstream with this query: a raw string (without "?"),
-- or a table of arguments (name -> value, or a list of values; true for a
-- name without value), which is percent-encoded. "" or {} sends none.
function upstream.set_query(query)
    need_request("moongate.upstream.set_query")
    if type(query) == "table" then
        local names, parts, keys = {}, {}, {}
        for key in pairs(query) do
            local name = tostring(key)
            names[#names + 1] = name
            keys[name] = key
        end
        table.sort(names)
        for _, name in ipairs(names) do
            local v = query[keys[name]]
            local values = type(v) == "table" and v or { v }
            for _, one in ipairs(values) do
                parts[#parts + 1] = one == true and escape(name) or (escape(name) .. "=" .. escape(one))
            end
        end
        query = table.concat(parts, "&")
    end
    check_string("moongate.upstream.set_query", "query", query)
    local rc = C.gw_pdk_upstream_set_query(query, #query, errbuf, 256)
    if rc ~= GW_OK then
        error("moongate.upstream.set_query: " .. ffi.string(errbuf), 2)
    end
end

--- Send the request upstream with this method.
function upstream.set_method(method)
    need_request("moongate.upstream.set_method")
    check_string("moongate.upstream.set_method", "method", method)
    local rc = C.gw_pdk_upstream_set_method(method, #method, errbuf, 256)
    if rc ~= GW_OK then
        error("moongate.upstream.set_method: " .. ffi.string(errbuf), 2)
    end
end

--- Proxy this request to another upstream of the config (by name).
function upstream.set_upstream(name)
    need_request("moongate.upstream.set_upstream")
    check_string("moongate.upstream.set_upstream", "name", name)
    if C.gw_pdk_upstream_set_upstream(name, #name, errbuf, 256) ~= GW_OK then
        error("moongate.upstream.set_upstream: " .. ffi.string(errbuf), 2)
    end
end

--- This request's upstream timeouts, in seconds: { connect =, send =,
-- read = }; a missing one keeps the upstream's setting.
function upstream.set_timeouts(t)
    need_request("moongate.upstream.set_timeouts")
    if type(t) ~= "table" then
        error("moongate.upstream.set_timeouts: expected a table", 2)
    end
    for _, k in ipairs { "connect", "send", "read" } do
        if t[k] ~= nil and type(t[k]) ~= "number" then
            error("moongate.upstream.set_timeouts: " .. k .. " must be a number", 2)
        end
    end
    if C.gw_pdk_upstream_set_timeouts(t.connect or 0, t.send or 0, t.read or 0, errbuf, 256)
        ~= GW_OK then
        error("moongate.upstream.set_timeouts: " .. ffi.string(errbuf), 2)
    end
end

--- How many other targets this request may try when connecting fails.
function upstream.set_retries(n)
    need_request("moongate.upstream.set_retries")
    if type(n) ~= "number" or n % 1 ~= 0 then
        error("moongate.upstream.set_retries: expected an integer", 2)
    end
    if C.gw_pdk_upstream_set_retries(n, errbuf, 256) ~= GW_OK then
        error("moongate.upstream.set_retries: " .. ffi.string(errbuf), 2)
    end
end

--- Send `body` (a string) upstream instead of the client's request body,
-- with its own Content-Length. The client's body is still read, and dropped.
function upstream.set_body(body)
    need_request("moongate.upstream.set_body")
    check_string("moongate.upstream.set_body", "body", body)
    if C.gw_pdk_upstream_set_body(body, #body, errbuf, 256) ~= GW_OK then
        error("moongate.upstream.set_body: " .. ffi.string(errbuf), 2)
    end
end

--- Send this request to host:port, which need not be a target of the
-- config (no balancer, no health checks), with the upstream's timeouts.
function upstream.set_target(host, port)
    need_request("moongate.upstream.set_target")
    check_string("moongate.upstream.set_target", "host", host)
    if type(port) ~= "number" or port % 1 ~= 0 or port < 1 or port > 65535 then
        error("moongate.upstream.set_target: port must be an integer from 1 to 65535", 2)
    end
    if C.gw_pdk_upstream_set_target(host, #host, port, errbuf, 256) ~= GW_OK then
        error("moongate.upstream.set_target: " .. ffi.string(errbuf), 2)
    end
end

-- ---- moongate.response ----

local response = M.response

--- End the request now with this answer; only in rewrite and access. body
-- may be a string, or a table sent as JSON (with Content-Type set).
function response.exit(status, body, headers)
    need_request("moongate.response.exit")
    if type(status) ~= "number" then
        error("moongate.response.exit: status must be a number", 2)
    end
    local content_type
    if type(body) == "table" then
        local encoded, err = cjson.encode(body)
        if not encoded then
            error("moongate.response.exit: cannot encode body: " .. err, 2)
        end
        body, content_type = encoded, "application/json"
    elseif body ~= nil and type(body) ~= "string" then
        error("moongate.response.exit: body must be a string or a table", 2)
    end
    body = body or ""
    local rc = C.gw_pdk_exit(status, body, #body, errbuf, 256)
    if rc ~= GW_OK then
        error("moongate.response.exit: " .. ffi.string(errbuf), 2)
    end
    local has_type = false
    for name, value in pairs(headers or {}) do
        has_type = has_type or name:lower() == "content-type"
        header_op("moongate.response.exit", SIDE_EXIT, HDR_SET, name, value)
    end
    if content_type and not has_type then
        header_op("moongate.response.exit", SIDE_EXIT, HDR_SET, "Content-Type", content_type)
    end
    error(M._exit_sentinel, 0)
end

--- The status of the response (the upstream's, in header_filter and log).
function response.get_status()
    need_request("moongate.response.get_status")
    return C.gw_pdk_resp_status()
end

--- Bytes written to the client so far: the response head and body, or,
-- for an upgraded connection (status 101), everything sent over the tunnel.
function response.get_bytes_sent()
    need_request("moongate.response.get_bytes_sent")
    return C.gw_pdk_resp_bytes_sent()
end

function response.set_status(status)
    need_request("moongate.response.set_status")
    local rc = C.gw_pdk_resp_set_status(status, errbuf, 256)
    if rc ~= GW_OK then
        error("moongate.response.set_status: " .. ffi.string(errbuf), 2)
    end
end

--- The first value of a header of the upstream's response, or nil.
function response.get_header(name)
    need_request("moongate.response.get_header")
    check_string("moongate.response.get_header", "name", name)
    return first_header(1, name)
end

--- Every header of the upstream's response (lower-case names).
function response.get_headers()
    need_request("moongate.response.get_headers")
    return all_headers(C.gw_pdk_resp_header_count(), C.gw_pdk_resp_header)
end

function response.set_header(name, value)
    header_op("moongate.response.set_header", SIDE_RESPONSE, HDR_SET, name, value)
end

function response.add_header(name, value)
    header_op("moongate.response.add_header", SIDE_RESPONSE, HDR_ADD, name, value)
end

function response.clear_header(name)
    header_op("moongate.response.clear_header", SIDE_RESPONSE, HDR_CLEAR, name)
end

-- ---- the response body (body_filter) ----

local PHASE_BODY_FILTER = 4
local eofp = ffi.new("int[1]")

-- The body_filter state of each request, by its ctx table: the piece of
-- the body being filtered (chunk), whether it is the last (eof), the
-- plugin running (step), and the bodies plugins buffer (bufs[plugin]).
local body_of = setmetatable({}, { __mode = "k" })

--- Start a body_filter run: read the piece of the body from the gateway.
function M._body_begin(ctx)
    local st = body_of[ctx]
    if not st then
        st = { bufs = {} }
        body_of[ctx] = st
    end
    if C.gw_pdk_body_chunk(bodyp, lenp, eofp, errbuf, 256) ~= GW_OK then
        error("body_filter: " .. ffi.string(errbuf))
    end
    st.chunk = ffi.string(bodyp[0], lenp[0])
    st.eof = eofp[0] ~= 0
end

function M._body_step(ctx, name)
    local st = body_of[ctx]
    if st then
        st.step = name
    end
end

--- End a body_filter run: what the plugins left goes to the client.
function M._body_end(ctx)
    local st = body_of[ctx]
    local chunk = st.chunk
    st.chunk = nil
    if C.gw_pdk_body_emit(chunk, #chunk, errbuf, 256) ~= GW_OK then
        error("body_filter: " .. ffi.string(errbuf))
    end
end

-- The body_filter state of the running request; raises outside body_filter.
local function body_state(fname)
    local phase = C.gw_pdk_phase()
    if phase == 0 or phase == PHASE_TIMER then
        error(fname .. ": not available outside a request phase", 3)
    end
    if phase ~= PHASE_BODY_FILTER then
        error(("%s: not allowed in %s: only in body_filter"):format(fname,
            ffi.string(C.gw_pdk_phase_name())), 3)
    end
    local ctx = M.ctx
    local st = ctx and body_of[ctx]
    if not st or st.chunk == nil then
        error(fname .. ": call it from the phase itself, not from a coroutine of your own", 3)
    end
    return st
end

--- The piece of the response body this body_filter call is for (as the
-- plugins before changed it), and whether it is the last one.
function response.get_chunk()
    local st = body_state("moongate.response.get_chunk")
    return st.chunk, st.eof
end

--- Replace the piece of the body: the next plugins and the client get
-- `data` instead ("" drops it).
function response.set_chunk(data)
    local st = body_state("moongate.response.set_chunk")
    check_string("moongate.response.set_chunk", "data", data)
    st.chunk = data
end

--- Add `data` after the piece of the body (at eof: at the end of the body).
function response.append(data)
    local st = body_state("moongate.response.append")
    check_string("moongate.response.append", "data", data)
    st.chunk = st.chunk .. data
end

--- Buffer the whole response body, up to max_bytes (default 1 MiB).
-- Before the last piece: takes the piece (nothing goes on to the next
-- plugins or the client) and returns nil. At the last piece: returns the
-- whole body, which is then the piece passed on (replace it with
-- set_chunk). Once the body is longer than max_bytes: returns nil, "body
-- too large", passes on what it had held, and takes nothing more.
function response.get_body(max_bytes)
    local st = body_state("moongate.response.get_body")
    max_bytes = max_bytes or 1048576
    if type(max_bytes) ~= "number" or not (max_bytes >= 0) then
        error("moongate.response.get_body: max_bytes must be a number >= 0", 2)
    end
    local buf = st.bufs[st.step]
    if not buf then
        buf = { parts = {}, size = 0 }
        st.bufs[st.step] = buf
    end
    if buf.too_large then
        return nil, "body too large"
    end
    if buf.body then
        return buf.body
    end
    buf.size = buf.size + #st.chunk
    buf.parts[#buf.parts + 1] = st.chunk
    if buf.size > max_bytes then
        buf.too_large = true
        st.chunk = table.concat(buf.parts)
        buf.parts = nil
        return nil, "body too large"
    end
    if not st.eof then
        st.chunk = ""
        return nil
    end
    buf.body = table.concat(buf.parts)
    buf.parts = nil
    st.chunk = buf.body
    return buf.body
end

-- ---- moongate.consumer ----

-- The config's consumers (set by the runtime) and the consumer identified
-- for each request, by its ctx table.
local consumers = { list = {}, by_name = {}, confs = {} }
local consumer_of = setmetatable({}, { __mode = "k" })
local indexes = {}

function M._set_consumers(c)
    consumers = c
    indexes = {}
end

function M._consumer_conf(ctx, plugin)
    local c = consumer_of[ctx]
    local confs = c and consumers.confs[c]
    return confs and confs[plugin] or nil
end

local consumer = M.consumer

--- The consumer with this username, or nil.
function consumer.by_username(username)
    return consumers.by_name[username]
end

--- The consumer whose `credentials[kind]` has `field` equal to value (a
-- consumer may list several credentials of a kind), or nil. E.g.
-- moongate.consumer.lookup("api-key", "key", presented_key).
function consumer.lookup(kind, field, value)
    if type(kind) ~= "string" or type(field) ~= "string" then
        error("moongate.consumer.lookup: kind and field must be strings", 2)
    end
    local key = kind .. "\0" .. field
    local index = indexes[key]
    if not index then
        index = {}
        for _, c in ipairs(consumers.list) do
            local creds = c.credentials[kind]
            if type(creds) == "table" then
                local list = creds[1] ~= nil and creds or { creds }
                for _, cred in ipairs(list) do
                    if type(cred) == "table" and cred[field] ~= nil then
                        index[cred[field]] = c
                    end
                end
            end
        end
        indexes[key] = index
    end
    return index[value]
end

--- Identify the request's consumer: plugins that run after this, in this
-- and later phases, get the consumer's own settings when it has some.
function consumer.set(c)
    need_request("moongate.consumer.set")
    if c ~= nil and consumers.confs[c] == nil then
        error("moongate.consumer.set: not a consumer of the config", 2)
    end
    local ctx = M.ctx
    if not ctx then
        error("moongate.consumer.set: call it from the phase itself, not from a coroutine of "
            .. "your own", 2)
    end
    consumer_of[ctx] = c
end

--- The request's consumer, or nil.
function consumer.get()
    local ctx = M.ctx
    return ctx and consumer_of[ctx] or nil
end

-- ---- moongate.sleep ----

--- Wait `seconds` without blocking the worker: the request's coroutine
-- yields to the event loop and resumes when the time has passed.
function M.sleep(seconds)
    if type(seconds) ~= "number" then
        error("moongate.sleep: seconds must be a number", 2)
    end
    M._need_own_coroutine("moongate.sleep")
    local rc = C.gw_pdk_sleep(seconds, errbuf, 256)
    if rc == GW_AGAIN then
        coroutine.yield()
        return true
    end
    error("moongate.sleep: " .. ffi.string(errbuf), 2)
end

-- ---- moongate.timer ----

-- Pending timers by id: { fn, args, n, every }; run by runtime.run_timer.
local timers, last_timer = {}, 0
M._timers = timers

local Timer = {}
Timer.__index = Timer

--- Stop the timer; a run in progress finishes.
function Timer:cancel()
    C.gw_pdk_timer_cancel(self.id)
    timers[self.id] = nil
end

local function start_timer(fname, delay, interval, fn, ...)
    if type(delay) ~= "number" or delay < 0 then
        error(fname .. ": delay must be a number of seconds >= 0", 3)
    end
    if type(fn) ~= "function" then
        error(fname .. ": expected a function", 3)
    end
    last_timer = last_timer + 1
    local id = last_timer
    timers[id] = { fn = fn, args = { ... }, n = select("#", ...), every = interval > 0 }
    if C.gw_pdk_timer_start(id, delay, interval, errbuf, 256) ~= GW_OK then
        timers[id] = nil
        return nil, ffi.string(errbuf)
    end
    return setmetatable({ id = id }, Timer)
end

--- Run fn(...) once, `delay` seconds from now, outside any request, in its
-- own coroutine (it may wait, e.g. with moongate.sleep). Returns a timer
-- with :cancel(), or nil, err.
function M.timer.after(delay, fn, ...)
    return start_timer("moongate.timer.after", delay, 0, fn, ...)
end

--- Run fn(...) every `interval` seconds (the first time after one
-- interval); a run still waiting when the next is due makes that one skip.
function M.timer.every(interval, fn, ...)
    if type(interval) ~= "number" or interval <= 0 then
        error("moongate.timer.every: interval must be a number of seconds > 0", 2)
    end
    return start_timer("moongate.timer.every", interval, interval, fn, ...)
end

-- ---- moongate.log ----

local LEVELS = { err = 0, warn = 1, info = 2, debug = 3 }

for fname, level in pairs(LEVELS) do
    M.log[fname] = function(...)
        local n = select("#", ...)
        local parts = {}
        for i = 1, n do
            parts[i] = tostring((select(i, ...)))
        end
        local msg = table.concat(parts)
        C.gw_pdk_log(level, msg, #msg)
    end
end

return M
