--- moongate.schema: the validator for plugin configs (and anything else that
-- is described by a schema).
--
--     local schema = require "moongate.schema"
--     local validator, err = schema.compile(def)
--     local conf, errs = validator:validate(value [, path_prefix])
--     local conf, errs = schema.validate(def, value [, path_prefix])
--     local lines = schema.format_errors(errs [, prefix])
--
-- compile(def) checks the definition and returns a validator, or nil and
-- "invalid schema: PATH: MESSAGE" where PATH names the place in the
-- definition (`properties.limit.minimum`). A `def` that is not a table is
-- a programming error and raises.
--
-- validator:validate(value, prefix) returns a deep copy of `value` with
-- defaults filled in and formats normalised; the input is never modified.
-- On failure it returns nil and the list of every error found, each
-- { path = "rules[2].header", message = "required field missing" }. Paths
-- use the config loader's convention: `a.b` for fields and 0-based `[i]` for
-- array items; `prefix` (default "") is put in front of every path. An error
-- about an object itself (an unknown field) has the object's path, "" at the
-- top. A value that validates may be `false`: test `errs`, not the value.
--
-- schema.validate(def, value, prefix) compiles and validates in one call; an
-- invalid definition raises. Compile once with compile() to validate often.
--
-- format_errors(errs, prefix) gives "prefix.path: message" lines.
--
-- Definition language (JSON-Schema-like). Unknown keywords are refused.
--
--   type          "object", "array", "string", "integer", "number",
--                 "boolean" or "any" (any value but null). Required, except
--                 with `format` (which implies it) and one_of / any_of.
--   description   text for humans; not checked.
--   default       used when the field is absent. It is validated (and its
--                 own defaults filled) at compile time, and each use gets a
--                 fresh copy: `default = {}` on an object property creates
--                 the object with its properties' defaults. A default wins
--                 over `required`.
--   nullable      true: null (schema.null, cjson.null, ngx.null) is a valid
--                 value and is kept as is. Otherwise a null object property
--                 counts as absent (as in the config loader: its default
--                 applies), and null anywhere else is an error.
--   enum          list of allowed values (strings, numbers, booleans).
--   object:       properties = { name = schema }, required = { "name" },
--                 additional_properties = false (default: unknown fields
--                 are errors), true (kept as they are) or a schema.
--   array:        items = schema (absent: any items), min_items, max_items,
--                 unique_items = true (compares the normalised items).
--   string:       min_length, max_length (in bytes), pattern (a PCRE2
--                 regex, unanchored: write ^...$ to match the whole string),
--                 lua_pattern (a Lua pattern, unanchored too).
--   integer, number: minimum, maximum (inclusive), exclusive_minimum,
--                 exclusive_maximum. An integer is a number without a
--                 fractional part, within +-2^53; strings are never
--                 converted ("10" is not an integer).
--   format        "duration": "500ms", "2s", "1.5m", "1h", "30" or a number
--                 of seconds, normalised to seconds (type "number" implied).
--                 "size": "1024", "16k", "10m", "1g" (1024-based, any case)
--                 or a number of bytes, normalised to bytes (type "integer"
--                 implied). Other keywords (minimum, enum, ...) then apply to
--                 the normalised number.
--   one_of        list of schemas: exactly one must match; the value is the
--                 one that matched, with its defaults.
--   any_of        list of schemas: the first that matches gives the value.
--                 one_of and any_of go with description, default and
--                 nullable only.

local ffi = require "ffi"

local type, next, ipairs, pcall, error = type, next, ipairs, pcall, error
local tostring, tonumber = tostring, tonumber
local getmetatable, setmetatable, rawget = getmetatable, setmetatable, rawget
local floor, huge = math.floor, math.huge
local concat, sort = table.concat, table.sort
local fmt, find, match, sub, gsub, lower = string.format, string.find, string.match,
    string.sub, string.gsub, string.lower

local _M = { _VERSION = "0.1.0" }

local MAX_SAFE_INTEGER = 2 ^ 53
local DURATION_WHAT = "duration (e.g. 500ms, 2s, 1.5m)"
local DURATION_WHOLE_WHAT = "duration in whole seconds (e.g. 2s, 1m)"
local SIZE_WHAT = "size (e.g. 1024, 16k, 10m, 1g)"

