#!/usr/bin/env bash
# Where an idle MQTT connection's bytes go: a heap profile (heaptrack) of
# the release router holding N idle MQTT 3.1.1 connections (CONNECT,
# CONNACK, keep-alive 0; `weft-load --hold-idle`, as perf/memory.sh).
#
# The router runs with WEFT_ALLOCATOR=system (src/main.rs: the C library's
# malloc instead of mimalloc, so that heaptrack's LD_PRELOAD sees every
# allocation) under heaptrack, 1 shard on core 0. Once the connections are
# held, the router is killed (SIGKILL): what heaptrack reports as leaked is
# what the router held at that moment; the startup's share is measured the
# same way with no connection (N=0 run) and subtracted by the reader.
#
# Usage: BIN=dir/with/weft+weft-load perf/heap-idle.sh [N]   (default 2000)
# Prints heaptrack_print's summary and its largest leak sites; the raw
# profile stays in OUT (default /tmp/weft-heap-idle).
# Needs heaptrack (Debian: apt-get install heaptrack).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
BIN=${BIN:?BIN=dir with weft and weft-load}
OUT=${OUT:-/tmp/weft-heap-idle}
PORT=${PORT:-18861}
mkdir -p "$OUT"
source perf/lib.sh
command -v heaptrack >/dev/null || { echo "heaptrack missing (apt-get install heaptrack)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

profile() { # n
    local n=$1 file="$OUT/idle-$1" ht router
    rm -f "$file".*
    printf '[limits]\nconnections_max = 100000\n' >"$WORK/weft.toml"
    WEFT_ALLOCATOR=system taskset -c 0 heaptrack -o "$file" "$BIN/weft" run --config "$WORK/weft.toml" \
        --mqtt-listen 127.0.0.1:$PORT --nats-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --shards 1 --cores 0 --log-level warn >"$WORK/heaptrack.log" 2>&1 &
    ht=$!
    wait_port $PORT
    sleep 0.5
    router=$(pgrep -P "$ht" -x weft || pgrep -P "$ht" | head -1)
    if [ "$n" -gt 0 ]; then
        rm -f "$WORK/ctl"; mkfifo "$WORK/ctl"
        taskset -c 1 "$BIN/weft-load" --port $PORT --hold-idle "$n" <"$WORK/ctl" >"$WORK/hold.out" 2>"$WORK/hold.err" &
        local loader=$!
        exec 3>"$WORK/ctl"
        until grep -q READY "$WORK/hold.out" 2>/dev/null; do
            kill -0 $loader 2>/dev/null || { cat "$WORK/hold.err" >&2; return 1; }
            sleep 0.1
        done
        sleep 1
        echo "router RSS with $n idle connections (glibc malloc under heaptrack): $(rss_kib "$router") KiB" >&2
        kill -9 "$router"
        exec 3>&-
        wait $loader 2>/dev/null || true
    else
        sleep 1
        kill -9 "$router"
    fi
    wait "$ht" 2>/dev/null || true
    ls "$file".* >/dev/null
}

profile 0
profile "$N"
for n in 0 "$N"; do
    f=$(ls "$OUT/idle-$n".*)
    heaptrack_print -f "$f" --print-leaks 1 --print-peaks 0 --print-allocators 0 \
        --print-temporary 0 --print-histogram "$OUT/histogram-$n.txt" >"$OUT/print-$n.txt" 2>/dev/null || true
    echo "== $n idle connections: $f (full report: $OUT/print-$n.txt)"
    grep -E '^(total runtime|calls to allocation|peak heap memory|total memory leaked)' "$OUT/print-$n.txt" || true
done
echo "== the largest leak sites with $N connections (held at the kill):"
awk '/^MEMORY LEAKS/ {on = 1} on' "$OUT/print-$N.txt" | head -n "${LINES_SHOWN:-150}"
