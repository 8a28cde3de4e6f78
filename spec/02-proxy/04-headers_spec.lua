-- Header rewriting: X-Forwarded-*, Host, hop-by-hop removal both ways,
-- repeated headers.
local helpers = require "spec.helpers"

local function lower_or_nil(v)
    return v and v:lower()
end

describe("headers", function()
    local up, gw

    lazy_setup(function()
        gw, up = helpers.start_proxy {
            routes = {
                { name = "no-preserve", paths = { "/np" }, upstream = "u", preserve_host = false },
                { name = "fixed-host", paths = { "/fixed" }, upstream = "u", host = "backend.internal" },
                { name = "r", paths = { "/" }, upstream = "u" },
            },
        }
    end)

    lazy_teardown(helpers.stop_all)

    local function echo(opts)
        local res = assert(helpers.http(gw.port, opts))
        assert.equal(200, res.status)
        assert.is_table(res.json, "not an echo: " .. res.body)
        return res.json, res
    end

    it("sets X-Forwarded-For to the client address", function()
        local e = echo { path = "/echo" }
        assert.same({ "127.0.0.1" }, helpers.header_values(e, "x-forwarded-for"))
    end)

    it("appends the client address to an existing X-Forwarded-For", function()
        local e = echo { path = "/echo", headers = { ["X-Forwarded-For"] = "10.1.2.3" } }
        assert.equal("10.1.2.3, 127.0.0.1", helpers.echo_header(e, "x-forwarded-for"))
    end)

    it("sets X-Forwarded-Proto and X-Forwarded-Host", function()
        local e = echo { path = "/echo", host = "shop.example.com" }
        assert.same({ "http" }, helpers.header_values(e, "x-forwarded-proto"))
        assert.same({ "shop.example.com" }, helpers.header_values(e, "x-forwarded-host"))
    end)

    it("forwards the client's Host by default", function()
        local e = echo { path = "/echo", host = "shop.example.com:8080" }
        assert.same({ "shop.example.com:8080" }, helpers.header_values(e, "host"))
    end)

    it("sends the target's host:port with preserve_host = false", function()
        local e = echo { path = "/np/echo", host = "shop.example.com" }
        assert.same({ "127.0.0.1:" .. up.port }, helpers.header_values(e, "host"))
        assert.same({ "shop.example.com" }, helpers.header_values(e, "x-forwarded-host"))
    end)

    it("sends the route's host when it sets one", function()
        local e = echo { path = "/fixed/echo", host = "shop.example.com" }
        assert.same({ "backend.internal" }, helpers.header_values(e, "host"))
        assert.same({ "shop.example.com" }, helpers.header_values(e, "x-forwarded-host"))
    end)

    it("removes hop-by-hop request headers and the ones Connection names", function()
        local e = echo {
            path = "/echo",
            headers = {
                { "Connection", "keep-alive, X-Foo" },
                { "X-Foo", "1" },
                { "Keep-Alive", "timeout=5" },
                { "TE", "trailers" },
                { "Trailer", "X-Checksum" },
                { "Proxy-Connection", "keep-alive" },
                { "Upgrade", "h2c" },
                { "X-Keep", "yes" },
            },
        }
        for _, name in ipairs { "x-foo", "keep-alive", "te", "trailer", "proxy-connection", "upgrade" } do
            assert.is_nil(helpers.echo_header(e, name), name .. " reached the upstream")
        end
        local conn = lower_or_nil(helpers.echo_header(e, "connection"))
        assert.is_falsy(conn and conn:find("x-foo", 1, true), "Connection still names X-Foo: " .. tostring(conn))
        assert.equal("yes", helpers.echo_header(e, "x-keep"))
    end)

    it("removes hop-by-hop response headers", function()
        local res = assert(helpers.http(gw.port, { path = "/hop" }))
        assert.equal(200, res.status)
        assert.equal("hop", res.body)
        assert.is_nil(res.headers["x-hop"])
        assert.is_nil(res.headers["keep-alive"])
        assert.is_nil(res.headers["proxy-connection"])
        local conn = table.concat(helpers.header_values(res, "connection"), ","):lower()
        assert.is_nil(conn:find("x-hop", 1, true), "Connection still names X-Hop: " .. conn)
    end)

    it("passes a repeated request header with all its values, in order", function()
        local e = echo { path = "/echo", headers = { { "X-Multi", "a" }, { "X-Multi", "b" } } }
        assert.equal("a, b", helpers.echo_header(e, "x-multi"))
    end)

    it("passes repeated response headers separately", function()
        local res = assert(helpers.http(gw.port, {
            path = "/echo?header=Set-Cookie:a%3D1&header=Set-Cookie:b%3D2",
        }))
        assert.same({ "a=1", "b=2" }, helpers.header_values(res, "set-cookie"))
    end)

    it("sends exactly one Host header", function()
        local e = echo { path = "/echo", host = "one.example.com" }
        assert.equal(1, #helpers.header_values(e, "host"))
    end)
end)
