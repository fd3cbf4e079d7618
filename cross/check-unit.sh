#!/usr/bin/env bash
# Checks systemd/tillrelay.service: `systemd-analyze verify` passes and
# `systemd-analyze security --offline=true` rates it at most 2.0 ("OK" or better).
#
# verify insists that ExecStart's (and ExecReload's) binary exists; where
# /usr/bin/tillrelay is not installed, a copy of the unit whose Exec lines name a
# stand-in executable is
# verified instead (the rest of the unit is byte for byte the same).
set -euo pipefail
cd "$(dirname "$0")/.."
unit=systemd/tillrelay.service
max=${MAX_EXPOSURE:-2.0}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
checked=$unit
if [ ! -x /usr/bin/tillrelay ]; then
    printf '#!/bin/sh\nexit 0\n' >"$work/tillrelay"
    chmod +x "$work/tillrelay"
    sed "s|^\(Exec[A-Za-z]*\)=/usr/bin/tillrelay |\1=$work/tillrelay |" "$unit" \
        >"$work/tillrelay.service"
    checked=$work/tillrelay.service
fi
# verify prints problems but exits 0 for some of them: any output is a failure.
out=$(systemd-analyze verify "$checked" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
    echo "systemd-analyze verify $unit:"
    echo "$out"
    exit 1
fi
echo "systemd-analyze verify $unit: ok"

score=$(systemd-analyze security --offline=true --no-pager "$checked" 2>&1 |
    sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
if [ -z "$score" ]; then
    echo "systemd-analyze security printed no exposure level"
    exit 1
fi
echo "systemd-analyze security --offline=true $unit: exposure $score (limit $max)"
awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }'
