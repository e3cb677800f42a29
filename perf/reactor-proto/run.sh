#!/usr/bin/env bash
# Alternates reactor-proto's runtimes REPS times at each window: per run,
# the echo server under `perf stat` (its system calls, io_uring_enter
# calls, context switches and CPU time; startup included, a few hundred
# calls against ~10^5-10^6 messages) on core 1, the client on core 0.
# Prints one markdown row per run. Env: REPS (3), SECS (3), WINDOWS
# ("1 32"), RUNTIMES, PORT (base, one per run against TIME_WAIT).
set -euo pipefail
cd "$(dirname "$0")"
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/reactor-proto
REPS=${REPS:-3}
SECS=${SECS:-3}
WINDOWS=${WINDOWS:-"1 32"}
RUNTIMES=${RUNTIMES:-"glommio compio compio-defer compio-multishot compio-sqpoll"}
PORT=${PORT:-47100}
cargo build --release --quiet
STAT=$(mktemp)
trap 'rm -f "$STAT"' EXIT
echo "| rep | window | runtime | msgs/s | p50 µs | p99 µs | p99.9 µs | syscalls/msg | io_uring_enter/msg | ctx sw/msg | server CPU ns/msg |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for rep in $(seq 1 "$REPS"); do
  for window in $WINDOWS; do
    for runtime in $RUNTIMES; do
      PORT=$((PORT + 1))
      perf stat -x, -o "$STAT" \
        -e raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,context-switches,task-clock \
        -- "$BIN" server "$runtime" "$PORT" 1 &
      server=$!
      line=$("$BIN" client "$PORT" 0 "$SECS" "$window")
      wait "$server"
      # msgs=N total=N rate=R p50_us=A p99_us=B p999_us=C
      eval "$(echo "$line" | tr ' ' '\n' | sed 's/^/r_/')"
      count() { awk -F, -v e="$1" '$3 ~ e { print $1; exit }' "$STAT"; }
      sys=$(count '^raw_syscalls:sys_enter')
      enter=$(count 'io_uring_enter')
      cs=$(count '^context-switches')
      cpu_ms=$(count '^task-clock')
      awk -v rep="$rep" -v w="$window" -v rt="$runtime" -v rate="$r_rate" \
        -v p50="$r_p50_us" -v p99="$r_p99_us" -v p999="$r_p999_us" -v total="$r_total" \
        -v sys="$sys" -v enter="$enter" -v cs="$cs" -v cpu="$cpu_ms" 'BEGIN {
          printf "| %s | %s | %s | %.0f | %.1f | %.1f | %.1f | %.2f | %.2f | %.3f | %.0f |\n",
            rep, w, rt, rate, p50, p99, p999, sys / total, enter / total, cs / total, cpu * 1e6 / total }'
    done
  done
done
