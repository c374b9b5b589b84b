#!/usr/bin/env bash
# Installs what tests/integration/test_frontend_load.py and test_video_playback.py need: Debian's Chromium
# (/usr/bin/chromium, built with the H.264 decoder the playback test needs) and
# playwright-core from the npm registry into tests/integration/frontend/node_modules (no browser
# download: the test drives the Debian Chromium). Idempotent: does nothing when both are there.
# Node.js (>= 20, for playwright-core) must already be installed.
# A failed install only warns (the test then skips, saying why) unless FRONTEND_TEST_REQUIRED=1.
set -uo pipefail
cd "$(dirname "$0")/.."
FRONTEND=tests/integration/frontend
ok=1

fail() {
  echo "setup_frontend_test: WARNING: $* (the frontend load test will skip)" >&2
  ok=0
}

if [ ! -x /usr/bin/chromium ]; then
  echo "setup_frontend_test: installing Debian's chromium"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
  log=$(mktemp)
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    fail "apt-get install chromium failed"
  fi
  rm -f "$log"
  [ -x /usr/bin/chromium ] || [ $ok -eq 0 ] || fail "no /usr/bin/chromium after apt-get install chromium"
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  fail "node/npm not found"
elif [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  fail "node $(node --version) is older than 20, which playwright-core needs"
else
  wanted=$(node -p "require('./$FRONTEND/package-lock.json').packages['node_modules/playwright-core'].version")
  have=$(node -p "try { require('./$FRONTEND/node_modules/playwright-core/package.json').version } catch { '' }")
  if [ "$wanted" != "$have" ]; then
    echo "setup_frontend_test: npm ci in $FRONTEND (playwright-core $wanted)"
    (cd "$FRONTEND" && npm ci --no-audit --no-fund --loglevel=error) || fail "npm ci failed"
  fi
fi

if [ $ok -eq 1 ]; then
  echo "setup_frontend_test: ready ($(/usr/bin/chromium --version 2>/dev/null | head -n1), node $(node --version)," \
       "playwright-core $(node -p "require('./$FRONTEND/node_modules/playwright-core/package.json').version"))"
elif [ "${FRONTEND_TEST_REQUIRED:-0}" = 1 ]; then
  exit 1
fi
exit 0
