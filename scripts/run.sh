#!/usr/bin/env bash
# Runs the router on embedded defaults (MQTT on 127.0.0.1:1883, one shard
# per core); extra arguments go to `weft run` (see `weft run --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --bin weft -- run "$@"
