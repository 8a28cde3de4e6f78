-- The spec helpers' own pure-Lua parts: HTTP response parsing, request
-- building, JSON config writing and Prometheus parsing.
local helpers = require "spec.helpers"

describe("spec helpers", function()
    describe("parse_response", function()
        it("reads a Content-Length response", function()
            local res = assert(helpers.parse_response(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 8\r\n\r\n{\"a\":1}\n"))
            assert.equal(200, res.status)
            assert.equal("OK", res.reason)
            assert.equal("1.1", res.version)
            assert.equal("{\"a\":1}\n", res.body)
            assert.same({ a = 1 }, res.json)
            assert.is_true(res.complete)
        end)

        it("decodes chunked bodies and skips trailers", function()
            local res = assert(helpers.parse_response(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n" ..
                "0\r\nX-Trailer: 1\r\n\r\n"))
            assert.equal("hello world", res.body)
            assert.is_true(res.chunked)
        end)

        it("reads a body delimited by close", function()
            local res = assert(helpers.parse_response("HTTP/1.1 200 OK\r\n\r\nuntil close"))
            assert.equal("until close", res.body)
            assert.is_true(res.close_delimited)
        end)

        it("keeps repeated headers as a list", function()
            local res = assert(helpers.parse_response(
                "HTTP/1.1 204 No Content\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nX-One: 1\r\n\r\n"))
            assert.same({ "a=1", "b=2" }, res.headers["set-cookie"])
            assert.equal("1", res.headers["x-one"])
            assert.same({ "a=1", "b=2" }, helpers.header_values(res, "Set-Cookie"))
            assert.same({ "Set-Cookie", "a=1" }, res.header_list[1])
        end)

        it("reads no body for HEAD, 204 and 304", function()
            local list, partial, err = helpers.parse_responses(
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n" ..
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", { head = true })
            assert.equal(2, #list)
            assert.is_nil(partial)
            assert.is_nil(err)
            list = helpers.parse_responses("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n" ..
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            assert.equal(2, #list)
            assert.equal("ok", list[2].body)
        end)

        it("skips 1xx responses and records them", function()
            local res = assert(helpers.parse_response(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"))
            assert.equal(201, res.status)
            assert.equal(100, res.interim[1].status)
        end)

        it("reports an incomplete body with what was read", function()
            local res, err, partial = helpers.parse_response(
                "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
            assert.is_nil(res)
            assert.matches("closed", err)
            assert.equal(200, partial.status)
            assert.equal("0123456789", partial.body)
            assert.equal(10, partial.body_length)
            assert.is_false(partial.complete)
            res = helpers.parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
            assert.is_nil(res)
        end)

        it("parses pipelined responses in order", function()
            local list = helpers.parse_responses(
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na" ..
                "HTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nb" ..
                "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nc\r\n0\r\n\r\n")
            assert.equal(3, #list)
            assert.equal("a", list[1].body)
            assert.equal("b", list[2].body)
            assert.equal("c", list[3].body)
        end)
    end)

    describe("request_head", function()
        it("adds Host and Content-Length", function()
            assert.equal("POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n\r\n",
                helpers.request_head { method = "POST", path = "/x", body = "abc" })
        end)

        it("keeps ordered headers and a Host given in them", function()
            assert.equal("GET / HTTP/1.0\r\nhost: h\r\nB: 1\r\nA: 2\r\nA: 3\r\n\r\n",
                helpers.request_head {
                    version = "1.0",
                    headers = { { "host", "h" }, { "B", "1" }, { "A", "2" }, { "A", "3" } },
                })
        end)

        it("frames a chunked body", function()
            assert.equal("PUT / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                helpers.request_string { method = "PUT", body = "abc", chunked = true })
        end)
    end)

    describe("encode_json", function()
        it("writes sorted keys, arrays and unescaped slashes", function()
            local text = helpers.encode_json { b = { "/x", 2 }, a = { c = true }, e = helpers.array() }
            assert.equal('{\n  "a": {\n    "c": true\n  },\n  "b": [\n    "/x",\n    2\n  ],\n  "e": []\n}', text)
            assert.same({ a = { c = true }, b = { "/x", 2 }, e = {} }, helpers.json_decode(text))
        end)
    end)

    describe("metrics", function()
        local text = table.concat({
            "# HELP moongate_requests_total Requests.",
            "# TYPE moongate_requests_total counter",
            'moongate_requests_total{route="r",status="200"} 3',
            'moongate_requests_total{status="200",route="q"} 2',
            'moongate_requests_total{route="r",status="404"} 1',
            "moongate_active_connections 4",
            'moongate_upstream_latency_seconds_bucket{upstream="u",le="+Inf"} 7',
        }, "\n")

        it("finds samples by name and labels", function()
            assert.equal(3, helpers.metric_value(text, "moongate_requests_total", { route = "r", status = 200 }))
            assert.equal(5, helpers.metric_value(text, "moongate_requests_total", { status = "200" }))
            assert.equal(4, helpers.metric_value(text, "moongate_active_connections"))
            assert.equal(7, helpers.metric_value(text, "moongate_upstream_latency_seconds_bucket", { le = "+Inf" }))
            assert.is_nil(helpers.metric_value(text, "moongate_missing"))
        end)
    end)
end)
