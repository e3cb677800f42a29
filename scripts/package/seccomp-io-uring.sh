#!/usr/bin/env bash
# Prints a container engine's default seccomp profile with io_uring
# allowed: weft's runtime (glommio) needs io_uring_setup, io_uring_enter and
# io_uring_register, and the default profiles of docker (25 and later) and
# of podman (containers-common; seen with Debian 12's podman 4.3) refuse
# them, so that every shard panics at start ("Failed to register a probe").
#
#   scripts/package/seccomp-io-uring.sh [DEFAULT_PROFILE] > weft-seccomp.json
#   podman run --security-opt seccomp=weft-seccomp.json ... weft
#
# DEFAULT_PROFILE: podman's /usr/share/containers/seccomp.json (the
# default); for docker, moby's profiles/seccomp/default.json. Only these
# three calls are added; everything else stays as the engine ships it.
# Needs jq or python3.
set -euo pipefail
profile=${1:-/usr/share/containers/seccomp.json}
[ -r "$profile" ] || { echo "seccomp-io-uring.sh: cannot read $profile" >&2; exit 1; }
rule='{"names":["io_uring_setup","io_uring_enter","io_uring_register"],"action":"SCMP_ACT_ALLOW","args":[]}'
if command -v jq >/dev/null; then
    jq --argjson rule "$rule" '.syscalls += [$rule]' "$profile"
elif command -v python3 >/dev/null; then
    python3 -c 'import json, sys
profile = json.load(open(sys.argv[1]))
profile["syscalls"].append(json.loads(sys.argv[2]))
json.dump(profile, sys.stdout, indent=1)
print()' "$profile" "$rule"
else
    echo "seccomp-io-uring.sh: needs jq or python3" >&2
    exit 1
fi
