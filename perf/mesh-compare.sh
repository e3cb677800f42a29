#!/usr/bin/env bash
# One broker-to-broker hop, same run, same load tool: a weft A-B mesh link vs
# a nats-server 2-node cluster (routes) vs two mosquitto brokers joined by a
# bridge. Publishers connect to broker 1, subscribers to broker 2 (1 hop);
# the 0-hop baseline puts publisher and subscriber both on broker 2 of the
# same running pair (nothing crosses the link: weft and nats-server forward
# on interest only, and the mosquitto bridge imports `bench/#` from broker 1
# into broker 2, never the other way).
#
#   weft         weft run --router-id A --mesh-listen ...  /  --router-id B --link A
#                MQTT 3.1.1 (QoS 0 and QoS 1) and NATS
#   nats-server  two servers, --cluster / --routes (same cluster name), NATS
#   mosquitto    broker 2 has a bridge `connection` to broker 1 with
#                `topic bench/# in 1`, cleansession true; MQTT QoS 0 and QoS 1
#
# Both brokers of a pair run under `taskset -c $BROKER_CORE` (weft also with
# --shards 1 --cores $BROKER_CORE, so its bridge executor is on that core too);
# the load tool is `weft bench --pin-cores $LOAD_CORE`. Every run gets a
# freshly started pair (waited for: weft GET /links "up", nats-server /routez
# num_routes, mosquitto "New bridge connected"); across a hop the load tool's
# probe fence waits until the subscription has reached broker 1 (not
# measured). 1 publisher -> 1 subscriber, $PAYLOAD-byte payloads, one
# topic/subject (bench/x, bench.x):
#   * throughput: --msgs $MSGS as fast as possible; delivered msgs/s counted by
#     the subscriber, and messages lost;
#   * latency: --rate $RATE --duration $SECS, from the intended send time
#     (HdrHistogram, no coordinated omission).
# REPS repetitions; within a repetition weft and its peer run back to back
# (order alternating), and the table gives medians. Before each run the
# script waits (up to QUIET_WAIT s) until the machine is idle, records the
# CPU other processes used during the run, and repeats a run that shared the
# machine with more than NOISE_MAX % of a core of other work.
#
# Writes perf/results/YYYY-MM-DD-mesh-compare.md (printed at the end) and
# YYYY-MM-DD-mesh-compare/ (JSON of every run, with broker and machine CPU).
# A full run takes about 25 minutes (mostly mosquitto and the 10 s latency runs).
#
# Usage: perf/mesh-compare.sh   env: REPS=3 MSGS=500000 RATE=10000 SECS=10 PAYLOAD=64
#          SYSTEMS="weft mosquitto nats-server" HOPS="0 1" BROKER_CORE=0 LOAD_CORE=1
#          BASE_PORT=60100 (uses BASE_PORT+1 .. +36) QUIET_WAIT=60 MOSQ_NODELAY=1
#          NOISE_MAX=25 NOISE_RETRIES=2 (a run during which other processes used more
#          than NOISE_MAX % of one core is repeated, at most NOISE_RETRIES times)
#          WORKLOADS="tp lat" NAME=mesh-compare (output file names)
#          REPORT_ONLY=1 (no runs: rewrite the .md, hand-added notes included, from the
#          JSON already in the raw directory)
#          QUICK=1 (1 rep, 50000 msgs, 3 s latency runs)
#          PROTOS="mqtt nats" (only the groups of these protocols; PROTOS=nats with
#          SYSTEMS="weft nats-server" is perf/compare's mesh-hop row)
#          OUT=perf/results (where the .md and the raw directory go)
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
MSGS=${MSGS:-500000}
RATE=${RATE:-10000}
SECS=${SECS:-10}
PAYLOAD=${PAYLOAD:-64}
SYSTEMS=${SYSTEMS:-"weft mosquitto nats-server"}
HOPS=${HOPS:-"0 1"}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
BASE_PORT=${BASE_PORT:-60100}
QUIET_WAIT=${QUIET_WAIT:-60}
QUIET_MS=${QUIET_MS:-3000}
MOSQ_NODELAY=${MOSQ_NODELAY:-1}
WORKLOADS=${WORKLOADS:-"tp lat"}
NAME=${NAME:-mesh-compare}
REPORT_ONLY=${REPORT_ONLY:-0}
NOISE_MAX=${NOISE_MAX:-25}
NOISE_RETRIES=${NOISE_RETRIES:-2}
if [ "${QUICK:-0}" = 1 ]; then REPS=1; MSGS=50000; SECS=3; fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release/weft
DATE=$(date +%F)
OUT=${OUT:-perf/results}
PROTOS=${PROTOS:-"mqtt nats"}
RAW=$OUT/$DATE-$NAME
WT=/work/wt-cmp

