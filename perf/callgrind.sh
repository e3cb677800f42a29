#!/usr/bin/env bash
# Router instructions per delivered message, under callgrind: a speed
# measure that a noisy machine does not move (wall-clock ratios on this
# shared VM vary by ±25 % from run to run; see perf/ab.sh). Each router
# binary runs under `valgrind --tool=callgrind` twice, for N1 and N2
# messages of a 1 -> 1 `weft bench` run (64-byte payloads), and the
# difference of the two totals over N2 - N1 is the cost of one message
# (start-up and shut-down cancel out). Instructions are not time (cache
# misses, branch mispredictions and syscalls are not in them), so this
# complements perf/ab.sh and does not replace it.
#
#   mqtt-q0, mqtt-q1, nats   one router, publisher and subscriber on it
#   nats-1to4                one router, one NATS publisher, 4 subscribers
#                            (instructions per delivered message: / 4)
#   mesh-hop                 routers A and B (B dials A), publisher on A,
#                            subscriber on B; each router is measured in
#                            its own pair of runs (the other runs natively)
#
# Usage: perf/callgrind.sh NAME=WEFT_BINARY...
#   e.g. perf/callgrind.sh before=target/ab/bin/<rev>/weft after=target/release/weft
#   env: WORKLOADS="mqtt-q0 mqtt-q1 nats mesh-hop" N1=20000 N2=120000
#        LOAD_BIN=PATH (the load tool; default the first binary) OUT=DIR
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
fi
for tool in valgrind callgrind_annotate curl; do
    command -v $tool >/dev/null || { echo "perf/callgrind.sh: needs $tool (Debian: valgrind, curl)" >&2; exit 2; }
done
WORKLOADS=${WORKLOADS:-"mqtt-q0 mqtt-q1 nats mesh-hop"}
N1=${N1:-20000}
N2=${N2:-120000}
LOAD_BIN=${LOAD_BIN:-${1#*=}}
OUT=${OUT:-$(mktemp -d)}
PORT=${PORT:-27000}

wait_port() {
    for _ in $(seq 600); do
        (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "perf/callgrind.sh: nothing listens on port $1" >&2
    exit 1
}
total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
vg() { echo valgrind --tool=callgrind --callgrind-out-file="$1"; }

# one NAME BIN WORKLOAD N [SIDE]: one run; writes $OUT/cg.WORKLOAD.NAME.SIDE.N
one() {
    local name=$1 bin=$2 w=$3 n=$4 side=${5:-S} p
    PORT=$((PORT + 10)); p=$PORT
    local file=$OUT/cg.$w.$name.$side.$n args=()
    if [ "$w" = mesh-hop ]; then
        local va="" vb=""
        [ "$side" = A ] && va=$(vg "$file")
        [ "$side" = B ] && vb=$(vg "$file")
        $va "$bin" run --router-id A --mqtt-listen 127.0.0.1:$p --nats-listen 127.0.0.1:$((p + 1)) \
            --mesh-listen 127.0.0.1:$((p + 2)) --admin-listen 127.0.0.1:$((p + 3)) --shards 1 --cores 0 \
            --log-level warn >"$OUT/router-A.log" 2>&1 &
        local a=$!
        wait_port $((p + 2))
        $vb "$bin" run --router-id B --mqtt-listen 127.0.0.1:$((p + 5)) --nats-listen 127.0.0.1:$((p + 6)) \
            --admin-listen 127.0.0.1:$((p + 7)) --link 127.0.0.1:$((p + 2)) --shards 1 --cores 0 \
            --log-level warn >"$OUT/router-B.log" 2>&1 &
        local b=$!
        wait_port $p
        wait_port $((p + 5))
        for _ in $(seq 600); do
            curl -s "http://127.0.0.1:$((p + 3))/links" | grep -q '"state":"up"' && break
            sleep 0.1
        done
        args=(--protocol mqtt --server 127.0.0.1:$p --sub-server 127.0.0.1:$((p + 5)) --qos 0)
        "$LOAD_BIN" bench "${args[@]}" --size 64 --pin-cores 1 --no-progress --quiet-ms 20000 \
            --pubs 1 --subs 1 --msgs "$n" >"$OUT/load.log" 2>&1
        kill -INT $a $b
        wait $a $b || true
    else
        $(vg "$file") "$bin" run --mqtt-listen 127.0.0.1:$p --nats-listen 127.0.0.1:$((p + 1)) \
            --shards 1 --cores 0 --log-level warn >"$OUT/router.log" 2>&1 &
        local r=$! subs=1
        wait_port $p
        wait_port $((p + 1))
        case $w in
        mqtt-q0) args=(--protocol mqtt --server 127.0.0.1:$p --qos 0) ;;
        mqtt-q1) args=(--protocol mqtt --server 127.0.0.1:$p --qos 1) ;;
        nats) args=(--protocol nats --server 127.0.0.1:$((p + 1))) ;;
        nats-1to4) args=(--protocol nats --server 127.0.0.1:$((p + 1))) subs=4 ;;
        esac
        "$LOAD_BIN" bench "${args[@]}" --size 64 --pin-cores 1 --no-progress --quiet-ms 20000 \
            --pubs 1 --subs "$subs" --msgs "$n" >"$OUT/load.log" 2>&1
        kill -INT $r
        wait $r || true
    fi
    grep -q "lost 0 " "$OUT/load.log" || { echo "perf/callgrind.sh: $w ($name) lost messages:" >&2; cat "$OUT/load.log" >&2; exit 1; }
}

printf '| workload | router |'
for spec in "$@"; do printf ' %s (instructions/msg) |' "${spec%%=*}"; done
printf '\n|---|---|'
for _ in "$@"; do printf -- '---:|'; done
printf '\n'
for w in $WORKLOADS; do
    sides=S
    [ "$w" = mesh-hop ] && sides="A B"
    for side in $sides; do
        printf '| %s | %s |' "$w" "$side"
        for spec in "$@"; do
            name=${spec%%=*}
            bin=${spec#*=}
            one "$name" "$bin" "$w" "$N1" "$side"
            one "$name" "$bin" "$w" "$N2" "$side"
            i1=$(total "$OUT/cg.$w.$name.$side.$N1")
            i2=$(total "$OUT/cg.$w.$name.$side.$N2")
            per=1
            [ "$w" = nats-1to4 ] && per=4
            printf ' %d |' $(((i2 - i1) / (N2 - N1) / per))
        done
        printf '\n'
    done
done
echo "callgrind files: $OUT (callgrind_annotate FILE shows where)" >&2
