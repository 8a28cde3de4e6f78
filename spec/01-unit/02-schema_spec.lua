-- moongate.schema: the validator of plugin configs.
local schema = require "moongate.schema"
local cjson = require "cjson"

-- Validate and return the errors formatted as "path: message" lines.
local function error_lines(def, value, prefix)
    local out, errs = schema.validate(def, value, prefix)
    assert.is_nil(out)
    return schema.format_errors(errs)
end

-- The message of a compile() failure.
local function compile_error(def)
    local validator, err = schema.compile(def)
    assert.is_nil(validator)
    return err
end

describe("schema", function()
    describe("types", function()
        it("accepts a value of each type", function()
            assert.equal("x", schema.validate({ type = "string" }, "x"))
            assert.equal(10, schema.validate({ type = "integer" }, 10))
            assert.equal(-3, schema.validate({ type = "integer" }, -3))
            assert.equal(1.5, schema.validate({ type = "number" }, 1.5))
            assert.equal(false, schema.validate({ type = "boolean" }, false))
            assert.same({ a = 1 }, schema.validate({ type = "object", additional_properties = true }, { a = 1 }))
            assert.same({ 1, "b" }, schema.validate({ type = "array" }, { 1, "b" }))
            assert.same({ x = { 1 } }, schema.validate({ type = "any" }, { x = { 1 } }))
        end)

        it("reports a wrong type with what it got", function()
            assert.same({ 'expected integer, got "ten"' }, error_lines({ type = "integer" }, "ten"))
            assert.same({ "expected integer, got 1.5" }, error_lines({ type = "integer" }, 1.5))
            assert.same({ "expected number, got true" }, error_lines({ type = "number" }, true))
            assert.same({ "expected number, got nan" }, error_lines({ type = "number" }, 0 / 0))
            assert.same({ "expected string, got 5" }, error_lines({ type = "string" }, 5))
            assert.same({ 'expected boolean, got "true"' }, error_lines({ type = "boolean" }, "true"))
            assert.same({ "expected object, got an array" }, error_lines({ type = "object" }, { 1, 2 }))
            assert.same({ "expected array, got an object" }, error_lines({ type = "array" }, { a = 1 }))
            assert.same({ "expected string, got an empty table" }, error_lines({ type = "string" }, {}))
            assert.same({ "expected integer, got a function" }, error_lines({ type = "integer" }, print))
        end)

        it("never converts a string to a number", function()
            assert.same({ 'expected integer, got "10"' }, error_lines({ type = "integer" }, "10"))
            assert.same({ 'expected number, got "1.5"' }, error_lines({ type = "number" }, "1.5"))
        end)

        it("accepts an empty table as an object and as an array", function()
            assert.same({}, schema.validate({ type = "object" }, {}))
            assert.same({}, schema.validate({ type = "array" }, {}))
        end)

        it("refuses keys that are not strings in an object", function()
            assert.same({ "expected a string key, got 1" },
                error_lines({ type = "object", additional_properties = true }, { a = 1, [1] = "x" }))
        end)

        it("quotes strings like the config loader, escaped and shortened", function()
            assert.same({ 'expected integer, got "say \\"hi\\"?"' }, error_lines({ type = "integer" }, 'say "hi"\n'))
            assert.same({ 'expected integer, got "' .. string.rep("a", 64) .. '..."' },
                error_lines({ type = "integer" }, string.rep("a", 100)))
        end)
    end)

    describe("objects", function()
        local def = {
            type = "object",
            required = { "name" },
            properties = {
                name = { type = "string", description = "who" },
                age = { type = "integer" },
            },
        }

        it("keeps declared fields and leaves absent optional fields absent", function()
            assert.same({ name = "ann", age = 3 }, schema.validate(def, { name = "ann", age = 3 }))
            assert.same({ name = "ann" }, schema.validate(def, { name = "ann" }))
        end)

        it("reports a missing required field at its own path", function()
            local out, errs = schema.validate(def, { age = 3 })
            assert.is_nil(out)
            assert.same({ { path = "name", message = "required field missing" } }, errs)
        end)

        it("refuses unknown fields by default, at the object's path, in sorted order", function()
            local out, errs = schema.validate(def, { name = "ann", zed = 1, foo = 2 })
            assert.is_nil(out)
            assert.same({
                { path = "", message = 'unknown field "foo"' },
                { path = "", message = 'unknown field "zed"' },
            }, errs)
        end)

        it("keeps unknown fields, copied, with additional_properties = true", function()
            local input = { name = "ann", extra = { deep = { 1 } } }
            local out = schema.validate({ type = "object", additional_properties = true,
                properties = def.properties }, input)
            assert.same({ name = "ann", extra = { deep = { 1 } } }, out)
            assert.is_not.equal(input.extra, out.extra)
        end)

        it("validates unknown fields against an additional_properties schema", function()
            local headers = { type = "object", additional_properties = { type = "string", max_length = 3 } }
            assert.same({ ["x-a"] = "1", ["x-b"] = "2" }, schema.validate(headers, { ["x-a"] = "1", ["x-b"] = "2" }))
            assert.same({ "x-a: expected string, got 1", "x-b: must be at most 3 bytes long" },
                error_lines(headers, { ["x-a"] = 1, ["x-b"] = "long" }))
        end)

        it("requires a field only additional_properties describes", function()
            local def2 = { type = "object", required = { "token" }, additional_properties = { type = "string" } }
            assert.same({ "token: required field missing" }, error_lines(def2, { other = "x" }))
            assert.same({ token = "t" }, schema.validate(def2, { token = "t" }))
        end)

        it("reports a missing top-level value, or uses the top-level default", function()
            assert.same({ "conf: required field missing" }, error_lines(def, nil, "conf"))
            assert.same({ a = 1 }, schema.validate({ type = "object", additional_properties = true,
                default = { a = 1 } }, nil))
        end)
    end)

    describe("error paths", function()
        local def = {
            type = "object",
            properties = {
                rules = {
                    type = "array",
                    items = {
                        type = "object",
                        required = { "header" },
                        properties = {
                            header = { type = "string" },
                            values = { type = "array", items = { type = "integer" } },
                        },
                    },
                },
                nested = {
                    type = "object",
                    properties = { key = { type = "boolean" }, inner = { type = "object",
                        properties = { n = { type = "number" } } } },
                },
            },
        }

        it("names nested fields with dots and array items with 0-based indexes", function()
            local out, errs = schema.validate(def, {
                rules = { { header = "a" }, { header = "b", values = { 1, "two" } }, { values = {} } },
                nested = { key = "yes", inner = { n = "1" } },
            })
            assert.is_nil(out)
            assert.same({
                { path = "nested.inner.n", message = 'expected number, got "1"' },
                { path = "nested.key", message = 'expected boolean, got "yes"' },
                { path = "rules[1].values[1]", message = 'expected integer, got "two"' },
                { path = "rules[2].header", message = "required field missing" },
            }, errs)
        end)

        it("puts the prefix in front of every path", function()
            local _, errs = assert(schema.compile(def)):validate({ rules = { { header = 1 } } }, "plugins.x")
            assert.same({ { path = "plugins.x.rules[0].header", message = "expected string, got 1" } }, errs)
            local _, errs2 = schema.validate({ type = "array", items = { type = "string" } }, { "a", 2 }, "hosts")
            assert.same({ { path = "hosts[1]", message = "expected string, got 2" } }, errs2)
            local _, errs3 = schema.validate({ type = "array", items = { type = "string" } }, { "a", 2 })
            assert.same({ { path = "[1]", message = "expected string, got 2" } }, errs3)
        end)

        it("collects every error, not just the first", function()
            local lines = error_lines({
                type = "object",
                required = { "a", "b" },
                properties = { a = { type = "integer" }, b = { type = "integer" },
                    c = { type = "string", min_length = 2, pattern = "^[a-z]+$" } },
            }, { c = "1", d = true })
            assert.same({
                "a: required field missing",
                "b: required field missing",
                "c: must be at least 2 bytes long",
                'c: does not match pattern "^[a-z]+$"',
                'unknown field "d"',
            }, lines)
        end)
    end)

    describe("defaults", function()
        local def = {
            type = "object",
            properties = {
                limit = { type = "integer", default = 10 },
                tags = { type = "array", items = { type = "string" }, default = { "a" } },
                redis = {
                    type = "object",
                    default = {},
                    properties = {
                        host = { type = "string", default = "127.0.0.1" },
                        port = { type = "integer", default = 6379 },
                        pool = { type = "object", default = {},
                            properties = { size = { type = "integer", default = 8 } } },
                    },
                },
                optional = { type = "object", properties = { x = { type = "integer", default = 1 } } },
            },
        }
        local validator = assert(schema.compile(def))

        it("fills absent fields, creating objects with default = {} and their own defaults", function()
            assert.same({
                limit = 10,
                tags = { "a" },
                redis = { host = "127.0.0.1", port = 6379, pool = { size = 8 } },
            }, validator:validate({}))
        end)

        it("fills defaults inside an object that is present", function()
            assert.same({
                limit = 5,
                tags = { "a" },
                redis = { host = "r1", port = 6379, pool = { size = 8 } },
                optional = { x = 1 },
            }, validator:validate({ limit = 5, redis = { host = "r1" }, optional = {} }))
        end)

        it("never modifies the input", function()
            local input = { redis = { port = 1 }, optional = {} }
            local out = validator:validate(input)
            assert.same({ redis = { port = 1 }, optional = {} }, input)
            assert.is_not.equal(input.redis, out.redis)
            assert.equal(1, out.redis.port)
            assert.equal("127.0.0.1", out.redis.host)
        end)

        it("gives each result its own copy of a default", function()
            local a = validator:validate({})
            a.tags[1] = "changed"
            a.redis.pool.size = 0
            local b = validator:validate({})
            assert.same({ "a" }, b.tags)
            assert.equal(8, b.redis.pool.size)
        end)

        it("uses the default of a required field rather than reporting it", function()
            assert.same({ mode = "on" }, schema.validate({ type = "object", required = { "mode" },
                properties = { mode = { type = "string", default = "on" } } }, {}))
        end)

        it("checks defaults when compiling", function()
            assert.equal('invalid schema: properties.limit.default: expected integer, got "ten"',
                compile_error({ type = "object", properties = { limit = { type = "integer", default = "ten" } } }))
            assert.equal("invalid schema: properties.redis.default.host: required field missing",
                compile_error({ type = "object", properties = { redis = { type = "object", default = {},
                    required = { "host" }, properties = { host = { type = "string" } } } } }))
            assert.equal("invalid schema: default: must be at least 1",
                compile_error({ type = "integer", minimum = 1, default = 0 }))
        end)
    end)

    describe("nullable and null", function()
        local def = {
            type = "object",
            properties = {
                ttl = { type = "integer", nullable = true, default = 30 },
                limit = { type = "integer", default = 5 },
                name = { type = "string" },
            },
        }

        it("keeps null in a nullable field, whichever null it is", function()
            local out = schema.validate(def, { ttl = schema.null })
            assert.equal(schema.null, out.ttl)
            out = schema.validate(def, { ttl = cjson.null })
            assert.equal(cjson.null, out.ttl)
            assert.is_true(schema.is_null(cjson.null))
            assert.is_true(schema.is_null(schema.null))
            assert.is_false(schema.is_null(false))
        end)

        it("treats null in a field that is not nullable as absent", function()
            assert.same({ ttl = 30, limit = 5 }, schema.validate(def, { limit = cjson.null, name = schema.null }))
            assert.same({ "x: required field missing" }, error_lines({ type = "object", required = { "x" },
                properties = { x = { type = "string" } } }, { x = cjson.null }))
        end)

        it("refuses null elsewhere unless nullable", function()
            assert.same({ "[1]: expected string, got null" },
                error_lines({ type = "array", items = { type = "string" } }, { "a", cjson.null }))
            assert.same({ "a", cjson.null },
                schema.validate({ type = "array", items = { type = "string", nullable = true } }, { "a", cjson.null }))
            assert.same({ "[0]: expected a value, got null" },
                error_lines({ type = "array", items = { type = "any" } }, { schema.null }))
        end)

        it("refuses to change schema.null", function()
            assert.has_error(function() schema.null.x = 1 end, "schema.null is read-only")
        end)
    end)

    describe("arrays", function()
        it("checks min_items and max_items", function()
            local def = { type = "array", min_items = 1, max_items = 3 }
            assert.same({ "expected at least 1 item" }, error_lines(def, {}))
            assert.same({ "expected at most 3 items" }, error_lines(def, { 1, 2, 3, 4 }))
            assert.same({ 1, 2, 3 }, schema.validate(def, { 1, 2, 3 }))
            assert.same({ "expected at least 2 items" }, error_lines({ type = "array", min_items = 2 }, { 1 }))
        end)

        it("checks unique_items on the normalised items, deep for tables", function()
            local def = { type = "array", unique_items = true, items = { type = "string" } }
            assert.same({ "a", "b" }, schema.validate(def, { "a", "b" }))
            assert.same({ "[2]: duplicate of [0]" }, error_lines(def, { "a", "b", "a" }))
            assert.same({ "hosts[1]: duplicate of hosts[0]" },
                error_lines({ type = "object", properties = { hosts = def } }, { hosts = { "h", "h" } }))
            assert.same({ "[1]: duplicate of [0]" },
                error_lines({ type = "array", unique_items = true }, { { a = { 1 } }, { a = { 1 } } }))
            assert.same({ "[1]: duplicate of [0]" },
                error_lines({ type = "array", unique_items = true, items = { format = "duration" } }, { "1m", 60 }))
        end)

        it("keeps the input array's metatable (such as a JSON array marker)", function()
            local array_mt = { __name = "array" }
            local input = setmetatable({}, array_mt)
            local out = schema.validate({ type = "array", items = { type = "string" } }, input)
            assert.is_not.equal(input, out)
            assert.equal(array_mt, getmetatable(out))
            out = schema.validate({ type = "object", properties = { a = { type = "any" } } },
                { a = setmetatable({ 1 }, array_mt) })
            assert.same({ 1 }, out.a)
            assert.equal(array_mt, getmetatable(out.a))
        end)
    end)

    describe("strings", function()
        it("checks min_length and max_length in bytes", function()
            local def = { type = "string", min_length = 2, max_length = 4 }
            assert.same({ "must be at least 2 bytes long" }, error_lines(def, "a"))
            assert.same({ "must be at most 4 bytes long" }, error_lines(def, "abcde"))
            assert.same({ "must be at least 1 byte long" }, error_lines({ type = "string", min_length = 1 }, ""))
            assert.equal("abcd", schema.validate(def, "abcd"))
        end)

        it("matches a PCRE2 pattern anywhere in the string", function()
            local def = { type = "string", pattern = "^[a-z]+$" }
            assert.equal("abc", schema.validate(def, "abc"))
            assert.same({ 'does not match pattern "^[a-z]+$"' }, error_lines(def, "abc1"))
            assert.equal("x-1", schema.validate({ type = "string", pattern = "\\d" }, "x-1"))
            assert.equal("GET", schema.validate({ type = "string", pattern = "^(?:GET|POST)$" }, "GET"))
            assert.same({ 'does not match pattern "(?i)^get$"' },
                error_lines({ type = "string", pattern = "(?i)^get$" }, "gets"))
        end)

        it("matches with the same compiled pattern many times", function()
            local validator = assert(schema.compile({ type = "string", pattern = "^[0-9a-f]{8}$" }))
            local ok_count, bad_count = 0, 0
            for i = 1, 2000 do
                local value = i % 2 == 0 and string.format("%08x", i) or "nothex!!"
                local out, errs = validator:validate(value)
                if out then
                    ok_count = ok_count + 1
                else
                    assert.equal('does not match pattern "^[0-9a-f]{8}$"', errs[1].message)
                    bad_count = bad_count + 1
                end
            end
            assert.equal(1000, ok_count)
            assert.equal(1000, bad_count)
        end)

        it("matches a Lua pattern under lua_pattern", function()
            local def = { type = "string", lua_pattern = "^%w+$" }
            assert.equal("abc1", schema.validate(def, "abc1"))
            assert.same({ 'does not match pattern "^%w+$"' }, error_lines(def, "a-b"))
        end)

        it("refuses a bad regex or Lua pattern when compiling", function()
            assert.equal('invalid schema: pattern: bad regex "x(": missing closing parenthesis at offset 2',
                compile_error({ type = "string", pattern = "x(" }))
            assert.equal("invalid schema: properties.p.lua_pattern: bad Lua pattern \"[a\": "
                .. "malformed pattern (missing ']')",
                compile_error({ type = "object", properties = { p = { type = "string", lua_pattern = "[a" } } }))
        end)
    end)

    describe("numbers", function()
        it("checks minimum and maximum, inclusive", function()
            local def = { type = "integer", minimum = 1, maximum = 100 }
            assert.same({ "must be at least 1" }, error_lines(def, 0))
            assert.same({ "must be at most 100" }, error_lines(def, 101))
            assert.equal(1, schema.validate(def, 1))
            assert.equal(100, schema.validate(def, 100))
        end)

        it("checks exclusive_minimum and exclusive_maximum", function()
            local def = { type = "number", exclusive_minimum = 0, exclusive_maximum = 1.5 }
            assert.same({ "must be greater than 0" }, error_lines(def, 0))
            assert.same({ "must be less than 1.5" }, error_lines(def, 1.5))
            assert.equal(0.25, schema.validate(def, 0.25))
        end)

        it("refuses integers beyond 2^53 and infinite numbers", function()
            assert.same({ "expected integer, got 1e+300" }, error_lines({ type = "integer" }, 1e300))
            assert.same({ "expected number, got inf" }, error_lines({ type = "number" }, math.huge))
        end)
    end)

    describe("enum", function()
        it("accepts only the listed values", function()
            local def = { type = "string", enum = { "local", "redis" } }
            assert.equal("redis", schema.validate(def, "redis"))
            assert.same({ 'expected one of "local", "redis", got "x"' }, error_lines(def, "x"))
            assert.same({ 'expected string, got 1' }, error_lines(def, 1))
            assert.same({ "expected one of 1, 2, 3, got 4" }, error_lines({ type = "integer", enum = { 1, 2, 3 } }, 4))
        end)

        it("checks the values against the type when compiling", function()
            assert.equal('invalid schema: enum[1]: expected integer, got "2"',
                compile_error({ type = "integer", enum = { 1, "2" } }))
            assert.equal("invalid schema: enum: expected a non-empty list of values, got an empty table",
                compile_error({ type = "string", enum = {} }))
        end)
    end)

    describe("formats", function()
        it("normalises durations to seconds", function()
            local def = { format = "duration" }
            assert.equal(10, schema.validate(def, "10s"))
            assert.equal(0.5, schema.validate(def, "500ms"))
            assert.equal(120, schema.validate(def, "2m"))
            assert.equal(90, schema.validate(def, "1.5m"))
            assert.equal(3600, schema.validate(def, "1h"))
            assert.equal(30, schema.validate(def, "30"))
            assert.equal(2.5, schema.validate(def, 2.5))
        end)

        it("refuses malformed durations", function()
            local def = { format = "duration" }
            assert.same({ 'expected duration (e.g. 500ms, 2s, 1.5m), got "2 seconds"' }, error_lines(def, "2 seconds"))
            assert.same({ 'expected duration (e.g. 500ms, 2s, 1.5m), got "1d"' }, error_lines(def, "1d"))
            assert.same({ 'expected duration (e.g. 500ms, 2s, 1.5m), got "1."' }, error_lines(def, "1."))
            assert.same({ "expected duration (e.g. 500ms, 2s, 1.5m), got -1" }, error_lines(def, -1))
            assert.same({ "expected duration (e.g. 500ms, 2s, 1.5m), got true" }, error_lines(def, true))
            assert.same({ 'expected duration in whole seconds (e.g. 2s, 1m), got "500ms"' },
                error_lines({ type = "integer", format = "duration" }, "500ms"))
        end)

        it("normalises sizes to bytes, 1024-based, any case", function()
            local def = { format = "size" }
            assert.equal(1024, schema.validate(def, "1024"))
            assert.equal(16384, schema.validate(def, "16k"))
            assert.equal(16384, schema.validate(def, "16K"))
            assert.equal(10485760, schema.validate(def, "10m"))
            assert.equal(1073741824, schema.validate(def, "1g"))
            assert.equal(512, schema.validate(def, 512))
        end)

        it("refuses malformed sizes", function()
            local def = { format = "size" }
            assert.same({ 'expected size (e.g. 1024, 16k, 10m, 1g), got "10mb"' }, error_lines(def, "10mb"))
            assert.same({ 'expected size (e.g. 1024, 16k, 10m, 1g), got "1.5k"' }, error_lines(def, "1.5k"))
            assert.same({ "expected size (e.g. 1024, 16k, 10m, 1g), got 1.5" }, error_lines(def, 1.5))
        end)

        it("applies bounds to the normalised number", function()
            local def = { format = "size", minimum = 1024, maximum = 1048576 }
            assert.same({ "must be at least 1024" }, error_lines(def, "512"))
            assert.same({ "must be at most 1048576" }, error_lines(def, "2m"))
            assert.equal(2048, schema.validate(def, "2k"))
        end)
    end)

    describe("one_of and any_of", function()
        local upstream = {
            one_of = {
                { type = "string", min_length = 1 },
                { type = "object", required = { "host" }, properties = {
                    host = { type = "string" },
                    port = { type = "integer", default = 80 },
                } },
            },
        }

        it("gives the value of the one alternative that matches, with its defaults", function()
            assert.equal("svc", schema.validate(upstream, "svc"))
            assert.same({ host = "h", port = 80 }, schema.validate(upstream, { host = "h" }))
        end)

        it("says briefly why each alternative failed", function()
            assert.same({ "matches no alternative: #0: expected string, got 5; #1: expected object, got 5" },
                error_lines(upstream, 5))
            assert.same({ 'to: matches no alternative: #0: expected string, got an object; '
                .. '#1: host: required field missing (and 2 more)' },
                error_lines({ type = "object", properties = { to = upstream } }, { to = { port = "x", x = 1 } }))
        end)

        it("refuses a value that matches more than one alternative", function()
            local def = { one_of = { { type = "integer" }, { type = "number", minimum = 0 } } }
            assert.equal(-1, schema.validate(def, -1))
            assert.same({ "matches 2 alternatives (#0, #1), expected exactly one" }, error_lines(def, 1))
        end)

        it("any_of takes the first alternative that matches", function()
            local def = { any_of = { { type = "integer" }, { type = "number", minimum = 0 } } }
            assert.equal(1, schema.validate(def, 1))
            assert.equal(0.5, schema.validate(def, 0.5))
            assert.same({ "matches no alternative: #0: expected integer, got -0.5; #1: must be at least 0" },
                error_lines(def, -0.5))
        end)

        it("takes a default and nullable", function()
            local def = { type = "object", properties = {
                target = { one_of = { { type = "string" }, { type = "integer" } }, default = "x", nullable = true },
            } }
            assert.same({ target = "x" }, schema.validate(def, {}))
            assert.equal(cjson.null, schema.validate(def, { target = cjson.null }).target)
        end)
    end)

    describe("format_errors", function()
        local errs = {
            { path = "limit", message = "must be at least 1" },
            { path = "rules[0].header", message = "required field missing" },
            { path = "", message = 'unknown field "x"' },
            { path = "[2]", message = "expected string, got 1" },
        }

        it("joins the prefix and the path", function()
            assert.same({
                "plugins.rl.limit: must be at least 1",
                "plugins.rl.rules[0].header: required field missing",
                'plugins.rl: unknown field "x"',
                "plugins.rl[2]: expected string, got 1",
            }, schema.format_errors(errs, "plugins.rl"))
        end)

        it("works without a prefix", function()
            assert.same({
                "limit: must be at least 1",
                "rules[0].header: required field missing",
                'unknown field "x"',
                "[2]: expected string, got 1",
            }, schema.format_errors(errs))
        end)
    end)

    describe("invalid definitions", function()
        it("are reported by compile with their path in the definition", function()
            assert.equal('invalid schema: properties.limit: unknown keyword "minimun"',
                compile_error({ type = "object", properties = { limit = { type = "integer", minimun = 1 } } }))
            assert.equal('invalid schema: keyword "type" missing', compile_error({ minimum = 1 }))
            assert.equal('invalid schema: type: expected one of "any", "array", "boolean", "integer", "number", '
                .. '"object", "string", got "int"', compile_error({ type = "int" }))
            assert.equal('invalid schema: keyword "minimum" does not apply to type "string"',
                compile_error({ type = "string", minimum = 1 }))
            assert.equal('invalid schema: keyword "format" does not apply to type "string"',
                compile_error({ type = "string", format = "size" }))
            assert.equal('invalid schema: format: expected one of "duration", "size", got "email"',
                compile_error({ type = "string", format = "email" }))
            assert.equal("invalid schema: items.properties.a: expected a schema table, got \"string\"",
                compile_error({ type = "array", items = { type = "object", properties = { a = "string" } } }))
            assert.equal('invalid schema: required[1]: "b" is not among the properties',
                compile_error({ type = "object", required = { "a", "b" }, properties = { a = { type = "any" } } }))
            assert.equal("invalid schema: min_items is greater than max_items",
                compile_error({ type = "array", min_items = 3, max_items = 2 }))
            assert.equal("invalid schema: max_length: expected a non-negative integer, got -1",
                compile_error({ type = "string", max_length = -1 }))
            assert.equal('invalid schema: minimum: expected number, got "1"',
                compile_error({ type = "integer", minimum = "1" }))
            assert.equal("invalid schema: description: expected string, got 1",
                compile_error({ type = "integer", description = 1 }))
            assert.equal('invalid schema: additional_properties: expected a boolean or a schema, got "no"',
                compile_error({ type = "object", additional_properties = "no" }))
            assert.equal('invalid schema: keyword "type" cannot be combined with one_of',
                compile_error({ type = "string", one_of = { { type = "string" } } }))
            assert.equal('invalid schema: keyword "any_of" cannot be combined with one_of',
                compile_error({ one_of = { { type = "string" } }, any_of = { { type = "string" } } }))
            assert.equal("invalid schema: one_of[1]: expected a schema table, got 2",
                compile_error({ one_of = { { type = "string" }, 2 } }))
        end)

        it("refuses a schema that contains itself", function()
            local def = { type = "object", properties = {} }
            def.properties.child = def
            assert.equal("invalid schema: properties.child: schema contains itself", compile_error(def))
        end)

        it("accepts the same sub-schema used twice", function()
            local port = { type = "integer", minimum = 1, maximum = 65535 }
            local validator = assert(schema.compile({ type = "object", properties = { a = port, b = port } }))
            assert.same({ a = 1, b = 2 }, validator:validate({ a = 1, b = 2 }))
        end)
    end)

    describe("misuse", function()
        it("raises on a definition that is not a table", function()
            assert.has_error(function() schema.compile("string") end, "schema.compile: expected a table, got string")
            assert.has_error(function() schema.validate(nil, 1) end,
                "schema.validate: expected a schema table, got nil")
        end)

        it("raises when schema.validate gets an invalid definition", function()
            assert.has_error(function() schema.validate({ type = "int" }, 1) end,
                'invalid schema: type: expected one of "any", "array", "boolean", "integer", "number", '
                .. '"object", "string", got "int"')
        end)

        it("raises on validate called with a dot or a bad prefix", function()
            local validator = assert(schema.compile({ type = "integer" }))
            assert.has_error(function() validator.validate(1) end, "validate: call it as validator:validate(value)")
            assert.has_error(function() validator:validate(1, 2) end,
                "validate: path_prefix must be a string, got number")
        end)

        it("raises when format_errors gets no list", function()
            assert.has_error(function() schema.format_errors(nil) end,
                "schema.format_errors: expected a list of errors, got nil")
        end)
    end)

    describe("a rate-limiting plugin schema", function()
        local def = {
            type = "object",
            required = { "limit" },
            properties = {
                limit = { type = "integer", minimum = 1, description = "requests allowed per window" },
                window = { format = "duration", default = "60s", exclusive_minimum = 0,
                    description = "length of the window" },
                policy = { type = "string", enum = { "local", "redis" }, default = "local",
                    description = "where counters live" },
                limit_by = { type = "string", enum = { "ip", "consumer", "header" }, default = "ip" },
                header_name = { type = "string", pattern = "^[A-Za-z0-9-]+$" },
                redis = {
                    type = "object",
                    default = {},
                    description = "used when policy is redis",
                    properties = {
                        host = { type = "string", default = "127.0.0.1" },
                        port = { type = "integer", minimum = 1, maximum = 65535, default = 6379 },
                        timeout = { format = "duration", default = "2s" },
                        database = { type = "integer", minimum = 0, default = 0 },
                        password = { type = "string", nullable = true },
                    },
                },
            },
        }
        local validator = assert(schema.compile(def))

        it("fills every default from a minimal config", function()
            assert.same({
                limit = 10,
                window = 60,
                policy = "local",
                limit_by = "ip",
                redis = { host = "127.0.0.1", port = 6379, timeout = 2, database = 0 },
            }, validator:validate({ limit = 10 }))
        end)

        it("keeps given values and normalises durations", function()
            local input = { limit = 100, window = "1m", policy = "redis", limit_by = "header",
                header_name = "X-Api-Key", redis = { host = "redis", timeout = "500ms" } }
            assert.same({
                limit = 100,
                window = 60,
                policy = "redis",
                limit_by = "header",
                header_name = "X-Api-Key",
                redis = { host = "redis", port = 6379, timeout = 0.5, database = 0 },
            }, validator:validate(input))
            assert.equal("1m", input.window)
            assert.same({ host = "redis", timeout = "500ms" }, input.redis)
        end)

        it("reports every mistake with its path", function()
            local out, errs = validator:validate({ window = "soon", policy = "memcached",
                header_name = "X Api", redis = { port = 70000, db = 1 } }, "plugins.rate-limiting")
            assert.is_nil(out)
            assert.same({
                'plugins.rate-limiting.header_name: does not match pattern "^[A-Za-z0-9-]+$"',
                "plugins.rate-limiting.limit: required field missing",
                'plugins.rate-limiting.policy: expected one of "local", "redis", got "memcached"',
                "plugins.rate-limiting.redis.port: must be at most 65535",
                'plugins.rate-limiting.redis: unknown field "db"',
                'plugins.rate-limiting.window: expected duration (e.g. 500ms, 2s, 1.5m), got "soon"',
            }, schema.format_errors(errs))
        end)

        it("refuses a limit below 1 or given as a string", function()
            assert.same({ "limit: must be at least 1" }, error_lines(def, { limit = 0 }))
            assert.same({ 'limit: expected integer, got "10"' }, error_lines(def, { limit = "10" }))
            assert.same({ "window: must be greater than 0" }, error_lines(def, { limit = 1, window = "0s" }))
        end)

        it("validates a config decoded from JSON", function()
            local conf = validator:validate(cjson.decode(
                '{"limit": 5, "window": 30, "redis": {"password": null, "port": 6380}}'))
            assert.equal(5, conf.limit)
            assert.equal(30, conf.window)
            assert.equal(6380, conf.redis.port)
            assert.equal(cjson.null, conf.redis.password)
        end)
    end)
end)
