#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Guest side of the vm-daemon test (run by run-vm.py inside the guest, as root, in the chroot of
# the host's root). The real noiommud, the host's dbus-daemon and real polkitd, edu, and an
# unprivileged client (edu-client as "nobody") that does DMA at the address the daemon reported.
#
# Files beside this script in the results share (run-vm.py --file): noiommud, edu-client,
# noiommuctl, libnoiommu.so.0 (found through LD_LIBRARY_PATH), io.noiommud.policy. Binaries
# come through the results share rather than the host root so a build directory anywhere (even
# under /tmp, which the guest's tmpfs hides) works.
#
# Steps:
#   1. polkit: the action file and a test rule (io.noiommud.* is YES for user "nobody") go into
#      tmpfs directories bind-mounted over /usr/share/polkit-1/actions and /etc/polkit-1/rules.d,
#      before dbus-daemon starts (no inotify in the guest, docs/vm-testing.md §6); polkitd is
#      D-Bus activated by the first CheckAuthorization;
#   2. noiommud as root, under timeout, configured to serve edu in noiommu mode, log to
#      daemon.log;
#   3. a denied user (uid "bin", no rule) gets PermissionDenied (and warms polkitd up);
#   4. edu-client as nobody: acquire, 2 MiB, BAR, Bus Master, MSI, DMA round trip, release;
#   5. edu-client --hold --inflight, killed with SIGKILL mid-lease; then: the daemon logged the
#      quiesce before freeing that lease's memory, Bus Master is off in config space (sysfs,
#      read as root), HugePages_Free is back;
#   6. noiommuctl --json monitor as nobody (io.noiommud.manage) while edu, leaseless, is unbound
#      from vfio-pci and bound back: device-removed {device, action: unbind}, then device-added
#      {device, driver: vfio-pci};
#   7. a second client acquires the same (rebound) device and does DMA again (ending by
#      disconnect).
# Prints PASS/FAIL lines and "LATENCY <scenario> <backend> <tag> device_fd_us=N memory_us=N";
# exit 0 only if everything passed.
#
# Re-executes itself under bash: read -t (timeouts and sleeps without a fork), $EPOCHREALTIME.
[ -n "${BASH_VERSION:-}" ] || exec /bin/bash "$0" "$@"
set -u

cd "$NOIOMMU_VM_RESULTS" || exit 1
R=$PWD
scenario=$NOIOMMU_VM_SCENARIO
bdf=$NOIOMMU_VM_BDF
export LD_LIBRARY_PATH=$R
SOCK=/run/noiommud/io.noiommud.Broker
DLOG=$R/daemon.log
CLIENT_USER=nobody
CLIENT_GROUP=nogroup
DENIED_USER=bin

n_pass=0
n_fail=0
pass() { echo "guest: PASS: $*"; n_pass=$((n_pass + 1)); }
fail() { echo "guest: FAIL: $*"; n_fail=$((n_fail + 1)); }
t_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
T0=$(t_ms)
say() { echo "guest: [+$(($(t_ms) - T0)) ms] $*"; }

case "$scenario" in
noiommu) want_backend=group-noiommu; want_kind=physical ;;
viommu)  want_backend=cdev-iommu;    want_kind=iova ;;
*)       echo "guest: FAIL: unknown scenario $scenario"; exit 1 ;;
esac
say "scenario $scenario (want backend $want_backend, addressKind $want_kind), edu at ${bdf:-NONE}"
[ -n "$bdf" ] || { echo "guest: FAIL: no edu device"; exit 1; }
for f in noiommud edu-client noiommuctl libnoiommu.so.0 io.noiommud.policy; do
        [ -e "$f" ] || { echo "guest: FAIL: $f was not passed to the guest"; exit 1; }
done

# A sleep without a fork: read with a timeout from a FIFO nobody writes to.
mkdir -p /run/pk/actions /run/pk/rules /run/dbus /run/noiommud
mkfifo /run/nap.fifo
exec 8<>/run/nap.fifo
nap() { read -r -t "$1" -u 8 _ || true; }

hugepages_free() {
        local k v _
        while read -r k v _; do
                [ "$k" = HugePages_Free: ] && { echo "$v"; return; }
        done </proc/meminfo
        echo -1
}

