#!/usr/bin/env bash
# The one test command (README, .ci/run): style, lints, then every test.
# Tests start the real `weft` binary on 127.0.0.1 ports and drive it with
# third-party clients: rumqttc and async-nats (Rust, from crates.io) and
# nats-py (Python, installed here into .venv).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
if ! "$venv/bin/python" -c 'import nats, paho.mqtt' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/py/requirements.txt
fi
export WEFT_PYTHON="$PWD/$venv/bin/python"

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
