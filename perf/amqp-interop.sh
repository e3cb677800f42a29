#!/usr/bin/env bash
# AMQP 1.0 interop (issue 15, acceptance 2): the same python-qpid-proton
# client scripts (tests/amqp/*.py) against RabbitMQ (Debian's
# rabbitmq-server with rabbitmq_amqp1_0, a private node:
# scripts/rabbitmq-setup.sh) and against weft (--amqp-listen), then a table
# of pass/fail per broker, the failed checks, and where what the clients
# observed differs (tests/amqp/compare.py).
#
# Addresses: RabbitMQ's topics are /topic/NAME (amq.topic), weft's are
# plain names (it also strips /topic/). The redelivery script needs a
# shared consumer: a queue on RabbitMQ (/queue/NAME), a queue group on weft
# ($share/g/NAME; weft has no queues). drain.py runs on both: RabbitMQ
# 3.10's plugin does not answer a drain (see the table).
#
# Usage: perf/amqp-interop.sh [BROKER...]   (default: rabbitmq weft)
#   env: WEFT_BIN (default: a debug build from CARGO_TARGET_DIR),
#        WEFT_PYTHON (default .venv/bin/python: scripts/test.sh makes it),
#        KEEP=DIR to keep the JSON results there.
# Exit status: 0 when every script passed on weft (or on the only broker).
set -euo pipefail
cd "$(dirname "$0")/.."

BROKERS=("$@")
[ ${#BROKERS[@]} -gt 0 ] || BROKERS=(rabbitmq weft)
PY=${WEFT_PYTHON:-$PWD/.venv/bin/python}
if ! "$PY" -c 'import proton' 2>/dev/null; then
    echo "perf/amqp-interop.sh: $PY has no python-qpid-proton: run scripts/test.sh once (it makes .venv)" >&2
    exit 1
fi
SCRIPTS=(roundtrip settle credit drain redeliver reqreply)

. perf/lib.sh
PIDS=()
RMQ_DIR=""
cleanup() { # (replaces lib.sh's: weft and a RabbitMQ node)
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -z "$RMQ_DIR" ] || scripts/rabbitmq-setup.sh stop "$RMQ_DIR" || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
OUT=${KEEP:-$WORK/results}
mkdir -p "$OUT"

declare -A URL PREFIX SEND RECV
for broker in "${BROKERS[@]}"; do
    case $broker in
    rabbitmq)
        RMQ_DIR=$WORK/rabbitmq
        t0=$(date +%s%N)
        port=$(scripts/rabbitmq-setup.sh start "$RMQ_DIR")
        echo "rabbitmq: $(cat "$RMQ_DIR/nodename") on 127.0.0.1:$port (started in $((($(date +%s%N) - t0) / 1000000)) ms)" >&2
        URL[$broker]=amqp://127.0.0.1:$port PREFIX[$broker]=/topic/
        SEND[$broker]='/queue/{}' RECV[$broker]='/queue/{}'
        ;;
    weft)
        if [ -z "${WEFT_BIN:-}" ]; then
            export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
            cargo build --bin weft >&2
            WEFT_BIN=$CARGO_TARGET_DIR/debug/weft
        fi
        : >"$WORK/weft.out"
        "$WEFT_BIN" run --shards 2 --mqtt-listen 127.0.0.1:0 --nats-listen 127.0.0.1:0 \
            --admin-listen 127.0.0.1:0 --amqp-listen 127.0.0.1:0 >"$WORK/weft.out" 2>"$WORK/weft.err" &
        PIDS+=($!)
        addr=""
        for _ in $(seq 200); do
            addr=$(sed -n 's/.*amqp listening on \([0-9.:]*\).*/\1/p' "$WORK/weft.out" | head -1)
            [ -z "$addr" ] || break
            kill -0 "${PIDS[-1]}" 2>/dev/null || break
            sleep 0.05
        done
        if [ -z "$addr" ]; then
            echo "perf/amqp-interop.sh: weft announced no AMQP listener; its stderr:" >&2
            tail -n 20 "$WORK/weft.err" >&2
            exit 1
        fi
        echo "weft: $("$WEFT_BIN" --version 2>/dev/null || echo weft) on $addr" >&2
        URL[$broker]=amqp://$addr PREFIX[$broker]=""
        SEND[$broker]='{}' RECV[$broker]='$share/g/{}'
        ;;
    *)
        echo "perf/amqp-interop.sh: unknown broker $broker (rabbitmq, weft)" >&2
        exit 2
        ;;
    esac
done

for broker in "${BROKERS[@]}"; do
    for script in "${SCRIPTS[@]}"; do
        extra=(--timeout 5)
        [ "$script" != redeliver ] || extra+=(--send "${SEND[$broker]}" --recv "${RECV[$broker]}")
        # Each script bounds its own waits; timeout(1) is the backstop.
        timeout 120 "$PY" "tests/amqp/$script.py" "${URL[$broker]}" "${PREFIX[$broker]}" "${extra[@]}" \
            >"$OUT/$script.$broker.json" 2>"$OUT/$script.$broker.err" || true
    done
done

must=weft
[ ${#BROKERS[@]} -gt 1 ] || must=${BROKERS[0]}
"$PY" tests/amqp/compare.py "$OUT" "${BROKERS[@]}" --must-pass "$must"
