#!/usr/bin/env bash
# Lua plugin benchmark: what Lua plugins cost in Moongate, next to nginx +
# lua-nginx-module doing the same work. One worker each, the upstream of
# run.sh (nginx, 13-byte body), every request carrying `apikey: key-42`.
# Two scenarios:
#
#   lua chain        Moongate with the plugins bench-auth (the apikey header
#                    looked up in a table of 100 keys), bench-limit (a
#                    per-consumer counter in a shared dictionary, incr with
#                    a TTL, 429 past a limit never reached) and bench-header
#                    (X-Consumer set on the upstream request), against nginx
#                    doing the same in one access_by_lua_block
#                    (lua-chain.nginx.conf). Both are also measured without
#                    Lua, so the chain's own cost shows.
#   plugin overhead  Moongate's route with 0 plugins and with 5 no-op
#                    plugins (an empty access function each):
#                    (CPU/req with 5 - CPU/req with 0) / 5 is the cost of one
#                    plugin in the chain. A route with 1 no-op plugin splits
#                    it into the first plugin of a request (which also pays
#                    for entering Lua) and each further one.
#
# It prints figures and never fails on a timing; it exits non-zero only when
# it cannot run at all (wrk or nginx missing, or the upstream does not
# start). run.sh runs it at the end; it also runs alone.
#
# Usage: tests/bench/lua.sh BUILD_DIR
#
# Environment:
#   DURATION     seconds of each measured wrk run (default 10)
#   WARMUP       seconds of the unmeasured wrk run before a target's first
#                round (default 2)
#   CONNECTIONS  wrk connections (default 64; one wrk thread)
#   KEEP_TMP=1   keep the temp dir (configs, logs, raw wrk output) after the run
#   ROUNDS       measured rounds (default 3): every target is loaded once per
#                round, in turn, all of them running from the start; the
#                figures are the medians over the rounds, and the paired
#                figures (ratio, overhead) are computed per round first
#   PROFILE=NAME after the rounds, load target NAME again (PROFILE=1 means
#                moongate-lua) and record its worker with `perf record -g`
#                for PROFILE_SECONDS (default 3); prints the top of
#                `perf report` (perf's cost is in no figure)
#
# Figures, per target: req/s, p50, p99, CPU us/req (and its user part) and
# errors, measured as in run.sh (see docs/benchmarks.md). A wrong status (401, 403, 429, 500)
# counts as an error, and a target with errors in any round is left out of
# the comparisons.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
PROFILE=${PROFILE:-}
PROFILE_SECONDS=${PROFILE_SECONDS:-3}
API_KEY="key-42"       # one of bench-auth's 100 keys
CONSUMER="consumer-42" # its consumer, expected in X-Consumer upstream
ISSUE_CHAIN_RATIO=0.80 # target: Moongate's CPU/req <= 0.8x nginx + Lua's
ISSUE_PLUGIN_US=1      # target: <= 1 us of CPU per no-op plugin

# Targets in the order each round loads them (the pairs compared sit next
# to each other), and how the report names them.
TARGETS=(upstream moongate-0 moongate-noop1 moongate-noop5 moongate-lua nginx-lua nginx)
declare -A LABEL=(
    [upstream]="upstream (direct)"
    [moongate-0]="moongate, 0 plugins"
    [moongate-noop1]="moongate, 1 no-op plugin"
    [moongate-noop5]="moongate, 5 no-op plugins"
    [moongate-lua]="moongate + Lua chain"
    [nginx-lua]="nginx + Lua chain"
    [nginx]="nginx, no Lua"
)
# The route's plugins map in moongate-lua.yaml, per Moongate target.
declare -A PLUGINS=(
    [moongate-0]="{}"
    [moongate-noop1]="{ bench-noop-1: {} }"
    [moongate-noop5]="{ bench-noop-1: {}, bench-noop-2: {}, bench-noop-3: {}, bench-noop-4: {}, bench-noop-5: {} }"
    [moongate-lua]="{ bench-auth: {}, bench-limit: {}, bench-header: {} }"
)
declare -A PORT_OF=() ROOT_OF=() DIR_OF=() CPU_ROUNDS=()
PROFILE_OUT="" # the perf report, with PROFILE set

