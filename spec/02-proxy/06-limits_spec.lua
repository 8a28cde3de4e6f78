-- Size limits: header block, header count, URI and body (global and per
-- route), each answered with its status before anything reaches the upstream.
local helpers = require "spec.helpers"

local function gateway_error(res, status)
    assert.equal(status, res.status)
    assert.is_table(res.json, "not JSON: " .. tostring(res.body))
    assert.equal(status, res.json.status)
    assert.equal(res.json.request_id, res.headers["x-request-id"])
    assert.is_nil(res.headers["x-upstream"])
end

local function many_headers(n)
    local list = {}
    for i = 1, n do
        list[i] = { "X-H" .. i, "v" .. i }
    end
    return list
end

-- Send `bytes`, return the response that arrives while we send no more.
local function early_answer(port, bytes)
    local data = helpers.raw(port, bytes, {
        timeout = 3,
        ["until"] = function(d) return helpers.parse_response(d) ~= nil end,
    })
    local res, err = helpers.parse_response(data)
    assert(res, "no response while the body was still unsent (" .. tostring(err) .. "): " .. data)
    return res
end

describe("limits", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway {
            limits = { max_header_size = "4k", max_uri_size = "1k", max_body_size = "64k", max_headers = 20 },
            upstreams = { u = { targets = { up:address() } } },
            routes = {
                { name = "tiny", paths = { "/tiny" }, upstream = "u", max_body_size = "1k" },
                { name = "big", paths = { "/big" }, upstream = "u", max_body_size = "1m" },
                { name = "r", paths = { "/" }, upstream = "u" },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("accepts a header block under max_header_size", function()
        local res = assert(helpers.http(gw.port, { path = "/echo", headers = { ["X-Big"] = ("b"):rep(3000) } }))
        assert.equal(200, res.status)
    end)

    it("answers 431 to a header block over max_header_size", function()
        local before = up:stats().requests
        local res = assert(helpers.http(gw.port, { path = "/echo", headers = { ["X-Big"] = ("b"):rep(5000) } }))
        gateway_error(res, 431)
        assert.equal(before, up:stats().requests)
    end)

    it("accepts max_headers headers", function()
        -- 19 plus Host
        local res = assert(helpers.http(gw.port, { path = "/echo", headers = many_headers(19) }))
        assert.equal(200, res.status)
    end)

    it("answers 431 to more than max_headers headers", function()
        local before = up:stats().requests
        local res = assert(helpers.http(gw.port, { path = "/echo", headers = many_headers(25) }))
        gateway_error(res, 431)
        assert.equal(before, up:stats().requests)
    end)

    it("accepts a URI under max_uri_size", function()
        local res = assert(helpers.http(gw.port, { path = "/echo?q=" .. ("u"):rep(900) }))
        assert.equal(200, res.status)
    end)

    it("answers 414 to a URI over max_uri_size", function()
        local before = up:stats().requests
        local res = assert(helpers.http(gw.port, { path = "/echo?q=" .. ("u"):rep(2000) }))
        gateway_error(res, 414)
        assert.equal(before, up:stats().requests)
    end)

    it("accepts a body under max_body_size", function()
        local res = assert(helpers.http(gw.port, { method = "POST", path = "/echo", body = ("x"):rep(60000) }))
        assert.equal(200, res.status)
        assert.equal(60000, res.json.body_length)
    end)

    it("answers 413 to a Content-Length over max_body_size without reading the body", function()
        local before = up:stats().requests
        local res = early_answer(gw.port, helpers.request_head {
            method = "POST", path = "/echo", headers = { ["Content-Length"] = "100000" },
        })
        gateway_error(res, 413)
        assert.equal(before, up:stats().requests)
    end)

    it("answers 413 once a chunked body passes max_body_size", function()
        local before = up:stats().requests
        local piece = helpers.chunk(("c"):rep(40000))
        local res = early_answer(gw.port, helpers.request_head {
            method = "POST", path = "/echo", headers = { ["Transfer-Encoding"] = "chunked" },
        } .. piece .. piece)
        gateway_error(res, 413)
        assert.equal(before, up:stats().requests)
    end)

    it("applies a route's smaller max_body_size", function()
        local body = ("t"):rep(2000)
        local res = assert(helpers.http(gw.port, { method = "POST", path = "/tiny", body = body }))
        gateway_error(res, 413)
        res = assert(helpers.http(gw.port, { method = "POST", path = "/echo", body = body }))
        assert.equal(200, res.status)
    end)

    it("applies a route's larger max_body_size", function()
        local body = ("g"):rep(100000)
        local res = assert(helpers.http(gw.port, { method = "POST", path = "/big", body = body }))
        assert.equal(200, res.status)
        assert.equal(100000, res.json.body_length)
        res = assert(helpers.http(gw.port, { method = "POST", path = "/echo", body = body }))
        gateway_error(res, 413)
    end)
end)
