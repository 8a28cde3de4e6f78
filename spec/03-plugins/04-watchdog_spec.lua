-- A plugin stuck in a loop: the master sees the worker's heartbeat stop and
-- replaces the worker within 2 s; the other worker keeps serving meanwhile.
local helpers = require "spec.helpers"
local socket = require "socket"

describe("plugins: a script stuck in a loop", function()
    lazy_teardown(helpers.stop_all)

    it("gets its worker replaced while the other worker keeps serving", function()
        local up = helpers.start_upstream { name = "up" }
        local gw = helpers.start_gateway {
            workers = 2,
            plugin_paths = { "spec/fixtures/plugins" },
            upstreams = { u = { targets = { up:address() } } },
            routes = {
                { name = "spin", paths = { "/spin" }, upstream = "u", plugins = { spin = {} } },
                { name = "ok", paths = { "/" }, upstream = "u" },
            },
        }
        gw:wait_workers(2, 5)
        local before = gw:worker_pids()
        local c = assert(helpers.connect(gw.port))
        assert(c:send(helpers.request_string { path = "/spin" }))
        local t0 = helpers.now()
        -- Requests on new connections meanwhile: the kernel spreads them over
        -- both workers' sockets. Those on the healthy worker are answered at
        -- once; those queued on the stuck worker's socket wait for its
        -- replacement, which takes the socket over: none is lost.
        helpers.sleep(0.1)
        local clients = {}
        for i = 1, 12 do
            clients[i] = assert(helpers.connect(gw.port))
            assert(clients[i]:send(helpers.request_string { path = "/echo" }))
        end
        -- Which answers are there before the stuck worker could be replaced?
        local socks = {}
        for i = 1, 12 do
            socks[i] = clients[i].sock
        end
        local ready = socket.select(socks, nil, 0.5)
        assert.is_true(#ready > 0, "no request was answered while a worker was stuck")
        for i = 1, 12 do
            local res = assert(clients[i]:read_response())
            assert.equal(200, res.status)
            clients[i]:close()
        end
        -- The stuck worker is replaced within 2 s: its client connection
        -- closes and a new pid appears.
        local closed = c:closed(2.5)
        assert.is_true(closed, "the stuck worker's connection stayed open")
        helpers.wait_until(function()
            local now = gw:worker_pids()
            if #now ~= 2 then
                return false
            end
            local changed = 0
            for _, pid in ipairs(now) do
                local old = false
                for _, p in ipairs(before) do
                    old = old or p == pid
                end
                changed = changed + (old and 0 or 1)
            end
            return changed == 1
        end, 2.5, "a new worker in place of the stuck one")
        assert.is_true(helpers.now() - t0 < 3.5)
        assert.truthy(gw:error_log():find("stopped responding", 1, true), gw:error_log())
        for _ = 1, 10 do
            assert.equal(200, assert(helpers.http(gw.port, { path = "/echo" })).status)
        end
    end)
end)
