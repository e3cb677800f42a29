#!/usr/bin/env bash
# Builds weft's Debian package with cargo-deb and prints its path (the last
# line of stdout). cargo-deb comes from crates.io: when no `cargo deb` is
# on PATH, this installs the pinned version into a project-local root,
# $CARGO_TARGET_DIR/package-tools (target/package-tools by default), once.
# The package's contents are set in Cargo.toml's [package.metadata.deb]:
# /usr/bin/weft, the unit scripts/package/weft.service, the conffile
# /etc/weft/weft.toml (scripts/package/weft.toml) and the maintainer
# scripts in scripts/package/debian/ (the `weft` user).
# The release build is cargo's own: nothing is rebuilt when target/release
# is current. Extra arguments go to `cargo deb` (e.g. --no-build).
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_DEB_VERSION=3.8.0
target=${CARGO_TARGET_DIR:-$PWD/target}
tools=$target/package-tools

if cargo deb --version >/dev/null 2>&1; then
    deb=(cargo deb)
else
    if ! "$tools/bin/cargo-deb" --version 2>/dev/null | grep -q " $CARGO_DEB_VERSION\$"; then
        echo "scripts/package.sh: installing cargo-deb $CARGO_DEB_VERSION into $tools" >&2
        # Its own target directory: cargo-deb's build never waits on the
        # project's, nor churns it.
        CARGO_TARGET_DIR=$tools/build cargo install cargo-deb --version "$CARGO_DEB_VERSION" \
            --locked --root "$tools" >&2
    fi
    deb=("$tools/bin/cargo-deb")
fi
# cargo-deb rewrites the assets' target/release/ to $CARGO_TARGET_DIR.
out=$("${deb[@]}" --locked "$@" | tail -n 1)
if [ ! -f "$out" ]; then
    echo "scripts/package.sh: cargo-deb did not name a package file (last line: '$out')" >&2
    exit 1
fi
echo "$out"
