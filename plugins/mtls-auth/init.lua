-- mtls-auth: authenticate requests by their TLS client certificate.
--
-- The listener asks for client certificates (`tls.client_certificates` with
-- mode request or require); this plugin then requires a verified one and
-- maps its identity to a consumer:
--
--   consumers:
--     - username: alice
--       credentials:
--         mtls-auth: { subject: alice@example.com }
--   routes:
--     - ...
--       plugins:
--         mtls-auth: { consumer_by: [ san_email, san_dns, cn ] }
--
-- The certificate's identities are tried in the order of `consumer_by`
-- (san_email, san_dns, san_uri: every name of that kind; cn: the subject's
-- common name; subject: the whole subject DN in RFC 2253 form;
-- fingerprint: the SHA-256 fingerprint, lower-case hex), each against the
-- consumers' `mtls-auth.subject` credentials; the first match identifies
-- the consumer.
--
-- Answers: 401 (JSON) when there is no certificate or it did not verify,
-- 403 when no consumer matches. `required: false` lets requests without a
-- certificate through anonymously (a presented certificate must still
-- verify and match). The upstream gets the consumer in `consumer_header`.

local moongate = require "moongate"

local IDENTITIES = { "san_email", "san_dns", "san_uri", "cn", "subject", "fingerprint" }

-- The identities of one kind the certificate carries, as a list.
local function identities(cert, kind)
    if kind == "san_email" then
        return cert.san.email
    elseif kind == "san_dns" then
        return cert.san.dns
    elseif kind == "san_uri" then
        return cert.san.uri
    elseif kind == "cn" then
        return { cert.common_name }
    elseif kind == "subject" then
        return { cert.subject }
    end
    return { cert.fingerprint_sha256 }
end

local function find_consumer(cert, order)
    for _, kind in ipairs(order) do
        for _, value in ipairs(identities(cert, kind)) do
            local c = moongate.consumer.lookup("mtls-auth", "subject", value)
            if c then
                return c, value
            end
        end
    end
    return nil
end

return {
    name = "mtls-auth",
    version = "1.0.0",
    priority = 1100,

    schema = {
        type = "object",
        properties = {
            consumer_by = {
                type = "array",
                min_items = 1,
                unique_items = true,
                items = { type = "string", enum = IDENTITIES },
                default = { "san_email", "san_dns", "cn" },
                description = "certificate identities matched against consumers, in order",
            },
            required = {
                type = "boolean",
                default = true,
                description = "refuse requests that present no client certificate",
            },
            allow_unverified = {
                type = "boolean",
                default = false,
                description = "accept a certificate that failed verification (testing only)",
            },
            consumer_header = {
                type = "string",
                default = "X-Consumer-Username",
                pattern = "^[A-Za-z0-9-]+$",
                description = "upstream request header set to the consumer's username",
            },
        },
    },

    access = function(conf, ctx)
        local cert = moongate.request.get_client_certificate()
        if not cert.presented then
            if not conf.required then
                return
            end
            return moongate.response.exit(401, { error = "client certificate required" })
        end
        if not cert.verified and not conf.allow_unverified then
            moongate.log.info("mtls-auth: client certificate not verified: ", cert.verify_error)
            return moongate.response.exit(401, { error = "client certificate not verified" })
        end
        local consumer, identity = find_consumer(cert, conf.consumer_by)
        if not consumer then
            return moongate.response.exit(403, { error = "no consumer for this certificate" })
        end
        moongate.consumer.set(consumer)
        ctx.mtls_identity = identity
        moongate.upstream.set_header(conf.consumer_header, consumer.username)
    end,
}
