#!/usr/bin/env bash
# The whole test suite compiled for armv7 (32-bit: usize, time_t and alignment differ
# from x86-64, which hides bugs) and run under qemu-user, with Debian's Rust 1.85.
# Sets the toolchain up first (cross/setup.sh, a no-op when done).
#
# cargo runs each test binary through CARGO_TARGET_..._RUNNER (qemu); the integration
# tests that spawn the agent read TILLRELAY_TEST_RUNNER (tests/common/mod.rs) so the
# ARM agent runs through qemu too. binfmt_misc is not needed (nor usually available).
# Doc tests are not run: cargo skips them when cross-compiling; the host suite has them.
#
# One gap, in the emulator and not in the code: qemu-user (7.2 in Debian 12, and
# still 10.x) does not emulate the TCGETS2/TCSETS2 ioctls that serialport uses to set a
# port's speed, so every serial open fails there with ENOSYS ("Function not
# implemented"). What opens serial ports runs in the host suite only: the test targets
# in GAP_TARGETS (all their tests open ports) and the tests named in GAP_TESTS (the
# rest of their target runs). Everything else runs. A new test that opens a serial
# port fails here with ENOSYS until it is added to one of the lists.
# A second, smaller gap: `tillrelay demo` starts the agent as a child of its own
# binary (current_exe), and without binfmt_misc an ARM binary cannot exec another ARM
# binary under qemu-user; its test runs in the host suite only. The crash loop drives a
# serial lane (the ioctl gap), and the clock-jump test preloads the host's libfaketime,
# which cannot load into an ARM process: both run in the host suite only.
#
# Usage: cross/test-armv7.sh [cargo test args...]   (with args, exactly what they select)
set -euo pipefail
here=$(dirname "$0")
bash "$here/setup.sh"
# shellcheck source=cross/env.sh
. "$here/env.sh"
cd "$CROSS_ROOT"

GAP_TARGETS=(serial_tap crash_loop clock_jumps)
GAP_TESTS=(
    printed_receipts_reach_the_printer_unchanged_and_become_orders
    receipts_a_broken_template_cannot_read_are_kept_and_reparsed_after_the_fix
    demo_runs_the_whole_product_and_shows_both_clouds
    a_truncated_queue_is_moved_aside_and_receipts_still_print_and_are_captured
    receipts_stamped_by_a_1970_clock_survive_retention_once_the_clock_is_set
    with_no_queue_possible_the_printer_gets_every_byte_and_the_agent_keeps_running
    a_malformed_command_on_the_serial_tap_leaves_the_next_receipts_captured
    a_command_cut_short_by_the_idle_timeout_on_the_serial_tap_leaves_the_next_receipt_captured
    a_serial_port_that_is_a_file_is_refused_with_a_clear_error_said_once
)

triple=armv7-unknown-linux-gnueabihf
export TILLRELAY_TEST_RUNNER=$CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER

select=("$@")
if [ "${#select[@]}" -eq 0 ]; then
    # What `cargo test` runs by default, minus the gaps, named one by one.
    select=(--lib --bins --examples)
    for t in tests/*.rs tests/*/main.rs; do
        [ -e "$t" ] || continue
        case "$t" in
        */main.rs) name=$(basename "$(dirname "$t")") ;;
        *) name=$(basename "$t" .rs) ;;
        esac
        if [[ " ${GAP_TARGETS[*]} " == *" $name "* ]]; then
            echo "cross/test-armv7: not under qemu: tests/$name.rs (see this script's header)" >&2
            continue
        fi
        select+=(--test "$name")
    done
    select+=(--)
    for t in "${GAP_TESTS[@]}"; do
        echo "cross/test-armv7: not under qemu: $t (serial ioctls, or a child exec, qemu-user lacks)" >&2
        select+=(--skip "$t")
    done
fi
"$CARGO" test --locked --target "$triple" "${select[@]}"
