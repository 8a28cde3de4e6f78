-- The body_filter phase: plugins see the response body piece by piece on
-- its way to the client, may change, drop, append to or buffer it, and may
-- wait (sleep, HTTP calls) while the upstream is paused. The body is
-- re-framed: chunked for HTTP/1.1, close-delimited for HTTP/1.0.
local helpers = require "spec.helpers"
local socket = require "socket"

local FIXTURES = "spec/fixtures/plugins"
local pattern = helpers.pattern

local function route(name, plugins)
    return { name = name, paths = { "/" .. name }, strip_path = true, upstream = "u",
             plugins = plugins }
end

describe("plugins: body_filter", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway {
            plugin_paths = { FIXTURES },
            upstreams = { u = { targets = { up:address() }, timeouts = { read = "30s" } } },
            routes = {
                route("plain", nil),
                route("upper", { ["body-upper"] = {}, ["body-trailer"] = {}, ["log-head"] = {} }),
                route("logged", { ["log-head"] = {} }),
                route("drop", { ["body-drop"] = {} }),
                route("json", { ["body-json"] = {} }),
                route("json-small", { ["body-json"] = { max = 100 } }),
                route("json-pass", { ["body-json"] = { max = 100, on_large = "pass" } }),
                route("sleep", { ["body-wait"] = { sleep = 0.05 } }),
                route("sleepy", { ["body-wait"] = { sleep = 0.4 } }),
                route("call", { ["body-wait"] = { url = "http://" .. up:address() .. "/status/204" } }),
                route("fail-first", { ["body-fail"] = { at = 1 } }),
                route("fail-later", { ["body-fail"] = { at = 3 } }),
                route("misuse", { ["body-fail"] = { at = 0 } }),
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function get(path, opts)
        opts = opts or {}
        opts.path = path
        opts.timeout = opts.timeout or 10
        return assert(helpers.http(gw.port, opts))
    end

    it("changes every piece of a chunked response and re-frames it", function()
        local res = get("/upper/chunked")
        assert.equal(200, res.status)
        assert.is_true(res.chunked)
        assert.is_nil(res.headers["content-length"])
        assert.matches("^HELLO WORLD%-%- end calls=%d+ eof=true$", res.body)
    end)

    it("changes a Content-Length response: chunked, without Content-Length", function()
        local res = get("/upper/bytes?n=100")
        assert.equal(200, res.status)
        assert.is_true(res.chunked)
        assert.is_nil(res.headers["content-length"])
        assert.equal(pattern(100):upper() .. "-- end calls=1 eof=true", res.body)
    end)

    it("calls the filter for an empty body, once, with eof", function()
        local res = get("/upper/bytes?n=0")
        assert.equal("-- end calls=1 eof=true", res.body)
    end)

    it("drops pieces and appends at the end", function()
        local res = get("/drop/bytes?n=50000&chunked=1&chunk=1000")
        assert.equal(200, res.status)
        assert.equal("dropped 50000", res.body)
    end)

    it("buffers the whole body and replaces it (a JSON rewrite)", function()
        local res = get("/json/echo/x")
        assert.equal(200, res.status)
        assert.is_true(res.json.filtered)
        assert.equal("/echo/x", res.json.path)
        assert.equal("application/json", res.json.content_type)
        -- The response head can still be read in body_filter.
        assert.equal("a", res.json.header_in_body_filter)
    end)

    it("answers 500 when a buffering filter fails over its limit before the head went out",
        function()
        local res = get("/json-small/bytes?n=1000")
        assert.equal(500, res.status)
        assert.is_string(res.json.request_id)
        helpers.wait_until(function()
            local log = gw:error_log()
            return log:find("route json-small: plugin body-json failed in body_filter", 1, true)
                and log:find("body too large", 1, true)
        end, 3, "the error in the log")
    end)

    it("passes a body over the buffering limit through when the plugin lets it", function()
        local res = get("/json-pass/bytes?n=1000")
        assert.equal(200, res.status)
        assert.equal(pattern(1000) .. " (too large)", res.body)
    end)

    it("waits in body_filter (sleep) for each piece", function()
        local t0 = helpers.now()
        local res = get("/sleep/bytes?n=40000&chunked=1&chunk=8000")
        local elapsed = helpers.now() - t0
        assert.equal(200, res.status)
        local body = res.body:sub(1, 40000)
        assert.equal(pattern(40000), body)
        local waits = tonumber(res.body:match("waits=(%d+) statuses=%-$"))
        assert.is_true(waits >= 2, res.body:sub(40001))
        assert.is_true(elapsed >= 0.05 * waits * 0.9, "took " .. elapsed .. " s")
    end)

    it("copes with a client that goes away while a filter waits", function()
        local pids = gw:worker_pids()
        local c = assert(helpers.connect(gw.port))
        assert(c:send(helpers.request_string { path = "/sleepy/bytes?n=100000&chunked=1" }))
        socket.sleep(0.1)
        c:close()
        socket.sleep(0.6)
        local res = get("/upper/bytes?n=5")
        assert.equal("01234-- end calls=1 eof=true", res.body)
        assert.same(pids, gw:worker_pids())
    end)

    it("makes an HTTP call from body_filter for each piece", function()
        local res = get("/call/bytes?n=200000&chunked=1&chunk=20000")
        assert.equal(200, res.status)
        assert.equal(pattern(200000), res.body:sub(1, 200000))
        local waits, statuses = res.body:sub(200001):match("^waits=(%d+) statuses=(.*)$")
        assert.equal("204", statuses)
        assert.is_true(tonumber(waits) >= 2, "calls: " .. tostring(waits))
    end)

    describe("large bodies read slowly", function()
        local SIZE = 16 * 1024 * 1024
        local RSS_BUDGET_KB = 12 * 1024

        local function slow_download(path)
            local worker = gw:wait_workers(1)[1]
            local before = assert(helpers.rss_kb(worker))
            local peak, calls, bytes, ok_content, tail = before, 0, 0, true, ""
            local want = pattern(64 * 1024):upper()
            local c = assert(helpers.connect(gw.port, { timeout = 60 }))
            local res = assert(c:request {
                path = path,
                body_sink = function(data)
                    calls = calls + 1
                    -- The pattern repeats every 16 bytes: each piece must be
                    -- the upper-cased pattern from where it starts.
                    if bytes < SIZE then
                        local off = bytes % 16
                        local n = math.min(#data, SIZE - bytes, 1024)
                        ok_content = ok_content and data:sub(1, n) == want:sub(off + 1, off + n)
                    end
                    bytes = bytes + #data
                    tail = (tail .. data):sub(-64)
                    if calls == 20 then
                        -- A reader that stops for a while: the gateway
                        -- stops reading the upstream meanwhile.
                        socket.sleep(0.5)
                        peak = math.max(peak, helpers.rss_kb(worker) or 0)
                    elseif calls % 32 == 0 then
                        socket.sleep(0.002) -- a slow reader
                        peak = math.max(peak, helpers.rss_kb(worker) or 0)
                    end
                end,
            })
            c:close()
            assert.equal(200, res.status)
            assert.is_true(res.chunked)
            assert.is_true(ok_content, "the body differs from the upper-cased pattern")
            local trailer = tail:match("%-%- end calls=%d+ eof=true$")
            assert.truthy(trailer, tail)
            assert.equal(SIZE, bytes - #trailer)
            assert.is_true(peak - before < RSS_BUDGET_KB,
                string.format("worker RSS grew by %d KiB (from %d KiB)", peak - before, before))
        end

        it("streams a chunked upstream body through a filter with bounded memory", function()
            slow_download("/upper/bytes?chunked=1&n=" .. SIZE)
        end)

        it("streams a Content-Length upstream body through a filter with bounded memory", function()
            slow_download("/upper/bytes?n=" .. SIZE)
        end)
    end)

    it("sends an HTTP/1.0 client a body delimited by closing the connection", function()
        local data, closed = helpers.raw(gw.port, "GET /upper/chunked HTTP/1.0\r\n\r\n",
            { timeout = 5 })
        assert.is_true(closed)
        local res = assert(helpers.parse_response(data))
        assert.equal(200, res.status)
        assert.is_nil(res.headers["transfer-encoding"])
        assert.is_nil(res.headers["content-length"])
        assert.equal("close", res.headers["connection"])
        assert.matches("^HELLO WORLD%-%- end calls=%d+ eof=true$", res.body)
    end)

    it("leaves HEAD, 204 and 304 responses alone", function()
        local head = get("/upper/bytes?n=10", { method = "HEAD" })
        assert.equal(200, head.status)
        assert.equal("10", head.headers["content-length"])
        assert.is_nil(head.headers["transfer-encoding"])
        for _, status in ipairs { 204, 304 } do
            local c = assert(helpers.connect(gw.port))
            local res = assert(c:request { path = "/upper/status/" .. status })
            assert.equal(status, res.status)
            assert.is_nil(res.headers["transfer-encoding"])
            assert.equal("", res.body)
            -- Nothing follows the head: the next response on the connection is intact.
            local again = assert(c:request { path = "/upper/bytes?n=3" })
            assert.equal("012-- end calls=1 eof=true", again.body)
            c:close()
        end
    end)

    it("keeps the upstream's response head readable in log after a long body", function()
        for _, name in ipairs { "upper", "logged" } do
            local res = get("/" .. name .. "/bytes?n=300000")
            assert.equal(200, res.status)
            helpers.wait_until(function()
                return gw:error_log():find("log-head: /" .. name ..
                    "/bytes X-Upstream=a Content-Type=application/octet-stream", 1, true)
            end, 3, "the headers in the log phase of " .. name)
        end
    end)

    it("keeps a route without body_filter plugins as it was", function()
        local res = get("/plain/bytes?n=100")
        assert.equal("100", res.headers["content-length"])
        assert.is_nil(res.headers["transfer-encoding"])
        assert.equal(pattern(100), res.body)
    end)

    it("keeps the connection alive after a filtered response", function()
        local c = assert(helpers.connect(gw.port))
        for _ = 1, 3 do
            local res = assert(c:request { path = "/upper/chunked" })
            assert.matches("^HELLO WORLD", res.body)
        end
        -- An upstream body that ends with its connection is chunked for
        -- the client, so the client's connection stays open too.
        local res = assert(c:request { path = "/upper/no-length" })
        assert.is_true(res.chunked)
        assert.equal("NO LENGTH BODY-- end calls=", res.body:match("^(.-)%d"))
        assert.is_nil(res.headers["connection"])
        res = assert(c:request { path = "/upper/chunked" })
        assert.matches("^HELLO WORLD", res.body)
        c:close()
    end)

    it("answers 502 when the upstream fails before the filters let any byte out", function()
        -- /truncate: Content-Length 1000, 10 bytes, then the upstream closes.
        local res = get("/json/truncate")
        assert.equal(502, res.status)
        assert.equal("upstream failed", res.json.error)
    end)

    it("cuts the response when the upstream fails after bytes went out", function()
        local res, err, partial = helpers.http(gw.port, { path = "/upper/truncate" })
        assert.is_nil(res)
        assert.truthy(err)
        assert.equal(200, partial.status)
        assert.is_false(partial.complete)
        assert.equal("0123456789", partial.body)
    end)

    it("answers 500 when a filter fails before any byte went out", function()
        local res = get("/fail-first/bytes?n=100")
        assert.equal(500, res.status)
    end)

    it("cuts the response when a filter fails later, logs it, and goes on serving", function()
        local pids = gw:worker_pids()
        local res, err, partial = helpers.http(gw.port, {
            path = "/fail-later/bytes?chunked=1&chunk=16384&n=1000000", timeout = 10,
        })
        assert.is_nil(res, "the response should be cut")
        assert.truthy(err)
        assert.equal(200, partial.status)
        assert.is_false(partial.complete)
        assert.is_true(partial.body_length < 1000000)
        helpers.wait_until(function()
            local log = gw:error_log()
            return log:find("route fail-later: plugin body-fail failed in body_filter", 1, true)
                and log:find("failing on purpose at call 3", 1, true)
                and log:find("stack traceback", 1, true)
                and log:find("closing the client connection", 1, true)
        end, 3, "the traceback in the log")
        assert.same(pids, gw:worker_pids())
        local ok = get("/upper/bytes?n=5")
        assert.equal("01234-- end calls=1 eof=true", ok.body)
    end)

    it("refuses body functions outside body_filter and other phases' functions in it", function()
        local res = get("/misuse/echo")
        assert.equal(200, res.status)
        local echo = helpers.json_decode(res.body:match("^(.-)\n"))
        assert.equal("moongate.response.get_chunk: not allowed in access: only in body_filter",
            helpers.echo_header(echo, "X-Chunk-In-Access"))
        local errors = res.body:match("\n(.*)$")
        assert.truthy(errors:find("set_header: not allowed in body_filter: only in header_filter",
            1, true), errors)
        assert.truthy(errors:find("set_body: not allowed in body_filter: only in rewrite or access",
            1, true), errors)
        assert.truthy(errors:find("exit: not allowed in body_filter: only in rewrite or access",
            1, true), errors)
        assert.truthy(errors:find("set_chunk: data must be a string, got number", 1, true), errors)
    end)
end)
