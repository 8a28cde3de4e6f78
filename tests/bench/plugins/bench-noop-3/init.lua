-- Benchmark plugin (lua.sh, "plugin overhead"): an access phase that does
-- nothing, to measure what the runtime costs per plugin in a chain. There
-- are five copies, bench-noop-1 .. bench-noop-5, because a route names each
-- plugin once.
return {
    access = function() end,
}
