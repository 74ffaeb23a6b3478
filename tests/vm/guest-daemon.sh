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
#      disconnect);
#   8. five more clients, for the acquire latency.
# Also: ListDevices names the backend and why (on Linux 7.x, matrix case 3: edu has both noiommu
# paths); with physical addresses the taint is set and the hold client's pages are where the
# daemon said (pagemap, as root); the daemon's audit record of each grant is there.
# guest.env (the host test) may set NOIOMMU_VM_WANT_BACKEND; guest-lib.sh has the set-up.
# Prints PASS/FAIL lines and "LATENCY <scenario> <backend> <tag> device_fd_us=N memory_us=N";
# exit 0 only if everything passed.
#
# Re-executes itself under bash: read -t (timeouts and sleeps without a fork), $EPOCHREALTIME.
[ -n "${BASH_VERSION:-}" ] || exec /bin/bash "$0" "$@"
set -u

# shellcheck source=guest-lib.sh
. "$NOIOMMU_VM_RESULTS/guest-lib.sh"

say "scenario $scenario on Linux $(uname -r) (series $kernel_series): want backend $want_backend, addressKind $want_kind, edu at $bdf"
for f in noiommud edu-client noiommuctl libnoiommu.so.0 io.noiommud.policy pagemap.py; do
        [ -e "$f" ] || { echo "guest: FAIL: $f was not passed to the guest"; exit 1; }
done

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

cleanup() {
        [ -n "${hold_pid:-}" ] && kill -9 "$hold_pid" 2>/dev/null
        [ -n "${mon_pid:-}" ] && kill -TERM "$mon_pid" 2>/dev/null
        reap_daemon
}
trap cleanup EXIT

# ---- 1. polkit and the bus; 2. the daemon ----------------------------------------------------
start_bus_and_polkit
start_daemon 170

# ---- ListDevices: the backend the daemon picks for edu, and why -------------------------------
# On a 7.x kernel with a container backend edu has both a noiommu group and a noiommu cdev
# (matrix case 3): the daemon must say it has both and which one it serves through.
setpriv --reuid="$CLIENT_USER" --regid="$CLIENT_GROUP" --clear-groups ./noiommuctl --socket "$SOCK" --json list \
        >list.json 2>&1 8>&-
show list.json
if listing=$(/usr/bin/python3 - "$bdf" <<'EOF'
import json, sys
bdf = sys.argv[1]
devs = [d for d in json.load(open("list.json"))["devices"] if d.get("address") == bdf]
if len(devs) != 1:
    sys.exit("edu %s is listed %d times" % (bdf, len(devs)))
d = devs[0]
print("%s %s %s" % (d.get("backend"), ",".join(d.get("availableBackends") or []), d.get("backendReason") or ""))
EOF
); then
        read -r got_backend got_available got_reason <<<"$listing"
        say "ListDevices: backend $got_backend, available $got_available, reason: $got_reason"
        [ "$got_backend" = "$want_backend" ] && [ -n "$got_reason" ] &&
                pass "ListDevices: edu is served through $got_backend, with a reason ($got_reason)" ||
                fail "ListDevices: edu backend '$got_backend' reason '$got_reason' (want $want_backend and a reason)"
        if [ "$kernel_series" = 7 ] && [ "$scenario" = noiommu ]; then
                [[ ",$got_available," == *",cdev-noiommu,"* && ",$got_available," == *",group-noiommu,"* ]] &&
                        pass "ListDevices: edu has both noiommu paths on Linux $(uname -r) (matrix case 3): $got_available" ||
                        fail "ListDevices: availableBackends '$got_available' lacks cdev-noiommu or group-noiommu"
        fi
else
        fail "ListDevices: cannot read edu's entry: $listing"
fi

huge0=$(hugepages_free)
say "HugePages_Free before any client: $huge0"

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

# ---- 4b. what the kernel and the daemon recorded for that grant ------------------------------
# The cdev path logs nothing per open (linux-7.3.md): its trace is the taint at registration and
# the daemon's own record of the grant.
if [ "$want_kind" = physical ]; then
        tainted=$(</proc/sys/kernel/tainted)
        (( tainted & 64 )) && pass "kernel taint TAINT_USER (64) is set: tainted=$tainted" ||
                fail "kernel taint TAINT_USER (64) is not set: tainted=$tainted"
fi
if [ "$want_backend" = cdev-noiommu ]; then
        dmesg | grep -q "Adding kernel taint for vfio-noiommu cdev" &&
                pass "kernel log: 'Adding kernel taint for vfio-noiommu cdev'" ||
                fail "kernel log lacks 'Adding kernel taint for vfio-noiommu cdev'"
fi
n_grant=$(log_line "*Granted device $bdf (1234:11e8, $want_backend) to UID 65534 (PID *), lease *")
[ "$n_grant" -gt 0 ] && pass "daemon audit record of the grant (line $n_grant): $(sed -n "${n_grant}p" "$DLOG")" ||
        fail "no daemon audit record 'Granted device $bdf (1234:11e8, $want_backend) to UID 65534'"

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

        if [ "$want_kind" = physical ]; then
                mem_line=$(grep -m1 "^hold: memory .*first dmaAddress 0x" client-hold.log)
                mem_id=${mem_line#hold: memory }
                mem_id=${mem_id%%:*}
                mem_dma=${mem_line##*first dmaAddress }
                if out=$(pagemap_check "$hold_pid" "$mem_id" "$mem_dma" 0x200000 2>&1); then
                        pass "pagemap (as root): $out"
                else
                        fail "pagemap check of the hold client's memory failed: $out"
                fi
        fi

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

# ---- 8. acquire latency, several runs -----------------------------------------------------------
# connect -> device fd, and -> 2 MiB with addresses, as the client measures them (LATENCY lines);
# the host prints medians over these runs and the three above.
for i in 1 2 3 4 5; do
        run_client "lat$i" "$CLIENT_USER" "$CLIENT_GROUP" >/dev/null || fail "latency run $i failed"
        latency "lat$i"
done

# ---- the end ------------------------------------------------------------------------------------
stop_daemon
echo "guest: ---- daemon log ----"
show "$DLOG"
finish_guest "$scenario"