# ------------------------------------------------------------------ ports
P_WA_MQTT=$((BASE_PORT + 1)) P_WA_NATS=$((BASE_PORT + 2)) P_WA_MESH=$((BASE_PORT + 3))
P_WB_MQTT=$((BASE_PORT + 11)) P_WB_NATS=$((BASE_PORT + 12))
P_M1=$((BASE_PORT + 21)) P_M2=$((BASE_PORT + 22))
P_N1=$((BASE_PORT + 31)) P_N2=$((BASE_PORT + 32))
P_N1_CL=$((BASE_PORT + 33)) P_N2_CL=$((BASE_PORT + 34))
P_N1_MON=$((BASE_PORT + 35)) P_N2_MON=$((BASE_PORT + 36))
ALL_PORTS="$P_WA_MQTT $P_WA_NATS $P_WA_MESH $P_WB_MQTT $P_WB_NATS $P_M1 $P_M2 $P_N1 $P_N2 $P_N1_CL $P_N2_CL $P_N1_MON $P_N2_MON"

port_busy() { ss -Htln "sport = :$1" | grep -q .; }
if [ "$REPORT_ONLY" != 1 ]; then
    for p in $ALL_PORTS; do
        if port_busy "$p"; then
            echo "port $p is already in use (someone else's process?); set BASE_PORT" >&2
            exit 1
        fi
    done
fi

# The broker commands (weft's listeners: fixed ports, admin on port 0).
WEFT_FLAGS="--shards 1 --cores $BROKER_CORE --admin-listen 127.0.0.1:0 --log-level warn"
declare -A CMDS=(
    [weft1]="taskset -c $BROKER_CORE weft run --router-id A $WEFT_FLAGS --mqtt-listen 127.0.0.1:$P_WA_MQTT --nats-listen 127.0.0.1:$P_WA_NATS --mesh-listen 127.0.0.1:$P_WA_MESH"
    [weft2]="taskset -c $BROKER_CORE weft run --router-id B $WEFT_FLAGS --mqtt-listen 127.0.0.1:$P_WB_MQTT --nats-listen 127.0.0.1:$P_WB_NATS --link 127.0.0.1:$P_WA_MESH"
    [mosq1]="taskset -c $BROKER_CORE mosquitto -c mosquitto-1.conf"
    [mosq2]="taskset -c $BROKER_CORE mosquitto -c mosquitto-2.conf"
    [nats1]="taskset -c $BROKER_CORE nats-server -a 127.0.0.1 -p $P_N1 -m $P_N1_MON --cluster_name bench --cluster nats://127.0.0.1:$P_N1_CL"
    [nats2]="taskset -c $BROKER_CORE nats-server -a 127.0.0.1 -p $P_N2 -m $P_N2_MON --cluster_name bench --cluster nats://127.0.0.1:$P_N2_CL --routes nats://127.0.0.1:$P_N1_CL"
)

# ------------------------------------------------------------ cleanup
WORK=$(mktemp -d)
PIDS=() # only processes this script started and has not reaped yet
WT_MADE=0
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ "$WT_MADE" = 1 ]; then git worktree remove --force "$WT" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