# Bit 2 (Bus Master) of PCI_COMMAND, as the device has it (sysfs config, read as root).
bus_master() {
        local b
        b=$(od -An -tx1 -j4 -N1 "/sys/bus/pci/devices/$bdf/config") || { echo "?"; return; }
        b=${b// /}
        echo $(((0x$b & 4) != 0))
}

# Prints a log file (the client's) on the console, through the shell only.
show() { local l; while IFS= read -r l; do echo "  $l"; done <"$1"; }

# Waits up to $2 seconds for a daemon log line matching the glob $1; sets found_line to its
# line number.
found_line=0
wait_log() {
        local pat=$1 deadline=$(($(t_ms) + $2 * 1000)) n l
        while :; do
                n=0
                while IFS= read -r l; do
                        n=$((n + 1))
                        # shellcheck disable=SC2053
                        [[ $l == $pat ]] && { found_line=$n; return 0; }
                done <"$DLOG"
                [ "$(t_ms)" -lt "$deadline" ] || return 1
                nap 0.05
        done
}

# Line number of the first daemon log line matching the glob $1 (0 if none).
log_line() {
        local n=0 l
        while IFS= read -r l; do
                n=$((n + 1))
                # shellcheck disable=SC2053
                [[ $l == $1 ]] && { echo "$n"; return; }
        done <"$DLOG"
        echo 0
}

# The client's "TAG: LATENCY backend=B device_fd_us=N memory_us=M" as our own LATENCY line.
latency() {
        local t=$1 l
        while IFS= read -r l; do
                case "$l" in
                "$t: LATENCY backend="*)
                        l=${l#"$t: LATENCY backend="}
                        echo "guest: LATENCY $scenario ${l%% *} $t ${l#* }"
                        return ;;
                esac
        done <"client-$t.log"
        echo "guest: LATENCY $scenario - $t none (the client did not get that far)"
}

# The lease id a client printed ("TAG: LEASE id"), or nothing.
client_lease() {
        local l
        while IFS= read -r l; do
                case "$l" in "$1: LEASE "*) echo "${l#"$1: LEASE "}"; return ;; esac
        done <"client-$1.log"
}

cleanup() {
        [ -n "${hold_pid:-}" ] && kill -9 "$hold_pid" 2>/dev/null
        [ -n "${mon_pid:-}" ] && kill -TERM "$mon_pid" 2>/dev/null
        if [ -n "${daemon_pid:-}" ] && kill -0 "$daemon_pid" 2>/dev/null; then
                kill -TERM "$daemon_pid"
                wait "$daemon_pid"
                say "noiommud exited with status $?"
        fi
}
trap cleanup EXIT

# ---- 1. polkit and the bus ----------------------------------------------------------------
# Only the project's action file (copying all of the host's takes >1 s under TCG).
printf '%s\n' "$(<io.noiommud.policy)" >/run/pk/actions/io.noiommud.policy
read -r -d '' rule <<'EOF'
// vm-daemon test rule: the guest has no logind, so every subject is inactive and rules decide.
polkit.addRule(function(action, subject) {
        if (action.id.indexOf("io.noiommud.") == 0 && subject.user == "nobody")
                return polkit.Result.YES;
        return polkit.Result.NOT_HANDLED;
});
EOF
printf '%s\n' "$rule" >/run/pk/rules/50-noiommud-vm-test.rules
mount --bind /run/pk/actions /usr/share/polkit-1/actions &&
        mount --bind /run/pk/rules /etc/polkit-1/rules.d ||
        { echo "guest: FAIL: cannot bind-mount the polkit directories"; exit 1; }
dbus-daemon --system --fork || { echo "guest: FAIL: dbus-daemon --system did not start"; exit 1; }
say "dbus-daemon started"

# ---- 2. the daemon --------------------------------------------------------------------------
printf '{"noiommuDevices": ["%s"]}\n' "$bdf" >/run/noiommud/noiommud.conf
: >"$DLOG"
timeout -k 5 170 ./noiommud --listen "$SOCK" --config /run/noiommud/noiommud.conf --log-level debug \
        >>"$DLOG" 2>&1 8>&- &
daemon_pid=$!
for ((i = 0; i < 200; i++)); do [ -S "$SOCK" ] && break; kill -0 "$daemon_pid" 2>/dev/null || break; nap 0.05; done
if [ -S "$SOCK" ]; then
        say "noiommud listening on $SOCK"
else
        fail "noiommud did not come up"
        show "$DLOG"
        exit 1
fi

huge0=$(hugepages_free)
say "HugePages_Free before any client: $huge0"

# Every client: setpriv to the user, stdout to its own log, alarm() inside edu-client.
run_client() {  # TAG USER GROUP [edu-client options...]
        local t=$1 u=$2 g=$3 rc
        shift 3
        setpriv --reuid="$u" --regid="$g" --clear-groups ./edu-client "$SOCK" "$bdf" --tag "$t" \
                --expect-kind "$want_kind" --expect-backend "$want_backend" "$@" >"client-$t.log" 2>&1 8>&-
        rc=$?
        show "client-$t.log"
        return $rc
}

