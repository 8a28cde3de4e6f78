-- moongate.http with https:// URLs: certificate and host name checks, the
-- ssl_ca and ssl_verify options, pooled TLS connections (and session
-- tickets arriving while idle), large bodies both ways, parallel calls and
-- the connect timeout covering the handshake.
local helpers = require "spec.helpers"
local certs = require "spec.05-upstream-tls.certs"
local socket = require "socket"

local function urlencode(s)
    return (s:gsub("[^%w%-%._~]", function(ch)
        return ("%%%02X"):format(ch:byte())
    end))
end

-- Ask the https-call plugin to make the calls `q` describes; returns the
-- decoded answer.
local function calls(gw, q)
    local parts = {}
    for k, v in pairs(q) do
        parts[#parts + 1] = k .. "=" .. urlencode(tostring(v))
    end
    local res = assert(helpers.http(gw.port, { path = "/call?" .. table.concat(parts, "&"),
        timeout = 10 }))
    assert.equal(200, res.status, res.body)
    return assert(res.json, res.body)
end

local function one(gw, q)
    return calls(gw, q).results[1]
end

-- A certificate signed by the test CA for other.example only.
local function make_other_name_cert(c)
    local dir = c.dir
    helpers.write_file(dir .. "/other.ext", "subjectAltName=DNS:other.example\n")
    local cmd = "cd '" .. dir .. "' && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256" ..
        " -nodes -keyout other.key -out other.csr -subj '/CN=other.example' >>openssl.log 2>&1" ..
        " && openssl x509 -req -in other.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2" ..
        " -out other.crt -extfile other.ext >>openssl.log 2>&1"
    local ok = os.execute(cmd)
    assert(ok == true or ok == 0, "openssl failed")
    return { dir = dir, server_cert = dir .. "/other.crt", server_key = dir .. "/other.key" }
end

describe("plugins: moongate.http over https", function()
    local c, up, other, plain, gw, silent

    lazy_setup(function()
        c = certs.make()
        up = certs.start_upstream(c)
        other = certs.start_upstream(make_other_name_cert(c), { name = "other" })
        plain = helpers.start_upstream { name = "plain" }
        -- Accepts connections (the kernel does) and never answers.
        silent = assert(socket.bind("127.0.0.1", 0, 16))
        gw = helpers.start_gateway {
            plugin_paths = { "spec/fixtures/plugins" },
            -- The plugin answers in access: the upstream is never called.
            upstreams = { u = { targets = { "127.0.0.1:9" } } },
            routes = {
                { name = "call", paths = { "/call" }, upstream = "u", plugins = { ["https-call"] = {} } },
            },
        }
    end)

    lazy_teardown(function()
        if silent then
            silent:close()
        end
        helpers.stop_all()
    end)

    it("calls a TLS server trusted through ssl_ca, by name and by address", function()
        local r = one(gw, { url = "https://localhost:" .. up.port .. "/echo?x=1", ca = c.ca })
        assert.is_nil(r.error)
        assert.equal(200, r.status)
        local echo = helpers.json_decode(r.body)
        assert.equal("/echo?x=1", echo.path)
        assert.equal("GET", echo.method)
        assert.equal("localhost", r.headers["x-tls-sni"]) -- SNI sent for a name
        assert.equal("tls", r.headers["x-upstream"])

        r = one(gw, { url = "https://127.0.0.1:" .. up.port .. "/echo", ca = c.ca })
        assert.is_nil(r.error)
        assert.equal(200, r.status)
        assert.equal("-", r.headers["x-tls-sni"]) -- no SNI for an address
    end)

    it("reuses a pooled TLS connection for the next call", function()
        local url = "https://127.0.0.1:" .. up.port .. "/conn"
        local rs = calls(gw, { url = url, ca = c.ca, times = 2 }).results
        local a, b = helpers.json_decode(rs[1].body), helpers.json_decode(rs[2].body)
        assert.equal(a.conn_id, b.conn_id)
        assert.equal(a.requests_on_conn + 1, b.requests_on_conn)
        -- Still pooled after a pause, session tickets or not.
        helpers.sleep(0.3)
        local d = helpers.json_decode(one(gw, { url = url, ca = c.ca }).body)
        assert.equal(a.conn_id, d.conn_id)
        assert.equal(b.requests_on_conn + 1, d.requests_on_conn)
        -- An unverified call does not get the verified connection.
        local e = helpers.json_decode(one(gw, { url = url, verify = "false" }).body)
        assert.are_not.equal(a.conn_id, e.conn_id)
        assert.equal(1, e.requests_on_conn)
    end)

    it("keeps a pooled TLS connection that gets a session ticket while idle", function()
        local base = "https://127.0.0.1:" .. up.port
        -- The server sends a ticket 100 ms after answering, while the
        -- connection waits in the pool.
        local a = helpers.json_decode(one(gw, { url = base .. "/tls-ticket?ms=100", ca = c.ca }).body)
        helpers.sleep(0.4)
        local b = helpers.json_decode(one(gw, { url = base .. "/conn", ca = c.ca }).body)
        assert.equal(a.conn_id, b.conn_id)
        assert.equal(a.requests_on_conn + 1, b.requests_on_conn)
    end)

    it("sends large request bodies and reads large responses over TLS", function()
        local base = "https://127.0.0.1:" .. up.port
        local r = one(gw, { url = base .. "/sink", method = "POST", send = 2000000, ca = c.ca })
        assert.is_nil(r.error)
        assert.equal(2000000, helpers.json_decode(r.body).body_length)
        r = one(gw, { url = base .. "/bytes?n=3000000", ca = c.ca, size_only = 1 })
        assert.is_nil(r.error)
        assert.equal(200, r.status)
        assert.equal(3000000, r.body_length)
        r = one(gw, { url = base .. "/bytes?n=100000&chunked=1", ca = c.ca, size_only = 1 })
        assert.equal(100000, r.body_length)
    end)

    it("refuses a certificate the system's CAs did not sign", function()
        local r = one(gw, { url = "https://localhost:" .. up.port .. "/echo" })
        assert.is_nil(r.status)
        assert.equal("tls handshake failed: certificate verify failed" ..
            " (unable to get local issuer certificate)", r.error)
        r = one(gw, { url = "https://localhost:" .. up.port .. "/echo", ca = c.other_ca })
        assert.truthy(r.error:find("certificate verify failed", 1, true), r.error)
    end)

    it("refuses a certificate for another name", function()
        local r = one(gw, { url = "https://localhost:" .. other.port .. "/echo", ca = c.ca })
        assert.is_nil(r.status)
        assert.equal("tls handshake failed: certificate verify failed (hostname mismatch)", r.error)
        r = one(gw, { url = "https://127.0.0.1:" .. other.port .. "/echo", ca = c.ca })
        assert.equal("tls handshake failed: certificate verify failed (IP address mismatch)", r.error)
    end)

    it("accepts any certificate with ssl_verify = false", function()
        local r = one(gw, { url = "https://localhost:" .. other.port .. "/echo", verify = "false" })
        assert.is_nil(r.error)
        assert.equal(200, r.status)
        assert.equal("other", r.headers["x-upstream"])
    end)

    it("fails the handshake with a server that does not speak TLS", function()
        local r = one(gw, { url = "https://127.0.0.1:" .. plain.port .. "/echo", verify = "false" })
        assert.is_nil(r.status)
        assert.equal("tls handshake failed: wrong version number", r.error)
    end)

    it("fails the call when ssl_ca cannot be loaded", function()
        local r = one(gw, { url = "https://localhost:" .. up.port .. "/echo", ca = c.dir .. "/none.pem" })
        assert.equal("ssl_ca: cannot load " .. c.dir .. "/none.pem: No such file or directory", r.error)
        r = one(gw, { url = "https://localhost:" .. up.port .. "/echo", ca = c.garbage })
        assert.truthy(r.error:find("ssl_ca: cannot load " .. c.garbage .. ": ", 1, true), r.error)
        -- The next call with a good CA file works.
        assert.equal(200, one(gw, { url = "https://localhost:" .. up.port .. "/echo", ca = c.ca }).status)
    end)

    it("runs several https calls at once with request_many", function()
        local answer = calls(gw, { url = "https://127.0.0.1:" .. up.port .. "/slow?ms=300",
            ca = c.ca, many = 4 })
        assert.equal(4, #answer.results)
        for _, r in ipairs(answer.results) do
            assert.is_nil(r.error)
            assert.equal(200, r.status)
        end
        assert.is_true(answer.elapsed_ms < 1000, "the calls took " .. answer.elapsed_ms .. " ms")
    end)

    it("times out a handshake the server never answers with the connect timeout", function()
        local _, port = silent:getsockname()
        local answer = calls(gw, { url = "https://127.0.0.1:" .. port .. "/", timeout = 0.3 })
        assert.equal("timeout", answer.results[1].error)
        assert.is_true(answer.elapsed_ms >= 280 and answer.elapsed_ms < 1500,
            "the call took " .. answer.elapsed_ms .. " ms")
    end)
end)
