-- Benchmark plugin (lua.sh, "lua chain"): a key-auth-like check. The value
-- of the request's `apikey` header is looked up in a table of 100 keys,
-- key-1 .. key-100. No header: 401; an unknown key: 403; a known key puts
-- its consumer name in ctx.consumer for the plugins that run after it.
-- The nginx side of the comparison does the same in lua-chain.nginx.conf.
local moongate = require "moongate"

local consumers = {}
for i = 1, 100 do
    consumers["key-" .. i] = "consumer-" .. i
end

return {
    priority = 30,
    access = function(_, ctx)
        local key = moongate.request.get_header("apikey")
        if not key then
            return moongate.response.exit(401, { message = "no API key" })
        end
        local consumer = consumers[key]
        if not consumer then
            return moongate.response.exit(403, { message = "invalid API key" })
        end
        ctx.consumer = consumer
    end,
}
