-- WebSocket tunnels to an upstream over TLS: the tunnel reads and writes
-- the upstream side through its TLS connection (bytes OpenSSL already
-- decrypted included), passes half-closes on as close_notify plus a TCP
-- half-close, and ends like a plain one. Each case runs with a plain client
-- and with a client on a TLS listener (through a socat bridge).
local helpers = require "spec.helpers"
local certs = require "spec.05-upstream-tls.certs"
local tls = require "spec.tls_helpers"
local ws_client = require "spec.ws_client"

-- Bytes of a response head, from the lines the HTTP client read (without
-- their CRLF).
local function head_bytes(res)
    local n = 0
    for line in (res.raw .. "\n"):gmatch("([^\n]*)\n") do
        n = n + #line + 2
    end
    return n
end

-- Bytes of the opening handshake ws_client sends for `path` (its key is
-- always 24 characters of base64).
local function handshake_bytes(path)
    return #helpers.request_head {
        path = path,
        headers = {
            { "Upgrade", "websocket" },
            { "Connection", "Upgrade" },
            { "Sec-WebSocket-Key", ("k"):rep(24) },
            { "Sec-WebSocket-Version", "13" },
        },
    }
end

-- Start a TLS test upstream, a gateway tunnelling to it (verifying its
-- certificate against the test CA) on a plain listener or, with
-- client_tls, on a TLS listener behind a socat bridge. Returns an
-- environment: gw, up, port (where WebSocket clients connect) and stats()
-- (the upstream's /stats, read over TLS straight from the upstream).
local function start(client_tls)
    local c = certs.make()
    local up = certs.start_upstream(c, { name = "wss" })
    local cfg = {
        upstreams = {
            u = { targets = { "localhost:" .. up.port }, tls = { ca = c.ca, verify = true } },
        },
        routes = { { name = "ws", paths = { "/" }, upstream = "u", websocket = true } },
    }
    local env = { up = up }
    if client_tls then
        local pki = tls.pki()
        local port = helpers.free_port()
        cfg.listen = {
            tls.listen(port, { certificates = { { cert = pki.ecdsa.cert, key = pki.ecdsa.key } } }),
        }
        env.gw = helpers.start_gateway(cfg)
        env.port = helpers.start_tls_bridge(port, { cafile = pki.ca.cert, servername = "example.test" }).port
    else
        env.gw = helpers.start_gateway(cfg)
        env.port = env.gw.port
    end
    local stats_bridge = helpers.start_tls_bridge(up.port, { cafile = c.ca, servername = "localhost" })
    function env.stats()
        local res = assert(helpers.http(stats_bridge.port, { path = "/stats" }))
        return assert(res.json, "bad /stats answer: " .. tostring(res.body))
    end
    return env
end

local function wait_ws_closed(env)
    helpers.wait_until(function()
        return env.stats().ws_open == 0
    end, 5, "the upstream's websocket to close")
end

for _, variant in ipairs { { name = "a plain client", tls = false }, { name = "a TLS client", tls = true } } do
    describe("websocket tunnels to a TLS upstream, from " .. variant.name, function()
        local env

        lazy_setup(function()
            env = start(variant.tls)
        end)

        lazy_teardown(helpers.stop_all)

        local function open(opts)
            return assert(ws_client.connect(env.port, opts))
        end

        it("relays the 101 and echoes text and binary messages of every length encoding",
            function()
                local ws, res = open()
                assert.equal(101, res.status)
                assert.equal("websocket", res.headers.upgrade:lower())
                assert.equal("upgrade", res.headers.connection:lower())
                for _, n in ipairs { 0, 125, 126, 65535, 65536, 1048576 } do
                    local text = helpers.pattern(n)
                    assert(ws:send_text(text))
                    local kind, data = ws:receive()
                    assert.equal("text", kind, tostring(data))
                    assert.equal(n, #data, "text echo of " .. n .. " bytes")
                    assert.is_true(text == data, "text echo of " .. n .. " bytes differs")

                    local bin = ws_client.binary_string(n)
                    assert(ws:send_binary(bin))
                    kind, data = ws:receive()
                    assert.equal("binary", kind, tostring(data))
                    assert.equal(n, #data, "binary echo of " .. n .. " bytes")
                    assert.is_true(bin == data, "binary echo of " .. n .. " bytes differs")
                end
                assert.equal(1000, ws:close(1000, "done"))
            end)

        it("relays messages sent back to back before any is read", function()
            local ws = open()
            local msg = ws_client.binary_string(1048576)
            for _ = 1, 3 do
                assert(ws:send_binary(msg))
            end
            for i = 1, 3 do
                local kind, data = ws:receive()
                assert.equal("binary", kind, tostring(data))
                assert.is_true(data == msg, "message " .. i .. " differs")
            end
            assert.equal(1000, ws:close(1000))
        end)

        it("answers a ping with a pong carrying the same data", function()
            local ws = open()
            assert(ws:ping("are you there"))
            local kind, data = ws:receive()
            assert.equal("pong", kind)
            assert.equal("are you there", data)
            assert.equal(1000, ws:close(1000))
        end)

        it("forwards bytes either side sent right behind the handshake", function()
            local ws = open { path = "/ws?hello=1", early = ws_client.frame("text", "early bird") }
            local kind, data = ws:receive()
            assert.equal("text", kind)
            assert.equal("hello", data)
            kind, data = ws:receive()
            assert.equal("text", kind)
            assert.equal("early bird", data)
            assert.equal(1000, ws:close(1000))
        end)

        it("completes a closing handshake started by the client", function()
            local ws = open()
            assert(ws:send_text("x"))
            assert.equal("x", select(2, ws:receive()))
            local code, reason = ws:close(1001, "going away")
            assert.equal(1001, code)
            assert.equal("", reason)
            wait_ws_closed(env)
        end)

        it("completes a closing handshake started by the upstream", function()
            local ws = open()
            assert(ws:send_text("__close__"))
            local kind, data = ws:receive()
            assert.equal("close", kind)
            local code, reason = ws_client.close_payload(data)
            assert.equal(1000, code)
            assert.equal("bye", reason)
            assert(ws:send_frame("close", data:sub(1, 2)))
            -- The upstream ends its TLS connection; the gateway passes the
            -- end on to the client.
            assert.is_true((ws:closed(5)))
            ws:abort()
            wait_ws_closed(env)
        end)

        it("passes a client's half-close on to the TLS upstream after the bytes in flight",
            function()
                local ws = open()
                assert(ws:send_text("last words"))
                ws.sock:shutdown("send")
                local kind, data = ws:receive()
                assert.equal("text", kind)
                assert.equal("last words", data)
                -- The upstream read the end of the stream (close_notify)
                -- and closed: so does the gateway, towards the client.
                assert.is_true((ws:closed(5)))
                ws:abort()
                wait_ws_closed(env)
            end)

        it("logs the tunnel with status 101 and its bytes", function()
            local path = "/ws?log=" .. (variant.tls and "tls" or "plain")
            local ws, res = open { path = path }
            assert(ws:send_text("abc"))
            assert.equal("abc", select(2, ws:receive()))
            assert.equal(1000, ws:close(1000))
            local entry = helpers.wait_until(function()
                for _, e in ipairs(env.gw:access_log()) do
                    if e.path == path then
                        return e
                    end
                end
            end, 5, "the tunnel's access log line")
            assert.equal(101, entry.status)
            assert.equal("ws", entry.route)
            assert.equal("localhost:" .. env.up.port, entry.upstream)
            -- To the client: the 101 head, the echo (2 + 3 bytes) and the
            -- close frame (2 + 2 bytes).
            assert.equal(head_bytes(res) + 9, entry.bytes_sent)
            -- From the client: the handshake, a text frame (2 + 4 + 3
            -- bytes) and a close frame (2 + 4 + 2 bytes).
            assert.equal(handshake_bytes(path) + 17, entry.bytes_received)
            assert.is_true(entry.upstream_time <= entry.request_time)
        end)

        it("closes the upstream's TLS connection when the client goes away mid-tunnel", function()
            wait_ws_closed(env)
            local before = env.stats().ws_total
            local ws = open()
            assert(ws:send_binary(ws_client.binary_string(1000)))
            assert.equal(1000, #select(2, ws:receive()))
            local stats = env.stats()
            assert.equal(before + 1, stats.ws_total)
            assert.equal(1, stats.ws_open)
            local metrics = assert(helpers.http(env.gw.status_port, { path = "/metrics" }))
            assert.equal(1, helpers.metric_value(metrics.body, "moongate_open_tunnels"))
            ws:abort()
            wait_ws_closed(env)
            helpers.wait_until(function()
                local m = assert(helpers.http(env.gw.status_port, { path = "/metrics" }))
                return helpers.metric_value(m.body, "moongate_open_tunnels") == 0
            end, 5, "moongate_open_tunnels to drop to 0")
        end)

        it("closes the upstream side when the client goes away with echoes in flight", function()
            local ws = open()
            local msg = ws_client.binary_string(1048576)
            for _ = 1, 3 do
                assert(ws:send_binary(msg))
            end
            -- The upstream is still writing its echoes when both the client
            -- connection and then the upstream's TLS connection go away.
            ws:abort()
            wait_ws_closed(env)
            local again = open()
            assert(again:send_text("still there"))
            assert.equal("still there", select(2, again:receive()))
            assert.equal(1000, again:close(1000))
        end)

        it("logs no TLS failure while all this works", function()
            local log = env.gw:error_log()
            assert.is_nil(log:find("TLS", 1, true), log)
        end)
    end)
end
