#!/usr/bin/env bash
# Throughput of weft vs mosquitto on the same workload, measured in one run.
#
# Both brokers run pinned to core 0 (weft: 1 shard on core 0; mosquitto:
# taskset -c 0); weft-load runs pinned to core 1. Workload: 1 publisher ->
# 1 subscriber on one topic, 64-byte payloads, QoS 0 and QoS 1, REPS
# repetitions alternating the brokers. Prints a table of median msgs/s
# (received by the subscriber, end to end) and the weft/mosquitto ratio.
#
# Usage: perf/compare-mqtt.sh            (env: REPS=5 MSGS0=2000000 MSGS1=1000000
#                                          PAYLOAD=64 BROKER_CORE=0 LOAD_CORE=1)
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-5}
MSGS0=${MSGS0:-2000000}
MSGS1=${MSGS1:-1000000}
PAYLOAD=${PAYLOAD:-64}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
WEFT_PORT=${WEFT_PORT:-18831}
MOSQ_PORT=${MOSQ_PORT:-18832}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release

if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    sudo apt-get install -y mosquitto mosquitto-clients || apt-get install -y mosquitto mosquitto-clients
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

cargo build --release --bin weft --bin weft-load >&2

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "port $1 did not open" >&2
    return 1
}

"$BIN/weft" run --mqtt-listen 127.0.0.1:$WEFT_PORT --shards 1 --cores "$BROKER_CORE" \
    --log-level warn >"$WORK/weft.log" 2>&1 &
PIDS+=($!)
WEFT_PID=$!
cat >"$WORK/mosquitto.conf" <<CONF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
CONF
taskset -c "$BROKER_CORE" "$MOSQUITTO" -c "$WORK/mosquitto.conf" >"$WORK/mosquitto.log" 2>&1 &
PIDS+=($!)
MOSQ_PID=$!
wait_port $WEFT_PORT
wait_port $MOSQ_PORT

echo "# $(date -u +%FT%TZ)  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
echo "# mosquitto: $("$MOSQUITTO" -h 2>&1 | head -1)"
echo "# brokers on core $BROKER_CORE, weft-load on core $LOAD_CORE; 1 pub -> 1 sub, payload $PAYLOAD B"

cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }

run_one() { # broker port qos msgs -> "recv_rate sent_rate lost load_cpu_s"
    local out
    out=$(/usr/bin/time -f 'LOADCPU %U %S' "$BIN/weft-load" --port "$2" --qos "$3" --messages "$4" --payload "$PAYLOAD" \
        --pin-core "$LOAD_CORE" --quiet-ms 3000 --topic "bench/$1/t" 2>&1 | tee -a "$WORK/load-$1.log" | grep -E '^(RESULT|LOADCPU)' || true)
    if [ -z "$out" ]; then echo "0 0 $4 0"; return; fi
    local recv sent lost
    recv=$(grep RESULT <<<"$out" | sed -E 's/.* recv_rate=([0-9]+).*/\1/')
    sent=$(grep RESULT <<<"$out" | sed -E 's/.* sent_rate=([0-9]+).*/\1/')
    lost=$(grep RESULT <<<"$out" | sed -E 's/.* lost=([0-9]+).*/\1/')
    lcpu=$(grep LOADCPU <<<"$out" | awk '{printf "%.2f", $2 + $3}')
    echo "$recv $sent $lost $lcpu"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print int((a[NR/2]+a[NR/2+1])/2)}'; }

printf '%-4s %-10s %3s %12s %12s %9s %10s %10s %9s\n' qos broker rep recv_msgs/s sent_msgs/s lost broker_cpu load_cpu rss_kib
for qos in 0 1; do
    msgs=$MSGS0; [ "$qos" = 1 ] && msgs=$MSGS1
    : >"$WORK/w$qos"; : >"$WORK/m$qos"
    for rep in $(seq "$REPS"); do
        for b in weft mosquitto; do
            if [ $b = weft ]; then port=$WEFT_PORT; pid=$WEFT_PID; else port=$MOSQ_PORT; pid=$MOSQ_PID; fi
            t0=$(cpu_ticks $pid)
            read -r recv sent lost lcpu < <(run_one $b $port $qos $msgs)
            bcpu=$(awk -v a="$t0" -v b="$(cpu_ticks $pid)" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.2f", (b - a) / hz}')
            rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
            printf '%-4s %-10s %3s %12s %12s %9s %9ss %9ss %9s\n' "$qos" $b "$rep" "$recv" "$sent" "$lost" "$bcpu" "$lcpu" "$rss"
            if [ $b = weft ]; then echo "$recv" >>"$WORK/w$qos"; else echo "$recv" >>"$WORK/m$qos"; fi
        done
    done
done

echo
printf '%-5s %10s %16s %16s %8s\n' qos messages weft_msgs/s mosquitto_msgs/s ratio
for qos in 0 1; do
    msgs=$MSGS0; [ "$qos" = 1 ] && msgs=$MSGS1
    w=$(median <"$WORK/w$qos"); m=$(median <"$WORK/m$qos")
    ratio=$(awk -v w="$w" -v m="$m" 'BEGIN { if (m > 0) printf "%.2f", w / m; else print "n/a" }')
    printf '%-5s %10s %16s %16s %8s\n' "$qos" "$msgs" "$w" "$m" "$ratio"
done
echo "(medians of $REPS runs; msgs/s = messages received by the subscriber / time since publishing began;"
echo " broker_cpu / load_cpu = user+sys CPU seconds of the broker / of weft-load during the run)"

if ! kill -0 $WEFT_PID 2>/dev/null; then echo "WARNING: weft exited during the run:"; cat "$WORK/weft.log"; fi
if [ -s "$WORK/weft.log" ]; then echo "# weft log (warnings):"; tail -20 "$WORK/weft.log"; fi
if [ -s "$WORK/mosquitto.log" ]; then echo "# mosquitto log:"; tail -5 "$WORK/mosquitto.log"; fi
