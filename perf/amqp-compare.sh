#!/usr/bin/env bash
# AMQP 1.0 throughput, weft vs RabbitMQ in one run (issue 15, acceptance 4).
#
# Same pinning as perf/web-compare.sh and perf/compare: every broker on
# BROKER_CORE (weft: 1 shard there; RabbitMQ: taskset + one Erlang
# scheduler), the load tool on LOAD_CORE. Load: `weft bench --amqp`,
# 1 sender link -> 1 receiver link, SIZE-byte messages, as fast as the
# broker's credit allows, for SECS s per run, REPS runs with the brokers
# alternating; median deliver rate (counted by the receiver, end to end).
#   pre-settled: transfers settled by the sender (at most once);
#   unsettled:   the sender keeps at most WINDOW unaccepted deliveries and
#                counts the broker's `accepted` dispositions; the receiver
#                accepts its deliveries with ranged dispositions after each
#                read (ack latency = write -> accepted).
# Broker CPU: utime+stime of the broker's processes during each run, per
# million delivered messages.
#
# Addresses: ADDRESS (default /topic/bench) for both brokers; RabbitMQ also
# at each of RABBIT_EXTRA (default /queue/bench: a queue instead of the
# amq.topic exchange + a temporary queue per receiver), and the ratio
# column compares weft with RabbitMQ's faster address of the two.
#
# weft runs only when its binary has --amqp-listen (otherwise: RabbitMQ
# rows alone, and the note says so).
#
# Usage: perf/amqp-compare.sh [OUT.md]
#   (default perf/results/YYYY-MM-DD-amqp.md; env: REPS=3 SECS=5 SIZE=64
#    WINDOW=1000 ADDRESS=/topic/bench RABBIT_EXTRA=/queue/bench
#    BROKER_CORE=0 LOAD_CORE=1 PORT_BASE=18950)
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
SECS=${SECS:-5}
SIZE=${SIZE:-64}
WINDOW=${WINDOW:-1000}
ADDRESS=${ADDRESS:-/topic/bench}
RABBIT_EXTRA=${RABBIT_EXTRA-/queue/bench}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
PORT_BASE=${PORT_BASE:-18950}
OUT=${1:-perf/results/$(date -u +%F)-amqp.md}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release/weft

if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server ||
        { $SUDO apt-get update && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server; }
fi

cargo build --release --bin weft >&2

