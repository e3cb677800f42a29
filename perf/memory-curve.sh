#!/usr/bin/env bash
# Resident memory of the release weft binary over one wave of idle clients:
# VmRSS at start, with CONNS idle MQTT connections held (CONNECT, CONNACK,
# keep-alive 0), and 1, 5 and 15 s after they all closed. Shows whether the
# router gives memory back to the OS once its clients leave.
#
# Usage: perf/memory-curve.sh        (env: CONNS=10000 SHARDS=2 CORES=0,1
#                                          ROUNDS=1 BIN=dir/with/weft+weft-load)
# Without BIN it builds the release binaries into $CARGO_TARGET_DIR.
# ROUNDS > 1 repeats connect/close on the same process (the curve of each
# round), to show that memory does not ratchet up across waves.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-10000}
SHARDS=${SHARDS:-2}
CORES=${CORES:-0,1}
ROUNDS=${ROUNDS:-1}
PORT=${PORT:-18861}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((CONNS + 100)) ] || { echo "ulimit -n too low for $CONNS connections" >&2; exit 1; }

if [ -z "${BIN:-}" ]; then
    cargo build --release --bin weft --bin weft-load >&2
    BIN=$CARGO_TARGET_DIR/release
fi
WEFT=$BIN/weft

# WORK, BROKER, cleanup at exit, rss_kib, wait_port
source perf/lib.sh

"$WEFT" run --mqtt-listen 127.0.0.1:$PORT --shards "$SHARDS" --cores "$CORES" --log-level warn >"$WORK/broker.log" 2>&1 &
BROKER=$!
wait_port $PORT
sleep 1

echo "# $(date -u +%FT%TZ)  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "# weft $("$WEFT" --version 2>/dev/null || echo '?') ($WEFT), $SHARDS shards on cores $CORES, $CONNS idle connections per round"
printf '%-6s %12s %12s %12s %12s %12s\n' round start_KiB held_KiB after_1s_KiB after_5s_KiB after_15s_KiB
for round in $(seq "$ROUNDS"); do
    start=$(rss_kib "$BROKER")
    rm -f "$WORK/ctl"; mkfifo "$WORK/ctl"
    "$BIN/weft-load" --port $PORT --hold-idle "$CONNS" <"$WORK/ctl" >"$WORK/hold.out" 2>"$WORK/hold.err" &
    loader=$!
    exec 3>"$WORK/ctl"
    while ! grep -q READY "$WORK/hold.out" 2>/dev/null; do
        if ! kill -0 $loader 2>/dev/null; then echo "weft-load failed:" >&2; cat "$WORK/hold.err" >&2; exit 1; fi
        sleep 0.2
    done
    sleep 1
    held=$(rss_kib "$BROKER")
    exec 3>&-
    wait $loader || true
    closed_at=$(date +%s.%N)
    at() { # seconds since the clients closed
        sleep "$(awk -v t0="$closed_at" -v s="$1" -v now="$(date +%s.%N)" 'BEGIN {d = t0 + s - now; print (d > 0 ? d : 0)}')"
        rss_kib "$BROKER"
    }
    a1=$(at 1); a5=$(at 5); a15=$(at 15)
    printf '%-6s %12s %12s %12s %12s %12s\n' "$round" "$start" "$held" "$a1" "$a5" "$a15"
done
echo "(VmRSS from /proc/PID/status; clients from weft-load --hold-idle on the same host)"
