#!/usr/bin/env bash
# System calls per event on the TCP path, before vs after, same run.
#
# For each binary in BINS ("label=path ..."), each path in PATHS and each
# load in LOADS, starts the routers (`--shards 1 --cores $ROUTER_CORE`,
# under `taskset -c $ROUTER_CORE`, so the bridge executor and every other
# router thread share that core), runs `weft bench` (the first binary's,
# pinned to $LOAD_CORE) 1 publisher -> 1 subscriber, $PAYLOAD-byte
# payloads, and counts every system call the routers make meanwhile with
# `perf stat -e raw_syscalls:sys_enter,...` attached to their pids (all
# threads). Per event = router syscalls / messages delivered.
#
#   single  one router, pub and sub on it
#   hop1    A-B (B dials A): publish at A, subscribe at B (counts both)
#   cross   one router with --shards 2 on $ROUTER_CORES2 (default 0,1):
#           pub and sub connect to per-shard ports, so every event
#           crosses the ring from shard 0 to shard 1
#
#   full    as fast as possible ($MSGS messages)
#   rate    $RATE msg/s for $SECS s (latency p50/p99 from the intended
#           send time)
#
# Loads alternate binaries within each repetition (same conditions for
# both); the table gives the median over $REPS repetitions and, per row,
# the ratio after/before when exactly two binaries are given.
#
# Usage: perf/syscalls.sh
#   env: BINS="before=/path/weft after=target/release/weft" PATHS="single hop1 cross"
#        SPIN_<label>=US: that binary's routers run with [runtime] spin_us = US
#        (a label may name the same binary as another: "after-spin50=...")
#        LOADS="full rate" PROTOCOL=mqtt RATE=10000 SECS=5 MSGS=200000 REPS=3
#        PAYLOAD=64 ROUTER_CORE=1 LOAD_CORE=0 ROUTER_FLAGS="..." OUT=file.md
set -euo pipefail
cd "$(dirname "$0")/.."

BINS=${BINS:-"current=${CARGO_TARGET_DIR:-target}/release/weft"}
PATHS=${PATHS:-"single hop1"}
LOADS=${LOADS:-"full rate"}
PROTOCOL=${PROTOCOL:-mqtt}
RATE=${RATE:-10000}
SECS=${SECS:-5}
MSGS=${MSGS:-200000}
REPS=${REPS:-3}
PAYLOAD=${PAYLOAD:-64}
ROUTER_CORE=${ROUTER_CORE:-1}
ROUTER_CORES2=${ROUTER_CORES2:-0,1}
LOAD_CORE=${LOAD_CORE:-0}
ROUTER_FLAGS=${ROUTER_FLAGS:-}
OUT=${OUT:-/dev/stdout}
EVENTS="raw_syscalls:sys_enter,syscalls:sys_enter_io_uring_enter,syscalls:sys_enter_write,syscalls:sys_enter_membarrier,context-switches"

