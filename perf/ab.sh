#!/usr/bin/env bash
# A/B speed check of two revisions of weft (issue #11, acceptance 5): the
# release binary of BEFORE and of AFTER, measured in the same run,
# alternating, with the same load tool.
#
#   mqtt-q0   1 -> 1 MQTT QoS 0, one router
#   mqtt-q1   1 -> 1 MQTT QoS 1, one router
#   nats      1 -> 1 NATS, one router
#   mesh-hop  1 -> 1 MQTT QoS 0 over one mesh hop: routers A and B (B dials
#             A), publisher on A, subscriber on B (`--sub-server`; the load
#             tool's probe fence waits until the interest reached A)
#
# Each revision is checked out with `git worktree add --detach` under
# $AB_DIR (default target/ab, ignored by git) and built with
# `cargo build --release --locked --bin weft` into one shared
# CARGO_TARGET_DIR ($AB_DIR/target: the dependencies are built once); its
# binary is copied to $AB_DIR/bin/<commit>/weft (kept: a later A/B of the
# same commit does not build it again) and the worktree removed. Every run starts fresh
# routers (`--shards 1 --cores $ROUTER_CORE` under `taskset -c
# $ROUTER_CORE`, as perf/compare and perf/mesh-latency.sh do) and runs
# `weft bench --pin-cores $LOAD_CORE --duration $SECS` (throughput,
# $PAYLOAD-byte payloads). The load tool is AFTER's binary for both sides
# (LOAD_BIN to override), so that only the router differs. Within each
# repetition every workload runs before then after, and the order flips
# from one repetition to the next (B A, A B, B A, ...).
#
# Prints (and writes to $OUT, default perf/results/tmp/ab-<date>.md) a
# table of the median delivered msgs/s (counted by the subscriber, end to
# end) per workload and side, the after/before ratio of the medians, and
# every run's value; the routers' own CPU time per delivered message and
# its before/after ratio (above 1: after costs less); and the CPU time
# that other processes used during the runs (a busy machine makes the
# ratios meaningless).
#
# Usage: perf/ab.sh BEFORE AFTER
#   env: REPS=3 SECS=6 PAYLOAD=64 ROUTER_CORE=0 LOAD_CORE=1 AB_DIR=target/ab
#        WORKLOADS="mqtt-q0 mqtt-q1 nats mesh-hop" OUT=FILE LOAD_BIN=PATH
#        BUILD_ONLY=1 (build both binaries, measure nothing)
# With the defaults one A/B takes about 4 minutes after the builds.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=perf/lib.sh
. perf/lib.sh

if [ $# -ne 2 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    [ $# -eq 2 ] && exit 0 || exit 2
fi
REPS=${REPS:-3}
SECS=${SECS:-6}
PAYLOAD=${PAYLOAD:-64}
ROUTER_CORE=${ROUTER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
AB_DIR=${AB_DIR:-$PWD/target/ab}
WORKLOADS=${WORKLOADS:-"mqtt-q0 mqtt-q1 nats mesh-hop"}
for w in $WORKLOADS; do
    case $w in mqtt-q0 | mqtt-q1 | nats | mesh-hop) ;; *) echo "perf/ab.sh: unknown workload '$w'" >&2; exit 2 ;; esac
done
for tool in git cargo taskset curl python3; do
    command -v $tool >/dev/null || { echo "perf/ab.sh: needs $tool" >&2; exit 2; }
done

BEFORE=$(git rev-parse --verify "$1^{commit}") || { echo "perf/ab.sh: no such revision '$1'" >&2; exit 2; }
AFTER=$(git rev-parse --verify "$2^{commit}") || { echo "perf/ab.sh: no such revision '$2'" >&2; exit 2; }
mkdir -p "$AB_DIR"
AB_DIR=$(cd "$AB_DIR" && pwd)

# build REV: the release binary of REV at $AB_DIR/bin/REV/weft.
build() {
    local rev=$1 src=$AB_DIR/src/$1 bin=$AB_DIR/bin/$1
    [ -x "$bin/weft" ] && return 0
    if [ ! -d "$src" ]; then
        git worktree add --detach "$src" "$rev" >&2
    fi
    echo "building $rev (release) ..." >&2
    (cd "$src" && CARGO_TARGET_DIR=$AB_DIR/target cargo build --release --locked --bin weft >&2)
    mkdir -p "$bin"
    cp "$AB_DIR/target/release/weft" "$bin/weft"
    git worktree remove --force "$src"
}
build "$BEFORE"
build "$AFTER"
[ "${BUILD_ONLY:-0}" = 1 ] && exit 0
declare -A BIN=([before]=$AB_DIR/bin/$BEFORE/weft [after]=$AB_DIR/bin/$AFTER/weft)
LOAD_BIN=${LOAD_BIN:-${BIN[after]}}

