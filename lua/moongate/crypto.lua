--- PDK crypto: digests, HMAC, base64, constant-time comparison, random
-- bytes and JWT-style signature verification.
--
-- Digests, HMAC, randomness and signatures call OpenSSL 3's libcrypto
-- through the LuaJIT FFI; base64 and hex run in Lua over FFI buffers.
-- Every function takes and returns Lua strings of raw bytes unless noted.
-- Wrong argument types raise `error(msg, 2)`; runtime failures (an OpenSSL
-- error, invalid base64, an unusable key) return `nil, err`. Nothing here
-- yields, so every phase may call it.
--
--   sha1(data), sha256(data), sha384(data), sha512(data)  -> raw digest
--   hex(bytes)                          -> lower-case hex
--   hmac(alg, key, data)                -> raw MAC; alg "sha1" | "sha256" |
--                                          "sha384" | "sha512"
--   base64_encode(data)                 -> standard alphabet, padded
--   base64_decode(s)                    -> bytes | nil, err (strict: padding
--                                          required, no whitespace)
--   base64url_encode(data)              -> URL alphabet, no padding
--   base64url_decode(s)                 -> bytes | nil, err (padding optional;
--                                          when present it must be complete)
--   constant_time_equals(a, b)          -> boolean
--   random_bytes(n)                     -> n bytes from RAND_bytes | nil, err
--   verify(alg, pem, data, sig, opts)   -> true | false | nil, err
--
-- Both base64 decoders reject characters outside their alphabet and
-- non-zero bits in the last character (each byte string has exactly one
-- accepted encoding).

local ffi = require "ffi"
local bit = require "bit"

local band, bor, lshift, rshift = bit.band, bit.bor, bit.lshift, bit.rshift
local byte, format = string.byte, string.format
local type, tostring, setmetatable = type, tostring, setmetatable
local ffi_new, ffi_string, ffi_cast, ffi_gc = ffi.new, ffi.string, ffi.cast, ffi.gc

