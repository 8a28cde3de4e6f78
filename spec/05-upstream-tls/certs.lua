-- Certificates for the upstream TLS specs, made with the openssl command
-- line in a temporary directory: a CA and a server certificate it signed
-- (for localhost and 127.0.0.1), another CA that signed nothing used here,
-- and a client CA with a client certificate for mutual TLS.
local helpers = require "spec.helpers"

local certs = {}

local function openssl(dir, args)
    local cmd = "cd '" .. dir .. "' && openssl " .. args .. " >>openssl.log 2>&1"
    local ok = os.execute(cmd)
    if ok ~= true and ok ~= 0 then
        error("openssl " .. args .. " failed:\n" .. (helpers.read_file(dir .. "/openssl.log") or ""), 2)
    end
end

-- A self-signed CA: name.crt and name.key.
local function make_ca(dir, name, cn)
    openssl(dir, "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2" ..
        " -keyout " .. name .. ".key -out " .. name .. ".crt -subj '/CN=" .. cn .. "'")
end

-- A certificate for `cn` signed by CA `ca`, with the extensions in `ext`.
local function make_cert(dir, name, cn, ca, ext)
    helpers.write_file(dir .. "/" .. name .. ".ext", ext .. "\n")
    openssl(dir, "req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes" ..
        " -keyout " .. name .. ".key -out " .. name .. ".csr -subj '/CN=" .. cn .. "'")
    openssl(dir, "x509 -req -in " .. name .. ".csr -CA " .. ca .. ".crt -CAkey " .. ca ..
        ".key -CAcreateserial -days 2 -out " .. name .. ".crt -extfile " .. name .. ".ext")
end

--- Make the set in a fresh temporary directory; returns a table of paths:
-- dir, ca, other_ca, server_cert, server_key, client_ca, client_cert,
-- client_key, garbage (a file that is no PEM at all).
function certs.make()
    local dir = helpers.tmpdir()
    make_ca(dir, "ca", "Moongate Test CA")
    make_ca(dir, "other-ca", "Some Other CA")
    make_ca(dir, "client-ca", "Moongate Client CA")
    make_cert(dir, "server", "localhost", "ca", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    make_cert(dir, "client", "gateway-client", "client-ca", "extendedKeyUsage=clientAuth")
    helpers.write_file(dir .. "/garbage.pem", "this is not a certificate\n")
    return {
        dir = dir,
        ca = dir .. "/ca.crt",
        other_ca = dir .. "/other-ca.crt",
        server_cert = dir .. "/server.crt",
        server_key = dir .. "/server.key",
        client_ca = dir .. "/client-ca.crt",
        client_cert = dir .. "/client.crt",
        client_key = dir .. "/client.key",
        garbage = dir .. "/garbage.pem",
    }
end

--- Start a TLS test upstream with the server certificate; opts.client_ca:
-- require a client certificate signed by it; opts.name and opts.port as
-- start_upstream.
function certs.start_upstream(c, opts)
    opts = opts or {}
    local args = { "--tls-cert", c.server_cert, "--tls-key", c.server_key }
    if opts.client_ca then
        args[#args + 1] = "--tls-client-ca"
        args[#args + 1] = opts.client_ca
    end
    return helpers.start_upstream { name = opts.name or "tls", port = opts.port, args = args }
end

return certs
