#!/usr/bin/env bash
# Install the Debian packages Moongate needs to build and test, skipping
# those already installed. Usage: scripts/install-deps.sh [build|test|bench]
set -euo pipefail

build=(build-essential cmake pkg-config libev-dev node-llhttp luajit2 libluajit2-5.1-dev
       libssl-dev lua-cjson lua-cjson-dev libhiredis-dev libyaml-dev libpcre2-dev
       ca-certificates) # ca-certificates: the CAs moongate.http trusts for https:// by default
test=(lua-busted lua-socket lua-check redis-server curl openssl socat)
bench=(nginx-extras libnginx-mod-http-lua haproxy wrk)

want=("${build[@]}")
case "${1:-build}" in
  build) ;;
  test) want+=("${test[@]}") ;;
  bench) want+=("${test[@]}" "${bench[@]}") ;;
  *) echo "usage: $0 [build|test|bench]" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
