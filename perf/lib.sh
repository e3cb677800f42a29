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

# A private RabbitMQ node (Debian's rabbitmq-server, the AMQP 1.0 plugin
# only) owning everything under $1, listening on 127.0.0.1:$2 for AMQP;
# run straight from /usr/lib/rabbitmq/bin as the calling user (the
# /usr/sbin wrappers would switch to the rabbitmq user and its
# /var/lib/rabbitmq). SASL ANONYMOUS maps to guest, as weft lets anonymous
# clients in by default. Pinned with `taskset -c $3` when given (the Erlang
# VM also gets one scheduler per pinned core). Sets RABBIT_PID (the
# launcher; the node runs in its own session, so `rabbitmq_stop` ends its
# process group and nothing else). Same private-node idea as
# scripts/rabbitmq-setup.sh (issue 15's interop runner).
RMQ_BIN=${WEFT_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}
RABBIT_PID=""
rabbitmq_env() { # dir
    export HOME="$1" RABBITMQ_NODENAME="$(cat "$1/nodename")" \
        RABBITMQ_CONF_ENV_FILE="$1/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$1/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$1/advanced.config" RABBITMQ_ENABLED_PLUGINS_FILE="$1/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$1/mnesia" RABBITMQ_LOG_BASE="$1/log" RABBITMQ_PID_FILE="$1/rabbitmq.pid" \
        RABBITMQ_PLUGINS_EXPAND_DIR="$1/plugins-expand" RABBITMQ_FEATURE_FLAGS_FILE="$1/feature_flags" \
        RABBITMQ_QUORUM_DIR="$1/quorum" RABBITMQ_STREAM_DIR="$1/stream"
}
rabbitmq_start() { # dir amqp-port [cores]
    local dir=$1 port=$2 cores=${3:-} dist
    [ -x "$RMQ_BIN/rabbitmq-server" ] || { echo "rabbitmq-server missing (apt-get install rabbitmq-server)" >&2; return 1; }
    mkdir -p "$dir"
    dist=$((port + 20000))
    echo "weftperf-$$-$port@localhost" >"$dir/nodename"
    : >"$dir/rabbitmq-env.conf"
    echo '[rabbitmq_amqp1_0].' >"$dir/enabled_plugins"
    cat >"$dir/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$port
distribution.listener.interface = 127.0.0.1
amqp1_0.default_user = guest
amqp1_0.default_vhost = /
log.file.level = warning
log.console = false
CONF
    echo '[].' >"$dir/advanced.config"
    local pin=() sched=""
    if [ -n "$cores" ]; then
        pin=(taskset -c "$cores")
        sched="+S $(( $(echo "$cores" | tr ',' '\n' | wc -l) ))"
    fi
    (
        rabbitmq_env "$dir"
        export RABBITMQ_DIST_PORT=$dist ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="$sched"
        setsid "${pin[@]}" "$RMQ_BIN/rabbitmq-server" >"$dir/stdout.log" 2>&1 </dev/null &
        echo $! >"$dir/launcher.pid"
    )
    RABBIT_PID=$(cat "$dir/launcher.pid")
    for _ in $(seq 600); do
        if (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null; then return 0; fi
        kill -0 "$RABBIT_PID" 2>/dev/null || break
        sleep 0.1
    done
    echo "rabbitmq did not open 127.0.0.1:$port; its output:" >&2
    tail -n 30 "$dir/stdout.log" >&2 || true
    return 1
}
rabbitmq_stop() { # dir
    local dir=$1 pid
    [ -f "$dir/launcher.pid" ] || return 0
    pid=$(cat "$dir/launcher.pid")
    if kill -0 "$pid" 2>/dev/null; then
        ( rabbitmq_env "$dir"; timeout 30 "$RMQ_BIN/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" shutdown >/dev/null 2>&1 ) || true
        kill -TERM -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$dir/launcher.pid"
}
