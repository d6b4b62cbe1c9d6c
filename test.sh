#!/usr/bin/env bash
# Runs every test of the workspace. Debian packages the tests need are
# installed here when missing: Chromium and chromedriver for the browser
# tests, and prometheus for promtool, which checks /metrics and the
# example rules.
set -euo pipefail
cd "$(dirname "$0")"

missing=()
if ! command -v chromedriver >/dev/null 2>&1 || ! [ -x /usr/bin/chromium ]; then
  missing+=(chromium chromium-driver)
fi
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "test.sh: installing ${missing[*]} for the tests" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo test --workspace -j2
