--- TLS helpers for the specs: a test PKI made with the openssl command line
-- in a helpers.tmpdir(), and real TLS clients (curl, openssl s_client).
--
--   local tls = require "spec.tls_helpers"
--   local pki = tls.pki()            -- CA, server and client certificates
--   local res = tls.curl(port, { path = "/echo", host = "example.test", cacert = pki.ca })
--   local out = tls.s_client(port, { "-servername", "example.test" })

local helpers = require "spec.helpers"

local tls = {}

local function q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Run a shell command line; returns ok, combined output. Raises with the
-- output when `must` is set and it failed.
function tls.sh(cmd, must)
    local p = io.popen("(" .. cmd .. ") 2>&1")
    local out = p:read("*a")
    local ok = p:close()
    if must and not ok then
        error("command failed: " .. cmd .. "\n" .. out, 2)
    end
    return ok, out
end

local function keygen(kind, key)
    if kind == "rsa" then
        return "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out " .. q(key)
    end
    return "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " .. q(key)
end

--- Issue a certificate signed by ca (or self-signed when ca is nil):
-- opts.kind "rsa" | "ec" (default), opts.cn, opts.san ("DNS:a,email:b"),
-- opts.days (default 2). Returns { cert, key } file names in dir.
function tls.issue(dir, name, ca, opts)
    local key, cert, csr = dir .. "/" .. name .. ".key", dir .. "/" .. name .. ".pem",
        dir .. "/" .. name .. ".csr"
    tls.sh(keygen(opts.kind, key), true)
    local ext = opts.san and (" -addext " .. q("subjectAltName=" .. opts.san)) or ""
    if not ca then
        tls.sh(("openssl req -x509 -new -key %s -subj %s -days 3 -out %s%s " ..
            "-addext basicConstraints=critical,CA:TRUE"):format(q(key), q("/CN=" .. opts.cn),
            q(cert), ext), true)
        return { cert = cert, key = key }
    end
    tls.sh(("openssl req -new -key %s -subj %s -out %s%s"):format(q(key), q("/CN=" .. opts.cn),
        q(csr), ext), true)
    tls.sh(("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -days %d " ..
        "-copy_extensions copy -out %s"):format(q(csr), q(ca.cert), q(ca.key), opts.days or 2,
        q(cert)), true)
    return { cert = cert, key = key }
end

--- A test PKI in a fresh directory:
--   ca, other_ca                    certificate authorities ({cert, key})
--   rsa, ecdsa                      example.test + www.example.test (RSA, ECDSA P-256)
--   wild                            *.wild.test (ECDSA)
--   cn_only                         CN cn.test, no SAN (ECDSA)
--   alice                           client: CN alice, email alice@example.test
--   bob                             client: CN bob, DNS bob.clients.test
--   carol                           client: CN carol (no consumer maps it)
--   mallory                         client signed by other_ca
function tls.pki()
    local dir = helpers.tmpdir()
    local p = { dir = dir }
    p.ca = tls.issue(dir, "ca", nil, { cn = "Moongate Test CA" })
    p.other_ca = tls.issue(dir, "other-ca", nil, { cn = "Other CA" })
    p.rsa = tls.issue(dir, "rsa", p.ca,
        { kind = "rsa", cn = "example.test", san = "DNS:example.test,DNS:www.example.test" })
    p.ecdsa = tls.issue(dir, "ecdsa", p.ca,
        { cn = "example.test", san = "DNS:example.test,DNS:www.example.test" })
    p.wild = tls.issue(dir, "wild", p.ca, { cn = "wild.test", san = "DNS:*.wild.test" })
    p.cn_only = tls.issue(dir, "cn-only", p.ca, { cn = "cn.test" })
    p.alice = tls.issue(dir, "alice", p.ca, { cn = "alice", san = "email:alice@example.test" })
    p.bob = tls.issue(dir, "bob", p.ca, { cn = "bob", san = "DNS:bob.clients.test" })
    p.carol = tls.issue(dir, "carol", p.ca, { cn = "carol" })
    p.mallory = tls.issue(dir, "mallory", p.other_ca, { cn = "alice" })
    return p
