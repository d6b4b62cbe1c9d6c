#!/usr/bin/env bash
# Runs every test of the workspace. The browser tests drive Debian's
# Chromium through chromedriver; they are installed here when missing.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v chromedriver >/dev/null 2>&1 || ! [ -x /usr/bin/chromium ]; then
  echo "test.sh: installing chromium and chromium-driver for the browser tests" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium chromium-driver >/dev/null
fi

cargo test --workspace -j2
