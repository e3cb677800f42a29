#!/usr/bin/env bash
# The one test command (README, .ci/run): style, lints, then every test.
# Tests start the real `weft` binary on 127.0.0.1 ports and drive it with
# third-party clients: rumqttc and async-nats (Rust, from crates.io) and
# nats-py (Python, installed here into .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

# No import cycles in src/ (issue #11, item 6): checked first, it takes a
# second and needs only python3 (as the venv below does).
if ! scripts/import-cycles.sh; then
    echo "scripts/test.sh: FAILED: import cycles in src/ (listed above)" >&2
    exit 1
fi

venv=.venv
if ! "$venv/bin/python" -c 'import nats, nkeys, paho.mqtt, requests, cloudevents, proton' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/py/requirements.txt
fi
export WEFT_PYTHON="$PWD/$venv/bin/python"

# The README's walkthroughs (tests/readme.rs) run weft pub / weft sub,
# curl and openssl, as a reader would.
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
# tests/pubsub_cli.rs runs weft pub / weft sub against mosquitto and
# nats-server too (daemons: Debian puts them in /usr/sbin).
for peer in mosquitto nats-server; do
    command -v $peer >/dev/null || [ -x /usr/sbin/$peer ] || missing+=($peer)
done
# tests/mesh_netns.rs makes network namespaces and veth pairs (root only).
[ "$(id -u)" != 0 ] || command -v ip >/dev/null || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
        $SUDO apt-get install -y "${missing[@]}" ||
            { $SUDO apt-get update && $SUDO apt-get install -y "${missing[@]}"; } ||
            echo "scripts/test.sh: could not install ${missing[*]}; the tests that need them will fail" >&2
    else
        echo "scripts/test.sh: the tests need ${missing[*]}: install them" \
            "(Debian/Ubuntu: sudo apt-get install ${missing[*]}); it fails without them" >&2
    fi
fi

# tests/browser.rs drives MQTT.js and nats.ws in headless Chromium
# (Debian's chromium, puppeteer-core and the clients from npm), and
# tests/console.rs the admin console in the same browser: installed here. Without them the test skips visibly, and in CI the run fails.
if ! scripts/browser-setup.sh; then
    if [ "${CI:-}" = true ]; then
        echo "scripts/test.sh: FAILED: scripts/browser-setup.sh (above)" >&2
        exit 1
    fi
    echo "scripts/test.sh: tests/browser.rs and tests/console.rs cannot run here (above); they will report a skip" >&2
fi

# tests/amqp_interop.rs runs the AMQP 1.0 client scripts (tests/amqp/)
# against a private RabbitMQ node as the reference: Debian's
# rabbitmq-server, installed here. Without it that test skips visibly, and
# in CI the run fails.
if ! scripts/rabbitmq-setup.sh; then
    if [ "${CI:-}" = true ]; then
        echo "scripts/test.sh: FAILED: scripts/rabbitmq-setup.sh (above)" >&2
        exit 1
    fi
    echo "scripts/test.sh: tests/amqp_interop.rs cannot use RabbitMQ here (above); it will report a skip" >&2
fi

# A test that cannot run here (tests/mesh_netns.rs without root or
# iproute2, tests/browser.rs and tests/console.rs without their browser,
# tests/pubsub_cli.rs without mosquitto or nats-server, tests/packaging.rs
# without systemd-analyze) appends a line to this file; they are
# printed at the end, after cargo's summary, so that a skip never reads as
# a pass. In CI (CI=true, root on a machine that can make namespaces and
# install packages) such a test fails instead.
WEFT_SKIP_REPORT=$(mktemp)
export WEFT_SKIP_REPORT
if [ "${CI:-}" = true ]; then export WEFT_NETNS_REQUIRED=1 WEFT_BROWSER_REQUIRED=1 WEFT_RABBITMQ_REQUIRED=1 WEFT_SYSTEMD_REQUIRED=1; fi
report_skips() {
    if [ -s "$WEFT_SKIP_REPORT" ]; then
        echo
        sed 's/^/SKIPPED: /' "$WEFT_SKIP_REPORT"
        echo "($(wc -l <"$WEFT_SKIP_REPORT") test(s) above did not run: their passes mean nothing)"
    fi
    rm -f "$WEFT_SKIP_REPORT"
}
trap report_skips EXIT

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
