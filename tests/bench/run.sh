#!/usr/bin/env bash
# Peer benchmark: Moongate, nginx and HAProxy as reverse proxies, each with one
# worker, in front of the same nginx upstream on loopback. It prints figures
# and never fails on a timing; it exits non-zero only when it cannot run at
# all (wrk or nginx missing, or the upstream does not start). At the end it
# runs tests/bench/lua.sh, the Lua plugin scenarios (LUA_BENCH=0 skips them),
# and tests/bench/tls.sh, HTTPS against nginx (TLS_BENCH=0 skips it).
#
# Usage: tests/bench/run.sh BUILD_DIR        (make bench: tests/bench/run.sh build)
#
# Environment:
#   DURATION     seconds of each measured wrk run (default 10)
#   WARMUP       seconds of the unmeasured wrk run before it (default 2)
#   CONNECTIONS  wrk connections (default 64; one wrk thread)
#   IDLE_CONNS   idle keep-alive connections for the memory figure (default 5000)
#   KEEP_TMP=1   keep the temp dir (configs, logs, raw wrk output) after the run
#   LUA_BENCH=0  do not run tests/bench/lua.sh afterwards
#   TLS_BENCH=0  do not run tests/bench/tls.sh afterwards
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

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE_CONNS=${IDLE_CONNS:-5000}
LUA_BENCH=${LUA_BENCH:-1}
TLS_BENCH=${TLS_BENCH:-1}
IDLE_HELPER=""    # compiled tests/bench/idle_conns.c, empty when unavailable
declare -A IDLE=()
TARGETS=(upstream moongate nginx haproxy)

# ---------------------------------------------------------------------------
# Idle keep-alive memory
# ---------------------------------------------------------------------------

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

# bench_proxy's hook: idle memory for Moongate and nginx, after the load.
after_load() {
    case $1 in
    moongate | nginx) measure_idle "$@" ;;
    esac
}

# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

report() {
    local t reason
    say ""
    say "== Results: 1 worker each, wrk -t1 -c$CONNECTIONS -d${DURATION}s, 13-byte body, $(nproc) cores shared by wrk, upstream and proxy"
    results_table 10
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
    local build_dir moongate_bin dir rc=0
    build_dir=$(cd "$1" 2>/dev/null && pwd || echo "$1")
    moongate_bin="$build_dir/moongate"

    # Room for IDLE_CONNS connections on both ends (helper and proxy inherit it).
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

    bench_setup "Moongate peer benchmark"

    if command -v cc >/dev/null && cc -O2 -o "$WORK/idle_conns" "$BENCH_DIR/idle_conns.c" 2>"$WORK/cc.log"; then
        IDLE_HELPER="$WORK/idle_conns"
    else
        say "note: could not compile tests/bench/idle_conns.c; idle memory is not measured"
    fi

    # The upstream: nginx, one worker, 13-byte body. Also the baseline row.
    start_upstream
    measure_load upstream "$UPSTREAM_PORT" "$UPSTREAM_ROOT"

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
    bench_proxy nginx "$dir" "$PORT" "$dir/nginx.pid" "$NGINX_BIN" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"

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

    # The Lua plugin scenarios, with their own upstream and temp dir: this
    # script's processes are stopped first so that they do not compete.
    if [[ $LUA_BENCH == 1 ]]; then
        stop_started
        say ""
        "$BENCH_DIR/lua.sh" "$build_dir" || rc=$?
    fi
    # The HTTPS scenarios, likewise on their own.
    if [[ $TLS_BENCH == 1 ]]; then
        stop_started
        say ""
        "$BENCH_DIR/tls.sh" "$build_dir" || rc=$?
    fi
    return "$rc"
}

main "$@"