-- ffi.cdef is per VM and refuses to redefine a struct: when the PDK loader
-- runs this file again (a new config generation), the declarations made the
-- first time are reused. The sentinel struct comes last, so it exists only
-- if the whole block went through.
if not pcall(ffi.typeof, "struct moongate_crypto_cdef") then
    ffi.cdef [[
        typedef struct ossl_lib_ctx_st OSSL_LIB_CTX;
        typedef struct evp_md_st EVP_MD;
        typedef struct evp_md_ctx_st EVP_MD_CTX;
        typedef struct evp_mac_st EVP_MAC;
        typedef struct evp_mac_ctx_st EVP_MAC_CTX;
        typedef struct evp_pkey_st EVP_PKEY;
        typedef struct evp_pkey_ctx_st EVP_PKEY_CTX;
        typedef struct bio_st BIO;
        typedef struct bignum_st BIGNUM;
        typedef struct ECDSA_SIG_st ECDSA_SIG;
        typedef struct ossl_param_st {
            const char *key;
            unsigned int data_type;
            void *data;
            size_t data_size;
            size_t return_size;
        } OSSL_PARAM;

        unsigned long ERR_get_error(void);
        void ERR_clear_error(void);
        void ERR_error_string_n(unsigned long e, char *buf, size_t len);

        int CRYPTO_memcmp(const void *in_a, const void *in_b, size_t len);
        int RAND_bytes(unsigned char *buf, int num);

        EVP_MD *EVP_MD_fetch(OSSL_LIB_CTX *ctx, const char *algorithm,
                             const char *properties);
        void EVP_MD_free(EVP_MD *md);
        int EVP_Digest(const void *data, size_t count, unsigned char *md,
                       unsigned int *size, const EVP_MD *type, void *impl);

        EVP_MAC *EVP_MAC_fetch(OSSL_LIB_CTX *libctx, const char *algorithm,
                               const char *properties);
        void EVP_MAC_free(EVP_MAC *mac);
        EVP_MAC_CTX *EVP_MAC_CTX_new(EVP_MAC *mac);
        void EVP_MAC_CTX_free(EVP_MAC_CTX *ctx);
        int EVP_MAC_CTX_set_params(EVP_MAC_CTX *ctx, const OSSL_PARAM params[]);
        int EVP_MAC_init(EVP_MAC_CTX *ctx, const unsigned char *key,
                         size_t keylen, const OSSL_PARAM params[]);
        int EVP_MAC_update(EVP_MAC_CTX *ctx, const unsigned char *data,
                           size_t datalen);
        int EVP_MAC_final(EVP_MAC_CTX *ctx, unsigned char *out, size_t *outl,
                          size_t outsize);

        BIO *BIO_new_mem_buf(const void *buf, int len);
        int BIO_free(BIO *a);
        EVP_PKEY *PEM_read_bio_PUBKEY(BIO *bp, EVP_PKEY **x, void *cb, void *u);
        void EVP_PKEY_free(EVP_PKEY *pkey);
        int EVP_PKEY_is_a(const EVP_PKEY *pkey, const char *name);
        int EVP_PKEY_get_group_name(const EVP_PKEY *pkey, char *name,
                                    size_t name_sz, size_t *gname_len);

        EVP_MD_CTX *EVP_MD_CTX_new(void);
        void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
        int EVP_DigestVerifyInit_ex(EVP_MD_CTX *ctx, EVP_PKEY_CTX **pctx,
                                    const char *mdname, OSSL_LIB_CTX *libctx,
                                    const char *props, EVP_PKEY *pkey,
                                    const OSSL_PARAM params[]);
        int EVP_DigestVerify(EVP_MD_CTX *ctx, const unsigned char *sigret,
                             size_t siglen, const unsigned char *tbs,
                             size_t tbslen);
        int EVP_PKEY_CTX_set_rsa_padding(EVP_PKEY_CTX *ctx, int pad_mode);
        int EVP_PKEY_CTX_set_rsa_pss_saltlen(EVP_PKEY_CTX *ctx, int saltlen);

        BIGNUM *BN_bin2bn(const unsigned char *s, int len, BIGNUM *ret);
        void BN_free(BIGNUM *a);
        ECDSA_SIG *ECDSA_SIG_new(void);
        void ECDSA_SIG_free(ECDSA_SIG *sig);
        int ECDSA_SIG_set0(ECDSA_SIG *sig, BIGNUM *r, BIGNUM *s);
        int i2d_ECDSA_SIG(const ECDSA_SIG *sig, unsigned char **pp);

        struct moongate_crypto_cdef { int unused; };
    ]]
end

local function load_libcrypto()
    local ok, lib = pcall(ffi.load, "libcrypto.so.3")
    if ok then
        return lib
    end
    return ffi.load("crypto")
end

local C = load_libcrypto()

local OSSL_PARAM_UTF8_STRING = 4
local RSA_PKCS1_PSS_PADDING = 6
local RSA_PSS_SALTLEN_DIGEST = -1
-- (size_t)-1; a double -1 would not convert to it
local OSSL_PARAM_UNMODIFIED = ffi.cast("size_t", ffi.cast("int64_t", -1))
local MAX_MD_SIZE = 64

local u8p = ffi.typeof("const uint8_t *")
local u8arr = ffi.typeof("uint8_t[?]")

local crypto = {}

----------------------------------------------------------------------------
-- argument checks and errors

-- Raises at the caller of the public function that called this.
local function check_string(v, n, fname)
    if type(v) ~= "string" then
        error(format("bad argument #%d to '%s' (string expected, got %s)",
                     n, fname, type(v)), 3)
    end
end

local errbuf = ffi_new("char[256]")

-- Describes OpenSSL's error queue (up to MAX_ERRORS entries, oldest
-- first, joined by "; "), prefixed by `what`, and empties the queue so the
-- next call starts clean.
local MAX_ERRORS = 4

local function openssl_error(what)
    local msg = what
    local sep = ": "
    for _ = 1, MAX_ERRORS do
        local code = C.ERR_get_error()
        if code == 0 then
            break
        end
        C.ERR_error_string_n(code, errbuf, 256)
        msg = msg .. sep .. ffi_string(errbuf)
        sep = "; "
    end
    C.ERR_clear_error()
    if msg == what then
        msg = what .. " failed"
    end
    return msg
end

----------------------------------------------------------------------------
-- scratch output buffer

