#!/usr/bin/env bash
# Peer benchmark: Moongate, nginx and HAProxy as reverse proxies, each with one
# worker, in front of the same nginx upstream on loopback. It prints figures
# and never fails on a timing; it exits non-zero only when it cannot run at
# all (wrk or nginx missing, or the upstream does not start).
#
# Usage: tests/bench/run.sh BUILD_DIR        (make bench: tests/bench/run.sh build)
#
# Environment:
#   DURATION     seconds of each measured wrk run (default 10)
#   WARMUP       seconds of the unmeasured wrk run before it (default 2)
#   CONNECTIONS  wrk connections (default 64; one wrk thread)
#   IDLE_CONNS   idle keep-alive connections for the memory figure (default 5000)
#   KEEP_TMP=1   keep the temp dir (configs, logs, raw wrk output) after the run
#
# Figures, per target (see docs/benchmarks.md):
#   req/s, p50, p99   from `wrk -t1 -cCONNECTIONS -dDURATION --latency`
#   CPU us/req        user+sys CPU of the target's processes (master and
#                     workers, from /proc/PID/stat) over the wrk run, divided
#                     by the requests wrk completed
#   startup           exec of the proxy to its first proxied 200 (polled
#                     every ~2 ms)
#   idle memory       worker VmRSS growth per idle keep-alive connection
#                     (Moongate and nginx)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
IDLE_CONNS=${IDLE_CONNS:-5000}
KEEP_TMP=${KEEP_TMP:-0}
CLK_TCK=$(getconf CLK_TCK)
READY_TIMEOUT=5 # seconds a proxy gets to serve its first proxied request

WORK=""           # temp dir everything runs in
STARTED_PIDS=()   # processes this script started; stopped on exit
IDLE_HELPER=""    # compiled tests/bench/idle_conns.c, empty when unavailable
UPSTREAM_PORT=""
LAST_CODE=000     # last HTTP status seen by wait_ready
PAUSE_FD=""       # FIFO that pause() waits on
declare -A USED_PORTS=()
# Results, keyed by target name.
declare -A RPS=() P50=() P99=() CPU_US=() ERRORS=() STARTUP_MS=() IDLE=() SKIPPED=()
TARGETS=(upstream moongate nginx haproxy)

