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
#   test-vm-hostile.sh --linux 7 NOIOMMUD HOSTILE_CLIENT LIBNOIOMMU_SO POLICY
#
# Needs a kernel with the noiommu cdev: the 7.x series of build-kernel.sh (--linux 7, the
# default here); the guest fails loudly if edu has no noiommu cdev. One scenario: noiommu.
#
# Prints PASS/FAIL, the guest's boot time and the table of hostile calls with the kernel's answer.
# Exit 0 only if the guest passed; 77 (loudly) if QEMU, busybox, root or the kernel source is
# missing.
set -uo pipefail

# shellcheck source=vm-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/vm-common.sh"
[ "${1:-}" = --linux ] || set -- --linux 7 "$@"
vm_begin vm-hostile "$@"
set -- "${VM_ARGS[@]}"
if [ $# -ne 4 ]; then
        echo "usage: $0 [--linux 7] NOIOMMUD HOSTILE_CLIENT LIBNOIOMMU_SO POLICY" >&2
        exit 1
fi
daemon=$1 client=$2 lib=$3 policy=$4
for f in "$daemon" "$client" "$lib" "$policy"; do
        [ -f "$f" ] || { echo "vm-hostile: FAIL: $f does not exist" >&2; exit 1; }
done
vm_need_host
vm_kernel

work=$(mktemp -d "${TMPDIR:-/tmp}/noiommu-vm-hostile.XXXXXX")
scenario=noiommu
vm_run "$scenario" "$VM_HERE/guest-hostile.sh" "$work/$scenario" \
        --env NOIOMMU_VM_WANT_BACKEND=cdev-noiommu \
        --file "$VM_HERE/guest-lib.sh:guest-lib.sh" \
        --file "$daemon:noiommud" --file "$client:hostile-client" --file "$lib:libnoiommu.so.0" \
        --file "$policy:io.noiommud.policy" --timeout 420
rc=$?
boot=$(sed -n "s/^boot-time $scenario //p" "$work/$scenario.out")
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
        echo "vm-hostile: PASS: $scenario (cdev-noiommu): every hostile call left the lease's pins, addresses and DMA intact; teardown quiesced before freeing (boot ${boot:-?} s, $(($(date +%s) - VM_T0)) s in all)"
        rm -rf "$work"
        exit 0
fi
echo "vm-hostile: FAIL: $scenario (run-vm.py exit $rc); logs in $work/$scenario" >&2
exit 1
