#!/usr/bin/env bash
# Runs weft's fuzz targets (fuzz/, cargo-fuzz + libFuzzer) for a given time
# each. Not part of the test suite; its findings become unit tests there.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#   SECONDS  fuzzing time per target (default 60)
#   TARGET   the targets to run (default: all of TARGETS below)
# Environment:
#   FUZZ_JOBS       targets fuzzed at the same time (default 1)
#   FUZZ_SANITIZER  address, none, ... (default none: the fuzzed code is safe
#                   Rust, so ASan finds nothing a panic would not, at half
#                   the speed; panics, overflow checks and debug_assert!s
#                   are all on)
#   CARGO_TARGET_DIR  where to build (default fuzz/target)
#
# Toolchain: the project's stable Rust. cargo-fuzz passes nightly-only flags
# (-Z, -C passes=sancov-module), which stable accepts with RUSTC_BOOTSTRAP=1;
# no nightly needed. Installs cargo-fuzz (crates.io) and a C++ compiler
# (libfuzzer-sys builds libFuzzer) when missing.
#
# The corpus of each target is fuzz/corpus/<target>: the committed seeds
# (seed-*, written by `WEFT_FUZZ_WRITE_SEEDS=1 cargo test` in fuzz/) plus
# what libFuzzer adds there, which git ignores and later runs start from.
# A crash or hang is saved in fuzz/artifacts/<target>/; replay it with
# `cargo fuzz run <target> <file>` (same environment), or copy it into the
# corpus folder and run `cargo test` in fuzz/.
set -euo pipefail
cd "$(dirname "$0")/.."

# Every target, in the order they run: the decoders and naming rules, then
# the session machines fed scripts of packets (see README, "Fuzzing").
TARGETS=(mqtt311_decode mqtt5_decode nats_decode link_decode amqp_message topic subject
    mqtt_session nats_session link_session ws_decode amqp_decode)

seconds=${1:-60}
shift || true
if [ $# -gt 0 ]; then
    TARGETS=("$@")
fi
case $seconds in
'' | *[!0-9]*)
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
    exit 2
    ;;
esac

if ! command -v c++ >/dev/null; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    $SUDO apt-get install -y g++ || { $SUDO apt-get update && $SUDO apt-get install -y g++; }
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --version '^0.13' --locked
fi

export RUSTC_BOOTSTRAP=1
sanitizer=${FUZZ_SANITIZER:-none}
jobs=${FUZZ_JOBS:-1}
build=(--sanitizer "$sanitizer")
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    build+=(--target-dir "$CARGO_TARGET_DIR")
fi

# Build every target first (one build of weft), then fuzz.
for target in "${TARGETS[@]}"; do
    cargo fuzz build "${build[@]}" "$target"
done

mkdir -p fuzz/logs
run() {
    local target=$1
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    # -timeout: an input taking over 10 s is a hang, saved like a crash.
    cargo fuzz run "${build[@]}" "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" \
        >"fuzz/logs/$target.log" 2>&1 || true
}

running=0
for target in "${TARGETS[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    echo "fuzzing $target for ${seconds}s (log: fuzz/logs/$target.log)"
    run "$target" &
    running=$((running + 1))
done
wait

# One line per target: executions, time, corpus size, crashes and hangs.
failed=0
printf '%-16s %12s %8s %8s %8s\n' target executions seconds corpus found
for target in "${TARGETS[@]}"; do
    log=fuzz/logs/$target.log
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    time=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    found=$(find "fuzz/artifacts/$target" -type f | wc -l)
    printf '%-16s %12s %8s %8s %8s\n' "$target" "${execs:-?}" "${time:-?}" "$corpus" "$found"
    if [ "$found" -gt 0 ] || [ -z "$execs" ]; then
        failed=1
        grep -m1 -E 'panicked|ERROR: libFuzzer' "$log" || tail -5 "$log"
        find "fuzz/artifacts/$target" -type f
    fi
done
exit "$failed"