# ---- 3. a user without a rule is refused (this also activates polkitd) --------------------------
if run_client denied "$DENIED_USER" "$DENIED_USER" --expect-denied; then
        pass "uid $DENIED_USER (no rule) gets PermissionDenied for AcquireDevice"
else
        fail "uid $DENIED_USER (no rule) was not refused with PermissionDenied"
fi

# ---- 4. the unprivileged client, start to finish -------------------------------------------------
if run_client first "$CLIENT_USER" "$CLIENT_GROUP"; then
        pass "$CLIENT_USER: acquire + 2 MiB + BAR + Bus Master + MSI + DMA at the reported $want_kind address + release ($want_backend)"
else
        fail "$CLIENT_USER: the first client failed"
fi
latency first
lease=$(client_lease first)
if [ -n "$lease" ] && wait_log "*Released device $bdf of UID *lease $lease: release*" 10; then
        pass "daemon ended lease $lease on ReleaseDevice"
else
        fail "daemon did not log the end of lease '${lease}' on ReleaseDevice"
fi

# ---- 5. kill -9 mid-lease, with a DMA in flight ------------------------------------------------
huge_before=$(hugepages_free)
mkfifo /run/hold.fifo
setpriv --reuid="$CLIENT_USER" --regid="$CLIENT_GROUP" --clear-groups ./edu-client "$SOCK" "$bdf" --tag hold \
        --expect-kind "$want_kind" --expect-backend "$want_backend" --hold --inflight >/run/hold.fifo 2>&1 8>&- &
