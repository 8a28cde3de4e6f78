-- The plugin runtime of a worker: loads the plugins a config names, validates
-- each plugin instance's settings with the plugin's schema, builds the chain
-- of each route, and runs a phase of a request's chain (called by the C core
-- inside a coroutine, see core/gw_lua.c).
--
-- A plugin is a directory <name>/ holding init.lua, found in the bundled
-- plugins directory or in a directory of `plugin_paths`. Its init.lua returns
-- a table: name, version, priority (higher runs first), schema (see
-- moongate.schema), and any of the phase functions rewrite, access,
-- header_filter, body_filter and log, each called as fn(conf, ctx).

local schema = require "moongate.schema"
local pdk = require "moongate"

local M = {}

local PHASES = { "rewrite", "access", "header_filter", "body_filter", "log" }
local PHASE_BIT = { rewrite = 1, access = 1, header_filter = 2, body_filter = 4, log = 8 }
local ACCESS, HEADER_FILTER, BODY_FILTER, LOG = 1, 2, 4, 8

-- The chains of the current config, by route index + 1.
local chains = {}

local function file_exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return true
    end
    return false
end

-- Find plugin `name` in dirs: its init.lua path, or nil, err. A name found
-- in two directories is an error: which one runs would be a guess.
local function find_plugin(name, dirs)
    local found
    for _, dir in ipairs(dirs) do
        local path = dir .. "/" .. name .. "/init.lua"
        if file_exists(path) then
            if found then
                return nil, ("plugin %q is in two places: %s and %s"):format(name, found, path)
            end
            found = path
        end
    end
    if not found then
        return nil, ("plugin %q not found (searched %s)"):format(name, table.concat(dirs, ", "))
    end
    return found
end

-- Load and check one plugin. Returns { mod, validator, path } or nil, err.
local function load_plugin(name, dirs)
    local path, err = find_plugin(name, dirs)
    if not path then
        return nil, err
    end
    local chunk, lerr = loadfile(path)
    if not chunk then
        return nil, ("plugin %q: %s"):format(name, lerr)
    end
    local ok, mod = pcall(chunk)
    if not ok then
        return nil, ("plugin %q: %s: %s"):format(name, path, tostring(mod))
    end
    if type(mod) ~= "table" then
        return nil, ("plugin %q: %s must return a table"):format(name, path)
    end
    if mod.name ~= nil and mod.name ~= name then
        return nil, ("plugin %q: %s says its name is %q"):format(name, path, tostring(mod.name))
    end
    if type(mod.priority or 0) ~= "number" then
        return nil, ("plugin %q: priority must be a number"):format(name)
    end
    for _, phase in ipairs(PHASES) do
        if mod[phase] ~= nil and type(mod[phase]) ~= "function" then
            return nil, ("plugin %q: %s must be a function"):format(name, phase)
        end
    end
    local def = mod.schema or { type = "object", properties = {} }
    local validator, serr = schema.compile(def)
    if not validator then
        return nil, ("plugin %q: %s"):format(name, serr)
    end
    return { mod = mod, validator = validator, path = path, name = name }
end

-- The line of the document path `path`, or of its nearest ancestor.
local function line_of(lines, path)
    while path and path ~= "" do
        if lines[path] then
            return lines[path]
        end
        local parent = path:match("^(.*)%[%d+%]$") or path:match("^(.*)%.[^.]*$")
        if not parent or parent == path then
            break
        end
        path = parent
    end
    return 0
end

