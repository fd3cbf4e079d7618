#!/usr/bin/env bash
# Installs the cross toolchain for the boxes (armv7 hard-float and aarch64, glibc)
# from Debian's own packages, because rustup cannot add targets on these machines.
#
# What it sets up:
#   - Debian's Rust (rustc-web, cargo-web, libstd-rust-web-dev) at /usr/bin/{rustc,cargo},
#     pinned to one version; rustup's toolchain stays the default for host work.
#   - gcc cross linkers and the target glibc (libc6-dev-{arm64,armhf}-cross).
#   - qemu-user-static, to run ARM binaries and test suites here.
#   - the arm libstd of the SAME version, unpacked into /usr/lib/rustlib/<triple>
#     (installing those packages with apt would pull in conflicting arm libraries).
#
# Idempotent: every step checks first and is skipped when already done, so a second
# run (and every CI run on a machine that kept the install) takes a second or so.
# Run as root. Env: CROSS_CACHE (where the downloaded .debs go).
set -euo pipefail

CACHE=${CROSS_CACHE:-/var/cache/tillrelay-cross}
TRIPLES=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
declare -A DEBARCH=([aarch64-unknown-linux-gnu]=arm64 [armv7-unknown-linux-gnueabihf]=armhf)
HOST_PKGS=(gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross
    libc6-dev-armhf-cross qemu-user-static)
RUST_PKGS=(rustc-web cargo-web libstd-rust-web-dev)
STAMP=.tillrelay-libstd-version

log() { printf 'cross/setup: %s\n' "$*" >&2; }
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (it installs Debian packages)"
    exit 1
fi

# Prints the installed version of a package, or nothing; never fails (set -e).
installed_version() {
    { dpkg-query -W -f='${Status} ${Version}\n' "$1" 2>/dev/null || true; } |
        awk '$3 == "installed" { print $4 }'
}

# Done already? Debian's rustc, the cross packages, and the arm libstd stamped with
# the version of the host's libstd. Then nothing at all is touched (no apt-get update).
all_done() {
    local v
    v=$(installed_version libstd-rust-web-dev) || return 1
    [ -n "$v" ] || return 1
    for p in "${RUST_PKGS[@]}"; do
        [ "$(installed_version "$p")" = "$v" ] || return 1
    done
    for p in "${HOST_PKGS[@]}"; do
        [ -n "$(installed_version "$p")" ] || return 1
    done
    for t in "${TRIPLES[@]}"; do
        [ "$(cat "/usr/lib/rustlib/$t/$STAMP" 2>/dev/null)" = "$v" ] || return 1
    done
    [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ]
}

if all_done; then
    log "already set up ($(/usr/bin/rustc --version))"
    exit 0
fi

# 1. Foreign architectures, so apt can see (and download) the arm libstd packages.
updated=no
for a in arm64 armhf; do
    if ! dpkg --print-foreign-architectures | grep -qx "$a"; then
        log "adding architecture $a"
        dpkg --add-architecture "$a"
    fi
done

# One failing index (a mirror mid-sync) makes apt-get update exit non-zero while the
# rest is fine; go on and let the availability checks below decide.
apt_update() {
    if [ "$updated" = no ]; then
        log "apt-get update"
        apt-get update -q || log "apt-get update reported an error; going on with what it fetched"
        updated=yes
    fi
}
apt_update

# 2. Pin one version of Debian's Rust: the one installed, else the host candidate.
V=$(installed_version libstd-rust-web-dev)
if [ -z "$V" ]; then
    V=$(apt-cache policy rustc-web | awk '/Candidate:/ { print $2 }')
fi
if [ -z "$V" ] || [ "$V" = "(none)" ]; then
    log "no rustc-web in the apt sources (bookworm main has it); cannot go on"
    exit 1
fi
log "Debian Rust version: $V"

need=()
for p in "${RUST_PKGS[@]}"; do
    [ "$(installed_version "$p")" = "$V" ] || need+=("$p=$V")
done
for p in "${HOST_PKGS[@]}"; do
    [ -n "$(installed_version "$p")" ] || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# 3. The arm libstd of exactly version V, unpacked by hand into the sysroot.
mkdir -p "$CACHE"
# apt-get download drops to the _apt user, which must be able to write here.
if id _apt >/dev/null 2>&1; then chown _apt "$CACHE"; fi
for t in "${TRIPLES[@]}"; do
    dest=/usr/lib/rustlib/$t
    if [ "$(cat "$dest/$STAMP" 2>/dev/null)" = "$V" ]; then
        continue
    fi
    arch=${DEBARCH[$t]}
    deb=$(find "$CACHE" -maxdepth 1 -name "libstd-rust-web-dev_*_$arch.deb" | head -n1)
    if [ -z "$deb" ] || [ "$(dpkg-deb -f "$deb" Version)" != "$V" ]; then
        rm -f "$CACHE"/libstd-rust-web-dev_*_"$arch".deb
        log "downloading libstd-rust-web-dev:$arch=$V"
        (cd "$CACHE" && apt-get download "libstd-rust-web-dev:$arch=$V")
        deb=$(find "$CACHE" -maxdepth 1 -name "libstd-rust-web-dev_*_$arch.deb" | head -n1)
    fi
    unpack=$(mktemp -d)
    dpkg-deb -x "$deb" "$unpack"
    if [ ! -d "$unpack/usr/lib/rustlib/$t/lib" ]; then
        log "$deb has no usr/lib/rustlib/$t/lib"
        exit 1
    fi
    log "installing $dest"
    rm -rf "$dest"
    cp -a "$unpack/usr/lib/rustlib/$t" "$dest"
    rm -rf "$unpack"
    printf '%s\n' "$V" >"$dest/$STAMP"
done

all_done || { log "setup incomplete (see above)"; exit 1; }
log "done: $(/usr/bin/rustc --version), targets ${TRIPLES[*]}"
