#!/usr/bin/env bash
# The smoke test scripts/package-check.sh runs against each installed weft
# (cargo install, the .deb, the unit, the container), wherever that weft
# runs: on this host in a network namespace of its own, or inside a
# container. It talks to the default addresses (admin 127.0.0.1:8222,
# MQTT 127.0.0.1:1883, NATS 127.0.0.1:4222) with the installed binary's
# own clients, so it needs nothing but bash and that binary.
#
#   smoke.sh probe WEFT            a router already runs: probe it
#   smoke.sh run WEFT [ARGS...]    start `WEFT run ARGS...`, probe it, then
#                                  SIGTERM: it must exit 0 (graceful stop)
#
# The probe: `weft wait` until /readyz answers 200 and the MQTT and NATS
# listeners answer; then one event published over MQTT (QoS 1, acknowledged)
# must arrive at a NATS subscriber (topic check/smoke = subject check.smoke).
# Every wait is bounded; any failure prints what was seen and exits 1.
set -uo pipefail

admin=${WEFT_SMOKE_ADMIN-127.0.0.1:8222}
mqtt=${WEFT_SMOKE_MQTT:-127.0.0.1:1883}
nats=${WEFT_SMOKE_NATS:-127.0.0.1:4222}
mode=${1:?usage: smoke.sh probe|run WEFT [ARGS...]}
weft=${2:?usage: smoke.sh probe|run WEFT [ARGS...]}
shift 2
tmp=$(mktemp -d)
router_pid=""
cleanup() {
    if [ -n "$router_pid" ] && kill -0 "$router_pid" 2>/dev/null; then
        kill -KILL "$router_pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
    echo "smoke: FAIL: $*" >&2
    if [ -s "$tmp/router.err" ]; then
        echo "smoke: the router's stderr (last 20 lines):" >&2
        tail -n 20 "$tmp/router.err" >&2
    fi
    exit 1
}

probe() {
    local targets=(--mqtt "$mqtt" --nats "$nats")
    [ -n "$admin" ] && targets+=(--admin "$admin")
    "$weft" wait "${targets[@]}" --timeout-ms 30000 ||
        fail "the router did not become ready (weft wait ${targets[*]}, above)"
    echo "smoke: ${admin:+/readyz 200 at $admin, }MQTT at $mqtt and NATS at $nats answer"

    local payload="smoke-$$-$RANDOM"
    "$weft" sub --url "nats://$nats" -t check.smoke -c 1 --timeout 20 \
        >"$tmp/sub.out" 2>"$tmp/sub.err" &
    local sub=$!
    # NATS has no SUBACK: publish until the subscriber has its message
    # (bounded: 100 tries, 0.1 s apart).
    local tries=0
    while kill -0 "$sub" 2>/dev/null && [ $tries -lt 100 ]; do
        if grep -q subscribed "$tmp/sub.err" 2>/dev/null; then
            "$weft" pub --url "mqtt://$mqtt" -t check/smoke -q 1 -m "$payload" >/dev/null 2>"$tmp/pub.err" ||
                fail "weft pub over MQTT failed: $(cat "$tmp/pub.err")"
        fi
        tries=$((tries + 1))
        sleep 0.1
    done
    wait "$sub"
    local sub_status=$?
    [ $sub_status -eq 0 ] ||
        fail "the NATS subscriber ended with status $sub_status: $(cat "$tmp/sub.err")"
    [ "$(head -n 1 "$tmp/sub.out")" = "$payload" ] ||
        fail "the NATS subscriber printed '$(head -n 1 "$tmp/sub.out")', not '$payload'"
    echo "smoke: an MQTT publish (QoS 1) arrived at a NATS subscriber"
}

case $mode in
probe)
    probe
    ;;
run)
    "$weft" run "$@" >"$tmp/router.out" 2>"$tmp/router.err" &
    router_pid=$!
    probe
    kill -TERM "$router_pid"
    # runtime.shutdown_flush_ms_max is 2 s by default: 30 s is generous.
    for _ in $(seq 300); do
        kill -0 "$router_pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$router_pid" 2>/dev/null && fail "the router did not stop within 30 s of SIGTERM"
    wait "$router_pid"
    status=$?
    router_pid=""
    [ $status -eq 0 ] || fail "the router exited with status $status after SIGTERM"
    echo "smoke: SIGTERM: the router stopped with status 0"
    ;;
*)
    fail "unknown mode '$mode' (probe or run)"
    ;;
esac
