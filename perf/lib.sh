# Shell helpers shared by the perf scripts (sourced, not run): a work
# folder removed at exit with the broker stopped, a process's resident
# memory, and waiting for a port to accept.

WORK=$(mktemp -d)
BROKER=""
cleanup() {
    [ -n "$BROKER" ] && kill "$BROKER" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

rss_kib() { awk '/VmRSS/ {print $2}' /proc/"$1"/status; }

wait_port() {
    for _ in $(seq 100); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "port $1 did not open" >&2; return 1
}
