#!/usr/bin/env bash
# What the console's browser test needs: Debian's Chromium (the test drives it headless) and
# Node.js with playwright-core from the npm registry (tests/console/package-lock.json). Installs
# whatever is missing; never downloads a browser of Playwright's own.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-browser: installing ${missing[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi

console="$root/tests/console"
stamp="$console/node_modules/.kestrel-lock"
if ! cmp -s "$console/package-lock.json" "$stamp" 2>/dev/null; then
  echo "setup-browser: npm ci in tests/console" >&2
  npm ci --prefix "$console" --no-audit --no-fund >&2
  cp "$console/package-lock.json" "$stamp"
fi
