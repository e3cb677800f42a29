#!/usr/bin/env bash
# weft's NATS path against nats-server (issue #17, target 1 and 2): two
# weft binaries (BEFORE, AFTER) and nats-server in the same run, the same
# load tool (AFTER's `weft bench`) and the same pinning as perf/compare
# (broker on core $BROKER_CORE under taskset, weft with --shards 1 --cores
# $BROKER_CORE; the load on --pin-cores $LOAD_CORE).
#
#   nats-1to1   1 publisher -> 1 subscriber, $PAYLOAD B (default 64)
#   nats-1to4   1 publisher -> 4 subscribers (fan-out)
#
# Each repetition runs every broker once per workload, in an order that
# rotates from one repetition to the next (a noisy neighbour does not
# always hit the same broker). Per run: delivered msgs/s (counted by the
# subscribers, end to end) and the broker's CPU time (utime + stime from
# /proc, clock ticks) per delivered message. Prints the medians, the
# ratios to nats-server, and the CPU the other processes of the machine
# used during the runs (a busy machine makes the ratios noisy).
#
# Usage: BEFORE=/path/weft-main AFTER=/path/weft perf/compare-nats-path.sh
#   env: REPS=3 MSGS=2000000 PAYLOAD=64 BROKER_CORE=0 LOAD_CORE=1
#        PORT=19930 OUT=perf/results/tmp/nats-path WORKLOADS="nats-1to1 nats-1to4"
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${BEFORE:?BEFORE=path of the weft binary before}
AFTER=${AFTER:?AFTER=path of the weft binary after}
LOAD=${LOAD_BIN:-$AFTER}
REPS=${REPS:-3}
MSGS=${MSGS:-2000000}
PAYLOAD=${PAYLOAD:-64}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
P=${PORT:-19930}
OUT=${OUT:-perf/results/tmp/nats-path}
WORKLOADS=${WORKLOADS:-"nats-1to1 nats-1to4"}
PATH=$PATH:/usr/sbin
NATS_SERVER=$(command -v nats-server) || { echo "needs nats-server (Debian: nats-server)" >&2; exit 2; }
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.ticks "$OUT"/*.txt "$OUT"/*.other

wait_port() {
    for _ in $(seq 400); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "port $1 did not open" >&2; return 1
}
# Busy ticks of the whole machine (all cores): user+nice+system+irq+softirq+steal.
machine_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
ticks_of() { awk '{print $14 + $15}' /proc/"$1"/stat; }

BROKERS="before after nats-server"
rep=0
for rep in $(seq "$REPS"); do
    # Rotate the order: B A N, A N B, N B A, ...
    set -- $BROKERS
    for _ in $(seq $(((rep - 1) % 3))); do set -- "$2" "$3" "$1"; done
    order="$*"
    for w in $WORKLOADS; do
        subs=${w##*to}
        for broker in $order; do
            case $broker in
            before | after)
                bin=$BEFORE
                [ "$broker" = after ] && bin=$AFTER
                taskset -c "$BROKER_CORE" "$bin" run --nats-listen 127.0.0.1:$P --mqtt-listen 127.0.0.1:$((P + 1)) \
                    --shards 1 --cores "$BROKER_CORE" --log-level warn >>"$OUT/broker.log" 2>&1 &
                ;;
            nats-server)
                taskset -c "$BROKER_CORE" "$NATS_SERVER" -a 127.0.0.1 -p $P >>"$OUT/broker.log" 2>&1 &
                ;;
            esac
            pid=$!
            wait_port $P
            name=$w-$broker-r$rep
            m0=$(machine_ticks); c0=$(ticks_of $pid)
            timeout 300 "$LOAD" bench --protocol nats --server 127.0.0.1:$P --size "$PAYLOAD" \
                --pin-cores "$LOAD_CORE" --no-progress --quiet-ms 3000 --json "$OUT/$name.json" \
                --pubs 1 --subs "$subs" --msgs "$MSGS" >"$OUT/$name.txt" 2>&1 || echo "$name failed" >&2
            c1=$(ticks_of $pid); m1=$(machine_ticks)
            echo $((c1 - c0)) >"$OUT/$name.ticks"
            # Everything but the broker and the load tool (its own ticks are in the JSON's wall time).
            echo $((m1 - m0 - (c1 - c0))) >"$OUT/$name.other"
            kill "$pid"; wait "$pid" 2>/dev/null || true
            python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], f\"{d['totals']['deliver']['msgs_per_s']:.0f} msg/s\", 'lost', d['totals']['lost'])" \
                "$OUT/$name.json" "$name" >&2 || true
        done
    done
    P=$((P + 2))
done
python3 - "$OUT" "$WORKLOADS" <<'PY'
import glob, json, os, statistics, sys
out, workloads = sys.argv[1], sys.argv[2].split()
hz = os.sysconf("SC_CLK_TCK")
rate, cpu, other = {}, {}, {}
for f in glob.glob(os.path.join(out, "*.json")):
    name = os.path.basename(f)[:-5]
    w, rest = name.split("-", 2)[:2], name.split("-", 2)[2]
    w = "-".join(w)
    broker, _rep = rest.rsplit("-", 1)
    d = json.load(open(f))
    ticks = int(open(f[:-5] + ".ticks").read())
    key = (w, broker)
    rate.setdefault(key, []).append(d["totals"]["deliver"]["msgs_per_s"])
    cpu.setdefault(key, []).append(ticks / hz / max(d["totals"]["received"], 1) * 1e6)
    other.setdefault(key, []).append(int(open(f[:-5] + ".other").read()) / hz)
med = lambda xs: statistics.median(xs)
print("| workload | broker | delivered msg/s (median) | / nats-server | broker CPU µs per delivered msg (median) | runs (M msg/s) | CPU s of other processes, load tool included, per run (median) |")
print("|---|---|---:|---:|---:|---|---:|")
for w in workloads:
    n = rate.get((w, "nats-server"))
    for b in ["before", "after", "nats-server"]:
        if (w, b) not in rate:
            continue
        r = med(rate[(w, b)])
        ratio = f"{r / med(n):.2f}" if n else "-"
        runs = " ".join(f"{x / 1e6:.2f}" for x in rate[(w, b)])
        print(f"| {w} | {b} | {r:,.0f} | {ratio} | {med(cpu[(w, b)]):.3f} | {runs} | {med(other[(w, b)]):.1f} |")
PY
