#!/usr/bin/env bash
# Installs and starts each form of weft's packaging on this machine, and
# fails (status 1, a line starting "package-check: FAIL") at the first thing
# that is wrong. Not part of scripts/test.sh: the release build and the
# container build take minutes. Needs root (dpkg, network namespaces,
# podman). Sections, all by default, or those named as arguments:
#
#   install    cargo install --path . into a temporary root; the installed
#              weft starts on its embedded defaults (no configuration file)
#              in a network namespace of its own, answers /readyz, routes
#              an MQTT publish to a NATS subscriber, stops on SIGTERM with 0.
#   deb        scripts/package.sh builds the .deb; its control data and
#              contents are checked; `dpkg -i` on this host (the `weft`
#              user, the conffile's owner and mode); the installed unit
#              passes `systemd-analyze verify`; /usr/bin/weft starts as user
#              weft on /etc/weft/weft.toml (network namespace of its own) and
#              passes the same smoke test; `dpkg --purge` removes it again
#              (WEFT_PACKAGE_CHECK_KEEP=1 leaves it installed).
#   unit       systemd cannot run units on a host whose PID 1 is not
#              systemd (this one's is not): the .deb is installed with
#              `dpkg -i` in a podman container that boots systemd
#              (Debian bookworm + systemd); its postinst enables and starts
#              weft.service; the check drives the unit: active as user weft,
#              smoke test, CPUAffinity= (a drop-in pins one core: one shard),
#              reload (SIGHUP), Restart=on-failure (SIGKILL of the main
#              process), a bad configuration refused by ExecStartPre, stop
#              (exit 0), purge.
#   container  scripts/package/Containerfile built with podman (vfs storage,
#              chroot isolation, docker format for the HEALTHCHECK) and run
#              with MQTT and NATS published on this host's loopback, under
#              podman's default seccomp profile plus io_uring
#              (scripts/package/seccomp-io-uring.sh): healthy (its
#              HEALTHCHECK), the router runs as user weft, smoke test inside
#              the container and from this host through the published
#              ports, `podman stop` exits 0.
#
# Base images: this machine reaches no container registry, so the rust and
# debian-slim images the Containerfile names are replaced (--build-arg) by
# stand-ins made here: Debian bookworm (minbase) from debootstrap, and for
# the build stage the same plus gcc and this host's Rust toolchain
# (`rustc --print sysroot`). Where a registry is reachable,
# WEFT_PACKAGE_CHECK_PULL=1 uses the real images instead.
#
# Everything it makes lives under $CARGO_TARGET_DIR/package-check
# (target/package-check): the debootstrap tree, podman's storage.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
target=${CARGO_TARGET_DIR:-$repo/target}
work=$target/package-check
smoke=$repo/scripts/package/smoke.sh
sections=("$@")
[ ${#sections[@]} -gt 0 ] || sections=(install deb unit container)

fail() {
    echo "package-check: FAIL: $*" >&2
    exit 1
}
say() { echo "package-check: $*"; }
# Runs a command, printing it first (the report shows what ran).
run() {
    local line="$*"
    # podman's storage options, once set, read as plain `podman`.
    [ -n "${podman_long:-}" ] && line=${line//"$podman_long"/podman}
    # (On stderr: a caller's redirection of stdout does not hide it.)
    echo "+ $line" >&2
    "$@"
}

[ "$(id -u)" = 0 ] || fail "needs root (dpkg -i, network namespaces, podman)"
mkdir -p "$work"

# Runs ARGS... in a new network namespace whose loopback is up: the
# router binds its default ports there without meeting anyone else's.
in_netns() {
    unshare --net -- bash -c 'ip link set lo up && exec "$@"' in_netns "$@"
}

apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]} (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            --no-install-recommends "${missing[@]}" >/dev/null; } ||
        fail "apt-get install ${missing[*]} failed"
}

