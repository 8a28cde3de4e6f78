-- moongate.redis: commands, pipelines and scripts against a real
-- redis-server, from access, header_filter and log.
local helpers = require "spec.helpers"

describe("plugins: moongate.redis", function()
    local gw

    lazy_setup(function()
        local up = helpers.start_upstream { name = "up" }
        local red = helpers.start_redis()
        gw = helpers.start_gateway {
            plugin_paths = { "spec/fixtures/plugins" },
            redis = { url = "redis://127.0.0.1:" .. red.port .. "/0" },
            upstreams = { u = { targets = { up:address() } } },
            routes = {
                { name = "r", paths = { "/" }, upstream = "u", plugins = { ["redis-probe"] = {} } },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("runs commands, pipelines and scripts from access and header_filter", function()
        local res = assert(helpers.http(gw.port, { path = "/echo/one" }))
        assert.equal(200, res.status)
        assert.equal("1", helpers.echo_header(res.json, "X-Hits"), res.body)
        assert.equal("v1|true|true", helpers.echo_header(res.json, "X-Pipe"))
        assert.equal("20", helpers.echo_header(res.json, "X-Scripted"))
        assert.equal("1", res.headers["x-hits-now"])
        res = assert(helpers.http(gw.port, { path = "/echo/two" }))
        assert.equal("2", helpers.echo_header(res.json, "X-Hits"))
        assert.equal("40", helpers.echo_header(res.json, "X-Scripted"))
    end)

    it("refuses an argument list with a nil in it", function()
        local res = assert(helpers.http(gw.port, { path = "/hole" }))
        assert.equal(200, res.status)
        assert.is_false(res.json.ok)
        assert.truthy(res.json.err:find("without nil", 1, true), res.json.err)
    end)

    it("returns a Redis error reply as nil, err", function()
        local res = assert(helpers.http(gw.port, { path = "/error" }))
        assert.equal(200, res.status)
        assert.is_nil(res.json.value)
        assert.truthy(res.json.err:find("not an integer", 1, true), res.json.err)
    end)
end)