end

--- An OCSP response (DER file) saying `cert` is good, signed by the CA.
function tls.ocsp_response(pki, cert)
    local dir = pki.dir
    local serial = select(2, tls.sh("openssl x509 -noout -serial -in " .. q(cert.cert), true))
        :match("serial=(%x+)")
    local subject = select(2, tls.sh("openssl x509 -noout -subject -nameopt compat -in " ..
        q(cert.cert), true)):match("subject=%s*(.-)%s*$")
    local index = dir .. "/index.txt"
    helpers.write_file(index, ("V\t301231235959Z\t\t%s\tunknown\t%s\n"):format(serial, subject))
    local req, resp = dir .. "/ocsp-req.der", cert.cert .. ".ocsp.der"
    tls.sh(("openssl ocsp -issuer %s -cert %s -reqout %s -no_nonce"):format(q(pki.ca.cert),
        q(cert.cert), q(req)), true)
    tls.sh(("openssl ocsp -index %s -rsigner %s -rkey %s -CA %s -reqin %s -respout %s -ndays 1")
        :format(q(index), q(pki.ca.cert), q(pki.ca.key), q(pki.ca.cert), q(req), q(resp)), true)
    return resp
end

--- A listener entry for the gateway config: { address, tls = tls_conf }.
function tls.listen(port, conf)
    return { address = "127.0.0.1:" .. port, tls = conf }
end

--- Run `openssl s_client` against 127.0.0.1:port with extra args (a list);
-- opts.input is sent (then the input closes), opts.wait seconds to keep
-- reading after it. Returns the combined output.
function tls.s_client(port, args, opts)
    opts = opts or {}
    local cmd = { "openssl s_client -connect 127.0.0.1:" .. port }
    for _, a in ipairs(args or {}) do
        cmd[#cmd + 1] = q(a)
    end
    local input = opts.input or ""
    local feed = ("(printf '%%s' %s; sleep %s)"):format(q(input), tostring(opts.wait or 0.3))
    local _, out = tls.sh(feed .. " | timeout 10 " .. table.concat(cmd, " "))
    return out
end

--- The subject CN of the certificate a TLS server sent (from s_client output).
function tls.served_cn(out)
    return out:match("subject=[^\n]-CN%s*=%s*([^,\n/]+)")
end

--- HTTPS request with curl. opts: path, host (SNI and Host, resolved to
-- 127.0.0.1), cacert, cert/key (client certificate), args (extra curl
-- arguments). Returns { status (the final one), body, json, head (every
-- response head received, 1xx included) } or nil and the error output.
function tls.curl(port, opts)
    opts = opts or {}
    local host = opts.host or "example.test"
    local cmd = { "curl -sS --max-time 10 -o - -D", "%HEADERS%", "--resolve",
        q(host .. ":" .. port .. ":127.0.0.1") }
    if opts.cacert then
        cmd[#cmd + 1] = "--cacert " .. q(opts.cacert)
    else
        cmd[#cmd + 1] = "-k"
    end
    if opts.cert then
        cmd[#cmd + 1] = "--cert " .. q(opts.cert.cert) .. " --key " .. q(opts.cert.key)
    end
    for _, a in ipairs(opts.args or {}) do
        cmd[#cmd + 1] = q(a)
    end
    cmd[#cmd + 1] = q("https://" .. host .. ":" .. port .. (opts.path or "/"))
    local hfile = os.tmpname()
    local line = table.concat(cmd, " "):gsub("%%HEADERS%%", q(hfile))
    local ok, out = tls.sh(line)
    local head = helpers.read_file(hfile) or ""
    os.remove(hfile)
    local status -- the final one, after any 1xx
    for code in head:gmatch("HTTP/[%d.]+ (%d+)") do
        status = tonumber(code)
    end
    if not ok or not status then
        return nil, out
    end
    return { status = status, body = out, json = helpers.json_decode(out), head = head }
end

return tls
