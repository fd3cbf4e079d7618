#!/usr/bin/env bash
# Install, upgrade, remove and purge the .deb in a scratch root, running its real
# maintainer scripts: dpkg --root=<scratch> --force-script-chrootless runs them on
# this machine with DPKG_ROOT set (debian/postinst), so nothing outside the scratch
# root is touched (checked at the end: the host has no new tillrelay user).
#
# The second version is the same package repacked at a later version whose shipped
# conffile differs, which is what makes dpkg's conffile handling observable.
# Checks: the system user and group (and dialout), the conffile 0640 root:tillrelay and
# the queue dir 0750 tillrelay:tillrelay; an upgrade keeps /var/lib/tillrelay/queue.db
# byte for byte and a locally edited conffile (the new one beside it as .dpkg-dist);
# `remove` keeps the queue and the config; `purge` says what it deletes and deletes it.
# Needs root (dpkg chowns to the new user). The package's architecture need not be
# the host's (--force-architecture: no binary of it is run).
# Usage: cross/test-package.sh [DEB]   (default: target/cross/dist/tillrelay_*_armhf.deb)
set -euo pipefail
cd "$(dirname "$0")/.."

deb=${1:-}
if [ -z "$deb" ]; then
    deb=$(ls target/cross/dist/tillrelay_*_armhf.deb 2>/dev/null | tail -n1 || true)
