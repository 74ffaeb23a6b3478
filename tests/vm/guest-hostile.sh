#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Guest side of the vm-hostile test (run by run-vm.py inside the guest, as root, in the chroot of
# the host's root), on Linux 7.3 with edu on the noiommu cdev (backend cdev-noiommu). The real
# noiommud, the host's dbus-daemon and real polkitd, and hostile-client as "nobody": a lease
# holder that detaches its device from the daemon's page table, attaches it elsewhere, tries
# /dev/iommu, a PASID attach and GET_HW_INFO (linux-7.3.md "Hazard: DETACH by the client",
# issue 15 "The client-detach hazard").
#
# Files beside this script in the results share (run-vm.py --file): noiommud, hostile-client,
# libnoiommu.so.0 (found through LD_LIBRARY_PATH), io.noiommud.policy.
#
# Steps:
#   1. polkit action + a rule (io.noiommud.* is YES for "nobody") in tmpfs directories bound over
#      the polkit directories before dbus-daemon starts (no inotify in the guest);
#   2. noiommud as root with {"noiommuDevices": [BDF]}, log to daemon.log;
#   3. two leases, one after the other (16 hugepages in the guest, and noiommu memory freed
#      mid-lease stays pinned until the lease's quiesce, so one lease cannot take all 15 calls):
#        A: detach, attach-bogus, attach-1 ... attach-8, detach (the lease ends detached)
#        B: iommu-open (+ bind-own-iommufd, hw-info-iommufd if it opened), attach-pasid,
#           detach-pasid, hw-info-devfd, attach-ro, attach-2 (the lease ends with the device on
#           an automatic HWPT the client's ATTACH to the IOAS made)
#      hostile-client --sync stops after every call; meanwhile this script, as root,
#        - compares every 4 KiB page of every segment it reports (the original memory and the
#          new allocation) with /proc/<client pid>/pagemap: present, and PFN = dmaAddress >> 12;
#        - reads the daemon's VmPin (iommufd and io_uring charge their pins to the process that
#          mapped the memory): it must never drop within a lease -- a hostile call must not
#          release a pin;
#      the client's own verdict per call ("PASS after <call>") comes from DMA both ways at the
#      original and at newly allocated addresses;
#   4. after each client exits (no teardown of its own: Bus Master on, MSI armed): the daemon log
#      shows quiesce (Bus Master cleared, device reset) before the first "Freed" of that client's
#      memory, before the release; no page moved; Bus Master is off; HugePages_Free and the
#      daemon's VmPin are back where they were before the lease;
#   5. the kernel log: no oops, BUG or WARNING (the noiommu taint lines are expected), and
#      /proc/sys/kernel/tainted has no bit besides TAINT_USER (64, the noiommu taint);
#   6. noiommud exits cleanly on SIGTERM.
# Prints PASS/FAIL lines, one "guest: HOSTILE-TABLE <lease> <call> rc=<errno> verdict=<...>" per
# call, and ends with "guest: hostile: N passed, M failed"; exit 0 only if everything passed.
#
# Re-executes itself under bash: read -t (timeouts and sleeps without a fork), $EPOCHREALTIME.
[ -n "${BASH_VERSION:-}" ] || exec /bin/bash "$0" "$@"
set -u

# shellcheck source=guest-lib.sh
. "$NOIOMMU_VM_RESULTS/guest-lib.sh"
CLIENT_UID=65534
CALLS_A=detach,attach-bogus,attach-ids,detach
CALLS_B=iommu-open,attach-pasid,detach-pasid,hw-info-devfd,attach-ro,attach-2

say "scenario $scenario, edu at $bdf, want backend $want_backend"
[ "$scenario" = noiommu ] && [ "$want_backend" = cdev-noiommu ] ||
        { echo "guest: FAIL: vm-hostile runs in the noiommu scenario with cdev-noiommu only"; exit 1; }
for f in noiommud hostile-client libnoiommu.so.0 io.noiommud.policy; do
        [ -e "$f" ] || { echo "guest: FAIL: $f was not passed to the guest"; exit 1; }
done
read -r _ _ kver _ </proc/version || kver='?'
cdev=
for f in /dev/vfio/devices/noiommu-vfio*; do [ -e "$f" ] && cdev=$f; done
if [ -n "$cdev" ]; then
        pass "kernel $kver gives edu a noiommu cdev: $cdev"
