#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# vm-hostile (suite vm): the client-detach hazard of the noiommu cdev, on Linux 7.3
# (linux-7.3.md "Hazard: DETACH by the client"; issue 15). The real noiommud in QEMU with the
# host's dbus-daemon and real polkitd serves edu through backend cdev-noiommu to hostile-client,
# run as "nobody", which DETACHes its device from the daemon's page table, ATTACHes it to bogus
# and small ids, tries /dev/iommu, a PASID attach, GET_HW_INFO and an ATTACH that detaches on
# its way out. After every call, DMA at the originally reported addresses and at a new
# allocation's must land, the addresses must match pagemap, and the daemon's pins must stay;
# the lease's teardown must still quiesce before it frees (guest-hostile.sh).
#
#   test-vm-hostile.sh --kernel BZIMAGE NOIOMMUD HOSTILE_CLIENT LIBNOIOMMU_SO POLICY
#
# The kernel must be a 7.3 (or later) build with IOMMUFD_NOIOMMU and VFIO_DEVICE_CDEV; without
# --kernel, $NOIOMMU_VM_KERNEL_7_3 names it. This script does not build kernels: the caller
# (meson, with the 7.3 kernel selection) passes the one it built. One scenario: noiommu.
#
# Prints PASS/FAIL, the guest's boot time and the table of hostile calls with the kernel's answer.
# Exit 0 only if the guest passed; 77 (loudly) if QEMU, busybox, root or the kernel is missing.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python3=/usr/bin/python3

skip() {
        {
                echo "####################################################################"
                echo "## SKIPPED vm-hostile: $*"
                echo "## Run scripts/install-vm-deps.sh (as root) to install what is missing."
                echo "####################################################################"
        } >&2
        exit 77
}

usage() {
        echo "usage: $0 --kernel BZIMAGE NOIOMMUD HOSTILE_CLIENT LIBNOIOMMU_SO POLICY" >&2
        echo "       (or NOIOMMU_VM_KERNEL_7_3=BZIMAGE $0 NOIOMMUD HOSTILE_CLIENT LIBNOIOMMU_SO POLICY)" >&2
        exit 1
}

kernel=${NOIOMMU_VM_KERNEL_7_3:-}
if [ "${1:-}" = --kernel ]; then
        [ $# -ge 2 ] || usage
        kernel=$2
        shift 2
fi
[ $# -eq 4 ] || usage
daemon=$1 client=$2 lib=$3 policy=$4
for f in "$daemon" "$client" "$lib" "$policy"; do
        [ -f "$f" ] || { echo "vm-hostile: FAIL: $f does not exist" >&2; exit 1; }
done
[ -n "$kernel" ] || skip "no 7.3 kernel given (--kernel BZIMAGE or NOIOMMU_VM_KERNEL_7_3)"
[ -f "$kernel" ] || { echo "vm-hostile: FAIL: kernel $kernel does not exist" >&2; exit 1; }
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is missing (package qemu-system-x86)"
[ -x /bin/busybox ] || skip "/bin/busybox is missing (package busybox-static)"
[ -x "$python3" ] || skip "$python3 is missing"
[ "$(id -u)" = 0 ] || skip "not root: QEMU's 9p export of / must read root-only files (polkit rules)"
for f in /usr/bin/dbus-daemon /usr/lib/polkit-1/polkitd /usr/bin/setpriv /usr/bin/timeout; do
        [ -x "$f" ] || { echo "vm-hostile: FAIL: $f is missing on the host (the guest uses the host's userland)" >&2; exit 1; }
done
# Which kernel: the build cache keeps an "info" file beside the bzImage.
kinfo=$(dirname "$kernel")/info
[ -r "$kinfo" ] && echo "vm-hostile: kernel $kernel ($(head -n1 "$kinfo"))" || echo "vm-hostile: kernel $kernel"

t0=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/noiommu-vm-hostile.XXXXXX")
scenario=noiommu
out=$work/$scenario.out
"$python3" "$here/run-vm.py" "$scenario" "$here/guest-hostile.sh" --kernel "$kernel" \
        --file "$daemon:noiommud" --file "$client:hostile-client" --file "$lib:libnoiommu.so.0" \
        --file "$policy:io.noiommud.policy" --timeout 420 --workdir "$work/$scenario" -v \
        >"$out" 2>"$work/$scenario.err"
rc=$?
sed 's/^/vm-hostile: /' "$work/$scenario.err"
boot=$(sed -n "s/^boot-time $scenario //p" "$out")
serial=$work/$scenario/serial.log

echo "vm-hostile: ---- hostile calls: the kernel's answer, and whether the lease kept working ----"
grep -o "guest: HOSTILE-TABLE .*" "$serial" 2>/dev/null | sed 's/^guest: HOSTILE-TABLE /vm-hostile:   /'
# Belt and braces: besides the exit status, the guest must report the key results.
if [ "$rc" = 0 ] &&
   grep -q "guest: PASS: kernel .* gives edu a noiommu cdev" "$serial" &&
   grep -q "guest: HOSTILE-TABLE hostile-a detach rc=.* verdict=PASS" "$serial" &&
   grep -q "guest: PASS: hostile-a: daemon log: quiesce .* before the first memory freed" "$serial" &&
   grep -q "guest: PASS: hostile-b: daemon log: quiesce .* before the first memory freed" "$serial" &&
   grep -q "guest: PASS: kernel log: no oops, BUG or WARNING" "$serial" &&
   grep -q "guest: hostile: [0-9]* passed, 0 failed" "$serial"; then
        echo "vm-hostile: PASS: $scenario (cdev-noiommu): every hostile call left the lease's pins, addresses and DMA intact; teardown quiesced before freeing (boot ${boot:-?} s, $(($(date +%s) - t0)) s in all)"
        rm -rf "$work"
        exit 0
fi
echo "vm-hostile: FAIL: $scenario (run-vm.py exit $rc); logs in $work/$scenario" >&2
exit 1
