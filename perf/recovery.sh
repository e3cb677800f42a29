#!/usr/bin/env bash
# Recovery time of a persistent weft: fill it with $RETAINED retained
# messages and $SESSIONS persistent sessions (clean session 0, one
# subscription each), kill -9, restart on the same [persistence] dir, and
# measure the time from the restart to ready (`weft wait` on /readyz and an
# MQTT CONNECT answered) and what weft itself reports
# (weft_persist_recovery_seconds in /metrics). Then checks that what was
# acknowledged came back: the retained and offline-session gauges, one
# session resumed (session present = 1) and the retained messages under one
# branch replayed to it.
#
#   * weft pinned to core $BROKER_CORE (`--shards $SHARDS --cores ...`), the
#     loader (Python, raw sockets, no client library) to core $LOAD_CORE;
#   * retained: QoS 1 PUBLISHes with retain, topic r/{i/1000}/{i%1000},
#     $PAYLOAD-byte payloads, over $LOAD_CONNS connections with at most
#     $WINDOW unacknowledged each (every one acknowledged before the kill);
#   * sessions: client ids s-{i}, each CONNECT (clean session 0),
#     SUBSCRIBE s/{i}/# QoS 1, SUBACK, DISCONNECT; $LOAD_CONNS at once
#     (a connect storm: [security] admission limits set to 0 = no limit,
#     [limits] raised for the retained store; see the config below).
#
# Without persistence in the weft binary (`weft run --help` lists no
# --persistence-dir) it runs as a dry run: the loader against a weft in
# memory, then kill -9 and restart (which then recovers nothing: the
# gauges say 0). DRY_RUN=1 forces that.
#
# Usage: perf/recovery.sh   (env: RETAINED=1000000 SESSIONS=100000 PAYLOAD=64
#          SYNC=batch SHARDS=1 LOAD_CONNS=8 WINDOW=512 BROKER_CORE=0 LOAD_CORE=1
#          PORT=18960 ADMIN_PORT=18961 STORE=<dir, default a temporary one>
#          READY_TIMEOUT_MS=600000)
set -euo pipefail
cd "$(dirname "$0")/.."

