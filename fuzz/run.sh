#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while, gently (nice, one process).
#
#   fuzz/run.sh TARGET SECONDS [more libFuzzer flags]
#
# Targets: escpos_decode receipt_template csv_reader json_reader ovopark_response
# wdt_response (fuzz/src/lib.rs says what each asserts).
#
# New inputs go to fuzz/work/TARGET (not committed); fuzz/corpus/TARGET holds the
# committed seeds and is only read. A crash is saved under fuzz/artifacts/TARGET/;
# replay it with `fuzz/run.sh TARGET 0 fuzz/artifacts/TARGET/crash-…` style runs
# or `RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET FILE` in fuzz/.
#
# cargo-fuzz needs nightly compiler flags (-Z sanitizer…). The machine has only a
# stable toolchain, so RUSTC_BOOTSTRAP=1 unlocks them. FUZZ_SANITIZER picks the
# sanitizer (default "address"; "none" if ASan does not link on a machine).
# libFuzzer's final statistics (execs, exec/s, cov, ft, corpus) are printed at
# the end, from fuzz/work/TARGET.log.
set -euo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,8p' "$0" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
target=$1
secs=$2
shift 2

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
cd "$here"
mkdir -p "work/$target"
log="work/$target.log"
# -jobs=1 -workers=1: one fuzzing process (the machine is shared); libFuzzer then
# writes the process's output to fuzz-0.log in the current directory, moved to
# $log below. -timeout: an input that takes over 10 s is reported like a crash
# (a hang in the agent is as bad as a panic).
status=0
nice -n 19 cargo fuzz run -s "${FUZZ_SANITIZER:-address}" "$target" \
    "work/$target" "corpus/$target" -- \
    -max_total_time="$secs" -jobs=1 -workers=1 -timeout=10 \
    -print_final_stats=1 "$@" || status=$?
if [ -f fuzz-0.log ]; then
    mv fuzz-0.log "$log"
    # The last status line (cov, ft, corp), the totals, and any crash report.
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE|pulse|NEW|REDUCE)' "$log" | tail -n 1 || true
    grep -E '^(stat::|==[0-9]+==|SUMMARY|Test unit written|thread .* panicked)' "$log" | sort -u || true
    echo "corpus: $(find "work/$target" -type f | wc -l) files in fuzz/work/$target"
fi
exit "$status"
