#!/usr/bin/env bash
# The web edge in one run (issue 14): MQTT over WebSocket vs plain MQTT,
# weft vs mosquitto's WebSocket listener; and weft's HTTP publish rate
# (keep-alive, 64 B) vs plain MQTT publishes into the same router.
#
# Same shape and pinning as perf/tls-compare.sh: every broker pinned to
# BROKER_CORE (weft: 1 shard on it), the load tool pinned to LOAD_CORE.
#   WS rows: `weft bench` (plain, or --ws: masked binary frames, one per
#     write) 1 publisher -> 1 subscriber, QoS 0;
#     throughput: MSGS messages as fast as possible (deliver rate);
#     latency: RATE msg/s for SECS s, end-to-end p50 / p99; median of REPS.
#   HTTP rows: `wrk` (Debian) POSTs 64 B bodies to /v1/topics/web/compare
#     over CONNS keep-alive connections for SECS s, QoS 1 (202 after the
#     router took the event) and ?qos=0, with one MQTT subscriber on the
#     topic (`weft sub`, counting); compared with `weft bench` MQTT QoS 1
#     and QoS 0 publishes 1 -> 1 into the same router.
#
# (mosquitto 2.0.11 exits "Unable to start any listening sockets" when
# its only listeners are WebSocket ones: the plain one beside it is needed.)
#
# Usage: perf/web-compare.sh   (env: REPS=3 MSGS=500000 RATE=10000 SECS=5
#          SIZES="64 1024" CONNS="1 8" BROKER_CORE=0 LOAD_CORE=1)
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
MSGS=${MSGS:-500000}
RATE=${RATE:-10000}
SECS=${SECS:-5}
SIZES=${SIZES:-"64 1024"}
CONNS=${CONNS:-"1 8"}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release

