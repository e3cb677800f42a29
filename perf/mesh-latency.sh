#!/usr/bin/env bash
# End-to-end latency through the weft mesh: 0, 1 and 2 router hops, measured
# with the same load tool (`weft bench` at fixed rates, latency from the
# intended send time, HdrHistogram, no coordinated omission).
#
#   single  0 hops  one router without a mesh, pub and sub on it
#   local   0 hops  pub and sub on A of a linked pair A-B (mesh on, unused)
#   hop1    1 hop   A-B (B dials A): publish at A, subscribe at B
#   hop2    2 hops  A-B-C line (B dials A, C dials B): publish at A, subscribe at C
#   tls1    1 hop   like hop1, the link over TLS ([mesh.tls], one mesh-wide
#                   certificate made with openssl; not in the default PATHS)
#
# Every router runs `--shards 1 --cores $ROUTER_CORE` under taskset (so its
# bridge executor and other threads share that core too), listeners on
# port 0 (the addresses are read from the "listening" lines), admin on
# 127.0.0.1:0 for GET /links; the load tool runs with --pin-cores $LOAD_CORE.
# All routers are started first and stay up; runs alternate the paths within
# each repetition so that they see the same conditions. Before each run on
# another router the load tool's probe fence waits until the subscription has
# reached the publishers' router (not measured). 1 publisher -> 1 subscriber,
# $PAYLOAD-byte payloads, MQTT QoS 0 and NATS, at each rate in $RATES for
# $SECS s, $REPS repetitions; the table gives the median over repetitions
# of each percentile (and the worst p99 of any repetition).
#
# Writes perf/results/YYYY-MM-DD-mesh-latency.md (printed at the end) and
# YYYY-MM-DD-mesh-latency/ (the JSON of every run, /links of every router).
#
# Usage: perf/mesh-latency.sh   env: RATES="10000 50000" SECS=10 REPS=3 PAYLOAD=64
#                                    PROTOCOLS="mqtt nats" PATHS="single local hop1 hop2"
#                                    ROUTER_CORE=0 LOAD_CORE=1 QUICK=1 (1 rep of 3 s)
#                                    ROUTER_FLAGS="..." (added to every `weft run`)
#
# Noise check: for each run the table also gives the routers' CPU and the
# CPU that other processes on the machine used meanwhile (from /proc/stat,
# minus the routers and the load tool); with 2 cores, a concurrent build
# ruins the tail percentiles, so look at that column before trusting p99.
set -euo pipefail
cd "$(dirname "$0")/.."

RATES=${RATES:-"10000 50000"}
SECS=${SECS:-10}
REPS=${REPS:-3}
PAYLOAD=${PAYLOAD:-64}
PROTOCOLS=${PROTOCOLS:-"mqtt nats"}
PATHS=${PATHS:-"single local hop1 hop2"}
ROUTER_CORE=${ROUTER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
ROUTER_FLAGS=${ROUTER_FLAGS:-}
if [ "${QUICK:-0}" = 1 ]; then REPS=1; SECS=3; fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-bench}
BIN=$CARGO_TARGET_DIR/release/weft
DATE=$(date +%F)
OUT=perf/results
RAW=$OUT/$DATE-mesh-latency
mkdir -p "$RAW"
rm -f "$RAW"/*.json

cargo build --release --bin weft >&2

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A PID MQTT NATS ADMIN MESH

# start_router NAME weft-run-flags... : starts a router and waits for its
# "listening" lines; sets PID, MQTT, NATS, ADMIN and (with --mesh-listen) MESH.
start_router() {
    local name=$1 log=$WORK/$1.log
    shift
    # shellcheck disable=SC2086
    taskset -c "$ROUTER_CORE" "$BIN" run --router-id "$name" --shards 1 --cores "$ROUTER_CORE" \
        --mqtt-listen 127.0.0.1:0 --nats-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --log-level warn $ROUTER_FLAGS "$@" >"$log" 2>&1 &
    PID[$name]=$!
    PIDS+=("$!")
    local want="admin listening on"
    case " $* " in *" --mesh-listen "*) want="mesh listening on" ;; esac
    for _ in $(seq 200); do
        grep -q "^weft: $want" "$log" && break
        if ! kill -0 "${PID[$name]}" 2>/dev/null; then
            echo "router $name exited at start:" >&2
            cat "$log" >&2
            exit 1
        fi
        sleep 0.05
    done
    grep -q "^weft: $want" "$log" || { echo "router $name: no '$want' line:" >&2; cat "$log" >&2; exit 1; }
    addr() { sed -n "s/^weft: $1 listening on \([^ ]*\).*/\1/p" "$log" | head -1; }
    MQTT[$name]=$(addr mqtt)
    NATS[$name]=$(addr nats)
    ADMIN[$name]=$(addr admin)
    MESH[$name]=$(addr mesh)
    echo "router $name: mqtt ${MQTT[$name]} nats ${NATS[$name]} admin ${ADMIN[$name]} mesh ${MESH[$name]:--}" >&2
}