# ---------------------------------------------------------------- install
check_install() {
    say "== cargo install --path ."
    local root
    root=$(mktemp -d /tmp/weft-cargo-install.XXXXXX)
    run cargo install --path . --locked --root "$root" ||
        fail "cargo install --path . failed"
    [ -x "$root/bin/weft" ] || fail "cargo install left no $root/bin/weft"
    local version
    version=$("$root/bin/weft" --version) || fail "$root/bin/weft --version failed"
    [ "$version" = "weft $(cargo_version)" ] ||
        fail "installed weft says '$version', Cargo.toml says $(cargo_version)"
    say "installed: $(ls "$root/bin" | tr '\n' ' ')($version)"
    # From an empty directory, no --config: the embedded defaults.
    (cd "$root" && run in_netns "$smoke" run "$root/bin/weft") ||
        fail "the cargo-installed weft did not pass the smoke test (above)"
    rm -rf "$root"
    say "PASS install"
}

cargo_version() {
    sed -n 's/^version = "\(.*\)"$/\1/p' "$repo/Cargo.toml" | head -n 1
}

# ---------------------------------------------------------------- deb
deb_file=""
build_deb() {
    [ -n "$deb_file" ] && return 0
    say "== scripts/package.sh --fast"
    apt_install dpkg-dev # dpkg-shlibdeps, for cargo-deb's Depends: $auto
    # --fast: lighter compression (the package is the same otherwise;
    # xz of the debug symbols takes minutes on a busy 2-core machine).
    deb_file=$(scripts/package.sh --fast) || fail "scripts/package.sh failed"
    say "built $deb_file ($(stat -c %s "$deb_file") bytes)"
}

check_deb() {
    build_deb
    say "== the .deb's control data and contents"
    local info contents
    info=$(dpkg-deb --info "$deb_file") || fail "dpkg-deb --info $deb_file failed"
    echo "$info" | sed -n '/Package:/,$p'
    echo "$info" | grep -q '^ Package: weft$' || fail "the package is not named weft"
    echo "$info" | grep -Eq '^ Depends: .*passwd' || fail "Depends lacks passwd (useradd in postinst)"
    dpkg-deb --ctrl-tarfile "$deb_file" | tar -xO ./conffiles | grep -qx /etc/weft/weft.toml ||
        fail "/etc/weft/weft.toml is not a conffile"
    for script in postinst postrm prerm; do
        dpkg-deb --ctrl-tarfile "$deb_file" | tar -t | grep -qx "./$script" ||
            fail "the package has no $script"
    done
    dpkg-deb --ctrl-tarfile "$deb_file" | tar -xO ./postinst | grep -q 'useradd --system' ||
        fail "postinst does not create the weft user"
    contents=$(dpkg-deb --contents "$deb_file")
    for path in ./usr/bin/weft ./etc/weft/weft.toml ./usr/share/doc/weft/README.md; do
        echo "$contents" | awk '{print $6}' | grep -qx "$path" || fail "the package lacks $path"
    done
    echo "$contents" | awk '{print $6}' | grep -Eqx '\./(usr/)?lib/systemd/system/weft\.service' ||
        fail "the package lacks lib/systemd/system/weft.service"

    say "== dpkg -i on this host"
    run dpkg -i "$deb_file" || fail "dpkg -i $deb_file failed"
    [ "$(dpkg-query -W -f='${Status}' weft)" = "install ok installed" ] ||
        fail "dpkg says weft is '$(dpkg-query -W -f='${Status}' weft)'"
    getent passwd weft >/dev/null || fail "postinst made no weft user"
    [ "$(stat -c '%U:%G %a' /etc/weft/weft.toml)" = "root:weft 640" ] ||
        fail "/etc/weft/weft.toml is $(stat -c '%U:%G %a' /etc/weft/weft.toml), not root:weft 640"
    local unit
    unit=$(dpkg -L weft | grep '/systemd/system/weft\.service$') || fail "dpkg -L lists no weft.service"
    say "user: $(getent passwd weft); unit: $unit"
    verify_unit "$unit"
    run /usr/bin/weft check-config /etc/weft/weft.toml || fail "the installed configuration is refused"
    # As the unit runs it: user weft, no capabilities, /etc/weft/weft.toml.
    (cd / && run in_netns setpriv --reuid weft --regid weft --init-groups --inh-caps=-all \
        --bounding-set=-all "$smoke" run /usr/bin/weft --config /etc/weft/weft.toml) ||
        fail "the installed weft did not pass the smoke test as user weft (above)"
    if [ "${WEFT_PACKAGE_CHECK_KEEP:-0}" = 1 ]; then
        say "left installed (WEFT_PACKAGE_CHECK_KEEP=1)"
    else
        run dpkg --purge weft || fail "dpkg --purge weft failed"
        [ ! -e /usr/bin/weft ] || fail "/usr/bin/weft is still there after the purge"
        [ ! -e /etc/weft/weft.toml ] || fail "/etc/weft/weft.toml is still there after the purge"
    fi
    say "PASS deb"
}

