-- moongate.redis: non-blocking Redis commands on the worker's event loop,
-- to the server of the config's `redis.url`, over a small pool of
-- connections. Works in every request phase and in timers: the coroutine
-- yields until the reply arrives.
--
--   local n, err = moongate.redis.call("INCR", "hits:" .. key)
--   local replies = moongate.redis.pipeline { { "SET", "a", "1" }, { "GET", "a" } }
--   local v = moongate.redis.eval("return redis.call('GET', KEYS[1])", { "a" }, {})
--
-- Replies: a bulk or status string as a string, an integer as a number, an
-- array as a table (a nil element is moongate.redis.null), a nil reply as
-- nil. A Redis error reply is nil, "ERR ..." (inside a pipeline's list, an
-- { error = "..." } table). A connection problem is nil, "timeout" or
-- nil, "connection refused" and so on.

local ffi = require "ffi"

local C = ffi.C

ffi.cdef [[
int gw_pdk_redis_command(int argc, const char **argv, const size_t *lens, double timeout,
                         char *err, size_t errlen);
int gw_pdk_redis_pipeline(int ncmds, const int *argcs, const char **argv, const size_t *lens,
                          double timeout, char *err, size_t errlen);
int gw_pdk_redis_script(const char *script, size_t len, int nkeys, int argc, const char **argv,
                        const size_t *lens, double timeout, char *err, size_t errlen);
]]

local GW_AGAIN = -2
local errbuf = ffi.new("char[256]")

local M = {
    --- Seconds a call may take, connecting included.
    timeout = 2,
    --- A nil element inside an array reply (the same value as cjson.null).
    null = require("cjson").null,
}

-- The number of arguments in list; raises unless list is a proper list
-- (keys 1..n, no nil in the middle).
local function count(fname, list)
    local n = 0
    for _ in ipairs(list) do
        n = n + 1
    end
    for k in pairs(list) do
        if type(k) ~= "number" or k < 1 or k > n then
            error(fname .. ": arguments must be a list without nil", 4)
        end
    end
    return n
end

local function check_timeout(fname)
    if type(M.timeout) ~= "number" or not (M.timeout > 0) then
        error(fname .. ": moongate.redis.timeout must be a number of seconds > 0", 3)
    end
end

-- Flatten argument lists into C arrays; `keep` anchors the strings.
local function c_args(lists, keep)
    local n = 0
    for _, list in ipairs(lists) do
        n = n + count("moongate.redis", list)
    end
    local argv = ffi.new("const char *[?]", n)
    local lens = ffi.new("size_t[?]", n)
    local k = 0
    for _, list in ipairs(lists) do
        for _, v in ipairs(list) do
            local s = type(v) == "string" and v or tostring(v)
            keep[#keep + 1] = s
            argv[k], lens[k] = s, #s
            k = k + 1
        end
    end
    return argv, lens, n
end

local function wait(fname, rc)
    if rc == GW_AGAIN then
        return coroutine.yield()
    end
    error(fname .. ": " .. ffi.string(errbuf), 3)
end

local function own(fname)
    require("moongate")._need_own_coroutine(fname)
    check_timeout(fname)
end

--- Run one command: call("SET", "k", "v", "EX", 60). Returns the reply,
-- or nil, err.
function M.call(...)
    own("moongate.redis.call")
    local args = { ... }
    if #args == 0 or select("#", ...) ~= #args then
        error("moongate.redis.call: expected a command and its arguments (no nil)", 2)
    end
    local keep = {}
    local argv, lens, n = c_args({ args }, keep)
    return wait("moongate.redis.call",
        C.gw_pdk_redis_command(n, argv, lens, M.timeout, errbuf, 256))
end

--- Run several commands on one connection, in order. Returns the list of
-- replies (an error reply as { error = "..." }), or nil, err.
function M.pipeline(commands)
    own("moongate.redis.pipeline")
    if type(commands) ~= "table" or #commands == 0 then
        error("moongate.redis.pipeline: expected a list of commands", 2)
    end
    local argcs = ffi.new("int[?]", #commands)
    for i, cmd in ipairs(commands) do
        if type(cmd) ~= "table" or #cmd == 0 then
            error("moongate.redis.pipeline: command #" .. i .. " must be a non-empty list", 2)
        end
        argcs[i - 1] = count("moongate.redis.pipeline", cmd)
    end
    local keep = {}
    local argv, lens = c_args(commands, keep)
    return wait("moongate.redis.pipeline",
        C.gw_pdk_redis_pipeline(#commands, argcs, argv, lens, M.timeout, errbuf, 256))
end

--- Run a Lua script in Redis with EVALSHA (the script is loaded the first
-- time the server does not know it). Returns the reply, or nil, err.
function M.eval(script, keys, args)
    own("moongate.redis.eval")
    if type(script) ~= "string" then
        error("moongate.redis.eval: script must be a string", 2)
    end
    keys, args = keys or {}, args or {}
    local keep = { script }
    local nkeys = count("moongate.redis.eval", keys)
    local argv, lens, n = c_args({ keys, args }, keep)
    return wait("moongate.redis.eval",
        C.gw_pdk_redis_script(script, #script, nkeys, n, argv, lens, M.timeout, errbuf, 256))
end

return M