-- One buffer reused by hex and base64 (no call yields while using it).
-- Requests above SCRATCH_KEEP get a buffer of their own, so one large call
-- does not pin its size for the life of the worker.
local SCRATCH_KEEP = 64 * 1024
local scratch, scratch_size = u8arr(4096), 4096

local function out_buffer(n)
    if n <= scratch_size then
        return scratch
    end
    if n > SCRATCH_KEEP then
        return u8arr(n)
    end
    local size = scratch_size
    while size < n do
        size = size * 2
    end
    scratch, scratch_size = u8arr(size), size
    return scratch
end

----------------------------------------------------------------------------
-- digests and HMAC

local mdbuf = ffi_new("unsigned char[?]", MAX_MD_SIZE)
local mdlen = ffi_new("unsigned int[1]")
local maclen = ffi_new("size_t[1]")

-- Fetched once per module instance: EVP_Digest with a fetched EVP_MD skips
-- the implicit per-call provider lookup.
local fetched_mds = {}

local function fetch_md(name)
    local md = fetched_mds[name]
    if md then
        return md
    end
    md = C.EVP_MD_fetch(nil, name, nil)
    if md == nil then
        return nil, openssl_error("EVP_MD_fetch " .. name)
    end
    md = ffi_gc(md, C.EVP_MD_free)
    fetched_mds[name] = md
    return md
end

