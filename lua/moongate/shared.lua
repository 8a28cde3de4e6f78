-- moongate.shared: dictionaries in shared memory, seen by every worker and
-- kept across reloads. Each one is declared in the config's `shared_dicts`
-- (name: size) and reached as moongate.shared.<name>:
--
--   local counters = moongate.shared.counters
--   local n, err = counters:incr("hits:" .. key, 1, 0, 60)  -- init 0, TTL 60 s
--
-- Values are strings, numbers or booleans. TTLs are seconds (0: none). When
-- the dictionary is full, the least recently used entries are evicted to
-- make room (set returns `forcible` = true then). None of these calls waits.

local ffi = require "ffi"

local C = ffi.C

ffi.cdef [[
typedef struct gw_shdict_s gw_shdict_t;
gw_shdict_t *gw_shdict_find(const char *name);
int gw_shdict_get(gw_shdict_t *d, const char *key, size_t klen, int *type, double *num,
                  char *buf, size_t bufsize, size_t *vlen, double *ttl_left);
int gw_shdict_set(gw_shdict_t *d, const char *key, size_t klen, int type, double num,
                  const char *str, size_t slen, double ttl, int flags, int *evicted);
int gw_shdict_incr(gw_shdict_t *d, const char *key, size_t klen, double delta, bool has_init,
                   double init, double init_ttl, double *out);
int gw_shdict_delete(gw_shdict_t *d, const char *key, size_t klen);
size_t gw_shdict_count(gw_shdict_t *d);
size_t gw_shdict_free_space(gw_shdict_t *d);
void gw_shdict_flush_all(gw_shdict_t *d);
]]

local GW_OK, GW_AGAIN, GW_DECLINED = 0, -2, -4
local NIL, STRING, NUMBER, BOOLEAN = 0, 1, 2, 3
local ADD, REPLACE = 1, 2
local KEY_MAX = 65535

local typep = ffi.new("int[1]")
local nump = ffi.new("double[1]")
local lenp = ffi.new("size_t[1]")
local ttlp = ffi.new("double[1]")
local evictedp = ffi.new("int[1]")
local bufsize = 4096
local buf = ffi.new("char[?]", bufsize)

local Dict = {}
Dict.__index = Dict

local function check_key(fname, key)
    if type(key) ~= "string" then
        error(("moongate.shared: %s: key must be a string, got %s"):format(fname, type(key)), 3)
    end
    if #key == 0 or #key > KEY_MAX then
        error(("moongate.shared: %s: key must be 1 to %d bytes"):format(fname, KEY_MAX), 3)
    end
end

local function check_self(fname, self)
    if getmetatable(self) ~= Dict then
        error(("moongate.shared: use dict:%s(...), not dict.%s(...)"):format(fname, fname), 3)
    end
end

--- The value of key and its remaining TTL in seconds (0: none), or nil.
function Dict:get(key)
    check_self("get", self)
    check_key("get", key)
    local rc = C.gw_shdict_get(self.d, key, #key, typep, nump, buf, bufsize, lenp, ttlp)
    if rc == GW_AGAIN then
        local big = ffi.new("char[?]", lenp[0])
        rc = C.gw_shdict_get(self.d, key, #key, typep, nump, big, lenp[0], lenp, ttlp)
        if rc == GW_OK and typep[0] == STRING then
            return ffi.string(big, lenp[0]), ttlp[0]
        end
    end
    if rc ~= GW_OK or typep[0] == NIL then
        return nil
    end
    local t = typep[0]
    if t == STRING then
        return ffi.string(buf, lenp[0]), ttlp[0]
    elseif t == NUMBER then
        return tonumber(nump[0]), ttlp[0]
    end
    return nump[0] ~= 0, ttlp[0]
end

local function store(self, fname, key, value, ttl, flags)
    check_self(fname, self)
    check_key(fname, key)
    ttl = ttl or 0
    if type(ttl) ~= "number" or ttl < 0 then
        error(("moongate.shared: %s: ttl must be a number of seconds >= 0"):format(fname), 3)
    end
    local vt, num, str, slen = NIL, 0, nil, 0
    local tv = type(value)
    if tv == "string" then
        vt, str, slen = STRING, value, #value
    elseif tv == "number" then
        vt, num = NUMBER, value
    elseif tv == "boolean" then
        vt, num = BOOLEAN, value and 1 or 0
    elseif tv ~= "nil" then
        error(("moongate.shared: %s: cannot store a %s"):format(fname, tv), 3)
    end
    local rc = C.gw_shdict_set(self.d, key, #key, vt, num, str, slen, ttl, flags, evictedp)
    if rc == GW_OK then
        return true, nil, evictedp[0] > 0
    elseif rc == GW_DECLINED then
        return nil, flags == ADD and "exists" or "not found"
    end
    return nil, "no memory"
end

--- Store value under key (nil deletes). Returns true, nil, forcible or
-- nil, "no memory" when the value can never fit.
function Dict:set(key, value, ttl)
    return store(self, "set", key, value, ttl, 0)
end

--- Like set, only when key is absent (or expired): else nil, "exists".
function Dict:add(key, value, ttl)
    return store(self, "add", key, value, ttl, ADD)
end

--- Like set, only when key is present: else nil, "not found".
function Dict:replace(key, value, ttl)
    return store(self, "replace", key, value, ttl, REPLACE)
end

--- Add delta to the number under key and return the new value. When key is
-- absent and init is given, it starts from init (with init_ttl); otherwise
-- nil, "not found". A non-number value gives nil, "not a number".
function Dict:incr(key, delta, init, init_ttl)
    check_self("incr", self)
    check_key("incr", key)
    if type(delta) ~= "number" then
        error("moongate.shared: incr: delta must be a number", 2)
    end
    if init ~= nil and type(init) ~= "number" then
        error("moongate.shared: incr: init must be a number", 2)
    end
    local rc = C.gw_shdict_incr(self.d, key, #key, delta, init ~= nil, init or 0, init_ttl or 0,
        nump)
    if rc == GW_OK then
        return tonumber(nump[0])
    elseif rc == GW_DECLINED then
        return nil, "not found"
    end
    return nil, "not a number"
end

function Dict:delete(key)
    check_self("delete", self)
    check_key("delete", key)
    C.gw_shdict_delete(self.d, key, #key)
    return true
end

--- Entries stored (expired ones not yet removed included).
function Dict:count()
    check_self("count", self)
    return tonumber(C.gw_shdict_count(self.d))
end

--- Bytes free for entries.
function Dict:free_space()
    check_self("free_space", self)
    return tonumber(C.gw_shdict_free_space(self.d))
end

function Dict:flush_all()
    check_self("flush_all", self)
    C.gw_shdict_flush_all(self.d)
end

-- moongate.shared.<name>: the dictionary, or nil when the config declares
-- none by that name.
return setmetatable({}, {
    __index = function(dicts, name)
        if type(name) ~= "string" then
            return nil
        end
        local d = C.gw_shdict_find(name)
        if d == nil then
            return nil
        end
        local dict = setmetatable({ d = d, name = name }, Dict)
        rawset(dicts, name, dict)
        return dict
    end,
})
