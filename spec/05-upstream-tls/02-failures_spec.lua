-- Upstream TLS failures: certificates refused for their CA or name, plain
-- upstreams, mutual TLS, retries and passive health, and active health
-- checks over TLS.
local helpers = require "spec.helpers"
local certs = require "spec.05-upstream-tls.certs"

local function count(text, needle)
    local n, from = 0, 1
    while true do
        local i = text:find(needle, from, true)
        if not i then
            return n
        end
        n, from = n + 1, i + #needle
    end
end

local function assert_502(res)
    assert.equal(502, res.status)
    assert.equal(502, res.json.status)
end

describe("upstream TLS: verification", function()
    local c, up, plain, gw

    lazy_setup(function()
        c = certs.make()
        up = certs.start_upstream(c)
        plain = helpers.start_upstream { name = "plain" }
        gw = helpers.start_gateway {
            upstreams = {
                wrong_ca = { targets = { up:address() }, tls = { ca = c.other_ca } },
                wrong_name = { targets = { up:address() }, tls = { ca = c.ca, sni = "other.example" } },
                wrong_ip = { targets = { "localhost:" .. up.port }, tls = { ca = c.ca, sni = "127.0.0.2" } },
                not_tls = { targets = { plain:address() }, tls = { ca = c.ca }, retries = 0 },
                mixed = {
                    targets = { plain:address(), up:address() },
                    tls = { ca = c.ca },
                    retries = 1,
                    health = { passive = { failures = 1, down_for = "60s" } },
                },
            },
            routes = {
                { paths = { "/wrong-ca/" }, upstream = "wrong_ca", strip_path = true },
                { paths = { "/wrong-name/" }, upstream = "wrong_name", strip_path = true },
                { paths = { "/wrong-ip/" }, upstream = "wrong_ip", strip_path = true },
                { paths = { "/not-tls/" }, upstream = "not_tls", strip_path = true },
                { paths = { "/mixed/" }, upstream = "mixed", strip_path = true },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("answers 502 and logs why when the CA did not sign the certificate", function()
        local res = assert(helpers.http(gw.port, { path = "/wrong-ca/echo" }))
        assert_502(res)
        local log = gw:error_log()
        assert.truthy(log:find("upstream wrong_ca target " .. up:address() ..
            ": TLS handshake failed: certificate verify failed (unable to get local issuer certificate)",
            1, true), log)
    end)

    it("answers 502 and logs why when the certificate names another host", function()
        local res = assert(helpers.http(gw.port, { path = "/wrong-name/echo" }))
        assert_502(res)
        local log = gw:error_log()
        assert.truthy(log:find("upstream wrong_name target " .. up:address() ..
            ": TLS handshake failed: certificate verify failed (hostname mismatch)", 1, true), log)
    end)

    it("checks an IP address given as the name against the certificate's addresses", function()
        local res = assert(helpers.http(gw.port, { path = "/wrong-ip/echo" }))
        assert_502(res)
        local log = gw:error_log()
        assert.truthy(log:find("upstream wrong_ip target localhost:" .. up.port ..
            ": TLS handshake failed: certificate verify failed (IP address mismatch)", 1, true), log)
    end)

    it("answers 502 when the upstream does not speak TLS", function()
        local res = assert(helpers.http(gw.port, { path = "/not-tls/echo" }))
        assert_502(res)
        local log = gw:error_log()
        assert.truthy(log:find("upstream not_tls target " .. plain:address() ..
            ": TLS handshake failed: ", 1, true), log)
    end)

    it("retries a failed handshake on another target and counts it for passive health", function()
        for i = 1, 6 do
            local res = assert(helpers.http(gw.port, { path = "/mixed/echo?i=" .. i }))
            assert.equal(200, res.status)
            assert.equal("tls", res.headers["x-upstream"])
        end
        -- One failure marked the plain target down: it was tried only once.
        local log = gw:error_log()
        assert.equal(1, count(log, "upstream mixed target " .. plain:address() ..
            ": TLS handshake failed"), log)
    end)
end)

describe("upstream TLS: client certificates", function()
    local c, up, gw

    lazy_setup(function()
        c = certs.make()
        up = certs.start_upstream(c, { client_ca = c.client_ca })
        gw = helpers.start_gateway {
            upstreams = {
                anonymous = { targets = { up:address() }, tls = { ca = c.ca } },
                anonymous12 = {
                    targets = { up:address() },
                    tls = { ca = c.ca, protocols = "TLSv1.2" },
                },
                client = {
                    targets = { up:address() },
                    tls = { ca = c.ca, cert = c.client_cert, key = c.client_key },
                },
            },
            routes = {
                { paths = { "/anonymous/" }, upstream = "anonymous", strip_path = true },
                { paths = { "/anonymous12/" }, upstream = "anonymous12", strip_path = true },
                { paths = { "/client/" }, upstream = "client", strip_path = true },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("fails without a client certificate when the upstream requires one (TLS 1.3)", function()
        -- TLS 1.3 refuses the certificate after the client's handshake is
        -- over: the request is then written to a connection the upstream
        -- ends with an alert, which the gateway reads, or with a reset.
        local res = assert(helpers.http(gw.port, { path = "/anonymous/echo" }))
        assert_502(res)
        local log = gw:error_log()
        local prefix = "upstream anonymous target " .. up:address() .. ": TLS "
        assert.truthy(log:find(prefix .. "read failed: tlsv13 alert certificate required", 1, true)
            or log:find(prefix .. "write failed: Connection reset by peer", 1, true), log)
    end)

    it("fails the handshake without a client certificate (TLS 1.2)", function()
        local res = assert(helpers.http(gw.port, { path = "/anonymous12/echo" }))
        assert_502(res)
        local log = gw:error_log()
        assert.truthy(log:find("upstream anonymous12 target " .. up:address() ..
            ": TLS handshake failed: ", 1, true), log)
    end)

    it("presents the configured client certificate", function()
        for _ = 1, 3 do
            local res = assert(helpers.http(gw.port, { path = "/client/echo" }))
            assert.equal(200, res.status)
            assert.matches("CN=gateway%-client", res.headers["x-tls-client-cert"])
        end
    end)
end)

describe("upstream TLS: active health checks", function()
    local c, up, gw

    lazy_setup(function()
        c = certs.make()
        up = certs.start_upstream(c)
        local active = { path = "/health", interval = "100ms", timeout = "1s", healthy = 1, unhealthy = 1 }
        gw = helpers.start_gateway {
            upstreams = {
                checked = { targets = { up:address() }, tls = { ca = c.ca }, health = { active = active } },
                refused = {
                    targets = { up:address() },
                    tls = { ca = c.other_ca },
                    health = { active = active },
                },
            },
            routes = {
                { paths = { "/checked/" }, upstream = "checked", strip_path = true },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("checks over TLS with the upstream's verification", function()
        helpers.wait_until(function()
            return gw:error_log():find("upstream refused target " .. up:address() ..
                " is down (TLS handshake failed: certificate verify failed", 1, true)
        end, 5, "the refused target marked down")
        -- The TLS check reads the upstream's /health answers.
        local res = assert(helpers.http(gw.port, { path = "/checked/set-health?status=503" }))
        assert.equal(200, res.status)
        helpers.wait_until(function()
            return gw:error_log():find("upstream checked target " .. up:address() ..
                " is down (status 503)", 1, true)
        end, 5, "the checked target marked down")
        assert.is_nil(gw:error_log():find("upstream checked target [^\n]* is down %(TLS"))
    end)
end)
