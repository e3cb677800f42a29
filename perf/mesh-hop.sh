#!/usr/bin/env bash
# One mesh hop, NATS, same run: weft built before a change vs after it vs a
# nats-server cluster route. A trimmed perf/mesh-compare.sh (same pair
# setup, pinning and load tool), for comparing two weft binaries:
#
#   weft         BIN_BEFORE / BIN_AFTER run --router-id A --mesh-listen ... /
#                --router-id B --link A, --shards 1 --cores $BROKER_CORE
#   nats-server  two servers, --cluster / --routes (same cluster name)
#
# Both brokers of a pair under `taskset -c $BROKER_CORE`; the load tool
# (`$BIN_AFTER bench`, the same for every system) on $LOAD_CORE.
# Publisher on broker 1 and subscriber on broker 2 (1 hop), or both on
# broker 2 (0 hop, latency only: the added p50 is 1 hop - 0 hop). Workloads: tp
# (--msgs $MSGS as fast as possible) and lat (--rate $RATE --duration
# $SECS). REPS repetitions, the systems' order rotating per repetition; a
# fresh pair per run. No idle wait (the machine is shared): compare the
# systems within a repetition, and the medians.
#
# Usage: BIN_BEFORE=... BIN_AFTER=... perf/mesh-hop.sh > out.txt
#   env: REPS=5 MSGS=300000 RATE=10000 SECS=5 PAYLOAD=64 BROKER_CORE=0 LOAD_CORE=1
#        BASE_PORT=61100 OUT=dir (JSON per run) SYSTEMS="before after nats"
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-5}
MSGS=${MSGS:-300000}
RATE=${RATE:-10000}
SECS=${SECS:-5}
PAYLOAD=${PAYLOAD:-64}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
BASE_PORT=${BASE_PORT:-61100}
SYSTEMS=${SYSTEMS:-"before after nats"}
HOPS=${HOPS:-"1 0"}
WORKLOADS=${WORKLOADS:-"tp lat"}
OUT=${OUT:-$(mktemp -d)}
: "${BIN_BEFORE:?}" "${BIN_AFTER:?}"
PATH=$PATH:/usr/sbin
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

P_WA_NATS=$((BASE_PORT + 2)) P_WA_MESH=$((BASE_PORT + 3)) P_WB_NATS=$((BASE_PORT + 12))
P_N1=$((BASE_PORT + 31)) P_N2=$((BASE_PORT + 32)) P_N1_CL=$((BASE_PORT + 33)) P_N2_CL=$((BASE_PORT + 34))
P_N1_MON=$((BASE_PORT + 35)) P_N2_MON=$((BASE_PORT + 36))

wait_until() {
    local desc=$1
    shift
    for _ in $(seq 400); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    echo "timed out waiting for: $desc" >&2
    return 1
}
port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
log_addr() { sed -n "s/^weft: $2 listening on \([^ ]*\).*/\1/p" "$1" | head -1; }
links_up() { [ "$(curl -s "http://$1/links" | grep -o '"state":"up"' | wc -l)" -ge 1 ]; }
routes_up() { curl -s "http://127.0.0.1:$1/routez" | grep -q '"num_routes": *1'; }

start_pair() { # SYSTEM -> B1 B2 (pids), PUB1 SUB2 (NATS addresses)
    local sys=$1 bin
    case $sys in
    before | after)
        bin=$BIN_BEFORE
        [ "$sys" = after ] && bin=$BIN_AFTER
        local fl="--shards 1 --cores $BROKER_CORE --admin-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 --log-level warn"
        # shellcheck disable=SC2086
        taskset -c "$BROKER_CORE" "$bin" run --router-id A $fl --nats-listen 127.0.0.1:$P_WA_NATS \
            --mesh-listen 127.0.0.1:$P_WA_MESH >"$WORK/A.log" 2>&1 &
        B1=$!
        PIDS+=("$B1")
        wait_until "router A" grep -q '^weft: mesh listening on' "$WORK/A.log"
        # shellcheck disable=SC2086
        taskset -c "$BROKER_CORE" "$bin" run --router-id B $fl --nats-listen 127.0.0.1:$P_WB_NATS \
            --link 127.0.0.1:$P_WA_MESH >"$WORK/B.log" 2>&1 &
        B2=$!
        PIDS+=("$B2")
        wait_until "router B" grep -q '^weft: admin listening on' "$WORK/B.log"
        wait_until "link up at A" links_up "$(log_addr "$WORK/A.log" admin)"
        wait_until "link up at B" links_up "$(log_addr "$WORK/B.log" admin)"
        PUB1=127.0.0.1:$P_WA_NATS SUB2=127.0.0.1:$P_WB_NATS
        ;;
    nats)
        taskset -c "$BROKER_CORE" nats-server -a 127.0.0.1 -p "$P_N1" -m "$P_N1_MON" --cluster_name bench \
            --cluster "nats://127.0.0.1:$P_N1_CL" >"$WORK/n1.log" 2>&1 &
        B1=$!
        PIDS+=("$B1")
        wait_until "nats 1" port_open "$P_N1_CL"
        taskset -c "$BROKER_CORE" nats-server -a 127.0.0.1 -p "$P_N2" -m "$P_N2_MON" --cluster_name bench \
            --cluster "nats://127.0.0.1:$P_N2_CL" --routes "nats://127.0.0.1:$P_N1_CL" >"$WORK/n2.log" 2>&1 &
        B2=$!
        PIDS+=("$B2")
        wait_until "nats 2" port_open "$P_N2"
        wait_until "route at 1" routes_up "$P_N1_MON"
        wait_until "route at 2" routes_up "$P_N2_MON"
        PUB1=127.0.0.1:$P_N1 SUB2=127.0.0.1:$P_N2
        ;;
    esac
}

