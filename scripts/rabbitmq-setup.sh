#!/usr/bin/env bash
# RabbitMQ as the AMQP 1.0 reference (issue 15's interop: perf/amqp-interop.sh,
# tests/amqp_interop.rs). Three uses:
#
#   scripts/rabbitmq-setup.sh              install Debian's rabbitmq-server when
#                                          missing (idempotent; scripts/test.sh
#                                          calls it as it calls browser-setup.sh)
#   scripts/rabbitmq-setup.sh start DIR    start a private node for one test; prints
#                                          its AMQP port on stdout when it accepts
#   scripts/rabbitmq-setup.sh stop DIR     stop the node started in DIR
#
# A private node owns everything under DIR (mnesia, logs, config, the Erlang
# cookie through HOME, the enabled plugins file: rabbitmq_amqp1_0 only), listens
# on 127.0.0.1 only, on free ports picked at start (AMQP and Erlang
# distribution), under a node name unique to the run, so that runs in parallel
# and the package's own default node never clash. It runs as the calling user
# (root here) straight from /usr/lib/rabbitmq/bin: Debian's /usr/sbin wrappers
# would su to the rabbitmq user and use /var/lib/rabbitmq.
#
# The package's postinst would start the default node through invoke-rc.d;
# without systemd (containers, CI) that is refused by policy-rc.d, which this
# script provides for the install when the machine has none, and a default
# node that did start is stopped: tests only use private nodes.
#
# A start takes 5-12 s until the AMQP port answers (Erlang boot, plugin
# load; measured 5.2, 10.0, 11.1, 11.7, 6.7 s on 2 shared cores at load ~8,
# as perf/amqp-interop.sh prints it), a stop 3 s.
set -euo pipefail

RMQ_BIN=${WEFT_RABBITMQ_BIN:-/usr/lib/rabbitmq/bin}

install_rabbitmq() {
    if [ -x "$RMQ_BIN/rabbitmq-server" ]; then
        return 0
    fi
    local SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo -n"
    if ! command -v apt-get >/dev/null || { [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; }; then
        echo "scripts/rabbitmq-setup.sh: missing rabbitmq-server (Debian/Ubuntu: apt-get install rabbitmq-server)" >&2
        return 1
    fi
    # No service start during the install: a policy-rc.d that refuses, only
    # for the install and only when the machine has none of its own.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# scripts/rabbitmq-setup.sh: no service starts during its install\nexit 101\n' |
            $SUDO tee "$policy" >/dev/null
        $SUDO chmod 755 "$policy"
        made_policy=1
    fi
    local apt=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get)
    local rc=0
    "${apt[@]}" install -y --no-install-recommends rabbitmq-server ||
        { "${apt[@]}" update && "${apt[@]}" install -y --no-install-recommends rabbitmq-server; } || rc=$?
    [ -z "$made_policy" ] || $SUDO rm -f "$policy"
    # A default node the package did start anyway (a machine with systemd):
    # stopped and not started at boot; private nodes never use it.
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
        $SUDO systemctl disable --now rabbitmq-server >/dev/null 2>&1 || true
    fi
    if [ $rc != 0 ] || [ ! -x "$RMQ_BIN/rabbitmq-server" ]; then
        echo "scripts/rabbitmq-setup.sh: apt-get install rabbitmq-server failed (above)" >&2
        return 1
    fi
}

# A free TCP port on 127.0.0.1 (the kernel's pick; the small race until the
# node binds it is accepted: the start fails loudly if it lost).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

node_env() {
    local dir=$1
    export HOME="$dir" \
        RABBITMQ_NODENAME="$(cat "$dir/nodename")" \
        RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
        RABBITMQ_PLUGINS_EXPAND_DIR="$dir/plugins-expand" \
        RABBITMQ_FEATURE_FLAGS_FILE="$dir/feature_flags" \
        RABBITMQ_QUORUM_DIR="$dir/quorum" \
        RABBITMQ_STREAM_DIR="$dir/stream"
}

start_node() {
    local dir=${1:?usage: rabbitmq-setup.sh start DIR}
    install_rabbitmq
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [ -f "$dir/rabbitmq.pid" ] && kill -0 "$(cat "$dir/rabbitmq.pid")" 2>/dev/null; then
        echo "scripts/rabbitmq-setup.sh: a node already runs in $dir" >&2
        return 1
    fi
    local port dist
    port=$(free_port)
    dist=$(free_port)
    echo "weft-$$-$(date +%s%N | tail -c 7)@localhost" >"$dir/nodename"
    : >"$dir/rabbitmq-env.conf"
    echo '[rabbitmq_amqp1_0].' >"$dir/enabled_plugins"
    # guest from 127.0.0.1 (the default) and SASL ANONYMOUS mapped to guest,
    # as weft allows anonymous clients by default.
    cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$port
distribution.listener.interface = 127.0.0.1
amqp1_0.default_user = guest
amqp1_0.default_vhost = /
log.file.level = warning
log.console = false
EOF
    echo '[].' >"$dir/advanced.config"
    echo "$port" >"$dir/port"
    (
        node_env "$dir"
        export RABBITMQ_DIST_PORT=$dist ERL_EPMD_ADDRESS=127.0.0.1
        # Its own session: stop kills the node's process group and nothing else.
        setsid "$RMQ_BIN/rabbitmq-server" >"$dir/stdout.log" 2>&1 </dev/null &
        echo $! >"$dir/launcher.pid"
    )
    # Ready when the AMQP port accepts (the listener opens after the plugins
    # booted); 60 s is generous for a loaded 2-core machine.
    local i
    for i in $(seq 1 600); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
            echo "$port"
            return 0
        fi
        if ! kill -0 "$(cat "$dir/launcher.pid")" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "scripts/rabbitmq-setup.sh: the node in $dir did not open 127.0.0.1:$port; its output:" >&2
    tail -n 30 "$dir/stdout.log" >&2 || true
    stop_node "$dir" || true
    return 1
}

stop_node() {
    local dir=${1:?usage: rabbitmq-setup.sh stop DIR}
    [ -f "$dir/launcher.pid" ] || return 0
    local pid
    pid=$(cat "$dir/launcher.pid")
    if kill -0 "$pid" 2>/dev/null; then
        (
            node_env "$dir"
            timeout 30 "$RMQ_BIN/rabbitmqctl" -q -n "$RABBITMQ_NODENAME" shutdown >/dev/null 2>&1
        ) || true
        # What is left of the node's own process group (it was started with
        # setsid: the group id is the launcher's pid).
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null || true
            sleep 1
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/launcher.pid"
}

case "${1:-install}" in
install) install_rabbitmq ;;
start) start_node "${2:-}" ;;
stop) stop_node "${2:-}" ;;
*)
    echo "usage: scripts/rabbitmq-setup.sh [install | start DIR | stop DIR]" >&2
    exit 2
    ;;
esac
