#!/usr/bin/env bash
# What tests/browser.rs and tests/console.rs need, installed when missing
# (idempotent; called by scripts/test.sh): Debian's chromium at
# /usr/bin/chromium (or $WEFT_CHROMIUM), node >= 18 with npm, and
# tests/browser/node_modules as its package-lock.json pins it (puppeteer-core, mqtt, nats.ws).
# puppeteer-core downloads no browser: the test drives Debian's.
# Exits non-zero naming what is still missing; scripts/test.sh makes that
# fatal in CI and a visible skip elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium=${WEFT_CHROMIUM:-/usr/bin/chromium}
dir=tests/browser
stamp=$dir/node_modules/.weft-package-lock.sha256

missing=()
# Debian's chromium only where no other browser was named.
[ -x "$chromium" ] || [ -n "${WEFT_CHROMIUM:-}" ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
        # No questions: CI has no terminal.
        apt=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get)
        "${apt[@]}" install -y "${missing[@]}" ||
            { "${apt[@]}" update && "${apt[@]}" install -y "${missing[@]}"; } ||
            true # what is still missing is named below
    fi
fi

still=()
[ -x "$chromium" ] || still+=("chromium (Debian/Ubuntu: apt-get install chromium; or set WEFT_CHROMIUM)")
command -v node >/dev/null || still+=("node >= 18 (apt-get install nodejs)")
command -v npm >/dev/null || still+=("npm (apt-get install npm)")
if [ ${#still[@]} -gt 0 ]; then
    for what in "${still[@]}"; do
        echo "scripts/browser-setup.sh: missing $what" >&2
    done
    exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
    echo "scripts/browser-setup.sh: node $(node --version) is too old: puppeteer-core needs >= 18" >&2
    exit 1
fi
if ! "$chromium" --version >/dev/null 2>&1; then
    echo "scripts/browser-setup.sh: $chromium --version failed: the browser does not start" >&2
    exit 1
fi

# npm ci when node_modules is missing or was installed from another lock.
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    if ! (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error); then
        echo "scripts/browser-setup.sh: npm ci in $dir failed (above)" >&2
        exit 1
    fi
    echo "$want" >"$stamp"
fi