RETAINED=${RETAINED:-1000000}
SESSIONS=${SESSIONS:-100000}
PAYLOAD=${PAYLOAD:-64}
SYNC=${SYNC:-batch}
SHARDS=${SHARDS:-1}
LOAD_CONNS=${LOAD_CONNS:-8}
WINDOW=${WINDOW:-512}
BROKER_CORE=${BROKER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
PORT=${PORT:-18960}
ADMIN_PORT=${ADMIN_PORT:-18961}
READY_TIMEOUT_MS=${READY_TIMEOUT_MS:-600000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
BIN=$CARGO_TARGET_DIR/release/weft

cargo build --release --bin weft >&2

PERSIST=0
if "$BIN" run --help | grep -q -- --persistence-dir; then PERSIST=1; fi
[ "${DRY_RUN:-0}" = 1 ] && PERSIST=0

WORK=$(mktemp -d)
STORE=${STORE:-$WORK/store}
WEFT_PID=""
cleanup() {
    [ -n "$WEFT_PID" ] && kill -9 "$WEFT_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK" "$STORE"
}
trap cleanup EXIT
mkdir -p "$STORE"

cores=$(seq -s, "$BROKER_CORE" $((BROKER_CORE + SHARDS - 1)))
cat >"$WORK/weft.toml" <<CONF
[admin]
listen = "127.0.0.1:$ADMIN_PORT"

[limits]
retained_messages_max = $((RETAINED + 1000))
retained_bytes_max = $(((RETAINED + 1000) * (PAYLOAD + 64)))
offline_session_expiry_s = 86400

[security]
# A connect storm of $SESSIONS clients from one address: no admission limit.
accept_rate_per_s = 0
connections_per_source_max = 0
CONF
if [ $PERSIST = 1 ]; then
    cat >>"$WORK/weft.toml" <<CONF

[persistence]
dir = "$STORE/weft"
sync = "$SYNC"
CONF
fi

start_weft() {
    taskset -c "$cores" "$BIN" run --config "$WORK/weft.toml" --mqtt-listen 127.0.0.1:$PORT \
        --nats-listen 127.0.0.1:0 --shards "$SHARDS" --cores "$cores" --log-level warn \
        >>"$WORK/weft.log" 2>&1 &
    WEFT_PID=$!
}
ready() {
    "$BIN" wait --admin 127.0.0.1:$ADMIN_PORT --mqtt 127.0.0.1:$PORT --timeout-ms "$READY_TIMEOUT_MS" >&2
}
metric() { # name [sum|max] -> over shards
    python3 - "$ADMIN_PORT" "$1" "${2:-sum}" <<'PY'
import sys, urllib.request
port, name, agg = sys.argv[1], sys.argv[2], sys.argv[3]
text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
vals = [float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
        if l.startswith(name + "{") or l.startswith(name + " ")]
v = (max(vals) if agg == "max" else sum(vals)) if vals else None
print("absent" if v is None else f"{v:.0f}" if v == int(v) else f"{v:.3f}")
PY
}
gauges() {
    echo "retained $(metric weft_retained_messages), offline sessions $(metric weft_offline_sessions)," \
        "subscriptions $(metric weft_subscriptions), RSS $(awk '/VmRSS/ {print $2}' /proc/$WEFT_PID/status) KiB"
}

echo "# $(date -u +%FT%TZ) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), weft ${WEFT_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo "?")}"
echo "# persistence: $([ $PERSIST = 1 ] && echo "dir $STORE/weft, sync $SYNC" || echo "OFF (dry run: this measures the loader and a restart with nothing to recover)")"
echo "# $RETAINED retained x $PAYLOAD B, $SESSIONS persistent sessions; weft --shards $SHARDS on cores $cores, loader on core $LOAD_CORE"

start_weft
ready

# ---------------------------------------------------------------- loader
t0=$(date +%s.%N)
taskset -c "$LOAD_CORE" python3 - "$PORT" "$RETAINED" "$SESSIONS" "$PAYLOAD" "$LOAD_CONNS" "$WINDOW" <<'PY'
import socket, struct, sys, threading, time

port, retained, sessions, payload_len, conns, window = map(int, sys.argv[1:])

def remaining(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)

def packet(first, body):
    return bytes([first]) + remaining(len(body)) + body

def utf8(s):
    b = s.encode()
    return struct.pack(">H", len(b)) + b

def connect(client_id, clean):
    flags = 0x02 if clean else 0x00
    return packet(0x10, utf8("MQTT") + bytes([4, flags]) + struct.pack(">H", 0) + utf8(client_id))

def read_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed by weft")
        buf += chunk
    return bytes(buf)

def open_conn(client_id, clean=True):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(connect(client_id, clean))
    ack = read_exact(s, 4)
    if ack[0] != 0x20 or ack[3] != 0:
        raise RuntimeError(f"CONNACK {ack.hex()} for {client_id}")
    return s

errors = []

def load_retained(k):
    """Publishes retained messages k, k+conns, ... with QoS 1, window-bounded."""
    try:
        s = open_conn(f"loader-r-{k}")
        payload = b"\xa5" * payload_len
        mine = range(k, retained, conns)
        sent = acked = 0
        pid = 0
        pending = bytearray()
        it = iter(mine)
        done = False
        while not done or acked < sent:
            batch = bytearray()
            while not done and sent - acked < window and len(batch) < 64 * 1024:
                i = next(it, None)
                if i is None:
                    done = True
                    break
                pid = pid % 65535 + 1
                body = utf8(f"r/{i // 1000}/{i % 1000}") + struct.pack(">H", pid) + payload
                batch += packet(0x33, body)  # PUBLISH, QoS 1, retain
                sent += 1
            if batch:
                s.sendall(batch)
            if acked < sent and (done or sent - acked >= window):
                pending += s.recv(65536) or b""
                n = len(pending) // 4  # PUBACKs only: 0x40 0x02 id id
                if n == 0 and not pending:
                    raise ConnectionError("closed by weft")
                acked += n
                del pending[: n * 4]
        s.sendall(b"\xe0\x00")
        s.close()
    except Exception as e:  # reported below, the run fails
        errors.append(f"retained loader {k}: {e!r}")

def load_sessions(k):
    """Sessions k, k+conns, ...: CONNECT clean 0, SUBSCRIBE, DISCONNECT."""
    try:
        for i in range(k, sessions, conns):
            s = socket.create_connection(("127.0.0.1", port), timeout=60)
            sub = packet(0x82, struct.pack(">H", 1) + utf8(f"s/{i}/#") + bytes([1]))
            s.sendall(connect(f"s-{i}", False) + sub)
            ack = read_exact(s, 4 + 5)
            if ack[0] != 0x20 or ack[3] != 0 or ack[4] != 0x90 or ack[8] != 1:
                raise RuntimeError(f"CONNACK/SUBACK {ack.hex()} for s-{i}")
            s.sendall(b"\xe0\x00")
            s.close()
    except Exception as e:
        errors.append(f"session loader {k}: {e!r}")

for name, target, count in [("retained", load_retained, retained), ("sessions", load_sessions, sessions)]:
    t = time.monotonic()
    threads = [threading.Thread(target=target, args=(k,)) for k in range(conns)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    secs = time.monotonic() - t
    if errors:
        sys.exit("loader failed: " + "; ".join(errors[:5]))
    print(f"loaded {count} {name} in {secs:.1f} s ({count / secs:,.0f}/s)", flush=True)
PY
t1=$(date +%s.%N)
echo "load: $(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.1f", b - a}') s; before kill: $(gauges)"
[ -d "$STORE/weft" ] && echo "persistence dir: $(du -sh "$STORE/weft" | cut -f1)"

# One session back (CONNACK session present), and the retained messages of
# one branch replayed to it; run before the kill too, which checks the check.
check_back() {
    python3 - "$PORT" "$RETAINED" "$SESSIONS" <<'PY'
import socket, struct, sys
port, retained, sessions = map(int, sys.argv[1:])
if sessions == 0:
    sys.exit(0)
i = sessions // 2
cid = f"s-{i}".encode()
s = socket.create_connection(("127.0.0.1", port), timeout=30)
body = struct.pack(">H", 4) + b"MQTT" + bytes([4, 0]) + struct.pack(">H", 0) + struct.pack(">H", len(cid)) + cid
s.sendall(bytes([0x10, len(body)]) + body)
ack = s.recv(4)
print(f"client s-{i} reconnects: CONNACK session present = {ack[2] & 1} (1 = its session came back)")
branch = (retained // 2) // 1000
topic = f"r/{branch}/#".encode()
s.sendall(bytes([0x82, 2 + 2 + len(topic) + 1]) + struct.pack(">H", 2) + struct.pack(">H", len(topic)) + topic + b"\x00")
s.settimeout(2.0)
data = b""
try:
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    pass
# Count PUBLISH packets (first byte 0x3X) after the SUBACK.
n = pos = 0
while pos < len(data):
    first = data[pos]
    mult, length, k = 1, 0, pos + 1
    while True:
        b = data[k]; k += 1
        length += (b & 0x7F) * mult
        if b < 0x80:
            break
        mult *= 128
    if first >> 4 == 3:
        n += 1
    pos = k + length
expected = min(1000, max(0, retained - branch * 1000))
print(f"retained under r/{branch}/#: {n} replayed (expected {expected} if they survived)")
s.sendall(b"\xe0\x00")
PY
}

echo "check before the kill:"
check_back

# ---------------------------------------------------------------- crash + restart
kill -9 "$WEFT_PID"
wait "$WEFT_PID" 2>/dev/null || true
r0=$(date +%s.%N)
start_weft
ready
r1=$(date +%s.%N)
echo "restart to ready: $(awk -v a="$r0" -v b="$r1" 'BEGIN {printf "%.2f", b - a}') s (weft wait: /readyz 200 and an MQTT CONNACK)"
echo "weft_persist_recovery_seconds (slowest shard): $(metric weft_persist_recovery_seconds max)"
echo "after restart: $(gauges)"
echo "check after the restart:"
check_back
if [ -s "$WORK/weft.log" ]; then echo "# weft log (tail):"; tail -5 "$WORK/weft.log"; fi
