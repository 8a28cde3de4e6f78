-- The PDK crypto module: digests, HMAC and base64 against published test
-- vectors (FIPS 180, RFC 4231, RFC 2202, RFC 4648), signatures against the
-- RFC 7515 / RFC 8037 examples and against keys and signatures made here
-- with the openssl command line.
local bit = require "bit"
local ffi = require "ffi"
local crypto = require "moongate.crypto"
local helpers = require "spec.helpers"

-- OpenSSL's error queue is per thread, so the spec sees the module's.
ffi.cdef [[ unsigned long ERR_peek_error(void); ]]
local libcrypto = ffi.load("libcrypto.so.3")

local function error_queue_empty()
    return libcrypto.ERR_peek_error() == 0
end

local function unhex(h)
    return (h:gsub("%x%x", function(x)
        return string.char(tonumber(x, 16))
    end))
end

local function hex(s)
    return (s:gsub(".", function(c)
        return string.format("%02x", c:byte())
    end))
end

-- Every byte value once, 0 to 255.
local function all_bytes()
    local t = {}
    for i = 0, 255 do
        t[#t + 1] = string.char(i)
    end
    return table.concat(t)
end

-- Flips the low bit of byte i (1-based).
local function flip(s, i)
    return s:sub(1, i - 1) .. string.char(bit.bxor(s:byte(i), 1)) .. s:sub(i + 1)
end

-- Runs a shell command; raises with its output when it fails.
local function sh(cmd)
    local out = os.tmpname()
    local rc = os.execute(cmd .. " >" .. out .. " 2>&1")
    local output = helpers.read_file(out) or ""
    os.remove(out)
    if rc ~= 0 and rc ~= true then
        error(cmd .. " failed: " .. output, 2)
    end
    return output
end

-- A PEM public key (SubjectPublicKeyInfo) from its DER bytes.
local function pem_from_der(der)
    local b64 = crypto.base64_encode(der)
    local lines = {}
    for i = 1, #b64, 64 do
        lines[#lines + 1] = b64:sub(i, i + 63)
    end
    return "-----BEGIN PUBLIC KEY-----\n" .. table.concat(lines, "\n") .. "\n-----END PUBLIC KEY-----\n"
end

-- The JOSE form (r || s, each `size` bytes) of a DER ECDSA-Sig-Value.
local function der_to_raw(der, size)
    assert(der:byte(1) == 0x30, "not a DER SEQUENCE")
    local pos = der:byte(2) == 0x81 and 4 or 3
    local parts = {}
    for i = 1, 2 do
        assert(der:byte(pos) == 0x02, "not a DER INTEGER")
        local len = der:byte(pos + 1)
        local int = der:sub(pos + 2, pos + 1 + len):gsub("^%z+", "")
        parts[i] = string.rep("\0", size - #int) .. int
        pos = pos + 2 + len
    end
    return parts[1] .. parts[2]
end

describe("crypto", function()
    describe("digests", function()
        it("match the FIPS 180 vectors", function()
            assert.equal("a9993e364706816aba3e25717850c26c9cd0d89d", hex(crypto.sha1("abc")))
            assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                         hex(crypto.sha256("abc")))
            assert.equal("cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed" ..
                         "8086072ba1e7cc2358baeca134c825a7", hex(crypto.sha384("abc")))
            assert.equal("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a" ..
                         "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                         hex(crypto.sha512("abc")))
            assert.equal("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1",
                         hex(crypto.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")))
            assert.equal("8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018" ..
                         "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909",
                         hex(crypto.sha512("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn" ..
                                           "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")))
        end)

        it("hash the empty string and a million 'a's", function()
            assert.equal("da39a3ee5e6b4b0d3255bfef95601890afd80709", hex(crypto.sha1("")))
            assert.equal("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                         hex(crypto.sha256("")))
            assert.equal("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce" ..
                         "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
                         hex(crypto.sha512("")))
            local million = string.rep("a", 1000000)
            assert.equal("34aa973cd4c4daa4f61eeb2bdbad27316534016f", hex(crypto.sha1(million)))
            assert.equal("cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
                         hex(crypto.sha256(million)))
        end)

        it("return raw bytes of the digest's size and read past NUL bytes", function()
            assert.equal(20, #crypto.sha1("x"))
            assert.equal(32, #crypto.sha256("x"))
            assert.equal(48, #crypto.sha384("x"))
            assert.equal(64, #crypto.sha512("x"))
            assert.not_equal(crypto.sha256("a\0b"), crypto.sha256("a\0c"))
            assert.equal(unhex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
                         crypto.sha256(""))
        end)
    end)

    describe("hmac", function()
        it("matches RFC 4231 (SHA-256, SHA-384, SHA-512)", function()
            local key1, data1 = string.rep("\11", 20), "Hi There"
            assert.equal("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
                         hex(crypto.hmac("sha256", key1, data1)))
            assert.equal("afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c" ..
                         "faea9ea9076ede7f4af152e8b2fa9cb6", hex(crypto.hmac("sha384", key1, data1)))
            assert.equal("87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde" ..
                         "daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854",
                         hex(crypto.hmac("sha512", key1, data1)))

            local key2, data2 = "Jefe", "what do ya want for nothing?"
            assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                         hex(crypto.hmac("sha256", key2, data2)))
            assert.equal("164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554" ..
                         "9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
                         hex(crypto.hmac("sha512", key2, data2)))

            assert.equal("773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
                         hex(crypto.hmac("sha256", string.rep("\170", 20), string.rep("\221", 50))))
            assert.equal("82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
                         hex(crypto.hmac("sha256", unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                                         string.rep("\205", 50))))
        end)

        it("hashes keys longer than the block size (RFC 4231 cases 6 and 7)", function()
            local key = string.rep("\170", 131)
            assert.equal("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
                         hex(crypto.hmac("sha256", key, "Test Using Larger Than Block-Size Key - Hash Key First")))
            assert.equal("9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
                         hex(crypto.hmac("sha256", key,
                             "This is a test using a larger than block-size key and a larger than block-size " ..
                             "data. The key needs to be hashed before being used by the HMAC algorithm.")))
        end)

        it("matches RFC 2202 (SHA-1)", function()
            assert.equal("b617318655057264e28bc0b6fb378c8ef146be00",
                         hex(crypto.hmac("sha1", string.rep("\11", 20), "Hi There")))
            assert.equal("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79",
                         hex(crypto.hmac("sha1", "Jefe", "what do ya want for nothing?")))
        end)

        it("uses an empty key as given, not the previous call's key", function()
            assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                         hex(crypto.hmac("sha256", "Jefe", "what do ya want for nothing?")))
            -- the value `openssl dgst -sha256 -hmac ""` prints for empty input
            assert.equal("b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad",
                         hex(crypto.hmac("sha256", "", "")))
            assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                         hex(crypto.hmac("sha256", "Jefe", "what do ya want for nothing?")))
        end)

        it("returns nil, err for an unknown algorithm", function()
            local mac, err = crypto.hmac("md5", "key", "data")
            assert.is_nil(mac)
            assert.equal("unsupported hmac algorithm: md5", err)
            mac, err = crypto.hmac("SHA256", "key", "data")
            assert.is_nil(mac)
            assert.equal("unsupported hmac algorithm: SHA256", err)
        end)
    end)

    describe("hex", function()
        it("writes lower-case hex, two digits a byte", function()
            assert.equal("", crypto.hex(""))
            assert.equal("0001ff7f80", crypto.hex("\0\1\255\127\128"))
            assert.equal("616263", crypto.hex("abc"))
            assert.equal(hex(all_bytes()), crypto.hex(all_bytes()))
        end)

        it("handles inputs larger than its reusable buffer", function()
            local big = string.rep("\222\173\190\239", 50000)
            assert.equal(string.rep("deadbeef", 50000), crypto.hex(big))
            assert.equal("deadbeef", crypto.hex("\222\173\190\239"))
        end)
    end)

    describe("base64", function()
        local rfc4648 = {
            { "", "" },
            { "f", "Zg==" },
            { "fo", "Zm8=" },
            { "foo", "Zm9v" },
            { "foob", "Zm9vYg==" },
            { "fooba", "Zm9vYmE=" },
            { "foobar", "Zm9vYmFy" },
        }

        it("encodes and decodes the RFC 4648 vectors", function()
            for _, v in ipairs(rfc4648) do
                assert.equal(v[2], crypto.base64_encode(v[1]))
                assert.equal(v[1], crypto.base64_decode(v[2]))
            end
        end)

        it("uses + and / and round-trips every byte value at every length mod 3", function()
            assert.equal("+/+/", crypto.base64_encode("\251\255\191"))
            assert.equal("+/8=", crypto.base64_encode("\251\255"))
            local bytes = all_bytes()
            for n = 0, 40 do
                local s = bytes:sub(256 - n)
                assert.equal(s, crypto.base64_decode(crypto.base64_encode(s)))
            end
            assert.equal(bytes, crypto.base64_decode(crypto.base64_encode(bytes)))
        end)

        it("agrees with `openssl base64` on a few kilobytes", function()
            local dir = helpers.tmpdir()
            local data = crypto.random_bytes(3001)
            helpers.write_file(dir .. "/data", data)
            local expected = sh("openssl base64 -A -in " .. dir .. "/data")
            assert.equal(4004, #expected)
            assert.equal(expected, crypto.base64_encode(data))
            assert.equal(data, crypto.base64_decode(expected))
            helpers.stop_all()
        end)

        it("is strict: padding required, no whitespace, no foreign characters", function()
            local cases = {
                { "Zg", "invalid base64: length is not a multiple of 4" },
                { "Zg=", "invalid base64: length is not a multiple of 4" },
                { "Zm9vY", "invalid base64: length is not a multiple of 4" },
                { "Zm9v\n", "invalid base64: length is not a multiple of 4" },
                { "Zm 9v", "invalid base64: length is not a multiple of 4" },
                { "Zm9 ", "invalid base64: unexpected character at position 4" },
                { "Zm9v====", "invalid base64: unexpected character at position 5" },
                { "=Zm9", "invalid base64: unexpected character at position 1" },
                { "Zm=v", "invalid base64: unexpected character at position 3" },
                { "-_8=", "invalid base64: unexpected character at position 1" },
                { "Zm9vY\0==", "invalid base64: unexpected character at position 6" },
                { "Zh==", "invalid base64: non-zero bits after the last byte" },
                { "Zm9=", "invalid base64: non-zero bits after the last byte" },
            }
            for _, c in ipairs(cases) do
                local out, err = crypto.base64_decode(c[1])
                assert.is_nil(out, c[1])
                assert.equal(c[2], err)
            end
        end)
    end)

    describe("base64url", function()
        it("uses - and _ and writes no padding", function()
            assert.equal("-_-_", crypto.base64url_encode("\251\255\191"))
            assert.equal("-_8", crypto.base64url_encode("\251\255"))
            assert.equal("Zg", crypto.base64url_encode("f"))
            assert.equal("Zm8", crypto.base64url_encode("fo"))
            assert.equal("Zm9vYmFy", crypto.base64url_encode("foobar"))
            assert.equal("", crypto.base64url_encode(""))
            assert.equal("eyJhbGciOiJFUzI1NiJ9", crypto.base64url_encode('{"alg":"ES256"}'))
        end)

        it("decodes with or without padding", function()
            assert.equal("\251\255", crypto.base64url_decode("-_8"))
            assert.equal("\251\255", crypto.base64url_decode("-_8="))
            assert.equal("f", crypto.base64url_decode("Zg"))
            assert.equal("f", crypto.base64url_decode("Zg=="))
            assert.equal("foobar", crypto.base64url_decode("Zm9vYmFy"))
            assert.equal("", crypto.base64url_decode(""))
            local bytes = all_bytes()
            for n = 0, 40 do
                local s = bytes:sub(256 - n)
                assert.equal(s, crypto.base64url_decode(crypto.base64url_encode(s)))
            end
        end)

        it("refuses incomplete padding, the standard alphabet and stray bits", function()
            local cases = {
                { "Zg=", "invalid base64: length is not a multiple of 4" },
                { "Z", "invalid base64: truncated input" },
                { "Zm9vY", "invalid base64: truncated input" },
                { "+/8", "invalid base64: unexpected character at position 1" },
                { "Zm9v.", "invalid base64: truncated input" },
                { "Zm9v.A", "invalid base64: unexpected character at position 5" },
                { "Zh", "invalid base64: non-zero bits after the last byte" },
            }
            for _, c in ipairs(cases) do
                local out, err = crypto.base64url_decode(c[1])
                assert.is_nil(out, c[1])
                assert.equal(c[2], err)
            end
        end)
    end)

    describe("constant_time_equals", function()
        it("compares content and length", function()
            assert.is_true(crypto.constant_time_equals("secret", "secret"))
            assert.is_true(crypto.constant_time_equals("", ""))
            assert.is_true(crypto.constant_time_equals("a\0b", "a\0b"))
            assert.is_false(crypto.constant_time_equals("secret", "secreT"))
            assert.is_false(crypto.constant_time_equals("a\0b", "a\0c"))
            assert.is_false(crypto.constant_time_equals("secret", "secret2"))
            assert.is_false(crypto.constant_time_equals("", "x"))
        end)
    end)

    describe("random_bytes", function()
        it("returns n bytes, different each time", function()
            assert.equal("", crypto.random_bytes(0))
            local a, b = crypto.random_bytes(32), crypto.random_bytes(32)
            assert.equal(32, #a)
            assert.equal(32, #b)
            assert.not_equal(a, b)
            assert.equal(100000, #crypto.random_bytes(100000))
        end)
    end)

    describe("misuse", function()
        it("raises at the caller on wrong argument types", function()
            local ok, err = pcall(function()
                crypto.sha256(nil)
            end)
            assert.is_false(ok)
            assert.matches("03%-crypto_spec%.lua:%d+: bad argument #1 to 'sha256' %(string expected, got nil%)",
                           err)
        end)

        it("checks every argument of every function", function()
            local calls = {
                { function() crypto.sha1(1) end, "bad argument #1 to 'sha1' (string expected, got number)" },
                { function() crypto.sha512({}) end, "bad argument #1 to 'sha512' (string expected, got table)" },
                { function() crypto.hex(nil) end, "bad argument #1 to 'hex' (string expected, got nil)" },
                { function() crypto.hmac(nil, "k", "d") end, "bad argument #1 to 'hmac' (string expected, got nil)" },
                { function() crypto.hmac("sha256", 1, "d") end,
                  "bad argument #2 to 'hmac' (string expected, got number)" },
                { function() crypto.hmac("sha256", "k") end, "bad argument #3 to 'hmac' (string expected, got nil)" },
                { function() crypto.base64_encode(true) end,
                  "bad argument #1 to 'base64_encode' (string expected, got boolean)" },
                { function() crypto.base64_decode(nil) end,
                  "bad argument #1 to 'base64_decode' (string expected, got nil)" },
                { function() crypto.base64url_encode(1) end,
                  "bad argument #1 to 'base64url_encode' (string expected, got number)" },
                { function() crypto.base64url_decode(nil) end,
                  "bad argument #1 to 'base64url_decode' (string expected, got nil)" },
                { function() crypto.constant_time_equals("a", nil) end,
                  "bad argument #2 to 'constant_time_equals' (string expected, got nil)" },
                { function() crypto.random_bytes(-1) end,
                  "bad argument #1 to 'random_bytes' (integer 0..2147483647 expected, got -1)" },
                { function() crypto.random_bytes(1.5) end,
                  "bad argument #1 to 'random_bytes' (integer 0..2147483647 expected, got 1.5)" },
                { function() crypto.random_bytes("8") end,
                  "bad argument #1 to 'random_bytes' (integer 0..2147483647 expected, got string)" },
                { function() crypto.verify(nil, "pem", "d", "s") end,
                  "bad argument #1 to 'verify' (string expected, got nil)" },
                { function() crypto.verify("RS256", nil, "d", "s") end,
                  "bad argument #2 to 'verify' (string expected, got nil)" },
                { function() crypto.verify("RS256", "pem", 1, "s") end,
                  "bad argument #3 to 'verify' (string expected, got number)" },
                { function() crypto.verify("RS256", "pem", "d") end,
                  "bad argument #4 to 'verify' (string expected, got nil)" },
                { function() crypto.verify("ES256", "pem", "d", "s", "der") end,
                  "bad argument #5 to 'verify' (table expected, got string)" },
                { function() crypto.verify("ES256", "pem", "d", "s", { der = 1 }) end,
                  "bad argument #5 to 'verify' (opts.der: boolean expected, got number)" },
            }
            for _, c in ipairs(calls) do
                local ok, err = pcall(c[1])
                assert.is_false(ok)
                assert.equal(c[2], err:match("bad argument.*"))
            end
        end)
    end)

    describe("verify", function()
        local dir
        local data = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9"
        local keys = {}  -- name -> public key PEM

        -- Generates a key pair with `openssl genpkey` arguments.
        local function genkey(name, args)
            local priv = dir .. "/" .. name .. ".key"
            sh("openssl genpkey " .. args .. " -out " .. priv)
            sh("openssl pkey -in " .. priv .. " -pubout -out " .. dir .. "/" .. name .. ".pub")
            keys[name] = helpers.read_file(dir .. "/" .. name .. ".pub")
        end

        -- Signs `msg` with key `name` through `openssl dgst` (or pkeyutl for
        -- EdDSA, which hashes nothing first).
        local function sign(name, md, msg, sigopts)
            local input, sig = dir .. "/input", dir .. "/sig"
            helpers.write_file(input, msg)
            if md then
                sh(string.format("openssl dgst -%s -sign %s/%s.key %s -out %s %s",
                                 md, dir, name, sigopts or "", sig, input))
            else
                sh(string.format("openssl pkeyutl -sign -rawin -inkey %s/%s.key -in %s -out %s",
                                 dir, name, input, sig))
            end
            return helpers.read_file(sig)
        end

        local PSS = "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest"

        lazy_setup(function()
            dir = helpers.tmpdir()
            genkey("rsa", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048")
            genkey("rsa_other", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048")
            genkey("rsa_pss", "-algorithm RSA-PSS -pkeyopt rsa_keygen_bits:2048")
            genkey("p256", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256")
            genkey("p384", "-algorithm EC -pkeyopt ec_paramgen_curve:P-384")
            genkey("p521", "-algorithm EC -pkeyopt ec_paramgen_curve:P-521")
            genkey("k256", "-algorithm EC -pkeyopt ec_paramgen_curve:secp256k1")
            genkey("ed25519", "-algorithm ED25519")
        end)

        lazy_teardown(function()
            helpers.stop_all()
        end)

        after_each(function()
            assert.is_true(error_queue_empty(), "OpenSSL error queue left non-empty")
        end)

        for _, case in ipairs {
            { alg = "RS256", md = "sha256" },
            { alg = "RS384", md = "sha384" },
            { alg = "RS512", md = "sha512" },
        } do
            it(case.alg .. ": accepts a valid signature, refuses tampering and other keys", function()
                local sig = sign("rsa", case.md, data)
                assert.equal(256, #sig)
                assert.is_true(crypto.verify(case.alg, keys.rsa, data, sig))
                assert.is_false(crypto.verify(case.alg, keys.rsa, data .. "x", sig))
                assert.is_false(crypto.verify(case.alg, keys.rsa, flip(data, 1), sig))
                assert.is_false(crypto.verify(case.alg, keys.rsa, data, flip(sig, 128)))
                assert.is_false(crypto.verify(case.alg, keys.rsa, data, sig:sub(1, 255)))
                assert.is_false(crypto.verify(case.alg, keys.rsa, data, ""))
                assert.is_false(crypto.verify(case.alg, keys.rsa_other, data, sig))
            end)
        end

        it("RS256 covers NUL bytes in the data and differs from RS384", function()
            local msg = "a\0b"
            local sig = sign("rsa", "sha256", msg)
            assert.is_true(crypto.verify("RS256", keys.rsa, msg, sig))
            assert.is_false(crypto.verify("RS256", keys.rsa, "a", sig))
            assert.is_false(crypto.verify("RS384", keys.rsa, msg, sig))
        end)

        for _, case in ipairs {
            { alg = "PS256", md = "sha256" },
            { alg = "PS384", md = "sha384" },
            { alg = "PS512", md = "sha512" },
        } do
            it(case.alg .. ": accepts RSA-PSS with a digest-length salt only", function()
                local sig = sign("rsa", case.md, data, PSS)
                assert.is_true(crypto.verify(case.alg, keys.rsa, data, sig))
                assert.is_false(crypto.verify(case.alg, keys.rsa, data .. "x", sig))
                assert.is_false(crypto.verify(case.alg, keys.rsa, data, flip(sig, 10)))
                assert.is_false(crypto.verify("RS" .. case.alg:sub(3), keys.rsa, data, sig))
                local pkcs1 = sign("rsa", case.md, data)
                assert.is_false(crypto.verify(case.alg, keys.rsa, data, pkcs1))
                local max_salt = sign("rsa", case.md, data,
                                      "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max")
                assert.is_false(crypto.verify(case.alg, keys.rsa, data, max_salt))
            end)
        end

        it("PS256 takes an RSA-PSS key, RS256 refuses it", function()
            local sig = sign("rsa_pss", "sha256", data, PSS)
            assert.is_true(crypto.verify("PS256", keys.rsa_pss, data, sig))
            assert.is_false(crypto.verify("PS256", keys.rsa_pss, data .. "x", sig))
            local ok, err = crypto.verify("RS256", keys.rsa_pss, data, sig)
            assert.is_nil(ok)
            assert.equal("RS256 cannot use an RSA-PSS key", err)
        end)

        for _, case in ipairs {
            { alg = "ES256", md = "sha256", key = "p256", size = 32 },
            { alg = "ES384", md = "sha384", key = "p384", size = 48 },
            { alg = "ES512", md = "sha512", key = "p521", size = 66 },
        } do
            it(case.alg .. ": accepts JOSE r || s and DER signatures", function()
                local der = sign(case.key, case.md, data)
                local raw = der_to_raw(der, case.size)
                assert.equal(2 * case.size, #raw)
                local pem = keys[case.key]
                assert.is_true(crypto.verify(case.alg, pem, data, raw))
                assert.is_true(crypto.verify(case.alg, pem, data, raw, { der = false }))
                assert.is_true(crypto.verify(case.alg, pem, data, der))
                assert.is_true(crypto.verify(case.alg, pem, data, der, { der = true }))
                assert.is_true(crypto.verify(case.alg, pem, data, raw, {}))
            end)

            it(case.alg .. ": refuses tampered, misframed and foreign signatures", function()
                local der = sign(case.key, case.md, data)
                local raw = der_to_raw(der, case.size)
                local pem = keys[case.key]
                assert.is_false(crypto.verify(case.alg, pem, data .. "x", raw))
                assert.is_false(crypto.verify(case.alg, pem, data .. "x", der))
                assert.is_false(crypto.verify(case.alg, pem, data, flip(raw, 5)))
                assert.is_false(crypto.verify(case.alg, pem, data, flip(raw, 2 * case.size)))
                assert.is_false(crypto.verify(case.alg, pem, data, flip(der, #der)))
                -- r || s read as DER, DER read as r || s, r || s of the wrong size
                assert.is_false(crypto.verify(case.alg, pem, data, raw, { der = true }))
                assert.is_false(crypto.verify(case.alg, pem, data, der, { der = false }))
                assert.is_false(crypto.verify(case.alg, pem, data, raw:sub(2)))
                assert.is_false(crypto.verify(case.alg, pem, data, raw .. "\0"))
                assert.is_false(crypto.verify(case.alg, pem, data, raw:sub(2), { der = false }))
                -- r = s = 0
                assert.is_false(crypto.verify(case.alg, pem, data, string.rep("\0", 2 * case.size)))
                assert.is_false(crypto.verify(case.alg, pem, data, "not a signature"))
            end)
        end

        it("ES256 verifies the RFC 7515 appendix A.3 example", function()
            local x = crypto.base64url_decode("f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU")
            local y = crypto.base64url_decode("x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0")
            local pem = pem_from_der(unhex("3059301306072a8648ce3d020106082a8648ce3d03010703420004") .. x .. y)
            local input = "eyJhbGciOiJFUzI1NiJ9." ..
                          "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxl" ..
                          "LmNvbS9pc19yb290Ijp0cnVlfQ"
            local sig = crypto.base64url_decode(
                "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q")
            assert.equal(64, #sig)
            assert.is_true(crypto.verify("ES256", pem, input, sig))
            assert.is_false(crypto.verify("ES256", pem, input .. ".", sig))
        end)

        it("EdDSA verifies the RFC 8037 appendix A.4 example", function()
            local x = crypto.base64url_decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
            local pem = pem_from_der(unhex("302a300506032b6570032100") .. x)
            local input = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc"
            local sig = crypto.base64url_decode(
                "hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg")
            assert.is_true(crypto.verify("EdDSA", pem, input, sig))
            assert.is_false(crypto.verify("EdDSA", pem, input, flip(sig, 1)))
        end)

        it("EdDSA: accepts an Ed25519 signature, refuses tampering", function()
            local sig = sign("ed25519", nil, data)
            assert.equal(64, #sig)
            assert.is_true(crypto.verify("EdDSA", keys.ed25519, data, sig))
            assert.is_false(crypto.verify("EdDSA", keys.ed25519, data .. "x", sig))
            assert.is_false(crypto.verify("EdDSA", keys.ed25519, data, flip(sig, 64)))
            assert.is_false(crypto.verify("EdDSA", keys.ed25519, data, sig:sub(2)))
        end)

        it("returns nil, err when the key does not fit the algorithm", function()
            local cases = {
                { "RS256", "p256", "RS256 needs an RSA key, got an EC key" },
                { "PS256", "ed25519", "PS256 needs an RSA key, got an Ed25519 or Ed448 key" },
                { "ES256", "rsa", "ES256 needs an EC key, got an RSA key" },
                { "ES256", "p384", "ES256 needs a P-256 key, got curve secp384r1" },
                { "ES384", "p256", "ES384 needs a P-384 key, got curve prime256v1" },
                { "ES256", "k256", "ES256 needs a P-256 key, got curve secp256k1" },
                { "EdDSA", "rsa", "EdDSA needs an Ed25519 or Ed448 key, got an RSA key" },
            }
            for _, c in ipairs(cases) do
                local ok, err = crypto.verify(c[1], keys[c[2]], data, string.rep("\0", 64))
                assert.is_nil(ok)
                assert.equal(c[3], err)
            end
        end)

        it("returns nil, err for an unsupported algorithm", function()
            for _, alg in ipairs { "HS256", "none", "rs256", "" } do
                local ok, err = crypto.verify(alg, keys.rsa, data, "sig")
                assert.is_nil(ok)
                assert.equal("unsupported algorithm: " .. alg, err)
            end
        end)

        it("returns nil, err with OpenSSL's reason for a bad PEM", function()
            local ok, err = crypto.verify("RS256", "not a pem", data, "sig")
            assert.is_nil(ok)
            assert.equal("invalid public key PEM: error:1E08010C:DECODER routines::unsupported", err)

            local truncated = keys.rsa:gsub("\n[^\n]+\n%-%-%-%-%-END", "\n-----END")
            ok, err = crypto.verify("RS256", truncated, data, "sig")
            assert.is_nil(ok)
            assert.matches("^invalid public key PEM: error:%x+:", err)

            -- a private key is not a public key
            ok, err = crypto.verify("RS256", helpers.read_file(dir .. "/rsa.key"), data, "sig")
            assert.is_nil(ok)
            assert.matches("^invalid public key PEM: error:%x+:DECODER routines::unsupported", err)
        end)

        it("keeps working when cached keys are collected", function()
            local sig = sign("rsa", "sha256", data)
            assert.is_true(crypto.verify("RS256", keys.rsa, data, sig))
            collectgarbage()
            collectgarbage()
            assert.is_true(crypto.verify("RS256", keys.rsa, data, sig))
            -- the same PEM text built anew finds the same entry
            local copy = keys.rsa:sub(1, 10) .. keys.rsa:sub(11)
            assert.is_true(crypto.verify("RS256", copy, data, sig))
        end)
    end)

    describe("module", function()
        it("loads again in the same VM, as on a new config generation", function()
            package.loaded["moongate.crypto"] = nil
            local again = require "moongate.crypto"
            package.loaded["moongate.crypto"] = crypto
            assert.not_equal(crypto, again)
            assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                         again.hex(again.sha256("abc")))
            assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
                         again.hex(again.hmac("sha256", "Jefe", "what do ya want for nothing?")))
            assert.equal("Zm9vYmFy", again.base64_encode("foobar"))
            assert.equal(crypto.sha512("x"), again.sha512("x"))
        end)

        it("loads again in a plain LuaJIT, where ffi.cdef refuses a second struct definition", function()
            -- busted wraps ffi.cdef to skip repeated declarations, so this
            -- runs outside it
            local file = assert(package.searchpath("moongate.crypto", package.path))
            local root = file:sub(1, -#"moongate/crypto.lua" - 1)
            local script = table.concat({
                string.format("package.path = %q .. package.path", root .. "?.lua;"),
                'local first = require "moongate.crypto"',
                'package.loaded["moongate.crypto"] = nil',
                'local again = require "moongate.crypto"',
                'assert(first ~= again)',
                'io.write(again.hex(again.hmac("sha256", "Jefe", "what do ya want for nothing?")), " ",',
                '         first.hex(first.sha256("abc")))',
            }, "\n")
            local dir = helpers.tmpdir()
            helpers.write_file(dir .. "/reload.lua", script)
            assert.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843 " ..
                         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                         sh("luajit " .. dir .. "/reload.lua"))
            helpers.stop_all()
        end)

        it("defines no globals", function()
            local before = {}
            for k in pairs(_G) do
                before[k] = true
            end
            package.loaded["moongate.crypto"] = nil
            require "moongate.crypto"
            package.loaded["moongate.crypto"] = crypto
            local added = {}
            for k in pairs(_G) do
                if not before[k] then
                    added[#added + 1] = k
                end
            end
            assert.same({}, added)
        end)
    end)
end)
