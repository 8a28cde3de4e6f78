-- Proxying to upstreams over TLS: requests and bodies both ways, SNI,
-- pooled TLS connections and session resumption.
local helpers = require "spec.helpers"
local certs = require "spec.05-upstream-tls.certs"

local function header(res, name)
    return helpers.header_values(res, name)[1]
end

describe("upstream TLS: proxying", function()
    local c, up, gw

    lazy_setup(function()
        c = certs.make()
        up = certs.start_upstream(c)
        local port = up.port
        gw = helpers.start_gateway {
            upstreams = {
                ip = { targets = { "127.0.0.1:" .. port }, tls = { ca = c.ca } },
                named = { targets = { "localhost:" .. port }, tls = { ca = c.ca } },
                sni = { targets = { "127.0.0.1:" .. port }, tls = { ca = c.ca, sni = "localhost" } },
                fresh = {
                    targets = { "127.0.0.1:" .. port },
                    tls = { ca = c.ca },
                    keepalive = { max_idle = 0 },
                },
                tls12 = {
                    targets = { "127.0.0.1:" .. port },
                    tls = { ca = c.ca, protocols = { "TLSv1.2" } },
                    keepalive = { max_idle = 0 },
                },
                plain_verify_off = { targets = { "127.0.0.1:" .. port }, tls = { verify = false } },
            },
            routes = {
                { paths = { "/ip/" }, upstream = "ip", strip_path = true },
                { paths = { "/named/" }, upstream = "named", strip_path = true },
                { paths = { "/sni/" }, upstream = "sni", strip_path = true },
                { paths = { "/fresh/" }, upstream = "fresh", strip_path = true },
                { paths = { "/tls12/" }, upstream = "tls12", strip_path = true },
                { paths = { "/noverify/" }, upstream = "plain_verify_off", strip_path = true },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("proxies a request and its answer over TLS", function()
        local res = assert(helpers.http(gw.port, { path = "/ip/echo?x=1" }))
        assert.equal(200, res.status)
        assert.equal("/echo?x=1", res.json.path)
        assert.equal("TLSv1.3", header(res, "X-TLS-Protocol"))
        assert.equal("tls", header(res, "X-Upstream"))
    end)

    it("sends request bodies and streams large answers over TLS", function()
        local body = helpers.pattern(2000000)
        local res = assert(helpers.http(gw.port, { method = "POST", path = "/ip/sink", body = body,
            timeout = 20 }))
        assert.equal(200, res.status)
        assert.equal(2000000, res.json.body_length)
        body = helpers.pattern(500000)
        res = assert(helpers.http(gw.port, { method = "POST", path = "/ip/echo", body = body }))
        assert.equal(body, res.json.body)
        res = assert(helpers.http(gw.port, { method = "POST", path = "/ip/echo", body = "hello",
            chunked = true }))
        assert.equal("hello", res.json.body)
        res = assert(helpers.http(gw.port, { path = "/ip/bytes?n=3000000", timeout = 20 }))
        assert.equal(200, res.status)
        assert.equal(3000000, #res.body)
        assert.equal(helpers.pattern(3000000), res.body)
    end)

    it("pauses reading the upstream for a slow client and resumes", function()
        local client = assert(helpers.connect(gw.port, { timeout = 20 }))
        assert(client:send_request { path = "/ip/bytes?n=4000000" })
        helpers.sleep(0.5) -- the socket buffers fill up; the gateway stops reading
        local res = assert(client:read_response())
        client:close()
        assert.equal(200, res.status)
        assert.equal(4000000, #res.body)
        assert.equal(helpers.pattern(4000000), res.body)
    end)

    it("sends no SNI to an IP address target unless told to", function()
        local res = assert(helpers.http(gw.port, { path = "/ip/echo" }))
        assert.equal("-", header(res, "X-TLS-SNI"))
        res = assert(helpers.http(gw.port, { path = "/sni/echo" }))
        assert.equal(200, res.status)
        assert.equal("localhost", header(res, "X-TLS-SNI"))
    end)

    it("sends the target's host name as SNI and verifies it", function()
        local res = assert(helpers.http(gw.port, { path = "/named/echo" }))
        assert.equal(200, res.status)
        assert.equal("localhost", header(res, "X-TLS-SNI"))
    end)

    it("reuses one pooled TLS connection for requests on one client connection", function()
        local client = assert(helpers.connect(gw.port, { timeout = 5 }))
        local ids = {}
        for i = 1, 4 do
            local res = assert(client:request { path = "/ip/conn" })
            assert.equal(200, res.status)
            ids[i] = res.json.conn_id
            if i > 1 then
                assert.equal(ids[1], res.json.conn_id)
                assert.is_true(res.json.requests_on_conn >= i)
            end
        end
        client:close()
        -- A new client connection gets the pooled upstream connection too.
        local res = assert(helpers.http(gw.port, { path = "/ip/conn" }))
        assert.equal(ids[1], res.json.conn_id)
    end)

    it("resumes the TLS session on new connections to the same target", function()
        local first = assert(helpers.http(gw.port, { path = "/fresh/conn" }))
        assert.equal(200, first.status)
        local second = assert(helpers.http(gw.port, { path = "/fresh/conn" }))
        assert.equal(200, second.status)
        assert.are_not.equal(first.json.conn_id, second.json.conn_id)
        assert.equal("yes", header(second, "X-TLS-Session-Reused"))
        local third = assert(helpers.http(gw.port, { path = "/fresh/conn" }))
        assert.equal("yes", header(third, "X-TLS-Session-Reused"))
    end)

    it("limits the protocol versions and resumes TLS 1.2 sessions too", function()
        local first = assert(helpers.http(gw.port, { path = "/tls12/echo" }))
        assert.equal(200, first.status)
        assert.equal("TLSv1.2", header(first, "X-TLS-Protocol"))
        local second = assert(helpers.http(gw.port, { path = "/tls12/echo" }))
        assert.equal("TLSv1.2", header(second, "X-TLS-Protocol"))
        assert.equal("yes", header(second, "X-TLS-Session-Reused"))
    end)

    it("accepts any certificate with verify: false", function()
        local res = assert(helpers.http(gw.port, { path = "/noverify/echo" }))
        assert.equal(200, res.status)
        assert.equal("/echo", res.json.path)
    end)

    it("logs no TLS failure while all this works", function()
        assert.is_nil(gw:error_log():find("TLS", 1, true), gw:error_log())
    end)
end)

describe("upstream TLS: pooled connections the upstream closes", function()
    local c, up, gw

    lazy_setup(function()
        c = certs.make()
        up = certs.start_upstream(c)
        gw = helpers.start_gateway {
            upstreams = { u = { targets = { up:address() }, tls = { ca = c.ca }, retries = 0 } },
            routes = { { paths = { "/" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("drops an idle pooled connection the upstream closed and connects again", function()
        local first = assert(helpers.http(gw.port, { path = "/conn" }))
        assert.equal(200, first.status)
        -- The upstream ends its connections (with close_notify) and comes back.
        local port = up.port
        up:stop()
        up = certs.start_upstream(c, { port = port })
        helpers.sleep(0.2)
        local res = assert(helpers.http(gw.port, { path = "/conn" }))
        assert.equal(200, res.status)
        assert.equal(1, res.json.requests_on_conn) -- a new connection
        local log = gw:error_log()
        assert.is_nil(log:find("target " .. up:address() .. ":", 1, true), log)
    end)
end)
