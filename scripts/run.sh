#!/usr/bin/env bash
# `make run`: start the example upstream the default config points at, then
# serve the config in the foreground. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
config=${2:-conf/moongate.yaml}
upstream_addr=${MOONGATE_EXAMPLE_UPSTREAM:-127.0.0.1:9001}

"$build/moongate" check -c "$config"
mkdir -p logs
"$build/moongate-test-upstream" --listen "$upstream_addr" --name example >/dev/null &
upstream_pid=$!
trap 'kill "$upstream_pid" 2>/dev/null || true' EXIT INT TERM
echo "example upstream on $upstream_addr; try: curl -i http://127.0.0.1:8080/echo/hello"
"$build/moongate" -c "$config"
