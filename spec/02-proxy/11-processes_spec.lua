-- Master and workers: worker count, restart of a dead worker, graceful stop
-- and reload by signal and by the CLI.
local helpers = require "spec.helpers"

local function cfg_with(up, routes)
    return {
        upstreams = { u = { targets = { up:address() } } },
        routes = routes,
    }
end

local OLD_ROUTES = { { name = "old", paths = { "/old" }, upstream = "u", strip_path = true } }
local NEW_ROUTES = {
    { name = "old", paths = { "/old" }, upstream = "u", strip_path = true },
    { name = "new", paths = { "/new" }, upstream = "u", strip_path = true },
}

local function status_of(gw, path)
    local res = assert(helpers.http(gw.port, { path = path }))
    return res.status
end

describe("processes: workers", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        local cfg = cfg_with(up, { { name = "r", paths = { "/" }, upstream = "u" } })
        cfg.workers = 2
        gw = helpers.start_gateway(cfg)
    end)

    lazy_teardown(helpers.stop_all)

    it("runs the configured number of workers as children of the master", function()
        local pids = gw:wait_workers(2)
        assert.equal(2, #pids)
        for _, pid in ipairs(pids) do
            assert.are_not.equal(gw.pid, pid)
        end
    end)

    it("replaces a worker killed with SIGKILL and keeps serving", function()
        local pids = gw:wait_workers(2)
        local victim = pids[1]
        assert.is_true(helpers.kill(victim, "KILL"))
        helpers.wait_until(function()
            local now = gw:worker_pids()
            if #now ~= 2 then
                return false
            end
            for _, pid in ipairs(now) do
                if pid == victim then
                    return false
                end
            end
            return true
        end, 10, "a new worker to replace " .. victim)
        for i = 1, 10 do
            local res = assert(helpers.http(gw.port, { path = "/echo?i=" .. i }))
            assert.equal(200, res.status)
        end
        assert.is_false((gw:poll()), "the master exited")
    end)
end)

describe("processes: SIGTERM", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway(cfg_with(up, { { name = "r", paths = { "/" }, upstream = "u" } }))
    end)

    lazy_teardown(helpers.stop_all)

    it("finishes a request in flight, then exits", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        assert(c:send_request { path = "/slow?ms=1000" })
        helpers.sleep(0.3)
        assert.is_true(gw:kill("TERM"))
        local res = assert(c:read_response())
        c:close()
        assert.equal(200, res.status)
        assert.equal("/slow?ms=1000", res.json.path)
        local exited, status = gw:wait(5)
        assert.is_true(exited, "the master is still running 5 s after SIGTERM")
        assert.equal(0, status)
        local late = helpers.connect(gw.port, { timeout = 1 })
        assert.is_nil(late, "still accepting connections after the master exited")
    end)
end)

describe("processes: reload", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway(cfg_with(up, OLD_ROUTES))
    end)

    lazy_teardown(helpers.stop_all)

    it("finishes a request in flight on SIGHUP and applies the new routes", function()
        assert.equal(404, status_of(gw, "/new/echo"))
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        assert(c:send_request { path = "/old/slow?ms=1000" })
        helpers.sleep(0.3)
        assert.is_true(gw:reload(cfg_with(up, NEW_ROUTES)))
        local res = assert(c:read_response())
        c:close()
        assert.equal(200, res.status)
        assert.equal("/slow?ms=1000", res.json.path)
        helpers.wait_until(function()
            return status_of(gw, "/new/echo") == 200
        end, 5, "the new route after SIGHUP")
        assert.equal(200, status_of(gw, "/old/echo"))
        assert.is_false((gw:poll()), "the master exited")
    end)

    it("refuses an invalid config on reload and keeps the running one", function()
        local bad = cfg_with(up, {
            { name = "old", paths = { "/old" }, upstream = "u", strip_path = true },
            { name = "broken", paths = { "/broken" }, upstream = "no-such-upstream" },
        })
        assert.is_true(gw:reload(bad))
        helpers.wait_until(function()
            return gw:error_log():find("no-such-upstream", 1, true)
        end, 5, "the reload error in the error log")
        assert.equal(200, status_of(gw, "/old/echo"))
        assert.equal(200, status_of(gw, "/new/echo"))
        assert.is_false((gw:poll()), "the master exited")
    end)
end)

describe("processes: CLI signals", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway(cfg_with(up, OLD_ROUTES))
    end)

    lazy_teardown(helpers.stop_all)

    it("`moongate reload -c FILE` reloads the running gateway", function()
        assert.equal(404, status_of(gw, "/new/echo"))
        gw:write_config(cfg_with(up, NEW_ROUTES))
        local code, out = helpers.run { "reload", "-c", gw.config_file }
        assert.equal(0, code, out)
        helpers.wait_until(function()
            return status_of(gw, "/new/echo") == 200
        end, 5, "the new route after `moongate reload`")
        assert.is_false((gw:poll()), "the master exited")
    end)

    it("`moongate stop -c FILE` stops the running gateway", function()
        local code, out = helpers.run { "stop", "-c", gw.config_file }
        assert.equal(0, code, out)
        local exited = gw:wait(5)
        assert.is_true(exited, "the master is still running 5 s after `moongate stop`")
    end)
end)
