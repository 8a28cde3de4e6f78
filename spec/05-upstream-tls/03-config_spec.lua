-- The `tls` settings of upstreams: files that cannot be used are config
-- errors as FILE:LINE: path: message, in `moongate check`, at start-up and
-- on reload (which keeps the running config).
local helpers = require "spec.helpers"
local certs = require "spec.05-upstream-tls.certs"

-- Line numbers matter: each upstream's faulty setting is on a known line.
local BAD = [[
listen: [ "127.0.0.1:%d" ]
workers: 1
upstreams:
  missing_ca:
    targets: [ "127.0.0.1:9" ]
    tls:
      ca: %s/no-such-ca.crt
  garbage_ca:
    targets: [ "127.0.0.1:9" ]
    tls: { ca: %s }
  garbage_cert:
    targets: [ "127.0.0.1:9" ]
    tls:
      ca: %s
      cert: %s
      key: %s
  wrong_key:
    targets: [ "127.0.0.1:9" ]
    tls:
      cert: %s
      key: %s
  lonely_cert:
    targets: [ "127.0.0.1:9" ]
    tls: { cert: %s }
  bad_values:
    targets: [ "127.0.0.1:9" ]
    tls: { verify: sometimes, protocols: [ TLSv1.2, SSLv3 ], ciphers: NO-SUCH-CIPHER }
  bad_shape:
    targets: [ "127.0.0.1:9" ]
    tls: please
routes:
  - { paths: [ / ], upstream: missing_ca }
]]

local function line_starting(output, prefix)
    for line in output:gmatch("[^\n]+") do
        if line:sub(1, #prefix) == prefix then
            return line
        end
    end
    return nil
end

local function assert_line(output, prefix, needle)
    local line = line_starting(output, prefix)
    assert(line, "no `" .. prefix .. "...` line in:\n" .. output)
    if needle then
        assert.truthy(line:find(needle, 1, true), line)
    end
end

describe("upstream TLS: configuration", function()
    local c, file

    lazy_setup(function()
        c = certs.make()
        file = helpers.write_file(c.dir .. "/bad.yaml", BAD:format(helpers.free_port(), c.dir,
            c.garbage, c.ca, c.garbage, c.server_key, c.server_cert, c.client_key,
            c.client_cert))
    end)

    lazy_teardown(helpers.stop_all)

    it("`moongate check` names each file that cannot be used, with its line", function()
        local code, out = helpers.run { "check", "-c", file }
        assert.equal(1, code, out)
        assert_line(out, file .. ":7: upstreams.missing_ca.tls.ca: ",
            'cannot load CA file "' .. c.dir .. '/no-such-ca.crt": No such file or directory')
        assert_line(out, file .. ":10: upstreams.garbage_ca.tls.ca: ",
            'cannot load CA file "' .. c.garbage .. '": ')
        assert_line(out, file .. ":15: upstreams.garbage_cert.tls.cert: ",
            'cannot load certificate file "' .. c.garbage .. '": ')
        assert_line(out, file .. ":21: upstreams.wrong_key.tls.key: ",
            "the key does not match the certificate")
        assert_line(out, file .. ":24: upstreams.lonely_cert.tls.key: ", "required with cert")
        assert_line(out, file .. ":27: upstreams.bad_values.tls.verify: ", "boolean")
        assert_line(out, file .. ":27: upstreams.bad_values.tls.protocols[1]: ", "SSLv3")
        assert_line(out, file .. ":30: upstreams.bad_shape.tls: ", "true, false or a map")
    end)

    it("reports a cipher list that matches nothing", function()
        local f = helpers.write_file(c.dir .. "/ciphers.yaml", [[
upstreams:
  u:
    targets: [ "127.0.0.1:9" ]
    tls:
      verify: false
      ciphers: NO-SUCH-CIPHER
]])
        local code, out = helpers.run { "check", "-c", f }
        assert.equal(1, code, out)
        assert_line(out, f .. ":6: upstreams.u.tls.ciphers: ", "no usable cipher")
    end)

    it("accepts `tls: true` and a full map", function()
        local f = helpers.write_file(c.dir .. "/good.yaml", string.format([[
upstreams:
  short:
    targets: [ "example.org:443" ]
    tls: true
  full:
    targets: [ "127.0.0.1:9" ]
    tls:
      verify: true
      ca: %s
      sni: api.internal
      cert: %s
      key: %s
      protocols: [ TLSv1.2, TLSv1.3 ]
      ciphers: ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256
  off:
    targets: [ "127.0.0.1:9" ]
    tls: false
]], c.ca, c.client_cert, c.client_key))
        local code, out = helpers.run { "check", "-c", f }
        assert.equal(0, code, out)
    end)

    it("refuses to start with a bad file", function()
        local code, out = helpers.run { "-c", file }
        assert.equal(1, code, out)
        assert_line(out, file .. ":7: upstreams.missing_ca.tls.ca: ")
    end)
end)

describe("upstream TLS: reload", function()
    local c, up, gw

    local function config(ca)
        return {
            upstreams = { u = { targets = { up:address() }, tls = { ca = ca } } },
            routes = { { paths = { "/" }, upstream = "u" } },
        }
    end

    lazy_setup(function()
        c = certs.make()
        up = certs.start_upstream(c)
        gw = helpers.start_gateway(config(c.ca))
    end)

    lazy_teardown(helpers.stop_all)

    it("refuses a reload naming an unusable CA file and keeps the running config", function()
        assert.equal(200, assert(helpers.http(gw.port, { path = "/echo" })).status)
        local missing = c.dir .. "/gone.crt"
        assert.is_true(gw:reload(config(missing)))
        helpers.wait_until(function()
            return gw:error_log():find("upstreams.u.tls.ca: cannot load CA file \"" .. missing, 1, true)
        end, 5, "the reload error in the error log")
        assert.equal(200, assert(helpers.http(gw.port, { path = "/echo" })).status)
        assert.is_false((gw:poll()), "the master exited")
    end)
end)
