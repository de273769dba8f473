#!/usr/bin/env bash
# What the console's browser test needs beyond the Rust toolchain: Debian's
# Chromium (as root, or through sudo) and playwright-core from the npm
# registry, pinned by ui-tests/package-lock.json. Each is skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  echo "ui-install: installing Debian's chromium"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "ui-install: chromium is missing and neither root nor sudo can install it" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
"$CHROMIUM" --version

command -v node >/dev/null || { echo "ui-install: node is missing: install Node.js 20 or later" >&2; exit 1; }
if [ ! -d ui-tests/node_modules/playwright-core ]; then
  echo "ui-install: npm ci in ui-tests/"
  npm ci --prefix ui-tests --no-audit --no-fund --loglevel=error
fi
