#!/usr/bin/env bash
# The one test command (README, .ci/run): style, lints, then every test.
# Tests start the real `weft` binary on 127.0.0.1 ports and drive it with
# rumqttc and raw sockets; nothing else needs installing for them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --locked
