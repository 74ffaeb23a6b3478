#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# meson tests "vm-dma-6.12" and "vm-dma-7.3" (suite vm): the kernel's VFIO with real edu DMA in
# QEMU, with no daemon at all (dma-probe as root in the guest), on one kernel series: the facts
# the daemon relies on, proven on the kernel itself.
#
#   test-vm-dma.sh [--linux 6.12|7] DMA_PROBE
#
# Builds or reuses the guest kernel (build-kernel.sh), then boots it in both scenarios:
#   noiommu  the legacy group noiommu path (on 6.12 VFIO's container, on 7.x iommufd's
#            /dev/vfio/vfio; 7.x must also show the noiommu cdev), bus address = PA
#   viommu   cdev + iommufd behind an emulated Intel IOMMU, bus address = IOVA
# The noiommu cdev itself is exercised through the daemon (vm-daemon-7.3, vm-hostile-7.3).
# Exit 0 only if both passed; 77 (loudly) only if QEMU, busybox, the kernel source or root is
# missing.
set -uo pipefail

# shellcheck source=vm-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/vm-common.sh"
vm_begin vm-dma "$@"
probe=${VM_ARGS[0]:-}
if [ -z "$probe" ] || [ ! -x "$probe" ]; then
        echo "usage: $0 [--linux 6.12|7] DMA_PROBE (the built dma-probe)" >&2
        exit 1
fi
vm_need_host
vm_kernel

work=$(mktemp -d "${TMPDIR:-/tmp}/noiommu-vm-dma.XXXXXX")
failed=()
for scenario in noiommu viommu; do
        echo "vm-dma: ---- scenario $scenario on $VM_KERNEL_SOURCE ----"
        vm_run "$scenario" "$VM_HERE/guest-dma.sh" "$work/$scenario" --file "$probe:dma-probe" --timeout 240
        rc=$?
        plog=$work/$scenario/results/dma-probe.log
        # Belt and braces: besides the exit status, the probe must say the bytes landed and
        # the MSI arrived.
        if [ "$rc" = 0 ] &&
           grep -q ": ok: the 4000 pattern bytes landed at buffer offset" "$plog" &&
           grep -q ": ok: MSI for the edu -> RAM DMA completion arrived" "$plog" &&
           grep -q " passed, 0 failed$" "$plog"; then
                echo "vm-dma: PASS: $scenario: edu DMA landed in the buffer and the MSI arrived"
        else
                echo "vm-dma: FAIL: $scenario (run-vm.py exit $rc); logs in $work/$scenario" >&2
                failed+=("$scenario")
        fi
done

if [ ${#failed[@]} -ne 0 ]; then
        echo "vm-dma: FAIL: ${failed[*]} (kept $work)" >&2
        exit 1
fi
rm -rf "$work"
echo "vm-dma: PASS: both scenarios on $VM_KERNEL_SOURCE ($(($(date +%s) - VM_T0)) s in all)"
exit 0
