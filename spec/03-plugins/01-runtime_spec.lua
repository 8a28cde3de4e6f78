-- The plugin runtime: plugins found in plugin_paths run per route and
-- globally, in priority order or the route's plugin_order, in coroutines
-- that may wait in every phase; exit ends a request; errors are a 500 for
-- that request only; settings are checked by each plugin's schema.
local helpers = require "spec.helpers"

local FIXTURES = "spec/fixtures/plugins"

local function route(name, path, plugins, extra)
    local r = { name = name, paths = { path }, upstream = "u", plugins = plugins }
    for k, v in pairs(extra or {}) do
        r[k] = v
    end
    return r
end

describe("plugins: runtime", function()
    local up, gw, dir

    lazy_setup(function()
        dir = helpers.tmpdir()
        up = helpers.start_upstream { name = "up" }
        gw = helpers.start_gateway {
            plugin_paths = { FIXTURES },
            upstreams = { u = { targets = { up:address() } } },
            plugins = { ["probe-b"] = { upstream_header = "global" } },
            routes = {
                route("plain", "/plain", nil),
                route("one", "/one", { ["probe-a"] = { upstream_header = "yes" } }),
                route("ordered", "/ordered", { ["probe-a"] = {}, ["probe-b"] = {} },
                    { plugin_order = { "probe-b", "probe-a" } }),
                route("override", "/override", { ["probe-b"] = { upstream_header = "route" } }),
                route("exit", "/exit", { ["probe-a"] = { exit_status = 418 } }),
                route("waits", "/waits", { ["probe-a"] = { sleep = 0.3, log_file = dir .. "/waits.log" } }),
                route("logged", "/logged", { ["probe-a"] = { log_file = dir .. "/logged.log" } }),
                route("fail-access", "/fail-access", { ["probe-a"] = { fail_in = "access" } }),
                route("fail-header", "/fail-header", { ["probe-a"] = { fail_in = "header_filter" } }),
                route("fail-log", "/fail-log", { ["probe-a"] = { fail_in = "log" } }),
                route("path", "/path", { ["probe-a"] = { set_path = "/echo/rewritten" } }),
                route("query", "/query", { ["probe-a"] = { set_query = "x=1&y=two", set_method = "PUT" } }),
                route("noquery", "/noquery", { ["probe-a"] = { set_query = "" } }),
                route("body", "/body", { ["probe-a"] = { read_body = 100000 } }),
                route("anybody", "/anybody", { ["probe-a"] = { read_body = 1099511627776 } },
                    { max_body_size = 0 }),
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("runs a plugin from plugin_paths in rewrite, access and header_filter", function()
        local res = assert(helpers.http(gw.port, { path = "/one" }))
        assert.equal(200, res.status)
        assert.equal("yes", helpers.echo_header(res.json, "X-Probe-probe-a"))
        -- probe-b is global and runs after probe-a (priority 100 > 50).
        assert.equal("global", helpers.echo_header(res.json, "X-Probe-probe-b"))
        assert.equal("probe-a:rewrite,probe-b:rewrite,probe-a:access,probe-b:access,"
            .. "probe-a:header_filter,probe-b:header_filter", res.headers["x-trail"])
        assert.equal("200", res.headers["x-upstream-status"])
    end)

    it("follows a route's plugin_order", function()
        local res = assert(helpers.http(gw.port, { path = "/ordered" }))
        assert.equal(200, res.status)
        assert.equal("probe-b:rewrite,probe-a:rewrite,probe-b:access,probe-a:access,"
            .. "probe-b:header_filter,probe-a:header_filter", res.headers["x-trail"])
    end)

    it("lets a route's settings of a plugin replace the global ones", function()
        local res = assert(helpers.http(gw.port, { path = "/override" }))
        assert.equal("route", helpers.echo_header(res.json, "X-Probe-probe-b"))
    end)

    it("answers with moongate.response.exit without calling the upstream", function()
        local before = up:stats().requests
        local res = assert(helpers.http(gw.port, {
            path = "/exit/x?a=1&b=two%20words",
            headers = { ["User-Agent"] = "spec-agent" },
        }))
        assert.equal(418, res.status)
        assert.equal("probe-a", res.headers["x-probe"])
        assert.equal("application/json", res.headers["content-type"])
        assert.truthy(res.headers["x-request-id"])
        assert.same({
            plugin = "probe-a",
            method = "GET",
            path = "/exit/x",
            query = { a = "1", b = "two words" },
            client = "127.0.0.1",
            agent = "spec-agent",
        }, res.json)
        assert.equal(before, up:stats().requests)
    end)

    it("rewrites the upstream method and query, keeping the path", function()
        local res = assert(helpers.http(gw.port, { path = "/query/a?old=1" }))
        assert.equal(200, res.status)
        assert.equal("PUT", res.json.method)
        assert.equal("/query/a?x=1&y=two", res.json.path)
        res = assert(helpers.http(gw.port, { path = "/noquery/b?old=1" }))
        assert.equal("/noquery/b", res.json.path)
    end)

    it("lets a plugin read the whole body, which still reaches the upstream", function()
        local body = ("0123456789"):rep(5000) -- 50 kB: more than one buffer
        for _, chunked in ipairs { false, true } do
            local res = assert(helpers.http(gw.port, {
                method = "POST", path = "/body", body = body, chunked = chunked,
            }))
            assert.equal(200, res.status, res.body)
            assert.equal(tostring(#body), helpers.echo_header(res.json, "X-Body-Length"))
            assert.equal("0123456789012345", helpers.echo_header(res.json, "X-Body-Head"))
            assert.equal(#body, res.json.body_length)
        end
        local res = assert(helpers.http(gw.port, {
            method = "POST", path = "/body", body = ("x"):rep(100001),
        }))
        assert.equal(413, res.status)
        assert.equal("body too large", res.json.error)
        -- A limit far beyond any buffer, on a route without one: small
        -- and large chunked bodies alike.
        for _, size in ipairs { 5, 300000 } do
            res = assert(helpers.http(gw.port, {
                method = "POST", path = "/anybody", body = ("y"):rep(size), chunked = true,
            }))
            assert.equal(200, res.status, res.body)
            assert.equal(tostring(size), helpers.echo_header(res.json, "X-Body-Length"))
        end
    end)

    it("rewrites the upstream path and keeps the query", function()
        local res = assert(helpers.http(gw.port, { path = "/path/x?keep=1" }))
        assert.equal(200, res.status)
        assert.equal("/echo/rewritten?keep=1", res.json.path)
    end)

    it("waits in access, header_filter and log without blocking the worker", function()
        local c = assert(helpers.connect(gw.port))
        local t0 = helpers.now()
        assert(c:send(helpers.request_string { path = "/waits" }))
        -- While /waits waits, the same (single) worker answers other requests.
        helpers.sleep(0.1)
        local quick = assert(helpers.http(gw.port, { path = "/plain" }))
        assert.equal(200, quick.status)
        assert.is_true(helpers.now() - t0 < 0.25, "a waiting plugin blocked the worker")
        local res = assert(c:read_response())
        local elapsed = helpers.now() - t0
        c:close()
        assert.equal(200, res.status)
        -- rewrite, access and header_filter each waited 0.3 s; log runs
        -- after the response, so its wait does not delay the client.
        assert.is_true(elapsed >= 0.85, "answered after " .. elapsed .. " s")
        assert.is_true(elapsed < 1.15, "the log phase delayed the client: " .. elapsed .. " s")
        helpers.wait_until(function()
            return helpers.file_exists(dir .. "/waits.log")
        end, 3, "the log phase to finish")
        local line = helpers.read_file(dir .. "/waits.log")
        assert.truthy(line:find("GET /waits 200 probe-a:rewrite,probe-b:rewrite,probe-a:access,"
            .. "probe-b:access,probe-a:header_filter,probe-b:header_filter,probe-a:log", 1, true),
            line)
    end)

    it("runs the log phase with the request's data after the response", function()
        local res = assert(helpers.http(gw.port, { path = "/logged/item" }))
        assert.equal(200, res.status)
        helpers.wait_until(function()
            -- The whole line: the file exists as soon as the plugin opens it.
            return (helpers.read_file(dir .. "/logged.log") or ""):find("\n", 1, true)
        end, 3, "the log line")
        local id, method, path, status = helpers.read_file(dir .. "/logged.log")
            :match("^(%S+) (%S+) (%S+) (%S+)")
        assert.equal("GET", method)
        assert.equal("/logged/item", path)
        assert.equal("200", status)
        assert.truthy(id and #id > 0)
    end)

    it("turns a plugin error in access into a JSON 500 and keeps the worker", function()
        local pids = gw:worker_pids()
        local res = assert(helpers.http(gw.port, { path = "/fail-access" }))
        assert.equal(500, res.status)
        assert.equal("application/json", res.headers["content-type"])
        local id = res.json.request_id
        assert.equal(id, res.headers["x-request-id"])
        helpers.wait_until(function()
            return gw:error_log():find(id, 1, true)
        end, 3, "the error to be logged")
        local log = gw:error_log()
        assert.truthy(log:find("route fail-access: plugin probe-a failed in access", 1, true), log)
        assert.truthy(log:find("probe failure in access", 1, true), log)
        assert.equal(200, assert(helpers.http(gw.port, { path = "/plain" })).status)
        assert.same(pids, gw:worker_pids())
    end)

    it("turns a plugin error in header_filter into a 500", function()
        local res = assert(helpers.http(gw.port, { path = "/fail-header" }))
        assert.equal(500, res.status)
        assert.truthy(res.json.request_id)
    end)

    it("logs a plugin error in the log phase; the client already has its answer", function()
        local res = assert(helpers.http(gw.port, { path = "/fail-log" }))
        assert.equal(200, res.status)
        helpers.wait_until(function()
            return gw:error_log():find("probe failure in log", 1, true)
        end, 3, "the log-phase error")
    end)

    it("never enters Lua for a route without plugins when no global plugin applies", function()
        local res = assert(helpers.http(gw.port, { path = "/plain" }))
        assert.equal(200, res.status)
        -- The global probe-b does apply here: it is a global plugin.
        assert.equal("probe-b:rewrite,probe-b:access,probe-b:header_filter",
            res.headers["x-trail"])
    end)
end)

describe("plugins: configuration", function()
    lazy_teardown(helpers.stop_all)

    local BAD = [[
listen: [ "127.0.0.1:1" ]
plugin_paths: [ spec/fixtures/plugins ]
upstreams:
  u: { targets: [ "127.0.0.1:9" ] }
routes:
  - name: r
    paths: [ / ]
    upstream: u
    plugins:
      probe-a:
        sleep: -1
        fail_in: never
      missing-plugin: {}
]]

    it("checks every plugin's settings and reports file:line: path: message", function()
        local file = helpers.tmpdir() .. "/bad.yaml"
        helpers.write_file(file, BAD)
        local code, out = helpers.run { "check", "-c", file }
        assert.equal(1, code, out)
        assert.truthy(out:find(file .. ":11: routes[0].plugins.probe-a.sleep: must be at least 0",
            1, true), out)
        assert.truthy(out:find(file .. ":12: routes[0].plugins.probe-a.fail_in: expected one of",
            1, true), out)
        assert.truthy(out:find(file .. ':13: routes[0].plugins.missing-plugin: plugin '
            .. '"missing-plugin" not found', 1, true), out)
    end)

    it("refuses a plugin_order naming a plugin the route does not have", function()
        local file = helpers.tmpdir() .. "/order.yaml"
        helpers.write_file(file, [[
listen: [ "127.0.0.1:1" ]
plugin_paths: [ spec/fixtures/plugins ]
upstreams:
  u: { targets: [ "127.0.0.1:9" ] }
routes:
  - name: r
    paths: [ / ]
    upstream: u
    plugins: { probe-a: {} }
    plugin_order: [ probe-b ]
]])
        local code, out = helpers.run { "check", "-c", file }
        assert.equal(1, code, out)
        assert.truthy(out:find('routes[0].plugin_order[0]: plugin "probe-b" is not configured',
            1, true), out)
    end)

    it("loads edited plugin code on reload", function()
        local plugdir = helpers.tmpdir()
        local function write_plugin(value)
            os.execute("mkdir -p " .. plugdir .. "/editable")
            helpers.write_file(plugdir .. "/editable/init.lua", ([[
local moongate = require "moongate"
return {
    priority = 1,
    access = function()
        moongate.upstream.set_header("X-Version", "%s")
    end,
}
]]):format(value))
        end
        write_plugin("one")
        local up = helpers.start_upstream { name = "up" }
        local cfg = {
            plugin_paths = { plugdir },
            upstreams = { u = { targets = { up:address() } } },
            routes = { { name = "r", paths = { "/" }, upstream = "u", plugins = { editable = {} } } },
        }
        local gw = helpers.start_gateway(cfg)
        local res = assert(helpers.http(gw.port, { path = "/echo" }))
        assert.equal("one", helpers.echo_header(res.json, "X-Version"))
        write_plugin("two")
        gw:reload(cfg)
        helpers.wait_until(function()
            local r = helpers.http(gw.port, { path = "/echo" })
            return r and r.json and helpers.echo_header(r.json, "X-Version") == "two"
        end, 5, "the edited plugin to take effect")
    end)
end)
