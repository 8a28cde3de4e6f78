-- The status listener: /health, /ready and Prometheus /metrics.
local helpers = require "spec.helpers"

describe("status listener", function()
    local up, gw

    lazy_setup(function()
        up = helpers.start_upstream { name = "a" }
        gw = helpers.start_gateway {
            upstreams = {
                u = { targets = { up:address() } },
                refused = { targets = { "127.0.0.1:" .. helpers.free_port() }, retries = 0 },
            },
            routes = {
                { name = "bad", paths = { "/bad" }, upstream = "refused" },
                { name = "r", paths = { "/" }, upstream = "u" },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function metrics()
        local res = assert(helpers.http(gw.status_port, { path = "/metrics" }))
        assert.equal(200, res.status)
        return res.body, res
    end

    -- Poll until the metric reaches at least `want`, then return its value.
    local function metric_at_least(name, labels, want)
        local value
        pcall(helpers.wait_until, function()
            value = helpers.metric_value(metrics(), name, labels)
            return value and value >= want
        end, 3)
        return value
    end

    it("answers /health with 200", function()
        local res = assert(helpers.http(gw.status_port, { path = "/health" }))
        assert.equal(200, res.status)
    end)

    it("answers /ready with 200 once workers run", function()
        helpers.wait_until(function()
            return assert(helpers.http(gw.status_port, { path = "/ready" })).status == 200
        end, 5, "/ready to answer 200")
    end)

    it("counts requests per route and status", function()
        for _ = 1, 3 do
            assert.equal(200, assert(helpers.http(gw.port, { path = "/echo" })).status)
        end
        assert.equal(502, assert(helpers.http(gw.port, { path = "/bad" })).status)
        assert.equal(3, metric_at_least("moongate_requests_total", { route = "r", status = "200" }, 3))
        assert.equal(1, metric_at_least("moongate_requests_total", { route = "bad", status = "502" }, 1))
        local body, res = metrics()
        assert.matches("^text/plain", res.headers["content-type"])
        assert.truthy(body:find('moongate_requests_total{route="r",status="200"} 3', 1, true),
            "no line moongate_requests_total{route=\"r\",status=\"200\"} 3 in:\n" .. body)
        assert.truthy(body:find("# TYPE moongate_requests_total counter", 1, true))
    end)

    it("exports upstream latency as a histogram", function()
        local body = metrics()
        local buckets = 0
        for _, s in ipairs(helpers.parse_metrics(body)) do
            if s.name == "moongate_upstream_latency_seconds_bucket" then
                assert.is_string(s.labels.le)
                buckets = buckets + 1
            end
        end
        assert.is_true(buckets > 1, "no moongate_upstream_latency_seconds_bucket samples in:\n" .. body)
        local inf = helpers.metric_value(body, "moongate_upstream_latency_seconds_bucket", { le = "+Inf" })
        assert.is_true((inf or 0) >= 3, "the +Inf bucket holds " .. tostring(inf))
    end)

    it("exports open client connections", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        assert.equal(200, assert(c:request { path = "/echo" }).status)
        assert.is_true((metric_at_least("moongate_active_connections", nil, 1) or 0) >= 1)
        c:close()
        helpers.wait_until(function()
            return helpers.metric_value(metrics(), "moongate_active_connections") == 0
        end, 5, "moongate_active_connections to drop to 0")
    end)

    it("exports idle upstream connections", function()
        assert.equal(200, assert(helpers.http(gw.port, { path = "/echo" })).status)
        local idle = metric_at_least("moongate_upstream_idle_connections", nil, 1)
        assert.is_true((idle or 0) >= 1, "moongate_upstream_idle_connections is " .. tostring(idle))
    end)
end)
