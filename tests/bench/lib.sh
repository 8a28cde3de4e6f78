# shellcheck shell=bash
# shellcheck disable=SC2034 # globals set here are read by the scripts that source it
# Helpers shared by the benchmark scripts (run.sh, lua.sh): process trees
# and their CPU time, free ports, config templates, starting a server and
# timing its startup, the wrk load run and its figures. Sourced, not run.
#
# Environment read here (the scripts document it in their usage):
#   DURATION, WARMUP, CONNECTIONS, KEEP_TMP

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
KEEP_TMP=${KEEP_TMP:-0}
CLK_TCK=$(getconf CLK_TCK)
READY_TIMEOUT=5 # seconds a proxy gets to serve its first proxied request

WORK=""           # temp dir everything runs in
STARTED_PIDS=()   # processes this script started; stopped on exit
UPSTREAM_PORT=""
UPSTREAM_ROOT=""  # PID of the upstream nginx
PROXY_ROOT=""     # set by launch_proxy
PORT=""           # set by pick_port
LAST_CODE=000     # last HTTP status seen by wait_ready
PAUSE_FD=""       # FIFO that pause() waits on
NGINX_BIN=""      # set by bench_setup
REQ_HEADERS=()    # extra request header lines ("Name: value") sent by the
                  # readiness probe and by wrk (-H); empty for plain proxying
PROBE_HEADERS=""  # REQ_HEADERS as CRLF-terminated lines, set by wait_ready
declare -A USED_PORTS=()
# Results, keyed by target name.
# CPU_US is user+sys CPU per request, USER_US its user part.
declare -A RPS=() P50=() P99=() CPU_US=() USER_US=() ERRORS=() STARTUP_MS=() SKIPPED=()

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

