#!/usr/bin/env bash
# The package as installed, under a real systemd: a Debian bookworm root (debootstrap,
# minbase, from Debian's packages; cached between runs) booted with `systemd-nspawn -b`,
# so that systemd is PID 1 and the unit runs with all its sandboxing, and inside it the
# host-architecture .deb installed and set up the way docs/INSTALL.md says, word for
# word: `dpkg -i`, the shipped /etc/tillrelay/tillrelay.toml with only [ovopark] and [wdt]
# added (the pair `tillrelay emulate` prints for its emulators), the export folder made
# with INSTALL.md's `install -d` line, `systemctl enable --now tillrelay`. Then, from
# inside, what a box must do:
#   - the service is active with 0 restarts, READY reached (Type=notify), the status
#     text set, box_id defaulted to the host name;
#   - the sample exports (examples/samples) dropped into the folder reach both
#     emulators (`tillrelay emulate` serving on the container's own loopback);
#   - `systemctl reload` applies a change; a broken file is refused, the service stays
#     up and the journal says why;
#   - the watchdog: a loop made to hang (failpoint `folder.after_commit:hang`, set by a
#     drop-in's Environment=) gets the service killed and restarted by systemd, and the
#     orders are delivered once;
#   - `systemctl stop` is clean (systemd's own verdict: within TimeoutStopSec, exit 0);
#   - an upgrade with `dpkg -i` of a newer build (the same package repacked at a later
#     version) while orders are pending keeps them and delivers them;
#   - the journal carries no time stamps of the agent's own (journald adds them);
#   - `dpkg --purge` removes what the package made.
# Every wait has a deadline. If this machine cannot boot a container, the script says
# so and fails: never a silent pass.
#
# Works where the host's PID 1 is not systemd (nspawn --register=no --keep-unit, no
# machined); cgroup v1 (hybrid) or v2. Needs root, debootstrap and systemd-container
# (installed here with apt-get when missing), curl and jq.
# Cache: TILLRELAY_CI_CACHE (default /var/cache/tillrelay-ci): the pristine root, about
# 250 MB, rebuilt when the debootstrap arguments below change.
# Usage: cross/test-systemd.sh [DEB]   (default: builds the host one with cross/deb.sh host)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

say() { echo "test-systemd: $*"; }
check() { echo "test-systemd: check: $*"; }
ok() { echo "test-systemd:   ok: $*"; }

if [ "$(id -u)" -ne 0 ]; then
    say "FAIL: must run as root (debootstrap, systemd-nspawn)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v systemd-nspawn >/dev/null || need+=(systemd-container)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
if [ "${#need[@]}" -gt 0 ]; then
    say "installing ${need[*]}"
    apt-get update -qq || say "apt-get update reported an error; going on"
    apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

deb=${1:-}
if [ -z "$deb" ]; then
    bash cross/deb.sh host
    deb=$(ls -t target/cross/dist/host/tillrelay_*.deb | head -n1)
fi
[ -f "$deb" ] || { say "FAIL: no package $deb" >&2; exit 1; }
arch=$(dpkg --print-architecture)
[ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] ||
    { say "FAIL: $deb is not for this machine's architecture ($arch)" >&2; exit 1; }