forget() { # drop reaped pids from PIDS
    local keep=() p q
    for p in "${PIDS[@]}"; do
        for q in "$@"; do [ "$p" = "$q" ] && continue 2; done
        keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# ------------------------------------------------------------ brokers
need_install=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_install+=(mosquitto)
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || need_install+=(nats-server)
if [ ${#need_install[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get install -y "${need_install[@]}" ||
        { $SUDO apt-get update && $SUDO apt-get install -y "${need_install[@]}"; }
fi
PATH=$PATH:/usr/sbin
MOSQUITTO=$(command -v mosquitto)
NATS_SERVER=$(command -v nats-server)

# ------------------------------------------------------------ weft build
# Build the committed HEAD: in the main tree when src/ has no uncommitted
# change and it builds, else from a temporary worktree of HEAD.
COMMIT=$(git rev-parse --short HEAD)
BUILT_FROM="main tree"
if [ "$REPORT_ONLY" = 1 ]; then
    # shellcheck disable=SC1090
    . "$RAW/meta.env"
elif ! { git diff --quiet HEAD -- src Cargo.toml Cargo.lock build.rs 2>/dev/null &&
    cargo build --release --bin weft >&2 &&
    git diff --quiet HEAD -- src Cargo.toml Cargo.lock build.rs 2>/dev/null; }; then
    echo "# main tree has uncommitted changes or does not build: building HEAD ($COMMIT) in $WT" >&2
    [ -e "$WT" ] && { echo "$WT exists; remove it first" >&2; exit 1; }
    git worktree add --detach "$WT" HEAD >&2
    WT_MADE=1
    (cd "$WT" && cargo build --release --bin weft >&2)
    git worktree remove --force "$WT"
    WT_MADE=0
    BUILT_FROM="worktree of HEAD"
fi

# ------------------------------------------------------------ helpers
wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "port $1 did not open" >&2
    return 1
}

# wait_until DESC CMD...: retry CMD for up to 10 s.
wait_until() {
    local desc=$1
    shift
    for _ in $(seq 200); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for: $desc" >&2
    return 1
}

log_addr() { sed -n "s/^weft: $2 listening on \([^ ]*\).*/\1/p" "$1" | head -1; }
links_up() { [ "$(curl -s "http://$1/links" | grep -o '"state":"up"' | wc -l)" -ge 1 ]; }
routes_up() { curl -s "http://127.0.0.1:$1/routez" | grep -q '"num_routes": *1'; }

# start_pair SYSTEM: starts both brokers (pinned) and waits until they are
# joined (returns 1 if they do not). Sets B1_PID B2_PID and the client
# addresses MQTT1/NATS1 (broker 1) and MQTT2/NATS2 (broker 2).
start_pair() {
    local sys=$1 i
    B1_PID="" B2_PID=""
    case $sys in
    weft)
        local fl=$WEFT_FLAGS
        # shellcheck disable=SC2086
        taskset -c "$BROKER_CORE" "$BIN" run --router-id A $fl --mqtt-listen 127.0.0.1:$P_WA_MQTT \
            --nats-listen 127.0.0.1:$P_WA_NATS --mesh-listen 127.0.0.1:$P_WA_MESH >"$WORK/A.log" 2>&1 &
        B1_PID=$!
        PIDS+=("$B1_PID")
        wait_until "router A" grep -q '^weft: mesh listening on' "$WORK/A.log" || return 1
        # shellcheck disable=SC2086
        taskset -c "$BROKER_CORE" "$BIN" run --router-id B $fl --mqtt-listen 127.0.0.1:$P_WB_MQTT \
            --nats-listen 127.0.0.1:$P_WB_NATS --link 127.0.0.1:$P_WA_MESH >"$WORK/B.log" 2>&1 &
        B2_PID=$!
        PIDS+=("$B2_PID")
        wait_until "router B" grep -q '^weft: admin listening on' "$WORK/B.log" || return 1
        ADMIN1=$(log_addr "$WORK/A.log" admin)
        ADMIN2=$(log_addr "$WORK/B.log" admin)
        wait_until "link A-B up at A" links_up "$ADMIN1" || return 1
        wait_until "link A-B up at B" links_up "$ADMIN2" || return 1
        MQTT1=127.0.0.1:$P_WA_MQTT NATS1=127.0.0.1:$P_WA_NATS
        MQTT2=127.0.0.1:$P_WB_MQTT NATS2=127.0.0.1:$P_WB_NATS
        ;;
    mosquitto)
        # As perf/compare (in-flight window 1024 = weft's, no QoS 1 queue
        # limit, no persistence), plus TCP_NODELAY on client sockets (weft and
        # nats-server set it on every socket; mosquitto 2.0.11 does not set it
        # on the bridge's own outgoing socket either way).
        for i in 1 2; do
            local port=$P_M1
            [ $i = 2 ] && port=$P_M2
            cat >"$WORK/mosq$i.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 1024
max_queued_messages 0
log_dest stderr
log_type error
log_type warning
log_type notice
CONF
            [ "$MOSQ_NODELAY" = 1 ] && echo "set_tcp_nodelay true" >>"$WORK/mosq$i.conf"
        done
        cat >>"$WORK/mosq2.conf" <<CONF
connection b1
address 127.0.0.1:$P_M1
cleansession true
topic bench/# in 1
CONF
        cp "$WORK/mosq1.conf" "$RAW/mosquitto-1.conf"
        cp "$WORK/mosq2.conf" "$RAW/mosquitto-2.conf"
        taskset -c "$BROKER_CORE" "$MOSQUITTO" -c "$WORK/mosq1.conf" >"$WORK/mosq1.log" 2>&1 &
        B1_PID=$!
        PIDS+=("$B1_PID")
        wait_port "$P_M1" || return 1
        taskset -c "$BROKER_CORE" "$MOSQUITTO" -c "$WORK/mosq2.conf" >"$WORK/mosq2.log" 2>&1 &
        B2_PID=$!
        PIDS+=("$B2_PID")
        wait_port "$P_M2" || return 1
        wait_until "mosquitto bridge connected" grep -q 'New bridge connected' "$WORK/mosq1.log" || return 1
        MQTT1=127.0.0.1:$P_M1 MQTT2=127.0.0.1:$P_M2
        ;;
    nats-server)
        taskset -c "$BROKER_CORE" "$NATS_SERVER" -a 127.0.0.1 -p "$P_N1" -m "$P_N1_MON" --cluster_name bench \
            --cluster "nats://127.0.0.1:$P_N1_CL" >"$WORK/nats1.log" 2>&1 &
        B1_PID=$!
        PIDS+=("$B1_PID")
        wait_port "$P_N1_CL" || return 1
        taskset -c "$BROKER_CORE" "$NATS_SERVER" -a 127.0.0.1 -p "$P_N2" -m "$P_N2_MON" --cluster_name bench \
            --cluster "nats://127.0.0.1:$P_N2_CL" --routes "nats://127.0.0.1:$P_N1_CL" >"$WORK/nats2.log" 2>&1 &
        B2_PID=$!
        PIDS+=("$B2_PID")
        wait_port "$P_N2" || return 1
        wait_until "nats route at 1" routes_up "$P_N1_MON" || return 1
        wait_until "nats route at 2" routes_up "$P_N2_MON" || return 1
        NATS1=127.0.0.1:$P_N1 NATS2=127.0.0.1:$P_N2
        ;;
    esac
}

ports_of() {
    case $1 in
    weft) echo "$P_WA_MQTT $P_WA_NATS $P_WA_MESH $P_WB_MQTT $P_WB_NATS" ;;
    mosquitto) echo "$P_M1 $P_M2" ;;
    nats-server) echo "$P_N1 $P_N2 $P_N1_CL $P_N2_CL $P_N1_MON $P_N2_MON" ;;
    esac
}