-- Validate the instances of one `plugins` map. Adds { name, plugin, conf }
-- to `out` and problems to `errs`.
local function instances(map, prefix, plugins, dirs, spec, out, errs)
    if map == nil then
        return
    end
    local names = {}
    for name in pairs(map) do
        names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
        local path = prefix .. "." .. name
        local p = plugins[name]
        if p == nil then
            local loaded, err = load_plugin(name, dirs)
            p = loaded or false
            plugins[name] = p
            if not loaded then
                errs[#errs + 1] = { path = path, line = line_of(spec.lines, path), message = err }
            end
        end
        if p then
            local conf = map[name]
            if type(conf) ~= "table" then
                conf = {}
            end
            local value, verrs = p.validator:validate(conf)
            if value then
                out[#out + 1] = { name = name, plugin = p, conf = value }
            else
                for _, e in ipairs(verrs) do
                    local full = e.path ~= "" and (path .. (e.path:sub(1, 1) == "[" and "" or ".")
                        .. e.path) or path
                    errs[#errs + 1] = {
                        path = full,
                        line = line_of(spec.lines, full),
                        message = e.message,
                    }
                end
            end
        end
    end
end

-- Order a route's instances: those named in `order` first, in that order,
-- then the others by priority (higher first), then by name.
local function sort_chain(list, order, route_index, spec, errs)
    local rank = {}
    if order then
        for i, name in ipairs(order) do
            rank[name] = i
        end
        for i, name in ipairs(order) do
            local present = false
            for _, inst in ipairs(list) do
                present = present or inst.name == name
            end
            if not present then
                local path = ("routes[%d].plugin_order[%d]"):format(route_index, i - 1)
                errs[#errs + 1] = {
                    path = path,
                    line = line_of(spec.lines, ("routes[%d].plugins"):format(route_index)),
                    message = ("plugin %q is not configured on this route"):format(name),
                }
            end
        end
    end
    table.sort(list, function(a, b)
        local ra, rb = rank[a.name], rank[b.name]
        if ra or rb then
            if ra and rb then
                return ra < rb
            end
            return ra ~= nil
        end
        local pa, pb = a.plugin.mod.priority or 0, b.plugin.mod.priority or 0
        if pa ~= pb then
            return pa > pb
        end
        return a.name < b.name
    end)
end

-- Build a route's chain: per phase, the list of { fn, conf, name }.
local function build_chain(list)
    local chain = { mask = 0 }
    for _, phase in ipairs(PHASES) do
        local steps = {}
        for _, inst in ipairs(list) do
            local fn = inst.plugin.mod[phase]
            if fn then
                steps[#steps + 1] = { fn = fn, conf = inst.conf, name = inst.name }
                chain.mask = bit.bor(chain.mask, PHASE_BIT[phase])
            end
        end
        chain[phase] = steps
    end
    return chain
end

-- Check `consumers` and build their table: { list, by_name, confs } where
-- confs[consumer][plugin] is the consumer's validated settings.
local function load_consumers(spec, plugins, dirs, errs)
    local out = { list = {}, by_name = {}, confs = {}, names = {} }
    for i, c in ipairs(spec.consumers or {}) do
        local path = ("consumers[%d]"):format(i - 1)
        local username = c.username
        if type(username) ~= "string" or username == "" then
            errs[#errs + 1] = { path = path .. ".username", line = line_of(spec.lines, path),
                message = "expected a non-empty string" }
        elseif out.by_name[username] then
            errs[#errs + 1] = { path = path .. ".username",
                line = line_of(spec.lines, path .. ".username"),
                message = ("duplicate consumer %q"):format(username) }
        else
            local creds = c.credentials
            if creds ~= nil and type(creds) ~= "table" then
                errs[#errs + 1] = { path = path .. ".credentials",
                    line = line_of(spec.lines, path .. ".credentials"), message = "expected a map" }
                creds = nil
            end
            local consumer = { username = username, credentials = creds or {} }
            local list = {}
            instances(c.plugins, path .. ".plugins", plugins, dirs, spec, list, errs)
            local confs = {}
            for _, inst in ipairs(list) do
                confs[inst.name] = inst.conf
                if not out.names[inst.name] then
                    out.names[inst.name] = inst
                end
            end
            out.list[#out.list + 1] = consumer
            out.by_name[username] = consumer
            out.confs[consumer] = confs
        end
    end
    return out
end

--- Load the plugins of a config and build every route's chain.
-- spec = { file, plugin_paths, global, routes = { {name, plugins, order} },
-- lines = { [document path] = line } } (built by core/gw_lua.c).
-- Returns the phases of each route (a list of GW_LUA_* bit masks), or nil
-- and a list of { path, line, message }.
function M.configure(spec)
    if type(spec) ~= "table" then
        error("configure: spec must be a table", 2)
    end
    local dirs = {}
    for _, dir in ipairs(spec.plugin_paths or {}) do
        dirs[#dirs + 1] = dir
    end
    dirs[#dirs + 1] = rawget(_G, "MOONGATE_PLUGIN_DIR") or "plugins"
    local plugins, errs = {}, {}
    local global = {}
    instances(spec.global, "plugins", plugins, dirs, spec, global, errs)
    local consumers = load_consumers(spec, plugins, dirs, errs)
    local new_chains, phases = {}, {}
    for i, route in ipairs(spec.routes or {}) do
        local list, own = {}, {}
        instances(route.plugins, ("routes[%d].plugins"):format(i - 1), plugins, dirs, spec, list,
            errs)
        for _, inst in ipairs(list) do
            own[inst.name] = true
        end
        -- A route's own settings of a plugin replace the global ones.
        for _, inst in ipairs(global) do
            if not own[inst.name] then
                list[#list + 1] = inst
                own[inst.name] = true
            end
        end
        -- Plugins set only on consumers run (with the consumer's settings)
        -- once a plugin has identified that consumer.
        for name, inst in pairs(consumers.names) do
            if not own[name] then
                list[#list + 1] = { name = name, plugin = inst.plugin, conf = nil }
            end
        end
        sort_chain(list, route.order, i - 1, spec, errs)
        new_chains[i] = build_chain(list)
        phases[i] = new_chains[i].mask
    end
    if #errs > 0 then
        table.sort(errs, function(a, b)
            if a.line ~= b.line then
                return a.line < b.line
            end
            return a.path < b.path
        end)
        return nil, errs
    end
    chains = new_chains
    pdk._set_consumers(consumers)
    return phases
end

local EXIT = pdk._exit_sentinel

local function traceback(err)
    if err == EXIT then
        return EXIT
    end
    return debug.traceback(tostring(err), 1)
end

-- Run the steps of one phase, each with its settings: the identified
-- consumer's own, else the route's (a step with neither is skipped).
-- Returns nil, "exit", or "error", message.
local function run_steps(steps, phase, ctx)
    local body = phase == "body_filter"
    for _, step in ipairs(steps) do
        local conf = pdk._consumer_conf(ctx, step.name) or step.conf
        local ok, err = true, nil
        if body then
            pdk._body_step(ctx, step.name)
        end
        if conf then
            ok, err = xpcall(step.fn, traceback, conf, ctx)
        end
        if not ok then
            if err == EXIT then
                return "exit"
            end
            return "error", ("plugin %s failed in %s: %s"):format(step.name, phase, err)
        end
    end
    return nil
end

-- What a runner yields when it finished a phase or timer (as opposed to a
-- PDK call yielding to wait). The C core replaces it with a light userdata
-- it can recognise without a table lookup.
M.DONE = setmetatable({}, {
    __tostring = function()
        return "moongate runner: done"
    end,
})

-- The ctx table of each request, by the slot the C core gives the request
-- (made on the request's first phase, dropped by the core when it ends).
local ctxs = {}
M.ctxs = ctxs

local TIMER = 16

--- The body of the coroutines the C core keeps in a pool and runs phases
-- and timers in: each resume with (route_index, phase, slot), or (timer_id,
-- TIMER), runs it and yields DONE, what, message (see M.run). slot names
-- the request's ctx in M.ctxs.
function M.runner()
    local DONE = M.DONE
    local a, phase, slot = coroutine.yield(DONE)
    while true do
        local what, msg
        if phase == TIMER then
            what, msg = M.run_timer(a)
        else
            local ctx = ctxs[slot]
            if not ctx then
                ctx = {}
                ctxs[slot] = ctx
            end
            what, msg = M.run(a, phase, ctx)
        end
        a, phase, slot = coroutine.yield(DONE, what, msg)
    end
end

--- Run the moongate.timer `id` (inside a coroutine the C core made for
-- it). Returns nil, or "error", message.
function M.run_timer(id)
    local t = pdk._timers[id]
    if not t then
        return nil
    end
    if not t.every then
        pdk._timers[id] = nil
    end
    pdk._set_ctx({})
    local ok, err = xpcall(t.fn, traceback, unpack(t.args, 1, t.n))
    if not ok then
        return "error", "timer failed: " .. tostring(err)
    end
    return nil
end

--- Run a phase of a request (inside the coroutine the C core made for it).
-- phase is ACCESS (rewrite then access), HEADER_FILTER, BODY_FILTER (one
-- piece of the response body, passed from plugin to plugin, then to the
-- client) or LOG; ctx is the request's table shared by its plugins. Returns nil when the chain ran
-- through, "exit" after moongate.response.exit, or "error", message.
function M.run(route_index, phase, ctx)
    local chain = chains[route_index + 1]
    pdk._set_ctx(ctx)
    if phase == ACCESS then
        local what, msg = run_steps(chain.rewrite, "rewrite", ctx)
        if what then
            return what, msg
        end
        return run_steps(chain.access, "access", ctx)
    elseif phase == HEADER_FILTER then
        return run_steps(chain.header_filter, "header_filter", ctx)
    elseif phase == BODY_FILTER then
        pdk._body_begin(ctx)
        local what, msg = run_steps(chain.body_filter, "body_filter", ctx)
        if what then
            return what, msg
        end
        pdk._body_end(ctx)
        return nil
    elseif phase == LOG then
        return run_steps(chain.log, "log", ctx)
    end
    return "error", "unknown phase " .. tostring(phase)
end

return M
