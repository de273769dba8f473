#!/usr/bin/env bash
# Installs the published rocketmq-rust binaries that `make test-rocketmq`
# runs against our name server: rocketmq-namesrv-rust (the reference name
# server), rocketmq-broker-rust and rocketmq-admin-cli, each through
# `cargo install --locked` at a pinned version into a cache directory.
# Idempotent: a binary that is already there is not built again. Crate names
# as arguments install only those (e.g. `scripts/rocketmq-install.sh
# rocketmq-namesrv`).
#
# Environment (all optional):
#   ROCKETMQ_VERSION  the rocketmq-rust release (default 1.0.0)
#   ROCKETMQ_CACHE    install root; binaries land in $ROCKETMQ_CACHE/bin
#                     (default ${XDG_CACHE_HOME:-$HOME/.cache}/openmessaging-kv/rocketmq-<version>)
#   CARGO             the cargo to use (default cargo)
#
# Time: the first install builds three large crates from source. Measured on
# the 2-core development machine, with other builds sharing it: the name
# server 8.5 minutes, the broker 15, the admin CLI 31 (it compiles RocksDB's
# C++ through librocksdb-sys), 55 in all; later runs return at once. The
# build directory ($ROCKETMQ_CACHE/target) is shared by the three installs,
# and by rocketmq-e2e, so common dependencies build once.
set -euo pipefail

version=${ROCKETMQ_VERSION:-1.0.0}
cache=${ROCKETMQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/openmessaging-kv/rocketmq-$version}
cargo=${CARGO:-cargo}

say() { printf 'rocketmq-install: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

command -v "$cargo" >/dev/null || die "cargo is needed (rustup: https://rustup.rs)"

# The admin CLI builds bindings through bindgen, which loads libclang.so
# (libclang-cpp, which other packages bring, is not it).
ensure_libclang() {
    if [[ -n ${LIBCLANG_PATH:-} ]] || compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null ||
        compgen -G '/usr/lib/*/libclang.so' >/dev/null; then
        return
    fi
    say "installing libclang-dev (Debian package) for the admin CLI's build"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q libclang-dev >/dev/null ||
        { apt-get update -q >/dev/null && apt-get install -y -q libclang-dev >/dev/null; } ||
        die "cannot install libclang-dev with apt-get"
}

# install CRATE BINARY: cargo install CRATE unless BINARY is in the cache.
install() {
    local crate=$1 binary=$2 started
    if [[ -x $cache/bin/$binary ]]; then
        say "$binary is installed ($cache/bin/$binary)"
        return
    fi
    started=$(date +%s)
    say "building $crate $version (binary $binary) into $cache"
    CARGO_TARGET_DIR=$cache/target "$cargo" install --locked --version "$version" \
        --root "$cache" "$crate" ||
        die "cargo install $crate $version failed (output above)"
    [[ -x $cache/bin/$binary ]] || die "$crate $version installed no binary named $binary in $cache/bin"
    say "$binary built in $(($(date +%s) - started)) s"
}

mkdir -p "$cache"
total_started=$(date +%s)
# With crate names as arguments, only those (make bench-namesrv needs only
# the name server); with none, all three.
wanted=" ${*:-rocketmq-namesrv rocketmq-broker rocketmq-admin-cli} "
[[ $wanted == *" rocketmq-namesrv "* ]] && install rocketmq-namesrv rocketmq-namesrv-rust
[[ $wanted == *" rocketmq-broker "* ]] && install rocketmq-broker rocketmq-broker-rust
if [[ $wanted == *" rocketmq-admin-cli "* ]]; then
    ensure_libclang
    install rocketmq-admin-cli rocketmq-admin-cli
fi
say "installed in $(($(date +%s) - total_started)) s; binaries in $cache/bin"
