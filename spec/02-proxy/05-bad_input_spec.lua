-- Malformed and hostile requests: 400 and a closed connection, and the
-- upstream never sees them; path normalisation cannot escape a route.
local helpers = require "spec.helpers"

local BAD_REQUESTS = {
    {
        "Content-Length and Transfer-Encoding together",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" ..
            "5\r\nhello\r\n0\r\n\r\n",
    },
    {
        "two different Content-Length values",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    },
    {
        "a Content-Length that is not a number",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nhello",
    },
    {
        "a negative Content-Length",
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nhello",
    },
    {
        "a bad chunk size",
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    },
    {
        "an obs-fold header line",
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n",
    },
    {
        "a control character in a header value",
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-Ctl: a\1b\r\n\r\n",
    },
    {
        "whitespace between a header name and its colon",
        "GET /echo HTTP/1.1\r\nHost: x\r\nX-Space : b\r\n\r\n",
    },
    {
        "garbage",
        "GARBAGE\r\n\r\n",
    },
    {
        "a request line without a version",
        "GET /echo\r\n\r\n",
    },
}

describe("bad input", function()
    local up, gw

    lazy_setup(function()
        gw, up = helpers.start_proxy {
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    for _, case in ipairs(BAD_REQUESTS) do
        local name, bytes = case[1], case[2]
        it("answers 400 and closes for " .. name, function()
            local before = up:stats().requests
            local data, closed = helpers.raw(gw.port, bytes, { timeout = 3 })
            local res, err = helpers.parse_response(data)
            assert(res, "no complete response (" .. tostring(err) .. "): " .. data)
            assert.equal(400, res.status)
            assert.is_table(res.json, "not JSON: " .. res.body)
            assert.equal(400, res.json.status)
            assert.equal(res.json.request_id, res.headers["x-request-id"])
            assert.is_true(closed, "the connection stayed open")
            assert.equal(before, up:stats().requests, "the request reached the upstream")
        end)
    end

    it("still serves good requests afterwards", function()
        local res = assert(helpers.http(gw.port, { path = "/echo" }))
        assert.equal(200, res.status)
        assert.equal("a", res.headers["x-upstream"])
    end)
end)

describe("path normalisation", function()
    local gw

    lazy_setup(function()
        gw = helpers.start_proxy {
            routes = { { name = "public", paths = { "/public" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function get(path)
        return assert(helpers.http(gw.port, { path = path }))
    end

    it("routes a plain path under the prefix", function()
        local res = get("/public/a")
        assert.equal(200, res.status)
        assert.equal("a", res.headers["x-upstream"])
    end)

    it("resolves /.. before routing: /public/../admin is not /public", function()
        local res = get("/public/../admin")
        assert.equal(404, res.status)
        assert.equal("no route matched", res.json and res.json.error)
        assert.is_nil(res.headers["x-upstream"])
    end)

    it("decodes escaped dots before resolving: /public/%2e%2e/admin", function()
        local res = get("/public/%2e%2e/admin")
        assert.equal(404, res.status)
        assert.is_nil(res.headers["x-upstream"])
        res = get("/public/%2E%2E/admin")
        assert.equal(404, res.status)
    end)

    it("answers 400 to a path that climbs above the root", function()
        for _, path in ipairs { "/%2e%2e/x", "/../x", "/public/../../x" } do
            local res = get(path)
            assert.equal(400, res.status, path)
            assert.is_nil(res.headers["x-upstream"], path)
        end
    end)

    it("answers 400 to an escaped NUL or a bad escape", function()
        for _, path in ipairs { "/public/a%00b", "/public/%zz" } do
            local res = get(path)
            assert.equal(400, res.status, path)
            assert.is_nil(res.headers["x-upstream"], path)
        end
    end)

    it("routes /public//a/./b to /public", function()
        local res = get("/public//a/./b")
        assert.equal(200, res.status)
        assert.equal("a", res.headers["x-upstream"])
    end)

    it("routes a path that stays under the prefix after /..", function()
        local res = get("/public/a/../b")
        assert.equal(200, res.status)
        assert.equal("a", res.headers["x-upstream"])
    end)

    it("routes a path whose prefix is percent-encoded", function()
        local res = get("/%70ublic/x")
        assert.equal(200, res.status)
        assert.equal("a", res.headers["x-upstream"])
    end)
end)
