#!/usr/bin/env bash
# TLS vs plain TCP on the client listeners, in one run: weft (MQTT and
# NATS), mosquitto (MQTT, a TLS listener) and nats-server (NATS, --tls).
#
# Same shape and pinning as perf/compare-mqtt.sh: every broker pinned to
# BROKER_CORE (weft: 1 shard on it), the load tool (`weft bench`, with
# --tls-ca for the TLS rows) pinned to LOAD_CORE; 1 publisher -> 1
# subscriber, QoS 0, payloads of 64 B and 1 KiB.
#   throughput: MSGS messages as fast as possible, deliver rate (median of REPS);
#   latency:    RATE msg/s for SECS s, end-to-end p50 / p99 (median of REPS).
# Runs alternate the systems and plain/TLS so that each sees the same
# conditions. Certificates: a throwaway CA and an ECDSA P-256 server
# certificate (SAN IP:127.0.0.1) made with openssl; TLS 1.3 for everyone.
#
# Usage: perf/tls-compare.sh   (env: REPS=3 MSGS=500000 RATE=10000 SECS=5
#          SIZES="64 1024" SYSTEMS="weft mosquitto nats-server"
#          BROKER_CORE=0 LOAD_CORE=1)
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
MSGS=${MSGS:-500000}
RATE=${RATE:-10000}
SECS=${SECS:-5}
SIZES=${SIZES:-"64 1024"}
SYSTEMS=${SYSTEMS:-"weft mosquitto nats-server"}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release

need_install=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || need_install+=(mosquitto)
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || need_install+=(nats-server)
if [ ${#need_install[@]} -gt 0 ]; then
    SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo sudo)
    $SUDO apt-get install -y "${need_install[@]}" ||
        { $SUDO apt-get update && $SUDO apt-get install -y "${need_install[@]}"; }
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
NATS_SERVER=$(command -v nats-server || echo /usr/sbin/nats-server)

cargo build --release --bin weft >&2

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "port $1 did not open" >&2
    return 1
}

