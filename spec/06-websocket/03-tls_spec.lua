-- WebSocket tunnels on a TLS listener: the tunnel moves bytes through the
-- TLS transport of the client connection (decrypted bytes included) and
-- ends with a close handshake like a plain one.
local helpers = require "spec.helpers"
local tls = require "spec.tls_helpers"
local ws_client = require "spec.ws_client"

describe("websocket tunnels over TLS", function()
    local gw, bridge

    lazy_setup(function()
        local pki = tls.pki()
        local up = helpers.start_upstream { name = "svc" }
        local port = helpers.free_port()
        gw = helpers.start_gateway {
            listen = { tls.listen(port, { certificates = { { cert = pki.ecdsa.cert, key = pki.ecdsa.key } } }) },
            upstreams = { u = { targets = { up:address() } } },
            routes = { { name = "ws", paths = { "/" }, upstream = "u", websocket = true } },
        }
        gw.tls_port = port
        bridge = helpers.start_tls_bridge(port, { cafile = pki.ca.cert, servername = "example.test" })
    end)

    lazy_teardown(helpers.stop_all)

    it("echoes messages of several sizes, then closes cleanly", function()
        local ws = assert(ws_client.connect(bridge.port, { host = "example.test" }))
        for _, n in ipairs { 0, 125, 126, 65535, 65536, 1024 * 1024 } do
            local msg = ws_client.binary_string(n)
            assert(ws:send_binary(msg))
            local kind, data = ws:receive()
            assert.equal("binary", kind, tostring(data))
            assert.equal(n, #data, "echo of " .. n .. " bytes")
            assert.is_true(data == msg, "echo of " .. n .. " bytes differs")
        end
        assert(ws:send_text("over TLS"))
        local kind, data = ws:receive()
        assert.equal("text", kind)
        assert.equal("over TLS", data)
        -- The server's close frame comes back, then the connection ends.
        assert.equal(1000, ws:close(1000, "bye"))
    end)

    it("logs the tunnel with its bytes when it ends", function()
        helpers.wait_until(function()
            for _, line in ipairs(gw:access_log()) do
                if line.status == 101 and (line.bytes_received or 0) > 1024 * 1024 then
                    return true
                end
            end
        end, 3, "the tunnel's access log line")
    end)
end)