else
        fail "kernel $kver has no /dev/vfio/devices/noiommu-vfio* (not 7.3 with IOMMUFD_NOIOMMU?)"
        exit 1
fi

# VmPin of a process in kB (-1 if it is gone).
vm_pin() {
        local k v _
        while read -r k v _; do
                [ "$k" = VmPin: ] && { echo "$v"; return; }
        done <"/proc/$1/status" 2>/dev/null
        echo -1
}

# Number of daemon log lines matching the glob $1.
log_count() {
        local n=0 l
        while IFS= read -r l; do
                # shellcheck disable=SC2053
                [[ $l == $1 ]] && n=$((n + 1))
        done <"$DLOG"
        echo "$n"
}

cleanup() {
        [ -n "${client_pid:-}" ] && kill -9 "$client_pid" 2>/dev/null
        reap_daemon
}
trap cleanup EXIT

# ---- 1. polkit and the bus; 2. the daemon ----------------------------------------------------
start_bus_and_polkit
start_daemon 300
# The daemon itself runs under timeout(1): its pid by name (the pins are charged to it).
dpid=
for d in /proc/[0-9]*; do
        read -r comm <"$d/comm" 2>/dev/null || continue
        [ "$comm" = noiommud ] && { dpid=${d#/proc/}; break; }
done
[ -n "$dpid" ] && say "noiommud is pid $dpid, VmPin $(vm_pin "$dpid") kB" || fail "cannot find noiommud's pid"

huge0=$(hugepages_free)
say "HugePages_Free before any client: $huge0"
dmesg >"$R/dmesg-before.txt" 2>&1
dmesg_before=0
while IFS= read -r _; do dmesg_before=$((dmesg_before + 1)); done <"$R/dmesg-before.txt"

# ---- 3./4. the hostile clients ----------------------------------------------------------------
# Every 4 KiB page of [va, va + len) of process $1 must be present in pagemap with the PFN the
# daemon reported (dma >> 12, + 1 per page).
pagemap_check_va() {  # PID VA DMA LEN -> sets pm_err ("" if all match)
        local pid=$1 va=$2 dma=$3 len=$4 words w e i=0 want
        pm_err=
        words=$(dd if="/proc/$pid/pagemap" bs=4096 iflag=skip_bytes,count_bytes skip=$(((va >> 12) * 8)) \
                count=$(((len >> 12) * 8)) status=none | od -An -v -tx8) || { pm_err="cannot read pagemap"; return; }
        for w in $words; do
                e=$((0x$w))
                want=$(((dma >> 12) + i))
                if ((((e >> 63) & 1) == 0)); then
                        pm_err=$(printf 'page %d not present (entry 0x%s)' "$i" "$w"); return
                fi
                if (((e & 0x7fffffffffffff) != want)); then
                        pm_err=$(printf 'page %d: PFN 0x%x, reported 0x%x' "$i" $((e & 0x7fffffffffffff)) "$want"); return
                fi
                i=$((i + 1))
        done
        [ "$i" = $((len >> 12)) ] || pm_err="pagemap gave $i entries for $((len >> 12)) pages"
}

declare -A verdict rc_of parent
table=()

# Runs hostile-client as nobody with --sync, answers its SYNC points after checking pagemap and
# VmPin, then checks the daemon's teardown of its lease.
run_hostile() {  # TAG CALLS
        local t=$1 calls=$2 line lease='' cpid pin pin_prev=-1 call which kv pid va dma len granted=0 rc timed_out step='' nstep=0
        local huge_before pin_before log=$R/client-$t.log
        huge_before=$(hugepages_free)
        pin_before=$(vm_pin "$dpid")
        : >"$log"
        rm -f "/run/$t.in" "/run/$t.out"
        mkfifo "/run/$t.in" "/run/$t.out"
        exec 6<>"/run/$t.in"
        setpriv --reuid="$CLIENT_USER" --regid="$CLIENT_GROUP" --clear-groups ./hostile-client "$SOCK" "$bdf" \
                --tag "$t" --calls "$calls" --expect-backend "$want_backend" --sync \
                <"/run/$t.in" >"/run/$t.out" 2>&1 6>&- 8>&- &
        client_pid=$!
        cpid=$client_pid        # setpriv execs hostile-client: the same pid
        exec 7<"/run/$t.out"
        say "$t: hostile-client (pid $client_pid) with calls $calls"
        timed_out=
        while :; do
                IFS= read -r -t 90 -u 7 line
                rc=$?
                if [ "$rc" -gt 128 ]; then
                        timed_out=1
                        break
                fi
                [ "$rc" = 0 ] || break          # EOF: the client exited
                echo "$line" >>"$log"
                echo "  $line"
                case "$line" in
                "$t: LEASE "*)
                        lease=${line#"$t: LEASE "} ;;
                *"AllocateMemory(2 MiB, lease): granted"*)
                        granted=$((granted + 1)) ;;
                "HOSTILE "*)
                        kv=${line#HOSTILE }
                        call=${kv%% *}
                        # A step is one call of --calls, up to its "PASS/FAIL after" line;
                        # iommu-open's sub-calls belong to its step. Keys: TAG#STEP[/CALL].
                        if [ -z "$step" ]; then
                                nstep=$((nstep + 1))
                                step=$t#$nstep
                        fi
                        rc_of[$step/$call]=${kv#* rc=}
                        parent[$step/$call]=$step
                        table+=("$step/$call") ;;
                "PAGEMAP "*)
                        # PAGEMAP CALL WHICH pid=P va=0xV dma=0xD len=0xL
                        read -r _ call which pid va dma len <<<"$line"
                        pid=${pid#pid=} va=${va#va=} dma=${dma#dma=} len=${len#len=}
                        pagemap_check_va "$pid" "$((va))" "$((dma))" "$((len))"
                        if [ -z "$pm_err" ]; then
                                pass "$t: after $call: pagemap of pid $pid: all $((len >> 12)) pages of the $which memory at va $va are at the reported dmaAddress $dma"
                        else
                                fail "$t: after $call: pagemap of pid $pid, $which memory at va $va (dmaAddress $dma): $pm_err"
                                verdict[${step:-$t#initial}]=FAIL
                        fi ;;
                "SYNC "*)
                        call=${line#SYNC }
                        pin=$(vm_pin "$dpid")
                        if [ "$pin_prev" -lt 0 ]; then
                                say "$t: noiommud VmPin $pin kB with the lease's first 2 MiB"
                        elif [ "$pin" -ge "$pin_prev" ]; then
                                pass "$t: after $call: noiommud VmPin $pin_prev -> $pin kB (no pin released)"
                        else
                                fail "$t: after $call: noiommud VmPin $pin_prev -> $pin kB: the call released pins"
                                verdict[${step:-$t#initial}]=FAIL
                        fi
                        pin_prev=$pin
                        echo go >&6 ;;
                "$t: PASS after "*)
                        [ -n "$step" ] && [ -z "${verdict[$step]:-}" ] && verdict[$step]=PASS
                        step= ;;
                "$t: FAIL after "*)
                        [ -n "$step" ] && verdict[$step]=FAIL
                        step= ;;
                esac
        done
        exec 7<&- 6>&-
        if [ -n "$timed_out" ]; then
                fail "$t: hostile-client silent for 90 s: killed"
                kill -9 "$client_pid"
        fi
        wait "$client_pid"
        rc=$?
        client_pid=
        [ "$rc" = 0 ] && pass "$t: hostile-client: every check passed (exit 0)" ||
                fail "$t: hostile-client exited with status $rc"

        # The daemon ends the lease on the client's exit: quiesce before freeing, in order.
        if [ -n "$lease" ] && wait_log "*Released device $bdf of UID *lease $lease*" 15; then
                local q fr rel nfreed moved
                q=$(log_line "*Quiesced device $bdf of lease $lease*Bus Master cleared, device reset*")
                fr=$(log_line "*Freed * bytes of DMA memory of UID $CLIENT_UID (PID $cpid)*")
                rel=$(log_line "*Released device $bdf of UID *lease $lease*")
                nfreed=$(log_count "*Freed * bytes of DMA memory of UID $CLIENT_UID (PID $cpid)*")
                moved=$(log_count "*Freed * (PID $cpid)*pages moved*")
                if [ "$q" -gt 0 ] && [ "$fr" -gt "$q" ] && [ "$rel" -gt "$fr" ]; then
                        pass "$t: daemon log: quiesce (line $q: Bus Master cleared, device reset) before the first memory freed (line $fr) before release (line $rel)"
                else
                        fail "$t: daemon log order: quiesce line $q, first memory freed line $fr, release line $rel"
                fi
                [ "$nfreed" = "$granted" ] && pass "$t: daemon freed all $granted allocations of the lease at its end" ||
                        fail "$t: daemon freed $nfreed allocations, the client was granted $granted"
                [ "$moved" = 0 ] && pass "$t: no page moved or was punched out while allocated (daemon's pagemap re-check)" ||
                        fail "$t: $moved allocations had pages moved while allocated"
        else
                fail "$t: daemon did not release lease '$lease' within 15 s of the client's exit"
        fi
        [ "$(bus_master)" = 0 ] && pass "$t: Bus Master is off after the lease ended (the client left it on)" ||
                fail "$t: Bus Master reads $(bus_master) after the lease ended"
        local huge_after
        huge_after=$(hugepages_free)
        [ "$huge_after" = "$huge_before" ] && pass "$t: HugePages_Free back to $huge_before" ||
                fail "$t: HugePages_Free is $huge_after after the lease, was $huge_before before"
        pin=$(vm_pin "$dpid")
        [ "$pin" = "$pin_before" ] && pass "$t: noiommud VmPin back to $pin_before kB: every pin of the lease released" ||
                fail "$t: noiommud VmPin $pin kB after the lease, $pin_before kB before it"
        kill -0 "$daemon_pid" 2>/dev/null && pass "$t: noiommud is still running" || fail "$t: noiommud died"
}

run_hostile hostile-a "$CALLS_A"
run_hostile hostile-b "$CALLS_B"

q=$(log_count "*uarantin*")
[ "$q" = 0 ] && pass "no lease was quarantined" || fail "the daemon log mentions quarantine $q times"

# ---- 5. the kernel log ------------------------------------------------------------------------
dmesg >"$R/dmesg.txt" 2>&1
n=0
bad=0
taint_lines=0
while IFS= read -r l; do
        n=$((n + 1))
        case "$l" in
        *"Adding kernel taint for vfio-noiommu"*) taint_lines=$((taint_lines + 1)) ;;
        *WARNING:*|*BUG:*|*Oops*|*"Call Trace"*|*"general protection"*|*"kernel BUG"*|*RIP:*|*UBSAN*|*refcount_t:*|*" corruption"*|*"Unable to handle"*|*segfault*)
                echo "  dmesg: $l"
                bad=$((bad + 1)) ;;
        esac
        [ "$n" -gt "$dmesg_before" ] && echo "  dmesg (new): $l"
done <"$R/dmesg.txt"
[ "$bad" = 0 ] && pass "kernel log: no oops, BUG or WARNING ($n lines, $((n - dmesg_before)) during the run)" ||
        fail "kernel log: $bad lines of oops/BUG/WARNING (above)"
[ "$taint_lines" -gt 0 ] && pass "kernel log: the noiommu cdev taint line is there ($taint_lines)" ||
        fail "kernel log: no 'Adding kernel taint for vfio-noiommu cdev' line"
if read -r tainted </proc/sys/kernel/tainted 2>/dev/null; then
        [ $((tainted & ~64)) = 0 ] && pass "kernel tainted=$tainted: TAINT_USER (noiommu) only, no W/D" ||
                fail "kernel tainted=$tainted: more than TAINT_USER (64): 512 = a WARN fired, 128 = an oops"
else
        say "no /proc/sys/kernel/tainted (kernel without CONFIG_SYSCTL); the dmesg scan stands alone"
fi

# ---- 6. the end ---------------------------------------------------------------------------------
huge_end=$(hugepages_free)
[ "$huge_end" = "$huge0" ] && pass "HugePages_Free back to $huge0 at the end" ||
        fail "HugePages_Free is $huge_end at the end, was $huge0 at the start"
stop_daemon

echo "guest: ---- daemon log ----"
show "$DLOG"
echo "guest: ---- hostile calls on $kver: the kernel's answer, and whether the lease kept working ----"
for k in "${table[@]}"; do
        v=${verdict[${parent[$k]}]:-FAIL}
        lt=${k%%#*} call=${k#*/}
        echo "guest: HOSTILE-TABLE $lt $call rc=${rc_of[$k]} verdict=$v"
        [ "$v" = PASS ] && pass "after $call ($lt, kernel said ${rc_of[$k]}): the lease kept working" ||
                fail "after $call ($lt, kernel said ${rc_of[$k]}): the lease did not keep working"
done
echo "guest: hostile: $n_pass passed, $n_fail failed"
[ "$n_fail" = 0 ] && [ "$n_pass" -gt 0 ]