command -v perf >/dev/null || { echo "needs perf (linux-perf)" >&2; exit 2; }
LOAD_BIN=""
for b in $BINS; do
    [ -x "${b#*=}" ] || { echo "no binary ${b#*=}" >&2; exit 2; }
    [ -n "$LOAD_BIN" ] || LOAD_BIN=${b#*=}
done

WORK=$(mktemp -d)
PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
# up BIN NAME CORES SHARDS flags...: start, then read its addresses
up() {
    start "$@"
    read -r U_PID U_MQTT U_NATS U_MESH U_ADMIN <"$WORK/$2.addr"
}
cleanup() {
    stop_all
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The extra config of a label: $WORK/LABEL.toml ([runtime] spin_us).
label_toml() { # label [extra toml text]
    local var="SPIN_${1//-/_}" f=$WORK/$1.toml
    : >"$f"
    [ -n "${!var:-}" ] && printf '[runtime]\nspin_us = %s\n' "${!var}" >>"$f"
    [ -n "${2:-}" ] && printf '%s' "$2" >>"$f"
    echo "$f"
}

# start BIN NAME CORES SHARDS flags...: writes "pid mqtt nats mesh admin"
# (addresses) to $WORK/NAME.addr
start() {
    local bin=$1 name=$2 cores=$3 shards=$4 log=$WORK/$2.log
    shift 4
    # shellcheck disable=SC2086
    taskset -c "$cores" "$bin" run --router-id "$name" --shards "$shards" --cores "$cores" \
        --mqtt-listen 127.0.0.1:0 --nats-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --log-level warn $ROUTER_FLAGS "$@" >"$log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    local want="admin listening on"
    case " $* " in *" --mesh-listen "*) want="mesh listening on" ;; esac
    for _ in $(seq 200); do
        grep -q "^weft: $want" "$log" && break
        kill -0 "$pid" 2>/dev/null || { echo "router $name exited:" >&2; cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    addr() { sed -n "s/^weft: $1 listening on \([^ ]*\).*/\1/p" "$log" | head -1 | grep . || echo -; }
    echo "$pid $(addr mqtt) $(addr nats) $(addr mesh) $(addr admin)" >"$WORK/$name.addr"
}

wait_links() { # admin n
    for _ in $(seq 200); do
        [ "$(curl -s "http://$1/links" | grep -o '"state":"up"' | wc -l)" -ge "$2" ] && return 0
        sleep 0.05
    done
    echo "links not up at $1" >&2
    exit 1
}

# run LABEL BIN PATH LOAD REP: one measurement, appended to $WORK/rows
run() {
    local label=$1 bin=$2 path=$3 load=$4 rep=$5 pub pids m n extra=""
    local cfg
    cfg=$(label_toml "$label")
    case $path in
    single)
        up "$bin" S "$ROUTER_CORE" 1 --config "$cfg"
        pids=$U_PID m=$U_MQTT n=$U_NATS
        ;;
    hop1)
        up "$bin" A "$ROUTER_CORE" 1 --config "$cfg" --mesh-listen 127.0.0.1:0
        local pa=$U_PID aa=$U_ADMIN
        m=$U_MQTT n=$U_NATS
        up "$bin" B "$ROUTER_CORE" 1 --config "$cfg" --link "$U_MESH"
        wait_links "$aa" 1
        wait_links "$U_ADMIN" 1
        pids="$pa,$U_PID"
        extra="--sub-server $([ "$PROTOCOL" = mqtt ] && echo "$U_MQTT" || echo "$U_NATS")"
        ;;
    cross)
        # Per-shard listeners: shard i on base+i; pub on shard 0, sub on 1.
        # A base whose ports (base, +1, +10, +11) are free now.
        local base
        base=$(python3 -c '
import random, socket
while True:
    b = random.randrange(20000, 60000, 20)
    try:
        for p in (b, b + 1, b + 10, b + 11):
            s = socket.socket(); s.bind(("127.0.0.1", p)); s.close()
        print(b); break
    except OSError:
        pass')
        cfg=$(label_toml "$label" "$(printf '[mqtt]\nshard_listeners = true\nshard_port_base = %s\n[nats]\nshard_listeners = true\nshard_port_base = %s\n' \
            "$base" $((base + 10)))")
        up "$bin" X "$ROUTER_CORES2" 2 --config "$cfg"
        pids=$U_PID
        if [ "$PROTOCOL" = mqtt ]; then m=127.0.0.1:$base; extra="--sub-server 127.0.0.1:$((base + 1))"
        else n=127.0.0.1:$((base + 10)); extra="--sub-server 127.0.0.1:$((base + 11))"; fi
        ;;
    esac
    if [ "$PROTOCOL" = mqtt ]; then pub=$m; else pub=$n; fi
    local what
    if [ "$load" = full ]; then what="--msgs $MSGS"; else what="--rate $RATE --duration $SECS"; fi
    perf stat -x, -e "$EVENTS" -p "$pids" -o "$WORK/perf.csv" &
    local perf_pid=$!
    sleep 0.2
    # shellcheck disable=SC2086
    "$LOAD_BIN" bench --protocol "$PROTOCOL" --server "$pub" $extra --subject "sys/$rep/$load" \
        --size "$PAYLOAD" $what --pin-cores "$LOAD_CORE" --no-progress --json "$WORK/b.json" \
        >"$WORK/bench.out" 2>&1 || { echo "bench failed ($label $path $load):" >&2; cat "$WORK/bench.out" >&2; }
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null || true
    stop_all
    python3 - "$WORK/perf.csv" "$WORK/b.json" "$label" "$path" "$load" "$rep" >>"$WORK/rows" <<'PY'
import json, sys
csv, js, label, path, load, rep = sys.argv[1:]
counts = {}
for line in open(csv):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        counts[f[2]] = float(f[0])
try:
    b = json.load(open(js))
except Exception:
    sys.exit(0)
rcv = b["totals"]["received"] or 1
lat = b.get("latency") or {}
print(json.dumps({
    "label": label, "path": path, "load": load, "rep": int(rep),
    "received": rcv, "deliver_per_s": b["totals"]["deliver"]["msgs_per_s"],
    "lost": b["totals"]["lost"],
    "sys": counts.get("raw_syscalls:sys_enter", 0) / rcv,
    "uring": counts.get("syscalls:sys_enter_io_uring_enter", 0) / rcv,
    "write": counts.get("syscalls:sys_enter_write", 0) / rcv,
    "membarrier": counts.get("syscalls:sys_enter_membarrier", 0) / rcv,
    "cs": counts.get("context-switches", 0) / rcv,
    "p50": lat.get("p50_us"), "p99": lat.get("p99_us"),
}))
PY
    tail -1 "$WORK/rows" >&2
}

echo "# $(date -u +%FT%TZ)  $(nproc) cores, kernel $(uname -r), load avg $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for rep in $(seq "$REPS"); do
    for path in $PATHS; do
        for load in $LOADS; do
            for b in $BINS; do
                run "${b%%=*}" "${b#*=}" "$path" "$load" "$rep"
            done
        done
    done
done

python3 - "$WORK/rows" "$BINS" "$PROTOCOL" "$RATE" "$MSGS" "$PAYLOAD" "$REPS" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
labels = [b.split("=", 1)[0] for b in sys.argv[2].split()]
proto, rate, msgs, payload, reps, load = sys.argv[3:]
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def fmt(x, d=2):
    if x is None:
        return "–"
    return f"{x:.3g}" if d == 2 else f"{x:.{d}f}"
print(f"{proto}, 1 → 1, {payload} B, median of {reps} (load avg at end {load}); per event = per message delivered\n")
print("| path | load | binary | syscalls/event | io_uring_enter/event | write/event | membarrier/event | ctx switches/event | delivered msg/s | p50 µs | p99 µs |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
keys = sorted({(r["path"], r["load"]) for r in rows}, key=lambda k: (k[0], k[1]))
for path, ld in keys:
    meds = {}
    for lab in labels:
        rs = [r for r in rows if r["path"] == path and r["load"] == ld and r["label"] == lab]
        if not rs:
            continue
        m = {k: med([r[k] for r in rs]) for k in ("sys", "uring", "write", "membarrier", "cs", "deliver_per_s", "p50", "p99")}
        meds[lab] = m
        what = f"{int(msgs)} msgs" if ld == "full" else f"{rate}/s"
        print(f"| {path} | {what} | {lab} | {fmt(m['sys'])} | {fmt(m['uring'])} | {fmt(m['write'])} | {fmt(m['membarrier'])} | {fmt(m['cs'])} | {fmt(m['deliver_per_s'],0)} | {fmt(m['p50'],1)} | {fmt(m['p99'],1)} |")
    if len(labels) == 2 and all(l in meds for l in labels):
        a, b = meds[labels[0]], meds[labels[1]]
        r = lambda k: "–" if not a[k] or b[k] is None else f"{b[k]/a[k]:.2f}"
        print(f"| {path} | | {labels[1]}/{labels[0]} | {r('sys')} | {r('uring')} | {r('write')} | {r('membarrier')} | {r('cs')} | {r('deliver_per_s')} | {r('p50')} | {r('p99')} |")
# One mesh hop's added p50: hop1 minus single, per repetition, at the rate.
hops = []
for lab in labels:
    added = []
    for rep in sorted({r["rep"] for r in rows}):
        one = {r["path"]: r["p50"] for r in rows if r["label"] == lab and r["rep"] == rep and r["load"] == "rate"}
        if one.get("hop1") is not None and one.get("single") is not None:
            added.append(one["hop1"] - one["single"])
    if added:
        hops.append((lab, statistics.median(added), added))
if hops:
    print(f"\nOne mesh hop's added p50 at {rate}/s (hop1 p50 − single p50, median over repetitions):\n")
    for lab, m, added in hops:
        print(f"- {lab}: {m:.1f} µs (each repetition: {', '.join(f'{a:.1f}' for a in added)})")
PY
