-- TLS sessions (tickets shared by the workers, the session cache), OCSP
-- stapling, certificate errors in the config, and certificates re-read on
-- reload.
local helpers = require "spec.helpers"
local tls = require "spec.tls_helpers"

-- How many worker processes logged a resumed handshake of `proto`.
local function resuming_pids(gw, proto)
    local pids, n = {}, 0
    for pid, p in gw:error_log():gmatch("%[debug%] (%d+): TLS handshake with [^\n]* done: (%S+) "
        .. "[^\n]*session resumed") do
        if p == proto and not pids[pid] then
            pids[pid] = true
            n = n + 1
        end
    end
    return n
end

-- Save a session, then connect with it until two workers have resumed it
-- (at least `n` times, at most 40); returns the outputs of the resumed
-- connections.
local function resume(gw, port, proto, n, extra)
    local dir = helpers.tmpdir()
    local sess = dir .. "/session.pem"
    local args = { "-servername", "example.test", "-sess_out", sess }
    for _, a in ipairs(extra or {}) do
        args[#args + 1] = a
    end
    local first = tls.s_client(port, args)
    assert.truthy(first:find("CONNECTED", 1, true), first)
    local outs = {}
    while #outs < 40 and (#outs < n or resuming_pids(gw, proto) < 2) do
        local a = { "-servername", "example.test", "-sess_in", sess }
        for _, e in ipairs(extra or {}) do
            a[#a + 1] = e
        end
        outs[#outs + 1] = tls.s_client(port, a)
    end
    assert.equal(2, resuming_pids(gw, proto), "resumed by both workers")
    return outs
end

describe("tls: sessions and OCSP", function()
    local pki, gw, cfg, port, port_nt, ocsp

    lazy_setup(function()
        pki = tls.pki()
        ocsp = tls.ocsp_response(pki, pki.ecdsa)
        local up = helpers.start_upstream { name = "up" }
        port, port_nt = helpers.free_port(), helpers.free_port()
        local logdir = helpers.tmpdir()
        cfg = {
            workers = 2,
            error_log = { path = logdir .. "/error.log", level = "debug" },
            listen = {
                tls.listen(port, {
                    certificates = {
                        { cert = pki.ecdsa.cert, key = pki.ecdsa.key, ocsp = ocsp },
                        { cert = pki.wild.cert, key = pki.wild.key },
                    },
                }),
                tls.listen(port_nt, {
                    certificates = { { cert = pki.ecdsa.cert, key = pki.ecdsa.key } },
                    session_tickets = false,
                    protocols = { "TLSv1.2" },
                }),
            },
            upstreams = { u = { targets = { up:address() } } },
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
        gw = helpers.start_gateway(cfg)
        helpers.wait_for_port(port_nt, 10)
    end)

    lazy_teardown(helpers.stop_all)

    it("resumes TLS 1.3 sessions with tickets on every worker", function()
        for i, out in ipairs(resume(gw, port, "TLSv1.3", 6)) do
            assert.truthy(out:find("Reused, TLSv1.3", 1, true), "connection " .. i .. ": " .. out)
        end
    end)

    it("answers a TLS 1.3 resumption with a new ticket, so a client resumes again and again", function()
        -- Each connection saves the session it ends with and the next one
        -- offers it: only a fresh ticket on every resumption keeps the
        -- chain resumed (clients use a TLS 1.3 ticket once).
        local dir = helpers.tmpdir()
        local sess = dir .. "/s0.pem"
        tls.s_client(port, { "-servername", "example.test", "-tls1_3", "-sess_out", sess })
        for i = 1, 4 do
            local next_sess = dir .. "/s" .. i .. ".pem"
            local out = tls.s_client(port, { "-servername", "example.test", "-tls1_3",
                "-sess_in", sess, "-sess_out", next_sess })
            assert.truthy(out:find("Reused, TLSv1.3", 1, true), "connection " .. i .. ": " .. out)
            assert.truthy(out:find("Post-Handshake New Session Ticket arrived", 1, true),
                "connection " .. i .. " got no new ticket: " .. out)
            sess = next_sess
        end
    end)

    it("resumes TLS 1.2 sessions with tickets on every worker", function()
        for i, out in ipairs(resume(gw, port, "TLSv1.2", 6, { "-tls1_2" })) do
            assert.truthy(out:find("Reused, TLSv1.2", 1, true), "connection " .. i .. ": " .. out)
        end
    end)

    it("does not issue tickets when they are off", function()
        local out = tls.s_client(port_nt, { "-servername", "example.test" })
        assert.truthy(out:find("Protocol%s*: TLSv1.2"), out)
        assert.falsy(out:find("TLS session ticket:", 1, true), out)
        assert.truthy(tls.s_client(port, { "-servername", "example.test", "-tls1_2" })
            :find("TLS session ticket:", 1, true))
    end)

    it("staples the OCSP response of the certificate served", function()
        local out = tls.s_client(port, { "-servername", "example.test", "-status" })
        assert.truthy(out:find("OCSP Response Status: successful", 1, true), out)
        assert.truthy(out:find("Cert Status: good", 1, true), out)
        out = tls.s_client(port, { "-servername", "x.wild.test", "-status" })
        assert.truthy(out:find("OCSP response: no response sent", 1, true), out)
    end)

    it("resumes a session made before a reload: the ticket keys outlive workers", function()
        local sess = helpers.tmpdir() .. "/session.pem"
        local out = tls.s_client(port, { "-servername", "example.test", "-sess_out", sess })
        assert.truthy(out:find("New, TLSv1.3", 1, true), out)
        local old = gw:worker_pids()
        gw:reload(cfg)
        helpers.wait_until(function()
            local pids = gw:worker_pids()
            if #pids ~= 2 then
                return false
            end
            for _, pid in ipairs(pids) do
                for _, o in ipairs(old) do
                    if pid == o then
                        return false
                    end
                end
            end
            return true
        end, 15, "two new workers")
        out = tls.s_client(port, { "-servername", "example.test", "-sess_in", sess })
        assert.truthy(out:find("Reused, TLSv1.3", 1, true), out)
    end)
end)

describe("tls: config", function()
    local pki

    lazy_setup(function()
        pki = tls.pki()
    end)

    lazy_teardown(helpers.stop_all)

    local function check(yaml)
        local dir = helpers.tmpdir()
        local file = dir .. "/moongate.yaml"
        helpers.write_file(file, yaml)
        local code, out = helpers.run { "check", "-c", file }
        return code, out, file
    end

    it("reports unreadable, malformed and mismatched files with file:line: path", function()
        local dir = helpers.tmpdir()
        local garbage = dir .. "/garbage.pem"
        helpers.write_file(garbage, "not a certificate\n")
        local code, out, file = check(([[
listen:
  - address: 127.0.0.1:1
    tls:
      certificates:
        - { cert: %s/missing.pem, key: %s }
        - cert: %s
          key: %s
        - { cert: %s, key: %s }
        - { cert: %s, key: %s, ocsp: %s }
]]):format(dir, pki.rsa.key, garbage, pki.rsa.key, pki.rsa.cert, pki.ecdsa.key, pki.rsa.cert,
            pki.rsa.key, garbage))
        assert.equal(1, code, out)
        local function has(line, path, text)
            local want = ("%s:%d: %s: "):format(file, line, path)
            assert.truthy(out:find(want, 1, true) and out:find(text, 1, true),
                want .. text .. "\n" .. out)
        end
        has(5, "listen[0].tls.certificates[0].cert", dir .. "/missing.pem: No such file")
        has(6, "listen[0].tls.certificates[1].cert", garbage .. ": not a PEM certificate")
        has(8, "listen[0].tls.certificates[2].key", pki.ecdsa.key .. ": does not match the "
            .. "certificate " .. pki.rsa.cert)
        has(9, "listen[0].tls.certificates[3].ocsp", garbage .. ": not a DER OCSP response")
    end)

    it("checks protocols, ciphers and client certificate settings", function()
        local code, out, file = check(([[
listen:
  - address: 127.0.0.1:1
    tls:
      certificates: [ { cert: %s, key: %s }, { cert: %s, key: %s } ]
      protocols: [ TLSv1.2, SSLv3 ]
      ciphers: NOT-A-CIPHER
      client_certificates: { mode: require }
]]):format(pki.rsa.cert, pki.rsa.key, pki.wild.cert, pki.wild.key))
        assert.equal(1, code, out)
        local _, count = out:gsub("no usable cipher", "")
        assert.equal(1, count, out)
        assert.truthy(out:find(file .. ":5: listen[0].tls.protocols[1]: ", 1, true), out)
        assert.truthy(out:find(file .. ":6: listen[0].tls.ciphers: no usable cipher", 1, true), out)
        assert.truthy(out:find(file .. ":7: listen[0].tls.client_certificates.ca: required when "
            .. "mode is require", 1, true), out)
        code, out = check(([[
listen:
  - address: 127.0.0.1:1
    tls:
      certificates: [ { cert: %s, key: %s } ]
timeouts: { tls_handshake: 5s }
]]):format(pki.rsa.cert, pki.rsa.key))
        assert.equal(0, code, out)
    end)

    it("resumes by session id from the worker's cache when tickets are off", function()
        local up = helpers.start_upstream { name = "up" }
        local port, port_nocache = helpers.free_port(), helpers.free_port()
        local certs = { { cert = pki.ecdsa.cert, key = pki.ecdsa.key } }
        helpers.start_gateway {
            listen = {
                tls.listen(port, { certificates = certs, session_tickets = false }),
                tls.listen(port_nocache, { certificates = certs, session_tickets = false,
                    session_cache = 0 }),
            },
            upstreams = { u = { targets = { up:address() } } },
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
        helpers.wait_for_port(port_nocache, 10)
        local sess = helpers.tmpdir() .. "/session.pem"
        local out = tls.s_client(port, { "-tls1_2", "-sess_out", sess })
        assert.falsy(out:find("TLS session ticket:", 1, true), out)
        assert.truthy(out:find("Session%-ID: %x+"), out)
        out = tls.s_client(port, { "-tls1_2", "-sess_in", sess })
        assert.truthy(out:find("Reused, TLSv1.2", 1, true), out)
        -- Without the cache there is neither a ticket nor a session id.
        out = tls.s_client(port_nocache, { "-tls1_2" })
        assert.truthy(out:find("New, TLSv1.2", 1, true), out)
        assert.falsy(out:find("TLS session ticket:", 1, true), out)
        assert.falsy(out:find("Session%-ID: %x+"), out)
    end)

    it("re-reads certificates on reload and refuses a reload with a bad key", function()
        local dir = helpers.tmpdir()
        local cert, key = dir .. "/site.pem", dir .. "/site.key"
        local function install(c)
            helpers.write_file(cert, helpers.read_file(c.cert))
            helpers.write_file(key, helpers.read_file(c.key))
        end
        local function serial(c)
            return select(2, tls.sh("openssl x509 -noout -serial -in " .. c, true))
                :match("serial=(%x+)")
        end
        local function served_serial(port)
            local out = tls.s_client(port, { "-servername", "example.test", "-showcerts" })
            local pem = out:match("(%-%-%-%-%-BEGIN CERTIFICATE%-%-%-%-%-.-%-%-%-%-%-END " ..
                "CERTIFICATE%-%-%-%-%-)")
            if not pem then
                return nil
            end
            local f = dir .. "/served.pem"
            helpers.write_file(f, pem .. "\n")
            return serial(f)
        end
        install(pki.ecdsa)
        local up = helpers.start_upstream { name = "up" }
        local port = helpers.free_port()
        local cfg = {
            listen = { tls.listen(port, { certificates = { { cert = cert, key = key } } }) },
            upstreams = { u = { targets = { up:address() } } },
            routes = { { name = "r", paths = { "/" }, upstream = "u" } },
        }
        local gw = helpers.start_gateway(cfg)
        assert.equal(serial(pki.ecdsa.cert), served_serial(port))

        install(pki.rsa)
        gw:reload(cfg)
        helpers.wait_until(function()
            return served_serial(port) == serial(pki.rsa.cert)
        end, 10, "the new certificate")

        -- A key that does not match: refused, the running config stays.
        helpers.write_file(key, helpers.read_file(pki.ecdsa.key))
        gw:reload(cfg)
        helpers.wait_until(function()
            return gw:error_log():find("reload refused: .*listen%[0%]%.tls%.certificates%[0%]%.key")
        end, 10, "the refused reload")
        assert.equal(serial(pki.rsa.cert), served_serial(port))
        local res = assert(tls.curl(port, { path = "/echo", cacert = pki.ca.cert }))
        assert.equal(200, res.status)
    end)
end)
