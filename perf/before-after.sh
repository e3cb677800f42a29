#!/usr/bin/env bash
# Before/after a change: two weft binaries (BASE, NEW), the same load tool
# (BASE's `weft bench`), each broker alone, pinned as perf/compare pins
# (broker core 0, load core 1), alternating which goes first, REPS
# repetitions; prints the median delivered msg/s and the broker's CPU per
# message (utime+stime from /proc, 10 ms ticks) and their ratios.
#   BASE=/path/weft-before NEW=/path/weft-after REPS=5 perf/before-after.sh
set -euo pipefail
BASE=${BASE:?BASE=path of the binary before}
NEW=${NEW:?NEW=path of the binary after}
LOAD=$BASE
REPS=${REPS:-3}
PAYLOAD=${PAYLOAD:-128}
P=${PORT:-19830}
OUT=${OUT:-perf/results/tmp/before-after}
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.ticks "$OUT"/*.txt
wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "port $1 did not open" >&2; return 1
}
WORKLOADS=${WORKLOADS:-"mqtt-1to1-q0 mqtt 0 2000000
mqtt-1to1-q1 mqtt 1 600000
nats-1to1 nats 0 2000000"}
for rep in $(seq "$REPS"); do
    while read -r id proto qos msgs; do
        pair="base new"
        if [ $((rep % 2)) = 0 ]; then pair="new base"; fi
        for which in $pair; do
            if [ "$which" = base ]; then bin=$BASE; else bin=$NEW; fi
            taskset -c 0 "$bin" run --mqtt-listen 127.0.0.1:$P --nats-listen 127.0.0.1:$((P + 1)) \
                --shards 1 --cores 0 --log-level warn >>"$OUT/broker.log" 2>&1 &
            pid=$!
            wait_port $P; wait_port $((P + 1))
            if [ "$proto" = mqtt ]; then port=$P; else port=$((P + 1)); fi
            c0=$(awk '{print $14 + $15}' /proc/$pid/stat)
            timeout 300 "$LOAD" bench --protocol "$proto" --server 127.0.0.1:$port --size "$PAYLOAD" \
                --pin-cores 1 --no-progress --quiet-ms 3000 --json "$OUT/$id-$which-r$rep.json" \
                --pubs 1 --subs 1 --qos "$qos" --msgs "$msgs" >"$OUT/$id-$which-r$rep.txt" 2>&1 || echo "$id $which r$rep failed" >&2
            c1=$(awk '{print $14 + $15}' /proc/$pid/stat)
            echo $((c1 - c0)) >"$OUT/$id-$which-r$rep.ticks"
            kill "$pid"; wait "$pid" 2>/dev/null || true
            python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], f\"{d['totals']['deliver']['msgs_per_s']:.0f}\", d['totals']['lost'])" \
                "$OUT/$id-$which-r$rep.json" "$id $which r$rep"
        done
    done <<<"$WORKLOADS"
done
python3 - "$OUT" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
rows = {}
cpu = {}
for f in glob.glob(os.path.join(out, "*.json")):
    name = os.path.basename(f)[:-5]
    id_, which, rep = name.rsplit("-", 2)
    d = json.load(open(f))
    ticks = int(open(f[:-5] + ".ticks").read())
    hz = os.sysconf("SC_CLK_TCK")
    rows.setdefault(id_, {}).setdefault(which, []).append(d["totals"]["deliver"]["msgs_per_s"])
    cpu.setdefault(id_, {}).setdefault(which, []).append(ticks / hz / d["totals"]["received"] * 1e6)
print("| workload | before (1e5441b) msg/s, median | after msg/s, median | after / before | broker CPU µs/msg before / after (median) | CPU after / before | runs (M msg/s) |")
print("|---|---|---|---|---|---|---|")
for id_ in sorted(rows):
    b = statistics.median(rows[id_]["base"]); a = statistics.median(rows[id_]["new"])
    cb = statistics.median(cpu[id_]["base"]); ca = statistics.median(cpu[id_]["new"])
    print(f"| {id_} | {b:,.0f} | {a:,.0f} | {a/b:.3f} | {cb:.3f} / {ca:.3f} | {ca/cb:.3f} | {' '.join(f'{x/1e6:.2f}' for x in rows[id_]['base'])} / {' '.join(f'{x/1e6:.2f}' for x in rows[id_]['new'])} M |")
PY
