# Sourced by the cross scripts: Debian's Rust 1.85 and the gcc cross toolchains.
# rustup's toolchain stays the default for host work; only these scripts use /usr/bin's.
# shellcheck shell=bash

CROSS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export CROSS_ROOT
CARGO=/usr/bin/cargo
export RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc
# rustup's proxies read these; Debian's cargo must not be steered by them.
unset RUSTUP_TOOLCHAIN CARGO_BUILD_TARGET RUSTFLAGS
# Its own target dir: artifacts of rustc 1.85 and rustup's rustc never mix, so neither
# build invalidates the other's cache.
export CARGO_TARGET_DIR=${CROSS_TARGET_DIR:-$CROSS_ROOT/target/cross}

export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
# C parts (SQLite from rusqlite's bundled copy, ring's assembly) use the same compilers.
export CC_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-gcc
export AR_armv7_unknown_linux_gnueabihf=arm-linux-gnueabihf-ar
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
# No binfmt_misc is needed: cargo runs test binaries through qemu itself; -L points
# qemu's dynamic loader at the target glibc from libc6-{armhf,arm64}-cross.
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="qemu-arm-static -L /usr/arm-linux-gnueabihf"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