local function digest(name, data)
    local md, err = fetch_md(name)
    if not md then
        return nil, err
    end
    if C.EVP_Digest(data, #data, mdbuf, mdlen, md, nil) ~= 1 then
        return nil, openssl_error("EVP_Digest " .. name)
    end
    return ffi_string(mdbuf, mdlen[0])
end

function crypto.sha1(data)
    check_string(data, 1, "sha1")
    return digest("SHA1", data)
end

function crypto.sha256(data)
    check_string(data, 1, "sha256")
    return digest("SHA256", data)
end

function crypto.sha384(data)
    check_string(data, 1, "sha384")
    return digest("SHA384", data)
end

function crypto.sha512(data)
    check_string(data, 1, "sha512")
    return digest("SHA512", data)
end

local HMAC_DIGESTS = { sha1 = "SHA1", sha256 = "SHA256", sha384 = "SHA384", sha512 = "SHA512" }

local hmac_mac          -- EVP_MAC for "HMAC", fetched on first use
local hmac_ctxs = {}    -- alg -> EVP_MAC_CTX with its digest already set

-- A MAC context per digest, created once; each hmac() call re-keys it with
-- EVP_MAC_init, which restarts the computation.
local function hmac_ctx(alg)
    local ctx = hmac_ctxs[alg]
    if ctx then
        return ctx
    end
    local mdname = HMAC_DIGESTS[alg]
    if not mdname then
        return nil, "unsupported hmac algorithm: " .. alg
    end
    if not hmac_mac then
        local mac = C.EVP_MAC_fetch(nil, "HMAC", nil)
        if mac == nil then
            return nil, openssl_error("EVP_MAC_fetch HMAC")
        end
        hmac_mac = ffi_gc(mac, C.EVP_MAC_free)
    end
    ctx = C.EVP_MAC_CTX_new(hmac_mac)
    if ctx == nil then
        return nil, openssl_error("EVP_MAC_CTX_new")
    end
    ctx = ffi_gc(ctx, C.EVP_MAC_CTX_free)
    -- { "digest", UTF8 string mdname }, then the NULL-key terminator
    local params = ffi_new("OSSL_PARAM[2]")
    params[0].key = "digest"
    params[0].data_type = OSSL_PARAM_UTF8_STRING
    params[0].data = ffi_cast("void *", mdname)
    params[0].data_size = #mdname
    params[0].return_size = OSSL_PARAM_UNMODIFIED
    if C.EVP_MAC_CTX_set_params(ctx, params) ~= 1 then
        return nil, openssl_error("EVP_MAC_CTX_set_params")
    end
    hmac_ctxs[alg] = ctx
    return ctx
end

function crypto.hmac(alg, key, data)
    check_string(alg, 1, "hmac")
    check_string(key, 2, "hmac")
    check_string(data, 3, "hmac")
    local ctx, err = hmac_ctx(alg)
    if not ctx then
        return nil, err
    end
    -- The key pointer is never NULL (even for ""): EVP_MAC_init with a NULL
    -- key would keep the previous call's key.
    if C.EVP_MAC_init(ctx, key, #key, nil) ~= 1
        or C.EVP_MAC_update(ctx, data, #data) ~= 1
        or C.EVP_MAC_final(ctx, mdbuf, maclen, MAX_MD_SIZE) ~= 1 then
        return nil, openssl_error("HMAC-" .. HMAC_DIGESTS[alg])
    end
    return ffi_string(mdbuf, maclen[0])
end

----------------------------------------------------------------------------
-- hex and base64

-- A byte array holding exactly the bytes of s (no terminating NUL:
-- u8arr(#s, s) would write one byte past the end).
local function byte_array(s)
    local a = u8arr(#s)
    ffi.copy(a, s, #s)
    return a
end

local HEX_DIGITS = byte_array("0123456789abcdef")

function crypto.hex(bytes)
    check_string(bytes, 1, "hex")
    local n = #bytes
    local out = out_buffer(2 * n)
    local p = ffi_cast(u8p, bytes)
    for i = 0, n - 1 do
        local b = p[i]
        out[2 * i] = HEX_DIGITS[rshift(b, 4)]
        out[2 * i + 1] = HEX_DIGITS[band(b, 15)]
    end
    return ffi_string(out, 2 * n)
end

local B64_STD = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64_URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
local PAD = byte("=")

-- Maps a character code to its 6-bit value, 0xff for characters outside
-- the alphabet.
local function decode_table(alphabet)
    local t = u8arr(256)
    ffi.fill(t, 256, 0xff)
    for i = 1, 64 do
        t[byte(alphabet, i)] = i - 1
    end
    return t
end

local ENC_STD, ENC_URL = byte_array(B64_STD), byte_array(B64_URL)
local DEC_STD, DEC_URL = decode_table(B64_STD), decode_table(B64_URL)

-- Encodes `data` with the 64-character table `enc`; `pad` adds "=" up to
-- a multiple of four characters.
local function b64_encode(data, enc, pad)
    local n = #data
    local full = n - n % 3
    local tail = n - full
    local out_len = full / 3 * 4
    if tail > 0 then
        out_len = out_len + (pad and 4 or tail + 1)
    end
    local out = out_buffer(out_len)
    local p = ffi_cast(u8p, data)
    local j = 0
    for i = 0, full - 1, 3 do
        local v = bor(lshift(p[i], 16), lshift(p[i + 1], 8), p[i + 2])
        out[j] = enc[rshift(v, 18)]
        out[j + 1] = enc[band(rshift(v, 12), 63)]
        out[j + 2] = enc[band(rshift(v, 6), 63)]
        out[j + 3] = enc[band(v, 63)]
        j = j + 4
    end
    if tail > 0 then
        local v = lshift(p[full], 16)
        if tail == 2 then
            v = bor(v, lshift(p[full + 1], 8))
        end
        out[j] = enc[rshift(v, 18)]
        out[j + 1] = enc[band(rshift(v, 12), 63)]
        if tail == 2 then
            out[j + 2] = enc[band(rshift(v, 6), 63)]
        elseif pad then
            out[j + 2] = PAD
        end
        if pad then
            out[j + 3] = PAD
        end
    end
    return ffi_string(out, out_len)
end

-- The 1-based position of the first character in p[from .. to-1] that is
-- not in the alphabet.
local function bad_char_error(p, from, to, dec)
    for i = from, to - 1 do
        if dec[p[i]] == 0xff then
            return nil, format("invalid base64: unexpected character at position %d", i + 1)
        end
    end
    return nil, "invalid base64"
end

-- Decodes `s` with the table `dec`. With `pad_required` the length must be
-- a multiple of four; otherwise padding may be left out, but padding that
-- is present must complete the last group.
local function b64_decode(s, dec, pad_required)
    local n = #s
    local p = ffi_cast(u8p, s)
    local pads = 0
    if n > 0 and p[n - 1] == PAD then
        pads = (n > 1 and p[n - 2] == PAD) and 2 or 1
    end
    local m = n - pads
    local tail = m % 4
    if (pad_required or pads > 0) and n % 4 ~= 0 then
        return nil, "invalid base64: length is not a multiple of 4"
    end
    if tail == 1 then
        return nil, "invalid base64: truncated input"
    end
    local full = m - tail
    local out_len = full / 4 * 3 + (tail > 0 and tail - 1 or 0)
    local out = out_buffer(out_len)
    local j = 0
    for i = 0, full - 1, 4 do
        local a, b, c, d = dec[p[i]], dec[p[i + 1]], dec[p[i + 2]], dec[p[i + 3]]
        -- valid values are 0..63; 0xff (invalid) sets bits 6 and 7
        if bor(a, b, c, d) > 63 then
            return bad_char_error(p, i, i + 4, dec)
        end
        local v = bor(lshift(a, 18), lshift(b, 12), lshift(c, 6), d)
        out[j] = rshift(v, 16)
        out[j + 1] = band(rshift(v, 8), 255)
        out[j + 2] = band(v, 255)
        j = j + 3
    end
    if tail > 0 then
        local a, b = dec[p[full]], dec[p[full + 1]]
        local c = tail == 3 and dec[p[full + 2]] or 0
        if bor(a, b, c) > 63 then
            return bad_char_error(p, full, m, dec)
        end
        -- the bits below the last whole byte must be zero
        if (tail == 2 and band(b, 15) ~= 0) or (tail == 3 and band(c, 3) ~= 0) then
            return nil, "invalid base64: non-zero bits after the last byte"
        end
        local v = bor(lshift(a, 18), lshift(b, 12), lshift(c, 6))
        out[j] = rshift(v, 16)
        if tail == 3 then
            out[j + 1] = band(rshift(v, 8), 255)
        end
    end
    return ffi_string(out, out_len)
end

function crypto.base64_encode(data)
    check_string(data, 1, "base64_encode")
    return b64_encode(data, ENC_STD, true)
end

function crypto.base64_decode(s)
    check_string(s, 1, "base64_decode")
    return b64_decode(s, DEC_STD, true)
end

function crypto.base64url_encode(data)
    check_string(data, 1, "base64url_encode")
    return b64_encode(data, ENC_URL, false)
end

function crypto.base64url_decode(s)
    check_string(s, 1, "base64url_decode")
    return b64_decode(s, DEC_URL, false)
end

----------------------------------------------------------------------------
-- comparison and randomness

-- True when a and b hold the same bytes. The time taken depends only on
-- the lengths: equal lengths are compared with CRYPTO_memcmp, which reads
-- every byte; different lengths answer false without reading the content.
function crypto.constant_time_equals(a, b)
    check_string(a, 1, "constant_time_equals")
    check_string(b, 2, "constant_time_equals")
    if #a ~= #b then
        return false
    end
    return C.CRYPTO_memcmp(a, b, #a) == 0
end

local MAX_RANDOM = 0x7fffffff -- RAND_bytes takes an int

function crypto.random_bytes(n)
    if type(n) ~= "number" or n < 0 or n > MAX_RANDOM or n % 1 ~= 0 then
        error(format("bad argument #1 to 'random_bytes' (integer 0..%d expected, got %s)",
                     MAX_RANDOM, type(n) == "number" and tostring(n) or type(n)), 2)
    end
    local buf = out_buffer(n)
    if C.RAND_bytes(buf, n) ~= 1 then
        return nil, openssl_error("RAND_bytes")
    end
    return ffi_string(buf, n)
end

----------------------------------------------------------------------------
-- signatures

-- What each JWS algorithm needs: the digest, the key type, and for ECDSA
-- the curve and the byte size of r (and of s).
local ALGS = {
    RS256 = { md = "SHA256", key = "rsa" },
    RS384 = { md = "SHA384", key = "rsa" },
    RS512 = { md = "SHA512", key = "rsa" },
    PS256 = { md = "SHA256", key = "rsa", pss = true },
    PS384 = { md = "SHA384", key = "rsa", pss = true },
    PS512 = { md = "SHA512", key = "rsa", pss = true },
    ES256 = { md = "SHA256", key = "ec", group = "prime256v1", curve = "P-256", size = 32 },
    ES384 = { md = "SHA384", key = "ec", group = "secp384r1", curve = "P-384", size = 48 },
    ES512 = { md = "SHA512", key = "ec", group = "secp521r1", curve = "P-521", size = 66 },
    EdDSA = { key = "eddsa" },
}

-- Parsed keys by PEM text. Values are weak: an entry lives until a
-- garbage-collection cycle finds it unused (between cycles a PEM is parsed
-- once), and ffi.gc frees its EVP_PKEY then.
local key_cache = setmetatable({}, { __mode = "v" })

local group_buf = ffi_new("char[64]")
local group_len = ffi_new("size_t[1]")

-- The key's family as ALGS names it ("rsa", "ec", "eddsa", "unsupported"),
-- then the curve of an EC key, or for RSA whether the key is RSA-PSS only.
local function key_kind(pkey)
    if C.EVP_PKEY_is_a(pkey, "RSA") == 1 or C.EVP_PKEY_is_a(pkey, "RSA-PSS") == 1 then
        return "rsa", nil, C.EVP_PKEY_is_a(pkey, "RSA-PSS") == 1
    end
    if C.EVP_PKEY_is_a(pkey, "EC") == 1 then
        local group
        if C.EVP_PKEY_get_group_name(pkey, group_buf, 64, group_len) == 1 then
            group = ffi_string(group_buf, group_len[0])
        end
        C.ERR_clear_error()
        return "ec", group
    end
    if C.EVP_PKEY_is_a(pkey, "ED25519") == 1 or C.EVP_PKEY_is_a(pkey, "ED448") == 1 then
        return "eddsa"
    end
    return "unsupported"
end

-- Parses a SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----") once
-- and returns { pkey =, kind =, group =, pss_only = } or nil, err.
local function load_key(pem)
    local key = key_cache[pem]
    if key then
        return key
    end
    local bio = C.BIO_new_mem_buf(pem, #pem)
    if bio == nil then
        return nil, openssl_error("BIO_new_mem_buf")
    end
    local pkey = C.PEM_read_bio_PUBKEY(bio, nil, nil, nil)
    C.BIO_free(bio)
    if pkey == nil then
        return nil, openssl_error("invalid public key PEM")
    end
    pkey = ffi_gc(pkey, C.EVP_PKEY_free)
    local kind, group, pss_only = key_kind(pkey)
    key = { pkey = pkey, kind = kind, group = group, pss_only = pss_only }
    key_cache[pem] = key
    return key
end

local KIND_NAMES = {
    rsa = "an RSA key",
    ec = "an EC key",
    eddsa = "an Ed25519 or Ed448 key",
    unsupported = "a key of another type",
}

-- nil when `key` suits `spec`, else the reason.
local function key_mismatch(alg, spec, key)
    if spec.key ~= key.kind then
        return format("%s needs %s, got %s", alg, KIND_NAMES[spec.key], KIND_NAMES[key.kind])
    end
    if spec.group and spec.group ~= key.group then
        return format("%s needs a %s key, got curve %s", alg, spec.curve, key.group or "unknown")
    end
    if key.pss_only and not spec.pss then
        return format("%s cannot use an RSA-PSS key", alg)
    end
    return nil
end

local DER_MAX = 160 -- ECDSA over P-521: 2 * (2 + 67) + 3 bytes at most
local der_buf = ffi_new("unsigned char[?]", DER_MAX)
local der_ptr = ffi_new("unsigned char *[1]")

-- Converts a JOSE signature (r || s, each `size` bytes big-endian) to the
-- DER ECDSA-Sig-Value OpenSSL verifies. Returns a pointer into der_buf and
-- the length, or nil, err.
local function ecdsa_raw_to_der(sig, size)
    local esig = C.ECDSA_SIG_new()
    if esig == nil then
        return nil, openssl_error("ECDSA_SIG_new")
    end
    local p = ffi_cast(u8p, sig)
    local r = C.BN_bin2bn(p, size, nil)
    local s = C.BN_bin2bn(p + size, size, nil)
    if r == nil or s == nil or C.ECDSA_SIG_set0(esig, r, s) ~= 1 then
        -- set0 took neither number: free both (BN_free accepts NULL)
        C.BN_free(r)
        C.BN_free(s)
        C.ECDSA_SIG_free(esig)
        return nil, openssl_error("ECDSA_SIG_set0")
    end
    local len = C.i2d_ECDSA_SIG(esig, nil)
    if len <= 0 or len > DER_MAX then
        C.ECDSA_SIG_free(esig)
        return nil, openssl_error("i2d_ECDSA_SIG")
    end
    der_ptr[0] = der_buf
    len = C.i2d_ECDSA_SIG(esig, der_ptr)
    C.ECDSA_SIG_free(esig)
    if len <= 0 then
        return nil, openssl_error("i2d_ECDSA_SIG")
    end
    return der_buf, len
end

local pctx_out = ffi_new("EVP_PKEY_CTX *[1]")

-- Runs EVP_DigestVerify. true / false for a checked signature, nil, err
-- when the verification could not be set up.
local function digest_verify(spec, pkey, data, sig, siglen)
    local mctx = C.EVP_MD_CTX_new()
    if mctx == nil then
        return nil, openssl_error("EVP_MD_CTX_new")
    end
    local err
    if C.EVP_DigestVerifyInit_ex(mctx, pctx_out, spec.md, nil, nil, pkey, nil) ~= 1 then
        err = openssl_error("EVP_DigestVerifyInit_ex")
    elseif spec.pss then
        -- JWA (RFC 7518, 3.5): MGF1 with the same digest, salt as long as it
        local pctx = pctx_out[0]
        if C.EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0
            or C.EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) <= 0 then
            err = openssl_error("RSA-PSS parameters")
        end
    end
    if err then
        C.EVP_MD_CTX_free(mctx)
        return nil, err
    end
    local rc = C.EVP_DigestVerify(mctx, sig, siglen, data, #data)
    C.EVP_MD_CTX_free(mctx)
    if rc == 1 then
        return true
    end
    -- a wrong or malformed signature leaves reasons on the queue
    C.ERR_clear_error()
    return false
end

--- Verifies `signature` over `data` with the public key in `public_key_pem`
-- (SubjectPublicKeyInfo PEM, "-----BEGIN PUBLIC KEY-----").
-- alg: "RS256" | "RS384" | "RS512" (RSA PKCS#1 v1.5), "PS256" | "PS384" |
-- "PS512" (RSA-PSS, MGF1 with the same digest, salt length = digest
-- length), "ES256" | "ES384" | "ES512" (ECDSA on P-256 / P-384 / P-521),
-- "EdDSA" (Ed25519 or Ed448, as the key says).
-- ECDSA signatures come as JWS uses them: r || s, 64 / 96 / 132 bytes. A
-- DER signature is accepted too: opts.der = true takes the signature as
-- DER, opts.der = false as r || s only, and without opts.der a signature
-- whose length is not the r || s length is taken as DER.
-- Returns true when the signature is valid, false when it is not (wrong,
-- tampered, malformed or of the wrong length), nil, err when the check
-- could not be made: unsupported alg, invalid PEM, a key that does not fit
-- alg (an RSA key for ES256, a P-384 key for ES256, ...).
function crypto.verify(alg, public_key_pem, data, signature, opts)
    check_string(alg, 1, "verify")
    check_string(public_key_pem, 2, "verify")
    check_string(data, 3, "verify")
    check_string(signature, 4, "verify")
    local der
    if opts ~= nil then
        if type(opts) ~= "table" then
            error("bad argument #5 to 'verify' (table expected, got " .. type(opts) .. ")", 2)
        end
        der = opts.der
        if der ~= nil and type(der) ~= "boolean" then
            error("bad argument #5 to 'verify' (opts.der: boolean expected, got " .. type(der) .. ")", 2)
        end
    end

    local spec = ALGS[alg]
    if not spec then
        return nil, "unsupported algorithm: " .. alg
    end
    local key, err = load_key(public_key_pem)
    if not key then
        return nil, err
    end
    err = key_mismatch(alg, spec, key)
    if err then
        return nil, err
    end

    local sig, siglen = signature, #signature
    if spec.size then
        local raw_len = 2 * spec.size
        if der == false or (der == nil and siglen == raw_len) then
            if siglen ~= raw_len then
                return false
            end
            sig, siglen = ecdsa_raw_to_der(signature, spec.size)
            if not sig then
                return nil, siglen
            end
        end
    end
    return digest_verify(spec, key.pkey, data, sig, siglen)
end

return crypto
