#!/usr/bin/env bash
# What does acknowledging a QoS 1 copy on a transit router only after the next
# hop acknowledged it cost? before = 6d054bd (transit router acks as soon as it
# processed the copy), after = /work/main HEAD (acks after the next hop's ack:
# bridge.rs oblige/release/flush_acks).
#
# Per repetition and per binary (order alternates between repetitions:
# rep 1 before,after; rep 2 after,before; ...), with FRESH routers for each
# path, all routers of a path running the same binary:
#   line A-B-C (B dials A, C dials B):  publish at A, subscribe at C
#     tput2: MQTT QoS 1, 1 pub -> 1 sub, --msgs $MSGS, $SIZE B, max rate
#     lat2:  MQTT QoS 1, 1 pub -> 1 sub, --rate $RATE for $SECS s
#   pair A-B (B dials A): publish at A, subscribe at B (control: no transit)
#     tput1: as tput2
#     lat1:  as lat2 (extra control)
# After each run (and a 0.3 s wait for the bridge's 50 ms tick) GET /links of
# every router of the path is saved.
#
# Every router: `weft run --shards 1 --cores $ROUTER_CORE` under
# `taskset -c $ROUTER_CORE` (all routers share that core); the load tool is the
# AFTER binary's `weft bench --pin-cores $LOAD_CORE` for both, so that only the
# routers differ.
#
# qos1-3way.sh: qos1-2hop.sh for N binaries (NAMES, rotated order), head's
# weft bench as the load tool, /metrics weft_mesh_* saved too.
# Usage: qos1-3way.sh   env: REPS=3 MSGS=200000 SIZE=64 RATE=10000 SECS=10
#                            BEFORE_BIN=... AFTER_BIN=... ROUTER_CORE=0 LOAD_CORE=1
#                            KINDS="tput2 lat2 tput1 lat1" OUT=/work/wt/bench/raw
# Output: $OUT/<name>.json (weft bench), <name>.links-<router>.json, <name>.cpu,
#         <name>.out; summary table on stdout via summarize.py.
set -euo pipefail

