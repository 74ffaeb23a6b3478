# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced (bash) by the guest scripts that run the real daemon (guest-daemon.sh,
# guest-hostile.sh, guest-latency.sh): results bookkeeping, sleeps without forks, the polkit +
# D-Bus set-up, the daemon's start, and the small probes (HugePages_Free, Bus Master, the
# daemon log, pagemap). Run-vm.py puts it in the results share with --file.
#
# After sourcing: R (the results share, also the working directory), scenario, bdf, SOCK,
# DLOG (the daemon's log), want_backend / want_kind (from guest.env, or the scenario's
# default), kernel_series; PASS/FAIL counters n_pass/n_fail.

cd "$NOIOMMU_VM_RESULTS" || exit 1
R=$PWD
# shellcheck disable=SC1091
[ -f guest.env ] && . ./guest.env
scenario=$NOIOMMU_VM_SCENARIO
bdf=$NOIOMMU_VM_BDF
kernel_series=${NOIOMMU_VM_KERNEL_SERIES:-6.12}
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

# The backend this boot must give edu: what the host test asked for (NOIOMMU_VM_WANT_BACKEND),
# else the scenario's classic one.
case "$scenario" in
noiommu) want_backend=${NOIOMMU_VM_WANT_BACKEND:-group-noiommu}; want_kind=physical ;;
viommu)  want_backend=${NOIOMMU_VM_WANT_BACKEND:-cdev-iommu};    want_kind=iova ;;
*)       echo "guest: FAIL: unknown scenario $scenario"; exit 1 ;;
esac
[ -n "$bdf" ] || { echo "guest: FAIL: no edu device"; exit 1; }

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

# Prints a log file (a client's) on the console, through the shell only.
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

# log_line_from START GLOB: number of the first daemon log line after line START matching GLOB
# (0 if none); log_line GLOB: the same from the first line.
log_line_from() {
        local n=0 l
        while IFS= read -r l; do
                n=$((n + 1))
                [ "$n" -gt "$1" ] || continue
                # shellcheck disable=SC2053
                [[ $l == $2 ]] && { echo "$n"; return; }
        done <"$DLOG"
        echo 0
}
log_line() { log_line_from 0 "$1"; }

# The lease id a client printed ("TAG: LEASE id" in client-TAG.log), or nothing.
client_lease() {
        local l
        while IFS= read -r l; do
                case "$l" in "$1: LEASE "*) echo "${l#"$1: LEASE "}"; return ;; esac
        done <"client-$1.log"
}

# polkit and the bus: the project's action file and a rule that allows io.noiommud.* to
# "nobody" go into tmpfs directories bind-mounted over polkit's, before dbus-daemon starts
# (no inotify in the guest, docs/vm-testing.md §6); polkitd is D-Bus activated by the first
# CheckAuthorization.
start_bus_and_polkit() {
        local rule
        # Only the project's action file (copying all of the host's takes >1 s under TCG).
        printf '%s\n' "$(<io.noiommud.policy)" >/run/pk/actions/io.noiommud.policy
        read -r -d '' rule <<'EOF'
// vm test rule: the guest has no logind, so every subject is inactive and rules decide.
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
}

# The daemon's configuration for this boot: edu is a noiommu device the administrator named;
# where the test wants the group path on a device that also has a noiommu cdev (matrix case 3),
# deviceBackends says so.
daemon_config() {
        if [ "$want_backend" = group-noiommu ] && [ -d "/sys/bus/pci/devices/$bdf/vfio-dev" ] &&
           compgen -G "/sys/bus/pci/devices/$bdf/vfio-dev/noiommu-vfio*" >/dev/null; then
                printf '{"noiommuDevices": ["%s"], "deviceBackends": {"%s": "group-noiommu"}}\n' "$bdf" "$bdf"
        else
                printf '{"noiommuDevices": ["%s"]}\n' "$bdf"
        fi
}

# start_daemon [SECONDS]: noiommud as root under timeout, logging to DLOG; sets daemon_pid.
start_daemon() {
        local i
        daemon_config >/run/noiommud/noiommud.conf
        say "noiommud.conf: $(</run/noiommud/noiommud.conf)"
        : >"$DLOG"
        timeout -k 5 "${1:-170}" ./noiommud --listen "$SOCK" --config /run/noiommud/noiommud.conf \
                --log-level debug >>"$DLOG" 2>&1 8>&- &
        daemon_pid=$!
        for ((i = 0; i < 200; i++)); do
                [ -S "$SOCK" ] && break
                kill -0 "$daemon_pid" 2>/dev/null || break
                nap 0.05
        done
        if [ -S "$SOCK" ]; then
                say "noiommud listening on $SOCK"
        else
                fail "noiommud did not come up"
                show "$DLOG"
                exit 1
        fi
}

# stop_daemon: SIGTERM, wait, PASS/FAIL on its exit status.
stop_daemon() {
        local drc
        kill -TERM "$daemon_pid"
        wait "$daemon_pid"
        drc=$?
        daemon_pid=
        [ "$drc" = 0 ] && pass "noiommud exited cleanly on SIGTERM" || fail "noiommud exited with status $drc on SIGTERM"
}

# For the EXIT trap: a daemon still running (the script stopped on its way) gets SIGTERM, and its
# exit status goes to the console.
reap_daemon() {
        if [ -n "${daemon_pid:-}" ] && kill -0 "$daemon_pid" 2>/dev/null; then
                kill -TERM "$daemon_pid"
                wait "$daemon_pid"
                say "noiommud exited with status $?"
        fi
}

# Every client: setpriv to the user, stdout to its own log (client-TAG.log), alarm() inside
# edu-client.
run_client() {  # TAG USER GROUP [edu-client options...]
        local t=$1 u=$2 g=$3 rc
        shift 3
        setpriv --reuid="$u" --regid="$g" --clear-groups ./edu-client "$SOCK" "$bdf" --tag "$t" \
                --expect-kind "$want_kind" --expect-backend "$want_backend" "$@" >"client-$t.log" 2>&1 8>&-
        rc=$?
        show "client-$t.log"
        return $rc
}

# pagemap_check PID MEMORY_ID DMA_ADDRESS SIZE: as root, every 4 KiB page of the client's
# mapping of memory MEMORY_ID lies at DMA_ADDRESS + offset (one physically contiguous segment,
# as a 2 MiB allocation is). Uses the integration tier's pagemap reader (pagemap.py).
pagemap_check() {
        /usr/bin/python3 - "$@" <<'EOF'
import sys
sys.path.insert(0, ".")
import pagemap
pid, memory, dma, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3], 0), int(sys.argv[4], 0)
rows = [r for r in pagemap.proc_maps(pid) if ("noiommud-" + memory) in r["path"]]
if not rows:
    print("no mapping of noiommud-%s in /proc/%d/maps" % (memory, pid))
    sys.exit(1)
n = pagemap.check_physical_addresses(pid, rows[0], [{"offset": 0, "length": size, "dmaAddress": dma}], size)
print("%d pages of pid %d's mapping of %s are at %#x + offset" % (n, pid, memory, dma))
EOF
}

# The end of every guest script: the kernel's messages on failure, the tally, the status.
finish_guest() {
        local label=$1
        if [ "$n_fail" != 0 ]; then
                echo "guest: ---- kernel messages ----"
                dmesg | grep -iE "vfio|dmar|iommu|taint|$bdf" | tail -n 30
        fi
        echo "guest: $label: $n_pass passed, $n_fail failed"
        [ "$n_fail" = 0 ] && [ "$n_pass" -gt 0 ]
}
