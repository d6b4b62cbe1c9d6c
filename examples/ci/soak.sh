#!/usr/bin/env bash
# The soak gate: start the analyzer, run the leaky example under load with
# the agent streaming to it, then check the budgets. Runs in CI (see
# github-workflow.yml) and locally alike:
#
#   examples/ci/soak.sh                      # clean routes: passes
#   ROUTES="/work /leak" examples/ci/soak.sh # with the leak: fails, exit 1
#
# ROUTES        routes to load (default "/work /cache")
# SOAK_SECONDS  how long to load (default 45)
# BIN_DIR       prebuilt analyzer and leaky-service (default: build release)
# FORMAT        text, json or junit (default text)
set -euo pipefail
cd "$(dirname "$0")/../.."

routes=${ROUTES:-"/work /cache"}
soak=${SOAK_SECONDS:-45}
format=${FORMAT:-text}
if [ -z "${BIN_DIR:-}" ]; then
  cargo build --release -j2 -p heaptide-analyzer -p leaky-service >&2
  BIN_DIR=target/release
fi

work=$(mktemp -d)
cleanup() {
  kill "${leaky_pid:-}" "${analyzer_pid:-}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# Prints the http://ADDR a process announced on its first stdout line.
address_of() {
  for _ in $(seq 100); do
    if [ -s "$1" ]; then
      sed -n 's|.*http://\([^ ]*\).*|\1|p' "$1" | head -n1
      return
    fi
    sleep 0.1
  done
  echo "no address in $1" >&2
  exit 2
}

"$BIN_DIR/analyzer" serve --listen 127.0.0.1:0 --store "$work/soak.db" >"$work/analyzer.out" 2>"$work/analyzer.err" &
analyzer_pid=$!
analyzer=$(address_of "$work/analyzer.out")

HEAPTIDE_ENDPOINT="http://$analyzer" HEAPTIDE_SERVICE=leaky-service HEAPTIDE_INSTANCE=soak \
HEAPTIDE_INTERVAL=500ms HEAPTIDE_PROFILE_INTERVAL=3s HEAPTIDE_HEAP_SAMPLE_PERIOD=64KiB \
LEAKY_LISTEN=127.0.0.1:0 "$BIN_DIR/leaky-service" >"$work/leaky.out" 2>"$work/leaky.err" &
leaky_pid=$!
leaky=$(address_of "$work/leaky.out")

# shellcheck disable=SC2086 # the routes are words
"$BIN_DIR/leaky-load" "http://$leaky" "$soak" $routes >"$work/load.out"
echo "soak: $(cat "$work/load.out") requests over ${soak}s to $routes" >&2
sleep 2 # the last samples arrive

"$BIN_DIR/analyzer" check --budget examples/ci/heaptide.toml --store "$work/soak.db" \
  --since "$((soak + 30))s" --format "$format"
