#!/usr/bin/env bash
# Resident memory of the release weft binary (and mosquitto, for reference):
#  (a) per idle MQTT connection: VmRSS before/after N idle connections
#      (CONNECT, CONNACK, keep-alive 0), delta / N;
#  (b) per subscription: VmRSS before/after SUBS distinct filters
#      `site/{i/1000}/dev/{i%1000}/temp` subscribed by CONNS connections
#      (64 filters per SUBSCRIBE), delta / SUBS.
# Each measurement uses a fresh broker process (1 shard on core 0).
#
# Usage: perf/memory.sh        (env: CONNS_IDLE=10000 SUBS=1000000 SUB_CONNS=16
#                                    MOSQUITTO=1 to include mosquitto)
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS_IDLE=${CONNS_IDLE:-10000}
SUBS=${SUBS:-1000000}
SUB_CONNS=${SUB_CONNS:-16}
WITH_MOSQUITTO=${MOSQUITTO:-1}
PORT=${PORT:-18841}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((CONNS_IDLE + 100)) ] || { echo "ulimit -n too low for $CONNS_IDLE connections" >&2; exit 1; }

cargo build --release --bin weft --bin weft-load >&2

# WORK, BROKER, cleanup at exit, rss_kib, wait_port
source perf/lib.sh

start_broker() { # weft|mosquitto
    PORT=$((PORT + 1))
    if [ "$1" = weft ]; then
        "$BIN/weft" run --mqtt-listen 127.0.0.1:$PORT --nats-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --shards 1 --cores 0 --log-level warn >"$WORK/broker.log" 2>&1 &
    else
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type error\n' $PORT >"$WORK/m.conf"
        taskset -c 0 mosquitto -c "$WORK/m.conf" >"$WORK/broker.log" 2>&1 &
    fi
    BROKER=$!
    wait_port $PORT
    # Let the idle connection of wait_port be accepted and closed.
    sleep 0.5
}

stop_broker() { kill "$BROKER"; wait "$BROKER" 2>/dev/null || true; BROKER=""; }

# hold ARGS... : runs weft-load in a hold mode, prints "rss_before rss_after"
hold() {
    local before after
    rm -f "$WORK/ctl"; mkfifo "$WORK/ctl"
    before=$(rss_kib "$BROKER")
    taskset -c 1 "$BIN/weft-load" --port $PORT "$@" <"$WORK/ctl" >"$WORK/hold.out" 2>"$WORK/hold.err" &
    local loader=$!
    exec 3>"$WORK/ctl"
    while ! grep -q READY "$WORK/hold.out" 2>/dev/null; do
        if ! kill -0 $loader 2>/dev/null; then echo "weft-load failed:" >&2; cat "$WORK/hold.err" >&2; exec 3>&-; return 1; fi
        sleep 0.2
    done
    sleep 1
    after=$(rss_kib "$BROKER")
    exec 3>&-
    wait $loader || true
    echo "$before $after"
}

echo "# $(date -u +%FT%TZ)  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
printf '%-10s %-28s %12s %12s %14s\n' broker measurement rss_before rss_after bytes_per_item
brokers=(weft); [ "$WITH_MOSQUITTO" = 1 ] && command -v mosquitto >/dev/null && brokers+=(mosquitto)
for b in "${brokers[@]}"; do
    start_broker "$b"
    read -r r0 r1 < <(hold --hold-idle "$CONNS_IDLE")
    sleep 1
    r2=$(rss_kib "$BROKER")
    printf '%-10s %-28s %9s KiB %9s KiB %14s\n' "$b" "idle connections x$CONNS_IDLE" "$r0" "$r1" \
        "$(awk -v a="$r0" -v b="$r1" -v n="$CONNS_IDLE" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}')"
    printf '%-10s %-28s %9s KiB\n' "$b" "  after they closed" "$r2"
    stop_broker

    start_broker "$b"
    read -r r0 r1 < <(hold --hold-subs "$SUBS" --hold-conns "$SUB_CONNS")
    printf '%-10s %-28s %9s KiB %9s KiB %14s\n' "$b" "subscriptions x$SUBS" "$r0" "$r1" \
        "$(awk -v a="$r0" -v b="$r1" -v n="$SUBS" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}')"
    sleep 1
    printf '%-10s %-28s %9s KiB\n' "$b" "  after they closed" "$(rss_kib "$BROKER")"
    stop_broker
done
echo "(filters: site/{i/1000}/dev/{i%1000}/temp over $SUB_CONNS connections; RSS from /proc/PID/status)"