stop_pair() {
    kill "$B1" "$B2" 2>/dev/null || true
    wait "$B1" 2>/dev/null || true
    wait "$B2" 2>/dev/null || true
    PIDS=()
}

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

echo "# $(date -u +%FT%TZ) $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg); before $BIN_BEFORE, after $BIN_AFTER, $(nats-server --version)"
rotate() { # REP -> the systems, rotated by REP
    local -a s
    read -ra s <<<"$SYSTEMS"
    local n=${#s[@]} i
    for ((i = 0; i < n; i++)); do printf '%s ' "${s[$(((i + $1) % n))]}"; done
}
for rep in $(seq "$REPS"); do
    for wl in $WORKLOADS; do
        for hops in $HOPS; do
            # Throughput across the hop only (the 0 hop run is for the
            # latency the hop adds).
            [ "$wl" = tp ] && [ "$hops" = 0 ] && continue
            for sys in $(rotate "$rep"); do
                start_pair "$sys"
                pub=$PUB1
                [ "$hops" = 0 ] && pub=$SUB2
                load=(--msgs "$MSGS")
                [ "$wl" = lat ] && load=(--rate "$RATE" --duration "$SECS")
                name=$sys-$wl-${hops}hop-r$rep
                c0=$(($(ticks "$B1") + $(ticks "$B2")))
                "$BIN_AFTER" bench --protocol nats --server "$pub" --sub-server "$SUB2" --subject bench.x \
                    "${load[@]}" --size "$PAYLOAD" --pin-cores "$LOAD_CORE" --quiet-ms 300 \
                    --no-progress --json "$OUT/$name.json" >"$WORK/run.txt" 2>&1 || true
                c1=$(($(ticks "$B1") + $(ticks "$B2")))
                stop_pair
                python3 - "$OUT/$name.json" "$name" "$((c1 - c0))" "$HZ" <<'PY'
import json, sys
path, name, ticks, hz = sys.argv[1:]
try:
    d = json.load(open(path))
except Exception:
    print(f"{name:<26} FAILED"); sys.exit(0)
d["brokers_cpu_s"] = int(ticks) / int(hz)
json.dump(d, open(path, "w"), indent=1)
t = d["totals"]; lat = d.get("latency")
us = d["brokers_cpu_s"] / max(1, t["received"]) * 1e6
extra = f" p50 {lat['p50_us']:.0f} p99 {lat['p99_us']:.0f} us" if lat else ""
print(f"{name:<26} {t['deliver']['msgs_per_s']:>10.0f} msg/s lost {t['lost']:>6} cpu {us:.2f} us/msg{extra}")
PY
            done
        done
    done
done
python3 - "$OUT" <<'PY'
import glob, json, os, statistics, sys
runs = {}
for f in glob.glob(os.path.join(sys.argv[1], "*.json")):
    name = os.path.basename(f)[:-5]
    sys_, wl, hop, rep = name.split("-")
    try:
        runs.setdefault((sys_, wl, hop), []).append(json.load(open(f)))
    except Exception:
        pass
med = lambda xs: statistics.median(xs) if xs else float("nan")
print("\n| system | 1 hop msgs/s | broker CPU µs/msg | 0 hop p50 µs | 1 hop p50 µs | p50 added by the hop µs | 1 hop p99 µs | runs |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
res = {}
for s in ["before", "after", "nats"]:
    tp = runs.get((s, "tp", "1hop"), [])
    rate = med([r["totals"]["deliver"]["msgs_per_s"] for r in tp])
    cpu = med([r["brokers_cpu_s"] / max(1, r["totals"]["received"]) * 1e6 for r in tp])
    l1 = [r["latency"] for r in runs.get((s, "lat", "1hop"), []) if r.get("latency")]
    l0 = [r["latency"] for r in runs.get((s, "lat", "0hop"), []) if r.get("latency")]
    p1, p0 = med([l["p50_us"] for l in l1]), med([l["p50_us"] for l in l0])
    p99 = med([l["p99_us"] for l in l1])
    res[s] = (rate, p1 - p0)
    print(f"| {s} | {rate:,.0f} | {cpu:.2f} | {p0:.0f} | {p1:.0f} | {p1 - p0:+.0f} | {p99:.0f} | {len(tp)} tp, {len(l1)}+{len(l0)} lat |")
if "nats" in res:
    for s in ["before", "after"]:
        if s in res:
            print(f"\nweft {s} / nats-server, 1 hop throughput: {res[s][0] / res['nats'][0]:.2f}")
PY
