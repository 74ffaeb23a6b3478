#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Guest side of the vm-systemd test: run by run-vm.py --init systemd as noiommu-vm-test.service,
# with systemd 252 as PID 1, the project installed by "meson install" (prefix /usr) on the
# guest's overlay root, journald, the system bus and polkitd as systemd starts them, and edu
# bound to vfio-pci. An unprivileged client (edu-client as "nobody") does real edu DMA into the
# memory the daemon pinned, at the address the daemon reported.
#
# Scenarios (each prints "guest: PASS:"/"guest: FAIL:" lines, "guest: JOURNAL:" lines with what
# systemd logged and "guest: MEASURE:" lines):
#   0. set-up as an administrator would: /etc/noiommud/noiommud.conf names edu, a polkit rule
#      grants io.noiommud.* to "nobody", "systemctl enable --now noiommud.socket" (README),
#      "journalctl --update-catalog"; the test's one drop-in (WatchdogSec=5s, see below);
#      journald with Audit=yes (Debian 12's journald turns kernel auditing off otherwise);
#   1. socket activation: the service is inactive until the first client connects; that client
#      gets edu and 2 MiB and its DMA lands; the running daemon's sandbox is checked from outside
#      (Seccomp 2, NoNewPrivs 1, CapBnd, its own mount/net/UTS namespaces, read-only / and
#      /proc/sys, its cgroup with a BPF device program attached, and an open of a device the
#      unit does not allow refused inside the unit's cgroup while /dev/vfio/vfio opens);
#   2. "systemctl kill -s KILL noiommud" while the client's edu does DMA: systemd restarts the
#      daemon with its fd store, the lease is restored, a probe DMA round trip lands, the client
#      then releases and the teardown runs in order (quiesce, free, release); the kill -> first
#      reply gap is measured; (2b) a client that dies while the daemon is down (stopped, then
#      killed) is reclaimed quiesce-first by the restarted daemon;
#   3. the watchdog: SIGSTOP the daemon; systemd kills it (WatchdogSignal, SIGABRT) and restarts
#      it; the same guarantees as 2 (the client survives and later releases; (3b) a client that
#      dies while the daemon is stopped is reclaimed quiesce-first);
#   R. "systemctl reload noiommud" while the client's edu does DMA (daemon/reexec.h): the same
#      pid serves, the client's pages did not move, the daemon's pin rings are the old image's,
#      nothing is quiesced or freed, a probe DMA lands afterwards, the lease then ends in order;
#   4. "systemctl stop noiommud.service noiommud.socket" with a lease held: the lease ends in
#      order, reason "shutdown" (journal and Linux audit), the socket is removed, the fd store
#      is empty, Bus Master is off, the hugepages are back;
#   5. "journalctl -x" shows the catalog texts of the daemon's records, and the Linux audit
#      records (journald's audit transport, from the kernel's audit multicast) carry the
#      sandboxed daemon's pid.
# The unit's WatchdogSec=30s would make scenario 3 wait up to 30 s per kill; the test adds the
# drop-in /etc/systemd/system/noiommud.service.d/50-vm-test.conf with WatchdogSec=5s.
# Every wait has a deadline; exit 0 only if everything passed.
[ -n "${BASH_VERSION:-}" ] || exec /bin/bash "$0" "$@"
set -u

# shellcheck source=guest-lib.sh
. "$NOIOMMU_VM_RESULTS/guest-lib.sh"
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0 SYSTEMD_URLIFY=0
UNIT=noiommud.service
CTL=/usr/bin/noiommuctl

say "scenario $scenario on Linux $(uname -r) (series $kernel_series) under $(</proc/1/comm) as PID 1: want backend $want_backend, addressKind $want_kind, edu at $bdf"
for f in edu-client libnoiommu.so.0; do
        [ -e "$f" ] || { echo "guest: FAIL: $f was not passed to the guest"; exit 1; }
done

