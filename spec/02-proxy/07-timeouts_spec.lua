-- Timeouts: slow clients get 408 and a closed connection, idle keep-alive
-- connections are closed, slow upstreams get 504 or a cut-off response.
local helpers = require "spec.helpers"
local socket = require "socket"

describe("timeouts: client side", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway {
            timeouts = { client_header = "1s", client_body = "1s", keepalive = "1s" },
            upstreams = { u = { targets = { up:address() } } },
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("answers 408 and closes when the header stalls", function()
        local data, closed, elapsed = helpers.raw(gw.port, "GET /echo HTTP/1.1\r\nHost: x\r\n", { timeout = 5 })
        assert.is_true(closed, "the connection stayed open")
        assert.is_true(elapsed >= 0.8 and elapsed < 3.5, "closed after " .. elapsed .. " s")
        local res = assert(helpers.parse_response(data), "no response: " .. data)
        assert.equal(408, res.status)
    end)

    it("answers 408 and closes when the body stalls", function()
        local before = up:stats().requests
        local data, closed, elapsed = helpers.raw(gw.port,
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello", { timeout = 5 })
        assert.is_true(closed, "the connection stayed open")
        assert.is_true(elapsed >= 0.8 and elapsed < 3.5, "closed after " .. elapsed .. " s")
        local res = assert(helpers.parse_response(data), "no response: " .. data)
        assert.equal(408, res.status)
        assert.equal(before, up:stats().requests)
    end)

    it("keeps an idle connection until the keep-alive timeout, then closes it", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        assert.equal(200, assert(c:request { path = "/echo" }).status)
        socket.sleep(0.4)
        assert.equal(200, assert(c:request { path = "/echo" }).status)
        local start = helpers.now()
        local closed, extra = c:closed(4)
        local elapsed = helpers.now() - start
        c:close()
        assert.is_true(closed, "the idle connection stayed open")
        assert.equal("", extra or "")
        assert.is_true(elapsed >= 0.7 and elapsed < 3, "closed after " .. elapsed .. " s")
    end)

    it("closes a connection that never sends a request", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        local closed = c:closed(4)
        c:close()
        assert.is_true(closed)
    end)
end)

describe("timeouts: upstream side", function()
    local up, gw, blackhole, fillers

    lazy_setup(function()
        -- A listener whose accept queue is full: SYNs to it go unanswered,
        -- so connecting to it times out.
        blackhole = socket.tcp()
        assert(blackhole:bind("127.0.0.1", 0))
        assert(blackhole:listen(0))
        local _, bport = blackhole:getsockname()
        fillers = {}
        for i = 1, 3 do
            fillers[i] = socket.tcp()
            fillers[i]:settimeout(0)
            fillers[i]:connect("127.0.0.1", bport)
        end
        socket.sleep(0.1)
        local probe = socket.tcp()
        probe:settimeout(0.3)
        local ok = probe:connect("127.0.0.1", bport)
        probe:close()
        assert(not ok, "the full-backlog listener still accepts connections")

        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway {
            upstreams = {
                u = { targets = { up:address() }, timeouts = { read = "500ms" }, retries = 0 },
                hole = { targets = { "127.0.0.1:" .. bport }, timeouts = { connect = "500ms" }, retries = 0 },
            },
            routes = {
                { name = "hole", paths = { "/hole" }, upstream = "hole" },
                { name = "r", paths = { "/" }, upstream = "u" },
            },
        }
    end)

    lazy_teardown(function()
        helpers.stop_all()
        for _, s in ipairs(fillers or {}) do
            s:close()
        end
        if blackhole then
            blackhole:close()
        end
    end)

    it("answers 504 when the upstream does not answer within timeouts.read", function()
        local start = helpers.now()
        local res = assert(helpers.http(gw.port, { path = "/slow?ms=2500" }))
        local elapsed = helpers.now() - start
        assert.equal(504, res.status)
        assert.is_table(res.json, "not JSON: " .. res.body)
        assert.equal(504, res.json.status)
        assert.is_true(elapsed >= 0.4 and elapsed < 2, "answered after " .. elapsed .. " s")
    end)

    it("waits for an upstream that answers within timeouts.read", function()
        local res = assert(helpers.http(gw.port, { path = "/slow?ms=150" }))
        assert.equal(200, res.status)
        assert.equal("/slow?ms=150", res.json.path)
    end)

    it("cuts the client off when the body stalls past timeouts.read", function()
        local data, closed, elapsed = helpers.raw(gw.port,
            helpers.request_string { path = "/slow-body?ms=2500" }, { timeout = 4 })
        assert.is_true(closed, "the connection stayed open")
        assert.is_true(elapsed < 2.4, "closed after " .. elapsed .. " s, not on the read timeout")
        local res, _, partial = helpers.parse_response(data)
        assert.is_nil(res, "the cut-off response looks complete")
        assert.equal(200, partial.status)
        assert.is_nil(partial.body:find("world", 1, true))
    end)

    it("answers 504 when connecting takes longer than timeouts.connect", function()
        local start = helpers.now()
        local res = assert(helpers.http(gw.port, { path = "/hole/x" }))
        local elapsed = helpers.now() - start
        assert.equal(504, res.status)
        assert.is_table(res.json, "not JSON: " .. res.body)
        assert.is_true(elapsed >= 0.4 and elapsed < 2, "answered after " .. elapsed .. " s")
    end)
end)
