#!/usr/bin/env bash
# Resident memory of the release weft binary (and mosquitto, for reference):
#  (a) per idle MQTT connection: VmRSS before/after N idle connections
#      (CONNECT, CONNACK, keep-alive 0), delta / N;
#  (b) per subscription: VmRSS before/after SUBS distinct filters
#      `site/{i/1000}/dev/{i%1000}/temp` subscribed by CONNS connections
#      (64 filters per SUBSCRIBE), delta / SUBS.
# Each measurement uses a fresh broker process (1 shard on core 0). Also
# printed: the seconds the loader took to be READY (connect, or subscribe
# and get every SUBACK), and VmRSS 1 s after the clients closed (what the
# broker gave back).
#
# Usage: perf/memory.sh        (env: CONNS_IDLE=10000 SUBS=200000 SUB_CONNS=16
#                                    MOSQUITTO=1 to include mosquitto,
#                                    BIN=dir/with/weft+weft-load to skip the
#                                    build, LABEL=name for the weft rows,
#                                    SKIP_IDLE=1 / SKIP_SUBS=1, PUB_MESSAGES=N:
#                                    while the filters are held, one QoS 0
#                                    publisher sends N 64-byte messages to one
#                                    subscriber of another topic: its rate)
# Past ~28,000 idle connections one source address runs out of ephemeral
# ports: weft-load spreads them over 127.0.0.1..127.0.0.N (--source-ips).
# As root the descriptor limit is raised to what the run needs.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS_IDLE=${CONNS_IDLE:-10000}
SUBS=${SUBS:-200000}
# 16 connections; past 1,000,000 filters, 62,500 each (under limits.subscriptions_per_session_max)
SUB_CONNS=${SUB_CONNS:-$(( SUBS > 1000000 ? (SUBS + 62499) / 62500 : 16 ))}
WITH_MOSQUITTO=${MOSQUITTO:-1}
LABEL=${LABEL:-weft}
PORT=${PORT:-18841}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
NEED_FDS=$((CONNS_IDLE + 1000))
if [ "$(ulimit -Hn)" -lt "$NEED_FDS" ] && [ "$(id -u)" = 0 ]; then ulimit -Hn "$NEED_FDS" 2>/dev/null || true; fi
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((CONNS_IDLE + 100)) ] || { echo "ulimit -n too low for $CONNS_IDLE connections" >&2; exit 1; }
SOURCE_IPS=$(( (CONNS_IDLE + 24999) / 25000 ))

if [ -z "${BIN:-}" ]; then
    cargo build --release --bin weft --bin weft-load >&2
    BIN=$CARGO_TARGET_DIR/release
fi
LOADER=${LOADER:-$BIN/weft-load}
IPS_ARG=(); [ "$SOURCE_IPS" -gt 1 ] && IPS_ARG=(--source-ips "$SOURCE_IPS")

# WORK, BROKER, cleanup at exit, rss_kib, wait_port
source perf/lib.sh

start_broker() { # weft|mosquitto
    PORT=$((PORT + 1))
    if [ "$1" = weft ]; then
        # limits.connections_max (default 100,000) above the run's connections.
        printf '[limits]\nconnections_max = %d\n' $((CONNS_IDLE > 99000 ? CONNS_IDLE + 1000 : 100000)) >"$WORK/weft.toml"
        "$BIN/weft" run --config "$WORK/weft.toml" --mqtt-listen 127.0.0.1:$PORT --nats-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --shards 1 --cores 0 --log-level warn >"$WORK/broker.log" 2>&1 &
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

# hold ARGS... : runs weft-load in a hold mode, prints
# "rss_before rss_after seconds_to_ready"
hold() {
    local before after t0 t1
    rm -f "$WORK/ctl"; mkfifo "$WORK/ctl"
    before=$(rss_kib "$BROKER")
    t0=$(date +%s.%N)
    taskset -c 1 "$LOADER" --port $PORT "$@" <"$WORK/ctl" >"$WORK/hold.out" 2>"$WORK/hold.err" &
    local loader=$!
    exec 3>"$WORK/ctl"
    while ! grep -q READY "$WORK/hold.out" 2>/dev/null; do
        if ! kill -0 $loader 2>/dev/null; then echo "weft-load failed:" >&2; cat "$WORK/hold.err" >&2; exec 3>&-; return 1; fi
        sleep 0.1
    done
    t1=$(date +%s.%N)
    sleep 1
    after=$(rss_kib "$BROKER")
    if [ "${PUB_MESSAGES:-0}" -gt 0 ] && [ "$1" = --hold-subs ]; then
        taskset -c 1 "$LOADER" --port $PORT --topic probe/x --messages "$PUB_MESSAGES" --quiet-ms 1000 \
            2>/dev/null | awk '/^RESULT/ {for (i = 2; i <= NF; i++) if ($i ~ /^recv_rate=/) print substr($i, 11)}' >"$WORK/rate"
    fi
    exec 3>&-
    wait $loader || true
    echo "$before $after $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}')"
}

echo "# $(date -u +%FT%TZ)  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
printf '%-14s %-28s %12s %12s %14s %8s\n' broker measurement rss_before rss_after bytes_per_item ready_s
brokers=(weft); [ "$WITH_MOSQUITTO" = 1 ] && command -v mosquitto >/dev/null && brokers+=(mosquitto)
for b in "${brokers[@]}"; do
    name=$b; [ "$b" = weft ] && name=$LABEL
    if [ "${SKIP_IDLE:-0}" != 1 ]; then
        start_broker "$b"
        read -r r0 r1 secs < <(hold --hold-idle "$CONNS_IDLE" "${IPS_ARG[@]}")
        sleep 1
        r2=$(rss_kib "$BROKER")
        printf '%-14s %-28s %9s KiB %9s KiB %14s %8s\n' "$name" "idle connections x$CONNS_IDLE" "$r0" "$r1" \
            "$(awk -v a="$r0" -v b="$r1" -v n="$CONNS_IDLE" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}')" "$secs"
        printf '%-14s %-28s %9s KiB\n' "$name" "  1 s after they closed" "$r2"
        stop_broker
    fi

    if [ "${SKIP_SUBS:-0}" != 1 ]; then
        start_broker "$b"
        read -r r0 r1 secs < <(hold --hold-subs "$SUBS" --hold-conns "$SUB_CONNS")
        printf '%-14s %-28s %9s KiB %9s KiB %14s %8s\n' "$name" "subscriptions x$SUBS" "$r0" "$r1" \
            "$(awk -v a="$r0" -v b="$r1" -v n="$SUBS" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}')" "$secs"
        [ "${PUB_MESSAGES:-0}" -gt 0 ] && printf '%-14s %-28s %s msg/s\n' "$name" "  publish 1->1 meanwhile" "$(cat "$WORK/rate")"
        sleep 1
        printf '%-14s %-28s %9s KiB\n' "$name" "  1 s after they closed" "$(rss_kib "$BROKER")"
        stop_broker
    fi
done
echo "(filters: site/{i/1000}/dev/{i%1000}/temp over $SUB_CONNS connections; RSS from /proc/PID/status)"
