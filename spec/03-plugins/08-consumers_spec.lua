-- Consumers: credentials a plugin looks up, and plugin settings that apply
-- once a request's consumer is identified.
local helpers = require "spec.helpers"

describe("plugins: consumers", function()
    local gw

    lazy_setup(function()
        local up = helpers.start_upstream { name = "up" }
        gw = helpers.start_gateway {
            plugin_paths = { "spec/fixtures/plugins" },
            upstreams = { u = { targets = { up:address() } } },
            consumers = {
                {
                    username = "alice",
                    credentials = { ["key-check"] = { key = "alice-key" } },
                    plugins = { ["probe-a"] = { upstream_header = "for-alice" } },
                },
                {
                    username = "bob",
                    credentials = { ["key-check"] = { { key = "bob-1" }, { key = "bob-2" } } },
                    plugins = { ["probe-b"] = { upstream_header = "bob-only" } },
                },
            },
            routes = {
                {
                    name = "r",
                    paths = { "/" },
                    upstream = "u",
                    plugins = { ["key-check"] = {}, ["probe-a"] = { upstream_header = "route" } },
                },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function get(key)
        return assert(helpers.http(gw.port, { path = "/echo", headers = { ["X-Key"] = key } }))
    end

    it("refuses an unknown key", function()
        assert.equal(401, get("nope").status)
    end)

    it("identifies the consumer and applies its own plugin settings", function()
        local res = get("alice-key")
        assert.equal(200, res.status)
        assert.equal("alice", helpers.echo_header(res.json, "X-Consumer"))
        assert.equal("for-alice", helpers.echo_header(res.json, "X-Probe-probe-a"))
        assert.is_nil(helpers.echo_header(res.json, "X-Probe-probe-b"))
    end)

    it("finds any of a consumer's credentials and runs its consumer-only plugin", function()
        for _, key in ipairs { "bob-1", "bob-2" } do
            local res = get(key)
            assert.equal(200, res.status)
            assert.equal("bob", helpers.echo_header(res.json, "X-Consumer"))
            assert.equal("route", helpers.echo_header(res.json, "X-Probe-probe-a"))
            assert.equal("bob-only", helpers.echo_header(res.json, "X-Probe-probe-b"))
        end
    end)

    it("checks consumers with the plugins' schemas", function()
        local dir = helpers.tmpdir()
        helpers.write_file(dir .. "/a.yaml", [[
listen: [ "127.0.0.1:1" ]
plugin_paths: [ spec/fixtures/plugins ]
consumers:
  - username: alice
    plugins:
      probe-a: { sleep: -2 }
  - username: alice
]])
        local code, out = helpers.run { "check", "-c", dir .. "/a.yaml" }
        assert.equal(1, code, out)
        assert.truthy(out:find(dir .. "/a.yaml:6: consumers[0].plugins.probe-a.sleep: "
            .. "must be at least 0", 1, true), out)
        assert.truthy(out:find(dir .. '/a.yaml:7: consumers[1].username: duplicate consumer "alice"',
            1, true), out)
        helpers.write_file(dir .. "/b.yaml", [[
listen: [ "127.0.0.1:1" ]
consumers:
  - credentials: {}
]])
        code, out = helpers.run { "check", "-c", dir .. "/b.yaml" }
        assert.equal(1, code, out)
        assert.truthy(out:find(dir .. "/b.yaml:3: consumers[0].username: required field missing",
            1, true), out)
    end)
end)
