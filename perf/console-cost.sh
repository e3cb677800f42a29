#!/usr/bin/env bash
# What the web console costs the router (issue 18, acceptance 4): the
# router's CPU time (utime + stime of /proc/PID/stat, all its threads; and
# apart, its admin thread's, /proc/PID/task/TID/stat of `weft-admin`) over
# $SECS s with the console page closed, then open in headless Chromium,
# alternately, $ROUNDS times each, in the same run under the same fixed
# publish load: `weft bench` with 1 publisher -> 1 subscriber at $RATE
# messages/s, $PAYLOAD-byte QoS 0 payloads, on router A.
#
# A is a mesh router linked to B (B dials A), so the page has a mesh to
# draw and the state a mesh part to build; A runs `--shards 1 --cores
# $ROUTER_CORE` under taskset (its admin thread shares that core); B, the
# load tool and the browser run on $LOAD_CORE. The page is
# tests/console/run.mjs --hold (puppeteer-core from tests/browser, Debian's
# chromium: scripts/browser-setup.sh installs them), opened at A's `/`;
# an open phase starts once the page shows `live` (its first state drawn)
# and ends before the browser closes. Between phases $SETTLE s are not
# measured.
#
# Writes perf/results/YYYY-MM-DD-console-cost.md (printed at the end).
#
# Usage: perf/console-cost.sh   env: SECS=10 ROUNDS=3 RATE=10000 PAYLOAD=64
#                                    SETTLE=2 ROUTER_CORE=0 LOAD_CORE=1
#                                    OUT=perf/results/…md
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
RATE=${RATE:-10000}
PAYLOAD=${PAYLOAD:-64}
SETTLE=${SETTLE:-2}
ROUTER_CORE=${ROUTER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release/weft
CHROMIUM=${WEFT_CHROMIUM:-/usr/bin/chromium}
OUT=${OUT:-perf/results/$(date +%F)-console-cost.md}
TICK=$(getconf CLK_TCK)

scripts/browser-setup.sh >&2
cargo build --release --bin weft >&2

WORK=$(mktemp -d)
PIDS=()
PAGE_PID=""
cleanup() {
    exec 3>&- 2>/dev/null || true
    [ -n "$PAGE_PID" ] && { kill "$PAGE_PID" 2>/dev/null || true; wait "$PAGE_PID" 2>/dev/null || true; }
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A PID MQTT ADMIN MESH

# start_router NAME CORE weft-run-flags...: sets PID, MQTT, ADMIN, MESH.
start_router() {
    local name=$1 core=$2 log=$WORK/$1.log
    shift 2
    taskset -c "$core" "$BIN" run --router-id "$name" --shards 1 --cores "$core" \
        --mqtt-listen 127.0.0.1:0 --nats-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
        --log-level warn "$@" >"$log" 2>&1 &
    PID[$name]=$!
    PIDS+=("$!")
    for _ in $(seq 200); do
        grep -q "^weft: admin listening on" "$log" && break
        kill -0 "${PID[$name]}" 2>/dev/null || { echo "router $name exited:" >&2; cat "$log" >&2; exit 1; }
        sleep 0.05
    done
    addr() { sed -n "s/^weft: $1 listening on \([^ ]*\).*/\1/p" "$log" | head -1; }
    MQTT[$name]=$(addr mqtt)
    ADMIN[$name]=$(addr admin)
    MESH[$name]=$(addr mesh)
    [ -n "${ADMIN[$name]}" ] || { echo "router $name: no admin line:" >&2; cat "$log" >&2; exit 1; }
}

# ticks PID [TID]: utime + stime, in clock ticks, of the process (or of
# one of its threads). The fields after the command name's ")".
ticks() {
    local stat=/proc/$1/stat
    [ -n "${2:-}" ] && stat=/proc/$1/task/$2/stat
    sed 's/^.*) //' "$stat" | awk '{print $12 + $13}'
}

admin_tid() {
    local t
    for t in /proc/"$1"/task/*; do
        [ "$(cat "$t/comm")" = weft-admin ] && { basename "$t"; return; }
    done
    echo "no weft-admin thread in $1" >&2
    exit 1
}

start_router A "$ROUTER_CORE" --mesh-listen 127.0.0.1:0
start_router B "$LOAD_CORE" --link "${MESH[A]}"
for _ in $(seq 200); do
    curl -s "http://${ADMIN[A]}/links" | grep -q '"state":"up"' && break
    sleep 0.05
done
curl -s "http://${ADMIN[A]}/links" | grep -q '"state":"up"' || { echo "the A-B link is not up" >&2; exit 1; }
ADMIN_TID=$(admin_tid "${PID[A]}")

# The fixed load, through every phase (stopped at the end).
taskset -c "$LOAD_CORE" "$BIN" bench --server "${MQTT[A]}" --pubs 1 --subs 1 --rate "$RATE" \
    --size "$PAYLOAD" --duration 100000 --topic console/cost >"$WORK/bench.log" 2>&1 &
PIDS+=("$!")
sleep "$SETTLE"

open_page() {
    mkfifo "$WORK/page.in"
    taskset -c "$LOAD_CORE" node tests/console/run.mjs --hold --url "http://${ADMIN[A]}/" \
        --chromium "$CHROMIUM" <"$WORK/page.in" >"$WORK/page.out" 2>"$WORK/page.err" &
    PAGE_PID=$!
    exec 3>"$WORK/page.in"
    for _ in $(seq 600); do
        grep -q '"event":"ready"' "$WORK/page.out" && return 0
        kill -0 "$PAGE_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "the page did not show live:" >&2
    cat "$WORK/page.out" "$WORK/page.err" >&2
    exit 1
}

close_page() {
    exec 3>&-
    wait "$PAGE_PID" || { echo "the page runner failed:" >&2; cat "$WORK/page.out" "$WORK/page.err" >&2; exit 1; }
    PAGE_PID=""
    rm -f "$WORK/page.in"
}

# measure: sets CPU and ADMIN_CPU (percent of one core) over SECS.
measure() {
    local p0 a0 t0 p1 a1 t1
    p0=$(ticks "${PID[A]}"); a0=$(ticks "${PID[A]}" "$ADMIN_TID"); t0=$(date +%s.%N)
    sleep "$SECS"
    p1=$(ticks "${PID[A]}"); a1=$(ticks "${PID[A]}" "$ADMIN_TID"); t1=$(date +%s.%N)
    CPU=$(awk -v d=$((p1 - p0)) -v t="$TICK" -v s="$t0" -v e="$t1" 'BEGIN {printf "%.1f", 100 * d / t / (e - s)}')
    ADMIN_CPU=$(awk -v d=$((a1 - a0)) -v t="$TICK" -v s="$t0" -v e="$t1" 'BEGIN {printf "%.2f", 100 * d / t / (e - s)}')
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
ROWS=()
CLOSED=()
OPEN=()
CLOSED_ADMIN=()
OPEN_ADMIN=()
for round in $(seq "$ROUNDS"); do
    measure
    ROWS+=("| $round | closed | $CPU | $ADMIN_CPU |")
    CLOSED+=("$CPU"); CLOSED_ADMIN+=("$ADMIN_CPU")
    echo "round $round closed: router $CPU %, admin thread $ADMIN_CPU %" >&2
    open_page
    sleep "$SETTLE"
    measure
    ROWS+=("| $round | open | $CPU | $ADMIN_CPU |")
    OPEN+=("$CPU"); OPEN_ADMIN+=("$ADMIN_CPU")
    echo "round $round open: router $CPU %, admin thread $ADMIN_CPU %" >&2
    close_page
    sleep "$SETTLE"
done

median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
mc=$(median "${CLOSED[@]}"); mo=$(median "${OPEN[@]}")
mac=$(median "${CLOSED_ADMIN[@]}"); mao=$(median "${OPEN_ADMIN[@]}")
rev=$(git rev-parse --short HEAD)
interval=$(curl -s "http://${ADMIN[A]}/console/state" | sed -n 's/.*"interval_ms":\([0-9]*\).*/\1/p')
{
    echo "# The web console's cost on the router"
    echo
    echo "Command: \`SECS=$SECS ROUNDS=$ROUNDS RATE=$RATE PAYLOAD=$PAYLOAD perf/console-cost.sh\` at $rev"
    echo "(release), $(date -u +%FT%TZ), $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1),"
    echo "$("$CHROMIUM" --version 2>/dev/null | head -1). Router A: 1 shard on core $ROUTER_CORE, linked to B;"
    echo "load: \`weft bench\` 1 -> 1 at $RATE msg/s, $PAYLOAD B, QoS 0, on A; page, B and load tool on core $LOAD_CORE;"
    echo "console interval ${interval:-?} ms. CPU: percent of one core over $SECS s (utime + stime, /proc;"
    echo "one clock tick is $(awk -v t="$TICK" -v s="$SECS" 'BEGIN {printf "%.2f", 100 / t / s}') points). Machine load average (1, 5, 15 min) $LOAD_BEFORE"
    echo "before, $(cut -d' ' -f1-3 /proc/loadavg) after: other work shared the cores."
    echo
    echo "| round | page | router CPU % | admin thread CPU % |"
    echo "|---:|---|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Median: router $mc % closed, $mo % open ($(awk -v a="$mo" -v b="$mc" 'BEGIN {printf "%+.1f", a - b}') points);"
    echo "admin thread $mac % closed, $mao % open."
} >"$OUT"
cat "$OUT"
