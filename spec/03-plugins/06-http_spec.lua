-- moongate.http: non-blocking HTTP calls from plugins, several at once, in
-- access, header_filter and log.
local helpers = require "spec.helpers"

describe("plugins: moongate.http", function()
    local gw, up

    lazy_setup(function()
        up = helpers.start_upstream { name = "svc" }
        gw = helpers.start_gateway {
            plugin_paths = { "spec/fixtures/plugins" },
            shared_dicts = { fetched = "1m" },
            upstreams = { u = { targets = { up:address() } } },
            routes = {
                {
                    name = "fetch",
                    paths = { "/" },
                    upstream = "u",
                    plugins = { fetch = { base = "http://" .. up:address() } },
                },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("runs several calls at once from access and reports each result", function()
        local res = assert(helpers.http(gw.port, { path = "/echo", timeout = 5 }))
        assert.equal(200, res.status)
        local echo = res.json
        assert.equal("200,200,200", helpers.echo_header(echo, "X-Statuses"))
        assert.equal("POST", helpers.echo_header(echo, "X-Second-Method"))
        assert.equal("plugin", helpers.echo_header(echo, "X-Third-From"))
        assert.equal("connection refused,timeout", helpers.echo_header(echo, "X-Errors"))
        -- Two 300 ms calls and a 200 ms timeout ran side by side.
        local ms = tonumber(helpers.echo_header(echo, "X-Elapsed-Ms"))
        assert.is_true(ms >= 290 and ms < 600, "the calls took " .. ms .. " ms")
    end)

    it("calls out from header_filter and log", function()
        local res = assert(helpers.http(gw.port, { path = "/echo", timeout = 5 }))
        assert.equal("204", res.headers["x-header-filter-call"])
        helpers.wait_until(function()
            local r = helpers.http(gw.port, { path = "/log-result" })
            return r and r.json and r.json.log == 200
        end, 3, "the call from the log phase")
    end)

    it("refuses a waiting call from a coroutine the plugin made, without harm", function()
        local pids = gw:worker_pids()
        local res = assert(helpers.http(gw.port, { path = "/own-coroutine" }))
        assert.equal(200, res.status)
        assert.is_false(res.json.ok)
        assert.truthy(res.json.err:find("not from a coroutine of your own", 1, true), res.json.err)
        assert.same(pids, gw:worker_pids())
    end)
end)
