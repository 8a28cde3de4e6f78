-- WebSocket tunnels and the worker lifecycle: on reload or shutdown an old
-- worker keeps its tunnels relaying until timeouts.drain has passed, then
-- closes them (logging each one).
local helpers = require "spec.helpers"
local ws_client = require "spec.ws_client"
local socket = require "socket"

local function config(up, route_name)
    return {
        timeouts = { drain = "1s" },
        upstreams = { u = { targets = { up:address() } } },
        routes = { { name = route_name, paths = { "/" }, upstream = "u", websocket = true } },
    }
end

describe("websocket tunnels: drain", function()
    local up, gw

    before_each(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway(config(up, "old"))
    end)

    after_each(helpers.stop_all)

    local function echo(ws, text)
        assert(ws:send_text(text))
        local kind, data = ws:receive()
        assert.equal("text", kind)
        assert.equal(text, data)
    end

    local function tunnel_line()
        return helpers.wait_until(function()
            for _, e in ipairs(gw:access_log()) do
                if e.status == 101 then
                    return e
                end
            end
        end, 5, "the tunnel's access log line")
    end

    it("keeps a tunnel of an old worker open until the drain period ends", function()
        local ws = assert(ws_client.connect(gw.port))
        echo(ws, "before")
        local start = socket.gettime()
        assert.is_true(gw:reload(config(up, "new")))
        -- The old worker stops accepting, but its tunnel goes on.
        helpers.sleep(0.3)
        echo(ws, "during the drain")
        local closed = ws:closed(5)
        local elapsed = socket.gettime() - start
        ws:abort()
        assert.is_true(closed)
        assert.is_true(elapsed >= 0.9 and elapsed < 4, "closed after " .. elapsed .. " s")
        local e = tunnel_line()
        assert.equal("old", e.route)
        helpers.wait_until(function()
            return up:stats().ws_open == 0
        end, 5, "the upstream's websocket to close")
        -- New connections get the new workers.
        local ws2 = assert(ws_client.connect(gw.port))
        echo(ws2, "after")
        ws2:close(1000)
    end)

    it("closes tunnels when the gateway shuts down", function()
        local ws = assert(ws_client.connect(gw.port))
        echo(ws, "before")
        assert.is_true(gw:kill("TERM"))
        local closed = ws:closed(5)
        ws:abort()
        assert.is_true(closed)
        gw:wait(5)
        assert.equal("old", tunnel_line().route)
        helpers.wait_until(function()
            return up:stats().ws_open == 0
        end, 5, "the upstream's websocket to close")
    end)
end)