say() { printf '%s\n' "$*"; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------

# Prints PID and all its descendants, one per line, from /proc/*/stat.
proc_tree() {
    local root=$1 f line pid rest ppid
    local -A kids=()
    for f in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$f" || continue
        pid=${line%% *}
        rest=${line##*) }    # after "pid (comm) ": state ppid ...
        read -r _ ppid _ <<<"$rest"
        kids[$ppid]+=" $pid"
    done
    local queue=("$root") i=0
    [[ -d /proc/$root ]] || return 0
    while ((i < ${#queue[@]})); do
        pid=${queue[i]}
        i=$((i + 1))
        echo "$pid"
        # shellcheck disable=SC2206 # word splitting of the child list is wanted
        [[ -n ${kids[$pid]:-} ]] && queue+=(${kids[$pid]})
    done
    return 0
}

# Prints the worker PIDs of the process tree at ROOT: its descendants, or ROOT
# itself when it has none (a single-process server such as HAProxy).
workers_of() {
    local root=$1 pids
    mapfile -t pids < <(proc_tree "$root")
    if ((${#pids[@]} > 1)); then
        printf '%s\n' "${pids[@]:1}"
    else
        printf '%s\n' "${pids[@]}"
    fi
}

# Prints the user+sys CPU of ROOT and its descendants, in clock ticks
# (fields 14 and 15 of /proc/PID/stat).
tree_cpu_ticks() {
    local root=$1 pid line rest total=0
    local -a f
    while read -r pid; do
        read -r line 2>/dev/null <"/proc/$pid/stat" || continue
        rest=${line##*) }
        read -ra f <<<"$rest"  # f[0] is field 3 (state): utime is f[11], stime f[12]
        total=$((total + f[11] + f[12]))
    done < <(proc_tree "$root")
    echo "$total"
}

# Prints the summed VmRSS, in kB, of the given PIDs.
rss_kb() {
    local pid kb total=0
    for pid in "$@"; do
        kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

# Stops the process tree at PID: TERM, up to 3 s, then KILL.
stop_tree() {
    local root=$1 pids i
    mapfile -t pids < <(proc_tree "$root")
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do
        kill -0 "${pids[@]}" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait "$root" 2>/dev/null || true
}

cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        stop_tree "${STARTED_PIDS[i]}"
    done
    if [[ -n $WORK ]]; then
        if [[ $KEEP_TMP == 1 ]]; then
            say "kept: $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}

# ---------------------------------------------------------------------------
# Ports and configs
# ---------------------------------------------------------------------------

# True when PORT appears as a local or remote TCP port in /proc/net/tcp{,6}.
port_in_use() {
    local hex
    hex=$(printf ':%04X ' "$1")
    grep -qi -- "$hex" /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# Sets PORT to a free loopback port below the ephemeral range, not handed
# out before in this run.
pick_port() {
    local p i
    for ((i = 0; i < 500; i++)); do
        p=$((20000 + RANDOM % 12000))
        [[ -n ${USED_PORTS[$p]:-} ]] && continue
        port_in_use "$p" && continue
        USED_PORTS[$p]=1
        PORT=$p
        return 0
    done
    die "no free port found"
}

# Writes TEMPLATE to OUT with @DIR@, @PORT@ and @UPSTREAM_PORT@ filled in.
render() {
    local template=$1 out=$2 dir=$3 port=$4
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|${UPSTREAM_PORT:-0}|g" \
        "$BENCH_DIR/$template" >"$out"
}

# ---------------------------------------------------------------------------
# Starting a server and timing its startup
# ---------------------------------------------------------------------------

# Microseconds since the epoch, without forking (bash 5 EPOCHREALTIME).
now_us() { NOW_US=${EPOCHREALTIME//[!0-9]/}; }

# start_server DIR CMD...: starts CMD in the background from DIR, with its
# output in DIR/stdout.log. Sets SERVER_PID and START_US (just before exec).
start_server() {
    local dir=$1
    shift
    now_us
    START_US=$NOW_US
    (cd "$dir" && exec "$@") >"$dir/stdout.log" 2>&1 &
    SERVER_PID=$!
    STARTED_PIDS+=("$SERVER_PID")
}

# Prints the PID serving for a started server: SERVER_PID while it lives,
# else the PID in PIDFILE (a server that put itself in the background).
server_root() {
    local pidfile=$1 pid
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        echo "$SERVER_PID"
        return 0
    fi
    pid=$(cat "$pidfile" 2>/dev/null || true)
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        echo "$pid"
        return 0
    fi
    return 1
}

# probe PORT: one "GET / HTTP/1.1" (Connection: close) to 127.0.0.1:PORT
# through bash's /dev/tcp, in this shell (no fork, ~0.1 ms); sets PROBE_CODE
# to the response's status code, or 000 when there is no answer.
probe() {
    local fd code="" _w
    if { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
        { printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&"$fd"; } 2>/dev/null || true
        read -r -t 1 _w code _w <&"$fd" 2>/dev/null || true
        exec {fd}>&-
    fi
    PROBE_CODE=${code:-000}
}

# pause: waits ~2 ms without forking (a read timeout on a FIFO nobody writes).
pause() { read -r -t 0.002 -u "$PAUSE_FD" _ || true; }

# wait_ready PORT PIDFILE: probes the proxied path every ~2 ms until it
# answers 200, for at most READY_TIMEOUT s. Sets READY_MS to the time since
# START_US. Fails when the server exits or the time runs out.
wait_ready() {
    local port=$1 pidfile=$2 n=0 deadline
    deadline=$((START_US + READY_TIMEOUT * 1000000))
    while :; do
        probe "$port"
        now_us
        LAST_CODE=$PROBE_CODE
        if [[ $PROBE_CODE == 200 ]]; then
            READY_MS=$(awk -v d=$((NOW_US - START_US)) 'BEGIN { printf "%.1f", d / 1e3 }')
            return 0
        fi
        ((NOW_US < deadline)) || return 1
        # Every ~50 polls, check that the server still runs (this forks).
        if ((++n % 50 == 0)) && ! server_root "$pidfile" >/dev/null; then
            return 1
        fi
        pause
    done
}

# Prints the last lines of a server's logs, indented.
show_logs() {
    local dir=$1 f
    for f in "$dir/error.log" "$dir/stdout.log"; do
        [[ -s $f ]] || continue
        say "    --- tail of $f"
        tail -n 15 "$f" | sed 's/^/    /'
    done
}

# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------

# measure_load NAME PORT ROOT: warm-up, then the measured wrk run; records
# req/s, p50, p99, errors and the CPU per request of ROOT's process tree.
measure_load() {
    local name=$1 port=$2 root=$3 url out cpu0 cpu1 parsed
    url="http://127.0.0.1:$port/"
    say "-- $name: warm-up ${WARMUP}s, then wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency $url"
    wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" "$url" >"$WORK/wrk-$name-warmup.txt" 2>&1 || true
    out="$WORK/wrk-$name.txt"
    cpu0=$(tree_cpu_ticks "$root")
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" >"$out" 2>&1 || true
    cpu1=$(tree_cpu_ticks "$root")

    # Latencies are printed by wrk as e.g. 812.00us, 1.20ms or 1.05s: in ms here.
    parsed=$(awk -v ticks=$((cpu1 - cpu0)) -v hz="$CLK_TCK" '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /m$/) return v * 60000
            if (v ~ /s$/) return v * 1000
            return v + 0
        }
        $1 == "50%" { p50 = ms($2) }
        $1 == "99%" { p99 = ms($2) }
        / requests in / { n = $1 }
        $1 == "Requests/sec:" { rps = $2 }
        /Non-2xx or 3xx responses:/ { err += $NF }
        /Socket errors:/ { gsub(",", ""); err += $4 + $6 + $8 + $10 }
        END {
            if (n + 0 == 0) { print "fail"; exit }
            printf "%.0f %.3f %.3f %.1f %d\n", rps, p50, p99, ticks * 1e6 / hz / n, err
        }' "$out")
    if [[ $parsed == fail ]]; then
        SKIPPED[$name]="wrk completed no request (see below)"
        sed 's/^/    /' "$out"
        return 0
    fi
    read -r "RPS[$name]" "P50[$name]" "P99[$name]" "CPU_US[$name]" "ERRORS[$name]" <<<"$parsed"
    say "   $name: ${RPS[$name]} req/s, p50 ${P50[$name]} ms, p99 ${P99[$name]} ms, ${CPU_US[$name]} us CPU/req, $((cpu1 - cpu0)) ticks"
}

# measure_idle NAME PORT ROOT: opens IDLE_CONNS keep-alive connections, one
# complete GET and response on each, leaves them idle, and records the growth
# of the workers' VmRSS divided by the number of connections.
measure_idle() {
    local name=$1 port=$2 root=$3 line before after still wfd workers fifo out helper i
    if [[ -z $IDLE_HELPER ]]; then
        IDLE[$name]="not measured: no C compiler for tests/bench/idle_conns.c"
        return 0
    fi
    if (($(ulimit -n) < IDLE_CONNS + 256)); then
        IDLE[$name]="not measured: ulimit -n is $(ulimit -n), $IDLE_CONNS connections need more"
        return 0
    fi
    mapfile -t workers < <(workers_of "$root")
    before=$(rss_kb "${workers[@]}")
    say "-- $name: $IDLE_CONNS idle keep-alive connections (worker pid ${workers[*]})"
    # The helper holds the connections until its standard input (a FIFO) closes.
    fifo="$WORK/idle-$name.in"
    out="$WORK/idle-$name.out"
    mkfifo "$fifo"
    "$IDLE_HELPER" 127.0.0.1 "$port" "$IDLE_CONNS" <"$fifo" >"$out" 2>&1 &
    helper=$!
    STARTED_PIDS+=("$helper")
    exec {wfd}>"$fifo"
    for ((i = 0; i < 1200; i++)); do
        grep -q '^open \|^error' "$out" && break
        kill -0 "$helper" 2>/dev/null || break
        sleep 0.05
    done
    line=$(head -n1 "$out")
    if [[ $line != "open $IDLE_CONNS" ]]; then
        IDLE[$name]="not measured: helper said '${line:-nothing}'"
        exec {wfd}>&-
        stop_tree "$helper"
        say "   $name: ${IDLE[$name]}"
        return 0
    fi
    sleep 0.5 # let the workers finish any deferred work
    after=$(rss_kb "${workers[@]}")
    exec {wfd}>&-
    wait "$helper" 2>/dev/null || true
    # The helper's last line, "still_open M": connections the proxy kept open.
    still=$(awk '$1 == "still_open" { print $2 }' "$out")
    IDLE[$name]=$(awk -v b="$before" -v a="$after" -v n="$IDLE_CONNS" -v s="${still:-?}" 'BEGIN {
        printf "%.0f B/conn (worker RSS %.1f MB -> %.1f MB; %s of %d still open at the end)",
            (a - b) * 1024 / n, b / 1024, a / 1024, s, n }')
    say "   $name: ${IDLE[$name]}"
}

# bench_proxy NAME DIR PORT PIDFILE CMD...: starts the proxy, times its
# startup, measures load (and idle memory for Moongate and nginx), stops it.
bench_proxy() {
    local name=$1 dir=$2 port=$3 pidfile=$4 root
    shift 4
    say "-- $name: starting on 127.0.0.1:$port"
    start_server "$dir" "$@"
    LAST_CODE=000
    if ! wait_ready "$port" "$pidfile"; then
        if server_root "$pidfile" >/dev/null; then
            SKIPPED[$name]="did not serve a proxied 200 within ${READY_TIMEOUT}s (last HTTP status: $LAST_CODE)"
        else
            SKIPPED[$name]="exited before serving a proxied 200 (last HTTP status: $LAST_CODE)"
        fi
        say "   $name: skipped: ${SKIPPED[$name]}"
        show_logs "$dir"
        root=$(server_root "$pidfile" || true)
        [[ -n $root && $root != "$SERVER_PID" ]] && STARTED_PIDS+=("$root")
        stop_tree "${root:-$SERVER_PID}"
        return 0
    fi
    root=$(server_root "$pidfile")
    [[ $root != "$SERVER_PID" ]] && STARTED_PIDS+=("$root")
    STARTUP_MS[$name]=$READY_MS
    say "   $name: first proxied 200 after ${READY_MS} ms (pid $root)"
    measure_load "$name" "$port" "$root"
    case $name in
    moongate | nginx) measure_idle "$name" "$port" "$root" ;;
    esac
    stop_tree "$root"
    [[ -s $dir/error.log ]] && { say "   $name: its error log is not empty:"; show_logs "$dir"; }
    return 0
}

# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

# ratio A B: A/B with two decimals, or n/a.
ratio() {
    awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2fx", a / b }'
}

# clean NAME: true when NAME was measured and wrk saw no error.
clean() { [[ -n ${RPS[$1]:-} && ${ERRORS[$1]:-1} == 0 ]]; }

# unclean_reason NAME: why NAME has no ratio ("NAME skipped; " or "NAME had
# errors; "), or nothing when it is clean.
unclean_reason() {
    if [[ -z ${RPS[$1]:-} ]]; then
        printf '%s skipped; ' "$1"
    elif ! clean "$1"; then
        printf '%s had errors; ' "$1"
    fi
}

report() {
    local t reason
    say ""
    say "== Results: 1 worker each, wrk -t1 -c$CONNECTIONS -d${DURATION}s, 13-byte body, $(nproc) cores shared by wrk, upstream and proxy"
    printf '%-10s %10s %9s %9s %12s %8s\n' target "req/s" "p50 ms" "p99 ms" "CPU us/req" errors
    for t in "${TARGETS[@]}"; do
        if [[ -n ${RPS[$t]:-} ]]; then
            printf '%-10s %10s %9s %9s %12s %8s\n' "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" "${CPU_US[$t]}" "${ERRORS[$t]}"
        else
            printf '%-10s %s\n' "$t" "skipped: ${SKIPPED[$t]:-not run}"
        fi
    done
    say "(upstream = nginx queried directly; its CPU column is the upstream's own CPU)"
    for t in "${TARGETS[@]}"; do
        if [[ -n ${ERRORS[$t]:-} && ${ERRORS[$t]} != 0 ]]; then
            say "note: $t had ${ERRORS[$t]} non-2xx responses or socket errors: its row is not a clean proxied result (see wrk-$t.txt with KEEP_TMP=1)"
        fi
    done
    say "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    say ""
    say "Ratios (CPU/req: lower is better; req/s: higher is better):"
    for t in nginx haproxy; do
        if clean moongate && clean "$t"; then
            say "  moongate / $t: CPU/req $(ratio "${CPU_US[moongate]}" "${CPU_US[$t]}"), req/s $(ratio "${RPS[moongate]}" "${RPS[$t]}")"
        else
            reason="$(unclean_reason moongate)$(unclean_reason "$t")"
            say "  moongate / $t: n/a (${reason%; })"
        fi
    done
    if clean haproxy && clean nginx; then
        say "  haproxy / nginx (reference): CPU/req $(ratio "${CPU_US[haproxy]}" "${CPU_US[nginx]}"), req/s $(ratio "${RPS[haproxy]}" "${RPS[nginx]}")"
    fi
    say ""
    say "Startup (exec to first proxied 200, polled every ~2 ms):"
    for t in moongate nginx haproxy; do
        if [[ -n ${STARTUP_MS[$t]:-} ]]; then
            say "  $(printf '%-9s' "$t") ${STARTUP_MS[$t]} ms"
        else
            say "  $(printf '%-9s' "$t") n/a${SKIPPED[$t]:+ (${SKIPPED[$t]})}"
        fi
    done
    say ""
    say "Idle keep-alive memory ($IDLE_CONNS connections, one GET each, worker VmRSS delta / connections):"
    for t in moongate nginx; do
        say "  $(printf '%-9s' "$t") ${IDLE[$t]:-n/a${SKIPPED[$t]:+ (${SKIPPED[$t]})}}"
    done
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

main() {
    [[ $# -eq 1 ]] || die "usage: $0 BUILD_DIR"
    local build_dir moongate_bin dir nginx_bin
    build_dir=$(cd "$1" 2>/dev/null && pwd || echo "$1")
    moongate_bin="$build_dir/moongate"

    command -v wrk >/dev/null || die "wrk not found (scripts/install-deps.sh bench)"
    nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x $nginx_bin ]] || die "nginx not found: it is the upstream (scripts/install-deps.sh bench)"
    [[ $DURATION =~ ^[0-9]+$ && $WARMUP =~ ^[0-9]+$ ]] || die "DURATION and WARMUP are whole seconds"

    # Room for IDLE_CONNS connections on both ends (helper and proxy inherit it).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/moongate-bench.XXXXXX")
    cd "$WORK"
    mkfifo "$WORK/pause.fifo"
    exec {PAUSE_FD}<>"$WORK/pause.fifo"

    say "== Moongate peer benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    say "machine: $(nproc) cores, $(uname -sr); $("$nginx_bin" -v 2>&1); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
    say "work dir: $WORK"
    say "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on the machine skew every figure)"

    if command -v cc >/dev/null && cc -O2 -o "$WORK/idle_conns" "$BENCH_DIR/idle_conns.c" 2>"$WORK/cc.log"; then
        IDLE_HELPER="$WORK/idle_conns"
    else
        say "note: could not compile tests/bench/idle_conns.c; idle memory is not measured"
    fi

    # The upstream: nginx, one worker, 13-byte body. Also the baseline row.
    dir="$WORK/upstream"
    mkdir -p "$dir"
    pick_port
    UPSTREAM_PORT=$PORT
    render upstream.nginx.conf "$dir/nginx.conf" "$dir" "$UPSTREAM_PORT"
    say "-- upstream: nginx on 127.0.0.1:$UPSTREAM_PORT"
    start_server "$dir" "$nginx_bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    if ! wait_ready "$UPSTREAM_PORT" "$dir/nginx.pid"; then
        show_logs "$dir"
        die "the upstream nginx did not start"
    fi
    measure_load upstream "$UPSTREAM_PORT" "$SERVER_PID"

    # Moongate.
    if [[ -x $moongate_bin ]]; then
        dir="$WORK/moongate"
        mkdir -p "$dir"
        pick_port
        render moongate.yaml "$dir/moongate.yaml" "$dir" "$PORT"
        bench_proxy moongate "$dir" "$PORT" "$dir/moongate.pid" "$moongate_bin" -c "$dir/moongate.yaml"
    else
        SKIPPED[moongate]="$moongate_bin not found (build it first: make build)"
        say "-- moongate: skipped: ${SKIPPED[moongate]}"
    fi

    # nginx as a proxy.
    dir="$WORK/nginx"
    mkdir -p "$dir"
    pick_port
    render proxy.nginx.conf "$dir/nginx.conf" "$dir" "$PORT"
    bench_proxy nginx "$dir" "$PORT" "$dir/nginx.pid" "$nginx_bin" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"

    # HAProxy.
    if command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]]; then
        dir="$WORK/haproxy"
        mkdir -p "$dir"
        pick_port
        render haproxy.cfg "$dir/haproxy.cfg" "$dir" "$PORT"
        bench_proxy haproxy "$dir" "$PORT" "$dir/haproxy.pid" \
            "$(command -v haproxy || echo /usr/sbin/haproxy)" -db -f "$dir/haproxy.cfg"
    else
        SKIPPED[haproxy]="haproxy not found"
        say "-- haproxy: skipped: ${SKIPPED[haproxy]}"
    fi

    report
}

main "$@"
