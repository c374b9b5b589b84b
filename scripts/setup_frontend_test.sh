#!/usr/bin/env bash
# Installs what the frontend load test needs: Debian's Chromium and playwright-core (no browser download).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1 || echo "could not install chromium; the frontend test will skip"
fi
if command -v npm >/dev/null && [ ! -d tests/integration/frontend/node_modules/playwright-core ]; then
  (cd tests/integration/frontend && npm install --no-audit --no-fund --silent) || echo "npm install failed; the frontend test will skip"
fi
