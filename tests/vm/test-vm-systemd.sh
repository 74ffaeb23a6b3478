#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# meson tests "vm-systemd-6.12" and "vm-systemd-7.3" (suite vm): noiommud under real systemd 252
# as PID 1 in QEMU, installed with "meson install" and enabled as the README says, serving edu to
# an unprivileged client doing real DMA: socket activation and the unit's sandbox, kill -9 and the
# watchdog with the real fd store, systemctl stop, the journal catalog and Linux audit
# (guest-systemd.sh has the scenarios).
#
#   test-vm-systemd.sh [--linux 6.12|7] SOURCE_ROOT INSTALL_BUILD_DIR EDU_CLIENT LIBNOIOMMU_SO
#
# The project is built a second time, configured as a distribution would (--prefix=/usr,
# -Dtests=false), in INSTALL_BUILD_DIR (kept, so later runs are incremental), and installed with
# "meson install --destdir" into a tree that run-vm.py lays over the guest's root (overlayfs over
# the host root). edu-client and libnoiommu.so.0 (the test client) come from the test build.
# Linux audit: Debian 12's journald turns kernel auditing off when it starts (journald.conf
# Audit=no by default), and the kernel then drops user records without an error; the guest turns
# it on as a machine that keeps audit records does (guest-systemd.sh: journald Audit=yes).
# Boots once per backend the kernel offers:
#   Linux 6.12: noiommu (group-noiommu), viommu (cdev-iommu behind an emulated Intel IOMMU)
#   Linux 7.x:  noiommu (cdev-noiommu), viommu (cdev-iommu)
# Prints per case PASS/FAIL, the journal lines of what systemd did, the kill -9 -> serving gap,
# and the boot cost under TCG (QEMU start -> guest script start) next to the busybox boot's
# (one busybox boot of the same kernel with an empty script). Exit 0 only if every case passed;
# 77 (loudly) only if QEMU, busybox, the kernel source or root is missing.
set -uo pipefail

# shellcheck source=vm-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/vm-common.sh"
vm_begin vm-systemd "$@"
set -- "${VM_ARGS[@]}"
if [ $# -ne 4 ]; then
        echo "usage: $0 [--linux 6.12|7] SOURCE_ROOT INSTALL_BUILD_DIR EDU_CLIENT LIBNOIOMMU_SO" >&2
        exit 1
fi
src=$1 ibuild=$2 client=$3 lib=$4
for f in "$client" "$lib" "$src/meson.build"; do
        [ -f "$f" ] || { echo "vm-systemd: FAIL: $f does not exist" >&2; exit 1; }
done
vm_need_host
[ -x /lib/systemd/systemd ] || vm_skip "/lib/systemd/systemd is missing: the guest boots the host's systemd"
vm_kernel

work=$(mktemp -d "${TMPDIR:-/tmp}/noiommu-vm-systemd.XXXXXX")

# ---- the project, installed as a distribution would -----------------------------------------
t=$(date +%s)
if [ ! -f "$ibuild/build.ninja" ]; then
        meson setup "$ibuild" "$src" --prefix=/usr -Dtests=false >"$work/meson-setup.log" 2>&1 ||
                { cat "$work/meson-setup.log" >&2; echo "vm-systemd: FAIL: meson setup --prefix=/usr failed" >&2; exit 1; }
fi
ninja -C "$ibuild" >"$work/ninja.log" 2>&1 ||
        { cat "$work/ninja.log" >&2; echo "vm-systemd: FAIL: building the /usr configuration failed" >&2; exit 1; }
meson install -C "$ibuild" --destdir "$work/root" --no-rebuild --quiet >"$work/install.log" 2>&1 ||
        { cat "$work/install.log" >&2; echo "vm-systemd: FAIL: meson install failed" >&2; exit 1; }
echo "vm-systemd: meson setup --prefix=/usr + ninja + meson install --destdir in $(($(date +%s) - t)) s:"
(cd "$work/root" && find . -type f | sort | sed 's/^\./vm-systemd:   /')

case $VM_SERIES in
6.12) cases=(noiommu:group-noiommu viommu:cdev-iommu) ;;
7)    cases=(noiommu:cdev-noiommu viommu:cdev-iommu) ;;
esac

# The busybox boot of the same kernel, for the boot cost comparison.
printf '#!/bin/sh\nexit 0\n' >"$work/empty.sh"
vm_run noiommu "$work/empty.sh" "$work/busybox" --timeout 60 >/dev/null
bb=$(sed -n "s/^boot-time noiommu //p" "$work/busybox.out")

