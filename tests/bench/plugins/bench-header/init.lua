-- Benchmark plugin (lua.sh, "lua chain"): tells the upstream who the
-- consumer is, in X-Consumer (set by bench-auth earlier in the chain).
local moongate = require "moongate"

return {
    priority = 10,
    access = function(_, ctx)
        moongate.upstream.set_header("X-Consumer", ctx.consumer)
    end,
}
