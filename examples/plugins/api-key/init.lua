-- api-key: an example Moongate plugin (docs/plugins.md walks through it).
--
-- Checks the API key a client sends in a request header, tells the upstream
-- which consumer the key belongs to, and limits each consumer to `limit`
-- requests per `window` with a counter in a shared dictionary, so that every
-- worker counts against the same limit.
--
--   plugins:
--     api-key:
--       keys:
--         - { key: "${ALICE_KEY}", consumer: alice }
--       limit: 100        # requests per consumer and window
--       window: 60s
--
-- Answers: 401 when the header is missing, 403 when the key is unknown,
-- 429 (with Retry-After) past the limit. Otherwise the request goes upstream
-- with X-Consumer set and the key header removed, and the response carries
-- X-RateLimit-Limit and X-RateLimit-Remaining.

local moongate = require "moongate"
local crypto = require "moongate.crypto"

local function find_consumer(keys, given)
    -- Compare with every key in constant time, so the time taken does not
    -- tell how much of a key was right.
    local found
    for _, entry in ipairs(keys) do
        if crypto.constant_time_equals(entry.key, given) then
            found = entry.consumer
        end
    end
    return found
end

return {
    name = "api-key",
    version = "1.0.0",
    priority = 1000,

    schema = {
        type = "object",
        properties = {
            header = {
                type = "string",
                default = "X-API-Key",
                pattern = "^[A-Za-z0-9-]+$",
                description = "request header that carries the key",
            },
            keys = {
                type = "array",
                min_items = 1,
                items = {
                    type = "object",
                    properties = {
                        key = { type = "string", min_length = 8 },
                        consumer = { type = "string", pattern = "^[A-Za-z0-9_.-]+$" },
                    },
                    required = { "key", "consumer" },
                },
            },
            limit = { type = "integer", minimum = 1, default = 60 },
            window = { format = "duration", exclusive_minimum = 0, default = "60s" },
            dict = { type = "string", default = "api_keys" },
            hide_key = { type = "boolean", default = true },
        },
        required = { "keys" },
    },

    access = function(conf, ctx)
        local given = moongate.request.get_header(conf.header)
        if not given or given == "" then
            return moongate.response.exit(401, { error = "missing API key" },
                { ["WWW-Authenticate"] = 'ApiKey header="' .. conf.header .. '"' })
        end
        local consumer = find_consumer(conf.keys, given)
        if not consumer then
            return moongate.response.exit(403, { error = "invalid API key" })
        end

        local dict = moongate.shared[conf.dict]
        if not dict then
            error("api-key: shared dictionary " .. conf.dict .. " is not declared in shared_dicts")
        end
        -- One counter per consumer. It is created at 0 with a TTL of one
        -- window, and incr keeps that TTL, so the window starts with the
        -- consumer's first request and the counter disappears at its end.
        local counter = "api-key:" .. consumer
        local count, err = dict:incr(counter, 1, 0, conf.window)
        if not count then
            error("api-key: cannot count requests: " .. err)
        end
        ctx.consumer = consumer
        ctx.rate_remaining = math.max(conf.limit - count, 0)
        if count > conf.limit then
            local _, ttl = dict:get(counter)
            return moongate.response.exit(429, { error = "rate limit exceeded" }, {
                ["Retry-After"] = math.max(1, math.ceil(ttl or conf.window)),
                ["X-RateLimit-Limit"] = conf.limit,
                ["X-RateLimit-Remaining"] = 0,
            })
        end

        moongate.upstream.set_header("X-Consumer", consumer)
        if conf.hide_key then
            moongate.upstream.clear_header(conf.header)
        end
    end,

    header_filter = function(conf, ctx)
        if ctx.rate_remaining then
            moongate.response.set_header("X-RateLimit-Limit", conf.limit)
            moongate.response.set_header("X-RateLimit-Remaining", ctx.rate_remaining)
        end
    end,

    log = function(_, ctx)
        if ctx.consumer then
            moongate.log.debug("api-key: consumer ", ctx.consumer, " got ",
                moongate.response.get_status())
        end
    end,
}
