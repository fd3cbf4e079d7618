#!/usr/bin/env bash
# Debian packages for the boxes, one per target: target/cross/dist/tillrelay_<ver>_<arch>.deb.
# Builds the release binaries first (cross/build.sh), generates the manual pages and
# shell completions from the command line definitions with the HOST binary
# (`tillrelay generate`, into target/pkg-gen/), then packs them with cargo-deb
# (metadata in Cargo.toml, maintainer scripts, changelog, copyright and lintian
# overrides in debian/), and checks the result: the files where docs/INSTALL.md says,
# the conffile, a Depends on a glibc no newer than the one the binary was measured to
# need, debian/changelog at Cargo.toml's version, and lintian (Debian's own checker):
# any error fails; warnings are fixed or overridden in debian/tillrelay.lintian-overrides.
# Needs cargo-deb (`cargo install cargo-deb --locked`) and lintian (apt), both installed
# here when missing.
# `host` instead of a triple packs the host's own binary, the debug build the manual pages
# are generated with (no extra compile: `cargo test` built it), into
# target/cross/dist/host/: the package cross/test-systemd.sh installs in a Debian root
# booted with systemd. Same metadata, files and checks; only its binary is unoptimised,
# which changes how fast it runs, not what the package does.
# Usage: cross/deb.sh [triple...|host]   (default: both triples)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
triples=("$@")
[ "${#triples[@]}" -gt 0 ] || triples=(armv7-unknown-linux-gnueabihf aarch64-unknown-linux-gnu)

if ! cargo deb --version >/dev/null 2>&1; then
    # The version the metadata in Cargo.toml was written and checked against.
    cargo install cargo-deb@3.8.0 --locked
fi
if ! command -v lintian >/dev/null; then
    apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends lintian
fi
cd "$root"

# debian/changelog is kept with the version: its top entry is Cargo.toml's version
# with Debian revision 1, the version cargo-deb gives the package.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
logged=$(sed -n '1s/^tillrelay (\(.*\)) .*/\1/p' debian/changelog)
if [ "$logged" != "$version-1" ]; then
    echo "debian/changelog's top entry is $logged; Cargo.toml says $version (want $version-1)" >&2
    exit 1
fi

cross=()
for t in "${triples[@]}"; do
    [ "$t" = host ] || cross+=("$t")
done
if [ "${#cross[@]}" -gt 0 ]; then
    bash "$here/build.sh" "${cross[@]}"
fi

# Manual pages and completions: generated, never kept in the repository.
cargo build --locked --quiet --bin tillrelay
gen=$root/target/pkg-gen
rm -rf "$gen"
"$root/target/debug/tillrelay" generate man "$gen/man"
"$root/target/debug/tillrelay" generate completions "$gen/completions"
gzip -9n "$gen"/man/*.1

dist=$root/target/cross/dist
for t in "${triples[@]}"; do
    if [ "$t" = host ]; then
        # The debug binary built above, stripped like a release one. (cargo-deb warns
        # that it may refuse the dev profile in a future version; it is pinned above.)
        mkdir -p "$dist/host"
        deb=$(cargo deb --no-build --profile dev --output "$dist/host" | tail -n1)
        bin=$root/target/debug/tillrelay
    else
        # Packs what build.sh built; --no-build because cargo-deb would use rustup's cargo.
        deb=$(CARGO_TARGET_DIR=$root/target/cross cargo deb --no-build --no-strip --profile box \
            --target "$t" --output "$dist" | tail -n1)
        bin=$dist/tillrelay-$t
    fi
    echo "$deb"
    contents=$(dpkg-deb -c "$deb")
    for want in ./usr/bin/tillrelay ./lib/systemd/system/tillrelay.service \
        ./etc/tillrelay/tillrelay.toml ./usr/share/doc/tillrelay/INSTALL.md \
        ./usr/share/doc/tillrelay/changelog.Debian.gz ./usr/share/doc/tillrelay/copyright \
        ./usr/share/man/man1/tillrelay.1.gz ./usr/share/man/man1/tillrelay-run.1.gz \
        ./usr/share/bash-completion/completions/tillrelay \
        ./usr/share/zsh/vendor-completions/_tillrelay \
        ./usr/share/fish/vendor_completions.d/tillrelay.fish \
        ./usr/share/lintian/overrides/tillrelay; do
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
    needed=$("$here/inspect.sh" "$bin" | sed -n 's/.*oldest glibc \([0-9.]*\).*/\1/p')
    if ! dpkg --compare-versions "$needed" le "$declared"; then
        echo "$deb: the binary needs glibc $needed but Depends says libc6 (>= $declared)" >&2
        exit 1
    fi
    echo "  $(dpkg-deb -f "$deb" Package Version Architecture Depends | tr '\n' ' ')"
    # Every tag lintian still reports is printed; an error fails the build.
    echo "  lintian $(basename "$deb"):"
    if ! lintian --fail-on error --tag-display-limit 0 "$deb" | sed 's/^/    /'; then
        echo "$deb: lintian reports errors (above)" >&2
        exit 1
    fi
done
