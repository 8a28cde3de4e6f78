#!/usr/bin/env bash
# HTTPS benchmark: Moongate and nginx terminating TLS, one worker each, in
# front of the upstream of run.sh (nginx, 13-byte body), with the same
# certificate (ECDSA P-256, made here with the openssl command line) and
# the same ciphers (TLS 1.3 TLS_AES_128_GCM_SHA256; TLS 1.2
# ECDHE-ECDSA-AES128-GCM-SHA256). Three scenarios per server:
#
#   -ka    keep-alive: wrk over https, connections kept alive: the cost of
#          encrypting and decrypting requests (CPU per request)
#   -hs    new connections: wrk with "Connection: close", so every request
#          makes a new connection and handshake. wrk offers the session of
#          its previous connection (SSL_clear keeps it), so with session
#          tickets on (the default of both servers) these are TLS 1.3
#          resumptions, each answered with a fresh ticket; req/s is
#          handshakes per second
#   -full  the same load with session tickets and the session cache off on
#          the server: every handshake is a full one (certificate, ECDSA
#          signature, ECDHE)
#
# It prints figures and ratios and never fails on a timing; it exits
# non-zero only when it cannot run at all. run.sh runs it at the end
# (TLS_BENCH=0 there skips it); it also runs alone.
#
# Usage: tests/bench/tls.sh BUILD_DIR
#
# Environment: DURATION (default 10), WARMUP (default 2), CONNECTIONS
# (default 64; one wrk thread), KEEP_TMP=1 (keep the temp dir).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGETS=(moongate-ka nginx-ka moongate-hs nginx-hs moongate-full nginx-full)

# probe PORT (replaces lib.sh's plain HTTP probe for the TLS servers): one
# GET over https with curl; sets PROBE_CODE.
probe_https() {
    PROBE_CODE=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "https://127.0.0.1:$1/" 2>/dev/null || true)
    PROBE_CODE=${PROBE_CODE:-000}
}

# bench_tls NAME ROWS DIR PORT PIDFILE CMD...: starts a TLS server, waits
# for a proxied 200 over https, measures the rows named in ROWS ("ka hs":
# keep-alive, then new connections as NAME-hs; "full": new connections as
# NAME-full), stops it.
bench_tls() {
    local name=$1 rows=$2 dir=$3 port=$4 pidfile=$5 root row
    shift 5
    say "-- $name: starting on 127.0.0.1:$port"
    start_server "$dir" "$@"
    local i
    for ((i = 0; i < 500; i++)); do
        probe_https "$port"
        [[ $PROBE_CODE == 200 ]] && break
        sleep 0.02
    done
    if [[ $PROBE_CODE != 200 ]]; then
        for row in $rows; do
            SKIPPED[$name-$row]="no proxied 200 over https (last status $PROBE_CODE)"
        done
        say "   $name: skipped: no proxied 200 over https (last status $PROBE_CODE)"
        show_logs "$dir"
        stop_tree "$SERVER_PID"
        return 0
    fi
    root=$(server_root "$pidfile")
    [[ $root != "$SERVER_PID" ]] && STARTED_PIDS+=("$root")
    URL_SCHEME=https
    for row in $rows; do
        if [[ $row == ka ]]; then
            REQ_HEADERS=()
        else
            REQ_HEADERS=("Connection: close")
        fi
        measure_load "$name-$row" "$port" "$root"
    done
    REQ_HEADERS=()
    stop_tree "$root"
    [[ -s $dir/error.log ]] && { say "   $name: its error log is not empty:"; show_logs "$dir"; }
    return 0
}

report() {
    local pair
    say ""
    say "== Results: 1 worker each, wrk -t1 -c$CONNECTIONS -d${DURATION}s over https, ECDSA P-256, $(nproc) cores shared by wrk, upstream and server"
    results_table 13
    say "(-ka: keep-alive; -hs: Connection: close, a new connection per request, resumed with a ticket; -full: the same without tickets or session cache: a full handshake per request)"
    say "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    say ""
    say "Ratios (CPU/req: lower is better; req/s: higher is better):"
    for pair in ka hs full; do
        if clean "moongate-$pair" && clean "nginx-$pair"; then
            say "  moongate / nginx ($pair): CPU/req $(ratio "${CPU_US[moongate-$pair]}" "${CPU_US[nginx-$pair]}"), req/s $(ratio "${RPS[moongate-$pair]}" "${RPS[nginx-$pair]}")"
        else
            local reason
            reason="$(unclean_reason "moongate-$pair")$(unclean_reason "nginx-$pair")"
            say "  moongate / nginx ($pair): n/a (${reason%; })"
        fi
    done
}

main() {
    [[ $# -eq 1 ]] || die "usage: $0 BUILD_DIR"
    local build_dir moongate_bin dir row
    build_dir=$(cd "$1" 2>/dev/null && pwd || echo "$1")
    moongate_bin="$build_dir/moongate"
    command -v openssl >/dev/null || die "openssl not found"
    command -v curl >/dev/null || die "curl not found"

    bench_setup "Moongate HTTPS benchmark"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=bench.test -addext subjectAltName=DNS:bench.test \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >"$WORK/openssl.log" 2>&1 ||
        die "cannot make the test certificate (see $WORK/openssl.log)"

    start_upstream

    # Each server twice: with session resumption (its default), for -ka and
    # -hs, then without, for -full.
    local resume mode
    for resume in on off; do
        mode=$([[ $resume == on ]] && echo "ka hs" || echo full)
        if [[ -x $moongate_bin ]]; then
            dir="$WORK/moongate-$resume"
            mkdir -p "$dir"
            pick_port
            render moongate-tls.yaml "$dir/moongate.yaml" "$dir" "$PORT" \
                "s|@TICKETS@|$([[ $resume == on ]] && echo true || echo false)|" \
                "s|@CACHE@|$([[ $resume == on ]] && echo 20480 || echo 0)|"
            bench_tls moongate "$mode" "$dir" "$PORT" "$dir/moongate.pid" "$moongate_bin" -c "$dir/moongate.yaml"
        else
            for row in $mode; do
                SKIPPED[moongate-$row]="$moongate_bin not found (build it first)"
            done
        fi

        dir="$WORK/nginx-$resume"
        mkdir -p "$dir"
        pick_port
        render tls.nginx.conf "$dir/nginx.conf" "$dir" "$PORT" \
            "s|@TICKETS@|$resume|" \
            "s|@CACHE@|$([[ $resume == on ]] && echo shared:SSL:10m || echo off)|"
        bench_tls nginx "$mode" "$dir" "$PORT" "$dir/nginx.pid" "$NGINX_BIN" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    done

    report
}

main "$@"
