-- The command line: version, check, and refusing to start on a bad config,
-- with every error as FILE:LINE: path: message.
local helpers = require "spec.helpers"

local GOOD = [[
listen:
  - 127.0.0.1:%d
workers: 1
timeouts: { client_header: 2s, keepalive: 500ms }
limits: { max_header_size: 16k, max_body_size: 1m }
upstreams:
  u:
    targets:
      - 127.0.0.1:9
      - { address: 127.0.0.1:10, weight: 2 }
    timeouts: { connect: 2s, read: 30s }
routes:
  - name: r
    paths: [ /api ]
    upstream: u
    strip_path: true
]]

-- Line numbers matter: the spec expects errors on lines 8, 14 and 16.
local BAD = [[
listen: [ "127.0.0.1:%d" ]
upstreams:
  u:
    targets: [ "127.0.0.1:9" ]
routes:
  - name: first
    paths: [ /a ]
    upstream: nowhere
  - name: second
    paths: [ /b ]
    upstream: u
  - name: third
    paths: [ /c ]
    strip_path: maybe
    upstream: u
timeouts: { client_header: soon }
]]

local function lines(text)
    local out = {}
    for line in text:gmatch("[^\n]+") do
        out[#out + 1] = line
    end
    return out
end

-- The output line that starts with prefix, or nil.
local function line_starting(output, prefix)
    for _, line in ipairs(lines(output)) do
        if line:sub(1, #prefix) == prefix then
            return line
        end
    end
    return nil
end

local function assert_bad_config_errors(file, output)
    local strip = line_starting(output, file .. ":14: routes[2].strip_path: ")
    assert(strip, "no `" .. file .. ":14: routes[2].strip_path: ...` line in:\n" .. output)
    assert.matches("boolean", strip)
    local upstream = line_starting(output, file .. ":8: routes[0].upstream: ")
    assert(upstream, "no `" .. file .. ":8: routes[0].upstream: ...` line in:\n" .. output)
    assert.matches("nowhere", upstream)
    local timeout = line_starting(output, file .. ":16: timeouts.client_header: ")
    assert(timeout, "no `" .. file .. ":16: timeouts.client_header: ...` line in:\n" .. output)
end

describe("cli", function()
    local dir, good, bad, port

    lazy_setup(function()
        dir = helpers.tmpdir()
        port = helpers.free_port()
        good = helpers.write_file(dir .. "/good.yaml", GOOD:format(port))
        bad = helpers.write_file(dir .. "/bad.yaml", BAD:format(port))
    end)

    lazy_teardown(helpers.stop_all)

    it("`moongate version` prints the version", function()
        local code, out = helpers.run { "version" }
        assert.equal(0, code, out)
        assert.matches("%d+%.%d+%.%d+", out)
    end)

    it("`moongate check` accepts a good YAML config", function()
        local code, out = helpers.run { "check", "-c", good }
        assert.equal(0, code, out)
    end)

    it("`moongate check` accepts the JSON the spec helpers write", function()
        local file = helpers.write_file(dir .. "/good.json", helpers.encode_json {
            listen = { "127.0.0.1:" .. port },
            workers = 1,
            status = { listen = "127.0.0.1:" .. helpers.free_port() },
            upstreams = {
                u = { targets = { "127.0.0.1:9" }, health = { passive = { failures = 1, down_for = "5s" } } },
            },
            routes = { { name = "r", paths = { "/" }, upstream = "u", headers = { ["X-V"] = "2" } } },
            pid_file = dir .. "/json.pid",
            error_log = { path = dir .. "/json-error.log", level = "info" },
            access_log = "off",
        })
        local code, out = helpers.run { "check", "-c", file }
        assert.equal(0, code, out)
    end)

    it("`moongate check` reports every error as FILE:LINE: path: message and exits 1", function()
        local code, out = helpers.run { "check", "-c", bad }
        assert.equal(1, code, out)
        assert_bad_config_errors(bad, out)
    end)

    it("`moongate check` names a missing file", function()
        local missing = dir .. "/missing.yaml"
        local code, out = helpers.run { "check", "-c", missing }
        assert.equal(1, code, out)
        assert.truthy(out:find(missing, 1, true), out)
    end)

    it("substitutes ${VAR} and ${VAR:-default} from the environment", function()
        local file = helpers.write_file(dir .. "/env.yaml", [[
listen: [ "127.0.0.1:${MG_SPEC_PORT}" ]
workers: 1
upstreams:
  u:
    targets: [ "${MG_SPEC_TARGET:-127.0.0.1:9}" ]
routes:
  - { name: r, paths: [ / ], upstream: u }
]])
        local code, out = helpers.run({ "check", "-c", file }, { env = { MG_SPEC_PORT = tostring(port) } })
        assert.equal(0, code, out)
        code, out = helpers.run({ "check", "-c", file }, { env = { MG_SPEC_PORT = "not-a-port" } })
        assert.equal(1, code, out)
        assert.truthy(line_starting(out, file .. ":1: listen"), out)
    end)

    it("refuses to start with a bad config and prints the same errors", function()
        local code, out, timed_out = helpers.run({ "-c", bad }, { timeout = 10 })
        assert.is_nil(timed_out, "the gateway started serving a bad config")
        assert.are_not.equal(0, code, out)
        assert_bad_config_errors(bad, out)
    end)

    it("refuses to start on an address another gateway serves", function()
        local gw = helpers.start_gateway {
            upstreams = { u = { targets = { "127.0.0.1:9" } } },
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
        local second = helpers.tmpdir() .. "/second.yaml"
        helpers.write_file(second, string.format(GOOD, gw.port))
        local code, out, timed_out = helpers.run({ "-c", second }, { timeout = 10 })
        assert.is_nil(timed_out, "a second gateway started on the same address")
        assert.are_not.equal(0, code, out)
        assert.truthy(out:find("127.0.0.1:" .. gw.port, 1, true), out)
        assert.truthy(out:find("in use", 1, true), out)
        -- The first gateway is untouched.
        local res = assert(helpers.http(gw.port, { path = "/nothing-here" }))
        assert.are.equal(502, res.status)
        gw:stop()
    end)
end)
