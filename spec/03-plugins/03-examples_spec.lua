-- The example plugin examples/plugins/api-key and its config
-- examples/plugins.yaml behave as docs/plugins.md says: 401 without a key,
-- 403 with a wrong one, the consumer sent upstream instead of the key, a
-- per-consumer limit counted across workers in a shared dictionary, 429
-- past it; the example config passes `moongate check`.
local helpers = require "spec.helpers"

local PLUGIN = "examples/plugins/api-key/init.lua"

local KEYS = {
    { key = "alice-secret-key", consumer = "alice" },
    { key = "bob-secret-key", consumer = "bob" },
    { key = "carol-secret-key", consumer = "carol" },
}

local function route(name, settings)
    local conf = { keys = KEYS, limit = 3, window = "60s" }
    for k, v in pairs(settings or {}) do
        conf[k] = v
    end
    return { name = name, paths = { "/" .. name }, upstream = "example", plugins = { ["api-key"] = conf } }
end

describe("examples: the api-key plugin", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "example" }
        gw = helpers.start_gateway {
            workers = 2,
            plugin_paths = { "examples/plugins" },
            shared_dicts = { api_keys = "1m" },
            upstreams = { example = { targets = { up:address() } } },
            routes = {
                route("echo"),
                route("keep", { hide_key = false, limit = 100 }),
                route("nodict", { dict = "missing" }),
            },
        }
        gw:wait_workers(2, 5)
    end)

    lazy_teardown(helpers.stop_all)

    local function get(path, key)
        local headers = key and { ["X-API-Key"] = key } or nil
        return assert(helpers.http(gw.port, { path = path, headers = headers }))
    end

    it("answers 401 without a key, and does not call the upstream", function()
        local before = up:stats().requests
        local res = get("/echo/hello")
        assert.equal(401, res.status)
        assert.same({ error = "missing API key" }, res.json)
        assert.equal("application/json", res.headers["content-type"])
        assert.equal('ApiKey header="X-API-Key"', res.headers["www-authenticate"])
        assert.truthy(res.headers["x-request-id"])
        assert.is_nil(res.headers["x-ratelimit-limit"])
        assert.equal(before, up:stats().requests)
    end)

    it("answers 403 for a key it does not know", function()
        local res = get("/echo/hello", "wrong-key-123")
        assert.equal(403, res.status)
        assert.same({ error = "invalid API key" }, res.json)
    end)

    it("sends the consumer upstream instead of the key and reports the limit", function()
        local res = get("/echo/hello", "alice-secret-key")
        assert.equal(200, res.status)
        assert.equal("example", res.headers["x-upstream"])
        assert.equal("/echo/hello", res.json.path)
        assert.equal("alice", helpers.echo_header(res.json, "X-Consumer"))
        assert.is_nil(helpers.echo_header(res.json, "X-API-Key"))
        assert.equal("3", res.headers["x-ratelimit-limit"])
        assert.equal("2", res.headers["x-ratelimit-remaining"])
    end)

    it("finds the header in any case", function()
        local res = assert(helpers.http(gw.port, {
            path = "/keep",
            headers = { ["x-api-key"] = "alice-secret-key" },
        }))
        assert.equal(200, res.status)
        assert.equal("alice", helpers.echo_header(res.json, "X-Consumer"))
        -- hide_key = false: the key goes upstream too.
        assert.equal("alice-secret-key", helpers.echo_header(res.json, "X-API-Key"))
    end)

    it("answers 429 after `limit` requests of a consumer, counted across workers", function()
        -- Fresh connections, so the requests spread over both workers.
        for i = 1, 3 do
            local res = get("/echo/" .. i, "bob-secret-key")
            assert.equal(200, res.status)
            assert.equal(tostring(3 - i), res.headers["x-ratelimit-remaining"])
        end
        local before = up:stats().requests
        local res = get("/echo/4", "bob-secret-key")
        assert.equal(429, res.status)
        assert.same({ error = "rate limit exceeded" }, res.json)
        local retry = tonumber(res.headers["retry-after"])
        assert.is_true(retry ~= nil and retry >= 1 and retry <= 60, tostring(res.headers["retry-after"]))
        assert.equal("3", res.headers["x-ratelimit-limit"])
        assert.equal("0", res.headers["x-ratelimit-remaining"])
        assert.equal(before, up:stats().requests)
        -- Another consumer has a counter of its own.
        assert.equal(200, get("/echo/5", "carol-secret-key").status)
    end)

    it("turns a missing shared dictionary into a JSON 500 and logs why", function()
        local res = get("/nodict", "alice-secret-key")
        assert.equal(500, res.status)
        local id = res.json.request_id
        assert.equal(id, res.headers["x-request-id"])
        helpers.wait_until(function()
            return gw:error_log():find(id, 1, true)
        end, 3, "the error to be logged")
        local log = gw:error_log()
        assert.truthy(log:find("route nodict: plugin api-key failed in access: " .. PLUGIN, 1, true), log)
        assert.truthy(log:find("shared dictionary missing is not declared in shared_dicts", 1, true), log)
        assert.equal(200, get("/keep", "alice-secret-key").status)
    end)
end)

describe("examples: configuration", function()
    lazy_teardown(helpers.stop_all)

    it("examples/plugins.yaml passes moongate check", function()
        local code, out = helpers.run { "check", "-c", "examples/plugins.yaml" }
        assert.equal(0, code, out)
        assert.truthy(out:find("examples/plugins.yaml: ok", 1, true), out)
    end)

    it("reports wrong api-key settings as file:line: path: message", function()
        local file = helpers.tmpdir() .. "/bad.yaml"
        helpers.write_file(file, [[
plugin_paths: [ examples/plugins ]
upstreams:
  example: { targets: [ "127.0.0.1:9" ] }
routes:
  - name: echo
    paths: [ /echo ]
    upstream: example
    plugins:
      api-key:
        keys:
          - { key: short, consumer: alice }
        limit: ten
        window: soon
]])
        local code, out = helpers.run { "check", "-c", file }
        assert.equal(1, code, out)
        assert.truthy(out:find(file .. ":11: routes[0].plugins.api-key.keys[0].key: must be at least 8 bytes long",
            1, true), out)
        assert.truthy(out:find(file .. ':12: routes[0].plugins.api-key.limit: expected integer, got "ten"',
            1, true), out)
        assert.truthy(out:find(file .. ':13: routes[0].plugins.api-key.window: expected duration', 1, true), out)
    end)

    it("docs/plugins.md shows the example plugin as it is", function()
        local code = assert(helpers.read_file(PLUGIN))
        local guide = assert(helpers.read_file("docs/plugins.md"))
        assert.truthy(guide:find("```lua\n" .. code .. "```\n", 1, true),
            "the code in docs/plugins.md differs from " .. PLUGIN)
    end)
end)