-- ---- values ----

--- The null value for `nullable` fields when the data has no null of its
-- own. cjson.null and ngx.null (NULL lightuserdata) count as null too.
local null = setmetatable({}, {
    __tostring = function() return "null" end,
    __newindex = function() error("schema.null is read-only", 2) end,
    __metatable = "null",
})
_M.null = null

local void_ptr = ffi.typeof("void *")

local function is_null(v)
    return v == null or (type(v) == "userdata" and ffi.cast(void_ptr, v) == nil)
end
_M.is_null = is_null

-- Write `s` in double quotes, escaped and cut after 64 bytes (as the C
-- config loader does).
local function quote(s)
    local cut = #s > 64
    if cut then
        s = sub(s, 1, 64)
    end
    s = gsub(s, '[%c"\\]', function(c)
        if c == '"' or c == "\\" then
            return "\\" .. c
        end
        return "?"
    end)
    return '"' .. s .. (cut and '..."' or '"')
end

local function number_text(n)
    if n ~= n then
        return "nan"
    end
    if n == floor(n) and n > -MAX_SAFE_INTEGER and n < MAX_SAFE_INTEGER then
        return fmt("%d", n)
    end
    return fmt("%.14g", n)
end

--- "array" (and its length) for a non-empty sequence 1..n, "empty" for {},
-- "object" for anything else.
local function table_kind(t)
    local n, max = 0, 0
    for k in next, t do
        if type(k) ~= "number" or k < 1 or k ~= floor(k) then
            return "object"
        end
        n = n + 1
        if k > max then
            max = k
        end
    end
    if n == 0 then
        return "empty", 0
    end
    if max ~= n then
        return "object"
    end
    return "array", n
end

-- Describe a value for "got ...": a quoted string, a number, "null", ...
local function describe(v)
    local t = type(v)
    if t == "string" then
        return quote(v)
    elseif t == "number" then
        return number_text(v)
    elseif t == "boolean" then
        return tostring(v)
    elseif v == nil or is_null(v) then
        return "null"
    elseif t == "table" then
        local kind = table_kind(v)
        return kind == "array" and "an array" or kind == "empty" and "an empty table" or "an object"
    end
    return "a " .. t
end

local function plural(n, word)
    return number_text(n) .. " " .. word .. (n == 1 and "" or "s")
end

--- Copy tables recursively (keeping their metatables, such as cjson's
-- array marker); other values, nulls included, are returned as they are.
local function deep_copy(v, seen)
    if type(v) ~= "table" or v == null then
        return v
    end
    seen = seen or {}
    if seen[v] then
        return seen[v]
    end
    local out = {}
    seen[v] = out
    for k, x in next, v do
        out[deep_copy(k, seen)] = deep_copy(x, seen)
    end
    local mt = getmetatable(v)
    if type(mt) == "table" then
        setmetatable(out, mt)
    end
    return out
end

local function deep_equal(a, b)
    if a == b then
        return true
    end
    if type(a) ~= "table" or type(b) ~= "table" then
        return false
    end
    for k, x in next, a do
        if not deep_equal(x, rawget(b, k)) then
            return false
        end
    end
    for k in next, b do
        if rawget(a, k) == nil then
            return false
        end
    end
    return true
end

