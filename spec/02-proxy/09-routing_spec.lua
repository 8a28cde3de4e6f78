-- Routing: hosts, paths, methods and headers, most specific route first.
-- Every route goes to its own test upstream named after it, so the
-- X-Upstream response header tells which route matched.
local helpers = require "spec.helpers"

-- Start one upstream per route and the gateway; route.to names the route.
local function start(routes, extra)
    local cfg = extra or {}
    cfg.upstreams, cfg.routes = {}, {}
    for i, r in ipairs(routes) do
        local up = helpers.start_upstream { name = r.name }
        cfg.upstreams[r.name] = { targets = { up:address() } }
        local route = helpers.deep_copy(r)
        route.upstream = r.name
        cfg.routes[i] = route
    end
    return helpers.start_gateway(cfg)
end

-- The name of the route that served the request, or "404".
local function route_of(gw, opts)
    local res = assert(helpers.http(gw.port, opts))
    if res.status == 404 and not res.headers["x-upstream"] then
        assert.equal("no route matched", res.json and res.json.error)
        return "404"
    end
    assert.equal(200, res.status)
    return res.headers["x-upstream"]
end

describe("routing: hosts", function()
    local gw

    lazy_setup(function()
        gw = start {
            { name = "exact", hosts = { "api.example.com" } },
            { name = "wild", hosts = { "*.example.com" } },
            { name = "nohost", paths = { "/any" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("prefers an exact host", function()
        assert.equal("exact", route_of(gw, { host = "api.example.com", path = "/any" }))
        assert.equal("exact", route_of(gw, { host = "api.example.com", path = "/other" }))
    end)

    it("matches a wildcard host", function()
        assert.equal("wild", route_of(gw, { host = "www.example.com", path = "/any" }))
        assert.equal("wild", route_of(gw, { host = "shop.example.com", path = "/x" }))
    end)

    it("falls back to a route without hosts", function()
        assert.equal("nohost", route_of(gw, { host = "other.net", path = "/any" }))
    end)

    it("matches the Host header with a port and in any case", function()
        assert.equal("exact", route_of(gw, { host = "api.example.com:8080", path = "/x" }))
        assert.equal("exact", route_of(gw, { host = "API.Example.COM", path = "/x" }))
        assert.equal("wild", route_of(gw, { host = "www.example.com:443", path = "/x" }))
    end)

    it("answers 404 when no host and no path match", function()
        assert.equal("404", route_of(gw, { host = "other.net", path = "/x" }))
    end)
end)

describe("routing: paths", function()
    local gw

    lazy_setup(function()
        gw = start {
            { name = "prefix", paths = { "/users" } },
            { name = "longer", paths = { "/users/admin" } },
            { name = "exact", paths = { "=/users/12" } },
            { name = "regex", paths = { "~^/users/[0-9]+$" } },
            { name = "regex-admin", paths = { "~^/users/admin/[a-z]+$" } },
            { name = "multi", paths = { "/a", "/b" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("matches a prefix on segment boundaries", function()
        assert.equal("prefix", route_of(gw, { path = "/users" }))
        assert.equal("prefix", route_of(gw, { path = "/users/" }))
        assert.equal("prefix", route_of(gw, { path = "/users/x/y" }))
        assert.equal("404", route_of(gw, { path = "/usersx" }))
    end)

    it("prefers the longest prefix", function()
        assert.equal("longer", route_of(gw, { path = "/users/admin" }))
        assert.equal("longer", route_of(gw, { path = "/users/admin/x/y" }))
    end)

    it("prefers a regex over a prefix", function()
        assert.equal("regex", route_of(gw, { path = "/users/42" }))
        assert.equal("regex-admin", route_of(gw, { path = "/users/admin/panel" }))
        assert.equal("prefix", route_of(gw, { path = "/users/42/x" }))
    end)

    it("prefers an exact path over a regex", function()
        assert.equal("exact", route_of(gw, { path = "/users/12" }))
        assert.equal("regex", route_of(gw, { path = "/users/13" }))
        assert.equal("regex", route_of(gw, { path = "/users/120" }))
    end)

    it("ignores the query when matching", function()
        assert.equal("exact", route_of(gw, { path = "/users/12?x=1" }))
        assert.equal("regex", route_of(gw, { path = "/users/42?y=2" }))
    end)

    it("matches any of a route's paths", function()
        assert.equal("multi", route_of(gw, { path = "/a/1" }))
        assert.equal("multi", route_of(gw, { path = "/b/2" }))
        assert.equal("404", route_of(gw, { path = "/c" }))
    end)
end)

describe("routing: methods and headers", function()
    local gw

    lazy_setup(function()
        gw = start {
            { name = "m-post", paths = { "/m" }, methods = { "POST", "PUT" } },
            { name = "m-any", paths = { "/m" } },
            { name = "h-v2", paths = { "/h" }, headers = { ["X-Version"] = "2" } },
            { name = "h-any", paths = { "/h" } },
            { name = "get-only", paths = { "/g" }, methods = { "GET" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("matches methods", function()
        assert.equal("m-post", route_of(gw, { method = "POST", path = "/m", body = "" }))
        assert.equal("m-post", route_of(gw, { method = "PUT", path = "/m", body = "" }))
        assert.equal("m-any", route_of(gw, { method = "GET", path = "/m" }))
        assert.equal("m-any", route_of(gw, { method = "DELETE", path = "/m" }))
    end)

    it("answers 404 when only the method differs", function()
        assert.equal("get-only", route_of(gw, { method = "GET", path = "/g" }))
        assert.equal("404", route_of(gw, { method = "DELETE", path = "/g" }))
    end)

    it("matches headers exactly", function()
        assert.equal("h-v2", route_of(gw, { path = "/h", headers = { ["X-Version"] = "2" } }))
        assert.equal("h-v2", route_of(gw, { path = "/h", headers = { ["x-version"] = "2" } }))
        assert.equal("h-any", route_of(gw, { path = "/h", headers = { ["X-Version"] = "3" } }))
        assert.equal("h-any", route_of(gw, { path = "/h" }))
    end)
end)

describe("routing: strip_path", function()
    local gw

    lazy_setup(function()
        gw = start {
            { name = "strip", paths = { "/api" }, strip_path = true },
            { name = "keep", paths = { "/keep" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function upstream_path(path)
        local res = assert(helpers.http(gw.port, { path = path }))
        assert.equal(200, res.status)
        return res.json.path
    end

    it("strips the matched prefix and keeps the query", function()
        assert.equal("/users?x=1", upstream_path("/api/users?x=1"))
        assert.equal("/a/b", upstream_path("/api/a/b"))
    end)

    it("sends / for the bare prefix", function()
        assert.equal("/", upstream_path("/api"))
        assert.equal("/?x=1", upstream_path("/api?x=1"))
    end)

    it("keeps the path without strip_path", function()
        assert.equal("/keep/users?x=1", upstream_path("/keep/users?x=1"))
    end)
end)