# Prints the user and the sys CPU of ROOT and its descendants, in clock
# ticks (fields 14 and 15 of /proc/PID/stat): "UTIME STIME".
tree_cpu_ticks() {
    local root=$1 pid line rest user=0 sys=0
    local -a f
    while read -r pid; do
        read -r line 2>/dev/null <"/proc/$pid/stat" || continue
        rest=${line##*) }
        read -ra f <<<"$rest"  # f[0] is field 3 (state): utime is f[11], stime f[12]
        user=$((user + f[11]))
        sys=$((sys + f[12]))
    done < <(proc_tree "$root")
    echo "$user $sys"
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

# Stops every process this script started, newest first.
stop_started() {
    local i
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        stop_tree "${STARTED_PIDS[i]}"
    done
    STARTED_PIDS=()
}

# The EXIT trap: stops what was started and removes the temp dir.
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_started
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

# render TEMPLATE OUT DIR PORT [SED_EXPR...]: writes tests/bench/TEMPLATE to
# OUT with @DIR@, @PORT@, @UPSTREAM_PORT@ and @BENCH_DIR@ filled in, then
# any further sed expressions applied.
render() {
    local template=$1 out=$2 dir=$3 port=$4 e extra=()
    shift 4
    for e in "$@"; do
        extra+=(-e "$e")
    done
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@UPSTREAM_PORT@|${UPSTREAM_PORT:-0}|g" \
        -e "s|@BENCH_DIR@|$BENCH_DIR|g" "${extra[@]}" "$BENCH_DIR/$template" >"$out"
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

# probe PORT: one "GET / HTTP/1.1" (Connection: close, plus REQ_HEADERS) to
# 127.0.0.1:PORT through bash's /dev/tcp, in this shell (no fork, ~0.1 ms);
# sets PROBE_CODE to the response's status code, or 000 when there is no
# answer.
probe() {
    local fd code="" _w
    if { exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
        { printf 'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n' "$PROBE_HEADERS" >&"$fd"; } 2>/dev/null || true
        read -r -t 1 _w code _w <&"$fd" 2>/dev/null || true
        exec {fd}>&-
    fi
    PROBE_CODE=${code:-000}
}

# http_get PORT PATH [HEADER...]: one GET of PATH (Connection: close) with
# the given header lines; sets HTTP_CODE (000 when there is no answer) and
# HTTP_BODY (the bytes after the head). For checks, not for timing.
http_get() {
    local port=$1 path=$2 fd resp h hdrs=""
    shift 2
    for h in "$@"; do
        hdrs+="$h"$'\r\n'
    done
    HTTP_CODE=000 HTTP_BODY=""
    { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 0
    { printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n' "$path" "$hdrs" >&"$fd"; } 2>/dev/null || true
    resp=$(timeout 2 cat <&"$fd" 2>/dev/null || true)
    exec {fd}>&-
    [[ $resp =~ ^HTTP/1\.[01]\ ([0-9]{3}) ]] && HTTP_CODE=${BASH_REMATCH[1]}
    [[ $resp == *$'\r\n\r\n'* ]] && HTTP_BODY=${resp#*$'\r\n\r\n'}
    return 0
}

# pause: waits ~2 ms without forking (a read timeout on a FIFO nobody writes).
pause() { read -r -t 0.002 -u "$PAUSE_FD" _ || true; }

# wait_ready PORT PIDFILE: probes the proxied path every ~2 ms until it
# answers 200, for at most READY_TIMEOUT s. Sets READY_MS to the time since
# START_US. Fails when the server exits or the time runs out.
wait_ready() {
    local port=$1 pidfile=$2 n=0 deadline
    deadline=$((START_US + READY_TIMEOUT * 1000000))
    local h
    PROBE_HEADERS=""
    for h in "${REQ_HEADERS[@]}"; do
        PROBE_HEADERS+="$h"$'\r\n'
    done
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

# measure_load NAME PORT ROOT [WARMUP_S]: warm-up (WARMUP_S seconds, default
# WARMUP; 0 skips it), then the measured wrk run (with a -H for each of
# REQ_HEADERS, against URL_SCHEME://, default http); records req/s, p50, p99, errors and the CPU per request of
# ROOT's process tree (user+sys, and user alone).
measure_load() {
    local name=$1 port=$2 root=$3 warmup=${4:-$WARMUP} url out u0 s0 u1 s1 parsed h shown=""
    local -a hargs=()
    for h in "${REQ_HEADERS[@]}"; do
        hargs+=(-H "$h")
        shown+=" -H '$h'"
    done
    url="${URL_SCHEME:-http}://127.0.0.1:$port/"
    if ((warmup > 0)); then
        say "-- $name: warm-up ${warmup}s, then wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency$shown $url"
        wrk -t1 -c"$CONNECTIONS" -d"${warmup}s" "${hargs[@]}" "$url" >"$WORK/wrk-$name-warmup.txt" 2>&1 || true
    else
        say "-- $name: wrk -t1 -c$CONNECTIONS -d${DURATION}s --latency$shown $url"
    fi
    out="$WORK/wrk-$name.txt"
    read -r u0 s0 < <(tree_cpu_ticks "$root")
    wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${hargs[@]}" "$url" >"$out" 2>&1 || true
    read -r u1 s1 < <(tree_cpu_ticks "$root")

    # Latencies are printed by wrk as e.g. 812.00us, 1.20ms or 1.05s: in ms here.
    parsed=$(awk -v ticks=$((u1 - u0 + s1 - s0)) -v uticks=$((u1 - u0)) -v hz="$CLK_TCK" '
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
            printf "%.0f %.3f %.3f %.1f %d %.2f\n", rps, p50, p99, ticks * 1e6 / hz / n, err,
                uticks * 1e6 / hz / n
        }' "$out")
    if [[ $parsed == fail ]]; then
        SKIPPED[$name]="wrk completed no request (see below)"
        sed 's/^/    /' "$out"
        return 0
    fi
    read -r "RPS[$name]" "P50[$name]" "P99[$name]" "CPU_US[$name]" "ERRORS[$name]" "USER_US[$name]" <<<"$parsed"
    say "   $name: ${RPS[$name]} req/s, p50 ${P50[$name]} ms, p99 ${P99[$name]} ms, ${CPU_US[$name]} us CPU/req (user ${USER_US[$name]}), $((u1 - u0 + s1 - s0)) ticks"
}

# launch_proxy NAME DIR PORT PIDFILE CMD...: starts the proxy and times its
# startup (STARTUP_MS[NAME]). Sets PROXY_ROOT to the PID of its process tree
# and returns 0 when it serves a proxied 200 (and passes check_target, when
# the calling script defines it: check_target NAME PORT); else sets
# SKIPPED[NAME], shows its logs, stops it and returns 1.
launch_proxy() {
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
        return 1
    fi
    root=$(server_root "$pidfile")
    [[ $root != "$SERVER_PID" ]] && STARTED_PIDS+=("$root")
    STARTUP_MS[$name]=$READY_MS
    say "   $name: first proxied 200 after ${READY_MS} ms (pid $root)"
    if declare -F check_target >/dev/null && ! check_target "$name" "$port"; then
        say "   $name: skipped: ${SKIPPED[$name]}"
        stop_tree "$root"
        show_logs "$dir"
        return 1
    fi
    PROXY_ROOT=$root
    return 0
}

# bench_proxy NAME DIR PORT PIDFILE CMD...: launch_proxy, then measures load,
# calls the hook after_load NAME PORT ROOT when the calling script defines
# it (while the proxy still runs), and stops the proxy.
bench_proxy() {
    local name=$1 dir=$2 port=$3
    launch_proxy "$@" || return 0
    measure_load "$name" "$port" "$PROXY_ROOT"
    if declare -F after_load >/dev/null; then
        after_load "$name" "$port" "$PROXY_ROOT"
    fi
    stop_tree "$PROXY_ROOT"
    [[ -s $dir/error.log ]] && { say "   $name: its error log is not empty:"; show_logs "$dir"; }
    return 0
}

# ---------------------------------------------------------------------------
# Setup and the report helpers
# ---------------------------------------------------------------------------

# bench_setup TITLE: checks wrk and nginx, sets the traps, makes the temp
# dir (cd into it) and prints the header of the report.
bench_setup() {
    local title=$1
    command -v wrk >/dev/null || die "wrk not found (scripts/install-deps.sh bench)"
    NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
    [[ -x $NGINX_BIN ]] || die "nginx not found: it is the upstream (scripts/install-deps.sh bench)"
    [[ $DURATION =~ ^[0-9]+$ && $WARMUP =~ ^[0-9]+$ ]] || die "DURATION and WARMUP are whole seconds"

    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/moongate-bench.XXXXXX")
    cd "$WORK" || exit 1
    mkfifo "$WORK/pause.fifo"
    exec {PAUSE_FD}<>"$WORK/pause.fifo"

    say "== $title, $(date -u '+%Y-%m-%d %H:%M UTC')"
    say "machine: $(nproc) cores, $(uname -sr); $("$NGINX_BIN" -v 2>&1); $(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2)"
    say "work dir: $WORK"
    say "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg) (other processes on the machine skew every figure)"
}

# start_upstream: starts the upstream every proxy forwards to (nginx, one
# worker, 13-byte body); sets UPSTREAM_PORT and UPSTREAM_ROOT (its PID).
start_upstream() {
    local dir="$WORK/upstream"
    mkdir -p "$dir"
    pick_port
    UPSTREAM_PORT=$PORT
    render upstream.nginx.conf "$dir/nginx.conf" "$dir" "$UPSTREAM_PORT"
    say "-- upstream: nginx on 127.0.0.1:$UPSTREAM_PORT"
    start_server "$dir" "$NGINX_BIN" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    if ! wait_ready "$UPSTREAM_PORT" "$dir/nginx.pid"; then
        show_logs "$dir"
        die "the upstream nginx did not start"
    fi
    UPSTREAM_ROOT=$SERVER_PID
}

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

# results_table WIDTH: the results header and one row per target of
# TARGETS (req/s, p50, p99, CPU us/req, errors), or why a target was
# skipped; WIDTH is the width of the target column.
results_table() {
    local w=$1 t
    printf "%-${w}s %10s %9s %9s %12s %8s\n" target "req/s" "p50 ms" "p99 ms" "CPU us/req" errors
    for t in "${TARGETS[@]}"; do
        if [[ -n ${RPS[$t]:-} ]]; then
            printf "%-${w}s %10s %9s %9s %12s %8s\n" "$t" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" \
                "${CPU_US[$t]}" "${ERRORS[$t]}"
        else
            printf "%-${w}s %s\n" "$t" "skipped: ${SKIPPED[$t]:-not run}"
        fi
    done
}