# perf/lib.sh: the work folder, wait_port, rabbitmq_start / rabbitmq_stop.
. perf/lib.sh
WEFT_PID=""
cleanup() { # (replaces lib.sh's: two brokers)
    [ -n "$WEFT_PID" ] && kill "$WEFT_PID" 2>/dev/null || true
    rabbitmq_stop "$WORK/rabbit" || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

W_AMQP=$PORT_BASE W_MQTT=$((PORT_BASE + 1)) W_NATS=$((PORT_BASE + 3)) R_AMQP=$((PORT_BASE + 2))
BROKERS=(rabbitmq)
if "$BIN" run --help 2>/dev/null | grep -q -- --amqp-listen; then
    cat >"$WORK/weft.toml" <<CONF
[admin]
enabled = false
CONF
    "$BIN" run --config "$WORK/weft.toml" --shards 1 --cores "$BROKER_CORE" \
        --mqtt-listen 127.0.0.1:$W_MQTT --nats-listen 127.0.0.1:$W_NATS --amqp-listen 127.0.0.1:$W_AMQP \
        --log-level warn >"$WORK/weft.log" 2>&1 &
    WEFT_PID=$!
    wait_port $W_AMQP
    BROKERS=(weft rabbitmq)
else
    echo "perf/amqp-compare.sh: $BIN has no --amqp-listen: RabbitMQ alone" >&2
fi
rabbitmq_start "$WORK/rabbit" $R_AMQP "$BROKER_CORE"

# The CPU ticks (utime + stime) of a process, or of a session's processes.
ticks() { # pid|-sid
    local pids
    if [ "${1:0:1}" = - ]; then pids=$(ps -s "${1:1}" -o pid= || true); else pids=$1; fi
    for p in $pids; do awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || true; done |
        awk '{s += $1} END {print s + 0}'
}
HZ=$(getconf CLK_TCK)

# One bench run; prints "deliver_msgs_per_s publish_msgs_per_s ack_p50_us
# ack_p99_us lost broker_cpu_s_per_million errors".
bench() { # broker address qos
    local port=$W_AMQP who=$WEFT_PID
    [ "$1" = rabbitmq ] && { port=$R_AMQP; who=-$RABBIT_PID; }
    local args=(--amqp --server "127.0.0.1:$port" --subject "$2" --size "$SIZE" --qos "$3"
        --window "$WINDOW" --duration "$SECS" --pin-cores "$LOAD_CORE" --no-progress
        --json "$WORK/run.json")
    local t0 t1
    t0=$(ticks "$who")
    rm -f "$WORK/run.json"
    "$BIN" bench "${args[@]}" >"$WORK/run.out" 2>&1 || sed 's/^/  bench: /' "$WORK/run.out" >&2
    t1=$(ticks "$who")
    [ -f "$WORK/run.json" ] || { echo "0 0 0 0 -1 0 1"; return; }
    python3 - "$WORK/run.json" "$((t1 - t0))" "$HZ" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
ticks, hz = int(sys.argv[2]), int(sys.argv[3])
t = s["totals"]
ack = s.get("ack_latency") or {}
per_m = (ticks / hz) / (t["received"] / 1e6) if t["received"] else 0
print(f'{t["deliver"]["msgs_per_s"]:.0f} {t["publish"]["msgs_per_s"]:.0f} '
      f'{ack.get("p50_us", 0):.0f} {ack.get("p99_us", 0):.0f} {t["lost"]} {per_m:.2f} {s["errors"]}')
PY
}

# Targets: "broker address".
TARGETS=()
for b in "${BROKERS[@]}"; do
    TARGETS+=("$b $ADDRESS")
    if [ "$b" = rabbitmq ]; then for a in $RABBIT_EXTRA; do TARGETS+=("$b $a"); done; fi
done

declare -A R
RUNS=()
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for rep in $(seq "$REPS"); do
    for q in 0 1; do
        for t in "${TARGETS[@]}"; do
            R["$t $q $rep"]=$(bench $t $q)
            RUNS+=("| $rep | $q | $t | ${R["$t $q $rep"]} |")
            echo "rep $rep qos $q $t: ${R["$t $q $rep"]}" >&2
        done
    done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
median() { sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
col() { # "broker address qos" field -> median over reps
    for rep in $(seq "$REPS"); do echo "${R["$1 $rep"]}" | awk -v f="$2" '{print $f}'; done | median
}
sum() { # "broker address qos" field -> sum over reps
    for rep in $(seq "$REPS"); do echo "${R["$1 $rep"]}" | awk -v f="$2" '{print $f}'; done |
        awk '{s += $1} END {print s + 0}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf (b > 0 ? "%.2f" : "-"), a / b}'; }

mkdir -p "$(dirname "$OUT")"
{
    echo "# AMQP 1.0 1 → 1 throughput, weft vs RabbitMQ ($SIZE B)"
    echo
    echo "$(date -u +%FT%TZ), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r),"
    echo "weft $(git rev-parse --short HEAD) (release), RabbitMQ $(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null) (rabbitmq_amqp1_0, Erlang $(erl -noshell -eval 'io:format("~s", [erlang:system_info(otp_release)]), halt().' 2>/dev/null))."
    echo "Brokers on core $BROKER_CORE (weft --shards 1; RabbitMQ taskset + 1 scheduler), \`weft bench --amqp\` on core $LOAD_CORE;"
    echo "1 sender → 1 receiver, $SECS s per run, median of $REPS runs (brokers alternating); unsettled: window $WINDOW."
    echo "Load average (1/5/15 min) before the runs: $LOAD_BEFORE, after: $LOAD_AFTER."
    [ ${#BROKERS[@]} = 1 ] && echo "**weft not measured**: this build has no \`--amqp-listen\`."
    echo
    echo "Command: \`REPS=$REPS SECS=$SECS SIZE=$SIZE WINDOW=$WINDOW perf/amqp-compare.sh\`"
    echo
    echo "| broker | address | settlement | deliver msg/s | publish msg/s | ack p50 / p99 µs | lost (all runs) | broker CPU s per 1M msgs | errors |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|"
    for q in 0 1; do
        mode=$([ $q = 0 ] && echo pre-settled || echo unsettled)
        for t in "${TARGETS[@]}"; do
            set -- $t
            ack="-"
            [ $q = 1 ] && ack="$(col "$t $q" 3) / $(col "$t $q" 4)"
            echo "| $1 | \`$2\` | $mode | $(col "$t $q" 1) | $(col "$t $q" 2) | $ack | $(sum "$t $q" 5) | $(col "$t $q" 6) | $(sum "$t $q" 7) |"
        done
    done
    if [ ${#BROKERS[@]} = 2 ]; then
        echo
        echo "| settlement | weft / RabbitMQ (\`$ADDRESS\`) | weft / RabbitMQ (its faster address) |"
        echo "|---|---:|---:|"
        for q in 0 1; do
            mode=$([ $q = 0 ] && echo pre-settled || echo unsettled)
            w=$(col "weft $ADDRESS $q" 1)
            same=$(col "rabbitmq $ADDRESS $q" 1)
            best=$same
            for a in $RABBIT_EXTRA; do
                v=$(col "rabbitmq $a $q" 1)
                awk -v a="$v" -v b="$best" 'BEGIN {exit !(a > b)}' && best=$v
            done
            echo "| $mode | $(ratio "$w" "$same") | $(ratio "$w" "$best") |"
        done
    fi
    echo
    echo "Every run (deliver msg/s, publish msg/s, ack p50 µs, ack p99 µs, lost, broker CPU s per 1M msgs, errors):"
    echo
    echo "| rep | qos | broker address | result |"
    echo "|---:|---:|---|---|"
    printf '%s\n' "${RUNS[@]}"
} >"$OUT"
cat "$OUT"
