#!/usr/bin/env bash
# Release binaries for the boxes (profile `box` in Cargo.toml): armv7 hard-float and aarch64 Linux (glibc), built with
# Debian's Rust 1.85 (which also proves the crate and Cargo.lock hold to rust-version).
# Sets the toolchain up first (cross/setup.sh, a no-op when done).
#
# Output: target/cross/dist/tillrelay-<triple>, and for each a line with its size, its
# dynamic dependencies and the oldest glibc it needs (figures recorded in docs/BOX.md).
# Usage: cross/build.sh [triple...]   (default: both)
set -euo pipefail
here=$(dirname "$0")
bash "$here/setup.sh"
# shellcheck source=cross/env.sh
. "$here/env.sh"
cd "$CROSS_ROOT"

triples=("$@")
[ "${#triples[@]}" -gt 0 ] || triples=(armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu)

dist=$CARGO_TARGET_DIR/dist
mkdir -p "$dist"
for t in "${triples[@]}"; do
    "$CARGO" build --locked --profile box --target "$t" --bin tillrelay
    cp "$CARGO_TARGET_DIR/$t/box/tillrelay" "$dist/tillrelay-$t"
done
for t in "${triples[@]}"; do
    bash "$here/inspect.sh" "$dist/tillrelay-$t"
done