# Certificates.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -subj "/CN=tls-compare CA" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$WORK/server.key" -out "$WORK/server.csr" -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 2 -extfile "$WORK/san.ext" -out "$WORK/server.pem" 2>/dev/null
# mosquitto started as root drops to its own user: it must read the
# throwaway key.
chmod 755 "$WORK"
chmod 644 "$WORK"/*.key "$WORK"/*.pem

# Ports: plain / TLS.
W_MQTT=18901 W_MQTTS=18902 W_NATS=18903 W_NATSS=18904
M_MQTT=18911 M_MQTTS=18912
N_NATS=18921 N_NATSS=18922

cat >"$WORK/weft-tls.toml" <<CONF
[mqtt.tls]
listen = "127.0.0.1:$W_MQTTS"
cert = "$WORK/server.pem"
key = "$WORK/server.key"
[nats.tls]
cert = "$WORK/server.pem"
key = "$WORK/server.key"
required = true
[admin]
enabled = false
CONF
cat >"$WORK/weft-plain.toml" <<CONF
[admin]
enabled = false
CONF
cat >"$WORK/mosquitto.conf" <<CONF
listener $M_MQTT 127.0.0.1
listener $M_MQTTS 127.0.0.1
certfile $WORK/server.pem
keyfile $WORK/server.key
tls_version tlsv1.3
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
CONF

start() { # name command...
    "${@:2}" >"$WORK/$1.log" 2>&1 &
    PIDS+=($!)
}
for s in $SYSTEMS; do
    case $s in
    weft)
        # Two routers: one plain, one with TLS on both listeners (a plain
        # client of the TLS one would meet `tls_available` logic, not plain).
        start weft-plain "$BIN/weft" run --config "$WORK/weft-plain.toml" --shards 1 --cores "$BROKER_CORE" \
            --mqtt-listen 127.0.0.1:$W_MQTT --nats-listen 127.0.0.1:$W_NATS --log-level warn
        start weft-tls "$BIN/weft" run --config "$WORK/weft-tls.toml" --shards 1 --cores "$BROKER_CORE" \
            --mqtt-listen 127.0.0.1:0 --nats-listen 127.0.0.1:$W_NATSS --log-level warn
        wait_port $W_MQTT; wait_port $W_MQTTS; wait_port $W_NATS; wait_port $W_NATSS ;;
    mosquitto)
        start mosquitto taskset -c "$BROKER_CORE" "$MOSQUITTO" -c "$WORK/mosquitto.conf"
        wait_port $M_MQTT; wait_port $M_MQTTS ;;
    nats-server)
        start nats-plain taskset -c "$BROKER_CORE" "$NATS_SERVER" -a 127.0.0.1 -p $N_NATS
        start nats-tls taskset -c "$BROKER_CORE" "$NATS_SERVER" -a 127.0.0.1 -p $N_NATSS \
            --tls --tlscert "$WORK/server.pem" --tlskey "$WORK/server.key"
        wait_port $N_NATS; wait_port $N_NATSS ;;
    esac
done

echo "# $(date -u +%FT%TZ)  $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), weft $(git rev-parse --short HEAD)"
echo "# mosquitto: $("$MOSQUITTO" -h 2>&1 | head -1); nats-server: $("$NATS_SERVER" --version 2>&1 | head -1)"
echo "# brokers on core $BROKER_CORE, weft bench on core $LOAD_CORE; 1 pub -> 1 sub, QoS 0; throughput: $MSGS msgs; latency: $RATE msg/s for $SECS s; median of $REPS"

# One bench run; prints "deliver_msgs_per_s p50_us p99_us lost".
bench() { # protocol port tls(0|1) size mode(throughput|latency)
    local args=(--protocol "$1" --server "127.0.0.1:$2" --size "$4" --pin-cores "$LOAD_CORE"
        --no-progress --json "$WORK/run.json" --subject "tls.compare.$RANDOM")
    [ "$3" = 1 ] && args+=(--tls-ca "$WORK/ca.pem")
    if [ "$5" = latency ]; then args+=(--rate "$RATE" --duration "$SECS"); else args+=(--msgs "$MSGS"); fi
    if ! "$BIN/weft" bench "${args[@]}" >"$WORK/run.out" 2>&1; then
        echo "0 0 0 -1"; return
    fi
    python3 - "$WORK/run.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
lat = s.get("latency") or {}
print(f'{s["totals"]["deliver"]["msgs_per_s"]:.0f} {lat.get("p50_us", 0):.0f} {lat.get("p99_us", 0):.0f} {s["totals"]["lost"]}')
PY
}

declare -A RESULTS
targets() { # system -> "label protocol plain_port tls_port" lines
    case $1 in
    weft) echo "weft-mqtt mqtt $W_MQTT $W_MQTTS"; echo "weft-nats nats $W_NATS $W_NATSS" ;;
    mosquitto) echo "mosquitto mqtt $M_MQTT $M_MQTTS" ;;
    nats-server) echo "nats-server nats $N_NATS $N_NATSS" ;;
    esac
}
for rep in $(seq "$REPS"); do
    for size in $SIZES; do
        for s in $SYSTEMS; do
            while read -r label proto plain tls; do
                for mode in throughput latency; do
                    for t in 0 1; do
                        port=$([ $t = 1 ] && echo "$tls" || echo "$plain")
                        RESULTS["$label $size $mode $t $rep"]=$(bench "$proto" "$port" $t "$size" $mode)
                    done
                done
            done < <(targets "$s")
        done
    done
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR ? a[int((NR+1)/2)] : 0)}'; }
col() { # key-prefix field -> median over reps
    for rep in $(seq "$REPS"); do echo "${RESULTS["$1 $rep"]}" | awk -v f="$2" '{print $f}'; done | median
}
echo
echo "| system | size | plain msg/s | TLS msg/s | TLS/plain | plain p50 / p99 µs | TLS p50 / p99 µs | lost (plain, TLS) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for s in $SYSTEMS; do
    while read -r label _ _ _; do
        for size in $SIZES; do
            pt=$(col "$label $size throughput 0" 1); tt=$(col "$label $size throughput 1" 1)
            pl50=$(col "$label $size latency 0" 2); pl99=$(col "$label $size latency 0" 3)
            tl50=$(col "$label $size latency 1" 2); tl99=$(col "$label $size latency 1" 3)
            lp=$(col "$label $size throughput 0" 4); lt=$(col "$label $size throughput 1" 4)
            ratio=$(awk -v a="$tt" -v b="$pt" 'BEGIN {printf (b > 0 ? "%.2f" : "-"), a / b}')
            echo "| $label | $size B | $pt | $tt | $ratio | $pl50 / $pl99 | $tl50 / $tl99 | $lp, $lt |"
        done
    done < <(targets "$s")
done