PIDS=()
stop_routers() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
trap 'stop_routers; cleanup' EXIT
trap 'exit 130' INT TERM

declare -A MQTT NATS ADMIN MESH

# start_router SIDE NAME weft-run-flags...: starts a pinned router of SIDE
# and waits for its "listening" lines (ports 0: the addresses are read there;
# stdout apart from stderr, whose lines could land inside them).
start_router() {
    local side=$1 name=$2 log=$WORK/$2.log
    shift 2
    taskset -c "$ROUTER_CORE" "${BIN[$side]}" run --router-id "$name" --shards 1 \
        --cores "$ROUTER_CORE" --mqtt-listen 127.0.0.1:0 --nats-listen 127.0.0.1:0 \
        --admin-listen 127.0.0.1:0 --log-level warn "$@" >"$log" 2>"$log.err" &
    PIDS+=("$!")
    local pid=$! want="admin listening on"
    case " $* " in *" --mesh-listen "*) want="mesh listening on" ;; esac
    # Up to 30 s: on a loaded machine a start can take several seconds.
    for _ in $(seq 600); do
        grep -q "^weft: $want" "$log" && break
        kill -0 "$pid" 2>/dev/null || { echo "router $name ($side) exited at start:" >&2; cat "$log" "$log.err" >&2; exit 1; }
        sleep 0.05
    done
    grep -q "^weft: $want" "$log" || { echo "router $name: no '$want' line:" >&2; cat "$log" "$log.err" >&2; exit 1; }
    addr() { sed -n "s/^weft: $1 listening on \([^ ]*\).*/\1/p" "$log" | head -1; }
    MQTT[$name]=$(addr mqtt)
    NATS[$name]=$(addr nats)
    ADMIN[$name]=$(addr admin)
    MESH[$name]=$(addr mesh)
}

# wait_links NAME N: until N links of the router are up (GET /links), 30 s at most.
wait_links() {
    local up=0
    for _ in $(seq 600); do
        up=$(curl -s "http://${ADMIN[$1]}/links" | grep -o '"state":"up"' | wc -l || true)
        [ "$up" -ge "$2" ] && return 0
        sleep 0.05
    done
    echo "router $1: $up of $2 links up after 30 s" >&2
    exit 1
}