# ---------------------------------------------------------------------------
# Starting the targets
# ---------------------------------------------------------------------------

# check_target NAME PORT (launch_proxy's hook): checks that a Lua chain does
# its work before it is measured: no apikey is a 401, an unknown key a 403,
# and with the key the upstream sees X-Consumer (the upstream's
# /bench/consumer echoes it). Without this a chain that skipped its work
# would still answer 200.
check_target() {
    local name=$1 port=$2 problems=()
    case $name in
    moongate-lua | nginx-lua) ;;
    *) return 0 ;;
    esac
    http_get "$port" /
    [[ $HTTP_CODE == 401 ]] || problems+=("no apikey gave $HTTP_CODE, not 401")
    http_get "$port" / "apikey: no-such-key"
    [[ $HTTP_CODE == 403 ]] || problems+=("an unknown apikey gave $HTTP_CODE, not 403")
    http_get "$port" /bench/consumer "apikey: $API_KEY"
    [[ $HTTP_CODE == 200 && $HTTP_BODY == "$CONSUMER" ]] ||
        problems+=("the upstream saw X-Consumer '${HTTP_BODY:0:60}' (status $HTTP_CODE), not '$CONSUMER'")
    if ((${#problems[@]})); then
        SKIPPED[$name]="the Lua chain check failed: $(IFS=';'; echo "${problems[*]}")"
        return 1
    fi
    say "   $name: chain checked: 401 without apikey, 403 for an unknown key, X-Consumer: $CONSUMER upstream"
}

# start_target NAME DIR PORT PIDFILE CMD...: launch_proxy, and on success
# remembers the target's port, process tree and directory.
start_target() {
    local name=$1 dir=$2 port=$3
    launch_proxy "$@" || return 0
    PORT_OF[$name]=$port
    ROOT_OF[$name]=$PROXY_ROOT
    DIR_OF[$name]=$dir
}

# Prints the directory of nginx's dynamic modules holding the Lua module, or
# nothing: nginx's --modules-path, else the usual Debian places.
nginx_modules_dir() {
    local d
    d=$("$NGINX_BIN" -V 2>&1 | grep -o -- '--modules-path=[^ ]*' | cut -d= -f2 || true)
    for d in "$d" /usr/lib/nginx/modules /usr/share/nginx/modules; do
        [[ -n $d && -f $d/ngx_http_lua_module.so ]] && { echo "$d"; return 0; }
    done
    return 0
}

# start_all BUILD_DIR: the upstream and every proxy target, each checked.
start_all() {
    local moongate_bin=$1/moongate t dir modules
    start_upstream
    PORT_OF[upstream]=$UPSTREAM_PORT
    ROOT_OF[upstream]=$UPSTREAM_ROOT
    DIR_OF[upstream]=$WORK/upstream

    # Moongate: the same config but for the route's plugins map.
    for t in moongate-0 moongate-noop1 moongate-noop5 moongate-lua; do
        if [[ ! -x $moongate_bin ]]; then
            SKIPPED[$t]="$moongate_bin not found (build it first: make build)"
            say "-- $t: skipped: ${SKIPPED[$t]}"
            continue
        fi
        dir="$WORK/$t"
        mkdir -p "$dir"
        pick_port
        render moongate-lua.yaml "$dir/moongate.yaml" "$dir" "$PORT" "s|@PLUGINS@|${PLUGINS[$t]}|"
        start_target "$t" "$dir" "$PORT" "$dir/moongate.pid" "$moongate_bin" -c "$dir/moongate.yaml"
    done

    # nginx with the Lua chain, and without Lua (run.sh's proxy config).
    modules=$(nginx_modules_dir)
    if [[ -n $modules ]]; then
        dir="$WORK/nginx-lua"
        mkdir -p "$dir"
        pick_port
        render lua-chain.nginx.conf "$dir/nginx.conf" "$dir" "$PORT" "s|@MODULES@|$modules|g"
        start_target nginx-lua "$dir" "$PORT" "$dir/nginx.pid" "$NGINX_BIN" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
    else
        SKIPPED[nginx-lua]="ngx_http_lua_module.so not found (apt-get install libnginx-mod-http-lua)"
        say "-- nginx-lua: skipped: ${SKIPPED[nginx-lua]}"
    fi
    dir="$WORK/nginx"
    mkdir -p "$dir"
    pick_port
    render proxy.nginx.conf "$dir/nginx.conf" "$dir" "$PORT"
    start_target nginx "$dir" "$PORT" "$dir/nginx.pid" "$NGINX_BIN" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"
}

# ---------------------------------------------------------------------------
# Measuring
# ---------------------------------------------------------------------------

# run_rounds: ROUNDS times, each running target in turn under wrk (the
# warm-up only before a target's first round). A round's figures are kept
# under "NAME.rN".
run_rounds() {
    local r t
    for ((r = 1; r <= ROUNDS; r++)); do
        say "-- round $r of $ROUNDS"
        for t in "${TARGETS[@]}"; do
            [[ -n ${ROOT_OF[$t]:-} ]] || continue
            measure_load "$t.r$r" "${PORT_OF[$t]}" "${ROOT_OF[$t]}" "$((r == 1 ? WARMUP : 0))"
        done
    done
}

# median V...: the median of the numbers given.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# aggregate: per target, the medians over the rounds into RPS, P50, P99,
# CPU_US and USER_US, the errors summed into ERRORS, the rounds' CPU/req in
# CPU_ROUNDS. A target missing a round is SKIPPED.
aggregate() {
    local t r n
    local -a rps p50 p99 cpu user
    for t in "${TARGETS[@]}"; do
        [[ -n ${ROOT_OF[$t]:-} ]] || continue
        rps=() p50=() p99=() cpu=() user=()
        ERRORS[$t]=0
        for ((r = 1; r <= ROUNDS; r++)); do
            n="$t.r$r"
            if [[ -z ${RPS[$n]:-} ]]; then
                SKIPPED[$t]="round $r: ${SKIPPED[$n]:-not measured}"
                continue 2
            fi
            rps+=("${RPS[$n]}") p50+=("${P50[$n]}") p99+=("${P99[$n]}") cpu+=("${CPU_US[$n]}")
            user+=("${USER_US[$n]}")
            ERRORS[$t]=$((ERRORS[$t] + ERRORS[$n]))
        done
        RPS[$t]=$(median "${rps[@]}")
        P50[$t]=$(median "${p50[@]}")
        P99[$t]=$(median "${p99[@]}")
        CPU_US[$t]=$(median "${cpu[@]}")
        USER_US[$t]=$(median "${user[@]}")
        CPU_ROUNDS[$t]=$(IFS=' '; echo "${cpu[*]}")
    done
}

# paired A B OP [user]: per round, A's and B's CPU/req (user CPU alone
# with "user") combined by OP ("ratio": A / B; "diff": A - B; "diffN":
# (A - B) / N); prints "median min max" over the rounds.
paired() {
    local a=$1 b=$2 op=$3 r
    local -n per_req=CPU_US
    [[ ${4:-} == user ]] && local -n per_req=USER_US
    for ((r = 1; r <= ROUNDS; r++)); do
        echo "${per_req[$a.r$r]} ${per_req[$b.r$r]}"
    done | awk -v op="$op" '{
            if (op == "ratio") print $1 / $2
            else if (op == "diff") print $1 - $2
            else print ($1 - $2) / substr(op, 5)
        }' | sort -g | awk '{ v[NR] = $1 } END {
            m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
            print m, v[1], v[NR] }'
}

# profile: with PROFILE set, loads that target again and records its worker
# with perf (after the rounds, so perf's own cost is in no figure).
profile() {
    local name=$PROFILE worker wrk_pid h
    local -a hargs=()
    [[ -n $name && $name != 0 ]] || return 0
    [[ $name == 1 ]] && name=moongate-lua
    if [[ -z ${ROOT_OF[$name]:-} ]]; then
        PROFILE_OUT="not profiled: no running target named $name"
        return 0
    fi
    if ! command -v perf >/dev/null; then
        PROFILE_OUT="not profiled: perf not found"
        return 0
    fi
    worker=$(workers_of "${ROOT_OF[$name]}" | head -n1)
    for h in "${REQ_HEADERS[@]}"; do
        hargs+=(-H "$h")
    done
    say "-- $name: profiling worker $worker for ${PROFILE_SECONDS}s under the same load (perf record -F 2000 -g)"
    wrk -t1 -c"$CONNECTIONS" -d"$((PROFILE_SECONDS + 2))s" "${hargs[@]}" "http://127.0.0.1:${PORT_OF[$name]}/" \
        >"$WORK/wrk-$name-profile.txt" 2>&1 &
    wrk_pid=$!
    STARTED_PIDS+=("$wrk_pid")
    sleep 1
    if perf record -q -F 2000 -g -o "$WORK/perf-$name.data" -p "$worker" -- sleep "$PROFILE_SECONDS" \
        >"$WORK/perf-$name.log" 2>&1; then
        PROFILE_OUT="$name, share of the worker's samples by shared object:"$'\n'
        PROFILE_OUT+=$(perf report -i "$WORK/perf-$name.data" --no-children --sort dso -g none \
            --percent-limit 0.5 --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/[[:space:]-]*$//' || true)
        PROFILE_OUT+=$'\n'"$name, top user-space symbols (kernel symbols left out):"$'\n'
        PROFILE_OUT+=$(perf report -i "$WORK/perf-$name.data" --no-children --sort dso,symbol -g none \
            --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | grep -v '\[k\]' | sed 's/[[:space:]-]*$//' |
            head -n 25 || true)
    else
        PROFILE_OUT="not profiled: perf record failed: $(tail -n 3 "$WORK/perf-$name.log")"
    fi
    wait "$wrk_pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

# verdict VALUE LIMIT: "met" when VALUE <= LIMIT, else "not met".
verdict() {
    awk -v v="$1" -v l="$2" 'BEGIN { print (v + 0 <= l + 0) ? "met" : "not met" }'
}

# pair_line LABEL A B OP UNIT [TARGET]: one paired figure from the CPU/req
# of A and B, median and range over the rounds, with the verdict against
# TARGET when given; differences also from user CPU alone.
pair_line() {
    local label=$1 a=$2 b=$3 op=$4 unit=$5 target=${6:-} m lo hi um ulo uhi reason
    if ! clean "$a" || ! clean "$b"; then
        reason="$(unclean_reason "$a")$(unclean_reason "$b")"
        say "  $label: n/a (${reason%; })"
        return 0
    fi
    read -r m lo hi < <(paired "$a" "$b" "$op")
    if [[ $op == ratio ]]; then
        say "$(printf '  %s: %.2fx [rounds %.2f..%.2f]%s' "$label" "$m" "$lo" "$hi" \
            "${target:+; issue target <= ${target}x: $(verdict "$m" "$target")}")"
    else
        read -r um ulo uhi < <(paired "$a" "$b" "$op" user)
        say "$(printf '  %s: %+.2f %s [rounds %+.2f..%+.2f]%s; user CPU alone: %+.2f [%+.2f..%+.2f]' \
            "$label" "$m" "$unit" "$lo" "$hi" \
            "${target:+; issue target <= $target $unit: $(verdict "$m" "$target")}" "$um" "$ulo" "$uhi")"
    fi
}

report() {
    local t
    say ""
    say "== Results (Lua): 1 worker each, wrk -t1 -c$CONNECTIONS -d${DURATION}s -H 'apikey: $API_KEY', medians of $ROUNDS rounds, 13-byte body, $(nproc) cores shared by wrk, upstream and proxy"
    printf '%-26s %8s %7s %7s %11s %8s %7s  %s\n' target "req/s" "p50 ms" "p99 ms" "CPU us/req" "user us" errors \
        "CPU us/req by round"
    for t in "${TARGETS[@]}"; do
        if [[ -n ${RPS[$t]:-} ]]; then
            printf '%-26s %8.0f %7.3f %7.3f %11.1f %8.2f %7s  %s\n' "${LABEL[$t]}" "${RPS[$t]}" "${P50[$t]}" "${P99[$t]}" \
                "${CPU_US[$t]}" "${USER_US[$t]}" "${ERRORS[$t]}" "${CPU_ROUNDS[$t]}"
        else
            printf '%-26s %s\n' "${LABEL[$t]}" "skipped: ${SKIPPED[$t]:-not run}"
        fi
    done
    say "(medians over the rounds; user us = the user-space part of CPU us/req; upstream = nginx queried"
    say " directly, its CPU columns are the upstream's own CPU)"
    for t in "${TARGETS[@]}"; do
        if [[ -n ${ERRORS[$t]:-} && ${ERRORS[$t]} != 0 ]]; then
            say "note: ${LABEL[$t]} had ${ERRORS[$t]} non-2xx responses or socket errors: its row is not a clean result (see wrk-$t.r*.txt with KEEP_TMP=1)"
        fi
    done
    say "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"

    say ""
    say "Lua chain (key auth against a 100-key table, shared-dict rate-limit counter, upstream header);"
    say "each figure computed per round from that round's CPU/req, then the median [and range] over the rounds:"
    pair_line "CPU/req moongate+lua / nginx+lua" moongate-lua nginx-lua ratio "" "$ISSUE_CHAIN_RATIO"
    pair_line "the chain's CPU in moongate (+lua - 0 plugins)" moongate-lua moongate-0 diff "us/req"
    pair_line "the chain's CPU in nginx (+lua - no Lua)" nginx-lua nginx diff "us/req"
    if clean moongate-lua && clean nginx-lua; then
        say "  req/s moongate+lua / nginx+lua: $(ratio "${RPS[moongate-lua]}" "${RPS[nginx-lua]}") (of the medians; req/s varies far more than CPU/req)"
    fi
    say ""
    say "Plugin overhead (the same route with 5, 1 and 0 no-op access plugins), per round, then the median:"
    pair_line "(5 no-op - 0 plugins) / 5" moongate-noop5 moongate-0 diff5 "us/plugin" "$ISSUE_PLUGIN_US"
    say "  split into the first plugin of a request (it also pays for entering Lua) and each further one:"
    pair_line "first plugin (1 no-op - 0 plugins)" moongate-noop1 moongate-0 diff "us/req"
    pair_line "each further plugin (5 no-op - 1 no-op) / 4" moongate-noop5 moongate-noop1 diff4 "us/plugin"

    if [[ -n $PROFILE_OUT ]]; then
        say ""
        say "Profile (perf report --no-children -g none, worker only):"
        say "$PROFILE_OUT"
    fi
}

# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

main() {
    [[ $# -eq 1 ]] || die "usage: $0 BUILD_DIR"
    local build_dir t
    build_dir=$(cd "$1" 2>/dev/null && pwd || echo "$1")
    [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS is a whole number >= 1"

    bench_setup "Moongate Lua plugin benchmark"
    # Every request of every target, the readiness probe's too, carries the key.
    REQ_HEADERS=("apikey: $API_KEY")

    start_all "$build_dir"
    run_rounds
    aggregate
    profile
    stop_started
    for t in "${TARGETS[@]}"; do
        [[ -n ${DIR_OF[$t]:-} && -s ${DIR_OF[$t]}/error.log ]] || continue
        say "   $t: its error log is not empty:"
        show_logs "${DIR_OF[$t]}"
    done
    report
}

main "$@"
