-- Requests whose plugins wait (moongate.sleep, moongate.http) are suspended
-- coroutines: many of them at once cost bounded memory, and a client that
-- goes away cancels what its request waits on.
local helpers = require "spec.helpers"

local N = 1500 -- requests suspended at once

describe("plugins: waiting requests", function()
    local gw, up

    lazy_setup(function()
        up = helpers.start_upstream { name = "svc" }
        gw = helpers.start_gateway {
            plugin_paths = { "spec/fixtures/plugins" },
            shared_dicts = { waits = "1m" },
            upstreams = { u = { targets = { up:address() } } },
            routes = {
                {
                    name = "wait",
                    paths = { "/" },
                    upstream = "u",
                    plugins = { waiter = { base = "http://" .. up:address() } },
                },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function resumed(id)
        local res = assert(helpers.http(gw.port, { path = "/count?id=" .. id }))
        assert.equal(200, res.status)
        return res.json.resumed
    end

    it("keeps " .. N .. " requests waiting at once in one worker, with bounded memory", function()
        local pid = gw:wait_workers(1)[1]
        -- Warm the worker up first, so its Lua state and buffers exist.
        for _ = 1, 20 do
            assert.equal(200, assert(helpers.http(gw.port, { path = "/sleep?ms=1&id=warm" })).status)
        end
        local before = helpers.rss_kb(pid)
        local clients = {}
        for i = 1, N do
            clients[i] = assert(helpers.connect(gw.port, { timeout = 30 }))
            assert(clients[i]:send_request { path = "/sleep?ms=1500&id=many" })
        end
        -- All of them are suspended now (the sleep is 1.5 s): count the
        -- memory they hold.
        helpers.sleep(0.5)
        local during = helpers.rss_kb(pid)
        local ok = 0
        for i = 1, N do
            local res = clients[i]:read_response()
            if res and res.status == 200 then
                ok = ok + 1
            end
            clients[i]:close()
        end
        assert.equal(N, ok)
        assert.equal(N, resumed("many"))
        local per_request = (during - before) * 1024 / N
        -- A suspended request holds its request structure, its buffers and a
        -- coroutine (about 20 KiB); far below 64 KiB.
        assert.is_true(per_request < 64 * 1024,
            ("%d bytes per waiting request (%d KiB before, %d KiB during)"):format(per_request,
                before, during))
        assert.same({ pid }, gw:worker_pids())
    end)

    -- /sleep waits in moongate.sleep, /call in an HTTP call to the upstream.
    for _, wait in ipairs { "sleep", "call" } do
        it("cancels a wait in /" .. wait .. " when the client goes away", function()
            local c = assert(helpers.connect(gw.port))
            assert(c:send_request { path = "/" .. wait .. "?ms=800&id=gone-" .. wait })
            helpers.sleep(0.2)
            c:close()
            helpers.sleep(1.0)
            assert.equal(0, resumed("gone-" .. wait))
            local res = assert(helpers.http(gw.port, { path = "/" .. wait .. "?ms=10&id=after-" .. wait }))
            assert.equal(200, res.status)
            assert.equal(1, resumed("after-" .. wait))
        end)
    end

    it("logs the aborted requests with status 499", function()
        helpers.wait_until(function()
            local n = 0
            for _, line in ipairs(gw:access_log()) do
                if line.status == 499 and line.path and line.path:find("gone", 1, true) then
                    n = n + 1
                end
            end
            return n == 2
        end, 3, "two 499 lines in the access log")
    end)
end)

describe("plugins: waiting requests and reload", function()
    local gw, up, cfg

    lazy_setup(function()
        up = helpers.start_upstream { name = "svc" }
        cfg = {
            plugin_paths = { "spec/fixtures/plugins" },
            shared_dicts = { waits = "1m" },
            timeouts = { drain = "500ms" },
            upstreams = { u = { targets = { up:address() } } },
            routes = {
                {
                    name = "wait",
                    paths = { "/" },
                    upstream = "u",
                    plugins = { waiter = { base = "http://" .. up:address() } },
                },
            },
        }
        gw = helpers.start_gateway(cfg)
    end)

    lazy_teardown(helpers.stop_all)

    it("drops waits still running when the old worker's drain time is over", function()
        local old = gw:wait_workers(1)
        local sleeping = assert(helpers.connect(gw.port))
        assert(sleeping:send_request { path = "/sleep?ms=3000&id=reload-sleep" })
        local calling = assert(helpers.connect(gw.port))
        assert(calling:send_request { path = "/call?ms=3000&id=reload-call" })
        helpers.sleep(0.2)
        assert(gw:reload(cfg))
        -- The old worker gives them 500 ms, then closes their connections
        -- without an answer and exits.
        local closed, data = sleeping:closed(2.5)
        assert.is_true(closed)
        assert.equal("", data or "")
        closed, data = calling:closed(1)
        assert.is_true(closed)
        assert.equal("", data or "")
        helpers.wait_until(function()
            local pids = gw:worker_pids()
            return #pids == 1 and pids[1] ~= old[1]
        end, 5, "the old worker to exit")
        local res = assert(helpers.http(gw.port, { path = "/count?id=reload-sleep" }))
        assert.equal(0, res.json.resumed)
        res = assert(helpers.http(gw.port, { path = "/count?id=reload-call" }))
        assert.equal(0, res.json.resumed)
    end)

    it("frees a log phase still waiting when the old worker's drain time is over", function()
        local old = gw:wait_workers(1)
        local res = assert(helpers.http(gw.port, { path = "/logwait?ms=3000&id=drain" }))
        assert.equal(200, res.status)
        assert(gw:reload(cfg))
        helpers.wait_until(function()
            local pids = gw:worker_pids()
            return #pids == 1 and pids[1] ~= old[1]
        end, 2.5, "the old worker to exit at the end of its drain time")
        -- The log phase never finished; under the sanitizer build, what it
        -- held would be reported as leaked when the worker exited.
        res = assert(helpers.http(gw.port, { path = "/logcount?id=drain" }))
        assert.equal(0, res.json.logged)
    end)
end)