need_install=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_install+=(mosquitto)
command -v wrk >/dev/null || need_install+=(wrk)
if [ ${#need_install[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get install -y "${need_install[@]}" ||
        { $SUDO apt-get update && $SUDO apt-get install -y "${need_install[@]}"; }
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)

cargo build --release --bin weft >&2

# perf/lib.sh: the work folder and its removal at exit, wait_port.
. perf/lib.sh
PIDS=()
cleanup() { # (replaces lib.sh's: this script starts several processes)
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

W_MQTT=18931 W_WS=18932 W_HTTP=18933
M_MQTT=18941 M_WS=18942

cat >"$WORK/weft.toml" <<CONF
[admin]
enabled = false
CONF
cat >"$WORK/mosquitto.conf" <<CONF
listener $M_MQTT 127.0.0.1
listener $M_WS 127.0.0.1
protocol websockets
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
CONF

start() { # name command...
    "${@:2}" >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
}
start weft "$BIN/weft" run --config "$WORK/weft.toml" --shards 1 --cores "$BROKER_CORE" \
    --mqtt-listen 127.0.0.1:$W_MQTT --mqtt-ws-listen 127.0.0.1:$W_WS \
    --http-listen 127.0.0.1:$W_HTTP --log-level warn
start mosquitto taskset -c "$BROKER_CORE" "$MOSQUITTO" -c "$WORK/mosquitto.conf"
for p in $W_MQTT $W_WS $W_HTTP $M_MQTT $M_WS; do wait_port $p; done

echo "# $(date -u +%FT%TZ)  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), weft $(git rev-parse --short HEAD)"
echo "# mosquitto: $("$MOSQUITTO" -h 2>&1 | head -1); wrk: $(wrk -v 2>&1 | head -1)"
echo "# brokers on core $BROKER_CORE, load tools on core $LOAD_CORE; median of $REPS"

# One bench run; prints "deliver_msgs_per_s p50_us p99_us lost".
bench() { # port ws(0|1) size mode(throughput|latency) qos
    local args=(--protocol mqtt --server "127.0.0.1:$1" --size "$3" --qos "$5" --pin-cores "$LOAD_CORE"
        --no-progress --json "$WORK/run.json" --subject "web/compare/$RANDOM")
    [ "$2" = 1 ] && args+=(--ws)
    if [ "$4" = latency ]; then args+=(--rate "$RATE" --duration "$SECS"); else args+=(--msgs "$MSGS"); fi
    if ! "$BIN/weft" bench "${args[@]}" >"$WORK/run.out" 2>&1; then
        sed 's/^/  bench: /' "$WORK/run.out" >&2
        echo "0 0 0 -1"; return
    fi
    python3 - "$WORK/run.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
lat = s.get("latency") or {}
print(f'{s["totals"]["deliver"]["msgs_per_s"]:.0f} {lat.get("p50_us", 0):.0f} {lat.get("p99_us", 0):.0f} {s["totals"]["lost"]}')
PY
}

# One wrk run against the HTTP edge; prints "requests_per_s non_2xx delivered_per_s".
printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 64)\nwrk.headers["Content-Type"] = "application/octet-stream"\n' >"$WORK/post.lua"
http() { # conns qos
    local topic="web/compare/http$RANDOM"
    "$BIN/weft" sub --url "mqtt://127.0.0.1:$W_MQTT" -t "$topic" -q 0 --format raw \
        >"$WORK/sub.out" 2>/dev/null &
    local sub=$!
    sleep 0.5
    taskset -c "$LOAD_CORE" wrk -t1 -c"$1" -d"${SECS}s" -s "$WORK/post.lua" \
        "http://127.0.0.1:$W_HTTP/v1/topics/${topic//\//%2F}?qos=$2" >"$WORK/wrk.out" 2>&1 || true
    sleep 0.5
    kill "$sub" 2>/dev/null || true
    wait "$sub" 2>/dev/null || true
    local rps non2xx got
    rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' "$WORK/wrk.out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/wrk.out")
    got=$(wc -l <"$WORK/sub.out")
    echo "${rps:-0} ${non2xx:-0} $((got / SECS))"
}

declare -A R
for rep in $(seq "$REPS"); do
    for size in $SIZES; do
        for mode in throughput latency; do
            R["weft-mqtt $size $mode $rep"]=$(bench $W_MQTT 0 "$size" $mode 0)
            R["weft-ws $size $mode $rep"]=$(bench $W_WS 1 "$size" $mode 0)
            R["mosquitto-mqtt $size $mode $rep"]=$(bench $M_MQTT 0 "$size" $mode 0)
            R["mosquitto-ws $size $mode $rep"]=$(bench $M_WS 1 "$size" $mode 0)
        done
    done
    for q in 1 0; do
        R["weft-mqtt-q$q 64 throughput $rep"]=$(bench $W_MQTT 0 64 throughput $q)
        for c in $CONNS; do R["http-q$q c$c $rep"]=$(http "$c" $q); done
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
col() { # key-prefix field -> median over reps
    for rep in $(seq "$REPS"); do echo "${R["$1 $rep"]}" | awk -v f="$2" '{print $f}'; done | median
}
echo
echo "## MQTT over WebSocket vs plain MQTT (1 -> 1, QoS 0)"
echo
echo "| system | size | plain msg/s | WS msg/s | WS/plain | plain p50 / p99 µs | WS p50 / p99 µs | lost (plain, WS) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for sys in weft mosquitto; do
    for size in $SIZES; do
        pt=$(col "$sys-mqtt $size throughput" 1); wt=$(col "$sys-ws $size throughput" 1)
        p50=$(col "$sys-mqtt $size latency" 2); p99=$(col "$sys-mqtt $size latency" 3)
        w50=$(col "$sys-ws $size latency" 2); w99=$(col "$sys-ws $size latency" 3)
        lp=$(col "$sys-mqtt $size throughput" 4); lw=$(col "$sys-ws $size throughput" 4)
        ratio=$(awk -v a="$wt" -v b="$pt" 'BEGIN {printf (b > 0 ? "%.2f" : "-"), a / b}')
        echo "| $sys | $size B | $pt | $wt | $ratio | $p50 / $p99 | $w50 / $w99 | $lp, $lw |"
    done
done
for size in $SIZES; do
    a=$(col "weft-ws $size throughput" 1); b=$(col "mosquitto-ws $size throughput" 1)
    echo "weft WS / mosquitto WS at $size B: $(awk -v a="$a" -v b="$b" 'BEGIN {printf (b > 0 ? "%.2f" : "-"), a / b}')"
done
echo
echo "## HTTP publish (wrk, keep-alive, 64 B) vs MQTT publish (weft bench 1 -> 1), same router"
echo
echo "| path | QoS | connections | publishes/s | non-2xx | delivered/s to one MQTT subscriber |"
echo "|---|---:|---:|---:|---:|---:|"
for q in 1 0; do
    echo "| MQTT (weft bench) | $q | 1 | $(col "weft-mqtt-q$q 64 throughput" 1) | - | (same) |"
    for c in $CONNS; do
        echo "| HTTP POST (wrk) | $q | $c | $(col "http-q$q c$c" 1) | $(col "http-q$q c$c" 2) | $(col "http-q$q c$c" 3) |"
    done
done
