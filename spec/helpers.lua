--- Helpers for the end-to-end specs.
--
-- Starts the gateway and test upstreams as child processes and talks
-- HTTP/1.1 to them over luasocket. Specs run from the repository root;
-- binaries come from $MOONGATE_BUILD (default "build").
--
-- Every process started here is tracked: `helpers.stop_all()` stops them
-- (specs call it in lazy_teardown). Each one also runs in its own process
-- group, gets SIGKILL if the spec runner dies (PR_SET_PDEATHSIG), and has a
-- watchdog that kills its whole group (gateway workers included) once the
-- spec runner is gone, so no server outlives a busted run.
--
-- Responses are tables:
--   status       number
--   reason       reason phrase
--   version      "1.1"
--   headers      lower-cased name -> value; a header that came once is a
--                string, one that came several times is a list of strings in
--                the order received (helpers.header_values() always gives a list)
--   header_list  { {name, value}, ... } as received, original case
--   body         the body (chunked framing removed); "" when opts.body_sink
--                consumed it
--   body_length  number of body bytes received
--   json         the body decoded when it is JSON, else nil
--   interim      list of 1xx responses ({status=, headers=}) that came first
--   complete     true when the body was read to its framed end
--   chunked      true when the body came chunked
--   close_delimited  true when the body ended with the connection
--   raw          the bytes of the head (status line and headers)
-- A function that reads a response returns `res` or `nil, err, partial_res`
-- (partial_res has what was read before the error, complete == false).

local bit = require "bit"
local ffi = require "ffi"
local socket = require "socket"
local lfs = require "lfs"
local json = require("cjson").new()

local C = ffi.C

local helpers = {}

helpers.build_dir = os.getenv("MOONGATE_BUILD") or "build"
helpers.gateway_bin = helpers.build_dir .. "/moongate"
helpers.upstream_bin = helpers.build_dir .. "/moongate-test-upstream"

-- Each declaration separately: busted reloads this module for every spec
-- file, and ffi.cdef refuses to declare the same function twice.
for _, decl in ipairs {
    "int fork(void);",
    "int execvp(const char *file, const char **argv);",
    "int setpgid(int pid, int pgid);",
    "int setsid(void);",
    "int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5);",
    "int open(const char *path, int flags, int mode);",
    "int dup2(int oldfd, int newfd);",
    "int close(int fd);",
    "void _exit(int status);",
    "int kill(int pid, int sig);",
    "int waitpid(int pid, int *status, int options);",
    "int getpid(void);",
    "int getppid(void);",
    "int mkdir(const char *path, int mode);",
} do
    pcall(ffi.cdef, decl)
end

local O_WRONLY, O_CREAT, O_APPEND = 1, 64, 1024
local WNOHANG = 1
local PR_SET_PDEATHSIG = 1

local SIGNALS = {
    HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10, USR2 = 12, TERM = 15, CONT = 18, STOP = 19,
}
helpers.signals = SIGNALS

local function signum(sig)
    if type(sig) == "number" then
        return sig
    end
    local n = SIGNALS[tostring(sig):upper():gsub("^SIG", "")]
    if not n then
        error("unknown signal " .. tostring(sig), 3)
    end
    return n
end

local now = socket.gettime
helpers.now = now
helpers.sleep = socket.sleep

-- Processes and temporary directories made by this instance of the module.
local procs = {}
local tmpdirs = {}

----------------------------------------------------------------------------
-- files

function helpers.read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return nil
    end
    local data = f:read("*a")
    f:close()
    return data
end

function helpers.write_file(path, data)
    local f = assert(io.open(path, "wb"))
    f:write(data)
    f:close()
    return path
end

function helpers.file_exists(path)
    return lfs.attributes(path, "mode") ~= nil
end

