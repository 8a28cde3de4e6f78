#!/usr/bin/env bash
# Run every test against the build in $MOONGATE_BUILD: luacheck over the Lua
# code, C unit tests (ctest), then the busted specs, which start the real
# gateway and test upstreams.
# Sanitizer reports from any process (a sanitized build writes them to
# $reports) fail the run even when the test that triggered them passed.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MOONGATE_BUILD:-build}
export MOONGATE_BUILD=$build

reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
export ASAN_OPTIONS="log_path=$reports/asan:detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"

status=0
echo "== Lua lint (luacheck)"
luacheck --quiet --no-color lua plugins spec examples tests/bench/plugins || status=1

echo "== C unit tests (ctest)"
ctest --test-dir "$build" --output-on-failure || status=1

echo "== specs (busted)"
busted --lua=luajit || status=1

if compgen -G "$reports/*" >/dev/null; then
  echo "== sanitizer reports"
  for f in "$reports"/*; do echo "--- $f"; cat "$f"; done
  status=1
fi
exit $status
