-- The access log: one JSON line per request, or none with access_log: off.
local helpers = require "spec.helpers"

local function wait_entries(gw, n)
    return helpers.wait_until(function()
        local entries = gw:access_log()
        return #entries >= n and entries
    end, 5, n .. " access log lines")
end

describe("access log", function()
    local up, gw

    lazy_setup(function()
        gw, up = helpers.start_proxy {
            routes = { { name = "r", paths = { "/echo", "/slow" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local count = 0
    local function request(opts)
        count = count + 1
        return assert(helpers.http(gw.port, opts))
    end

    it("writes one JSON line with every field for a proxied request", function()
        local res = request { path = "/echo", headers = { ["X-Request-Id"] = "log-id-1" } }
        assert.equal(200, res.status)
        local e = wait_entries(gw, count)[count]
        assert.is_not_nil(e.time)
        assert.equal("log-id-1", e.request_id)
        assert.matches("^127%.0%.0%.1", e.client)
        assert.equal("http", e.scheme)
        assert.equal("GET", e.method)
        assert.equal("/echo", e.path)
        assert.equal("r", e.route)
        assert.equal(up:address(), e.upstream)
        assert.equal(200, e.status)
        assert.is_number(e.bytes_sent)
        assert.is_true(e.bytes_sent >= #res.body)
        assert.is_number(e.request_time)
        assert.is_true(e.request_time >= 0)
        assert.is_number(e.upstream_time)
        assert.is_true(e.upstream_time >= 0)
    end)

    it("logs the request id the upstream received", function()
        local res = request { path = "/echo" }
        local sent = helpers.echo_header(res.json, "x-request-id")
        local e = wait_entries(gw, count)[count]
        assert.is_string(sent)
        assert.equal(sent, e.request_id)
    end)

    it("logs request and upstream times in seconds", function()
        request { path = "/slow?ms=300" }
        local e = wait_entries(gw, count)[count]
        assert.equal(200, e.status)
        assert.is_true(e.request_time >= 0.25 and e.request_time < 5, "request_time " .. tostring(e.request_time))
        assert.is_true(e.upstream_time >= 0.25 and e.upstream_time <= e.request_time + 0.001,
            "upstream_time " .. tostring(e.upstream_time))
    end)

    it("logs requests that matched no route", function()
        local res = request { method = "DELETE", path = "/nowhere" }
        assert.equal(404, res.status)
        local e = wait_entries(gw, count)[count]
        assert.equal(404, e.status)
        assert.equal("DELETE", e.method)
        assert.equal(res.json.request_id, e.request_id)
        assert.are_not.equal("r", e.route)
    end)

    it("writes exactly one line per request", function()
        for i = 1, 5 do
            request { path = "/echo?i=" .. i }
        end
        wait_entries(gw, count)
        helpers.sleep(0.3)
        assert.equal(count, #gw:access_log())
    end)
end)

describe("access log: off", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway {
            access_log = "off",
            upstreams = { u = { targets = { up:address() } } },
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("writes no access log", function()
        for i = 1, 3 do
            assert.equal(200, assert(helpers.http(gw.port, { path = "/echo?i=" .. i })).status)
        end
        helpers.sleep(0.5)
        assert.is_false(helpers.file_exists(gw.dir .. "/access.log"))
        assert.is_false(helpers.file_exists("off"), "a file named off was written")
        assert.is_nil(gw:output():find("request_id", 1, true), "access log lines on stdout")
        assert.is_nil(gw:error_log():find('"request_id"', 1, true), "access log lines in the error log")
    end)
end)