# The ports lie inside the kernel's ephemeral range (32768-60999 here), so an
# outgoing connection of any process may hold one of them as its local port
# for a while: wait until none does (TIME-WAIT is fine, every broker here
# binds with SO_REUSEADDR).
wait_ports_free() {
    local p busy
    for _ in $(seq 60); do
        busy=""
        for p in "$@"; do
            if ss -Htan exclude time-wait "( sport = :$p )" | grep -q .; then busy="$busy $p"; fi
        done
        [ -z "$busy" ] && return 0
        sleep 0.5
    done
    echo "ports still in use after 30 s:$busy" >&2
    ss -Htanp "( sport = :${busy# } )" >&2 || true
    return 1
}

kill_pair() {
    local p
    for p in $B1_PID $B2_PID; do kill "$p" 2>/dev/null || true; done
    for p in $B1_PID $B2_PID; do wait "$p" 2>/dev/null || true; done
    # shellcheck disable=SC2086
    forget $B1_PID $B2_PID
    B1_PID="" B2_PID=""
}

# start_pair_retry SYSTEM: start_pair, up to 3 tries (a port can be taken
# by someone's outgoing connection between the check and the bind, and such
# a connection's TIME-WAIT blocks the bind for 60 s, SO_REUSEADDR or not,
# because the outgoing socket did not set it).
start_pair_retry() {
    local try
    for try in 1 2 3; do
        # shellcheck disable=SC2046
        wait_ports_free $(ports_of "$1") || true
        if start_pair "$1"; then return 0; fi
        echo "  starting the $1 pair failed (try $try/3); logs:" >&2
        tail -n 5 "$WORK"/*.log >&2 || true
        kill_pair
        sleep 61
    done
    echo "could not start the $1 pair" >&2
    exit 1
}

# stop_pair NAME: saves the link view (weft /links, nats /routez), stops both.
stop_pair() {
    local sys=$1 name=$2
    case $sys in
    weft)
        curl -s "http://$ADMIN1/links" >"$RAW/$name.links-A.json" || true
        curl -s "http://$ADMIN2/links" >"$RAW/$name.links-B.json" || true
        ;;
    nats-server)
        curl -s "http://127.0.0.1:$P_N1_MON/routez" >"$RAW/$name.routez-1.json" || true
        ;;
    esac
    local alive=1
    kill -0 "$B1_PID" 2>/dev/null && kill -0 "$B2_PID" 2>/dev/null || alive=0
    kill "$B1_PID" "$B2_PID" 2>/dev/null || true
    wait "$B1_PID" 2>/dev/null || true
    wait "$B2_PID" 2>/dev/null || true
    forget "$B1_PID" "$B2_PID"
    if [ $alive = 0 ]; then
        echo "a $sys broker exited during run $name; logs:" >&2
        tail -n 20 "$WORK"/*.log >&2
        exit 1
    fi
}

HZ=$(getconf CLK_TCK)
proc_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
busy_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
steal_ticks() { awk '/^cpu / {print $9}' /proc/stat; }

# wait_quiet: until the machine used < 15 % of one core over 1 s (other
# people's builds), at most QUIET_WAIT s. Prints the seconds waited.
wait_quiet() {
    local t=0 b0 b1
    while [ "$t" -lt "$QUIET_WAIT" ]; do
        b0=$(busy_ticks)
        sleep 1
        b1=$(busy_ticks)
        [ $((b1 - b0)) -lt $((HZ * 15 / 100)) ] && break
        t=$((t + 1))
    done
    echo "$t"
}

mkdir -p "$RAW"
if [ "$REPORT_ONLY" != 1 ]; then
    rm -f "$RAW"/*.json "$RAW"/*.conf "$RAW"/*.cmd "$RAW"/meta.env
    cat >"$RAW/meta.env" <<META
COMMIT=$COMMIT
BUILT_FROM="$BUILT_FROM"
REPS=$REPS MSGS=$MSGS RATE=$RATE SECS=$SECS PAYLOAD=$PAYLOAD
BROKER_CORE=$BROKER_CORE LOAD_CORE=$LOAD_CORE MOSQ_NODELAY=$MOSQ_NODELAY QUIET_MS=$QUIET_MS
SYSTEMS="$SYSTEMS" HOPS="$HOPS" WORKLOADS="$WORKLOADS" NOISE_MAX=$NOISE_MAX
META
fi

# run_attempt SYSTEM PROTO QOS WORKLOAD HOPS REP ATTEMPT
run_attempt() {
    local sys=$1 proto=$2 qos=$3 wl=$4 hops=$5 rep=$6 attempt=$7
    local label=$sys
    [ "$sys" = weft ] && label=weft-$proto
    local name=$label-q$qos-$wl-${hops}hop-r$rep
    [ "$proto" = nats ] && name=$label-$wl-${hops}hop-r$rep
    local waited
    waited=$(wait_quiet)
    start_pair_retry "$sys"
    local pub sub subject qosarg=()
    if [ "$proto" = mqtt ]; then
        pub=$MQTT1 sub=$MQTT2 subject=bench/x qosarg=(--qos "$qos")
    else
        pub=$NATS1 sub=$NATS2 subject=bench.x
    fi
    [ "$hops" = 0 ] && pub=$sub # both on broker 2
    local load=(--msgs "$MSGS")
    [ "$wl" = lat ] && load=(--rate "$RATE" --duration "$SECS")
    local cmd=(bench --protocol "$proto" --server "$pub" --sub-server "$sub" --subject "$subject"
        "${qosarg[@]}" "${load[@]}" --size "$PAYLOAD" --pin-cores "$LOAD_CORE" --quiet-ms "$QUIET_MS")
    echo "weft ${cmd[*]}" >"$RAW/$name.cmd"
    local c0 c1 m0 m1 t0 t1 rc=0
    c0=$(($(proc_ticks "$B1_PID") + $(proc_ticks "$B2_PID")))
    m0=$(busy_ticks)
    s0=$(steal_ticks)
    t0=$(date +%s.%N)
    timeout 600 "$BIN" "${cmd[@]}" --no-progress --json "$WORK/run.json" >"$WORK/run.txt" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    c1=$(($(proc_ticks "$B1_PID") + $(proc_ticks "$B2_PID")))
    m1=$(busy_ticks)
    s1=$(steal_ticks)
    stop_pair "$sys" "$name"
    if [ ! -s "$WORK/run.json" ]; then
        echo "  $name: FAILED (exit $rc)" >&2
        sed 's/^/    /' "$WORK/run.txt" >&2
        echo "{\"failed\": true, \"exit\": $rc}" >"$RAW/$name.json"
        echo 0 >"$WORK/others"
        return 0
    fi
    python3 - "$WORK/run.json" "$RAW/$name.json" "$sys" "$proto" "$qos" "$wl" "$hops" "$rep" \
        "$((c1 - c0))" "$((m1 - m0))" "$HZ" "$t0" "$t1" "$rc" "$waited" "$attempt" "$WORK/others" "$((s1 - s0))" <<'PY'
import json, sys
src, dst, sys_, proto, qos, wl, hops, rep, bt, mt, hz, t0, t1, rc, waited, attempt, others, st = sys.argv[1:]
d = json.load(open(src))
hz = int(hz); wall = float(t1) - float(t0)
bench = d["cpu"]["user_s"] + d["cpu"]["sys_s"]
d["run"] = {"system": sys_, "proto": proto, "qos": int(qos), "workload": wl, "hops": int(hops),
            "rep": int(rep), "exit": int(rc), "quiet_wait_s": int(waited), "attempt": int(attempt)}
d["brokers"] = {"cpu_s": int(bt) / hz, "wall_s": wall}
d["others_cpu_pct"] = max(0.0, 100 * ((int(mt) - int(bt)) / hz - bench) / wall)
d["steal_pct"] = 100 * int(st) / hz / wall
json.dump(d, open(dst, "w"), indent=1)
open(others, "w").write(f"{d['others_cpu_pct']:.0f}\n")
t = d["totals"]; lat = d.get("latency")
extra = f"  p50 {lat['p50_us']:.0f} p99 {lat['p99_us']:.0f} p99.9 {lat['p99_9_us']:.0f} us" if lat else ""
print(f"  {dst.rsplit('/', 1)[-1][:-5]:<34} deliver {t['deliver']['msgs_per_s']:>10.0f} msg/s  "
      f"lost {t['lost']:>7} extra {t['extra']}  brokers cpu {int(bt)/hz:.2f}s  others {d['others_cpu_pct']:.0f}%"
      f"{extra}", file=sys.stderr)
PY
    rm -f "$WORK/run.json"
}

# run_one SYSTEM PROTO QOS WORKLOAD HOPS REP: run_attempt, repeated while
# other processes took more than NOISE_MAX % of a core during the run.
run_one() {
    local attempt others
    for attempt in $(seq $((NOISE_RETRIES + 1))); do
        run_attempt "$@" "$attempt"
        others=$(cat "$WORK/others")
        if [ "$others" -le "$NOISE_MAX" ]; then return 0; fi
        if [ "$attempt" -le "$NOISE_RETRIES" ]; then
            echo "    (others used ${others}% of a core: again)" >&2
        fi
    done
    return 0
}

has() { case " $SYSTEMS " in *" $1 "*) return 0 ;; esac; return 1; }

echo "# $(date -u +%FT%TZ)  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r); weft $COMMIT ($BUILT_FROM)" >&2
# groups: "weft-system peer-system proto qos"
GROUPS_="weft mosquitto mqtt 0
weft mosquitto mqtt 1
weft nats-server nats 0"
NRUNS=$REPS
[ "$REPORT_ONLY" = 1 ] && NRUNS=0
for rep in $(seq "$NRUNS"); do
    for wl in $WORKLOADS; do
        echo "# repetition $rep/$REPS, $wl" >&2
        while read -r a b proto qos; do
            case " $PROTOS " in *" $proto "*) ;; *) continue ;; esac
            for hops in $HOPS; do
                pair="$a $b"
                [ $((rep % 2)) = 0 ] && pair="$b $a"
                for s in $pair; do
                    has "$s" || continue
                    run_one "$s" "$proto" "$qos" "$wl" "$hops" "$rep"
                done
            done
        done <<<"$GROUPS_"
    done
done

MOSQ_VERSION=$("$MOSQUITTO" -h 2>&1 | head -1 || true)
NATS_VERSION=$("$NATS_SERVER" --version 2>&1 | head -1 || true)
MACHINE="$(nproc) vCPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), kernel $(uname -r)"
{
    has weft && echo "weft1 ${CMDS[weft1]}" && echo "weft2 ${CMDS[weft2]}"
    has mosquitto && echo "mosq1 ${CMDS[mosq1]}" && echo "mosq2 ${CMDS[mosq2]}"
    has nats-server && echo "nats1 ${CMDS[nats1]}" && echo "nats2 ${CMDS[nats2]}"
    true
} >"$WORK/cmds"

python3 - "$RAW" "$OUT/$DATE-$NAME.md" "$REPS" "$MSGS" "$RATE" "$SECS" "$PAYLOAD" \
    "$BROKER_CORE" "$LOAD_CORE" "$COMMIT" "$BUILT_FROM" "$MOSQ_VERSION" "$NATS_VERSION" "$MACHINE" \
    "$WORK/cmds" "$MOSQ_NODELAY" "$QUIET_MS" <<'PY'
import glob, json, os, statistics, sys
(raw, out, reps, msgs, rate, secs, payload, bcore, lcore, commit, built, mosq_v, nats_v,
 machine, cmds_file, nodelay, quiet_ms) = sys.argv[1:]
runs = []
for f in sorted(glob.glob(os.path.join(raw, "*.json"))):
    if ".links-" in f or ".routez-" in f:
        continue
    d = json.load(open(f))
    d["_name"] = os.path.basename(f)[:-5]
    runs.append(d)
failed = [d["_name"] for d in runs if d.get("failed")]
ok = [d for d in runs if not d.get("failed")]
cmds = dict(l.rstrip("\n").split(" ", 1) for l in open(cmds_file) if " " in l)

def sel(system, proto, qos, wl, hops):
    return [d for d in ok if d["run"]["system"] == system and d["run"]["proto"] == proto
            and d["run"]["qos"] == qos and d["run"]["workload"] == wl and d["run"]["hops"] == hops]

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

ROWS = [  # label, system, proto, qos
    ("weft MQTT QoS 0", "weft", "mqtt", 0),
    ("mosquitto QoS 0", "mosquitto", "mqtt", 0),
    ("weft MQTT QoS 1", "weft", "mqtt", 1),
    ("mosquitto QoS 1", "mosquitto", "mqtt", 1),
    ("weft NATS", "weft", "nats", 0),
    ("nats-server NATS", "nats-server", "nats", 0),
]
PEER = {("weft", "mqtt", 0): ("mosquitto", "mqtt", 0), ("weft", "mqtt", 1): ("mosquitto", "mqtt", 1),
        ("weft", "nats", 0): ("nats-server", "nats", 0)}

def tp(system, proto, qos, hops):
    rs = sel(system, proto, qos, "tp", hops)
    if not rs:
        return None
    return {
        "n": len(rs),
        "rate": med([r["totals"]["deliver"]["msgs_per_s"] for r in rs]),
        "lost": [r["totals"]["lost"] for r in rs],
        "extra": sum(r["totals"]["extra"] for r in rs),
        "sent": rs[0]["totals"]["sent"],
        "cpu_us": med([r["brokers"]["cpu_s"] / r["totals"]["received"] * 1e6 for r in rs if r["totals"]["received"]]),
        "others": max(r["others_cpu_pct"] for r in rs),
    }

def lat(system, proto, qos, hops):
    rs = [r for r in sel(system, proto, qos, "lat", hops) if r.get("latency")]
    if not rs:
        return None
    g = lambda k: med([r["latency"][k] for r in rs])
    return {
        "n": len(rs), "p50": g("p50_us"), "p99": g("p99_us"), "p999": g("p99_9_us"),
        "worst_p99": max(r["latency"]["p99_us"] for r in rs),
        "lost": sum(r["totals"]["lost"] for r in rs), "extra": sum(r["totals"]["extra"] for r in rs),
        "cpu_pct": med([100 * r["brokers"]["cpu_s"] / r["brokers"]["wall_s"] for r in rs]),
        "lag": med([r["send_lag"]["p50_us"] for r in rs if r.get("send_lag")]),
        "others": max(r["others_cpu_pct"] for r in rs),
    }

k = lambda v: "–" if v is None else (f"{v/1e6:.2f} M" if v >= 1e6 else f"{v/1e3:.0f} k")
us = lambda v: "–" if v is None else f"{v:,.0f}"
def lost_s(t):
    if t is None:
        return "–"
    if not any(t["lost"]):
        return "0"
    return "/".join(f"{l/t['sent']*100:.1f}%" if l else "0" for l in t["lost"])

L = []
w = L.append
w(f"# One hop between two brokers: weft mesh link vs nats-server cluster vs mosquitto bridge ({os.path.basename(out)[:10]})")
w("")
w(f"weft `{commit}` (release, built from the {built}); {mosq_v} and nats-server {nats_v.split()[-1]} "
  f"(Debian 12 packages). Machine: {machine}, a shared Firecracker VM; **both brokers of a pair "
  f"run on the same core {bcore}** (`taskset -c {bcore}`), the load tool on core {lcore} "
  f"(`weft bench --pin-cores {lcore}`), so a hop's cost here is CPU on one core plus loopback, "
  "not a network. Every run gets a freshly started, joined pair.")
w("")
w(f"1 publisher → 1 subscriber, {payload}-byte payloads, topic `bench/x` / subject `bench.x`. "
  f"**1 hop**: publisher on broker 1, subscriber on broker 2. **0 hop**: publisher and subscriber "
  "both on broker 2 of the same running pair (nothing crosses the link). Throughput: "
  f"`--msgs {msgs}` as fast as possible, delivered msgs/s counted by the subscriber (first to last "
  f"message). Latency: `--rate {rate} --duration {secs}`, µs from the intended send time (no "
  f"coordinated omission). Median of {reps} repetitions; weft and its peer run back to back, "
  "alternating which goes first.")
w("")
w("## Throughput (delivered msgs/s, median)")
w("")
w("| system | 0 hop | 1 hop | 1 hop / 0 hop | lost 0 hop | lost 1 hop (per rep) | broker CPU µs/msg 0 → 1 hop |")
w("|---|---:|---:|---:|---:|---:|---:|")
for label, s, p, q in ROWS:
    a, b = tp(s, p, q, 0), tp(s, p, q, 1)
    r = f"{b['rate']/a['rate']:.2f}" if a and b and a["rate"] and b["rate"] else "–"
    def c(t):
        if not t or t["cpu_us"] is None:
            return "–"
        return f"{t['cpu_us']:.2f}" if t["cpu_us"] < 10 else f"{t['cpu_us']:.1f}"
    w(f"| {label} | {k(a['rate'] if a else None)} | {k(b['rate'] if b else None)} | {r} | "
      f"{lost_s(a)} | {lost_s(b)} | {c(a)} → {c(b)} |")
w("")
w("## Latency at a fixed rate (µs, median of the per-run percentiles)")
w("")
w(f"| system | 0 hop p50 | p99 | p99.9 | 1 hop p50 | p99 | p99.9 | p50 added by the hop | brokers CPU % 0 → 1 hop | lost |")
w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for label, s, p, q in ROWS:
    a, b = lat(s, p, q, 0), lat(s, p, q, 1)
    add = f"{b['p50'] - a['p50']:+.0f}" if a and b else "–"
    lost = (a["lost"] if a else 0) + (b["lost"] if b else 0)
    w(f"| {label} | {us(a and a['p50'])} | {us(a and a['p99'])} | {us(a and a['p999'])} | "
      f"{us(b and b['p50'])} | {us(b and b['p99'])} | {us(b and b['p999'])} | "
      f"{add} | {us(a and a['cpu_pct'])} → {us(b and b['cpu_pct'])} | {lost} |")
w("")
w("*brokers CPU*: both brokers' CPU time during the run, % of one core (median). "
  "p99 and beyond vary a lot from run to run on this VM; every run's p99:")
w("")
w("| system | 0 hop p99 per run | 1 hop p99 per run |")
w("|---|---|---|")
def per_run(system, proto, qos, hops):
    rs = sorted((r for r in sel(system, proto, qos, "lat", hops) if r.get("latency")), key=lambda r: r["run"]["rep"])
    return ", ".join(f"{r['latency']['p99_us']:,.0f}" for r in rs) or "–"
for label, s, p, q in ROWS:
    w(f"| {label} | {per_run(s, p, q, 0)} | {per_run(s, p, q, 1)} |")
w("")
w("## weft / peer, one hop")
w("")
w("| comparison | throughput | p50 | p99 | p99.9 |")
w("|---|---:|---:|---:|---:|")
for (s, p, q), (ps, pp, pq) in PEER.items():
    a, b = tp(s, p, q, 1), tp(ps, pp, pq, 1)
    la, lb = lat(s, p, q, 1), lat(ps, pp, pq, 1)
    f = lambda x, y: "–" if not x or not y else f"{x/y:.2f}"
    name = f"weft {p.upper()}{f' QoS {q}' if p == 'mqtt' else ''} / {ps}"
    w(f"| {name} | {f(a and a['rate'], b and b['rate'])} | {f(la and la['p50'], lb and lb['p50'])} | "
      f"{f(la and la['p99'], lb and lb['p99'])} | {f(la and la['p999'], lb and lb['p999'])} |")
w("")
w("(throughput: > 1 means weft is faster; latency: < 1 means weft is faster.)")
w("")
w("## Commands")
w("")
w("```")
w(f"REPS={reps} MSGS={msgs} RATE={rate} SECS={secs} PAYLOAD={payload} perf/mesh-compare.sh")
w("")
for key, text in cmds.items():
    w(text)
w("# mosquitto-1.conf / mosquitto-2.conf: see the raw directory; broker 2 adds")
w("#   connection b1 / address 127.0.0.1:PORT1 / cleansession true / topic bench/# in 1")
w("# each run (1 hop: --server = broker 1, --sub-server = broker 2; 0 hop: both broker 2):")
w(f"weft bench --protocol mqtt|nats --server B1 --sub-server B2 --subject bench/x|bench.x [--qos 0|1] \\")
w(f"    --msgs {msgs} | --rate {rate} --duration {secs}   --size {payload} --pin-cores {lcore} --quiet-ms {quiet_ms}")
w("```")
w("")
w("## How the three setups differ")
w("")
w("- **What crosses the hop.** weft: a mesh link (B dials A); subscriptions propagate as interest "
  "and events cross only where there is interest; QoS 1 is hop by hop (per-peer sequence number, "
  "kept until the peer acknowledges). nats-server: a route between two cluster members; interest "
  "propagates the same way; NATS core has no acknowledgements. mosquitto: broker 2 runs an MQTT "
  "client (`connection b1`) that subscribes to `bench/#` at QoS 1 on broker 1 and republishes "
  "locally: a static topic list, not interest, and QoS 1 hop by hop through PUBACKs (QoS 0 "
  "messages stay QoS 0). Loop prevention (`try_private`, default on) is irrelevant in one "
  "direction.")
w("- **Threads on the shared core.** weft: per router one shard thread plus the bridge executor "
  "that runs the links, so a message crossing a hop is handed between threads four times "
  "(A shard → A bridge → B bridge → B shard); nats-server: Go runtime, GOMAXPROCS = 1 under "
  "`taskset` (the runtime reads the affinity mask), goroutines multiplexed on that thread; "
  "mosquitto: one single-threaded epoll loop per broker. All of it on one core.")
w("- **TCP_NODELAY.** weft and nats-server set it on every socket. mosquitto only with "
  f"`set_tcp_nodelay true` (used here: MOSQ_NODELAY={nodelay}), which covers accepted "
  "sockets (the load tool's connections, and the bridge's connection as broker 1 sees it, which "
  "carries the bridged PUBLISHes) but, in 2.0.11, not the bridge's own outgoing socket "
  "(checked with `strace -e setsockopt`); in this direction that socket carries only the "
  "bridge's SUBSCRIBE, PUBACKs and PINGREQs. `perf/compare` ran mosquitto without it.")
w("- **Queues.** mosquitto: `max_inflight_messages 1024`, `max_queued_messages 0` (unbounded), "
  "persistence off, as in `perf/compare`. weft: defaults (in-flight 1024; a subscriber queue of "
  "100,000 messages, past which QoS 0 meets the slow-consumer policy and QoS 1 pauses its "
  "publisher; a link's outbound buffer of 16 MiB, past which QoS 0 for that link is dropped and "
  "counted). nats-server: defaults (a slow consumer is cut off at 64 MiB pending). The load "
  "tool's QoS 1 publisher window is 256 for every broker.")
w("")
drops = {"dropped": 0, "unacked_evicted": 0, "events_in": 0}
evicted_runs = []
for f in sorted(glob.glob(os.path.join(raw, "*.links-*.json"))):
    try:
        j = json.load(open(f))
    except Exception:
        continue
    for l in j.get("links", []):
        for key in drops:
            drops[key] += l.get(key, 0) or 0
        if l.get("unacked_evicted"):
            evicted_runs.append((os.path.basename(f).split(".links-")[0], j.get("router_id"),
                                 l["unacked_evicted"], l.get("events_out", 0)))
others = max((d["others_cpu_pct"] for d in ok), default=0)
steal = max((d.get("steal_pct", 0) for d in ok), default=0)
waited = max((d["run"]["quiet_wait_s"] for d in ok), default=0)
w(f"Noise: before each run the script waited until the machine was idle (longest wait {waited} s); "
  f"the most CPU other processes used during any run was {others:.0f} % of one core "
  f"(this includes loopback softirq time not charged to a process, so short fast runs show "
  f"some), hypervisor steal at most {steal:.0f} %. "
  "Raw JSON of every run (with both brokers' CPU time and the others' CPU), the weft `/links` "
  "and nats-server `/routez` after each run, and the mosquitto configs: "
  f"`{os.path.basename(raw)}/`. "
  f"weft links over all runs: {drops['events_in']:,} events received, {drops['dropped']} dropped, "
  f"{drops['unacked_evicted']:,} QoS 1 copies evicted unacknowledged.")
if evicted_runs:
    w("")
    w("**weft QoS 1 resend store overflowed** (`mesh.unacked_max`, default 65,536 per peer): "
      + "; ".join(f"{n}: router {r} evicted {e:,} of {o:,} copies sent" for n, r, e, o in evicted_runs)
      + ". Evicted copies had been sent and were delivered (see *lost*), but would not have been "
      "resent had the link dropped: the store evicts its oldest copy instead of pausing QoS 1 "
      "publishers, so at full speed the at-least-once guarantee across a link failure covers "
      "only the newest 65,536 unacknowledged copies.")
retried = sorted(d["_name"] for d in ok if d["run"].get("attempt", 1) > 1)
if retried:
    w("")
    w(f"Runs repeated because other processes used more than the noise limit during an earlier "
      f"attempt ({len(retried)}): " + ", ".join(retried) + ".")
if failed:
    w("")
    w(f"**Failed runs** ({len(failed)}): " + ", ".join(failed))
open(out, "w").write("\n".join(L) + "\n")
PY
echo
cat "$OUT/$DATE-$NAME.md"
