-- The request's TLS connection as the PDK shows it: the scheme, and the
-- client certificate of the handshake (moongate.request.get_scheme and
-- moongate.request.get_client_certificate, which check the phase first).
-- The fields are read in C (core/gw_lua_pdk_tls.c) through the FFI.

local ffi = require "ffi"

local C = ffi.C

ffi.cdef [[
int gw_pdk_req_tls(void);
int gw_pdk_client_cert(long *verify, char *err, size_t errlen);
int gw_pdk_client_cert_field(int field, int index, char *buf, size_t size);
]]

-- Field numbers of gw_pdk_client_cert_field.
local SUBJECT, ISSUER, CN, SERIAL, SHA256, NOT_BEFORE, NOT_AFTER = 1, 2, 3, 4, 5, 6, 7
local SAN_DNS, SAN_EMAIL, SAN_URI, PEM = 8, 9, 10, 11

local M = {}

local verifyp = ffi.new("long[1]")
local errbuf = ffi.new("char[256]")
local bufsize = 1024
local buf = ffi.new("char[?]", bufsize)

-- One field as a string, or nil when the certificate has none.
local function field(which, index)
    local n = C.gw_pdk_client_cert_field(which, index or 0, buf, bufsize)
    if n < 0 then
        return nil
    end
    if n > bufsize then
        bufsize = n
        buf = ffi.new("char[?]", bufsize)
        n = C.gw_pdk_client_cert_field(which, index or 0, buf, bufsize)
    end
    return ffi.string(buf, n)
end

local function list(which)
    local out = {}
    while true do
        local v = field(which, #out)
        if not v then
            return out
        end
        out[#out + 1] = v
    end
end

--- "https" for a request that came over a TLS listener, else "http".
function M.scheme()
    return C.gw_pdk_req_tls() == 1 and "https" or "http"
end

--- The client certificate: { presented = false } when the client sent none
-- (or the request is plain HTTP), else a table with presented, verified,
-- verify_error (nil when verified), subject, issuer, common_name, serial,
-- fingerprint_sha256, not_before, not_after (seconds since the epoch),
-- san = { dns = {...}, email = {...}, uri = {...} } and pem.
function M.client_certificate()
    local rc = C.gw_pdk_client_cert(verifyp, errbuf, 256)
    if rc ~= 1 then
        return { presented = false, tls = rc == 0 }
    end
    local verified = verifyp[0] == 0
    return {
        presented = true,
        tls = true,
        verified = verified,
        verify_error = not verified and ffi.string(errbuf) or nil,
        subject = field(SUBJECT),
        issuer = field(ISSUER),
        common_name = field(CN),
        serial = field(SERIAL),
        fingerprint_sha256 = field(SHA256),
        not_before = tonumber(field(NOT_BEFORE)),
        not_after = tonumber(field(NOT_AFTER)),
        san = { dns = list(SAN_DNS), email = list(SAN_EMAIL), uri = list(SAN_URI) },
        pem = field(PEM),
    }
end

return M
