#!/usr/bin/env bash
# Runs the spinning shared-memory loads again and again on one router until
# one of them stops making progress (a hang), or ROUNDS pass.
#
# Found the lost wake-up of issue 16 (see `src/shard/shm_accept.rs`,
# `Spinners`): with the shard spinning (`shm.spin_us`, `runtime.spin_us`) and
# its thread descheduled at the wrong moment, the router parked with every
# session runnable and a publisher waiting for room. HOG=1 runs a busy loop
# on the router's core, so that the thread is descheduled often (the
# original hang needed a loaded machine).
#
# Usage: perf/shm-spin-stress.sh                 (ROUNDS=30 HOG=0)
#        ROUNDS=20 HOG=1 BIN=path/to/weft perf/shm-spin-stress.sh
#        ROUTER_BIN=path/to/older/weft perf/shm-spin-stress.sh  (that router,
#        driven by BIN's bench)
# KEEP=1 leaves the router, the bench and the hog running after a hang, for
# a look at them.
# Exit status: 0 no hang, 1 a hang (the state of both processes is printed:
# threads, wait channels, the rings' indices and flags), 2 set-up failed.
# Ports: NATS 24222, MQTT 24883, admin 24280 on 127.0.0.1.
set -uo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-target/release/weft}
ROUNDS=${ROUNDS:-30}
HOG=${HOG:-0}
ROUTER_CORE=${ROUTER_CORE:-1}
CLIENT_CORE=${CLIENT_CORE:-0}
STALL_S=${STALL_S:-40}
[ -x "$BIN" ] || cargo build --release >&2 || exit 2
WORK=$(mktemp -d /tmp/weft-shm-stress.XXXXXX)
SOCK=$WORK/router.sock
ROUTER="" HOGPID=""
cleanup() {
    [ -n "$HOGPID" ] && kill "$HOGPID" 2>/dev/null
    [ -n "$ROUTER" ] && kill "$ROUTER" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/router.toml" <<TOML
[nats]
listen = "127.0.0.1:24222"
[admin]
listen = "127.0.0.1:24280"
[shm]
spin_us = 1000
[runtime]
spin_us = 1000
TOML
taskset -c "$ROUTER_CORE" "${ROUTER_BIN:-$BIN}" run --config "$WORK/router.toml" --shards 1 --cores "$ROUTER_CORE" \
    --mqtt-listen 127.0.0.1:24883 --shm-listen "$SOCK" --log-level warn \
    >"$WORK/router.out" 2>"$WORK/router.err" &
ROUTER=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
[ -S "$SOCK" ] || { echo "the router did not listen:" >&2; cat "$WORK/router.err" >&2; exit 2; }
if [ "$HOG" = 1 ]; then
    taskset -c "$ROUTER_CORE" bash -c 'while :; do :; done' &
    HOGPID=$!
fi

# The rings of every segment a process maps: indices and flags.
rings() {
    python3 - "$1" <<'PY'
import struct, sys
pid = sys.argv[1]
mem = open(f"/proc/{pid}/mem", "rb")
for line in open(f"/proc/{pid}/maps"):
    if "memfd:weft-shm" not in line:
        continue
    start = int(line.split("-")[0], 16)
    mem.seek(start)
    h = mem.read(4096)
    for name, off in (("c2r", 128), ("r2c", 640)):
        tail, head = struct.unpack_from("<Q", h, off)[0], struct.unpack_from("<Q", h, off + 128)[0]
        sleeping, waiting = struct.unpack_from("<I", h, off + 256)[0], struct.unpack_from("<I", h, off + 384)[0]
        print(f"  {hex(start)} {name}: used {tail - head} consumer_sleeping {sleeping} producer_waiting {waiting}")
PY
}

MODES=("--msgs 500000" "--rate 100000 --duration 2" "--rate 100000 --duration 2 --spin-us 50"
    "--msgs 500000 --spin-us 50" "--rate 100000 --duration 2 --spin-us 50 --one-thread")
for round in $(seq "$ROUNDS"); do
    for mode in "${MODES[@]}"; do
        # shellcheck disable=SC2086
        "$BIN" bench --no-progress --pin-cores "$CLIENT_CORE" --size 64 --pubs 1 --subs 1 \
            --transport shm --protocol nats --server "$SOCK" $mode --json "$WORK/last.json" \
            >"$WORK/bench.out" 2>&1 &
        bench=$!
        for _ in $(seq $((STALL_S * 10))); do kill -0 "$bench" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$bench" 2>/dev/null; then
            echo "HANG: round $round, weft bench $mode (no end after ${STALL_S} s)"
            for p in "$ROUTER" "$bench"; do
                for t in /proc/"$p"/task/*; do
                    echo "  $(cat "$t/comm") $(cat "$t/wchan")"
                done
                rings "$p"
            done
            if [ "${KEEP:-0}" = 1 ]; then
                trap - EXIT
                echo "KEEP=1: left running: router $ROUTER, bench $bench, hog ${HOGPID:-none}, work $WORK"
                exit 1
            fi
            kill "$bench"
            exit 1
        fi
        wait "$bench" || { echo "round $round, $mode: weft bench failed"; tail -5 "$WORK/bench.out"; exit 1; }
        lost=$(jq '.totals.lost' "$WORK/last.json")
        echo "round $round, $mode: ok (lost $lost)"
    done
done
echo "no hang in $ROUNDS rounds (HOG=$HOG); the watchdog's wakes:"
curl -s -m 3 127.0.0.1:24280/metrics | grep '^weft_shm_spin_rescues_total'