# wait_links NAME N: until N links of the router are up (GET /links).
wait_links() {
    local up=0
    for _ in $(seq 200); do
        up=$(curl -s "http://${ADMIN[$1]}/links" | grep -o '"state":"up"' | wc -l || true)
        [ "$up" -ge "$2" ] && return 0
        sleep 0.05
    done
    echo "router $1: $up of $2 links up after 10 s:" >&2
    curl -s "http://${ADMIN[$1]}/links" >&2 || true
    exit 1
}

need() { case " $PATHS " in *" $1 "*) return 0 ;; esac; return 1; }
for path in $PATHS; do
    case $path in single | local | hop1 | hop2 | tls1) ;; *) echo "unknown path '$path' in PATHS" >&2; exit 2 ;; esac
done

if need single; then start_router S; fi
if need local || need hop1; then
    start_router A1 --mesh-listen 127.0.0.1:0
    start_router B1 --link "${MESH[A1]}"
    wait_links A1 1
    wait_links B1 1
fi
if need hop2; then
    start_router A2 --mesh-listen 127.0.0.1:0
    start_router B2 --mesh-listen 127.0.0.1:0 --link "${MESH[A2]}"
    start_router C2 --link "${MESH[B2]}"
    wait_links A2 1
    wait_links B2 2
    wait_links C2 1
fi

if need tls1; then
    command -v openssl >/dev/null || { echo "path tls1 needs openssl" >&2; exit 2; }
    PKI=$WORK/pki
    mkdir -p "$PKI"
    (
        cd "$PKI"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -keyout mesh.key -out mesh.csr -subj /CN=mesh
        echo "subjectAltName=IP:127.0.0.1" >mesh.ext
        openssl x509 -req -in mesh.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
            -out mesh.pem -days 2 -extfile mesh.ext
    ) >/dev/null 2>&1
    printf '[mesh.tls]\ncert = "%s"\nkey = "%s"\nca = "%s"\n' \
        "$PKI/mesh.pem" "$PKI/mesh.key" "$PKI/ca.pem" >"$WORK/tls.toml"
    start_router A3 --config "$WORK/tls.toml" --mesh-listen 127.0.0.1:0
    start_router B3 --config "$WORK/tls.toml" --link "${MESH[A3]}"
    wait_links A3 1
    wait_links B3 1
fi

# path -> "publishers' router, subscribers' router"
routers_of() {
    case $1 in
    single) echo "S S" ;;
    local) echo "A1 A1" ;;
    hop1) echo "A1 B1" ;;
    hop2) echo "A2 C2" ;;
    tls1) echo "A3 B3" ;;
    esac
}

check_routers() {
    local n
    for n in "${!PID[@]}"; do
        if ! kill -0 "${PID[$n]}" 2>/dev/null; then
            echo "router $n exited during the runs:" >&2
            cat "$WORK/$n.log" >&2
            exit 1
        fi
    done
}