failed=()
summary=()
for c in "${cases[@]}"; do
        scenario=${c%%:*} backend=${c#*:}
        echo "vm-systemd: ---- $scenario: backend $backend on $VM_KERNEL_SOURCE, systemd as PID 1 ----"
        vm_run "$scenario" "$VM_HERE/guest-systemd.sh" "$work/$scenario" --init systemd \
                --install-root "$work/root" \
                --env "NOIOMMU_VM_WANT_BACKEND=$backend" \
                --file "$VM_HERE/guest-lib.sh:guest-lib.sh" \
                --file "$VM_HERE/../integration/pagemap.py:pagemap.py" \
                --file "$client:edu-client" --file "$lib:libnoiommu.so.0" --timeout 420
        rc=$?
        boot=$(sed -n "s/^boot-time $scenario //p" "$work/$scenario.out")
        sd=$(sed -n "s/^boot-time-systemd $scenario //p" "$work/$scenario.out")
        serial=$work/$scenario/serial.log
        gap=$(sed -n 's/.*guest: MEASURE: kill9-gap-ms=\([0-9]*\) reply-ms=\([0-9]*\).*/\1 ms (one reply without a restart: \2 ms)/p' "$serial" | head -n 1)
        rgap=$(sed -n 's/.*guest: MEASURE: reload-gap-ms=\([0-9]*\).*/\1 ms/p' "$serial" | head -n 1)
        jgap=$(sed -n 's/.*guest: MEASURE: journal SIGKILL->lease-restored-ms=\([0-9]*\) SIGKILL->READY-ms=\([0-9]*\) SIGKILL->first-call-served-ms=\([0-9]*\).*/restored \1 ms, READY \2 ms, call served \3 ms/p' "$serial" | head -n 1)
        if [ "$rc" = 0 ] &&
           grep -q "guest: PASS: 1: the first connection started the daemon" "$serial" &&
           grep -q "guest: PASS: 1: sandbox: Seccomp 2" "$serial" &&
           grep -q "guest: PASS: 1: sandbox: device cgroup filter" "$serial" &&
           grep -q "guest: PASS: 2: probe round trip after the restart landed" "$serial" &&
           grep -q "guest: PASS: 2b: reclaim: quiesce" "$serial" &&
           grep -q "guest: PASS: 3: probe round trip after the watchdog restart landed" "$serial" &&
           grep -q "guest: PASS: R: the same pid .* serves" "$serial" &&
           grep -q "guest: PASS: R: the client's pages did not move" "$serial" &&
           grep -q "guest: PASS: R: probe round trip after the reload landed" "$serial" &&
           grep -q "guest: PASS: 4: stop: quiesce" "$serial" &&
           grep -q "guest: PASS: 5: journalctl -x shows the catalog entry 'Device lease granted'" "$serial" &&
           grep -q "guest: $scenario (systemd): [0-9]* passed, 0 failed" "$serial"; then
                echo "vm-systemd: PASS: $scenario ($backend): socket activation in the sandbox, kill -9 and watchdog restarts keep the lease, reload keeps pid, pins and addresses, reclaim quiesce-first, stop ends leases in order, catalog and audit"
                summary+=("PASS $scenario backend=$backend: boot ${boot:-?} s (busybox ${bb:-?} s; switch_root -> script ${sd:-?} s); kill -9 -> reply ${gap:-?}; reload -> reply ${rgap:-?}; journal clock: ${jgap:-?}")
        else
                echo "vm-systemd: FAIL: $scenario (run-vm.py exit $rc); logs in $work/$scenario" >&2
                failed+=("$scenario")
                summary+=("FAIL $scenario backend=$backend boot=${boot:-?}s")
        fi
done

echo "vm-systemd: ---- summary ($VM_KERNEL_SOURCE) ----"
for l in "${summary[@]}"; do
        echo "vm-systemd: $l"
done
echo "vm-systemd: boot cost under TCG (QEMU start -> guest script start): busybox stage one ${bb:-?} s, systemd as PID 1 as above"
if [ ${#failed[@]} -ne 0 ]; then
        echo "vm-systemd: FAIL: ${failed[*]} (kept $work)" >&2
        exit 1
fi
rm -rf "$work"
echo "vm-systemd: PASS: ${#cases[@]} cases on $VM_KERNEL_SOURCE ($(($(date +%s) - VM_T0)) s in all)"
exit 0
