-- TLS termination: certificates by SNI (exact, wildcard, CN, default; RSA
-- and ECDSA side by side), protocol versions, ALPN, the scheme seen by the
-- upstream and plugins, plain HTTP on a TLS port, the handshake timeout.
local helpers = require "spec.helpers"
local tls = require "spec.tls_helpers"
local socket = require "socket"

describe("tls: termination", function()
    local pki, gw, port, up

    lazy_setup(function()
        pki = tls.pki()
        up = helpers.start_upstream { name = "up" }
        port = helpers.free_port()
        gw = helpers.start_gateway({
            listen = {
                tls.listen(port, {
                    certificates = {
                        { cert = pki.ecdsa.cert, key = pki.ecdsa.key },
                        { cert = pki.rsa.cert, key = pki.rsa.key },
                        { cert = pki.wild.cert, key = pki.wild.key },
                        { cert = pki.cn_only.cert, key = pki.cn_only.key },
                    },
                }),
            },
            timeouts = { tls_handshake = "1s" },
            plugin_paths = { "spec/fixtures/plugins" },
            upstreams = { u = { targets = { up:address() } } },
            routes = {
                { name = "r", paths = { "/" }, upstream = "u" },
            },
        }, { timeout = 10 })
    end)

    lazy_teardown(helpers.stop_all)

    it("proxies over HTTPS and tells the upstream the scheme", function()
        local res = assert(tls.curl(port, { path = "/echo", cacert = pki.ca.cert }))
        assert.equal(200, res.status)
        assert.equal("https", helpers.echo_header(res.json, "X-Forwarded-Proto"))
        assert.equal("example.test:" .. port, helpers.echo_header(res.json, "Host"))
        local id = helpers.echo_header(res.json, "X-Request-Id")
        local line = helpers.wait_until(function()
            for _, l in ipairs(gw:access_log()) do
                if l.request_id == id then
                    return l
                end
            end
        end, 3, "the request's access log line")
        assert.equal("https", line.scheme)
    end)

    it("keeps a TLS connection alive across requests", function()
        local out = select(2, tls.sh(("curl -sS -k -v --resolve example.test:%d:127.0.0.1 " ..
            "https://example.test:%d/echo https://example.test:%d/echo -o /dev/null -o /dev/null")
            :format(port, port, port)))
        assert.truthy(out:find("Re%-using existing connection") or out:find("Reusing existing"),
            out)
    end)

    it("picks the certificate by SNI: exact, wildcard, CN-only and the default", function()
        local cases = {
            { "www.example.test", "example.test" },
            { "a.wild.test", "wild.test" },
            { "cn.test", "cn.test" },
            { "unknown.test", "example.test" },
        }
        for _, c in ipairs(cases) do
            local out = tls.s_client(port, { "-servername", c[1] })
            assert.equal(c[2], tls.served_cn(out), c[1] .. ": " .. out)
        end
        -- No SNI at all: the first certificate.
        local out = tls.s_client(port, { "-noservername" })
        assert.equal("example.test", tls.served_cn(out), out)
        -- A wildcard covers one label only.
        out = tls.s_client(port, { "-servername", "a.b.wild.test" })
        assert.equal("example.test", tls.served_cn(out), out)
    end)

    it("serves RSA or ECDSA for the same name as the client supports", function()
        local out = tls.s_client(port, { "-servername", "example.test", "-tls1_2", "-sigalgs",
            "RSA-PSS+SHA256:RSA+SHA256" })
        assert.truthy(out:find("Server public key is 2048 bit"), out)
        out = tls.s_client(port, { "-servername", "example.test", "-tls1_2", "-sigalgs",
            "ECDSA+SHA256" })
        assert.truthy(out:find("Server public key is 256 bit"), out)
        assert.truthy(tls.curl(port, { path = "/echo", cacert = pki.ca.cert,
            args = { "--tlsv1.2", "--tls-max", "1.2", "--ciphers", "ECDHE-RSA-AES128-GCM-SHA256" } }))
    end)

    it("accepts TLS 1.2 and 1.3 and refuses 1.1", function()
        local res = assert(tls.curl(port, { path = "/echo", cacert = pki.ca.cert,
            args = { "--tlsv1.2", "--tls-max", "1.2", "-w", "%{ssl_version}" } }))
        assert.equal(200, res.status)
        local out = tls.s_client(port, { "-tls1_3", "-servername", "example.test" })
        assert.truthy(out:find("TLSv1.3"), out)
        out = tls.s_client(port, { "-tls1_2", "-servername", "example.test" })
        assert.truthy(out:find("Protocol%s*: TLSv1.2"), out)
        out = tls.s_client(port, { "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0" })
        assert.truthy(out:find("alert protocol version", 1, true), out)
        assert.truthy(out:find("Cipher is (NONE)", 1, true), out)
    end)

    it("negotiates http/1.1 by ALPN and refuses a client that only speaks h2", function()
        local out = tls.s_client(port, { "-alpn", "h2,http/1.1", "-servername", "example.test" })
        assert.truthy(out:find("ALPN protocol: http/1.1", 1, true), out)
        out = tls.s_client(port, { "-alpn", "h2", "-servername", "example.test" })
        assert.truthy(out:find("no application protocol", 1, true), out)
    end)

    it("answers plain HTTP on the TLS port with 400", function()
        local res = assert(helpers.http(port, { path = "/echo" }))
        assert.equal(400, res.status)
        assert.truthy(res.body:find("The plain HTTP request was sent to HTTPS port", 1, true),
            res.body)
        assert.equal("close", res.headers.connection)
    end)

    it("closes a connection that sends nothing within the handshake timeout", function()
        local s = assert(socket.connect("127.0.0.1", port))
        s:settimeout(5)
        local t0 = socket.gettime()
        local data, err = s:receive(1)
        local took = socket.gettime() - t0
        s:close()
        assert.is_nil(data)
        assert.equal("closed", err)
        assert.truthy(took >= 0.8 and took < 3, "closed after " .. took .. " s")
        helpers.wait_until(function()
            return gw:error_log():find("TLS handshake with 127.0.0.1 timed out", 1, true)
        end, 5, "the timeout in the error log")
    end)

    it("logs a failed handshake with the peer and the reason", function()
        tls.s_client(port, { "-tls1_2", "-cipher", "AES128-SHA" })
        helpers.wait_until(function()
            return gw:error_log():find("TLS handshake with 127.0.0.1 failed: no shared cipher", 1,
                true)
        end, 5, "the failed handshake in the error log")
    end)

    it("answers pipelined requests in order", function()
        local req = "GET /echo?n=1 HTTP/1.1\r\nHost: example.test\r\n\r\n" ..
            "GET /echo?n=2 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
        local out = tls.s_client(port, { "-servername", "example.test", "-quiet", "-ign_eof" },
            { input = req, wait = 1 })
        local first, second = out:find('"/echo?n=1"', 1, true), out:find('"/echo?n=2"', 1, true)
        assert.truthy(first and second and first < second, out)
        local n = select(2, out:gsub("HTTP/1.1 200 OK", ""))
        assert.equal(2, n, out)
    end)

    it("sends 100 Continue over TLS", function()
        local dir = helpers.tmpdir()
        helpers.write_file(dir .. "/body", ("x"):rep(5000))
        local res = assert(tls.curl(port, { path = "/echo", cacert = pki.ca.cert,
            args = { "-H", "Expect: 100-continue", "--data-binary", "@" .. dir .. "/body" } }))
        assert.equal(200, res.status)
        assert.truthy(res.head:find("HTTP/1.1 100 Continue", 1, true), res.head)
        assert.equal(5000, res.json.body_length)
    end)

    it("serves large bodies both ways", function()
        local body = helpers.pattern(300000)
        local dir = helpers.tmpdir()
        helpers.write_file(dir .. "/body", body)
        local res = assert(tls.curl(port, { path = "/echo", cacert = pki.ca.cert,
            args = { "--data-binary", "@" .. dir .. "/body" } }))
        assert.equal(200, res.status)
        assert.equal(#body, res.json.body_length)
        res = assert(tls.curl(port, { path = "/bytes?n=2000000", cacert = pki.ca.cert }))
        assert.equal(200, res.status)
        assert.equal(2000000, #res.body)
        -- A client reading slowly: the gateway's writes wait for the socket.
        res = assert(tls.curl(port, { path = "/bytes?n=3000000", cacert = pki.ca.cert,
            args = { "--limit-rate", "3M" } }))
        assert.equal(200, res.status)
        assert.equal(helpers.pattern(3000000), res.body)
    end)
end)