fi
[ -n "$deb" ] && [ -f "$deb" ] || { echo "test-package: no .deb (run cross/deb.sh first)" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
    echo "test-package: must run as root (dpkg --root still chowns files)" >&2
    exit 1
fi

fail() { echo "test-package: FAIL: $*" >&2; exit 1; }
step() { echo "test-package: $*"; }
host_user_before=$(getent passwd tillrelay || true)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root

# Version 2: the same files at a later version, its shipped conffile changed.
v1=$(dpkg-deb -f "$deb" Version)
v2=$v1+test2
dpkg-deb -R "$deb" "$work/v2"
sed -i "s/^Version: .*/Version: $v2/" "$work/v2/DEBIAN/control"
echo '# a line only the second version ships' >>"$work/v2/etc/tillrelay/tillrelay.toml"
if [ -f "$work/v2/DEBIAN/md5sums" ]; then
    sum=$(cd "$work/v2" && md5sum etc/tillrelay/tillrelay.toml)
    sed -i "s|^[0-9a-f]*  etc/tillrelay/tillrelay.toml\$|$sum|" "$work/v2/DEBIAN/md5sums"
fi
dpkg-deb --root-owner-group -b "$work/v2" "$work/tillrelay_v2.deb" >/dev/null

# The scratch root: an empty dpkg database and the account files useradd edits.
mkdir -p "$root/etc" "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" \
    "$root/var/lib/dpkg/triggers"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\ndialout:x:20:\n' >"$root/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$root/etc/shadow"
printf 'root:*::\ndialout:*::\n' >"$root/etc/gshadow"
chmod 0640 "$root/etc/shadow" "$root/etc/gshadow"

dpkgr() {
    dpkg --root="$root" --force-script-chrootless --force-architecture --force-depends \
        --force-confold "$@"
}
state() { dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${db:Status-Abbrev}${Version}' tillrelay; }

rights() {
    local gid uid
    gid=$(grep '^tillrelay:' "$root/etc/group" | cut -d: -f3)
    uid=$(grep '^tillrelay:' "$root/etc/passwd" | cut -d: -f3)
    [ -n "$uid" ] && [ -n "$gid" ] || fail "no tillrelay user or group in the root"
    [ "$(stat -c '%a %u %g' "$root/etc/tillrelay/tillrelay.toml")" = "640 0 $gid" ] ||
        fail "conffile is $(stat -c '%a %u:%g' "$root/etc/tillrelay/tillrelay.toml"), want 640 0:$gid"
    [ "$(stat -c '%a %u %g' "$root/etc/tillrelay")" = "750 0 $gid" ] ||
        fail "/etc/tillrelay is $(stat -c '%a %u:%g' "$root/etc/tillrelay"), want 750 0:$gid"
    [ "$(stat -c '%a %u %g' "$root/var/lib/tillrelay")" = "750 $uid $gid" ] ||
        fail "/var/lib/tillrelay is $(stat -c '%a %u:%g' "$root/var/lib/tillrelay"), want 750 $uid:$gid"
}

step "install $v1"
dpkgr -i "$deb" >"$work/out" 2>&1 || { cat "$work/out"; fail "install"; }
[ "$(state)" = "ii $v1" ] || fail "after install: $(state)"
grep -q '^tillrelay:x:[0-9]*:[0-9]*::/var/lib/tillrelay:/usr/sbin/nologin$' "$root/etc/passwd" ||
    fail "no system user: $(cat "$root/etc/passwd")"
grep -q '^dialout:x:20:tillrelay$' "$root/etc/group" || fail "tillrelay not in dialout"
uid=$(grep '^tillrelay:' "$root/etc/passwd" | cut -d: -f3)
[ "$uid" -lt 1000 ] || fail "uid $uid is not a system uid"
[ -x "$root/usr/bin/tillrelay" ] || fail "no /usr/bin/tillrelay"
[ -f "$root/usr/share/man/man1/tillrelay.1.gz" ] || fail "no manual page"
rights

step "the box in use: a queue, and a locally edited config"
printf 'SQLite format 3\0 stand-in: bytes the package must never touch\n' \
    >"$root/var/lib/tillrelay/queue.db"
chown "$uid:$uid" "$root/var/lib/tillrelay/queue.db"
echo '# edited on this box' >>"$root/etc/tillrelay/tillrelay.toml"
queue_sum=$(md5sum <"$root/var/lib/tillrelay/queue.db")
conf_sum=$(md5sum <"$root/etc/tillrelay/tillrelay.toml")

step "upgrade to $v2"
dpkgr -i "$work/tillrelay_v2.deb" >"$work/out" 2>&1 || { cat "$work/out"; fail "upgrade"; }
[ "$(state)" = "ii $v2" ] || fail "after upgrade: $(state)"
[ "$(md5sum <"$root/var/lib/tillrelay/queue.db")" = "$queue_sum" ] || fail "upgrade changed queue.db"
[ "$(md5sum <"$root/etc/tillrelay/tillrelay.toml")" = "$conf_sum" ] || fail "upgrade replaced the edited conffile"
grep -q 'only the second version ships' "$root/etc/tillrelay/tillrelay.toml.dpkg-dist" ||
    fail "no .dpkg-dist with the new shipped config"
[ "$(grep -c '^tillrelay:' "$root/etc/passwd")" = 1 ] || fail "upgrade added a second user"
rights

step "remove"
dpkgr -r tillrelay >"$work/out" 2>&1 || { cat "$work/out"; fail "remove"; }
[ "$(state)" = "rc $v2" ] || fail "after remove: $(state)"
[ ! -e "$root/usr/bin/tillrelay" ] || fail "remove left /usr/bin/tillrelay"
[ "$(md5sum <"$root/var/lib/tillrelay/queue.db")" = "$queue_sum" ] || fail "remove changed queue.db"
[ "$(md5sum <"$root/etc/tillrelay/tillrelay.toml")" = "$conf_sum" ] || fail "remove lost the config"

step "purge"
dpkgr -P tillrelay >"$work/out" 2>&1 || { cat "$work/out"; fail "purge"; }
sed 's/^/    /' "$work/out"
grep -q "deleting $root/var/lib/tillrelay (the queue" "$work/out" || fail "purge did not say it deletes the queue"
grep -q "deleting $root/etc/tillrelay (the configuration)" "$work/out" || fail "purge did not say it deletes the config"
[ ! -e "$root/var/lib/tillrelay" ] || fail "purge left /var/lib/tillrelay"
[ ! -e "$root/etc/tillrelay" ] || fail "purge left /etc/tillrelay"
[ -z "$(state 2>/dev/null || true)" ] || [ "$(state)" = "pn " ] || fail "after purge: $(state)"
grep -q '^tillrelay:' "$root/etc/passwd" || fail "purge removed the user (Debian practice keeps it)"

[ "$(getent passwd tillrelay || true)" = "$host_user_before" ] || fail "the host's users changed"
step "ok: install, upgrade ($v1 -> $v2), remove, purge of $(basename "$deb")"