hold_pid=$!
exec 7</run/hold.fifo
ready=
lease=
: >client-hold.log
while IFS= read -r -t 30 -u 7 line; do
        echo "$line" >>client-hold.log
        echo "  $line"
        case "$line" in
        "hold: LEASE "*) lease=${line#hold: LEASE } ;;
        "READY "*) ready=${line#READY }; break ;;
        esac
done
latency hold
if [ -n "$ready" ] && [ "$ready" = "$hold_pid" ] && [ -n "$lease" ]; then
        pass "hold client (pid $hold_pid) did its DMA and holds lease $lease"
        huge_held=$(hugepages_free)
        bm_held=$(bus_master)
        [ "$bm_held" = 1 ] && pass "Bus Master is on while the client holds the device" ||
                fail "Bus Master reads $bm_held while the client holds the device"
        [ "$huge_held" = $((huge_before - 1)) ] &&
                pass "HugePages_Free $huge_before -> $huge_held while the lease holds 2 MiB" ||
                fail "HugePages_Free $huge_before -> $huge_held while the lease holds 2 MiB (want $((huge_before - 1)))"

        t_kill=$(t_ms)
        kill -9 "$hold_pid"
        wait "$hold_pid" 2>/dev/null
        say "killed the hold client with SIGKILL"
        hold_pid=
        exec 7<&-

        if wait_log "*Released device $bdf of UID *lease $lease*" 10; then
                rel=$found_line
                say "daemon released lease $lease $(($(t_ms) - t_kill)) ms after the kill"
                q=$(log_line "*Quiesced device $bdf of lease $lease*Bus Master cleared, device reset*")
                qa=$(log_line "*Quiesced device $bdf of lease $lease*")
                fr=$(log_line "*Freed 2097152 bytes of DMA memory of UID 65534 (PID $ready)*")
                if [ "$q" -gt 0 ] && [ "$fr" -gt "$q" ] && [ "$rel" -gt "$fr" ]; then
                        pass "daemon log: quiesce (line $q: Bus Master cleared, device reset) before memory freed (line $fr) before release (line $rel)"
                elif [ "$qa" -gt 0 ] && [ "$fr" -gt "$qa" ]; then
                        fail "daemon log: quiesced (line $qa) before freeing (line $fr), but without a device reset"
                else
                        fail "daemon log order: quiesce line $qa, memory freed line $fr, release line $rel"
                fi
        else
                fail "daemon did not release lease $lease within 10 s of the kill"
        fi
        bm=$(bus_master)
        [ "$bm" = 0 ] && pass "Bus Master is off in the device's config space after the kill" ||
                fail "Bus Master reads $bm in the device's config space after the kill"
        huge_after=$(hugepages_free)
        [ "$huge_after" = "$huge_before" ] &&
                pass "HugePages_Free back to $huge_before after the kill" ||
                fail "HugePages_Free is $huge_after after the kill, was $huge_before before the client"
else
        fail "hold client never printed READY (ready='$ready', lease='$lease')"
fi

# ---- 6. hotplug, seen by noiommuctl monitor: unbind edu from vfio-pci, bind it back -------------
# edu holds no lease here. The rule above allows io.noiommud.* (so io.noiommud.manage) to nobody.
# The kernel's unbind/bind uevents reach Monitor() as device-removed {device, action} and
# device-added {device, driver}; section 7 then acquires the rebound device.
MLOG=$R/monitor.log
: >"$MLOG"
timeout -k 2 30 setpriv --reuid="$CLIENT_USER" --regid="$CLIENT_GROUP" --clear-groups \
        ./noiommuctl --socket "$SOCK" --json monitor >"$MLOG" 2>&1 8>&- &
mon_pid=$!
# Waits up to $1 seconds for a line of the monitor's output matching every glob after it (the
# order of the JSON members is not assumed).
wait_mon() {
        local deadline=$(($(t_ms) + $1 * 1000)) l p
        shift
        while :; do
                while IFS= read -r l; do
                        for p in "$@"; do
                                # shellcheck disable=SC2053
                                [[ $l == $p ]] || continue 2
                        done
                        return 0
                done <"$MLOG"
                [ "$(t_ms)" -lt "$deadline" ] || return 1
                nap 0.05
        done
}
# The sysfs writes run in a forked subshell (no exec), so a write the kernel blocks cannot hang
# the script: the monitor line is the proof that it completed.
sysfs_write() { ( echo "$bdf" >"$1" ) 8>&- & sysfs_pid=$!; }
hp_ok=
if wait_mon 10 '*"event":*"subscribed"*'; then
        say "monitor subscribed"
        t_hp=$(t_ms)
        sysfs_write /sys/bus/pci/drivers/vfio-pci/unbind
        if wait_mon 10 '*"event":*"device-removed"*' "*\"$bdf\"*" '*"action":*"unbind"*'; then
                wait "$sysfs_pid"
                say "device-removed $bdf (unbind) after $(($(t_ms) - t_hp)) ms"
                t_hp=$(t_ms)
                sysfs_write /sys/bus/pci/drivers/vfio-pci/bind
                if wait_mon 10 '*"event":*"device-added"*' "*\"$bdf\"*" '*"driver":*"vfio-pci"*'; then
                        wait "$sysfs_pid"
                        say "device-added $bdf (vfio-pci) after $(($(t_ms) - t_hp)) ms"
                        hp_ok=1
                fi
        fi
fi
kill -TERM "$mon_pid" 2>/dev/null
wait "$mon_pid" 2>/dev/null
mon_pid=
show "$MLOG"
if [ -n "$hp_ok" ]; then
        pass "monitor: device-removed (unbind) and device-added (vfio-pci) for $bdf after unbind/bind"
else
        fail "monitor did not report the unbind and rebind of $bdf (see above)"
        [ -n "${sysfs_pid:-}" ] && kill -9 "$sysfs_pid" 2>/dev/null
fi

# ---- 7. the next client gets the same device and its DMA works ----------------------------------
if run_client after-kill "$CLIENT_USER" "$CLIENT_GROUP" --no-release; then
        pass "a second client acquired $bdf after the kill and its DMA landed (lease ended by disconnect)"
else
        fail "the client after the kill failed"
fi
latency after-kill
lease=$(client_lease after-kill)
if [ -n "$lease" ] && wait_log "*Released device $bdf of UID *lease $lease: client-exit*" 10; then
        pass "daemon ended lease $lease when the client disconnected (client-exit)"
else
        fail "daemon did not log the end of lease '${lease}' when the client disconnected"
fi
huge_end=$(hugepages_free)
[ "$huge_end" = "$huge0" ] && pass "HugePages_Free back to $huge0 at the end" ||
        fail "HugePages_Free is $huge_end at the end, was $huge0 at the start"

# ---- the end ------------------------------------------------------------------------------------
kill -TERM "$daemon_pid"
wait "$daemon_pid"
drc=$?
daemon_pid=
[ "$drc" = 0 ] && pass "noiommud exited cleanly on SIGTERM" || fail "noiommud exited with status $drc on SIGTERM"

echo "guest: ---- daemon log ----"
show "$DLOG"
if [ "$n_fail" != 0 ]; then
        echo "guest: ---- kernel messages ----"
        dmesg | grep -iE "vfio|dmar|iommu|$bdf" | tail -n 30
fi
echo "guest: $scenario: $n_pass passed, $n_fail failed"
[ "$n_fail" = 0 ] && [ "$n_pass" -gt 0 ]
