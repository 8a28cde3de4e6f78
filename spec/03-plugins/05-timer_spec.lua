-- moongate.timer: functions run later or periodically, outside any request,
-- in their own coroutines (they may wait), until cancelled.
local helpers = require "spec.helpers"

describe("plugins: timers", function()
    local gw

    lazy_setup(function()
        local up = helpers.start_upstream { name = "up" }
        gw = helpers.start_gateway {
            plugin_paths = { "spec/fixtures/plugins" },
            shared_dicts = { counters = "1m" },
            upstreams = { u = { targets = { up:address() } } },
            routes = { { name = "t", paths = { "/" }, upstream = "u", plugins = { ticker = {} } } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function get(path)
        local res = assert(helpers.http(gw.port, { path = path }))
        assert.equal(200, res.status)
        return res.json
    end

    it("runs `every` and `after` timers, which may wait, and stops on cancel", function()
        assert.same({ ticks = 0, after = "pending" }, get("/start"))
        helpers.wait_until(function()
            return get("/ticks").ticks >= 3
        end, 3, "three ticks")
        assert.equal("done", get("/ticks").after)
        get("/stop")
        helpers.sleep(0.15)
        local stopped = get("/ticks").ticks
        helpers.sleep(0.35)
        assert.equal(stopped, get("/ticks").ticks)
    end)

    it("logs an error from a timer and keeps the worker", function()
        local pids = gw:worker_pids()
        get("/bad")
        helpers.wait_until(function()
            return gw:error_log():find("timer failed", 1, true)
        end, 3, "the timer error")
        assert.truthy(gw:error_log():find("not available outside a request phase", 1, true))
        assert.same(pids, gw:worker_pids())
        get("/ticks")
    end)
end)
