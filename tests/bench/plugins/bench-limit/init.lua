-- Benchmark plugin (lua.sh, "lua chain"): a fixed-window rate limit per
-- consumer, counted in a shared dictionary. Each request adds 1 to the
-- consumer's counter (created at 0 with a `window`-second TTL); past `limit`
-- the answer is 429. The benchmark's limit is far above what a run sends,
-- so the counter is updated on every request and never refuses one.
local moongate = require "moongate"

return {
    priority = 20,
    schema = {
        type = "object",
        properties = {
            dict = { type = "string", default = "limits" },
            limit = { type = "integer", minimum = 1, default = 1000000000 },
            window = { type = "number", exclusive_minimum = 0, default = 60 },
        },
    },
    access = function(conf, ctx)
        local dict = moongate.shared[conf.dict]
        if not dict then
            return moongate.response.exit(500, { message = "no shared dictionary " .. conf.dict })
        end
        local n, err = dict:incr(ctx.consumer, 1, 0, conf.window)
        if not n then
            return moongate.response.exit(500, { message = "rate limit counter: " .. err })
        end
        if n > conf.limit then
            return moongate.response.exit(429, { message = "rate limit exceeded" })
        end
    end,
}