--- A fresh private directory under /tmp, removed by stop_all() unless
-- MOONGATE_KEEP_TMP is set.
function helpers.tmpdir()
    local name = os.tmpname()
    os.remove(name)
    if C.mkdir(name, tonumber("700", 8)) ~= 0 then
        error("cannot create directory " .. name)
    end
    tmpdirs[#tmpdirs + 1] = name
    return name
end

local function remove_tree(path)
    if lfs.attributes(path, "mode") == "directory" then
        for entry in lfs.dir(path) do
            if entry ~= "." and entry ~= ".." then
                remove_tree(path .. "/" .. entry)
            end
        end
        lfs.rmdir(path)
    else
        os.remove(path)
    end
end

----------------------------------------------------------------------------
-- JSON

helpers.json_null = json.null

local array_mt = {}

--- Mark a table as a JSON array, so an empty one encodes as [] not {}.
function helpers.array(t)
    return setmetatable(t or {}, array_mt)
end

local function is_array(t)
    if getmetatable(t) == array_mt then
        return true
    end
    local n = 0
    for _ in pairs(t) do
        n = n + 1
    end
    if n == 0 then
        return false
    end
    for i = 1, n do
        if t[i] == nil then
            return false
        end
    end
    return true
end

local function encode_scalar(v)
    -- cjson escapes "/" as "\/", which YAML 1.1 parsers may not accept.
    return (json.encode(v):gsub("\\/", "/"))
end

--- Encode a Lua value as indented JSON with sorted keys (one value per
-- line, so the gateway's file:line errors point somewhere useful).
function helpers.encode_json(v, indent)
    indent = indent or ""
    if type(v) ~= "table" then
        return encode_scalar(v)
    end
    local inner = indent .. "  "
    local parts = {}
    if is_array(v) then
        if #v == 0 then
            return "[]"
        end
        for i = 1, #v do
            parts[i] = inner .. helpers.encode_json(v[i], inner)
        end
        return "[\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "]"
    end
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = tostring(k)
    end
    if #keys == 0 then
        return "{}"
    end
    table.sort(keys)
    for i, k in ipairs(keys) do
        local value = v[k]
        if value == nil then
            value = v[tonumber(k)]
        end
        parts[i] = inner .. encode_scalar(k) .. ": " .. helpers.encode_json(value, inner)
    end
    return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

--- Decode JSON; returns the value or nil, err.
function helpers.json_decode(text)
    local ok, v = pcall(json.decode, text)
    if not ok then
        return nil, v
    end
    return v
end

local function deep_copy(v)
    if type(v) ~= "table" then
        return v
    end
    local t = {}
    for k, x in pairs(v) do
        t[k] = deep_copy(x)
    end
    return setmetatable(t, getmetatable(v))
end
helpers.deep_copy = deep_copy

----------------------------------------------------------------------------
-- processes

local function close_fds_from(first)
    for fd = first, 1023 do
        C.close(fd)
    end
end

-- fork + exec argv with stdout and stderr appended to `output` (default
-- /dev/null) and stdin from /dev/null. opts.setsid: new session (else a new
-- process group led by the child); opts.pdeathsig: signal on parent death.
local function spawn(argv, opts)
    opts = opts or {}
    local cargv = ffi.new("const char *[?]", #argv + 1)
    for i = 1, #argv do
        cargv[i - 1] = argv[i]
    end
    cargv[#argv] = nil
    local output = opts.output or "/dev/null"
    local parent = C.getpid()
    local pid = C.fork()
    if pid < 0 then
        error("fork failed, errno " .. ffi.errno())
    end
    if pid == 0 then
        if opts.setsid then
            C.setsid()
        else
            C.setpgid(0, 0)
        end
        if opts.pdeathsig then
            C.prctl(PR_SET_PDEATHSIG, opts.pdeathsig, 0, 0, 0)
            if C.getppid() ~= parent then
                C._exit(1)
            end
        end
        local null = C.open("/dev/null", 0, 0)
        local out = C.open(output, O_WRONLY + O_CREAT + O_APPEND, tonumber("644", 8))
        if null >= 0 then
            C.dup2(null, 0)
        end
        if out >= 0 then
            C.dup2(out, 1)
            C.dup2(out, 2)
        end
        close_fds_from(3)
        C.execvp(cargv[0], cargv)
        C._exit(127)
    end
    return pid
end

-- Reap pid if it has exited. Returns exited, status where status is the
-- exit code, or 128 + signal number when a signal ended it.
local function reap(pid, block)
    local st = ffi.new("int[1]")
    local r = C.waitpid(pid, st, block and 0 or WNOHANG)
    if r == 0 then
        return false
    end
    if r ~= pid then
        return true, nil -- not our child any more (already reaped)
    end
    local s = st[0]
    local sig = bit.band(s, 0x7f)
    if sig == 0 then
        return true, bit.band(bit.rshift(s, 8), 0xff)
    end
    return true, 128 + sig
end

--- Send signal `sig` (a name like "TERM" or a number) to pid; true on success.
function helpers.kill(pid, sig)
    return C.kill(pid, signum(sig)) == 0
end

local Process = {}
Process.__index = Process

--- Start argv as tracked background process `p` (an object inheriting from
-- Process): its own process group, killed with its group when the spec
-- runner goes away. Sets p.pid, p.argv, p.output_file.
local function start_process(p, argv, output)
    local pid = spawn(argv, { output = output, pdeathsig = SIGNALS.KILL })
    p.pid, p.argv, p.output_file = pid, argv, output
    -- The watchdog outlives us on purpose: when the spec runner is gone it
    -- kills the process group, workers included.
    p.watchdog = spawn({
        "/bin/sh", "-c",
        'while kill -0 "$0" 2>/dev/null; do sleep 0.5; done; kill -KILL -- "-$1" 2>/dev/null',
        tostring(C.getpid()), tostring(pid),
    }, { setsid = true })
    procs[#procs + 1] = p
    return p
end

--- Whether the process has exited; reaps it. Returns exited, status.
function Process:poll()
    if not self.exited then
        local done, status = reap(self.pid)
        if done then
            self.exited, self.status = true, status
        end
    end
    return self.exited == true, self.status
end

--- Wait up to `timeout` seconds (default 5) for the process to exit.
-- Returns exited, status.
function Process:wait(timeout)
    local deadline = now() + (timeout or 5)
    while true do
        local exited, status = self:poll()
        if exited or now() >= deadline then
            return exited, status
        end
        socket.sleep(0.02)
    end
end

function Process:kill(sig)
    if self.exited then
        return false
    end
    return C.kill(self.pid, signum(sig)) == 0
end

--- SIGTERM, wait up to `timeout` seconds (default 5), then SIGKILL; the
-- process group is killed afterwards either way, so no child is left.
-- Idempotent. Returns graceful (exited on SIGTERM in time), status.
function Process:stop(timeout)
    if not self.stopped then
        self.stopped = true
        local exited = self:poll()
        if not exited then
            C.kill(self.pid, SIGNALS.TERM)
            exited = self:wait(timeout or 5)
            self.graceful = exited
            if not exited then
                C.kill(-self.pid, SIGNALS.KILL)
                C.kill(self.pid, SIGNALS.KILL)
                local _, status = reap(self.pid, true)
                self.exited, self.status = true, status
            end
        else
            self.graceful = true
        end
        C.kill(-self.pid, SIGNALS.KILL)
        if self.watchdog then
            C.kill(self.watchdog, SIGNALS.KILL)
            reap(self.watchdog, true)
        end
    end
    return self.graceful, self.status
end

function Process:output()
    return helpers.read_file(self.output_file) or ""
end

--- Stop every process started through this module and remove temporary
-- directories (kept when MOONGATE_KEEP_TMP is set).
function helpers.stop_all()
    for i = #procs, 1, -1 do
        procs[i]:stop()
        procs[i] = nil
    end
    if not os.getenv("MOONGATE_KEEP_TMP") then
        for i = #tmpdirs, 1, -1 do
            remove_tree(tmpdirs[i])
            tmpdirs[i] = nil
        end
    end
end

-- Stop everything when this module instance is collected or the Lua state
-- closes, in case a spec forgot to.
local sentinel = newproxy(true)
getmetatable(sentinel).__gc = function()
    helpers.stop_all()
end
helpers._sentinel = sentinel

--- Run the gateway binary (or opts.bin) with `args` (a list of strings) to
-- completion. opts.env: table of environment variables to add;
-- opts.timeout (default 10 s). Returns exit code (128 + signal when killed),
-- combined stdout and stderr, and "timeout" as third value when it had to be
-- killed.
function helpers.run(args, opts)
    opts = opts or {}
    local bin = opts.bin or helpers.gateway_bin
    if not helpers.file_exists(bin) then
        error("binary " .. bin .. " not found (build it first, or set MOONGATE_BUILD)", 2)
    end
    local argv = {}
    if opts.env then
        argv[1] = "env"
        for k, v in pairs(opts.env) do
            argv[#argv + 1] = k .. "=" .. v
        end
    end
    argv[#argv + 1] = bin
    for _, a in ipairs(args) do
        argv[#argv + 1] = a
    end
    local out = os.tmpname()
    local pid = spawn(argv, { output = out, pdeathsig = SIGNALS.KILL })
    local deadline = now() + (opts.timeout or 10)
    local exited, status, timed_out
    while true do
        exited, status = reap(pid)
        if exited then
            break
        end
        if now() >= deadline then
            C.kill(-pid, SIGNALS.KILL)
            C.kill(pid, SIGNALS.KILL)
            status = select(2, reap(pid, true))
            timed_out = "timeout"
            break
        end
        socket.sleep(0.01)
    end
    local output = helpers.read_file(out) or ""
    os.remove(out)
    return status, output, timed_out
end

--- A TCP port on 127.0.0.1 that was free a moment ago.
function helpers.free_port()
    local s = assert(socket.bind("127.0.0.1", 0))
    local _, port = s:getsockname()
    s:close()
    return tonumber(port)
end

--- Wait until 127.0.0.1:port accepts a connection. `proc` (optional): give
-- up early when it exits. Returns true, or nil and a reason.
function helpers.wait_for_port(port, timeout, proc)
    local deadline = now() + (timeout or 10)
    while true do
        local s = socket.tcp()
        s:settimeout(0.5)
        local ok = s:connect("127.0.0.1", port)
        s:close()
        if ok then
            return true
        end
        if proc then
            local exited, status = proc:poll()
            if exited then
                return nil, "the process exited with status " .. tostring(status)
            end
        end
        if now() >= deadline then
            return nil, "nothing accepted connections within " .. (timeout or 10) .. " s"
        end
        socket.sleep(0.05)
    end
end

--- Call fn() until it returns a truthy value, every `step` seconds (0.05),
-- for at most `timeout` seconds (5). Returns that value, or raises an error
-- naming `what` (and the last value fn returned).
function helpers.wait_until(fn, timeout, what, step)
    local deadline = now() + (timeout or 5)
    local last
    while true do
        last = fn()
        if last then
            return last
        end
        if now() >= deadline then
            error(string.format("timed out after %.1f s waiting for %s (last: %s)", timeout or 5,
                what or "a condition", tostring(last)), 2)
        end
        socket.sleep(step or 0.05)
    end
end

--- Resident memory of a process in KiB (VmRSS), or nil when it is gone.
function helpers.rss_kb(pid)
    local status = helpers.read_file("/proc/" .. pid .. "/status")
    local kb = status and status:match("VmRSS:%s*(%d+)")
    return kb and tonumber(kb)
end

--- Live (non-zombie) child pids of `pid`, sorted.
function helpers.children(pid)
    local kids = {}
    for entry in lfs.dir("/proc") do
        if entry:match("^%d+$") then
            local stat = helpers.read_file("/proc/" .. entry .. "/stat") or ""
            local state, ppid = stat:match(".*%) (%a) (%d+)")
            if ppid and tonumber(ppid) == pid and state ~= "Z" then
                kids[#kids + 1] = tonumber(entry)
            end
        end
    end
    table.sort(kids)
    return kids
end

----------------------------------------------------------------------------
-- test upstream

local Upstream = setmetatable({}, { __index = Process })
Upstream.__index = Upstream

--- Start the test upstream. opts.name (default "upstream"), opts.port
-- (default a free one). Returns an object with .port, .name, .pid, :stop(),
-- :stats() ({requests=, connections=}), :set_health(status).
--- n bytes of the repeating pattern the test upstream's /bytes sends.
function helpers.pattern(n)
    return ("0123456789abcdef"):rep(math.ceil(n / 16)):sub(1, n)
end

--- Start a test upstream named "a" and a gateway whose config is cfg with
-- `upstreams.u` pointing at that upstream; returns the gateway, then the
-- upstream.
function helpers.start_proxy(cfg, opts)
    local up = helpers.start_upstream { name = "a" }
    cfg.upstreams = cfg.upstreams or {}
    cfg.upstreams.u = { targets = { up:address() } }
    return helpers.start_gateway(cfg, opts), up
end

--- Start a redis-server on a free loopback port (no persistence); returns
-- an object with .port, :address(), :stop().
function helpers.start_redis(opts)
    opts = opts or {}
    local port = opts.port or helpers.free_port()
    local dir = helpers.tmpdir()
    local red = setmetatable({ kind = "redis", name = "redis", port = port, dir = dir }, Upstream)
    start_process(red, {
        "redis-server", "--port", tostring(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", dir,
    }, dir .. "/output.log")
    local ok, err = helpers.wait_for_port(port, opts.timeout or 5, red)
    if not ok then
        local out = red:output()
        red:stop()
        error("redis-server on port " .. port .. " did not start: " .. err .. "\n" .. out, 2)
    end
    return red
end

--- Start socat bridging a free loopback port (plain TCP) to a TLS server on
-- 127.0.0.1:tls_port, so that a plain client (luasocket) talks TLS through
-- it. opts.servername: the SNI sent; opts.cafile: verify the server with it
-- (without it the certificate is not checked). Returns an object with
-- .port and :stop().
function helpers.start_tls_bridge(tls_port, opts)
    opts = opts or {}
    local port = helpers.free_port()
    local dir = helpers.tmpdir()
    local target = "OPENSSL:127.0.0.1:" .. tls_port
    if opts.cafile then
        target = target .. ",cafile=" .. opts.cafile
    else
        target = target .. ",verify=0"
    end
    if opts.servername then
        -- The name sent as SNI and the one the certificate must carry.
        target = target .. ",snihost=" .. opts.servername .. ",commonname=" .. opts.servername
    end
    local bridge = setmetatable({ kind = "tls-bridge", name = "socat", port = port, dir = dir },
        Upstream)
    start_process(bridge, {
        "socat", "TCP-LISTEN:" .. port .. ",bind=127.0.0.1,reuseaddr,fork", target,
    }, dir .. "/output.log")
    local ok, err = helpers.wait_for_port(port, opts.timeout or 5, bridge)
    if not ok then
        local out = bridge:output()
        bridge:stop()
        error("socat on port " .. port .. " did not start: " .. err .. "\n" .. out, 2)
    end
    return bridge
end

function helpers.start_upstream(opts)
    opts = opts or {}
    if not helpers.file_exists(helpers.upstream_bin) then
        error("test upstream binary " .. helpers.upstream_bin ..
            " not found (build it first, or set MOONGATE_BUILD)", 2)
    end
    local name = opts.name or "upstream"
    local port = opts.port or helpers.free_port()
    local dir = helpers.tmpdir()
    local up = setmetatable({ kind = "upstream", name = name, port = port, dir = dir }, Upstream)
    local argv = { helpers.upstream_bin, "--listen", "127.0.0.1:" .. port, "--name", name }
    for _, arg in ipairs(opts.args or {}) do
        argv[#argv + 1] = arg
    end
    start_process(up, argv, dir .. "/output.log")
    local ok, err = helpers.wait_for_port(port, opts.timeout or 5, up)
    if not ok then
        local out = up:output()
        up:stop()
        error("test upstream " .. name .. " on port " .. port .. " did not start: " .. err ..
            "\n" .. out, 2)
    end
    return up
end

--- The upstream's counters, read directly (not through the gateway).
function Upstream:stats()
    local res = assert(helpers.http(self.port, { path = "/stats" }))
    local stats = assert(res.json, "bad /stats answer: " .. tostring(res.body))
    return stats
end

--- Make the upstream's /health answer `status` from now on.
function Upstream:set_health(status)
    local res = assert(helpers.http(self.port, { path = "/set-health?status=" .. status }))
    assert(res.status == 200, "set-health failed")
end

function Upstream:address()
    return "127.0.0.1:" .. self.port
end

----------------------------------------------------------------------------
-- gateway

local Gateway = setmetatable({}, { __index = Process })
Gateway.__index = Gateway

local function port_of(listen)
    if type(listen) == "table" then
        listen = listen.address or listen.listen
    end
    return listen and tonumber(tostring(listen):match(":(%d+)$"))
end

-- Fill in what the helper manages unless the spec set it.
function Gateway:complete_config(cfg)
    cfg = deep_copy(cfg or {})
    if cfg.listen == nil then
        cfg.listen = { "127.0.0.1:" .. self.port }
    end
    if cfg.status == nil then
        cfg.status = { listen = "127.0.0.1:" .. self.status_port }
    elseif cfg.status == false then
        cfg.status = nil
    end
    if cfg.workers == nil then
        cfg.workers = 1
    end
    if cfg.pid_file == nil then
        cfg.pid_file = self.dir .. "/moongate.pid"
    end
    if cfg.error_log == nil then
        cfg.error_log = { path = self.dir .. "/error.log", level = "info" }
    end
    if cfg.access_log == nil then
        cfg.access_log = self.dir .. "/access.log"
    end
    return cfg
end

--- Write the config file: a Lua table (completed with the defaults and
-- written as JSON) or a YAML string written as is.
function Gateway:write_config(cfg)
    if type(cfg) == "string" then
        self.config = nil
        helpers.write_file(self.config_file, cfg)
    else
        self.config = self:complete_config(cfg)
        helpers.write_file(self.config_file, helpers.encode_json(self.config) .. "\n")
    end
end

--- Start the gateway with config table `cfg`. The helper fills in what is
-- absent: listen (a free port), status.listen (a free port; status = false
-- for none), workers = 1, pid_file, error_log (level info) and access_log in
-- a fresh temporary directory. opts.yaml: a YAML document to use verbatim
-- instead (then opts.port names the proxy port to wait for). opts.wait =
-- false: return without waiting for the port; opts.timeout: seconds to wait
-- (default 10).
-- Returns a gateway object: .port, .status_port, .dir, .pid, .config_file,
-- .config, :stop(), :kill(sig), :wait(t), :poll(), :error_log(),
-- :access_log(), :output(), :write_config(cfg), :reload(cfg),
-- :worker_pids().
function helpers.start_gateway(cfg, opts)
    opts = opts or {}
    if not helpers.file_exists(helpers.gateway_bin) then
        error("gateway binary " .. helpers.gateway_bin ..
            " not found (build it first, or set MOONGATE_BUILD)", 2)
    end
    local gw = setmetatable({ kind = "gateway" }, Gateway)
    gw.dir = helpers.tmpdir()
    if opts.yaml then
        gw.config_file = gw.dir .. "/moongate.yaml"
        gw.port, gw.status_port = opts.port, opts.status_port
        gw:write_config(opts.yaml)
    else
        gw.config_file = gw.dir .. "/moongate.json"
        cfg = cfg or {}
        gw.port = port_of(type(cfg.listen) == "table" and cfg.listen[1] or cfg.listen)
            or helpers.free_port()
        if cfg.status ~= false then
            gw.status_port = port_of(type(cfg.status) == "table" and cfg.status.listen)
                or helpers.free_port()
        end
        gw:write_config(cfg)
    end

    start_process(gw, { helpers.gateway_bin, "-c", gw.config_file }, gw.dir .. "/output.log")

    if opts.wait ~= false and gw.port then
        local ok, err = helpers.wait_for_port(gw.port, opts.timeout or 10, gw)
        if ok and gw.status_port then
            ok, err = helpers.wait_for_port(gw.status_port, opts.timeout or 10, gw)
            err = err and ("status listener: " .. err)
        end
        if not ok then
            local msg = string.format(
                "gateway did not start on 127.0.0.1:%s: %s\n--- config %s\n%s\n" ..
                "--- error log\n%s\n--- output\n%s",
                tostring(gw.port), err, gw.config_file, helpers.read_file(gw.config_file) or "",
                gw:error_log(), gw:output())
            gw:stop()
            error(msg, 2)
        end
    end
    return gw
end

function Gateway:error_log()
    local path = self.config and type(self.config.error_log) == "table" and self.config.error_log.path
        or self.dir .. "/error.log"
    return helpers.read_file(path) or ""
end

--- The access log as a list of decoded JSON lines ({} when there is no
-- file or it is off; the JSON lines of the output for stdout and stderr).
-- Raises an error on a line that is not JSON.
function Gateway:access_log()
    local target = self.config and self.config.access_log
    if type(target) ~= "string" then
        target = self.dir .. "/access.log"
    end
    local entries = {}
    local text
    if target == "off" then
        return entries
    elseif target == "stdout" or target == "stderr" then
        text = self:output():gsub("[^\n]*\n", function(line)
            return line:match("^{") and line or ""
        end)
    else
        text = helpers.read_file(target)
    end
    if not text then
        return entries
    end
    local n = 0
    for line in text:gmatch("[^\n]+") do
        n = n + 1
        local entry, err = helpers.json_decode(line)
        if type(entry) ~= "table" then
            error(string.format("access log line %d is not a JSON object (%s): %s", n,
                tostring(err), line), 2)
        end
        entries[#entries + 1] = entry
    end
    return entries
end

--- Rewrite the config (see write_config) and send SIGHUP. The reload is
-- asynchronous: poll for its effect with helpers.wait_until.
function Gateway:reload(cfg)
    self:write_config(cfg)
    return self:kill("HUP")
end

--- The master's live worker processes (its children), sorted pids.
function Gateway:worker_pids()
    return helpers.children(self.pid)
end

--- Wait until the master has `n` workers; returns their pids.
function Gateway:wait_workers(n, timeout)
    return helpers.wait_until(function()
        local pids = self:worker_pids()
        return #pids == n and pids
    end, timeout or 10, n .. " worker processes")
end

----------------------------------------------------------------------------
-- HTTP client

--- The values of header `name` in res (or in an /echo answer's "headers"
-- list of [name, value] pairs), always as a list, case-insensitive.
function helpers.header_values(res, name)
    name = name:lower()
    local out = {}
    local list = res.header_list or res.headers or {}
    for _, pair in ipairs(list) do
        if pair[1]:lower() == name then
            out[#out + 1] = pair[2]
        end
    end
    return out
end

--- The values of request header `name` as the test upstream saw them
-- (`echo` is the decoded /echo body), joined with ", " (nil when absent).
function helpers.echo_header(echo, name)
    local values = helpers.header_values({ header_list = echo.headers }, name)
    if #values == 0 then
        return nil
    end
    return table.concat(values, ", ")
end

local function header_list_has(list, name)
    name = name:lower()
    for _, pair in ipairs(list) do
        if pair[1]:lower() == name then
            return true
        end
    end
    return false
end

-- opts.headers as a list of {name, value} pairs: either already a list of
-- pairs (order kept), or a map name -> value or list of values (sorted).
local function header_pairs(headers)
    local list = {}
    if not headers then
        return list
    end
    if headers[1] ~= nil then
        for _, pair in ipairs(headers) do
            list[#list + 1] = { pair[1], pair[2] }
        end
        return list
    end
    local names = {}
    for name in pairs(headers) do
        names[#names + 1] = name
    end
    table.sort(names)
    for _, name in ipairs(names) do
        local v = headers[name]
        if type(v) == "table" then
            for _, x in ipairs(v) do
                list[#list + 1] = { name, x }
            end
        else
            list[#list + 1] = { name, v }
        end
    end
    return list
end

local function chunk(data)
    return string.format("%x\r\n", #data) .. data .. "\r\n"
end
helpers.chunk = chunk

--- The head of a request (and the body, when it is a string), as bytes.
-- opts: method ("GET"), path ("/"), version ("1.1"), host (Host header,
-- default "localhost"; false for none; a Host in opts.headers wins),
-- headers (map name -> value or list of values, or a list of {name, value}),
-- body (a string, or a function returning the next piece or nil: sent
-- chunked), chunked (send a string body chunked). Content-Length is added
-- for a string body unless the headers set Content-Length or
-- Transfer-Encoding.
function helpers.request_head(opts)
    opts = opts or {}
    local list = header_pairs(opts.headers)
    local lines = {
        string.format("%s %s HTTP/%s", opts.method or "GET", opts.path or "/", opts.version or "1.1"),
    }
    if opts.host ~= false and not header_list_has(list, "host") then
        lines[#lines + 1] = "Host: " .. (opts.host or "localhost")
    end
    for _, pair in ipairs(list) do
        lines[#lines + 1] = pair[1] .. ": " .. pair[2]
    end
    local framed = header_list_has(list, "content-length") or header_list_has(list, "transfer-encoding")
    if not framed then
        if type(opts.body) == "function" or (opts.body and opts.chunked) then
            lines[#lines + 1] = "Transfer-Encoding: chunked"
        elseif type(opts.body) == "string" then
            lines[#lines + 1] = "Content-Length: " .. #opts.body
        end
    end
    return table.concat(lines, "\r\n") .. "\r\n\r\n"
end

--- The whole request as bytes (string bodies only).
function helpers.request_string(opts)
    local head = helpers.request_head(opts)
    local body = opts.body or ""
    if opts.chunked and body ~= "" then
        return head .. chunk(body) .. "0\r\n\r\n"
    elseif opts.chunked then
        return head .. "0\r\n\r\n"
    end
    return head .. body
end

-- Read one response from `r`, an object with luasocket's receive().
local function read_response(r, opts)
    opts = opts or {}
    local res = { headers = {}, header_list = {}, interim = {}, body = "", body_length = 0,
                  complete = false }
    local head = {}
    while true do
        local line, err = r:receive("*l")
        if not line then
            return nil, "reading the status line: " .. tostring(err), res
        end
        head[#head + 1] = line
        local version, status, reason = line:match("^HTTP/(%d%.%d) (%d%d%d) ?(.*)$")
        if not version then
            return nil, "bad status line: " .. line, res
        end
        res.version, res.status, res.reason = version, tonumber(status), reason
        res.headers, res.header_list = {}, {}
        while true do
            line, err = r:receive("*l")
            if not line then
                return nil, "reading headers: " .. tostring(err), res
            end
            head[#head + 1] = line
            line = line:gsub("\r$", "")
            if line == "" then
                break
            end
            local name, value = line:match("^([^:]+):[ \t]*(.-)[ \t]*$")
            if not name then
                return nil, "bad header line: " .. line, res
            end
            res.header_list[#res.header_list + 1] = { name, value }
            local key = name:lower()
            local prev = res.headers[key]
            if prev == nil then
                res.headers[key] = value
            elseif type(prev) == "table" then
                prev[#prev + 1] = value
            else
                res.headers[key] = { prev, value }
            end
        end
        if res.status >= 200 or res.status == 101 or opts.interim then
            break
        end
        res.interim[#res.interim + 1] = { status = res.status, headers = res.headers,
                                          header_list = res.header_list }
    end
    res.raw = table.concat(head, "\n")

    local pieces = {}
    local sink = opts.body_sink or function(data)
        pieces[#pieces + 1] = data
    end
    local function deliver(data)
        if data and #data > 0 then
            res.body_length = res.body_length + #data
            sink(data)
        end
    end
    local function finish(ok, err)
        res.body = table.concat(pieces)
        res.complete = ok
        if ok then
            local ctype = helpers.header_values(res, "content-type")[1] or ""
            if ctype:find("json", 1, true) then
                res.json = helpers.json_decode(res.body)
            end
            return res
        end
        return nil, err, res
    end
    -- Read exactly n bytes into the body.
    local function read_exact(n)
        while n > 0 do
            local want = n < 65536 and n or 65536
            local data, err, partial = r:receive(want)
            if not data then
                deliver(partial)
                return nil, err
            end
            deliver(data)
            n = n - want
        end
        return true
    end

    local method = opts.method and opts.method:upper()
    if opts.head or method == "HEAD" or res.status == 204 or res.status == 304 or res.status < 200 then
        return finish(true)
    end
    local te = table.concat(helpers.header_values(res, "transfer-encoding"), ","):lower()
    if te:find("chunked", 1, true) then
        res.chunked = true
        while true do
            local line, err = r:receive("*l")
            if not line then
                return finish(false, "reading a chunk size: " .. tostring(err))
            end
            local size = tonumber(line:match("^%s*(%x+)") or "", 16)
            if not size then
                return finish(false, "bad chunk size line: " .. line)
            end
            if size == 0 then
                repeat
                    line, err = r:receive("*l")
                    if not line then
                        return finish(false, "reading trailers: " .. tostring(err))
                    end
                until line:gsub("\r$", "") == ""
                return finish(true)
            end
            local ok, rerr = read_exact(size)
            if not ok then
                return finish(false, "reading a chunk: " .. tostring(rerr))
            end
            line, err = r:receive("*l")
            if line ~= "" then
                return finish(false, "missing CRLF after a chunk: " .. tostring(line or err))
            end
        end
    end
    local cl = helpers.header_values(res, "content-length")[1]
    if cl then
        local n = tonumber(cl)
        if not n then
            return finish(false, "bad Content-Length: " .. cl)
        end
        local ok, err = read_exact(n)
        if not ok then
            return finish(false, "reading the body: " .. tostring(err))
        end
        return finish(true)
    end
    res.close_delimited = true
    while true do
        local data, err, partial = r:receive(65536)
        deliver(data or partial)
        if err == "closed" then
            return finish(true)
        elseif err then
            return finish(false, "reading a body delimited by close: " .. err)
        end
    end
end

-- A string posing as a socket for read_response.
local StringReader = {}
StringReader.__index = StringReader

function StringReader:receive(pattern)
    local data, pos = self.data, self.pos
    if pattern == "*l" then
        local nl = data:find("\n", pos, true)
        if not nl then
            self.pos = #data + 1
            return nil, "closed", data:sub(pos)
        end
        self.pos = nl + 1
        return (data:sub(pos, nl - 1):gsub("\r$", ""))
    elseif pattern == "*a" then
        self.pos = #data + 1
        return data:sub(pos)
    end
    if #data - pos + 1 < pattern then
        self.pos = #data + 1
        return nil, "closed", data:sub(pos)
    end
    self.pos = pos + pattern
    return data:sub(pos, pos + pattern - 1)
end

--- Parse the responses in `data` (e.g. what helpers.raw() returned), in
-- order. opts.head: they answer HEAD requests. Returns the list of complete
-- responses, then the incomplete last one or nil, then the error that
-- stopped parsing or nil when all bytes formed complete responses.
function helpers.parse_responses(data, opts)
    local r = setmetatable({ data = data, pos = 1 }, StringReader)
    local list = {}
    while r.pos <= #data do
        local res, err, partial = read_response(r, opts)
        if not res then
            return list, partial, err
        end
        list[#list + 1] = res
    end
    return list
end

--- Parse the first response in `data`. Returns res, or nil, err, partial.
function helpers.parse_response(data, opts)
    local r = setmetatable({ data = data, pos = 1 }, StringReader)
    return read_response(r, opts)
end

local Client = {}
Client.__index = Client

--- Open a keep-alive connection to 127.0.0.1:port. opts.timeout: seconds
-- for each socket operation (default 10). Returns a client or nil, err.
function helpers.connect(port, opts)
    opts = opts or {}
    local s = socket.tcp()
    s:settimeout(opts.timeout or 10)
    local ok, err = s:connect(opts.address or "127.0.0.1", port)
    if not ok then
        s:close()
        return nil, "connect to port " .. tostring(port) .. ": " .. tostring(err)
    end
    s:setoption("tcp-nodelay", true)
    return setmetatable({ sock = s, port = port, timeout = opts.timeout or 10 }, Client)
end

function Client:settimeout(t)
    self.timeout = t
    self.sock:settimeout(t)
end

--- Send raw bytes. Returns true or nil, err.
function Client:send(data)
    local ok, err = self.sock:send(data)
    if not ok then
        return nil, err
    end
    return true
end

--- Send a request (see helpers.request_head for opts). A function body is
-- streamed chunk by chunk. Returns true or nil, err.
function Client:send_request(opts)
    opts = opts or {}
    local ok, err = self:send(helpers.request_head(opts))
    if not ok then
        return nil, err
    end
    local body = opts.body
    if type(body) == "function" then
        for piece in body do
            if #piece > 0 then
                ok, err = self:send(chunk(piece))
                if not ok then
                    return nil, err
                end
            end
        end
        return self:send("0\r\n\r\n")
    elseif body and opts.chunked then
        return self:send((#body > 0 and chunk(body) or "") .. "0\r\n\r\n")
    elseif body then
        return self:send(body)
    end
    return true
end

--- Read one response. opts.head (or opts.method "HEAD"): no body;
-- opts.interim: return a 1xx response instead of skipping it;
-- opts.body_sink: function receiving body pieces instead of storing them.
function Client:read_response(opts)
    return read_response(self.sock, opts)
end

--- Send a request and read its response. Returns res or nil, err, partial.
function Client:request(opts)
    opts = opts or {}
    local ok, err = self:send_request(opts)
    local res, rerr, partial = self:read_response(opts)
    if not res and not ok then
        return nil, "sending the request: " .. tostring(err) .. "; then " .. tostring(rerr), partial
    end
    return res, rerr, partial
end

--- Whether the server closes the connection within `timeout` seconds
-- (default 2). Returns closed, then whatever bytes arrived first.
function Client:closed(timeout)
    self.sock:settimeout(timeout or 2)
    local data, err, partial = self.sock:receive("*a")
    self.sock:settimeout(self.timeout)
    if data then
        return true, data
    end
    if err == "timeout" then
        return false, partial
    end
    return true, partial -- reset or another error: the connection is gone
end

function Client:close()
    self.sock:close()
end

--- One request on a fresh connection (closed afterwards). opts: see
-- helpers.request_head and Client:read_response; opts.timeout (default 10 s
-- per socket operation). Returns res, or nil, err, partial.
function helpers.http(port, opts)
    opts = opts or {}
    local c, err = helpers.connect(port, opts)
    if not c then
        return nil, err
    end
    local res, rerr, partial = c:request(opts)
    c:close()
    return res, rerr, partial
end

--- Send `bytes` on a fresh connection and collect what the server sends
-- until it closes the connection or `opts.timeout` seconds (default 2) pass.
-- opts.until: function(data_so_far) returning true to stop early.
-- Returns data, closed (true when the server closed or reset the
-- connection), elapsed seconds.
function helpers.raw(port, bytes, opts)
    opts = opts or {}
    local timeout = opts.timeout or 2
    local start = now()
    local s = socket.tcp()
    s:settimeout(timeout)
    local ok, err = s:connect("127.0.0.1", port)
    if not ok then
        s:close()
        error("raw: connect to port " .. tostring(port) .. ": " .. tostring(err), 2)
    end
    s:setoption("tcp-nodelay", true)
    s:send(bytes)
    local pieces, closed = {}, false
    local stop = opts["until"]
    while true do
        local remaining = start + timeout - now()
        if remaining <= 0 then
            break
        end
        s:settimeout(math.min(remaining, 0.05))
        local data, rerr, partial = s:receive(65536)
        local got = data or partial
        if got and #got > 0 then
            pieces[#pieces + 1] = got
        end
        if rerr and rerr ~= "timeout" then
            closed = true
            break
        end
        if stop and stop(table.concat(pieces)) then
            break
        end
    end
    s:close()
    return table.concat(pieces), closed, now() - start
end

----------------------------------------------------------------------------
-- Prometheus text

--- Parse Prometheus text exposition into a list of
-- { name =, labels = { k = v }, value = number }.
function helpers.parse_metrics(text)
    local samples = {}
    for line in text:gmatch("[^\n]+") do
        if not line:match("^%s*#") and line:match("%S") then
            local name, rest = line:match("^([%w_:]+)(.*)$")
            local labels = {}
            local body, after = rest:match("^{(.-)}%s*(.*)$")
            if body then
                for k, v in body:gmatch('([%w_]+)%s*=%s*"(.-)"') do
                    labels[k] = v
                end
                rest = after
            end
            local value = tonumber((rest:match("^%s*(%S+)")))
            if name and value then
                samples[#samples + 1] = { name = name, labels = labels, value = value }
            end
        end
    end
    return samples
end

--- Sum of the samples of metric `name` whose labels include all of
-- `labels` (nil: any); nil when no sample matches.
function helpers.metric_value(text, name, labels)
    local sum
    for _, s in ipairs(helpers.parse_metrics(text)) do
        if s.name == name then
            local match = true
            for k, v in pairs(labels or {}) do
                if s.labels[k] ~= tostring(v) then
                    match = false
                    break
                end
            end
            if match then
                sum = (sum or 0) + s.value
            end
        end
    end
    return sum
end

return helpers