# systemd-analyze verify prints problems (unknown keys, bad values) as
# warnings and still exits 0: anything it prints is a failure here.
verify_unit() {
    command -v systemd-analyze >/dev/null || apt_install systemd
    local out
    echo "+ systemd-analyze verify $1"
    out=$(systemd-analyze verify "$1" 2>&1) || fail "systemd-analyze verify $1: $out"
    [ -z "$out" ] || fail "systemd-analyze verify $1 warns: $out"
}

# ---------------------------------------------------------------- podman
podman_ready=0
P=()
setup_podman() {
    [ $podman_ready = 1 ] && return 0
    apt_install podman buildah runc debootstrap
    # vfs: no overlay mounts needed; runc: crun refuses this host's hybrid
    # cgroup hierarchy; storage of its own, under the target directory.
    P=(podman --root "$work/storage" --runroot "$work/run" --storage-driver vfs --runtime runc
        --cgroup-manager cgroupfs)
    # A container's limits may not exceed this process's hard limits.
    # (nproc: runc could not set it to the hard limit itself here; 4096 is
    # plenty for a router: one thread per shard and a few more.)
    ULIMITS=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
    podman_long="${P[*]}"
    podman_ready=1
}

base_image=localhost/weft-check/debian:bookworm-slim
rust_image=localhost/weft-check/rust:bookworm
systemd_image=localhost/weft-check/systemd:bookworm

ensure_base_image() {
    "${P[@]}" image exists "$base_image" && return 0
    say "== debootstrap bookworm (minbase) as $base_image"
    rm -rf "$work/rootfs"
    run debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian \
        >"$work/debootstrap.log" 2>&1 || fail "debootstrap failed: see $work/debootstrap.log"
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb
    tar -C "$work/rootfs" -c . | "${P[@]}" import - "$base_image" >/dev/null ||
        fail "podman import of the debootstrap tree failed"
    rm -rf "$work/rootfs"
}

# Builds image $1 from a Containerfile on stdin (context: an empty
# directory), unless it exists. Extra arguments go to podman build.
ensure_image() {
    local image=$1
    shift
    "${P[@]}" image exists "$image" && { cat >/dev/null; return 0; }
    say "== building $image"
    local ctx
    ctx=$(mktemp -d "$work/ctx.XXXXXX")
    cat >"$ctx/Containerfile"
    "${P[@]}" build --isolation chroot --network host "$@" -t "$image" "$ctx" \
        >"$work/build-${image##*/}.log" 2>&1 ||
        fail "podman build $image failed: see $work/build-${image##*/}.log"
    rm -rf "$ctx"
}

# Waits (bounded) until `COMMAND...` succeeds; $1 = what, $2 = seconds.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    for _ in $(seq $((seconds * 10))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    fail "$what: not within $seconds s (last: $("$@" 2>&1 | tail -n 3 | tr '\n' ' '))"
}

