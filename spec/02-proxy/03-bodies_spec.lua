-- Request and response bodies: every framing both ways, bodiless answers,
-- 100-continue, and a gigabyte each way with bounded gateway memory.
local helpers = require "spec.helpers"

local pattern = helpers.pattern

describe("bodies", function()
    local gw

    lazy_setup(function()
        gw = helpers.start_proxy {
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("passes a Content-Length request body", function()
        local body = pattern(300000)
        local res = assert(helpers.http(gw.port, { method = "POST", path = "/echo", body = body }))
        assert.equal(200, res.status)
        assert.equal(300000, res.json.body_length)
        assert.equal(body, res.json.body)
    end)

    it("passes a chunked request body", function()
        local pieces = { "hello", " ", "chunked", " ", ("z"):rep(70000) }
        local i = 0
        local res = assert(helpers.http(gw.port, {
            method = "POST", path = "/echo",
            body = function()
                i = i + 1
                return pieces[i]
            end,
        }))
        local expected = table.concat(pieces)
        assert.equal(200, res.status)
        assert.equal(#expected, res.json.body_length)
        assert.equal(expected, res.json.body)
    end)

    it("passes a chunked request body with chunk extensions", function()
        local raw = helpers.request_head {
            method = "POST", path = "/echo", headers = { ["Transfer-Encoding"] = "chunked" },
        } .. "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        local data = helpers.raw(gw.port, raw, {
            timeout = 5,
            ["until"] = function(d) return helpers.parse_response(d) ~= nil end,
        })
        local res = assert(helpers.parse_response(data))
        assert.equal(200, res.status)
        assert.equal("hello world", res.json.body)
    end)

    it("passes an empty POST body", function()
        local res = assert(helpers.http(gw.port, { method = "POST", path = "/echo", body = "" }))
        assert.equal(200, res.status)
        assert.equal(0, res.json.body_length)
    end)

    it("passes a chunked response", function()
        local res = assert(helpers.http(gw.port, { path = "/chunked" }))
        assert.equal(200, res.status)
        assert.equal("hello world", res.body)
    end)

    it("passes a long chunked response with small chunks", function()
        local res = assert(helpers.http(gw.port, { path = "/bytes?n=300000&chunked=1&chunk=1000" }))
        assert.equal(200, res.status)
        assert.equal(pattern(300000), res.body)
    end)

    it("passes a Content-Length response", function()
        local res = assert(helpers.http(gw.port, { path = "/bytes?n=500000" }))
        assert.equal(200, res.status)
        assert.equal("500000", res.headers["content-length"])
        assert.equal(pattern(500000), res.body)
    end)

    it("sends no body in HEAD answers, chunked or not", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        local res = assert(c:request { method = "HEAD", path = "/bytes?n=1000" })
        assert.equal(200, res.status)
        assert.equal("", res.body)
        res = assert(c:request { method = "HEAD", path = "/chunked" })
        assert.equal(200, res.status)
        assert.equal("", res.body)
        res = assert(c:request { path = "/echo?after=head" })
        assert.equal("/echo?after=head", res.json.path)
        c:close()
    end)

    for _, status in ipairs { 204, 304 } do
        it("sends no body with " .. status, function()
            local c = assert(helpers.connect(gw.port, { timeout = 5 }))
            local res = assert(c:request { path = "/status/" .. status })
            assert.equal(status, res.status)
            assert.equal("", res.body)
            assert.is_nil(res.headers["transfer-encoding"])
            if status == 204 then
                assert.is_nil(res.headers["content-length"])
            end
            res = assert(c:request { path = "/echo?after=" .. status })
            assert.equal("/echo?after=" .. status, res.json.path)
            c:close()
        end)
    end

    it("passes a response delimited by the upstream closing, completely", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        local res = assert(c:request { path = "/no-length" })
        assert.equal(200, res.status)
        assert.equal("no length body", res.body)
        if not res.chunked then
            -- Without chunked framing only closing can end the body.
            assert.is_true(res.close_delimited)
            assert.is_true((c:closed(2)))
        end
        c:close()
    end)

    it("sends 100 Continue before reading a body announced with Expect", function()
        local c = assert(helpers.connect(gw.port, { timeout = 3 }))
        assert(c:send(helpers.request_head {
            method = "POST", path = "/echo",
            headers = { Expect = "100-continue", ["Content-Length"] = "11" },
        }))
        local interim = assert(c:read_response { interim = true })
        assert.equal(100, interim.status)
        assert(c:send("hello world"))
        local res = assert(c:read_response())
        assert.equal(200, res.status)
        assert.equal("hello world", res.json.body)
        c:close()
    end)
end)

-- A gigabyte each way. Set MOONGATE_BIG_BYTES to change the size; run
-- `busted --exclude-tags=large` to skip these two.
describe("bodies: large transfers #large", function()
    local SIZE = tonumber(os.getenv("MOONGATE_BIG_BYTES")) or 1024 * 1024 * 1024
    local PIECE = 64 * 1024
    local RSS_BUDGET_KB = 32 * 1024
    local up, gw, worker

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway {
            limits = { max_body_size = 0 },
            upstreams = { u = { targets = { up:address() }, timeouts = { read = "120s", send = "120s" } } },
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
        worker = gw:wait_workers(1)[1]
        -- Warm up, so the baseline includes what any request allocates.
        assert(helpers.http(gw.port, { path = "/bytes?n=1000000" }))
        assert(helpers.http(gw.port, { method = "POST", path = "/sink", body = pattern(1000000) }))
    end)

    lazy_teardown(helpers.stop_all)

    it("streams a chunked upload with bounded memory", function()
        local before = assert(helpers.rss_kb(worker))
        local peak = before
        local framed = helpers.chunk(pattern(PIECE))
        local c = assert(helpers.connect(gw.port, { timeout = 60 }))
        assert(c:send(helpers.request_head {
            method = "POST", path = "/sink", headers = { ["Transfer-Encoding"] = "chunked" },
        }))
        local pieces = math.floor(SIZE / PIECE)
        for i = 1, pieces do
            local ok, err = c:send(framed)
            assert(ok, "upload stopped after " .. (i - 1) * PIECE .. " bytes: " .. tostring(err))
            if i % 512 == 0 then
                peak = math.max(peak, helpers.rss_kb(worker) or 0)
            end
        end
        assert(c:send("0\r\n\r\n"))
        local res = assert(c:read_response())
        c:close()
        peak = math.max(peak, helpers.rss_kb(worker) or 0)
        assert.equal(200, res.status)
        assert.equal(pieces * PIECE, res.json.body_length)
        assert.is_true(peak - before < RSS_BUDGET_KB,
            string.format("worker RSS grew by %d KiB (from %d KiB)", peak - before, before))
    end)

    it("streams a download with bounded memory", function()
        local before = assert(helpers.rss_kb(worker))
        local peak = before
        local calls = 0
        local first
        local c = assert(helpers.connect(gw.port, { timeout = 60 }))
        local res = assert(c:request {
            path = "/bytes?n=" .. SIZE,
            body_sink = function(data)
                first = first or data
                calls = calls + 1
                if calls % 512 == 0 then
                    peak = math.max(peak, helpers.rss_kb(worker) or 0)
                end
            end,
        })
        c:close()
        peak = math.max(peak, helpers.rss_kb(worker) or 0)
        assert.equal(200, res.status)
        assert.equal(SIZE, res.body_length)
        assert.equal(pattern(#first), first)
        assert.is_true(peak - before < RSS_BUDGET_KB,
            string.format("worker RSS grew by %d KiB (from %d KiB)", peak - before, before))
    end)
end)