REPS=${REPS:-3}
MSGS=${MSGS:-200000}
SIZE=${SIZE:-64}
RATE=${RATE:-10000}
SECS=${SECS:-10}
ROUTER_CORE=${ROUTER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
# NAMES: the binaries, in the order of odd repetitions; repetition k starts
# at the (k-1) mod n-th name (rotation), so each binary runs first, middle, last.
NAMES=${NAMES:-"before after head"}
declare -A BIN
BIN[before]=${BEFORE_BIN:-/work/wt/bench-target-before/release/weft}
BIN[after]=${AFTER_BIN:-/work/wt/bench-target-after/release/weft}
BIN[head]=${HEAD_BIN:-/work/wt/bench-target-head/release/weft}
LOAD_BIN=${LOAD_BIN:-${BIN[head]}}
KINDS=${KINDS:-"tput2 lat2 tput1 lat1"} # which runs to do
OUT=${OUT:-/work/wt/bench/raw}
mkdir -p "$OUT"

WORK=$(mktemp -d)
PIDS=()
stop_routers() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
    sleep 1 # io_uring teardown of the old routers (kworker iou_exit) before new ones start
}
cleanup() { stop_routers; rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A PID MQTT ADMIN MESH LOG

# start_router BIN NAME flags...: starts a router and waits for its
# "listening" lines. A start that prints nothing for 10 s (seen twice after a
# loaded run's routers were killed) is recorded in $OUT/start-hangs.txt with
# its threads' kernel stacks, killed, and retried (3 tries).
start_router() {
    local bin=$1 name=$2 log=$WORK/$2.log try
    shift 2
    local want="admin listening on"
    case " $* " in *" --mesh-listen "*) want="mesh listening on" ;; esac
    for try in 1 2 3; do
        local t0
        t0=$(date +%s.%N)
        taskset -c "$ROUTER_CORE" "$bin" run --router-id "$name" --shards 1 --cores "$ROUTER_CORE" \
            --mqtt-listen 127.0.0.1:0 --nats-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
            --log-level warn "$@" >"$log" 2>&1 &
        PID[$name]=$!
        LOG[$name]=$log
        for _ in $(seq 200); do
            grep -q "^weft: $want" "$log" 2>/dev/null && break
            kill -0 "${PID[$name]}" 2>/dev/null || { echo "router $name exited at start:" >&2; cat "$log" >&2; exit 1; }
            sleep 0.05
        done
        if grep -q "^weft: $want" "$log"; then
            PIDS+=("${PID[$name]}")
            echo "router $name ($(basename "$(dirname "$(dirname "$bin")")")) try $try up in $(echo "$(date +%s.%N) - $t0" | bc) s" >>"$OUT/starts.txt"
            break
        fi
        {
            echo "== $(date -u +%T) router $name ($bin) try $try: no '$want' after 10 s; log: $(cat "$log")"
            local t
            for t in /proc/"${PID[$name]}"/task/*; do
                echo "-- $t $(cat "$t/comm" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null) state=$(awk '{print $3}' "$t/stat" 2>/dev/null)"
                cat "$t/stack" 2>/dev/null | head -12
            done
        } >>"$OUT/start-hangs.txt"
        echo "router $name: start hung (try $try), see start-hangs.txt" >&2
        kill -9 "${PID[$name]}" 2>/dev/null || true
        wait "${PID[$name]}" 2>/dev/null || true
        sleep 2
        [ "$try" = 3 ] && { echo "router $name: 3 hung starts" >&2; exit 1; }
    done
    addr() { sed -n "s/^weft: $1 listening on \([^ ]*\).*/\1/p" "$log" | head -1; }
    MQTT[$name]=$(addr mqtt)
    ADMIN[$name]=$(addr admin)
    MESH[$name]=$(addr mesh)
}

wait_links() {
    local up=0
    for _ in $(seq 200); do
        up=$(curl -s "http://${ADMIN[$1]}/links" | grep -o '"state":"up"' | wc -l || true)
        [ "$up" -ge "$2" ] && return 0
        sleep 0.05
    done
    echo "router $1: $up of $2 links up after 10 s" >&2
    exit 1
}

snap() {
    local r=0 p
    for p in "${PIDS[@]}"; do
        r=$((r + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    awk -v r="$r" '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9, r}' /proc/stat
}
HZ=$(getconf CLK_TCK)

# run NAME PUB_ROUTER SUB_ROUTER ROUTERS... -- bench flags...
FAILED=0
run() {
    local name=$1 pr=$2 sr=$3
    shift 3
    local routers=()
    while [ "$1" != -- ]; do routers+=("$1"); shift; done
    shift
    local rc=0 b0 s0 r0 b1 s1 r1 t0 t1 n
    read -r b0 s0 r0 < <(snap)
    t0=$(date +%s.%N)
    echo "+ $LOAD_BIN bench --protocol mqtt --qos 1 --server ${MQTT[$pr]} --sub-server ${MQTT[$sr]} --subject q1/$name --size $SIZE $* --pin-cores $LOAD_CORE --no-progress --json $OUT/$name.json" >"$OUT/$name.out"
    "$LOAD_BIN" bench --protocol mqtt --qos 1 --server "${MQTT[$pr]}" --sub-server "${MQTT[$sr]}" \
        --subject "q1/$name" --size "$SIZE" "$@" --pin-cores "$LOAD_CORE" --no-progress \
        --json "$OUT/$name.json" >>"$OUT/$name.out" 2>&1 || rc=$?
    read -r b1 s1 r1 < <(snap)
    t1=$(date +%s.%N)
    echo "$b0 $s0 $r0 $b1 $s1 $r1 $t0 $t1 $HZ" >"$OUT/$name.cpu"
    sleep 0.3
    for n in "${routers[@]}"; do
        curl -s "http://${ADMIN[$n]}/links" >"$OUT/$name.links-$n.json" || true
        curl -s "http://${ADMIN[$n]}/metrics" | grep -E '^weft_mesh' >"$OUT/$name.metrics-$n.txt" || true
    done
    for n in "${routers[@]}"; do
        kill -0 "${PID[$n]}" 2>/dev/null || { echo "$name: router $n died:" >&2; cat "${LOG[$n]}" >&2; exit 1; }
    done
    if [ $rc != 0 ]; then
        FAILED=$((FAILED + 1))
        echo "$name: weft bench exited with $rc" >&2
        tail -5 "$OUT/$name.out" >&2
    fi
    echo "$name: $(grep -E '^  (latency|messages|deliver|total)' "$OUT/$name.out" | sed 's/^ *//' | tr '\n' ' ' | cut -c1-220)" >&2
}

has() { case " $KINDS " in *" $1 "*) return 0 ;; esac; return 1; }

save_logs() { # tag routers...
    local tag=$1 n
    shift
    for n in "$@"; do cp "${LOG[$n]}" "$OUT/$tag.log-$n.txt"; done
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)" >&2
for w in $NAMES; do echo "# $w ${BIN[$w]} ($("${BIN[$w]}" --version 2>/dev/null || true))" >&2; done
echo "# load tool $LOAD_BIN" >&2
read -ra NAMEARR <<<"$NAMES"
for rep in $(seq "$REPS"); do
    order=""
    for i in $(seq 0 $((${#NAMEARR[@]} - 1))); do order+=" ${NAMEARR[$(((i + rep - 1) % ${#NAMEARR[@]}))]}"; done
    echo "# rep $rep order:$order" >&2
    for which in $order; do
        bin=${BIN[$which]}
        # line A-B-C
        start_router "$bin" A --mesh-listen 127.0.0.1:0
        start_router "$bin" B --mesh-listen 127.0.0.1:0 --link "${MESH[A]}"
        start_router "$bin" C --link "${MESH[B]}"
        wait_links A 1; wait_links B 2; wait_links C 1
        has tput2 && run "$which-tput2-r$rep" A C A B C -- --msgs "$MSGS"
        has lat2 && run "$which-lat2-r$rep" A C A B C -- --rate "$RATE" --duration "$SECS"
        save_logs "$which-line-r$rep" A B C
        stop_routers
        # pair A-B (control)
        start_router "$bin" A --mesh-listen 127.0.0.1:0
        start_router "$bin" B --link "${MESH[A]}"
        wait_links A 1; wait_links B 1
        has tput1 && run "$which-tput1-r$rep" A B A B -- --msgs "$MSGS"
        has lat1 && run "$which-lat1-r$rep" A B A B -- --rate "$RATE" --duration "$SECS"
        save_logs "$which-pair-r$rep" A B
        stop_routers
    done
done
echo "# done $(date -u +%FT%TZ), $FAILED failed run(s)" >&2
