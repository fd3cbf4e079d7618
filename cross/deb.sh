#!/usr/bin/env bash
# Debian packages for the boxes, one per target: target/cross/dist/tillrelay_<ver>_<arch>.deb.
# Builds the release binaries first (cross/build.sh), then packs them with cargo-deb
# (metadata in Cargo.toml, maintainer scripts in debian/), and checks the result:
# the files where docs/INSTALL.md says, the conffile, and a Depends on a glibc no newer
# than the one the binary was measured to need.
# Needs cargo-deb (`cargo install cargo-deb --locked`, done here when missing).
# Usage: cross/deb.sh [triple...]   (default: both)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
triples=("$@")
[ "${#triples[@]}" -gt 0 ] || triples=(armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu)

if ! cargo deb --version >/dev/null 2>&1; then
    cargo install cargo-deb --locked
fi
bash "$here/build.sh" "${triples[@]}"

dist=$root/target/cross/dist
cd "$root"
for t in "${triples[@]}"; do
    # Packs what build.sh built; --no-build because cargo-deb would use rustup's cargo.
    deb=$(CARGO_TARGET_DIR=$root/target/cross cargo deb --no-build --no-strip --profile box \
        --target "$t" --output "$dist" | tail -n1)
    echo "$deb"
    contents=$(dpkg-deb -c "$deb")
    for want in ./usr/bin/tillrelay ./lib/systemd/system/tillrelay.service \
        ./etc/tillrelay/tillrelay.toml ./usr/share/doc/tillrelay/INSTALL.md; do
        if ! awk '{ print $6 }' <<<"$contents" | grep -qx "$want"; then
            echo "$deb lacks $want" >&2
            exit 1
        fi
    done
    if ! dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles | grep -qx /etc/tillrelay/tillrelay.toml; then
        echo "$deb: /etc/tillrelay/tillrelay.toml is not a conffile" >&2
        exit 1
    fi
    declared=$(dpkg-deb -f "$deb" Depends | sed -n 's/.*libc6 (>= \([0-9.]*\)).*/\1/p')
    needed=$("$here/inspect.sh" "$dist/tillrelay-$t" | sed -n 's/.*oldest glibc \([0-9.]*\).*/\1/p')
    if ! dpkg --compare-versions "$needed" le "$declared"; then
        echo "$deb: the binary needs glibc $needed but Depends says libc6 (>= $declared)" >&2
        exit 1
    fi
    echo "  $(dpkg-deb -f "$deb" Package Version Architecture Depends | tr '\n' ' ')"
done
