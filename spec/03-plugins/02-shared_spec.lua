-- moongate.shared: dictionaries in shared memory that every worker sees and
-- that survive a reload.
local helpers = require "spec.helpers"

describe("plugins: shared dictionaries", function()
    local up, gw, cfg

    lazy_setup(function()
        up = helpers.start_upstream { name = "up" }
        cfg = {
            workers = 2,
            plugin_paths = { "spec/fixtures/plugins" },
            shared_dicts = { counters = "1m" },
            upstreams = { u = { targets = { up:address() } } },
            routes = {
                { name = "count", paths = { "/count" }, upstream = "u", plugins = { counter = {} } },
                {
                    name = "missing",
                    paths = { "/missing" },
                    upstream = "u",
                    plugins = { counter = { dict = "nope" } },
                },
            },
        }
        gw = helpers.start_gateway(cfg)
        gw:wait_workers(2, 5)
    end)

    lazy_teardown(helpers.stop_all)

    local function count(path)
        local res = assert(helpers.http(gw.port, { path = path or "/count" }))
        assert.equal(200, res.status)
        return tonumber(helpers.echo_header(res.json, "X-Count")), res
    end

    it("counts across workers without losing an increment", function()
        local seen = {}
        for _ = 1, 60 do
            seen[#seen + 1] = count()
        end
        table.sort(seen)
        for i = 1, 60 do
            assert.equal(i, seen[i])
        end
    end)

    it("stores strings with a TTL", function()
        local _, res = count("/count/abc")
        assert.equal("/count/abc", helpers.echo_header(res.json, "X-Last"))
    end)

    it("keeps its contents across a reload", function()
        local before = count()
        gw:reload(cfg)
        helpers.wait_until(function()
            return gw:error_log():find("reloading", 1, true)
        end, 5, "the reload")
        helpers.sleep(0.3)
        local after = count()
        assert.is_true(after > before, ("count went from %d to %d"):format(before, after))
    end)

    it("gives nil for a dictionary the config does not declare", function()
        local res = assert(helpers.http(gw.port, { path = "/missing" }))
        assert.equal(500, res.status)
        assert.equal("no dictionary nope", res.json.error)
    end)

    it("refuses a dictionary smaller than 64k", function()
        local file = helpers.tmpdir() .. "/small.yaml"
        helpers.write_file(file, [[
listen: [ "127.0.0.1:1" ]
shared_dicts:
  tiny: 1k
]])
        local code, out = helpers.run { "check", "-c", file }
        assert.equal(1, code, out)
        assert.truthy(out:find(file .. ":3: shared_dicts.tiny:", 1, true), out)
    end)
end)
