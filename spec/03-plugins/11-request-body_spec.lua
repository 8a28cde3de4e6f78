-- The request sent upstream: moongate.upstream.set_body replaces the body
-- (the client's is still read and dropped, so the connection goes on), and
-- moongate.upstream.set_target sends the request to an address outside the
-- config's upstreams.
local helpers = require "spec.helpers"

local FIXTURES = "spec/fixtures/plugins"

describe("plugins: upstream.set_body and upstream.set_target", function()
    local a, b, other, gw

    lazy_setup(function()
        a = helpers.start_upstream { name = "a" }
        b = helpers.start_upstream { name = "b" }
        other = helpers.start_upstream { name = "other" }
        gw = helpers.start_gateway {
            plugin_paths = { FIXTURES },
            upstreams = {
                u = { targets = { a:address() }, timeouts = { read = "500ms" } },
                two = { targets = { a:address(), b:address() }, retries = 1 },
            },
            routes = {
                { name = "r", paths = { "/" }, upstream = "u", plugins = { ["upstream-body"] = {} } },
                { name = "retry", paths = { "/retry" }, strip_path = true, upstream = "two",
                  plugins = { ["upstream-body"] = {} } },
                { name = "small", paths = { "/small" }, upstream = "u", max_body_size = 1000,
                  plugins = { ["upstream-body"] = {} } },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function header(echo, name)
        return helpers.echo_header(echo, name)
    end

    it("sends a body with a GET that had none", function()
        local res = assert(helpers.http(gw.port, { path = "/echo", headers = { ["X-Set-Body"] = "hello" } }))
        assert.equal(200, res.status)
        assert.equal("GET", res.json.method)
        assert.equal("hello", res.json.body)
        assert.equal("5", header(res.json, "Content-Length"))
    end)

    it("replaces a Content-Length body, and the connection serves the next request", function()
        local c = assert(helpers.connect(gw.port))
        local res = assert(c:request {
            method = "POST", path = "/echo", body = "the original body",
            headers = { ["X-Set-Body"] = "new" },
        })
        assert.equal("new", res.json.body)
        assert.equal("3", header(res.json, "Content-Length"))
        local again = assert(c:request { path = "/echo/next" })
        assert.equal("/echo/next", again.json.path)
        assert.equal("", again.json.body)
        c:close()
    end)

    it("replaces a chunked body: Content-Length, no Transfer-Encoding", function()
        local c = assert(helpers.connect(gw.port))
        local pieces = { "abc", "def", "ghi" }
        local i = 0
        local res = assert(c:request {
            method = "POST", path = "/echo", headers = { ["X-Set-Body"] = "replaced" },
            body = function()
                i = i + 1
                return pieces[i]
            end,
        })
        assert.equal("replaced", res.json.body)
        assert.equal("8", header(res.json, "Content-Length"))
        assert.is_nil(header(res.json, "Transfer-Encoding"))
        local again = assert(c:request { method = "POST", path = "/echo", body = "plain" })
        assert.equal("plain", again.json.body)
        c:close()
    end)

    it("reads and drops a large client body, then serves a pipelined request", function()
        local big = helpers.pattern(300000)
        local c = assert(helpers.connect(gw.port))
        assert(c:send(helpers.request_string {
            method = "PUT", path = "/echo/first", body = big, headers = { ["X-Set-Body"] = "small" },
        } .. helpers.request_string { path = "/echo/second" }))
        local first = assert(c:read_response())
        assert.equal("small", first.json.body)
        assert.equal(5, first.json.body_length)
        local second = assert(c:read_response())
        assert.equal("/echo/second", second.json.path)
        c:close()
    end)

    it("still limits the client's body it drops", function()
        local c = assert(helpers.connect(gw.port))
        local sent = 0
        local res = assert(c:request {
            method = "POST", path = "/small", headers = { ["X-Set-Body"] = "x" },
            body = function()
                sent = sent + 1
                return sent <= 5 and helpers.pattern(500) or nil
            end,
        })
        assert.equal(413, res.status)
        c:close()
    end)

    it("sends the client's body changed by the plugin", function()
        local res = assert(helpers.http(gw.port, {
            method = "POST", path = "/echo", body = "hello", headers = { ["X-Upper-Body"] = "1" },
        }))
        assert.equal("HELLO", res.json.body)
    end)

    it("answers a client that expects 100-continue", function()
        local c = assert(helpers.connect(gw.port))
        assert(c:send(helpers.request_head {
            method = "POST", path = "/echo",
            headers = { ["X-Set-Body"] = "x", ["Expect"] = "100-continue", ["Content-Length"] = "4" },
        }))
        local interim = assert(c:read_response { interim = true })
        assert.equal(100, interim.status)
        assert(c:send("body"))
        local res = assert(c:read_response())
        assert.equal("x", res.json.body)
        c:close()
    end)

    it("replays the new body when the request is retried on another target", function()
        local before = a:stats().requests
        for _ = 1, 2 do
            -- a closes the connection without answering; b answers.
            local res = assert(helpers.http(gw.port, {
                method = "PUT", path = "/retry/close?only=a", body = "client",
                headers = { ["X-Set-Body"] = "replayed" },
            }))
            assert.equal(200, res.status)
            assert.equal("b", res.headers["x-upstream"])
            assert.equal("replayed", res.json.body)
        end
        assert.is_true(a:stats().requests > before, "a was never tried")
    end)

    it("refuses set_body in HEAD requests and outside rewrite and access", function()
        local res = assert(helpers.http(gw.port, {
            method = "HEAD", path = "/echo", headers = { ["X-Set-Body"] = "x" },
        }))
        assert.equal(500, res.status)
        helpers.wait_until(function()
            return gw:error_log():find("set_body: a HEAD request has no body", 1, true)
        end, 3, "the error")
    end)

    it("sends the request to a target outside the config", function()
        local res = assert(helpers.http(gw.port, {
            path = "/echo", headers = { ["X-Target"] = other:address() },
        }))
        assert.equal(200, res.status)
        assert.equal("other", res.headers["x-upstream"])
        assert.equal("/echo", res.json.path)
    end)

    it("resolves a name, and keeps the connection to the target alive", function()
        local ids = {}
        for i = 1, 3 do
            local res = assert(helpers.http(gw.port, {
                path = "/conn", headers = { ["X-Target"] = "localhost:" .. other.port },
            }))
            assert.equal("other", res.headers["x-upstream"])
            ids[i] = res.json.conn_id
        end
        assert.equal(ids[1], ids[2])
        assert.equal(ids[1], ids[3])
    end)

    it("uses the upstream's timeouts, and answers 502 for a target that refuses", function()
        local t0 = helpers.now()
        local res = assert(helpers.http(gw.port, {
            path = "/slow?ms=3000", headers = { ["X-Target"] = other:address() },
        }))
        assert.equal(504, res.status)
        assert.is_true(helpers.now() - t0 < 2, "the read timeout of u (500 ms) applies")
        local port = helpers.free_port()
        res = assert(helpers.http(gw.port, {
            path = "/echo", headers = { ["X-Target"] = "127.0.0.1:" .. port, ["X-Retries"] = "0" },
        }))
        assert.equal(502, res.status)
    end)

    it("refuses an invalid target", function()
        local res = assert(helpers.http(gw.port, {
            path = "/echo", headers = { ["X-Target"] = "bad host:80" },
        }))
        assert.equal(500, res.status)
        helpers.wait_until(function()
            return gw:error_log():find("set_target: invalid host", 1, true)
        end, 3, "the error")
    end)
end)