-- Order for table keys of mixed types: by type name, then by value.
local function key_less(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then
        return ta < tb
    end
    if ta == "string" or ta == "number" then
        return a < b
    end
    return tostring(a) < tostring(b)
end

local function sorted_keys(t)
    local keys = {}
    for k in next, t do
        keys[#keys + 1] = k
    end
    sort(keys, key_less)
    return keys
end

--- Join two paths: "a" + "b" = "a.b", "a" + "[0]" = "a[0]", "" + "b" = "b".
local function join_path(a, b)
    if a == "" then
        return b
    elseif b == "" then
        return a
    elseif sub(b, 1, 1) == "[" then
        return a .. b
    end
    return a .. "." .. b
end

-- ---- formats ----

--- Seconds in "30", "1.5", "500ms", "2s", "1.5m", "1h"; nil if malformed.
local function parse_duration(s)
    local num, unit = match(s, "^(%d+%.?%d*)(%a*)$")
    if not num or sub(num, -1) == "." then
        return nil
    end
    local n = tonumber(num)
    if unit == "ms" then
        return n / 1000
    elseif unit == "" or unit == "s" then
        return n
    elseif unit == "m" then
        return n * 60
    elseif unit == "h" then
        return n * 3600
    end
    return nil
end

local SIZE_UNITS = { [""] = 1, k = 1024, m = 1024 * 1024, g = 1024 * 1024 * 1024 }

--- Bytes in "1024", "16k", "10m", "1g" (any case); nil if malformed.
local function parse_size(s)
    local num, unit = match(s, "^(%d+)(%a?)$")
    local mult = num and SIZE_UNITS[lower(unit)]
    if not mult then
        return nil
    end
    local n = tonumber(num) * mult
    return n <= MAX_SAFE_INTEGER and n or nil
end

--- The normalised number for a duration or size value, or nil.
local function normalize_format(format, v)
    local t = type(v)
    if format == "duration" then
        if t == "number" then
            return (v >= 0 and v < huge) and v or nil
        end
        return t == "string" and parse_duration(v) or nil
    end
    if t == "number" then
        return (v >= 0 and v == floor(v) and v <= MAX_SAFE_INTEGER) and v or nil
    end
    return t == "string" and parse_size(v) or nil
end

-- ---- regexes (PCRE2 through the FFI, loaded on first use) ----

local PCRE2_JIT_COMPLETE = 1
local PCRE2_ERROR_NOMATCH = -1

local pcre2, pcre2_err
local regex_cache = setmetatable({}, { __mode = "v" })

local function load_pcre2()
    if pcre2 or pcre2_err then
        return pcre2, pcre2_err
    end
    -- One declaration at a time: ffi.cdef refuses a second declaration of a
    -- function another module may already have made.
    for _, decl in ipairs {
        "void *pcre2_compile_8(const char *pattern, size_t length, uint32_t options,"
            .. " int *errorcode, size_t *erroroffset, void *ccontext);",
        "int pcre2_jit_compile_8(void *code, uint32_t options);",
        "void *pcre2_match_data_create_from_pattern_8(const void *code, void *gcontext);",
        "int pcre2_match_8(const void *code, const char *subject, size_t length,"
            .. " size_t startoffset, uint32_t options, void *match_data, void *mcontext);",
        "void pcre2_match_data_free_8(void *match_data);",
        "void pcre2_code_free_8(void *code);",
        "int pcre2_get_error_message_8(int errorcode, unsigned char *buffer, size_t bufflen);",
    } do
        pcall(ffi.cdef, decl)
    end
    local ok, lib = pcall(ffi.load, "libpcre2-8.so.0")
    if ok then
        pcre2 = lib
    else
        pcre2_err = "PCRE2 is not available: " .. tostring(lib)
    end
    return pcre2, pcre2_err
end

local function pcre2_message(code)
    local buf = ffi.new("unsigned char[256]")
    local n = pcre2.pcre2_get_error_message_8(code, buf, 256)
    return n > 0 and ffi.string(buf, n) or ("PCRE2 error " .. code)
end

--- A compiled regex { code, match_data }, shared by every schema that uses
-- the same pattern; or nil and a message such as the router's
-- `bad regex "x(": missing closing parenthesis at offset 2`.
local function compile_regex(pattern)
    local re = regex_cache[pattern]
    if re then
        return re
    end
    local lib, err = load_pcre2()
    if not lib then
        return nil, err
    end
    local errcode, erroff = ffi.new("int[1]"), ffi.new("size_t[1]")
    local code = lib.pcre2_compile_8(pattern, #pattern, 0, errcode, erroff, nil)
    if code == nil then
        return nil, fmt("bad regex %s: %s at offset %d", quote(pattern), pcre2_message(errcode[0]),
            tonumber(erroff[0]))
    end
    code = ffi.gc(code, lib.pcre2_code_free_8)
    -- Without JIT support pcre2_match falls back to the interpreter.
    lib.pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE)
    local md = lib.pcre2_match_data_create_from_pattern_8(code, nil)
    if md == nil then
        return nil, "out of memory"
    end
    re = { code = code, match_data = ffi.gc(md, lib.pcre2_match_data_free_8) }
    regex_cache[pattern] = re
    return re
end

--- true when `re` matches somewhere in `s`, false when not, nil and a
-- message when PCRE2 gives up (match limit).
local function regex_find(re, s)
    local rc = pcre2.pcre2_match_8(re.code, s, #s, 0, 0, re.match_data, nil)
    if rc >= 0 then
        return true
    elseif rc == PCRE2_ERROR_NOMATCH then
        return false
    end
    return nil, pcre2_message(rc)
end

-- ---- validation ----
--
-- check(node, v, path, errs) returns the validated copy of `v` and appends
-- to `errs` what is wrong with it; the copy is only meaningful when nothing
-- was appended.

local check

local function add_error(errs, path, message)
    errs[#errs + 1] = { path = path, message = message }
end

local function type_ok(t, v)
    local lt = type(v)
    if t == "string" then
        return lt == "string"
    elseif t == "integer" then
        return lt == "number" and v == floor(v) and v >= -MAX_SAFE_INTEGER and v <= MAX_SAFE_INTEGER
    elseif t == "number" then
        return lt == "number" and v == v and v > -huge and v < huge
    elseif t == "boolean" then
        return lt == "boolean"
    elseif t == "object" or t == "array" then
        return lt == "table"
    end
    return true
end

--- Whether a property value counts as absent (then its default applies).
local function absent(sub_node, v)
    return v == nil or (not sub_node.nullable and is_null(v))
end

local function check_properties(node, v, path, errs, out)
    local props, required = node.properties, node.required
    for _, name in ipairs(node.names) do
        local sub_node, pv = props[name], rawget(v, name)
        if absent(sub_node, pv) then
            if sub_node.has_default then
                out[name] = deep_copy(sub_node.default)
            elseif required[name] then
                add_error(errs, join_path(path, name), "required field missing")
            end
        else
            out[name] = check(sub_node, pv, join_path(path, name), errs)
        end
    end
end

-- Fields that are not among the properties, in a stable order.
local function check_additional(node, v, path, errs, out)
    local extra
    for k in next, v do
        if type(k) ~= "string" or not node.properties[k] then
            extra = extra or {}
            extra[#extra + 1] = k
        end
    end
    if not extra then
        return
    end
    sort(extra, key_less)
    local additional = node.additional
    for _, k in ipairs(extra) do
        local pv = rawget(v, k)
        if type(k) ~= "string" then
            add_error(errs, path, "expected a string key, got " .. describe(k))
        elseif additional == false then
            add_error(errs, path, "unknown field " .. quote(k))
        elseif additional == true then
            out[k] = deep_copy(pv)
        elseif not absent(additional, pv) then
            out[k] = check(additional, pv, join_path(path, k), errs)
        end
    end
end

local function check_object(node, v, path, errs)
    if table_kind(v) == "array" then
        add_error(errs, path, "expected object, got an array")
        return nil
    end
    local out = {}
    check_properties(node, v, path, errs, out)
    check_additional(node, v, path, errs, out)
    -- Required names that only additional_properties describes.
    local additional = node.additional
    local nullable = type(additional) == "table" and additional.nullable
    for _, name in ipairs(node.extra_required) do
        local pv = rawget(v, name)
        if pv == nil or (not nullable and is_null(pv)) then
            add_error(errs, join_path(path, name), "required field missing")
        end
    end
    return out
end

-- Report items equal to an earlier one ("duplicate of hosts[0]").
local function check_unique(out, n, path, errs)
    local seen = {}
    for i = 1, n do
        local item, first = out[i], nil
        if type(item) == "table" then
            for j = 1, i - 1 do
                if type(out[j]) == "table" and deep_equal(out[j], item) then
                    first = j
                    break
                end
            end
        elseif item ~= nil then
            first = seen[item]
            seen[item] = first or i
        end
        if first then
            add_error(errs, path .. "[" .. (i - 1) .. "]",
                "duplicate of " .. path .. "[" .. (first - 1) .. "]")
        end
    end
end

local function check_array(node, v, path, errs)
    local kind, n = table_kind(v)
    if kind == "object" then
        add_error(errs, path, "expected array, got an object")
        return nil
    end
    if node.min_items and n < node.min_items then
        add_error(errs, path, "expected at least " .. plural(node.min_items, "item"))
    end
    if node.max_items and n > node.max_items then
        add_error(errs, path, "expected at most " .. plural(node.max_items, "item"))
    end
    local out, items = {}, node.items
    for i = 1, n do
        if items then
            out[i] = check(items, rawget(v, i), path .. "[" .. (i - 1) .. "]", errs)
        else
            out[i] = deep_copy(rawget(v, i))
        end
    end
    if node.unique_items then
        check_unique(out, n, path, errs)
    end
    local mt = getmetatable(v)
    if type(mt) == "table" then
        setmetatable(out, mt)
    end
    return out
end

local function check_string(node, v, path, errs)
    if node.min_length and #v < node.min_length then
        add_error(errs, path, "must be at least " .. plural(node.min_length, "byte") .. " long")
    end
    if node.max_length and #v > node.max_length then
        add_error(errs, path, "must be at most " .. plural(node.max_length, "byte") .. " long")
    end
    if node.regex then
        local ok, err = regex_find(node.regex, v)
        if ok == false then
            add_error(errs, path, "does not match pattern " .. quote(node.pattern))
        elseif ok == nil then
            add_error(errs, path, "cannot match pattern " .. quote(node.pattern) .. ": " .. err)
        end
    end
    if node.lua_pattern and not find(v, node.lua_pattern) then
        add_error(errs, path, "does not match pattern " .. quote(node.lua_pattern))
    end
end

local function check_bounds(node, v, path, errs)
    if node.minimum and v < node.minimum then
        add_error(errs, path, "must be at least " .. number_text(node.minimum))
    end
    if node.maximum and v > node.maximum then
        add_error(errs, path, "must be at most " .. number_text(node.maximum))
    end
    if node.exclusive_minimum and v <= node.exclusive_minimum then
        add_error(errs, path, "must be greater than " .. number_text(node.exclusive_minimum))
    end
    if node.exclusive_maximum and v >= node.exclusive_maximum then
        add_error(errs, path, "must be less than " .. number_text(node.exclusive_maximum))
    end
end

-- The first error of an alternative, for the summary of a failed one_of.
local function first_error_text(errs)
    local e = errs[1]
    local text = e.path ~= "" and (e.path .. ": " .. e.message) or e.message
    if #errs > 1 then
        text = text .. fmt(" (and %d more)", #errs - 1)
    end
    return text
end

local function check_alternatives(node, v, path, errs)
    local matched, reasons, result = {}, {}, nil
    for i, alt in ipairs(node.alternatives) do
        local alt_errs = {}
        local out = check(alt, v, "", alt_errs)
        if #alt_errs == 0 then
            if node.any_of then
                return out
            end
            matched[#matched + 1] = "#" .. (i - 1)
            if #matched == 1 then
                result = out
            end
        else
            reasons[#reasons + 1] = "#" .. (i - 1) .. ": " .. first_error_text(alt_errs)
        end
    end
    if #matched == 1 then
        return result
    elseif #matched == 0 then
        add_error(errs, path, "matches no alternative: " .. concat(reasons, "; "))
    else
        add_error(errs, path, fmt("matches %d alternatives (%s), expected exactly one", #matched,
            concat(matched, ", ")))
    end
    return nil
end

check = function(node, v, path, errs)
    if node.nullable and is_null(v) then
        return v
    end
    if node.alternatives then
        return check_alternatives(node, v, path, errs)
    end
    local input = v
    if node.format then
        v = normalize_format(node.format, v)
        if v == nil then
            add_error(errs, path, "expected " .. node.expected .. ", got " .. describe(input))
            return nil
        end
    end
    local t = node.type
    if not type_ok(t, v) or (t == "any" and is_null(v)) then
        add_error(errs, path, "expected " .. node.expected .. ", got " .. describe(input))
        return nil
    end
    if node.enum_set and node.enum_set[v] == nil then
        add_error(errs, path, node.enum_text .. ", got " .. describe(input))
        return nil
    end
    if t == "object" then
        return check_object(node, v, path, errs)
    elseif t == "array" then
        return check_array(node, v, path, errs)
    elseif t == "string" then
        check_string(node, v, path, errs)
    elseif t == "integer" or t == "number" then
        check_bounds(node, v, path, errs)
    elseif t == "any" then
        return deep_copy(v)
    end
    return v
end

-- ---- compiling a definition ----
--
-- compile_node(def, spath, active) turns a definition into a node, the
-- table check() reads. A mistake raises a SchemaError carrying the path
-- in the definition (spath); compile() catches it.

local SchemaError = {}

local function bad(spath, msg)
    error(setmetatable({ msg = spath ~= "" and (spath .. ": " .. msg) or msg }, SchemaError), 0)
end

local TYPES = { "any", "array", "boolean", "integer", "number", "object", "string" }
local TYPE_SET = {}
for _, t in ipairs(TYPES) do
    TYPE_SET[t] = true
end

local KEYWORDS = {
    type = "all", description = "all", default = "all", nullable = "all",
    enum = "scalar", format = "numeric",
    one_of = "alternatives", any_of = "alternatives",
    properties = "object", required = "object", additional_properties = "object",
    items = "array", min_items = "array", max_items = "array", unique_items = "array",
    min_length = "string", max_length = "string", pattern = "string", lua_pattern = "string",
    minimum = "numeric", maximum = "numeric", exclusive_minimum = "numeric",
    exclusive_maximum = "numeric",
}

local KEYWORD_APPLIES = {
    all = function() return true end,
    scalar = function(t) return t ~= "object" and t ~= "array" end,
    numeric = function(t) return t == "integer" or t == "number" end,
    object = function(t) return t == "object" end,
    array = function(t) return t == "array" end,
    string = function(t) return t == "string" end,
    alternatives = function() return false end,
}

local FORMAT_TYPES = { duration = "number", size = "integer" }

local compile_node

local function want(def, key, spath, lua_type, what)
    local v = def[key]
    if v ~= nil and type(v) ~= lua_type then
        bad(join_path(spath, key), "expected " .. what .. ", got " .. describe(v))
    end
    return v
end

local function want_count(def, key, spath)
    local v = def[key]
    if v ~= nil and (type(v) ~= "number" or v < 0 or v ~= floor(v) or v == huge) then
        bad(join_path(spath, key), "expected a non-negative integer, got " .. describe(v))
    end
    return v
end

local function want_bound(def, key, spath)
    local v = def[key]
    if v ~= nil and not type_ok("number", v) then
        bad(join_path(spath, key), "expected number, got " .. describe(v))
    end
    return v
end

local function want_list(def, key, spath, what)
    local v = def[key]
    if v ~= nil and (type(v) ~= "table" or table_kind(v) ~= "array") then
        bad(join_path(spath, key), "expected a non-empty list of " .. what .. ", got " .. describe(v))
    end
    return v
end

local function want_order(node, lo, hi, spath)
    if node[lo] and node[hi] and node[lo] > node[hi] then
        bad(spath, lo .. " is greater than " .. hi)
    end
end

local function compile_object(node, def, spath, active)
    local props, names = {}, {}
    local pdef = def.properties
    if pdef ~= nil then
        if type(pdef) ~= "table" then
            bad(join_path(spath, "properties"), "expected a table of schemas, got " .. describe(pdef))
        end
        for _, name in ipairs(sorted_keys(pdef)) do
            if type(name) ~= "string" then
                bad(join_path(spath, "properties"), "expected a string key, got " .. describe(name))
            end
            names[#names + 1] = name
            props[name] = compile_node(pdef[name], join_path(spath, "properties." .. name), active)
        end
    end
    node.properties, node.names = props, names

    local adef = def.additional_properties
    if adef == nil or type(adef) == "boolean" then
        node.additional = adef == true
    elseif type(adef) == "table" then
        node.additional = compile_node(adef, join_path(spath, "additional_properties"), active)
    else
        bad(join_path(spath, "additional_properties"), "expected a boolean or a schema, got " .. describe(adef))
    end

    node.required, node.extra_required = {}, {}
    if def.required ~= nil and not (type(def.required) == "table" and next(def.required) == nil) then
        for i, name in ipairs(want_list(def, "required", spath, "field names")) do
            local ipath = join_path(spath, "required[" .. (i - 1) .. "]")
            if type(name) ~= "string" then
                bad(ipath, "expected a field name, got " .. describe(name))
            elseif not props[name] and node.additional == false then
                bad(ipath, quote(name) .. " is not among the properties")
            end
            node.required[name] = true
            if not props[name] then
                node.extra_required[#node.extra_required + 1] = name
            end
        end
        sort(node.extra_required)
    end
end

local function compile_array(node, def, spath, active)
    if def.items ~= nil then
        node.items = compile_node(def.items, join_path(spath, "items"), active)
    end
    node.min_items = want_count(def, "min_items", spath)
    node.max_items = want_count(def, "max_items", spath)
    want_order(node, "min_items", "max_items", spath)
    node.unique_items = want(def, "unique_items", spath, "boolean", "boolean")
end

local function compile_string(node, def, spath)
    node.min_length = want_count(def, "min_length", spath)
    node.max_length = want_count(def, "max_length", spath)
    want_order(node, "min_length", "max_length", spath)
    local pattern = want(def, "pattern", spath, "string", "a regex")
    if pattern then
        local re, err = compile_regex(pattern)
        if not re then
            bad(join_path(spath, "pattern"), err)
        end
        node.pattern, node.regex = pattern, re
    end
    local lua_pattern = want(def, "lua_pattern", spath, "string", "a Lua pattern")
    if lua_pattern then
        local ok, err = pcall(find, "", lua_pattern)
        if not ok then
            bad(join_path(spath, "lua_pattern"), "bad Lua pattern " .. quote(lua_pattern) .. ": " .. err)
        end
        node.lua_pattern = lua_pattern
    end
end

local function compile_numeric(node, def, spath)
    for _, key in ipairs { "minimum", "maximum", "exclusive_minimum", "exclusive_maximum" } do
        node[key] = want_bound(def, key, spath)
    end
    want_order(node, "minimum", "maximum", spath)
end

local function compile_enum(node, def, spath)
    local values = want_list(def, "enum", spath, "values")
    if not values then
        return
    end
    local texts = {}
    node.enum_set = {}
    for i, v in ipairs(values) do
        if not type_ok(node.type, v) or type(v) == "table" then
            bad(join_path(spath, "enum[" .. (i - 1) .. "]"), "expected " .. node.expected .. ", got " .. describe(v))
        end
        node.enum_set[v] = true
        texts[i] = describe(v)
    end
    node.enum_text = "expected one of " .. concat(texts, ", ")
end

-- The type a definition declares (or implies through its format).
local function node_type(def, spath)
    local format = def.format
    if format ~= nil and not FORMAT_TYPES[format] then
        bad(join_path(spath, "format"), 'expected one of "duration", "size", got ' .. describe(format))
    end
    local t = def.type
    if t == nil then
        t = FORMAT_TYPES[format]
        if not t then
            bad(spath, 'keyword "type" missing')
        end
    elseif not TYPE_SET[t] then
        local names = {}
        for i, name in ipairs(TYPES) do
            names[i] = quote(name)
        end
        bad(join_path(spath, "type"), "expected one of " .. concat(names, ", ") .. ", got " .. describe(t))
    end
    return t
end

local function compile_typed(node, def, spath, active, keys)
    local t = node_type(def, spath)
    for _, k in ipairs(keys) do
        if not KEYWORD_APPLIES[KEYWORDS[k]](t) then
            bad(spath, fmt('keyword "%s" does not apply to type "%s"', k, t))
        end
    end
    node.type, node.format = t, def.format
    if def.format == "duration" then
        node.expected = t == "integer" and DURATION_WHOLE_WHAT or DURATION_WHAT
    elseif def.format == "size" then
        node.expected = SIZE_WHAT
    else
        node.expected = t == "any" and "a value" or t
    end
    if t == "object" then
        compile_object(node, def, spath, active)
    elseif t == "array" then
        compile_array(node, def, spath, active)
    elseif t == "string" then
        compile_string(node, def, spath)
    elseif t == "integer" or t == "number" then
        compile_numeric(node, def, spath)
    end
    compile_enum(node, def, spath)
end

local function compile_alternatives(node, def, spath, active, keys)
    local key = def.one_of ~= nil and "one_of" or "any_of"
    for _, k in ipairs(keys) do
        if KEYWORDS[k] ~= "all" and k ~= key or k == "type" then
            bad(spath, fmt('keyword "%s" cannot be combined with %s', k, key))
        end
    end
    node.alternatives = {}
    node.any_of = key == "any_of"
    for i, alt in ipairs(want_list(def, key, spath, "schemas")) do
        node.alternatives[i] = compile_node(alt, join_path(spath, key .. "[" .. (i - 1) .. "]"), active)
    end
end

--- Check `def.default` against the node and keep its validated copy.
local function compile_default(node, default, spath)
    local errs = {}
    local out = check(node, default, "", errs)
    if #errs > 0 then
        bad(join_path(join_path(spath, "default"), errs[1].path), errs[1].message)
    end
    node.has_default, node.default = true, out
end

compile_node = function(def, spath, active)
    if type(def) ~= "table" then
        bad(spath, "expected a schema table, got " .. describe(def))
    end
    if active[def] then
        bad(spath, "schema contains itself")
    end
    active[def] = true
    local keys = sorted_keys(def)
    for _, k in ipairs(keys) do
        if not KEYWORDS[k] then
            bad(spath, "unknown keyword " .. describe(k))
        end
    end
    local node = {}
    node.description = want(def, "description", spath, "string", "string")
    node.nullable = want(def, "nullable", spath, "boolean", "boolean") == true
    if def.one_of ~= nil or def.any_of ~= nil then
        compile_alternatives(node, def, spath, active, keys)
    else
        compile_typed(node, def, spath, active, keys)
    end
    if def.default ~= nil then
        compile_default(node, def.default, spath)
    end
    active[def] = nil
    return node
end

-- ---- API ----

local Validator = {}
Validator.__index = Validator

--- Compile a definition: a validator, or nil and "invalid schema: ...".
function _M.compile(def)
    if type(def) ~= "table" then
        error("schema.compile: expected a table, got " .. type(def), 2)
    end
    local ok, node = pcall(compile_node, def, "", {})
    if not ok then
        if getmetatable(node) == SchemaError then
            return nil, "invalid schema: " .. node.msg
        end
        error(node, 0)
    end
    return setmetatable({ root = node }, Validator)
end

local function validate(root, value, prefix)
    local errs = {}
    if absent(root, value) then
        if root.has_default then
            return deep_copy(root.default)
        end
        add_error(errs, prefix, "required field missing")
        return nil, errs
    end
    local out = check(root, value, prefix, errs)
    if #errs > 0 then
        return nil, errs
    end
    return out
end

--- The validated copy of `value`, or nil and the list of errors.
function Validator:validate(value, path_prefix)
    if getmetatable(self) ~= Validator then
        error("validate: call it as validator:validate(value)", 2)
    end
    if path_prefix ~= nil and type(path_prefix) ~= "string" then
        error("validate: path_prefix must be a string, got " .. type(path_prefix), 2)
    end
    return validate(self.root, value, path_prefix or "")
end

--- Compile `def` and validate `value` with it; an invalid `def` raises.
function _M.validate(def, value, path_prefix)
    if type(def) ~= "table" then
        error("schema.validate: expected a schema table, got " .. type(def), 2)
    end
    if path_prefix ~= nil and type(path_prefix) ~= "string" then
        error("schema.validate: path_prefix must be a string, got " .. type(path_prefix), 2)
    end
    local validator, err = _M.compile(def)
    if not validator then
        error(err, 2)
    end
    return validate(validator.root, value, path_prefix or "")
end

--- Errors as lines "prefix.path: message" ("message" alone when both the
-- prefix and the path are empty).
function _M.format_errors(errs, prefix)
    if type(errs) ~= "table" then
        error("schema.format_errors: expected a list of errors, got " .. type(errs), 2)
    end
    if prefix ~= nil and type(prefix) ~= "string" then
        error("schema.format_errors: prefix must be a string, got " .. type(prefix), 2)
    end
    local lines = {}
    for i, e in ipairs(errs) do
        local path = join_path(prefix or "", e.path)
        lines[i] = path ~= "" and (path .. ": " .. e.message) or e.message
    end
    return lines
end

return _M
