-- Per-request upstream settings from plugins: another upstream, timeouts
-- and retries.
local helpers = require "spec.helpers"

describe("plugins: upstream settings per request", function()
    local gw

    lazy_setup(function()
        local a = helpers.start_upstream { name = "a" }
        local b = helpers.start_upstream { name = "b" }
        gw = helpers.start_gateway {
            plugin_paths = { "spec/fixtures/plugins" },
            upstreams = {
                ua = { targets = { a:address() }, timeouts = { read = "5s" }, retries = 1 },
                ub = { targets = { b:address() } },
            },
            routes = { { name = "r", paths = { "/" }, upstream = "ua", plugins = { switch = {} } } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function get(path, headers)
        return assert(helpers.http(gw.port, { path = path, headers = headers, timeout = 10 }))
    end

    it("sends the request to another upstream", function()
        assert.equal("a", get("/echo").headers["x-upstream"])
        assert.equal("b", get("/echo", { ["X-Use"] = "ub" }).headers["x-upstream"])
    end)

    it("refuses an upstream the config does not have", function()
        local res = get("/echo", { ["X-Use"] = "nope" })
        assert.equal(500, res.status)
        helpers.wait_until(function()
            return gw:error_log():find("no upstream named nope", 1, true)
        end, 3, "the error")
    end)

    it("uses the request's read timeout and retries", function()
        local t0 = helpers.now()
        local res = get("/slow?ms=2000", { ["X-Read-Timeout"] = "0.3", ["X-Retries"] = "0" })
        local elapsed = helpers.now() - t0
        assert.equal(504, res.status)
        -- One attempt of 0.3 s; the upstream's own 5 s and its retry unused.
        assert.is_true(elapsed < 1.0, "took " .. elapsed .. " s")
    end)
end)
