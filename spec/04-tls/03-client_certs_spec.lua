-- Client certificates: request and require modes, the PDK's view of the
-- certificate in every phase, and the bundled mtls-auth plugin.
local helpers = require "spec.helpers"
local tls = require "spec.tls_helpers"

describe("tls: client certificates", function()
    local pki, gw, port_req, port_must, port_plain

    lazy_setup(function()
        pki = tls.pki()
        local up = helpers.start_upstream { name = "up" }
        port_req, port_must, port_plain = helpers.free_port(), helpers.free_port(),
            helpers.free_port()
        local certs = { { cert = pki.ecdsa.cert, key = pki.ecdsa.key } }
        gw = helpers.start_gateway {
            listen = {
                tls.listen(port_req, { certificates = certs,
                    client_certificates = { ca = pki.ca.cert, mode = "request" } }),
                tls.listen(port_must, { certificates = certs,
                    client_certificates = { ca = pki.ca.cert, mode = "require" } }),
                "127.0.0.1:" .. port_plain,
            },
            plugin_paths = { "spec/fixtures/plugins" },
            upstreams = { u = { targets = { up:address() } } },
            consumers = {
                { username = "alice", credentials = { ["mtls-auth"] = { subject = "alice@example.test" } } },
                { username = "bob", credentials = { ["mtls-auth"] = { { subject = "bob.clients.test" } } } },
            },
            routes = {
                { name = "info", paths = { "=/tls-info" }, upstream = "u",
                    plugins = { ["tls-probe"] = {} } },
                { name = "auth", paths = { "/auth" }, upstream = "u",
                    plugins = { ["mtls-auth"] = {}, ["tls-probe"] = {} } },
                { name = "auth-dns", paths = { "/dns" }, upstream = "u",
                    plugins = { ["mtls-auth"] = { consumer_by = { "san_dns" } } } },
                { name = "optional", paths = { "/optional" }, upstream = "u",
                    plugins = { ["mtls-auth"] = { required = false } } },
            },
        }
        helpers.wait_for_port(port_must, 10)
        helpers.wait_for_port(port_plain, 10)
    end)

    lazy_teardown(helpers.stop_all)

    local function get(port, path, cert)
        return tls.curl(port, { path = path, cacert = pki.ca.cert, cert = cert })
    end

    it("shows no certificate when the client sent none", function()
        local res = assert(get(port_req, "/tls-info"))
        assert.equal(200, res.status)
        assert.equal("https", res.json.scheme)
        assert.is_false(res.json.cert.presented)
        res = assert(helpers.http(port_plain, { path = "/tls-info" }))
        assert.equal("http", res.json.scheme)
        assert.is_false(res.json.cert.presented)
    end)

    it("exposes a verified client certificate to plugins", function()
        local res = assert(get(port_req, "/tls-info", pki.alice))
        assert.equal(200, res.status)
        local c = res.json.cert
        assert.is_true(c.presented)
        assert.is_true(c.verified)
        assert.is_nil(c.verify_error)
        assert.equal("CN=alice", c.subject)
        assert.equal("CN=Moongate Test CA", c.issuer)
        assert.equal("alice", c.common_name)
        assert.same({ "alice@example.test" }, c.san.email)
        assert.same({}, c.san.dns)
        local fp = select(2, tls.sh("openssl x509 -noout -fingerprint -sha256 -in " ..
            pki.alice.cert, true)):match("=([%x:]+)"):gsub(":", ""):lower()
        assert.equal(fp, c.fingerprint_sha256)
        local serial = select(2, tls.sh("openssl x509 -noout -serial -in " .. pki.alice.cert,
            true)):match("serial=(%x+)")
        assert.equal(serial:upper(), c.serial:upper())
        assert.truthy(c.not_before <= os.time() and c.not_after > os.time())
        assert.is_true(c.pem)
    end)

    it("records a certificate that does not verify in request mode", function()
        local res = assert(get(port_req, "/tls-info", pki.mallory))
        assert.equal(200, res.status)
        assert.is_true(res.json.cert.presented)
        assert.is_false(res.json.cert.verified)
        assert.truthy(tostring(res.json.cert.verify_error):find("^unable to"),
            res.json.cert.verify_error)
    end)

    it("shows the certificate in the log phase", function()
        assert.equal(200, assert(get(port_req, "/tls-info", pki.bob)).status)
        helpers.wait_until(function()
            return gw:error_log():find("tls-probe log phase: scheme=https presented=true " ..
                "subject=CN=bob", 1, true)
        end, 5, "the log phase line")
    end)

    it("require mode refuses a handshake without a valid certificate", function()
        local res = get(port_must, "/tls-info")
        assert.is_nil(res, "answered without a certificate")
        res = get(port_must, "/tls-info", pki.mallory)
        assert.is_nil(res, "answered with a certificate from another CA")
        res = assert(get(port_must, "/tls-info", pki.alice))
        assert.is_true(res.json.cert.verified)
        helpers.wait_until(function()
            local log = gw:error_log()
            return log:find("TLS handshake with 127.0.0.1 failed: peer did not return "
                .. "a certificate", 1, true)
                and log:find("TLS handshake with 127.0.0.1 failed: certificate verify failed", 1,
                    true)
        end, 5, "the refused handshakes in the error log")
    end)

    describe("mtls-auth", function()
        it("maps a verified certificate to its consumer", function()
            local res = assert(get(port_req, "/auth/echo", pki.alice))
            assert.equal(200, res.status)
            assert.equal("alice", helpers.echo_header(res.json, "X-Consumer-Username"))
            res = assert(get(port_must, "/dns/echo", pki.bob))
            assert.equal(200, res.status)
            assert.equal("bob", helpers.echo_header(res.json, "X-Consumer-Username"))
        end)

        it("sets the consumer for later plugins", function()
            local res = assert(get(port_req, "/auth/tls-info", pki.alice))
            assert.equal(200, res.status)
        end)

        it("answers 401 without a certificate or with one that does not verify", function()
            local res = assert(get(port_req, "/auth/echo"))
            assert.equal(401, res.status)
            assert.equal("client certificate required", res.json.error)
            res = assert(get(port_req, "/auth/echo", pki.mallory))
            assert.equal(401, res.status)
            assert.equal("client certificate not verified", res.json.error)
            res = assert(helpers.http(port_plain, { path = "/auth/echo" }))
            assert.equal(401, res.status)
        end)

        it("answers 403 when no consumer matches", function()
            local res = assert(get(port_req, "/auth/echo", pki.carol))
            assert.equal(403, res.status)
            assert.equal("no consumer for this certificate", res.json.error)
            res = assert(get(port_req, "/dns/echo", pki.alice))
            assert.equal(403, res.status)
        end)

        it("lets requests without a certificate through when not required", function()
            local res = assert(get(port_req, "/optional/echo"))
            assert.equal(200, res.status)
            assert.is_nil(helpers.echo_header(res.json, "X-Consumer-Username"))
            res = assert(get(port_req, "/optional/echo", pki.carol))
            assert.equal(403, res.status)
        end)

        it("validates its config", function()
            local dir = helpers.tmpdir()
            helpers.write_file(dir .. "/a.yaml", [[
listen: [ "127.0.0.1:1" ]
upstreams: { u: { targets: [ 127.0.0.1:2 ] } }
routes:
  - paths: [ / ]
    upstream: u
    plugins:
      mtls-auth: { consumer_by: [ cn, nickname ] }
]])
            local code, out = helpers.run { "check", "-c", dir .. "/a.yaml" }
            assert.equal(1, code, out)
            assert.truthy(out:find(dir .. "/a.yaml:7: routes[0].plugins.mtls-auth.consumer_by[1]: ",
                1, true), out)
        end)
    end)
end)
