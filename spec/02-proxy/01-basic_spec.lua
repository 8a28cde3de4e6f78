-- Plain proxying: methods, status, headers and bodies pass intact; the
-- upstream always gets HTTP/1.1 and a request id; gateway errors are JSON.
local helpers = require "spec.helpers"

local pattern = helpers.pattern

describe("proxy: basic requests", function()
    local gw

    lazy_setup(function()
        gw = helpers.start_proxy {
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    for _, method in ipairs { "GET", "DELETE" } do
        it("passes a " .. method .. " with its path and query", function()
            local res = assert(helpers.http(gw.port, { method = method, path = "/echo?a=1&b=two" }))
            assert.equal(200, res.status)
            assert.equal("a", res.headers["x-upstream"])
            assert.equal(method, res.json.method)
            assert.equal("/echo?a=1&b=two", res.json.path)
        end)
    end

    for _, method in ipairs { "POST", "PUT" } do
        it("passes a " .. method .. " with its body", function()
            local body = "name=moongate&data=" .. ("y"):rep(5000)
            local res = assert(helpers.http(gw.port, { method = method, path = "/echo", body = body }))
            assert.equal(200, res.status)
            assert.equal(method, res.json.method)
            assert.equal(#body, res.json.body_length)
            assert.equal(body, res.json.body)
        end)
    end

    it("passes HEAD: the upstream's headers and no body", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        local res = assert(c:request { method = "HEAD", path = "/bytes?n=1234" })
        assert.equal(200, res.status)
        assert.equal("a", res.headers["x-upstream"])
        assert.equal("1234", res.headers["content-length"])
        assert.equal("", res.body)
        -- No body bytes follow the head: the next answer parses cleanly.
        local next_res = assert(c:request { path = "/echo?after=head" })
        assert.equal(200, next_res.status)
        assert.equal("/echo?after=head", next_res.json.path)
        c:close()
    end)

    it("passes the upstream's status and response headers", function()
        local res = assert(helpers.http(gw.port, {
            path = "/echo?status=201&header=X-Custom:yes&header=X-Other:two%20words",
        }))
        assert.equal(201, res.status)
        assert.equal("yes", res.headers["x-custom"])
        assert.equal("two words", res.headers["x-other"])
        assert.equal("application/json", res.headers["content-type"])
    end)

    it("passes an upstream error status as it is", function()
        local res = assert(helpers.http(gw.port, { path = "/status/503" }))
        assert.equal(503, res.status)
        assert.equal("a", res.headers["x-upstream"])
        assert.equal("", res.body)
    end)

    it("passes a response body byte for byte", function()
        local res = assert(helpers.http(gw.port, { path = "/bytes?n=200000" }))
        assert.equal(200, res.status)
        assert.equal(200000, res.body_length)
        assert.equal(pattern(200000), res.body)
    end)

    it("passes request headers", function()
        local res = assert(helpers.http(gw.port, {
            path = "/echo",
            headers = { ["X-Custom"] = "hello", ["User-Agent"] = "spec/1.0", Accept = "text/x-test" },
        }))
        assert.equal("hello", helpers.echo_header(res.json, "x-custom"))
        assert.equal("spec/1.0", helpers.echo_header(res.json, "user-agent"))
        assert.equal("text/x-test", helpers.echo_header(res.json, "accept"))
    end)

    it("speaks HTTP/1.1 to the upstream for an HTTP/1.0 client", function()
        local data = helpers.raw(gw.port, "GET /echo HTTP/1.0\r\nHost: localhost\r\n\r\n", { timeout = 5 })
        local res = assert(helpers.parse_response(data))
        assert.equal(200, res.status)
        assert.equal("1.1", res.json.http_version)
    end)

    it("sends a request id to the upstream, a new one per request", function()
        local one = assert(helpers.http(gw.port, { path = "/echo" })).json
        local two = assert(helpers.http(gw.port, { path = "/echo" })).json
        local id1 = helpers.echo_header(one, "x-request-id")
        local id2 = helpers.echo_header(two, "x-request-id")
        assert.is_string(id1)
        assert.matches("^[%w%-_.]+$", id1)
        assert.is_string(id2)
        assert.are_not.equal(id1, id2)
    end)

    it("keeps the client's own X-Request-Id", function()
        local res = assert(helpers.http(gw.port, {
            path = "/echo", headers = { ["X-Request-Id"] = "client-id-42" },
        }))
        assert.same({ "client-id-42" }, helpers.header_values(res.json, "x-request-id"))
    end)
end)

describe("proxy: gateway errors", function()
    local up, gw

    lazy_setup(function()
        gw, up = helpers.start_proxy {
            routes = { { name = "api", paths = { "/api" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("answers 404 as JSON with a request id when no route matches", function()
        local res = assert(helpers.http(gw.port, { path = "/nothing/here" }))
        assert.equal(404, res.status)
        assert.matches("^application/json", res.headers["content-type"])
        assert.is_table(res.json, "body is not JSON: " .. res.body)
        assert.equal(404, res.json.status)
        assert.equal("no route matched", res.json.error)
        assert.is_string(res.json.request_id)
        assert.is_true(#res.json.request_id > 0)
        assert.equal(res.json.request_id, res.headers["x-request-id"])
        assert.equal(0, up:stats().requests)
    end)

    it("gives every error its own request id", function()
        local one = assert(helpers.http(gw.port, { path = "/x" }))
        local two = assert(helpers.http(gw.port, { path = "/x" }))
        assert.equal(404, one.status)
        assert.equal(404, two.status)
        assert.are_not.equal(one.json.request_id, two.json.request_id)
    end)

    it("uses the client's X-Request-Id in its error", function()
        local res = assert(helpers.http(gw.port, {
            path = "/x", headers = { ["X-Request-Id"] = "mine-7" },
        }))
        assert.equal(404, res.status)
        assert.equal("mine-7", res.json.request_id)
        assert.equal("mine-7", res.headers["x-request-id"])
    end)
end)