# busy: the machine's busy clock ticks (user, nice, system, irq, softirq).
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat; }
HZ=$(getconf CLK_TCK)
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# run SIDE WORKLOAD REP: fresh routers of SIDE, one bench, one line in $RESULTS:
# workload side rep msgs/s lost other-cpu-s (the CPU of everything but the
# routers and the load tool, during the run).
run() {
    local side=$1 w=$2 rep=$3 args=()
    case $w in
    mqtt-q0 | mqtt-q1)
        start_router "$side" S
        args=(--protocol mqtt --server "${MQTT[S]}" --qos "${w#mqtt-q}") ;;
    nats)
        start_router "$side" S
        args=(--protocol nats --server "${NATS[S]}") ;;
    mesh-hop)
        start_router "$side" A --mesh-listen 127.0.0.1:0
        start_router "$side" B --link "${MESH[A]}"
        wait_links A 1
        wait_links B 1
        args=(--protocol mqtt --server "${MQTT[A]}" --sub-server "${MQTT[B]}" --qos 0) ;;
    esac
    local b0 b1 r0=0 r1=0 p t0 t1 rc=0
    for p in "${PIDS[@]}"; do r0=$((r0 + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    b0=$(busy)
    t0=$(date +%s.%N)
    timeout $((SECS + 60)) "$LOAD_BIN" bench "${args[@]}" --pubs 1 --subs 1 --size "$PAYLOAD" \
        --duration "$SECS" --pin-cores "$LOAD_CORE" --quiet-ms 1000 --no-progress \
        --json "$WORK/run.json" >"$WORK/run.txt" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    b1=$(busy)
    for p in "${PIDS[@]}"; do r1=$((r1 + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
    stop_routers
    if [ "$rc" != 0 ] || [ ! -s "$WORK/run.json" ]; then
        echo "bench $w ($side, rep $rep) failed (exit $rc):" >&2
        cat "$WORK/run.txt" >&2
        exit 1
    fi
    python3 - "$WORK/run.json" "$w" "$side" "$rep" "$b0" "$b1" "$r0" "$r1" "$HZ" "$t0" "$t1" >>"$RESULTS" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
w, side, rep = sys.argv[2:5]
b0, b1, r0, r1, hz = (int(x) for x in sys.argv[5:10])
t0, t1 = float(sys.argv[10]), float(sys.argv[11])
load = d["cpu"]["pct_of_one_core"] / 100 * (t1 - t0)
other = max(0.0, (b1 - b0 - (r1 - r0)) / hz - load)
# The routers' own CPU (user + system, from /proc) per delivered message:
# less sensitive than the rate to a noisy neighbour (time stolen from this
# VM is not the routers' CPU time).
ns = (r1 - r0) / hz * 1e9 / max(1, d["totals"]["received"])
print(w, side, rep, round(d["totals"]["deliver"]["msgs_per_s"]), d["totals"]["lost"], f"{other:.1f}", f"{ns:.0f}", sep="\t")
PY
    rm -f "$WORK/run.json"
    tail -1 "$RESULTS" | awk -F'\t' '{printf "  %-9s %-6s rep %s  %10d msg/s  lost %d  other cpu %ss  router cpu %s ns/msg\n", $1, $2, $3, $4, $5, $6, $7}' >&2
}

START=$(date -u +%FT%TZ)
echo "# $START  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)" >&2
for rep in $(seq "$REPS"); do
    if [ $((rep % 2)) = 1 ]; then order="before after"; else order="after before"; fi
    for w in $WORKLOADS; do
        for side in $order; do run "$side" "$w" "$rep"; done
    done
done

OUT=${OUT:-perf/results/tmp/ab-$(date +%F).md}
mkdir -p "$(dirname "$OUT")"
python3 - "$RESULTS" "$BEFORE" "$AFTER" "$START" "$REPS" "$SECS" "$PAYLOAD" "$ROUTER_CORE" "$LOAD_CORE" "$WORKLOADS" <<'PY' | tee "$OUT"
import platform, statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
before, after, start, reps, secs, payload, rcore, lcore, workloads = sys.argv[2:11]
runs = {}
other = []
cpu_ns = {}
for w, side, rep, rate, lost, oth, ns in rows:
    runs.setdefault((w, side), []).append((int(rate), int(lost)))
    cpu_ns.setdefault((w, side), []).append(int(ns))
    other.append(float(oth))
cpu = open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(" :\t")
print(f"A/B of weft {before[:7]} (before) and {after[:7]} (after), {start}, {platform.node()}: "
      f"{cpu}, kernel {platform.release()}.")
print(f"{reps} repetitions, alternating (before first in odd repetitions); 1 -> 1, {payload}-byte "
      f"payloads, {secs} s per run; routers `--shards 1 --cores {rcore}` under `taskset -c {rcore}`, "
      f"load tool `weft bench --pin-cores {lcore}` (after's binary). msg/s = delivered, counted by "
      f"the subscriber.\n")
print("| workload | before msg/s (median) | after msg/s (median) | after / before | before runs | after runs | lost (before / after) | router CPU ns/msg before / after (medians) | CPU before / after |")
print("|---|---:|---:|---:|---|---|---|---:|---:|")
for w in workloads.split():
    b, a = runs.get((w, "before"), []), runs.get((w, "after"), [])
    if not b or not a:
        continue
    mb, ma = statistics.median(r for r, _ in b), statistics.median(r for r, _ in a)
    ratio = ma / mb if mb else float("nan")
    fmt = lambda rs: " ".join(f"{r / 1000:.0f}k" for r, _ in rs)
    cb, ca = statistics.median(cpu_ns[(w, "before")]), statistics.median(cpu_ns[(w, "after")])
    print(f"| {w} | {mb:,.0f} | {ma:,.0f} | {ratio:.3f} | {fmt(b)} | {fmt(a)} | "
          f"{sum(l for _, l in b)} / {sum(l for _, l in a)} | {cb:.0f} / {ca:.0f} | "
          f"{cb / ca if ca else float('nan'):.3f} |")
print(f"\nCPU used by other processes during a run (s): median {statistics.median(other):.1f}, "
      f"max {max(other):.1f} (on 2 cores, a few seconds mean another job competed).")
PY
echo "written: $OUT" >&2