# snap: "busy steal routers" in clock ticks: the machine's busy time (user,
# nice, system, irq, softirq), the time the hypervisor stole, and the CPU
# time of all our routers.
snap() {
    local r=0 p
    for p in "${PIDS[@]}"; do
        r=$((r + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
    awk -v r="$r" '/^cpu / {print $2 + $3 + $4 + $7 + $8, $9, r}' /proc/stat
}
HZ=$(getconf CLK_TCK)

echo "# $(date -u +%FT%TZ)  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)" >&2
FAILED=0
for rep in $(seq "$REPS"); do
    for rate in $RATES; do
        for proto in $PROTOCOLS; do
            for path in $PATHS; do
                read -r pr sr < <(routers_of "$path")
                if [ "$proto" = mqtt ]; then
                    pub=${MQTT[$pr]} sub=${MQTT[$sr]} subject="lat/r$rep/$rate/$path" qos="--qos 0"
                else
                    pub=${NATS[$pr]} sub=${NATS[$sr]} subject="lat.r$rep.$rate.$path" qos=""
                fi
                name=$proto-$path-$rate-r$rep
                rc=0
                read -r b0 s0 r0 < <(snap)
                t0=$(date +%s.%N)
                # shellcheck disable=SC2086
                "$BIN" bench --protocol "$proto" --server "$pub" --sub-server "$sub" $qos \
                    --subject "$subject" --rate "$rate" --duration "$SECS" --size "$PAYLOAD" \
                    --pin-cores "$LOAD_CORE" --no-progress --json "$RAW/$name.json" \
                    >"$WORK/$name.out" 2>&1 || rc=$?
                read -r b1 s1 r1 < <(snap)
                t1=$(date +%s.%N)
                # Ticks -> % of one core over the run; the load tool's own
                # CPU comes from its JSON.
                echo "$b0 $s0 $r0 $b1 $s1 $r1 $t0 $t1 $HZ" >"$RAW/$name.cpu"
                if [ $rc != 0 ]; then
                    FAILED=$((FAILED + 1))
                    echo "$name: weft bench exited with $rc:" >&2
                    cat "$WORK/$name.out" >&2
                    rm -f "$RAW/$name.json" "$RAW/$name.cpu"
                else
                    echo "$name: $(grep -E '^  (latency|messages)' "$WORK/$name.out" | sed 's/^ *//' | tr '\n' ' ')" >&2
                fi
                check_routers
            done
        done
    done
done

for n in "${!ADMIN[@]}"; do
    curl -s "http://${ADMIN[$n]}/links" >"$RAW/links-$n.json" || true
done
for n in "${!PID[@]}"; do
    if grep -qv '^weft: ' "$WORK/$n.log"; then
        echo "# router $n log (warnings):" >&2
        grep -v '^weft: ' "$WORK/$n.log" | tail -5 >&2
    fi
done

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || COMMIT="$COMMIT+uncommitted"
MACHINE="$(nproc) vCPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r)"
python3 - "$RAW" "$OUT/$DATE-mesh-latency.md" "$REPS" "$PAYLOAD" "$SECS" "$RATES" "$PROTOCOLS" \
    "$PATHS" "$COMMIT" "$MACHINE" "$ROUTER_CORE" "$LOAD_CORE" "$FAILED" <<'PY'
import json, os, statistics, sys
raw, out, reps, payload, secs, rates, protos, paths, commit, machine, rcore, lcore, failed = sys.argv[1:]
rates, protos, paths = rates.split(), protos.split(), paths.split()
label = {
    "single": ("0", "single router"),
    "local": ("0", "A of A–B (mesh on)"),
    "hop1": ("1", "A → B"),
    "hop2": ("2", "A → B → C"),
    "tls1": ("1", "A → B over TLS"),
}
runs = {}
for f in sorted(os.listdir(raw)):
    if not f.endswith(".json") or f.startswith("links-"):
        continue
    proto, path, rate, _rep = f[:-5].split("-")
    r = json.load(open(os.path.join(raw, f)))
    cpu = os.path.join(raw, f[:-5] + ".cpu")
    if os.path.exists(cpu):
        b0, s0, r0, b1, s1, r1, t0, t1, hz = map(float, open(cpu).read().split())
        wall = max(t1 - t0, 1e-9)
        bench = r["cpu"]["user_s"] + r["cpu"]["sys_s"]
        r["routers_pct"] = 100 * (r1 - r0) / hz / wall
        r["others_pct"] = max(0.0, 100 * ((b1 - b0 - (r1 - r0)) / hz - bench) / wall)
        r["steal_pct"] = 100 * (s1 - s0) / hz / wall
    runs.setdefault((proto, path, rate), []).append(r)

def med(xs):
    return statistics.median(xs) if xs else float("nan")

lines = [
    f"# weft mesh: end-to-end latency by router hops ({os.path.basename(out)[:10]})",
    "",
    f"weft `{commit}`; {machine}. Every router `weft run --shards 1 --cores {rcore}` under "
    f"`taskset -c {rcore}` (all routers share core {rcore}); load: `weft bench --pin-cores {lcore}`. "
    f"1 publisher → 1 subscriber, {payload}-byte payloads, MQTT 3.1.1 QoS 0 and NATS, "
    f"{secs} s per run at each rate, latency from the intended send time (no coordinated "
    f"omission). Median over {reps} repetition(s) of each percentile; runs alternate the paths. "
    "Paths: *single* = one router without a mesh; *A of A–B* = pub and sub on A of a linked "
    "pair (the mesh is on but nothing crosses it); *A → B* = publish at A, subscribe at B "
    "(B dials A); *A → B → C* = a line, publish at A, subscribe at C.",
    "",
    "Command: `perf/mesh-latency.sh` (env: "
    f"`RATES=\"{' '.join(rates)}\" SECS={secs} REPS={reps} PAYLOAD={payload}`); per run "
    "`weft bench --protocol P --server PUB --sub-server SUB --rate R --duration S --size 64 --pin-cores 1`.",
    "",
    "| protocol | msg/s | hops | path | p50 µs | p99 µs | p99.9 µs | worst p99 µs | p50 − single µs | send lag p50 µs | lost | probe ms | routers CPU % | other CPU % |",
    "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for proto in protos:
    for rate in rates:
        base = None
        for path in paths:
            rs = runs.get((proto, path, rate), [])
            lat = [r["latency"] for r in rs if r.get("latency")]
            hops, desc = label.get(path, ("?", path))
            if not lat:
                lines.append(f"| {proto} | {int(rate):,} | {hops} | {desc} | failed | | | | | | | | | |")
                continue
            p50 = med([l["p50_us"] for l in lat])
            p99 = med([l["p99_us"] for l in lat])
            p999 = med([l["p99_9_us"] for l in lat])
            worst = max(l["p99_us"] for l in lat)
            lag = med([r["send_lag"]["p50_us"] for r in rs if r.get("send_lag")])
            lost = sum(r["totals"]["lost"] for r in rs)
            probe = [r["probe_ms"] for r in rs if r.get("probe_ms") is not None]
            rcpu = [r["routers_pct"] for r in rs if "routers_pct" in r]
            ocpu = [r["others_pct"] for r in rs if "others_pct" in r]
            if path == "single":
                base = p50
            delta = f"{p50 - base:+.0f}" if base is not None and path != "single" else ""
            lines.append(
                f"| {proto} | {int(rate):,} | {hops} | {desc} | {p50:.0f} | {p99:.0f} | {p999:.0f} | "
                f"{worst:.0f} | {delta} | {lag:.0f} | {lost} | "
                f"{(f'{med(probe):.0f}' if probe else '')} | "
                f"{(f'{med(rcpu):.0f}' if rcpu else '')} | {(f'{max(ocpu):.0f}' if ocpu else '')} |"
            )
lines += [
    "",
    "*worst p99*: the highest p99 of any repetition. *p50 − single*: added median latency "
    "versus the single router at the same protocol and rate. *send lag*: how late the "
    "publisher wrote its messages versus the schedule (part of every latency above; it is the "
    "load tool's and the VM's timer floor, not the routers'). *lost*: messages sent but not "
    "received, all repetitions. *probe ms*: time until the subscription had reached the "
    "publishers' router (not measured). *routers CPU*: all routers' CPU during the run, "
    "% of one core (median). *other CPU*: what other processes on the machine used meanwhile, "
    "% of one core (the highest of any repetition; more than a few % means noisy tails)."
]
steal = [r["steal_pct"] for rs in runs.values() for r in rs if "steal_pct" in r]
if steal and max(steal) >= 1:
    lines += ["", f"Hypervisor steal during the runs: up to {max(steal):.0f}% of one core."]
if int(failed):
    lines += ["", f"**{failed} run(s) failed** (see the script's stderr)."]
open(out, "w").write("\n".join(lines) + "\n")
PY
echo
cat "$OUT/$DATE-mesh-latency.md"
