#!/usr/bin/env bash
# The whole test suite compiled for armv7 (32-bit: usize, time_t and alignment differ
# from x86-64, which hides bugs) and run under qemu-user, with Debian's Rust 1.85.
# Sets the toolchain up first (cross/setup.sh, a no-op when done).
#
# cargo runs each test binary through CARGO_TARGET_..._RUNNER (qemu); the integration
# tests that spawn the agent read TILLRELAY_TEST_RUNNER (tests/common/mod.rs) so the
# ARM agent runs through qemu too. binfmt_misc is not needed (nor usually available).
# Doc tests are not run: cargo skips them when cross-compiling; the host suite has them.
# Usage: cross/test-armv7.sh [extra cargo test args...]
set -euo pipefail
here=$(dirname "$0")
bash "$here/setup.sh"
# shellcheck source=cross/env.sh
. "$here/env.sh"
cd "$CROSS_ROOT"

triple=armv7-unknown-linux-gnueabihf
export TILLRELAY_TEST_RUNNER=$CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER
"$CARGO" test --locked --target "$triple" "$@"