journal() { echo "guest: JOURNAL: $*"; }
# main_pid: the service's MainPID (0 if none).
main_pid() { systemctl show -P MainPID "$UNIT"; }
# wait_file FILE GLOB SECONDS: a line of FILE matching GLOB appears; sets found_text.
found_text=
wait_file() {
        local f=$1 pat=$2 deadline=$(($(t_ms) + $3 * 1000)) l
        while :; do
                if [ -f "$f" ]; then
                        while IFS= read -r l; do
                                # shellcheck disable=SC2053
                                [[ $l == $pat ]] && { found_text=$l; return 0; }
                        done <"$f"
                fi
                [ "$(t_ms)" -lt "$deadline" ] || return 1
                nap 0.05
        done
}
# mono_ms_after START GLOB [MIN_MS]: the journal's monotonic time (ms) of the first line after
# line START matching GLOB ("[   12.116456] host ..."), not earlier than MIN_MS; or nothing.
mono_ms_after() {
        local n=0 l t ms
        while IFS= read -r l; do
                n=$((n + 1))
                [ "$n" -gt "$1" ] || continue
                # shellcheck disable=SC2053
                if [[ $l == $2 ]]; then
                        t=${l#\[}
                        t=${t%%\]*}
                        t=${t// /}
                        ms=$((10#${t%.*} * 1000 + 10#${t#*.} / 1000))
                        [ "$ms" -ge "${3:-0}" ] || continue
                        echo "$ms"
                        return
                fi
        done <"$DLOG"
}
log_count() { local n=0 l; while IFS= read -r l; do n=$((n + 1)); done <"$DLOG"; echo "$n"; }
# journal_since START GLOB...: prints (as JOURNAL lines) the log lines after START matching any GLOB
journal_since() {
        local start=$1 n=0 l p
        shift
        while IFS= read -r l; do
                n=$((n + 1))
                [ "$n" -gt "$start" ] || continue
                for p in "$@"; do
                        # shellcheck disable=SC2053
                        [[ $l == $p ]] && { journal "$l"; break; }
                done
        done <"$DLOG"
}
SYSTEMD_GLOBS=("*systemd\[1\]: noiommud*" "*systemd\[1\]: Start*noiommud*" "*systemd\[1\]: Stop*noiommud*"
               "*systemd\[1\]: Closed noiommud*" "*systemd\[1\]: Listening on noiommud*")

# hold_client TAG: edu-client --hold --inflight --probe-on-usr1 as nobody in the background,
# output in client-TAG.log; waits for READY; sets hold_pid and hold_lease.
hold_client() {
        local t=$1
        : >"client-$t.log"
        setpriv --reuid="$CLIENT_USER" --regid="$CLIENT_GROUP" --clear-groups ./edu-client "$SOCK" "$bdf" --tag "$t" \
                --expect-kind "$want_kind" --expect-backend "$want_backend" --hold --inflight --probe-on-usr1 \
                >"client-$t.log" 2>&1 8>&- &
        hold_pid=$!
        hold_lease=
        if wait_file "client-$t.log" "READY *" 60 && [ "$found_text" = "READY $hold_pid" ] &&
           wait_file "client-$t.log" "$t: LEASE *" 1; then
                hold_lease=${found_text#"$t: LEASE "}
                return 0
        fi
        show "client-$t.log"
        return 1
}
# probe TAG N: SIGUSR1 to the hold client, wait for "PROBE N ok"
probe() {
        kill -USR1 "$hold_pid"
        wait_file "client-$1.log" "$1: PROBE $2 *" 20 && [ "$found_text" = "$1: PROBE $2 ok" ]
}
# release_hold TAG: SIGUSR2 (teardown + ReleaseDevice), wait for the exit status
release_hold() {
        local rc
        kill -USR2 "$hold_pid"
        wait "$hold_pid"
        rc=$?
        hold_pid=
        show "client-$1.log"
        return $rc
}
# wait_restart OLD SECONDS: a new MainPID, active; sets new_pid
wait_restart() {
        local deadline=$(($(t_ms) + $2 * 1000))
        while :; do
                new_pid=$(main_pid)
                [ "$new_pid" != 0 ] && [ "$new_pid" != "$1" ] && [ "$(systemctl is-active "$UNIT")" = active ] && return 0
                [ "$(t_ms)" -lt "$deadline" ] || return 1
                nap 0.2
        done
}
# teardown_order MARK LEASE REASON: after log line MARK, lease LEASE ended with REASON, the
# device quiesced (Bus Master cleared, reset) before the memory was freed, before the release
check_teardown() {
        local mark=$1 lease=$2 reason=$3 what=$4 q fr rel
        if ! wait_log "*Released device $bdf of UID *lease $lease: $reason*" 15; then
                fail "$what: no 'Released device $bdf ... lease $lease: $reason' in the journal"
                return
        fi
        rel=$(log_line_from "$mark" "*Released device $bdf of UID *lease $lease: $reason*")
        q=$(log_line_from "$mark" "*Quiesced device $bdf of lease $lease*Bus Master cleared, device reset*")
        fr=$(log_line_from "$mark" "*Freed 2097152 bytes of DMA memory of UID 65534*")
        if [ "$q" -gt 0 ] && [ "$fr" -gt "$q" ] && [ "$rel" -gt "$fr" ]; then
                pass "$what: quiesce (journal line $q: Bus Master cleared, device reset) before memory freed (line $fr) before release (line $rel, reason $reason)"
        else
                fail "$what: journal order quiesce line $q, memory freed line $fr, release line $rel (reason $reason)"
        fi
}
after_lease_checks() {
        local bm hp
        bm=$(bus_master)
        [ "$bm" = 0 ] && pass "$1: Bus Master is off in the device's config space" ||
                fail "$1: Bus Master reads $bm after the lease ended"
        hp=$(hugepages_free)
        [ "$hp" = "$huge0" ] && pass "$1: HugePages_Free back to $huge0" || fail "$1: HugePages_Free is $hp, was $huge0"
}

cleanup() {
        [ -n "${hold_pid:-}" ] && kill -9 "$hold_pid" 2>/dev/null
        [ -n "${jpid:-}" ] && kill "$jpid" 2>/dev/null
}
trap cleanup EXIT

# ---- 0. installed and enabled as the README says ------------------------------------------------
for f in /usr/libexec/noiommud /usr/lib/systemd/system/noiommud.socket /usr/lib/systemd/system/noiommud.service \
         /usr/share/polkit-1/actions/io.noiommud.policy /usr/lib/systemd/catalog/noiommud.catalog $CTL; do
        [ -e "$f" ] || { fail "meson install did not put $f in the guest"; exit 1; }
done
pass "meson install (prefix /usr): daemon, units, polkit action, catalog and noiommuctl are in place"
mkdir -p /etc/noiommud /etc/systemd/system/noiommud.service.d
daemon_config >/etc/noiommud/noiommud.conf
say "/etc/noiommud/noiommud.conf: $(</etc/noiommud/noiommud.conf)"
cat >/etc/polkit-1/rules.d/50-noiommud-vm-test.rules <<'EOF'
// vm test rule: the guest has no logind session for "nobody", so rules decide.
polkit.addRule(function(action, subject) {
        if (action.id.indexOf("io.noiommud.") == 0 && subject.user == "nobody")
                return polkit.Result.YES;
        return polkit.Result.NOT_HANDLED;
});
EOF
cat >/etc/systemd/system/noiommud.service.d/50-vm-test.conf <<'EOF'
# vm-systemd: the watchdog scenario SIGSTOPs the daemon; 5 s instead of the unit's 30 s.
[Service]
WatchdogSec=5s
EOF
# Linux audit: Debian 12's journald (journald.conf "#Audit=no") turns kernel auditing off when
# it starts, and the kernel then drops user records without an error. A machine that keeps
# audit records turns it on (auditd does; here journald itself, Audit=yes).
mkdir -p /etc/systemd/journald.conf.d
printf '[Journal]\nAudit=yes\n' >/etc/systemd/journald.conf.d/50-vm-audit.conf
systemctl restart systemd-journald.service &&
        say "journald restarted with Audit=yes" || fail "restarting journald with Audit=yes failed"
huge0=$(hugepages_free)
t=$(t_ms)
if out=$(systemctl enable --now noiommud.socket 2>&1); then
        pass "systemctl enable --now noiommud.socket ($(($(t_ms) - t)) ms): $(echo $out)"
else
        fail "systemctl enable --now noiommud.socket: $out"
        exit 1
fi
st_sock=$(systemctl is-active noiommud.socket) st_svc=$(systemctl is-active "$UNIT") en=$(systemctl is-enabled noiommud.socket)
[ "$st_sock" = active ] && [ "$st_svc" = inactive ] && [ "$en" = enabled ] && [ -S "$SOCK" ] &&
        pass "socket $st_sock and $en, $SOCK exists; the service is $st_svc until a client connects" ||
        fail "socket $st_sock/$en, service $st_svc, $SOCK $([ -S "$SOCK" ] && echo exists || echo missing)"
journalctl --update-catalog && pass "journalctl --update-catalog" || fail "journalctl --update-catalog failed"
# Everything the journal has about the units, as it arrives (the checks read this file).
journalctl -b -f -n all -o short-monotonic -u noiommud.socket -u "$UNIT" >"$DLOG" 2>&1 8>&- &
jpid=$!

scenario_activation() {
        # ---- 1. socket activation, the sandbox, DMA -----------------------------------------------------
        say "---- 1. socket activation ----"
        mark=$(log_count)
        t=$(t_ms)
        if run_client first "$CLIENT_USER" "$CLIENT_GROUP"; then
                pass "1: the first connection started the daemon; nobody got edu and 2 MiB, DMA landed at the reported $want_kind address, released ($want_backend, $(($(t_ms) - t)) ms including activation)"
        else
                fail "1: the first client failed"
        fi
        pid1=$(main_pid)
        lease=$(client_lease first)
        [ -n "$lease" ] && wait_log "*Released device $bdf of UID *lease $lease: release*" 10 &&
                pass "1: journal: lease $lease ended on ReleaseDevice" || fail "1: no 'Released device ... lease $lease: release'"
        journal_since "$mark" "${SYSTEMD_GLOBS[@]}" "*noiommud*started*" "*Granted device*"
        [ "$pid1" != 0 ] && [ "$(systemctl is-active "$UNIT")" = active ] &&
                pass "1: noiommud.service is active, MainPID $pid1" || fail "1: noiommud.service not active after the first client (MainPID $pid1)"

        # The sandbox, seen from outside the daemon.
        declare -A st=()
        while IFS=: read -r k v; do st[$k]=$(echo $v); done <"/proc/$pid1/status"
        say "daemon $pid1 status: Seccomp=${st[Seccomp]} NoNewPrivs=${st[NoNewPrivs]} CapBnd=${st[CapBnd]} CapEff=${st[CapEff]}"
        # CAP_SYS_ADMIN (21), CAP_IPC_LOCK (14), CAP_SYS_RAWIO (17), CAP_AUDIT_WRITE (29)
        [ "${st[Seccomp]}" = 2 ] && pass "1: sandbox: Seccomp 2 (filter mode)" || fail "1: Seccomp is '${st[Seccomp]}'"
        [ "${st[NoNewPrivs]}" = 1 ] && pass "1: sandbox: NoNewPrivs 1" || fail "1: NoNewPrivs is '${st[NoNewPrivs]}'"
        [ "${st[CapBnd]}" = 0000000020224000 ] &&
                pass "1: sandbox: CapBnd 0000000020224000 (CAP_IPC_LOCK CAP_SYS_RAWIO CAP_SYS_ADMIN CAP_AUDIT_WRITE only)" ||
                fail "1: CapBnd is '${st[CapBnd]}' (want 0000000020224000)"
        netns1=$(readlink "/proc/$pid1/ns/net")
        for ns in mnt net uts; do
                a=$(readlink "/proc/$pid1/ns/$ns") b=$(readlink "/proc/1/ns/$ns")
                [ -n "$a" ] && [ "$a" != "$b" ] && pass "1: sandbox: its own $ns namespace ($a, PID 1 has $b)" ||
                        fail "1: $ns namespace $a (PID 1 $b)"
        done
        ro_root= ro_sys=
        while read -r _ _ _ _ mp opts _; do
                [ "$mp" = / ] && [[ ,$opts, == *,ro,* ]] && ro_root=1
                [ "$mp" = /proc/sys ] && [[ ,$opts, == *,ro,* ]] && ro_sys=1
        done <"/proc/$pid1/mountinfo"
        [ -n "$ro_root" ] && [ -n "$ro_sys" ] && pass "1: sandbox: / (ProtectSystem=strict) and /proc/sys (ProtectKernelTunables) are read-only in its mount namespace" ||
                fail "1: in the daemon's mount namespace / ro=${ro_root:-no}, /proc/sys ro=${ro_sys:-no}"
        pmax=$(</sys/fs/cgroup/system.slice/$UNIT/pids.max)
        nofile=$(while read -r a b c d _; do [ "$a $b $c" = "Max open files" ] && echo "$d"; done <"/proc/$pid1/limits")
        [ "$pmax" = 16 ] && [ "$nofile" = 65536 ] && pass "1: sandbox: pids.max $pmax (TasksMax=16), open files $nofile (LimitNOFILE=65536)" ||
                fail "1: pids.max '$pmax' (want 16), open files '$nofile' (want 65536)"
        cg=$(</proc/$pid1/cgroup)
        [ "$cg" = "0::/system.slice/$UNIT" ] && pass "1: sandbox: cgroup $cg" || fail "1: cgroup '$cg'"
        # The device filter: a BPF_CGROUP_DEVICE program on the unit's cgroup, and what it does to a
        # process in that cgroup (this helper moves itself in and back out).
        if out=$(/usr/bin/python3 - "/sys/fs/cgroup/system.slice/$UNIT" <<'EOF' 2>&1
import ctypes, errno, os, struct, sys
cg = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
def query(attach_type):
    fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY)
    ids = (ctypes.c_uint32 * 16)()
    # union bpf_attr, BPF_PROG_QUERY: target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    attr = ctypes.create_string_buffer(struct.pack("IIIIQI", fd, attach_type, 0, 0, ctypes.addressof(ids), 16), 120)
    r = libc.syscall(321, 16, attr, 120)     # SYS_bpf, BPF_PROG_QUERY
    e = ctypes.get_errno()
    os.close(fd)
    if r < 0:
        return "error %s" % errno.errorcode.get(e, e)
    return struct.unpack_from("IIIIQI", attr.raw)[5]
dev = query(6)          # BPF_CGROUP_DEVICE
ing = query(0)          # BPF_CGROUP_INET_INGRESS (IPAddressDeny=any)
def try_open(path):
    try:
        os.close(os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
outside = try_open("/dev/ttyS0")
home = open("/proc/self/cgroup").read().strip().split("::", 1)[1]
with open(cg + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
inside = {p: try_open(p) for p in ("/dev/ttyS0", "/dev/vfio/vfio", "/dev/null")}
with open("/sys/fs/cgroup" + home + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
print("device-programs=%s inet-ingress-programs=%s ttyS0-outside=%s inside: %s"
      % (dev, ing, outside, " ".join("%s=%s" % kv for kv in inside.items())))
ok = isinstance(dev, int) and dev >= 1 and outside == "ok" and inside["/dev/ttyS0"] == "EPERM" \
     and inside["/dev/vfio/vfio"] == "ok" and inside["/dev/null"] == "ok"
sys.exit(0 if ok else 1)
EOF
        ); then
                pass "1: sandbox: device cgroup filter (DevicePolicy=closed): $out"
        else
                fail "1: device cgroup filter: $out"
        fi
}

scenario_kill() {
        # ---- 2. systemctl kill -s KILL while the client's edu does DMA ---------------------------------
        say "---- 2. systemctl kill -s KILL noiommud with DMA running ----"
        if hold_client kill; then
                pass "2: client (pid $hold_pid) holds lease $hold_lease, edu -> RAM DMAs running"
                probe kill 1 && pass "2: probe round trip before the kill landed" || fail "2: probe 1 failed"
                nfd=$(systemctl show -P NFileDescriptorStore "$UNIT")
                [ "${nfd:-0}" -ge 3 ] && pass "2: the service manager's fd store holds $nfd fds" || fail "2: fd store holds '${nfd}' fds"
                # A reply's cost without any restart, to read the gap below against.
                t=$(t_ms)
                setpriv --reuid="$CLIENT_USER" --regid="$CLIENT_GROUP" --clear-groups timeout 30 $CTL --socket "$SOCK" --json list >/dev/null 2>&1 8>&-
                base=$(($(t_ms) - t))
                mark=$(log_count)
                old=$pid1
                t_kill=$(t_ms)
                systemctl kill -s KILL "$UNIT"
                # The first reply after the kill: the connection waits in the socket's backlog, which
                # systemd holds, until the restarted daemon accepts it.
                setpriv --reuid="$CLIENT_USER" --regid="$CLIENT_GROUP" --clear-groups timeout 30 $CTL --socket "$SOCK" --json list >/dev/null 2>&1 8>&-
                lrc=$?
                gap=$(($(t_ms) - t_kill))
                if wait_restart "$old" 20; then
                        pid2=$new_pid
                        [ "$lrc" = 0 ] && pass "2: kill -9 -> first reply of the restarted daemon (pid $old -> $pid2): $gap ms (a reply without restart: $base ms)" ||
                                fail "2: the call after the kill failed ($lrc)"
                        echo "guest: MEASURE: kill9-gap-ms=$gap reply-ms=$base scenario=$scenario"
                else
                        fail "2: systemd did not restart noiommud within 20 s of the kill"
                        pid2=0
                fi
                wait_log "*Restored lease $hold_lease on $bdf*" 15 &&
                        pass "2: journal: lease $hold_lease restored by the new daemon" || fail "2: no 'Restored lease $hold_lease'"
                # The same gap by the journal's clock: SIGKILL sent -> lease restored (pinned again)
                # -> READY (systemd: Started) -> the waiting call authorized.
                # (journalctl -f may still be catching up: up to 5 s)
                for ((i = 0; i < 50; i++)); do
                        j_kill=$(mono_ms_after "$mark" "*systemd\[1\]: $UNIT: Sent signal SIGKILL to main process*")
                        j_rest=$(mono_ms_after "$mark" "*Restored lease $hold_lease*")
                        j_ready=$(mono_ms_after "$mark" "*systemd\[1\]: Started $UNIT*")
                        j_call=$(mono_ms_after "$mark" "*io.noiommud.list-devices authorized*" "${j_kill:-0}")
                        [ -n "$j_kill" ] && [ -n "$j_rest" ] && [ -n "$j_ready" ] && [ -n "$j_call" ] && break
                        nap 0.1
                done
                if [ -n "$j_kill" ] && [ -n "$j_rest" ] && [ -n "$j_ready" ] && [ -n "$j_call" ]; then
                        echo "guest: MEASURE: journal SIGKILL->lease-restored-ms=$((j_rest - j_kill)) SIGKILL->READY-ms=$((j_ready - j_kill)) SIGKILL->first-call-served-ms=$((j_call - j_kill)) scenario=$scenario"
                fi
                journal_since "$mark" "${SYSTEMD_GLOBS[@]}" "*Restored lease*" "*Reclaiming lease*" "*noiommud*started*"
                [ "$(log_line_from "$mark" "*systemd\[1\]: $UNIT: Main process exited, code=killed, status=9/KILL*")" -gt 0 ] &&
                        [ "$(log_line_from "$mark" "*systemd\[1\]: $UNIT: Scheduled restart job*")" -gt 0 ] &&
                        pass "2: journal: systemd saw status=9/KILL and scheduled the restart" ||
                        fail "2: journal lacks systemd's 'Main process exited, code=killed, status=9/KILL' / 'Scheduled restart job'"
                [ "$(log_line_from "$mark" "*Reclaiming lease $hold_lease*")" = 0 ] && [ "$(log_line_from "$mark" "*Quiesced device*")" = 0 ] &&
                        pass "2: no reclaim and no quiesce of the live lease" || fail "2: the live lease was reclaimed or quiesced"
                kill -0 "$hold_pid" 2>/dev/null && pass "2: the client lived through the restart" || fail "2: the client died"
                [ "$(bus_master)" = 1 ] && pass "2: Bus Master still on" || fail "2: Bus Master off after the restart"
                [ "$(hugepages_free)" = $((huge0 - 1)) ] && pass "2: the 2 MiB are still held" || fail "2: HugePages_Free $(hugepages_free)"
                probe kill 2 && pass "2: probe round trip after the restart landed (device and DMA mapping survived)" || fail "2: probe 2 failed"
                # A quiet client (it does not talk to the daemon after its start, as DPDK does not)
                # keeps its connection: longer than a fresh connection's 5 s request timeout.
                nap 6
                mark=$(log_count)
                lease=$hold_lease
                if release_hold kill; then
                        pass "2: the client tore down and released lease $lease itself (ReleaseDevice ok)"
                else
                        fail "2: the client's release failed"
                fi
                check_teardown "$mark" "$lease" release "2: release after the restart"
                after_lease_checks "2"
        else
                fail "2: hold client did not start"
        fi
}

# dead_client_reclaimed TAG N HOW: a client killed while the daemon is stopped (SIGSTOP, so it
# cannot notice); HOW brings the next daemon ("kill": systemctl kill; "watchdog": systemd's
# watchdog), which must reclaim the lease, quiesce first.
dead_client_reclaimed() {
        local tag=$1 n=$2 how=$3
        if hold_client "$tag"; then
                old=$(main_pid)
                lease=$hold_lease
                mark=$(log_count)
                kill -STOP "$old"
                kill -9 "$hold_pid"
                wait "$hold_pid" 2>/dev/null
                hold_pid=
                [ "$how" = kill ] && systemctl kill -s KILL "$UNIT"
                # systemctl kill restarts at once; the watchdog first waits out WatchdogSec.
                wait_restart "$old" "$([ "$how" = kill ] && echo 20 || echo 30)" &&
                        pass "$n: client killed while the daemon (pid $old) was stopped; $how: systemd restarted it as pid $new_pid" ||
                        fail "$n: no restart ($how)"
                wait_log "*Reclaiming lease $lease*its client is gone*" 15 &&
                        pass "$n: journal: the restarted daemon reclaims lease $lease (its client is gone)" ||
                        fail "$n: no 'Reclaiming lease $lease'"
                check_teardown "$mark" "$lease" reclaim-after-restart "$n: reclaim"
                journal_since "$mark" "*Reclaiming lease*" "*Quiesced device*" "*Released device*"
                after_lease_checks "$n"
        else
                fail "$n: hold client did not start"
        fi
}

scenario_kill_dead_client() {
        say "---- 2b. a client dies while the daemon is down ----"
        dead_client_reclaimed killb 2b kill
}

scenario_watchdog() {
        # ---- 3. the watchdog -----------------------------------------------------------------------------
        say "---- 3. SIGSTOP: the watchdog ----"
        wd=$(systemctl show -P WatchdogUSec "$UNIT")
        if hold_client wd; then
                old=$(main_pid)
                lease=$hold_lease
                mark=$(log_count)
                t=$(t_ms)
                kill -STOP "$old"
                if wait_restart "$old" 30; then
                        pass "3: SIGSTOP'd daemon (pid $old) replaced by pid $new_pid after $(($(t_ms) - t)) ms (WatchdogUSec=$wd)"
                else
                        fail "3: no restart within 30 s of SIGSTOP (WatchdogUSec=$wd)"
                fi
                wait_log "*Restored lease $lease on $bdf*" 15 && pass "3: journal: lease $lease restored" || fail "3: no 'Restored lease $lease'"
                [ "$(log_line_from "$mark" "*systemd\[1\]: $UNIT: Watchdog timeout*")" -gt 0 ] &&
                        [ "$(log_line_from "$mark" "*systemd\[1\]: $UNIT: Failed with result 'watchdog'*")" -gt 0 ] &&
                        pass "3: journal: systemd's watchdog timeout and result 'watchdog'" || fail "3: journal lacks the watchdog timeout"
                journal_since "$mark" "${SYSTEMD_GLOBS[@]}" "*Restored lease*"
                kill -0 "$hold_pid" 2>/dev/null && pass "3: the client lived through it" || fail "3: the client died"
                probe wd 1 && pass "3: probe round trip after the watchdog restart landed" || fail "3: probe failed"
                mark=$(log_count)
                release_hold wd && pass "3: the client released lease $lease itself" || fail "3: the client's release failed"
                check_teardown "$mark" "$lease" release "3: release after the watchdog restart"
                after_lease_checks "3"
        else
                fail "3: hold client did not start"
        fi
}
scenario_watchdog_dead_client() {
        say "---- 3b. a client dies while the daemon hangs ----"
        dead_client_reclaimed wdb 3b watchdog
}

# client_pfns PID MEMORY_ID: the physical address of every 4 KiB page of the client's mapping of
# the memory, on one line (pagemap as root; the integration tier's reader).
client_pfns() {
        /usr/bin/python3 - "$@" <<'EOF'
import sys
sys.path.insert(0, ".")
import pagemap
pid, memory = int(sys.argv[1]), sys.argv[2]
rows = [r for r in pagemap.proc_maps(pid) if ("noiommud-" + memory) in r["path"]]
print(" ".join("%#x" % (a or 0) for r in rows for a in pagemap.pagemap(pid, r["start"], r["end"] - r["start"])))
EOF
}
# daemon_pins PID: the daemon's io_uring rings and the buffers each one pins (fdinfo UserBufs;
# the virtual addresses are those of the image that registered them).
daemon_pins() {
        local fd
        for fd in /proc/"$1"/fd/*; do
                [ "$(readlink "$fd" 2>/dev/null)" = "anon_inode:[io_uring]" ] || continue
                echo "${fd##*/}: $(grep -E '^ *[0-9]+: 0x[0-9a-f]+/[0-9]+' /proc/"$1"/fdinfo/"${fd##*/}" | tr -s ' \n' ' ')"
        done
}

scenario_reload() {
        # ---- R. systemctl reload (re-exec in place) while the client's edu does DMA ----------------
        say "---- R. systemctl reload noiommud with DMA running ----"
        if ! hold_client reload; then
                fail "R: hold client did not start"
                return
        fi
        pass "R: client (pid $hold_pid) holds lease $hold_lease, edu -> RAM DMAs running"
        probe reload 1 && pass "R: probe round trip before the reload landed" || fail "R: probe 1 failed"
        local l mem='' pid0 pfn0 pfn1 pins0 pins1 hp0 t gap lrc mark
        while IFS= read -r l; do
                [[ $l =~ ^reload:\ memory\ ([0-9a-f]{32}): ]] && mem=${BASH_REMATCH[1]}
        done <"client-reload.log"
        pid0=$(main_pid)
        pfn0=$(client_pfns "$hold_pid" "$mem")
        pins0=$(daemon_pins "$pid0")
        hp0=$(hugepages_free)
        [ -n "$mem" ] && [ -n "$pfn0" ] && [ -n "$pins0" ] &&
                pass "R: before: memory $mem, daemon pid $pid0, pin rings: $pins0" ||
                fail "R: could not read memory '$mem' / pages / pins before the reload"
        mark=$(log_count)
        t=$(t_ms)
        systemctl reload "$UNIT"
        lrc=$?
        # The first reply after the reload, on a new connection (the held one is the client's).
        setpriv --reuid="$CLIENT_USER" --regid="$CLIENT_GROUP" --clear-groups timeout 30 $CTL --socket "$SOCK" --json list >/dev/null 2>&1 8>&-
        gap=$(($(t_ms) - t))
        [ "$lrc" = 0 ] && pass "R: systemctl reload returned 0; reload -> first reply $gap ms" || fail "R: systemctl reload failed ($lrc)"
        echo "guest: MEASURE: reload-gap-ms=$gap scenario=$scenario"
        wait_log "*re-executed in * ms, keeping * connections, * device leases*" 15 &&
                pass "R: journal: RELOADED record" || fail "R: no RELOADED record ('re-executed in ...')"
        [ "$(main_pid)" = "$pid0" ] && [ "$(systemctl is-active "$UNIT")" = active ] &&
                pass "R: the same pid $pid0 serves, the unit is active" || fail "R: MainPID $(main_pid), was $pid0; $(systemctl is-active "$UNIT")"
        pfn1=$(client_pfns "$hold_pid" "$mem")
        [ "$pfn1" = "$pfn0" ] && pass "R: the client's pages did not move (pagemap, $(echo "$pfn0" | wc -w) pages)" ||
                fail "R: pages moved: before '$pfn0', after '$pfn1'"
        pins1=$(daemon_pins "$pid0")
        [ "$pins1" = "$pins0" ] && pass "R: the very same pin rings with the old image's buffers: never unpinned" ||
                fail "R: pin rings before '$pins0', after '$pins1'"
        [ "$(hugepages_free)" = "$hp0" ] && pass "R: HugePages_Free unchanged ($hp0)" || fail "R: HugePages_Free $(hugepages_free), was $hp0"
        [ "$(log_line_from "$mark" "*Quiesced device*")" = 0 ] && [ "$(log_line_from "$mark" "*Reclaiming lease*")" = 0 ] &&
                [ "$(log_line_from "$mark" "*Freed * bytes of DMA memory*")" = 0 ] &&
                pass "R: nothing quiesced, reclaimed or freed" || fail "R: the reload quiesced, reclaimed or freed something"
        [ "$(bus_master)" = 1 ] && pass "R: Bus Master still on" || fail "R: Bus Master off after the reload"
        kill -0 "$hold_pid" 2>/dev/null && pass "R: the client lived through the reload" || fail "R: the client died"
        probe reload 2 && pass "R: probe round trip after the reload landed (same connection, device and mapping)" ||
                fail "R: probe 2 failed"
        journal_since "$mark" "${SYSTEMD_GLOBS[@]}" "*Reloading*" "*Reloaded*" "*re-executed*" "*Re-executing*"
        mark=$(log_count)
        l=$hold_lease
        release_hold reload && pass "R: the client tore down and released lease $l itself" || fail "R: the client's release failed"
        check_teardown "$mark" "$l" release "R: release after the reload"
        after_lease_checks "R"
}

scenario_stop() {
        # ---- 4. systemctl stop ---------------------------------------------------------------------------
        say "---- 4. systemctl stop noiommud.service noiommud.socket ----"
        if hold_client stop; then
                lease=$hold_lease
                pid4=$(main_pid)
                mark=$(log_count)
                t=$(t_ms)
                systemctl stop "$UNIT" noiommud.socket && pass "4: systemctl stop took $(($(t_ms) - t)) ms" || fail "4: systemctl stop failed"
                nap 0.5
                check_teardown "$mark" "$lease" shutdown "4: stop"
                journal_since "$mark" "${SYSTEMD_GLOBS[@]}" "*is stopping*" "*Released device*"
                a=$(systemctl is-active "$UNIT") b=$(systemctl is-active noiommud.socket) nfd=$(systemctl show -P NFileDescriptorStore "$UNIT")
                [ "$a" = inactive ] && [ "$b" = inactive ] && [ ! -e "$SOCK" ] && [ "${nfd:-x}" = 0 ] &&
                        pass "4: service and socket inactive, $SOCK removed, fd store empty" ||
                        fail "4: service $a, socket $b, $SOCK $([ -e "$SOCK" ] && echo still there || echo gone), fd store '$nfd'"
                kill -0 "$hold_pid" 2>/dev/null && say "the client still runs (its lease is gone; it holds only its own fds)"
                kill -9 "$hold_pid" 2>/dev/null
                wait "$hold_pid" 2>/dev/null
                hold_pid=
                after_lease_checks "4"
                aud=$(journalctl -o cat _TRANSPORT=audit _PID="$pid4" 2>&1 | grep "op=lease-release uuid=$lease .*reason=shutdown")
                [ -n "$aud" ] && pass "4: Linux audit (pid $pid4): $aud" || fail "4: no Linux audit record op=lease-release uuid=$lease reason=shutdown from pid $pid4"
        else
                fail "4: hold client did not start"
        fi
}

scenario_journal() {
        # ---- 5. journal catalog and Linux audit ----------------------------------------------------------
        say "---- 5. journalctl -x and the audit records ----"
        journalctl -b -x -o short-monotonic -u "$UNIT" >journal-x.txt 2>&1
        for subj in "noiommud started" "Device lease granted" "Device quiesced" "Device lease released" \
                    "Device lease reclaimed after a restart" "Pinned DMA memory granted" "noiommud is stopping"; do
                grep -q "Subject: $subj" journal-x.txt && pass "5: journalctl -x shows the catalog entry '$subj'" ||
                        fail "5: journalctl -x lacks 'Subject: $subj'"
        done
        grep -m1 -B1 -A4 "Subject: Device lease granted" journal-x.txt | sed 's/^/guest: JOURNAL-X: /'
        journalctl -b -o verbose _TRANSPORT=audit _PID="$pid1" >audit-pid1.txt 2>&1
        n=$(grep -c "op=lease-grant" audit-pid1.txt)
        [ "$n" -gt 0 ] && pass "5: $n Linux audit record(s) op=lease-grant from the sandboxed daemon (pid $pid1, in $netns1, PID 1 in $(readlink /proc/1/ns/net)) through the kernel's audit multicast into journald" ||
                fail "5: no Linux audit record op=lease-grant from pid $pid1 (_TRANSPORT=audit)"
        journalctl -b -o short-monotonic _TRANSPORT=audit _PID="$pid1" | grep -m2 "op=lease" | sed 's/^/guest: AUDIT: /'
        if [ "$n" = 0 ]; then
                echo "guest: ---- the journal's audit transport: $(journalctl -b -q _TRANSPORT=audit | wc -l) records; user records (not syscall/BPF/service ones): ----"
                journalctl -b -q -o short-monotonic _TRANSPORT=audit | grep -vE " (SYSCALL|PROCTITLE|BPF|SERVICE_START|SERVICE_STOP|CONFIG_CHANGE|NETFILTER_CFG)\b| audit\[1\]:" | tail -n 20
                journalctl -b -q -o short-monotonic _TRANSPORT=kernel | grep -E "audit" | tail -n 5
        fi
}

# The scenarios, in this order: "activation" first (it starts the daemon and keeps its pid for
# "journal"), "journal" last (it reads what the others left in the journal). guest.env may name
# a subset in NOIOMMU_VM_SYSTEMD_SCENARIOS. A new scenario (a live "reload", say) is a function
# scenario_NAME built from the helpers above (hold_client, probe, release_hold, wait_restart,
# check_teardown, after_lease_checks, journal_since), listed before "stop".
for sc in ${NOIOMMU_VM_SYSTEMD_SCENARIOS:-activation kill kill-dead-client watchdog watchdog-dead-client reload stop journal}; do
        "scenario_${sc//-/_}"
done

kill "$jpid" 2>/dev/null
jpid=
echo "guest: ---- journal of noiommud.socket and noiommud.service ----"
show "$DLOG"
finish_guest "$scenario (systemd)"
