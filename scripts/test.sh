#!/usr/bin/env bash
# Run every test against the build in $MOONGATE_BUILD: C unit tests (ctest),
# then the busted specs, which start the real gateway and test upstreams.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MOONGATE_BUILD:-build}
export MOONGATE_BUILD=$build

echo "== C unit tests (ctest)"
ctest --test-dir "$build" --output-on-failure

echo "== specs (busted)"
busted --lua=luajit
