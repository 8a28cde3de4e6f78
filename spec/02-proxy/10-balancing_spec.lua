-- Load balancing over two test upstreams named a and b (the X-Upstream
-- response header names the target), and passive and active health.
local helpers = require "spec.helpers"

local function served_by(port, opts)
    local res = assert(helpers.http(port, opts or { path = "/echo" }))
    assert.equal(200, res.status)
    return res.headers["x-upstream"]
end

local function count(list)
    local n = {}
    for _, v in ipairs(list) do
        n[v] = (n[v] or 0) + 1
    end
    return n
end

describe("balancing", function()
    local a, b, gw

    lazy_setup(function()
        a = helpers.start_upstream { name = "a" }
        b = helpers.start_upstream { name = "b" }
        local refused = "127.0.0.1:" .. helpers.free_port()
        gw = helpers.start_gateway {
            upstreams = {
                rr = { targets = { a:address(), b:address() }, balance = "round_robin" },
                weighted = {
                    targets = { { address = a:address(), weight = 3 }, { address = b:address(), weight = 1 } },
                },
                hashed = {
                    targets = { a:address(), b:address() },
                    balance = "hash",
                    hash = { on = "header", name = "X-User" },
                },
                least = { targets = { a:address(), b:address() }, balance = "least_conn" },
                passive = {
                    targets = { a:address(), refused },
                    retries = 0,
                    health = { passive = { failures = 1, down_for = "30s" } },
                },
            },
            routes = {
                { name = "rr", paths = { "/rr" }, upstream = "rr" },
                { name = "weighted", paths = { "/weighted" }, upstream = "weighted" },
                { name = "hashed", paths = { "/hashed" }, upstream = "hashed" },
                { name = "least", paths = { "/least" }, upstream = "least", strip_path = true },
                { name = "passive", paths = { "/passive" }, upstream = "passive" },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    it("alternates between targets with round robin", function()
        local seen = {}
        for i = 1, 6 do
            seen[i] = served_by(gw.port, { path = "/rr" })
        end
        for i = 2, 6 do
            assert.are_not.equal(seen[i - 1], seen[i], table.concat(seen, ","))
        end
        assert.same({ a = 3, b = 3 }, count(seen))
    end)

    it("follows weights 3:1", function()
        local seen = {}
        for i = 1, 8 do
            seen[i] = served_by(gw.port, { path = "/weighted" })
        end
        assert.same({ a = 6, b = 2 }, count(seen), table.concat(seen, ","))
    end)

    it("sends the same X-User to the same target", function()
        local targets = {}
        for u = 1, 20 do
            local user = "user-" .. u
            local first = served_by(gw.port, { path = "/hashed", headers = { ["X-User"] = user } })
            for _ = 1, 2 do
                assert.equal(first, served_by(gw.port, { path = "/hashed", headers = { ["X-User"] = user } }), user)
            end
            targets[first] = true
        end
        assert.is_true(targets.a and targets.b, "all 20 users went to one target")
    end)

    it("sends new requests to the target with fewer connections", function()
        local c = assert(helpers.connect(gw.port, { timeout = 5 }))
        assert(c:send_request { path = "/least/slow?ms=1500" })
        helpers.sleep(0.3)
        local quick = {}
        for i = 1, 4 do
            quick[i] = served_by(gw.port, { path = "/least/echo" })
        end
        local slow = assert(c:read_response())
        c:close()
        assert.equal(200, slow.status)
        for i = 1, 4 do
            assert.are_not.equal(slow.headers["x-upstream"], quick[i])
        end
    end)

    it("stops picking a target after it failed (passive health)", function()
        local statuses = {}
        for i = 1, 6 do
            local res = assert(helpers.http(gw.port, { path = "/passive" }))
            statuses[i] = res.status
            if res.status == 200 then
                assert.equal("a", res.headers["x-upstream"])
            end
        end
        local failures = count(statuses)[502] or 0
        assert.is_true(failures <= 1, "statuses: " .. table.concat(statuses, ","))
        for i = 3, 6 do
            assert.equal(200, statuses[i], "statuses: " .. table.concat(statuses, ","))
        end
    end)
end)

describe("balancing: active health checks", function()
    local a, b, gw

    lazy_setup(function()
        a = helpers.start_upstream { name = "a" }
        b = helpers.start_upstream { name = "b" }
        gw = helpers.start_gateway {
            upstreams = {
                u = {
                    targets = { a:address(), b:address() },
                    health = {
                        active = {
                            path = "/health", interval = "100ms", timeout = "500ms", healthy = 1, unhealthy = 1,
                        },
                    },
                },
            },
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function only(name)
        return function()
            for _ = 1, 4 do
                if served_by(gw.port) ~= name then
                    return false
                end
            end
            return true
        end
    end

    local function both()
        local seen = {}
        for _ = 1, 4 do
            seen[served_by(gw.port)] = true
        end
        return seen.a and seen.b
    end

    it("uses both targets while they are healthy", function()
        helpers.wait_until(both, 5, "both targets to serve")
    end)

    it("takes a target whose health check fails out, and back in when it passes", function()
        b:set_health(500)
        helpers.wait_until(only("a"), 5, "b to be taken out")
        helpers.sleep(0.5)
        assert.is_true(only("a")(), "b served again while its health check fails")
        b:set_health(200)
        helpers.wait_until(both, 5, "b to be taken back in")
    end)
end)
