-- Keep-alive on both sides: several requests and pipelining on one client
-- connection, HTTP/1.0 rules, and reuse of upstream connections.
local helpers = require "spec.helpers"

describe("keep-alive: client side", function()
    local gw

    lazy_setup(function()
        gw = helpers.start_proxy {
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("serves several requests on one connection", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        for i = 1, 5 do
            local res = assert(c:request { path = "/echo?i=" .. i })
            assert.equal(200, res.status)
            assert.equal("/echo?i=" .. i, res.json.path)
        end
        assert.is_false(c:closed(0.3))
        c:close()
    end)

    it("answers three pipelined requests in order", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        assert(c:send(helpers.request_string { path = "/slow?ms=300" } ..
            helpers.request_string { path = "/echo?n=2" } ..
            helpers.request_string { path = "/echo?n=3" }))
        local paths = {}
        for i = 1, 3 do
            local res = assert(c:read_response())
            assert.equal(200, res.status)
            paths[i] = res.json.path
        end
        assert.same({ "/slow?ms=300", "/echo?n=2", "/echo?n=3" }, paths)
        c:close()
    end)

    it("answers pipelined requests with bodies in order", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        assert(c:send(helpers.request_string { method = "POST", path = "/echo?n=1", body = "one" } ..
            helpers.request_string { path = "/echo?n=2" } ..
            helpers.request_string { method = "POST", path = "/echo?n=3", body = "three", chunked = true }))
        local one = assert(c:read_response())
        local two = assert(c:read_response())
        local three = assert(c:read_response())
        assert.equal("one", one.json.body)
        assert.equal("/echo?n=2", two.json.path)
        assert.equal("three", three.json.body)
        c:close()
    end)

    it("closes an HTTP/1.0 connection without keep-alive after the answer", function()
        local data, closed = helpers.raw(gw.port, "GET /echo?v=10 HTTP/1.0\r\nHost: localhost\r\n\r\n",
            { timeout = 3 })
        assert.is_true(closed, "the connection stayed open")
        local res = assert(helpers.parse_response(data))
        assert.equal(200, res.status)
        assert.equal("/echo?v=10", res.json.path)
    end)

    it("keeps an HTTP/1.0 connection with Connection: keep-alive open", function()
        local c = assert(helpers.connect(gw.port, { timeout = 3 }))
        local opts = { version = "1.0", path = "/echo?n=1", headers = { Connection = "keep-alive" } }
        local first = assert(c:request(opts))
        assert.equal(200, first.status)
        assert.is_falsy(first.close_delimited, "a keep-alive answer needs a length")
        opts.path = "/echo?n=2"
        local second = assert(c:request(opts))
        assert.equal(200, second.status)
        assert.equal("/echo?n=2", second.json.path)
        c:close()
    end)

    it("closes the connection after a request with Connection: close", function()
        local c = assert(helpers.connect(gw.port, { timeout = 3 }))
        local res = assert(c:request { path = "/echo", headers = { Connection = "close" } })
        assert.equal(200, res.status)
        assert.is_true((c:closed(2)))
        c:close()
    end)
end)

describe("keep-alive: upstream side", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway {
            workers = 1,
            upstreams = {
                u = { targets = { up:address() }, keepalive = { max_idle = 8, idle_timeout = "60s" } },
            },
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("reuses one upstream connection for consecutive requests", function()
        local seen = {}
        for i = 1, 4 do
            local res = assert(helpers.http(gw.port, { path = "/conn" }))
            assert.equal(200, res.status)
            seen[i] = res.json
        end
        for i = 2, 4 do
            assert.equal(seen[1].conn_id, seen[i].conn_id)
            assert.equal(seen[i - 1].requests_on_conn + 1, seen[i].requests_on_conn)
        end
    end)

    it("reuses it for requests on one client connection", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        local first = assert(c:request { path = "/conn" }).json
        local second = assert(c:request { path = "/conn" }).json
        c:close()
        assert.equal(first.conn_id, second.conn_id)
        assert.equal(first.requests_on_conn + 1, second.requests_on_conn)
    end)

    it("does not reuse a connection the upstream closed", function()
        local before = assert(helpers.http(gw.port, { path = "/conn" })).json
        local hop = assert(helpers.http(gw.port, { path = "/hop" }))
        assert.equal(200, hop.status)
        assert.equal("hop", hop.body)
        local after = assert(helpers.http(gw.port, { path = "/conn" }))
        assert.equal(200, after.status)
        assert.are_not.equal(before.conn_id, after.json.conn_id)
    end)
end)