# ---------------------------------------------------------------------------------
# The root file system, cached.
cache=${TILLRELAY_CI_CACHE:-/var/cache/tillrelay-ci}
mirror=${TILLRELAY_CI_MIRROR:-http://deb.debian.org/debian}
# systemd-sysv: /sbin/init; dbus: what systemd-logind and friends expect; adduser: the
# package's own dependency (INSTALL.md: apt would pull it in).
deboot_args=(--variant=minbase --include=systemd,systemd-sysv,dbus,adduser bookworm)
pristine=$cache/bookworm-minbase
stamp="${deboot_args[*]} $mirror"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 1800 9 || { say "FAIL: $cache is locked by another run for 30 min" >&2; exit 1; }
if [ "$(cat "$pristine/.tillrelay-ci" 2>/dev/null)" != "$stamp" ]; then
    say "building the Debian root in $pristine (debootstrap ${deboot_args[*]})"
    rm -rf "$pristine" "$pristine.new"
    start=$SECONDS
    if ! debootstrap "${deboot_args[@]}" "$pristine.new" "$mirror" >"$cache/debootstrap.log" 2>&1; then
        tail -n 20 "$cache/debootstrap.log" >&2
        say "FAIL: debootstrap failed (log: $cache/debootstrap.log)" >&2
        exit 1
    fi
    rm -rf "$pristine.new/var/cache/apt/archives/"*.deb
    printf '%s\n' "$stamp" >"$pristine.new/.tillrelay-ci"
    mv "$pristine.new" "$pristine"
    say "root built in $((SECONDS - start)) s"
else
    say "using the cached root $pristine"
fi

work=$(mktemp -d /var/tmp/tillrelay-systemd.XXXXXX)
root=$work/root
nspawn_pid=
emu_pid=
cleanup() {
    local rc=$?
    if [ -n "$emu_pid" ]; then kill "$emu_pid" 2>/dev/null || true; fi
    if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
        # SIGTERM: nspawn asks the container's systemd to power off.
        kill "$nspawn_pid" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$nspawn_pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -9 "$nspawn_pid" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
cp -a "$pristine" "$root"
# The host's name came along with debootstrap; the box has its own.
echo tillrelay-ci >"$root/etc/hostname"

# Version 2: the same package repacked at a later version (as cross/test-package.sh).
v1=$(dpkg-deb -f "$deb" Version)
v2=$v1+ci2
dpkg-deb -R "$deb" "$work/v2"
sed -i "s/^Version: .*/Version: $v2/" "$work/v2/DEBIAN/control"
mkdir -p "$root/root/debs" "$root/root/samples"
cp "$deb" "$root/root/debs/tillrelay_v1.deb"
dpkg-deb --root-owner-group -b "$work/v2" "$root/root/debs/tillrelay_v2.deb" >/dev/null
cp examples/samples/* "$root/root/samples/"
# The emulators run from the package's own binary, on the host side of the container's
# loopback, so that they outlive the package's upgrade and purge.
dpkg-deb -x "$deb" "$work/pkg"
emu_bin=$work/pkg/usr/bin/tillrelay

# ---------------------------------------------------------------------------------
# Boot.
say "booting the root with systemd-nspawn -b (systemd as PID 1)"
boot_start=$SECONDS
systemd-nspawn --quiet --directory="$root" --machine="tillrelay-ci-$$" \
    --register=no --keep-unit --private-network --boot --console=pipe \
    </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!

cannot_boot() {
    say "FAIL: this machine cannot boot a container with systemd-nspawn -b: $*" >&2
    tail -n 30 "$work/console.log" | sed 's/^/    console: /' >&2
    exit 1
}

leader=
end=$((SECONDS + 60))
while [ -z "$leader" ]; do
    kill -0 "$nspawn_pid" 2>/dev/null || cannot_boot "systemd-nspawn exited"
    [ "$SECONDS" -lt "$end" ] || cannot_boot "no init process within 60 s"
    for p in $(pgrep -P "$nspawn_pid" || true); do
        # The container's PID 1: its own pid namespace, where it is pid 1.
        if [ "$(awk '/^NSpid:/ { print $NF }' "/proc/$p/status" 2>/dev/null)" = 1 ]; then
            leader=$p
        fi
    done
    [ -n "$leader" ] || sleep 0.2
done

# A command inside the container, as root, in all its namespaces.
box() {
    nsenter --target "$leader" --all -- /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}
# As the tillrelay user (INSTALL.md: `sudo -u tillrelay tillrelay …`; minbase has no
# sudo, runuser is util-linux's).
as_agent() { box runuser -u tillrelay -- "$@"; }

# "starting" while it boots; before its socket is up systemctl cannot even connect.
end=$((SECONDS + 120))
while :; do
    kill -0 "$nspawn_pid" 2>/dev/null || cannot_boot "systemd-nspawn exited"
    state=$(box systemctl is-system-running 2>&1 || true)
    case "$state" in
    running) break ;;
    degraded)
        say "the container's system is degraded: $(box systemctl --failed --no-legend --plain | tr '\n' ' ')"
        break
        ;;
    esac
    [ "$SECONDS" -lt "$end" ] ||
        cannot_boot "systemd in the container did not finish booting within 120 s (state: ${state:-none})"
    sleep 0.5
done
ok "booted in $((SECONDS - boot_start)) s: $(box systemctl --version | head -n1)"

diagnose() {
    {
        echo "----- systemctl status tillrelay"
        box systemctl status --no-pager --lines=0 tillrelay 2>&1 || true
        echo "----- journalctl -u tillrelay (last 40)"
        box journalctl -u tillrelay --no-pager -n 40 2>&1 || true
        echo "----- emulator log"
        tail -n 20 "$work/emu.log" 2>/dev/null || true
    } | sed 's/^/    /' >&2
}
fail() {
    say "FAIL: $*" >&2
    diagnose
    exit 1
}
# wait_for SECONDS WHAT CMD...: polls CMD until it succeeds; fails after SECONDS.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local end=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$end" ] || fail "$what: not within $secs s"
        sleep 0.5
    done
}
prop() { box systemctl show -p "$1" --value tillrelay; }
journal() { box journalctl -u tillrelay --no-pager -o cat "$@"; }
# (Read whole before grep -q: under pipefail, grep leaving early fails the pipe.)
journal_has() {
    local j
    j=$(journal)
    grep -qF -- "$1" <<<"$j"
}

# The emulators, on the container's loopback (its private network).
nsenter --target "$leader" --net -- "$emu_bin" emulate --listen 127.0.0.1:0 \
    >"$work/emu.out" 2>"$work/emu.log" &
emu_pid=$!
emu_ready() { grep -q '^receiver_mobile' "$work/emu.out"; }
wait_for 30 "the emulators start" emu_ready
emu=$(sed -n 's|^Ovopark emulator: *POST \(http://[^/]*\)/cloud.api$|\1|p' "$work/emu.out")
[ -n "$emu" ] || fail "no emulator address in: $(cat "$work/emu.out")"
emu_curl() { nsenter --target "$leader" --net -- curl -sS --max-time 10 "$@"; }
# Ovopark's accepted orders and Wangdiantong's trades, as `order_no accepted` lines.
ovo_orders() { emu_curl "$emu/_emu/ovopark/orders" | jq -r '.[] | "\(.order_no) \(.accepted)"'; }
wdt_trades() { emu_curl "$emu/_emu/wdt/trades" | jq -r '.[] | "\(.tid) \(.pushes)"'; }
ok "emulators at $emu"

# ---------------------------------------------------------------------------------
# docs/INSTALL.md, step by step.
say "INSTALL 1: dpkg -i the package ($v1, $arch)"
box dpkg -i /root/debs/tillrelay_v1.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i"; }
box tillrelay --version | grep -q '^tillrelay ' || fail "tillrelay --version"
ok "$(box tillrelay --version)"

say "INSTALL 2: the clouds in /etc/tillrelay/tillrelay.toml (the pair tillrelay emulate prints), the export folder"
{
    echo
    echo "# Added by cross/test-systemd.sh: the emulators' default tenant."
    sed -n '/^\[ovopark\]$/,$p' "$work/emu.out"
} | box tee -a /etc/tillrelay/tillrelay.toml >/dev/null
check "tillrelay check-config as the tillrelay user"
as_agent tillrelay check-config >"$work/check.out" 2>&1 || { cat "$work/check.out"; fail "check-config"; }
grep -qx 'box_id = "tillrelay-ci"' "$work/check.out" || fail "check-config: box_id is not the host name"
box install -d -o tillrelay -g tillrelay -m 2775 /srv/pos-export

say "INSTALL 3: systemctl enable --now tillrelay"
timeout 120 nsenter --target "$leader" --all -- systemctl enable --now tillrelay ||
    fail "systemctl enable --now tillrelay failed (Type=notify: no READY=1)"
check "active, READY reached, 0 restarts, status text, box_id from the host name"
[ "$(box systemctl is-active tillrelay)" = active ] || fail "not active"
[ "$(prop NRestarts)" = 0 ] || fail "NRestarts=$(prop NRestarts)"
status_text=$(prop StatusText)
case "$status_text" in capturing\ from\ *) ;; *) fail "status text: '$status_text'" ;; esac
journal_has "[INFO] ready" || fail "no 'ready' in the journal"
journal_has 'box id "tillrelay-ci": the host name' || fail "box_id did not default to the host name"
ok "active, NRestarts=0, status: $status_text"

say "INSTALL 4: the sample exports dropped into /srv/pos-export"
for f in "$root"/root/samples/*; do
    box install -m 0664 -g tillrelay "/root/samples/${f##*/}" /srv/pos-export/
done
n_samples=$(ls "$root/root/samples" | wc -l)
moved() { [ "$(box find /srv/pos-export/done -type f | wc -l)" -ge "$1" ]; }
wait_for 60 "the samples moved to done/" moved "$n_samples"
[ -z "$(box find /srv/pos-export/rejected -type f 2>/dev/null)" ] ||
    fail "rejected: $(box sh -c 'cat /srv/pos-export/rejected/*.error.txt')"
stored=$(as_agent tillrelay orders --json --limit 100000 | jq length)
[ "$stored" -gt 0 ] || fail "no orders stored from the samples"
check "all $stored sample orders reach both emulators"
held() { [ "$(ovo_orders | wc -l)" -ge "$1" ] && [ "$(wdt_trades | wc -l)" -ge "$1" ]; }
wait_for 90 "$stored orders delivered to both clouds" held "$stored"
pending=$(as_agent tillrelay orders --json --state pending --limit 100000 | jq length)
[ "$pending" = 0 ] || fail "$pending deliveries still pending"
ok "$stored orders at Ovopark and Wangdiantong, none pending"

say "reload"
check "systemctl reload applies a changed file"
box sed -i '0,/^settle = "2s"$/s//settle = "3s"/' /etc/tillrelay/tillrelay.toml
timeout 90 nsenter --target "$leader" --all -- systemctl reload tillrelay || fail "systemctl reload"
journal_has "reload applied" || fail "no 'reload applied' in the journal"
check "a broken file is refused, the service stays up and says why"
box sed -i '0,/^settle = "3s"$/s//settle = "soon"/' /etc/tillrelay/tillrelay.toml
if timeout 90 nsenter --target "$leader" --all -- systemctl reload tillrelay 2>"$work/reload.err"; then
    fail "systemctl reload accepted a broken file"
fi
[ "$(box systemctl is-active tillrelay)" = active ] || fail "not active after a refused reload"
journal_has "reload refused, the running configuration stays" || fail "the journal has no refusal"
why=$(journal | grep -F 'settle: "soon"' | head -n1)
[ -n "$why" ] || fail "the journal does not say why the reload was refused"
ok "refused, the journal says why:$why"
box sed -i 's/^settle = "soon"$/settle = "2s"/' /etc/tillrelay/tillrelay.toml
timeout 90 nsenter --target "$leader" --all -- systemctl reload tillrelay || fail "reload of the fixed file"

# An export with new order numbers: the sample JSON's orders renumbered.
new_export() { # new_export PREFIX: writes /srv/pos-export/PREFIX.json
    jq --arg p "$1" '[.[] | .order_no = ($p + "-" + .order_no)]' \
        "$repo/examples/samples/orders-20261122-1005.json" >"$work/$1.json"
    cp "$work/$1.json" "$root/root/$1.json"
    box install -m 0664 -g tillrelay "/root/$1.json" /srv/pos-export/
}
# delivered_once PREFIX: every order of the export accepted once by each cloud.
delivered_once() {
    local want
    want=$(jq length "$work/$1.json")
    [ "$(ovo_orders | grep -c "^$1-")" = "$want" ] && [ "$(wdt_trades | grep -c "$1-")" = "$want" ]
}
exactly_once() {
    if ovo_orders | grep "^$1-" | grep -v ' 1$'; then fail "Ovopark accepted an order of $1 twice"; fi
    if wdt_trades | grep "$1-" | grep -v ' 1$'; then fail "Wangdiantong created a trade of $1 twice"; fi
}

say "watchdog"
check "a hung loop gets the service killed by the watchdog and restarted by systemd"
box mkdir -p /etc/systemd/system/tillrelay.service.d
box tee /etc/systemd/system/tillrelay.service.d/50-ci-hang.conf >/dev/null <<'EOF'
# cross/test-systemd.sh: the folder loop hangs once, right after a file's commit.
[Service]
Environment=TILLRELAY_FAILPOINT=folder.after_commit:hang
Environment=TILLRELAY_FAILPOINT_ONCE=/var/lib/tillrelay/ci-hang-once
WatchdogSec=10s
LimitCORE=0
EOF
box systemctl daemon-reload
timeout 90 nsenter --target "$leader" --all -- systemctl restart tillrelay || fail "restart with the drop-in"
restarts=$(prop NRestarts)
new_export CIHANG
wait_for 60 "the failpoint hangs the folder loop" journal_has "this loop hangs for ever"
restarted() { [ "$(prop NRestarts)" -gt "$restarts" ] && [ "$(box systemctl is-active tillrelay)" = active ]; }
wait_for 120 "the watchdog kills it and systemd restarts it" restarted
journal_has "Watchdog timeout" || fail "no 'Watchdog timeout' from systemd"
wait_for 90 "the hung export's orders delivered" delivered_once CIHANG
wait_for 60 "the hung export moved after the restart" box test -e /srv/pos-export/done/CIHANG.json
exactly_once CIHANG
ok "killed by the watchdog, restarted (NRestarts=$(prop NRestarts)), $(jq length "$work/CIHANG.json") orders delivered once"
box rm /etc/systemd/system/tillrelay.service.d/50-ci-hang.conf
box systemctl daemon-reload
timeout 90 nsenter --target "$leader" --all -- systemctl restart tillrelay || fail "restart without the drop-in"

say "stop"
check "systemctl stop is clean (within TimeoutStopSec, exit 0)"
timeout 120 nsenter --target "$leader" --all -- systemctl stop tillrelay || fail "systemctl stop"
[ "$(prop Result)" = success ] || fail "stop: Result=$(prop Result)"
[ "$(prop ExecMainStatus)" = 0 ] || fail "stop: exit status $(prop ExecMainStatus)"
last=$(journal | tail -n 10)
grep -qF "[INFO] stopped" <<<"$last" || fail "no '[INFO] stopped' among the last words"
ok "Result=success, exit 0"
timeout 120 nsenter --target "$leader" --all -- systemctl start tillrelay || fail "start again"

say "upgrade (INSTALL 5) with orders pending"
emu_curl -X POST -H 'Content-Type: application/json' \
    -d '{"target": "both", "mode": "http500", "count": 1000000}' "$emu/_emu/fault" >/dev/null
new_export CIUPG
pending_now() { [ "$(as_agent tillrelay orders --json --state pending --limit 100000 | jq length)" -ge "$1" ]; }
n_upg=$(jq length "$work/CIUPG.json")
wait_for 60 "the new export's orders stored and pending" pending_now "$n_upg"
pid_before=$(prop MainPID)
check "dpkg -i $v2 keeps the pending orders and restarts the agent"
box dpkg -i --force-confold /root/debs/tillrelay_v2.deb >"$work/dpkg.log" 2>&1 ||
    { cat "$work/dpkg.log"; fail "dpkg -i (upgrade)"; }
[ "$(box dpkg-query -W -f='${Version}' tillrelay)" = "$v2" ] || fail "not at $v2 after the upgrade"
[ "$(box systemctl is-active tillrelay)" = active ] || fail "not active after the upgrade"
[ "$(prop MainPID)" != "$pid_before" ] || fail "the upgrade did not restart the agent"
pending_now "$n_upg" || fail "pending orders lost in the upgrade"
emu_curl -X DELETE "$emu/_emu/fault" >/dev/null
as_agent tillrelay flush >/dev/null
wait_for 90 "the pending orders delivered after the upgrade" delivered_once CIUPG
exactly_once CIUPG
ok "$n_upg orders kept across the upgrade and delivered once"

say "the journal"
check "no time stamps of the agent's own (journald adds them)"
journal >"$work/journal.txt"
grep -qE '^\[(INFO|WARN|ERROR)\] ' "$work/journal.txt" || fail "no agent lines in the journal"
if grep -E '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}' "$work/journal.txt" | head -n 3 | grep .; then
    fail "journal lines carry the agent's own time stamps (above)"
fi
ok "$(grep -cE '^\[(INFO|WARN|ERROR)\] ' "$work/journal.txt") agent lines, none time-stamped by the agent"

say "uninstall (INSTALL 6)"
check "dpkg --purge removes what the package made"
timeout 120 nsenter --target "$leader" --all -- systemctl disable --now tillrelay || fail "disable --now"
box dpkg --purge tillrelay >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg --purge"; }
for p in /usr/bin/tillrelay /lib/systemd/system/tillrelay.service /etc/tillrelay /var/lib/tillrelay \
    /usr/share/doc/tillrelay /usr/share/man/man1/tillrelay.1.gz; do
    if box test -e "$p"; then fail "purge left $p"; fi
done
[ -z "$(box dpkg-query -W -f='${db:Status-Abbrev}' tillrelay 2>/dev/null | tr -d ' ')" ] ||
    [ "$(box dpkg-query -W -f='${db:Status-Abbrev}' tillrelay | tr -d ' ')" = pn ] ||
    fail "dpkg still knows the package: $(box dpkg-query -W tillrelay)"
ok "binary, unit, config, queue and docs gone (the tillrelay user stays, as documented)"

say "ok: the package under systemd in $((SECONDS)) s (boot to purge $((SECONDS - boot_start)) s)"