# ---------------------------------------------------------------- unit
check_unit() {
    build_deb
    setup_podman
    ensure_base_image
    ensure_image "$systemd_image" <<EOF
FROM $base_image
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    systemd systemd-sysv && rm -rf /var/lib/apt/lists/*
EOF
    say "== weft.service under systemd (systemd boots in a podman container)"
    local c=weft-check-systemd
    "${P[@]}" rm -f "$c" >/dev/null 2>&1 || true
    # --privileged: the unit's sandboxing (ProtectSystem=, PrivateTmp=, ...)
    # needs systemd to create mount namespaces. --network none: a loopback
    # of its own.
    run "${P[@]}" run -d --name "$c" --privileged --network none --systemd=always "${ULIMITS[@]}" \
        -v "$deb_file:/tmp/weft.deb:ro" -v "$smoke:/tmp/smoke.sh:ro" "$systemd_image" /sbin/init \
        >/dev/null || fail "the systemd container did not start"
    local x=("${P[@]}" exec "$c") xi=("${P[@]}" exec -i "$c")
    wait_for "systemd in the container is running" 60 \
        bash -c "$(printf '%q ' "${x[@]}") systemctl is-system-running | grep -Eq '^(running|degraded)$'"
    run "${x[@]}" dpkg -i /tmp/weft.deb || fail "dpkg -i in the systemd container failed"
    [ "$("${x[@]}" systemctl is-enabled weft)" = enabled ] || fail "postinst did not enable weft.service"
    wait_for "weft.service active after dpkg -i" 30 "${x[@]}" systemctl is-active --quiet weft
    "${x[@]}" systemctl --no-pager status weft | head -n 12
    "${x[@]}" bash /tmp/smoke.sh probe /usr/bin/weft || fail "the service did not pass the smoke test"

    local pid
    pid=$(unit_pid "$c")
    [ "$("${x[@]}" stat -c %U "/proc/$pid")" = weft ] ||
        fail "the service's process $pid runs as $("${x[@]}" stat -c %U "/proc/$pid"), not weft"
    say "main process $pid runs as weft; $("${x[@]}" grep 'Max locked memory' "/proc/$pid/limits")"
    say "$("${x[@]}" grep Cpus_allowed_list "/proc/$pid/status")"
    # What systemd made of the unit's sandboxing, as its own score.
    "${x[@]}" systemd-analyze security weft --no-pager 2>/dev/null | tail -n 1 || true

    say "-- CPUAffinity=0 in a drop-in: the router must run one shard, on core 0"
    "${x[@]}" mkdir -p /etc/systemd/system/weft.service.d
    # (CPUAffinity= lines add up: the empty one resets the unit's mask.)
    echo $'[Service]\nCPUAffinity=\nCPUAffinity=0' | "${xi[@]}" tee /etc/systemd/system/weft.service.d/cores.conf >/dev/null
    run "${x[@]}" systemctl daemon-reload
    run "${x[@]}" systemctl restart weft || fail "restart with CPUAffinity=0 failed"
    pid=$(unit_pid "$c")
    [ "$("${x[@]}" sed -n 's/^Cpus_allowed_list:\s*//p' "/proc/$pid/status")" = 0 ] ||
        fail "CPUAffinity=0 did not reach the process ($("${x[@]}" grep Cpus_allowed_list "/proc/$pid/status"))"
    wait_for "a 'shards: 1, cores: 0' line in the journal" 30 \
        bash -c "$(printf '%q ' "${x[@]}") journalctl -u weft _PID=$pid --no-pager | grep -q 'shards: 1, cores: 0'"
    "${x[@]}" journalctl -u weft _PID="$pid" --no-pager | grep 'shards: 1, cores: 0' | tail -n 1
    "${x[@]}" rm /etc/systemd/system/weft.service.d/cores.conf
    run "${x[@]}" systemctl daemon-reload
    run "${x[@]}" systemctl restart weft || fail "restart without the drop-in failed"
    "${x[@]}" bash /tmp/smoke.sh probe /usr/bin/weft >/dev/null || fail "smoke test after the drop-in"

    say "-- systemctl reload (SIGHUP): same process, still serving"
    pid=$(unit_pid "$c")
    run "${x[@]}" systemctl reload weft || fail "systemctl reload weft failed"
    wait_for "the router's 'SIGHUP: configuration unchanged' line" 30 \
        bash -c "$(printf '%q ' "${x[@]}") journalctl -u weft _PID=$pid --no-pager | grep -q 'SIGHUP: configuration unchanged'"
    [ "$(unit_pid "$c")" = "$pid" ] || fail "reload replaced the process"
    "${x[@]}" bash /tmp/smoke.sh probe /usr/bin/weft >/dev/null || fail "smoke test after reload"

    say "-- Restart=on-failure: SIGKILL the main process, systemd must start a new one"
    local restarts
    restarts=$("${x[@]}" systemctl show -P NRestarts weft)
    run "${x[@]}" bash -c "kill -KILL $pid" || fail "kill -KILL $pid failed"
    wait_for "a restarted weft.service" 30 bash -c \
        "[ \"\$($(printf '%q ' "${x[@]}") systemctl show -P NRestarts weft)\" -gt $restarts ] &&
         $(printf '%q ' "${x[@]}") systemctl is-active --quiet weft"
    [ "$(unit_pid "$c")" != "$pid" ] || fail "no new process after SIGKILL"
    "${x[@]}" bash /tmp/smoke.sh probe /usr/bin/weft >/dev/null || fail "smoke test after the restart"
    say "restarted: NRestarts $restarts -> $("${x[@]}" systemctl show -P NRestarts weft)"

    say "-- a bad configuration: ExecStartPre's check-config refuses it, naming the key"
    "${x[@]}" cp /etc/weft/weft.toml /tmp/weft.toml.good
    echo $'[limits]\nqueued_bytes_max = 10' | "${xi[@]}" tee -a /etc/weft/weft.toml >/dev/null
    if "${x[@]}" systemctl restart weft 2>/dev/null; then
        fail "weft.service restarted with limits.queued_bytes_max = 10"
    fi
    wait_for "the refusal in the journal" 30 bash -c \
        "$(printf '%q ' "${x[@]}") journalctl -u weft --no-pager | grep -q 'limits.queued_bytes_max: 10 is below the minimum'"
    "${x[@]}" journalctl -u weft --no-pager | grep 'limits.queued_bytes_max' | tail -n 1
    "${x[@]}" cp /tmp/weft.toml.good /etc/weft/weft.toml
    run "${x[@]}" systemctl reset-failed weft || true
    run "${x[@]}" systemctl restart weft || fail "restart with the good configuration failed"
    wait_for "weft.service active again" 30 "${x[@]}" systemctl is-active --quiet weft

    say "-- systemctl stop: SIGTERM, exit status 0"
    run "${x[@]}" systemctl stop weft || fail "systemctl stop weft failed"
    local result
    result=$("${x[@]}" systemctl show -P Result weft)/$("${x[@]}" systemctl show -P ExecMainStatus weft)
    [ "$result" = success/0 ] || fail "after stop: Result/ExecMainStatus = $result, not success/0"

    run "${x[@]}" dpkg --purge weft || fail "dpkg --purge weft in the container failed"
    if "${x[@]}" test -e /lib/systemd/system/weft.service; then
        fail "the unit is still there after the purge"
    fi
    "${P[@]}" rm -f "$c" >/dev/null
    say "PASS unit"
}

