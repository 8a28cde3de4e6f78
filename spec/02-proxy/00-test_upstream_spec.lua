-- The test upstream itself, without the gateway: the other specs rely on
-- every behaviour checked here.
local helpers = require "spec.helpers"

local pattern = helpers.pattern

describe("test upstream", function()
    local up

    lazy_setup(function()
        up = helpers.start_upstream { name = "t" }
    end)

    lazy_teardown(helpers.stop_all)

    it("echoes the request as JSON with X-Upstream", function()
        local res = assert(helpers.http(up.port, {
            method = "POST", path = "/echo?x=1", body = "hello",
            headers = { { "X-One", "1" }, { "x-two", "2" } },
        }))
        assert.equal(200, res.status)
        assert.equal("t", res.headers["x-upstream"])
        assert.equal("t", res.json.name)
        assert.equal("POST", res.json.method)
        assert.equal("/echo?x=1", res.json.path)
        assert.equal("1.1", res.json.http_version)
        assert.equal("hello", res.json.body)
        assert.equal(5, res.json.body_length)
        assert.same({ "Host", "localhost" }, res.json.headers[1])
        assert.same({ "X-One", "1" }, res.json.headers[2])
        assert.same({ "x-two", "2" }, res.json.headers[3])
    end)

    it("applies ?status= and ?header=", function()
        local res = assert(helpers.http(up.port, {
            path = "/anything?status=202&header=X-A:one&header=X-A:two&header=X-B:b%20c",
        }))
        assert.equal(202, res.status)
        assert.same({ "one", "two" }, res.headers["x-a"])
        assert.equal("b c", res.headers["x-b"])
    end)

    it("decodes chunked request bodies", function()
        local res = assert(helpers.http(up.port, {
            method = "POST", path = "/echo", body = "hello world", chunked = true,
        }))
        assert.equal("hello world", res.json.body)
        assert.equal(11, res.json.body_length)
    end)

    it("streams /bytes with Content-Length and chunked", function()
        local res = assert(helpers.http(up.port, { path = "/bytes?n=100000" }))
        assert.equal("100000", res.headers["content-length"])
        assert.equal(pattern(100000), res.body)
        res = assert(helpers.http(up.port, { path = "/bytes?n=100000&chunked=1&chunk=999" }))
        assert.is_true(res.chunked)
        assert.equal(pattern(100000), res.body)
    end)

    it("counts /sink bodies", function()
        local res = assert(helpers.http(up.port, {
            method = "POST", path = "/sink", body = ("x"):rep(300000),
        }))
        assert.equal(300000, res.json.body_length)
    end)

    it("answers /chunked, /no-length, /status/NNN and HEAD", function()
        local res = assert(helpers.http(up.port, { path = "/chunked" }))
        assert.is_true(res.chunked)
        assert.equal("hello world", res.body)
        res = assert(helpers.http(up.port, { path = "/no-length" }))
        assert.is_true(res.close_delimited)
        assert.equal("no length body", res.body)
        res = assert(helpers.http(up.port, { path = "/status/204" }))
        assert.equal(204, res.status)
        assert.is_nil(res.headers["content-length"])
        res = assert(helpers.http(up.port, { path = "/status/503" }))
        assert.equal(503, res.status)
        assert.equal("0", res.headers["content-length"])
        res = assert(helpers.http(up.port, { method = "HEAD", path = "/bytes?n=77" }))
        assert.equal("77", res.headers["content-length"])
        assert.equal("", res.body)
    end)

    it("breaks connections on /truncate, /close and /reset", function()
        local res, err, partial = helpers.http(up.port, { path = "/truncate" })
        assert.is_nil(res, err)
        assert.equal(200, partial.status)
        assert.equal(10, partial.body_length)
        res = helpers.http(up.port, { path = "/close" })
        assert.is_nil(res)
        res = helpers.http(up.port, { path = "/reset" })
        assert.is_nil(res)
    end)

    it("sends hop-by-hop headers on /hop and closes", function()
        local data, closed = helpers.raw(up.port, helpers.request_string { path = "/hop" })
        assert.is_true(closed)
        local res = assert(helpers.parse_response(data))
        assert.equal("close, X-Hop", res.headers["connection"])
        assert.equal("1", res.headers["x-hop"])
        assert.equal("hop", res.body)
    end)

    it("keeps connections alive and answers pipelined requests in order", function()
        local c = assert(helpers.connect(up.port))
        local first = assert(c:request { path = "/conn" }).json
        local second = assert(c:request { path = "/conn" }).json
        assert.equal(first.conn_id, second.conn_id)
        assert.equal(first.requests_on_conn + 1, second.requests_on_conn)
        assert(c:send(helpers.request_string { path = "/slow?ms=200" } ..
            helpers.request_string { path = "/echo?n=2" } ..
            helpers.request_string { method = "POST", path = "/echo?n=3", body = "abc" }))
        assert.equal("/slow?ms=200", assert(c:read_response()).json.path)
        assert.equal("/echo?n=2", assert(c:read_response()).json.path)
        assert.equal("abc", assert(c:read_response()).json.body)
        assert.is_false(c:closed(0.2))
        c:close()
    end)

    it("sends 100 Continue for Expect: 100-continue", function()
        local c = assert(helpers.connect(up.port, { timeout = 2 }))
        assert(c:send(helpers.request_head {
            method = "POST", path = "/echo",
            headers = { Expect = "100-continue", ["Content-Length"] = "5" },
        }))
        assert.equal(100, assert(c:read_response { interim = true }).status)
        assert(c:send("hello"))
        assert.equal("hello", assert(c:read_response()).json.body)
        c:close()
    end)

    it("sends half a body on /slow-body, the rest later", function()
        local data = helpers.raw(up.port, helpers.request_string { path = "/slow-body?ms=1000" },
            { timeout = 0.3 })
        local res, _, partial = helpers.parse_response(data)
        assert.is_nil(res)
        assert.equal("hello", partial.body)
    end)

    it("answers 400 to garbage and closes", function()
        local data, closed = helpers.raw(up.port, "GARBAGE\r\n\r\n")
        assert.is_true(closed)
        assert.equal(400, assert(helpers.parse_response(data)).status)
    end)

    it("reports and changes its health", function()
        assert.equal(200, assert(helpers.http(up.port, { path = "/health" })).status)
        up:set_health(503)
        assert.equal(503, assert(helpers.http(up.port, { path = "/health" })).status)
        up:set_health(200)
        assert.equal("ok", assert(helpers.http(up.port, { path = "/health" })).body)
    end)

    it("counts complete requests in /stats, not /stats itself", function()
        local before = up:stats().requests
        helpers.http(up.port, { path = "/echo" })
        helpers.raw(up.port, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhel",
            { timeout = 0.2 })
        assert.equal(before + 1, up:stats().requests)
    end)

    it("behaves as /echo for ?only=OTHER", function()
        local res = assert(helpers.http(up.port, { path = "/close?only=other" }))
        assert.equal(200, res.status)
        assert.equal("/close?only=other", res.json.path)
    end)

    it("stops on SIGTERM", function()
        local extra = helpers.start_upstream { name = "x" }
        local graceful, status = extra:stop()
        assert.is_true(graceful)
        assert.equal(0, status)
    end)
end)
