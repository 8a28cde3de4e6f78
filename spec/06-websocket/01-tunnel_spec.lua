-- WebSocket upgrades: a route with `websocket` enabled forwards the
-- handshake, relays the 101 and then bytes both ways until the connection
-- ends; everything else about the request (plugins, access log, log phase)
-- still applies.
local helpers = require "spec.helpers"
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

describe("websocket tunnels", function()
    local gw, up

    lazy_setup(function()
        gw, up = helpers.start_proxy {
            plugin_paths = { "spec/fixtures/plugins" },
            shared_dicts = { tunnels = "1m", refused = "1m" },
            consumers = {
                { username = "alice", credentials = { ["key-check"] = { key = "alice-key" } } },
            },
            routes = {
                { name = "plain", hosts = { "plain.test" }, paths = { "/" }, upstream = "u" },
                {
                    name = "idle", hosts = { "idle.test" }, paths = { "/" }, upstream = "u",
                    websocket = { idle_timeout = "1s" },
                },
                {
                    name = "auth", hosts = { "auth.test" }, paths = { "/" }, upstream = "u",
                    websocket = true, plugins = { ["key-check"] = {} },
                },
                {
                    name = "logged", hosts = { "log.test" }, paths = { "/" }, upstream = "u",
                    websocket = true, plugins = { ["tunnel-log"] = {} },
                },
                {
                    name = "refused", hosts = { "refuse.test" }, paths = { "/" }, upstream = "u",
                    websocket = true,
                    plugins = { ["tunnel-log"] = { dict = "refused", refuse_status = 403 } },
                },
                { name = "ws", paths = { "/" }, upstream = "u", websocket = true },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function open(opts)
        local ws, res = assert(ws_client.connect(gw.port, opts))
        return ws, res
    end

    it("relays the handshake and echoes text and binary messages of every length encoding",
        function()
            local ws, res = open()
            assert.equal(101, res.status)
            assert.equal("websocket", res.headers.upgrade:lower())
            assert.equal("upgrade", res.headers.connection:lower())
            for _, n in ipairs { 0, 1, 125, 126, 65535, 65536, 1048576 } do
                local text = helpers.pattern(n)
                assert(ws:send_text(text))
                local kind, data = ws:receive()
                assert.equal("text", kind)
                assert.equal(#text, #data)
                assert.is_true(text == data, "text echo of " .. n .. " bytes differs")

                local bin = ws_client.binary_string(n)
                assert(ws:send_binary(bin))
                kind, data = ws:receive()
                assert.equal("binary", kind)
                assert.is_true(bin == data, "binary echo of " .. n .. " bytes differs")
            end
            assert.equal(1000, ws:close(1000, "done"))
        end)

    it("relays messages sent back to back before any is read (backpressure)", function()
        local ws = open()
        local msg = helpers.pattern(1048576)
        for _ = 1, 3 do
            assert(ws:send_binary(msg))
        end
        for _ = 1, 3 do
            local kind, data = ws:receive()
            assert.equal("binary", kind)
            assert.is_true(data == msg)
        end
        ws:close(1000)
    end)

    it("holds a bounded amount for a client that does not read", function()
        local pid = gw:worker_pids()[1]
        local before = helpers.rss_kb(pid)
        local ws = open()
        ws.sock:settimeout(1)
        local frame = ws_client.frame("binary", helpers.pattern(1048576))
        local sent = 0
        while sent < 128 and ws.sock:send(frame) do
            sent = sent + 1
        end
        -- The kernel's socket buffers and the upstream's own output fill
        -- up, then the client cannot send more.
        assert.is_true(sent < 128, "128 MiB went through without the client reading")
        local grown = helpers.rss_kb(pid) - before
        assert.is_true(grown < 8192, "the worker grew by " .. grown .. " KiB")
        ws:abort()
        helpers.wait_until(function()
            return up:stats().ws_open == 0
        end, 5, "the upstream's websocket to close")
    end)

    it("answers a ping with a pong carrying the same data", function()
        local ws = open()
        assert(ws:ping("are you there"))
        local kind, data = ws:receive()
        assert.equal("pong", kind)
        assert.equal("are you there", data)
        ws:close(1000)
    end)

    it("completes a closing handshake started by the client", function()
        local ws = open()
        assert(ws:send_text("x"))
        assert.equal("x", select(2, ws:receive()))
        local code, reason = ws:close(1001, "going away")
        assert.equal(1001, code)
        assert.equal("", reason)
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
        assert.is_true((ws:closed(5)))
        ws:abort()
    end)

    it("forwards bytes the client sent right behind the handshake", function()
        local ws = open { early = ws_client.frame("text", "early bird") }
        local kind, data = ws:receive()
        assert.equal("text", kind)
        assert.equal("early bird", data)
        ws:close(1000)
    end)

    it("forwards bytes the upstream sent right behind its 101", function()
        local ws = open { path = "/ws?hello=1" }
        local kind, data = ws:receive()
        assert.equal("text", kind)
        assert.equal("hello", data)
        ws:close(1000)
    end)

    it("passes a half-close on after the bytes in flight", function()
        local ws = open()
        assert(ws:send_text("last words"))
        ws.sock:shutdown("send")
        local kind, data = ws:receive()
        assert.equal("text", kind)
        assert.equal("last words", data)
        -- The upstream saw the end of the stream and closed: so does the
        -- gateway, towards the client.
        assert.is_true((ws:closed(5)))
        ws:abort()
        helpers.wait_until(function()
            return up:stats().ws_open == 0
        end, 5, "the upstream's websocket to close")
    end)

    it("lets an access plugin refuse the upgrade", function()
        local ws, err, res, c = ws_client.connect(gw.port, { host = "auth.test" })
        assert.is_nil(ws)
        assert.equal("status 401", err)
        assert.equal(401, res.status)
        assert.is_nil(res.headers.upgrade)
        c:close()

        local ok = assert(ws_client.connect(gw.port, {
            host = "auth.test", headers = { ["X-Key"] = "alice-key" },
        }))
        assert(ok:send_text("authorised"))
        assert.equal("authorised", select(2, ok:receive()))
        ok:close(1000)
    end)

    it("does not upgrade on a route without websocket", function()
        local ws, err, res, c = ws_client.connect(gw.port, { host = "plain.test" })
        assert.is_nil(ws)
        -- Upgrade and Connection are hop-by-hop: the upstream saw a plain
        -- GET and said so.
        assert.equal("status 426", err)
        assert.equal(426, res.status)
        assert.is_nil(res.headers.upgrade)
        -- The connection is still an HTTP one.
        local again = assert(c:request { path = "/echo", host = "plain.test" })
        assert.equal(200, again.status)
        c:close()
    end)

    it("lets a header_filter plugin turn the 101 into a refusal", function()
        local ws, err, res, c = ws_client.connect(gw.port, { host = "refuse.test" })
        assert.is_nil(ws)
        assert.equal("status 403", err)
        assert.equal("101", res.headers["x-tunnel-filter"])
        assert.equal("close", res.headers.connection)
        assert.is_nil(res.headers.upgrade)
        assert.is_true((c:closed(5)))
        c:close()
        helpers.wait_until(function()
            return up:stats().ws_open == 0
        end, 5, "the upstream's websocket to close")
    end)

    it("passes other upgrades and upgrade requests with a body as plain requests", function()
        local cases = {
            { headers = { Connection = "Upgrade", Upgrade = "h2c" } },
            { method = "POST", body = "x", headers = { Connection = "Upgrade", Upgrade = "websocket" } },
            { version = "1.0", headers = { Connection = "Upgrade", Upgrade = "websocket" } },
        }
        for _, opts in ipairs(cases) do
            opts.path = "/echo"
            local res = assert(helpers.http(gw.port, opts))
            assert.equal(200, res.status)
            assert.is_nil(helpers.echo_header(res.json, "upgrade"))
            assert.is_nil(helpers.echo_header(res.json, "connection"))
        end
    end)

    it("treats an answer other than 101 as a normal response", function()
        local ws, err, res, c = ws_client.connect(gw.port, { path = "/echo" })
        assert.is_nil(ws)
        assert.equal("status 200", err)
        -- The handshake went upstream with its headers.
        local echo = helpers.json_decode(res.body)
        assert.equal("websocket", helpers.echo_header(echo, "upgrade"))
        assert.equal("upgrade", helpers.echo_header(echo, "connection"))
        assert.equal("13", helpers.echo_header(echo, "sec-websocket-version"))
        assert.is_string(helpers.echo_header(echo, "sec-websocket-key"))
        assert.is_nil(res.headers.upgrade)
        -- The connection goes on with the next request.
        local again = assert(c:request { path = "/echo" })
        assert.equal(200, again.status)
        c:close()
        local entry = helpers.wait_until(function()
            for _, e in ipairs(gw:access_log()) do
                if e.request_id == helpers.echo_header(echo, "x-request-id") then
                    return e
                end
            end
        end, 5, "the access log line")
        assert.equal(200, entry.status)
        assert.is_true(entry.bytes_received > 100)
    end)

    it("closes a tunnel that stays idle for the route's idle_timeout", function()
        local ws = open { host = "idle.test" }
        -- Traffic keeps it open past the timeout.
        for i = 1, 5 do
            assert(ws:send_text("ping " .. i))
            assert.equal("ping " .. i, select(2, ws:receive()))
            helpers.sleep(0.4)
        end
        local closed = ws:closed(4)
        ws:abort()
        assert.is_true(closed)
        assert.truthy(gw:error_log():find("idle for 1s, closing", 1, true))
        helpers.wait_until(function()
            return up:stats().ws_open == 0
        end, 5, "the upstream's websocket to close")
    end)

    it("runs the log phase and writes the access log when the tunnel closes", function()
        local ws, res = open { host = "log.test" }
        assert.equal("101", res.headers["x-tunnel-filter"])
        assert(ws:send_text("abc"))
        assert.equal("abc", select(2, ws:receive()))
        assert.equal(1000, ws:close(1000))

        local rec = helpers.wait_until(function()
            local r = assert(helpers.http(gw.port, { host = "log.test", path = "/tunnel-log" }))
            return r.json and r.json.count >= 1 and r.json
        end, 5, "the log phase")
        assert.equal(101, rec.status)
        -- To the client: the 101 head, then the echo (2 + 3 bytes) and the
        -- close frame (2 + 2 bytes).
        assert.equal(head_bytes(res) + 9, rec.sent)

        local entry = helpers.wait_until(function()
            for _, e in ipairs(gw:access_log()) do
                if e.request_id == rec.request_id then
                    return e
                end
            end
        end, 5, "the access log line")
        assert.equal(101, entry.status)
        assert.equal("logged", entry.route)
        assert.equal("GET", entry.method)
        assert.equal(rec.sent, entry.bytes_sent)
        assert.equal(rec.received, entry.bytes_received)
        -- From the client: the request head, then a text frame (2 + 4 + 3
        -- bytes) and a close frame (2 + 4 + 2 bytes).
        assert.is_true(rec.received > 17 + 100)
        assert.is_number(entry.request_time)
        assert.is_number(entry.upstream_time)
        assert.is_true(entry.upstream_time <= entry.request_time)
    end)

    it("closes the upstream side when the client goes away mid-tunnel", function()
        local before = up:stats().ws_total
        local ws = open()
        assert(ws:send_binary(ws_client.binary_string(1000)))
        assert.equal(1000, #select(2, ws:receive()))
        local metrics = assert(helpers.http(gw.status_port, { path = "/metrics" }))
        assert.equal(1, helpers.metric_value(metrics.body, "moongate_open_tunnels"))
        assert.equal(before + 1, up:stats().ws_total)
        ws:abort()
        helpers.wait_until(function()
            return up:stats().ws_open == 0
        end, 5, "the upstream's websocket to close")
        helpers.wait_until(function()
            local m = assert(helpers.http(gw.status_port, { path = "/metrics" }))
            return helpers.metric_value(m.body, "moongate_open_tunnels") == 0
        end, 5, "moongate_open_tunnels to drop to 0")
    end)
end)