unit_pid() {
    local pid
    pid=$("${P[@]}" exec "$1" systemctl show -P MainPID weft)
    [ -n "$pid" ] && [ "$pid" != 0 ] || fail "weft.service has no main process"
    echo "$pid"
}

# ---------------------------------------------------------------- container
check_container() {
    setup_podman
    local rust=docker.io/library/rust:1-bookworm runtime=docker.io/library/debian:bookworm-slim
    if [ "${WEFT_PACKAGE_CHECK_PULL:-0}" != 1 ]; then
        ensure_base_image
        local sysroot
        sysroot=$(rustc --print sysroot)
        # What the build needs of the rust image besides the toolchain: a C
        # compiler and make (ring, glommio's liburing) and git (glommio's
        # build script runs `git submodule update`).
        # The host's own CAs (/usr/local/share/ca-certificates) go in too:
        # this machine's network reaches crates.io through a TLS proxy
        # whose CA only the host trusts.
        mkdir -p /usr/local/share/ca-certificates
        ensure_image "$rust_image" -v "$sysroot:/host-rust:ro" \
            -v /usr/local/share/ca-certificates:/host-ca:ro <<EOF
FROM $base_image
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    gcc libc6-dev make git ca-certificates && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN cp /host-ca/*.crt /usr/local/share/ca-certificates/ 2>/dev/null; update-ca-certificates
RUN mkdir -p /usr/local/rust /usr/local/cargo/bin && cp -a /host-rust/bin /host-rust/lib /usr/local/rust/ \
    && rm -rf /usr/local/rust/lib/rustlib/src && cargo --version && rustc --version
EOF
        rust=$rust_image
        runtime=$base_image
    fi
    say "== podman build -f scripts/package/Containerfile (build stage: $rust, runtime: $runtime)"
    run "${P[@]}" build --format docker --isolation chroot --network host --build-arg "RUST_IMAGE=$rust" \
        --build-arg "RUNTIME_IMAGE=$runtime" -f scripts/package/Containerfile -t localhost/weft:check . \
        >"$work/build-weft.log" 2>&1 || fail "podman build failed: see $work/build-weft.log"
    tail -n 2 "$work/build-weft.log"

    local c=weft-check-container
    "${P[@]}" rm -f "$c" >/dev/null 2>&1 || true
    # The memlock limit the Containerfile's head asks for (-1:-1) cannot be
    # given here: no process on this host may raise a hard limit, so the
    # container gets this host's own.
    local memlock
    memlock=$(ulimit -Hl)
    [ "$memlock" = unlimited ] && memlock=-1 || memlock=$((memlock * 1024))
    # podman's default seccomp profile refuses io_uring: its profile plus
    # the three io_uring calls, as the Containerfile's head says.
    scripts/package/seccomp-io-uring.sh >"$work/weft-seccomp.json" ||
        fail "scripts/package/seccomp-io-uring.sh failed"
    # MQTT and NATS published on free ports of this host's loopback. The
    # check runs the HEALTHCHECK itself (`podman healthcheck run`): podman's
    # periodic runs are systemd timers, and this host has no systemd.
    run "${P[@]}" run -d --name "$c" --security-opt "seccomp=$work/weft-seccomp.json" --health-interval disable \
        -p 127.0.0.1::1883 -p 127.0.0.1::4222 "${ULIMITS[@]}" \
        --ulimit "memlock=$memlock:$memlock" localhost/weft:check >/dev/null ||
        fail "the container did not start"
    wait_for "the container's HEALTHCHECK passes" 60 "${P[@]}" healthcheck run "$c"
    say "HEALTHCHECK (weft wait --admin 127.0.0.1:8222 in the container): healthy"
    local pid
    pid=$("${P[@]}" inspect -f '{{.State.Pid}}' "$c")
    local uid seccomp
    uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
    [ "$("${P[@]}" exec "$c" getent passwd "$uid" | cut -d: -f1)" = weft ] ||
        fail "the router in the container runs as uid $uid, not weft"
    seccomp=$(awk '/^Seccomp:/ {print $2}' "/proc/$pid/status")
    [ "$seccomp" = 2 ] || fail "the container's router has Seccomp: $seccomp, not 2 (a filter)"
    say "router (host pid $pid) runs as weft, under the seccomp filter (mode 2) with io_uring allowed"
    "${P[@]}" exec -i "$c" bash -s -- probe /usr/bin/weft <"$smoke" ||
        fail "the container did not pass the smoke test (inside)"
    # From this host through the published ports: the image's
    # configuration serves clients from outside the container. The clients
    # are this checkout's release build.
    local mqtt nats
    mqtt=$("${P[@]}" port "$c" 1883/tcp) || fail "podman port $c 1883/tcp"
    nats=$("${P[@]}" port "$c" 4222/tcp) || fail "podman port $c 4222/tcp"
    cargo build --release --locked --bin weft -q || fail "cargo build --release (the clients)"
    WEFT_SMOKE_ADMIN='' WEFT_SMOKE_MQTT=$mqtt WEFT_SMOKE_NATS=$nats "$smoke" probe "$target/release/weft" ||
        fail "the container did not pass the smoke test through its published ports"
    run "${P[@]}" stop -t 30 "$c" >/dev/null || fail "podman stop failed"
    local status
    status=$("${P[@]}" inspect -f '{{.State.ExitCode}}' "$c")
    [ "$status" = 0 ] || fail "the container's router exited with $status after podman stop (SIGTERM)"
    "${P[@]}" rm -f "$c" >/dev/null
    say "PASS container"
}

for section in "${sections[@]}"; do
    case $section in
    install) check_install ;;
    deb) check_deb ;;
    unit) check_unit ;;
    container) check_container ;;
    *) fail "unknown section '$section' (install, deb, unit, container)" ;;
    esac
done
say "all passed: ${sections[*]}"
