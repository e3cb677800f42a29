#!/usr/bin/env bash
# Shared memory vs TCP vs iceoryx2, one run (issue 16's benchmark):
#
#   weft shm     1 -> 1, 64 B: throughput (as fast as the rings take it) and
#                open-loop latency at $RATE msg/s (p50/p99/p99.9, from the
#                intended send time: `weft bench --transport shm`)
#   weft shm, the shard spinning: the same with [shm] spin_us and
#                [runtime] spin_us (h58's key; if this build does not know
#                it, the older runtime.spin_before_park_us, and the table
#                says so)
#   weft shm, one client thread: the shard spinning, one bench thread
#                drives the publisher and the subscriber (`--one-thread`:
#                sends when due, polls the subscription otherwise, never
#                sleeps), so two client threads do not take one core from
#                each other: the router's own latency
#   weft tcp     the same through TCP (NATS on 127.0.0.1), same router
#   iceoryx2     publish-subscribe 64 B (perf/iceoryx2-bench, iceoryx2 from
#                crates.io): throughput and the same open-loop latency; the
#                subscriber spins on receive() (its own benchmark's style),
#                with the subscriber on the clients' core and on the
#                router's core
#
# Placement: the router has one shard, pinned (taskset and --cores) to core
# $ROUTER_CORE; the load tools' threads are pinned to core $CLIENT_CORE.
# Every system is measured in the same run with the same pinning; read
# ratios, not absolute numbers, on a shared 2-core VM.
#
# Writes perf/results/YYYY-MM-DD-shm.md (printed at the end) and
# YYYY-MM-DD-shm/ (the JSON of every run).
#
# Usage: perf/shm-compare.sh    env: RATE=100000 SECS=5 MSGS=2000000 SIZE=64
#                                    PROTOCOL=nats (the shm dialect and the TCP protocol)
#                                    ROUTER_CORE=1 CLIENT_CORE=0 SPIN_US=1000 CLIENT_SPIN_US=50
#                                    QUICK=1 (SECS=2, MSGS=300000)
#                                    BEFORE=path/to/weft (also the spinning rows with
#                                    that router binary, e.g. a build of main, same run)
#                                    OUT=perf/results (where the report goes)
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-100000}
SECS=${SECS:-5}
MSGS=${MSGS:-2000000}
SIZE=${SIZE:-64}
PROTOCOL=${PROTOCOL:-nats}
ROUTER_CORE=${ROUTER_CORE:-1}
CLIENT_CORE=${CLIENT_CORE:-0}
SPIN_US=${SPIN_US:-1000}
CLIENT_SPIN_US=${CLIENT_SPIN_US:-50}
NATS_PORT=${NATS_PORT:-24222}
MQTT_PORT=${MQTT_PORT:-21883}
if [ "${QUICK:-0}" = 1 ]; then SECS=2; MSGS=300000; fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
BIN=$CARGO_TARGET_DIR/release/weft
ICE=$CARGO_TARGET_DIR/release/iceoryx2-bench
DATE=$(date +%F)
OUT=${OUT:-perf/results}
BEFORE=${BEFORE:-}
RAW=$OUT/$DATE-shm
mkdir -p "$RAW"
rm -f "$RAW"/*.json

cargo build --release --bin weft >&2
(cd perf/iceoryx2-bench && cargo build --release >&2)

source perf/lib.sh
ROWS=()
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

# start_router NAME EXTRA_TOML: one shard on $ROUTER_CORE, shm socket in $WORK.
start_router() {
    local name=$1 extra=$2
    SOCK=$WORK/$name.sock
    cat >"$WORK/$name.toml" <<TOML
[nats]
listen = "127.0.0.1:$NATS_PORT"
[admin]
listen = "127.0.0.1:0"
$extra
TOML
    taskset -c "$ROUTER_CORE" "${ROUTER_BIN:-$BIN}" run --config "$WORK/$name.toml" --shards 1 --cores "$ROUTER_CORE" \
        --mqtt-listen "127.0.0.1:$MQTT_PORT" --shm-listen "$SOCK" --log-level warn \
        >"$WORK/$name.out" 2>"$WORK/$name.err" &
    BROKER=$!
    wait_port "$NATS_PORT"
    for _ in $(seq 100); do [ -S "$SOCK" ] && return 0; sleep 0.05; done
    echo "router $name: no socket $SOCK" >&2; cat "$WORK/$name.err" >&2; return 1
}

stop_router() {
    kill "$BROKER" 2>/dev/null || true
    wait "$BROKER" 2>/dev/null || true
    BROKER=""
}

# bench LABEL NOTE ARGS...: one weft bench run, a table row from its JSON.
bench() {
    local label=$1 note=$2; shift 2
    local json=$RAW/$(echo "$label" | tr ' ,/()' '_____').json
    echo "== $label: weft bench $*" >&2
    "$BIN" bench --no-progress --pin-cores "$CLIENT_CORE" --size "$SIZE" --pubs 1 --subs 1 \
        --json "$json" "$@" >&2 || echo "   (weft bench exited $?)" >&2
    [ -s "$json" ] || { ROWS+=("| $label | failed | | | | | $note |"); return; }
    ROWS+=("$(jq -r --arg l "$label" --arg n "$note" '
        def r: if . == null then "" else (. * 100 | round / 100 | tostring) end;
        "| \($l) | \(.totals.deliver.msgs_per_s | round) | \(.latency.p50_us | r) | \(.latency.p99_us | r) | \(.latency.p99_9_us | r) | \(.totals.lost) | \($n) |"' "$json")")
}

# ice LABEL NOTE ARGS...: one iceoryx2-bench run.
ice() {
    local label=$1 note=$2; shift 2
    local json=$RAW/$(echo "$label" | tr ' ,/()=' '______').json
    echo "== $label: iceoryx2-bench $*" >&2
    "$ICE" --size "$SIZE" --json "$json" "$@" >&2 || echo "   (iceoryx2-bench exited $?)" >&2
    [ -s "$json" ] || { ROWS+=("| $label | failed | | | | | $note |"); return; }
    ROWS+=("$(jq -r --arg l "$label" --arg n "$note" '
        def r: if . == null then "" else (. * 100 | round / 100 | tostring) end;
        "| \($l) | \(.msgs_per_s | round) | \(.latency.p50_us | r) | \(.latency.p99_us | r) | \(.latency.p99_9_us | r) | \(.lost) | \($n) |"' "$json")")
}

SHM=(--transport shm --protocol "$PROTOCOL")
TCP=(--protocol "$PROTOCOL" --server "127.0.0.1:$NATS_PORT")
[ "$PROTOCOL" = mqtt ] && TCP=(--protocol mqtt --server "127.0.0.1:$MQTT_PORT")

# 1. The shard parks when idle (defaults).
start_router plain ""
bench "weft shm, throughput" "" "${SHM[@]}" --server "$SOCK" --msgs "$MSGS"
bench "weft shm, $RATE/s" "" "${SHM[@]}" --server "$SOCK" --rate "$RATE" --duration "$SECS"
bench "weft tcp, throughput" "" "${TCP[@]}" --msgs "$MSGS"
bench "weft tcp, $RATE/s" "" "${TCP[@]}" --rate "$RATE" --duration "$SECS"
stop_router

# 2. The shard spinning: [shm] spin_us and the runtime's busy poll.
SPIN_KEY=spin_us
start_router spinprobe "[runtime]
spin_us = 0" 2>/dev/null || SPIN_KEY=""
stop_router
if [ -z "$SPIN_KEY" ]; then
    SPIN_KEY=spin_before_park_us
    SPIN_NOTE="runtime.spin_us (h58) not in this build: runtime.spin_before_park_us = $SPIN_US"
else
    SPIN_NOTE="runtime.spin_us = $SPIN_US"
fi
start_router spin "[shm]
spin_us = $SPIN_US
[runtime]
$SPIN_KEY = $SPIN_US"
bench "weft shm, shard spinning, throughput" "shm.spin_us = $SPIN_US, $SPIN_NOTE" "${SHM[@]}" --server "$SOCK" --msgs "$MSGS"
bench "weft shm, shard spinning, $RATE/s" "shm.spin_us = $SPIN_US, $SPIN_NOTE" "${SHM[@]}" --server "$SOCK" --rate "$RATE" --duration "$SECS"
bench "weft shm, shard and clients spinning, $RATE/s" "also --spin-us $CLIENT_SPIN_US" "${SHM[@]}" --server "$SOCK" --rate "$RATE" --duration "$SECS" --spin-us "$CLIENT_SPIN_US"
bench "weft shm, shard spinning, one client thread, $RATE/s" "--one-thread: publisher and subscriber polled by one thread" "${SHM[@]}" --server "$SOCK" --rate "$RATE" --duration "$SECS" --one-thread
bench "weft tcp, shard spinning, $RATE/s" "$SPIN_NOTE" "${TCP[@]}" --rate "$RATE" --duration "$SECS"
stop_router

# 2b. The same spinning rows with the router binary $BEFORE (the clients
#     stay this build's `weft bench`).
if [ -n "$BEFORE" ]; then
    ROUTER_BIN=$BEFORE start_router spin-before "[shm]
spin_us = $SPIN_US
[runtime]
$SPIN_KEY = $SPIN_US"
    bench "weft shm before, shard spinning, throughput" "router $BEFORE" "${SHM[@]}" --server "$SOCK" --msgs "$MSGS"
    bench "weft shm before, shard spinning, $RATE/s" "router $BEFORE" "${SHM[@]}" --server "$SOCK" --rate "$RATE" --duration "$SECS"
    bench "weft tcp before, shard spinning, $RATE/s" "router $BEFORE" "${TCP[@]}" --rate "$RATE" --duration "$SECS"
    stop_router
fi

# 3. iceoryx2: publisher on the clients' core; subscriber there too, or on
#    the router's core (a 2-party system: nothing else would use it).
ice "iceoryx2, throughput (pub, sub core $CLIENT_CORE)" "sub spins" --msgs "$MSGS" --pub-core "$CLIENT_CORE" --sub-core "$CLIENT_CORE"
ice "iceoryx2, $RATE/s (pub, sub core $CLIENT_CORE)" "sub spins" --rate "$RATE" --duration "$SECS" --pub-core "$CLIENT_CORE" --sub-core "$CLIENT_CORE"
ice "iceoryx2, throughput (sub core $ROUTER_CORE)" "sub spins" --msgs "$MSGS" --pub-core "$CLIENT_CORE" --sub-core "$ROUTER_CORE"
ice "iceoryx2, $RATE/s (sub core $ROUTER_CORE)" "sub spins" --rate "$RATE" --duration "$SECS" --pub-core "$CLIENT_CORE" --sub-core "$ROUTER_CORE"
ice "iceoryx2, $RATE/s, event wake (sub core $ROUTER_CORE)" "notifier per message, sub sleeps" --rate "$RATE" --duration "$SECS" --pub-core "$CLIENT_CORE" --sub-core "$ROUTER_CORE" --wait event

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
REPORT=$OUT/$DATE-shm.md
{
    echo "# Shared memory vs TCP vs iceoryx2 ($DATE)"
    echo
    echo "\`perf/shm-compare.sh\` (RATE=$RATE SECS=$SECS MSGS=$MSGS SIZE=$SIZE PROTOCOL=$PROTOCOL"
    echo "ROUTER_CORE=$ROUTER_CORE CLIENT_CORE=$CLIENT_CORE SPIN_US=$SPIN_US CLIENT_SPIN_US=$CLIENT_SPIN_US), $(nproc) cores,"
    echo "load average before $LOAD_BEFORE, after $LOAD_AFTER. 1 publisher -> 1 subscriber, $SIZE B payloads;"
    echo "weft: one shard on core $ROUTER_CORE, \`weft bench\` threads on core $CLIENT_CORE;"
    echo "latency open loop from the intended send time (HdrHistogram), µs. The JSON of each run: \`$RAW/\`."
    echo
    echo "| run | delivered msg/s | p50 µs | p99 µs | p99.9 µs | lost | notes |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Commands: \`weft bench --transport shm --server SOCK --protocol $PROTOCOL --pubs 1 --subs 1 --size $SIZE"
    echo "(--msgs $MSGS | --rate $RATE --duration $SECS) --pin-cores $CLIENT_CORE\`; TCP the same with \`--server 127.0.0.1:PORT\`;"
    echo "\`perf/iceoryx2-bench --size $SIZE (--msgs $MSGS | --rate $RATE --duration $SECS) --pub-core C --sub-core C [--wait event]\`."
} >"$REPORT"
cat "$REPORT"
