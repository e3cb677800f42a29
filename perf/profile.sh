#!/usr/bin/env bash
# Where weft's time goes for 1 publisher -> 1 subscriber, QoS 0, 64 B.
#
# 1. perf record (software cpu-clock sampling: this VM has no hardware
#    counters) of the weft process during a weft-load run, then perf report.
# 2. callgrind instruction counts: weft under valgrind for two runs of
#    M1 and M2 messages; (Ir(M2) - Ir(M1)) / (M2 - M1) = instructions per
#    message, without the start-up cost. Top functions from callgrind_annotate.
#
# Usage: perf/profile.sh    (env: MSGS=2000000 M1=50000 M2=250000; OUT=dir)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release
MSGS=${MSGS:-2000000}
M1=${M1:-50000}
M2=${M2:-250000}
OUT=${OUT:-$(mktemp -d)}
PORT=${PORT:-18851}
mkdir -p "$OUT"
cargo build --release --bin weft --bin weft-load >&2

wait_port() {
    for _ in $(seq 400); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

if command -v perf >/dev/null; then
    "$BIN/weft" run --mqtt-listen 127.0.0.1:$PORT --shards 1 --cores 0 --log-level warn >"$OUT/weft.log" 2>&1 &
    W=$!
    wait_port $PORT
    perf record -F 4999 -e cpu-clock -g --call-graph dwarf,16384 -p $W -o "$OUT/perf.data" >/dev/null 2>&1 &
    P=$!
    sleep 0.5
    "$BIN/weft-load" --port $PORT --messages "$MSGS" --pin-core 1 | tee "$OUT/perf-load.txt"
    kill -INT $P; wait $P || true
    kill $W; wait $W || true
    perf report -i "$OUT/perf.data" --no-children --percent-limit 1 --stdio -g none \
        --sort symbol 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40 | tee "$OUT/perf-top.txt"
fi

if command -v valgrind >/dev/null; then
    for m in "$M1" "$M2"; do
        PORT=$((PORT + 1))
        valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$m" \
            "$BIN/weft" run --mqtt-listen 127.0.0.1:$PORT --shards 1 --cores 0 --log-level warn \
            >"$OUT/vg-$m.log" 2>&1 &
        W=$!
        wait_port $PORT
        sleep 1
        "$BIN/weft-load" --port $PORT --messages "$m" --pin-core 1 --quiet-ms 20000 >"$OUT/vg-load-$m.txt"
        grep RESULT "$OUT/vg-load-$m.txt"
        kill -INT $W; wait $W || true
    done
    ir() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
    i1=$(ir "$OUT/callgrind.$M1"); i2=$(ir "$OUT/callgrind.$M2")
    echo "callgrind: Ir($M1 msgs) = $i1, Ir($M2 msgs) = $i2, instructions per message = $(( (i2 - i1) / (M2 - M1) ))"
    callgrind_annotate --inclusive=no "$OUT/callgrind.$M2" 2>/dev/null | sed -n '/file:function/,$p' | head -30 \
        | tee "$OUT/callgrind-top.txt"
fi
echo "outputs in $OUT"
