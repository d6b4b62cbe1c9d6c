#!/usr/bin/env bash
# Runs every test of the workspace. Debian packages the tests need are
# installed here when missing: Chromium and chromedriver for the browser
# tests, prometheus for promtool, which checks /metrics and the example
# rules, Go (golang-go) for `go tool pprof` and the Go service whose
# heap profiles the pprof tests ingest, and clickhouse-server, which the
# store and scale-out tests start themselves on loopback ports with a
# private data path (no system service is used), and haproxy, which the
# balancer test starts in front of two analyzers on loopback ports, and a C
# and C++ compiler and python3, which the preload tests run under
# libheaptide_preload.so.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
if ! command -v chromedriver >/dev/null 2>&1 || ! [ -x /usr/bin/chromium ]; then
  missing+=(chromium chromium-driver)
fi
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v go >/dev/null 2>&1 || missing+=(golang-go)
if ! [ -x /usr/sbin/clickhouse-server ] && ! [ -x /usr/bin/clickhouse-server ]; then
  missing+=(clickhouse-server)
fi
if ! [ -x /usr/sbin/haproxy ] && ! [ -x /usr/bin/haproxy ]; then
  missing+=(haproxy)
fi
# The preload tests build a C and a C++ program and run python3.
command -v cc >/dev/null 2>&1 || missing+=(gcc)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
# The symbolizer's tests strip a binary and split off its debug file.
command -v objcopy >/dev/null 2>&1 || missing+=(binutils)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} for the tests" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The tests at default settings take minutes of real time each, mostly
# waiting: they run beside the rest of the suite rather than after it.
cargo test --workspace -j2 --no-run
# The preload library is a cdylib, which no test depends on: built here for
# the tests that run programs under it.
cargo build -j2 -p heaptide-preload
slow_log=$(mktemp)
cargo test --workspace -j2 --test fast_leak -- --test-threads=3 at_default_settings \
  >"$slow_log" 2>&1 &
slow=$!
status=0
cargo test --workspace -j2 -- --skip at_default_settings || status=$?
slow_status=0
wait "$slow" || slow_status=$?
cat "$slow_log"
rm -f "$slow_log"
[ "$status" -eq 0 ] && [ "$slow_status" -eq 0 ]
