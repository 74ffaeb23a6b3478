#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# meson test "vm-dma" (suite vm): real kernel VFIO with real edu DMA in QEMU, without the daemon.
#
#   test-vm-dma.sh DMA_PROBE
#
# Builds or reuses the guest kernel (build-kernel.sh; ~9 minutes on a cache miss), then boots it
# twice with run-vm.py and runs dma-probe in the guest:
#   noiommu  legacy group noiommu: PA from pagemap, DMA + MSI        (kernel-api.md §7)
#   viommu   cdev + iommufd behind an emulated Intel IOMMU, IOVA DMA (kernel-api.md §5)
# Exit 0 only if the DMA bytes landed and the MSI arrived in both; 77 (loudly) only if QEMU,
# busybox or the kernel source package is missing: scripts/install-vm-deps.sh installs them.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
probe=${1:-}
python3=/usr/bin/python3

skip() {
        {
                echo "####################################################################"
                echo "## SKIPPED vm-dma: $*"
                echo "## Run scripts/install-vm-deps.sh (as root) to install what is missing."
                echo "####################################################################"
        } >&2
        exit 77
}

if [ -z "$probe" ] || [ ! -x "$probe" ]; then
        echo "usage: $0 DMA_PROBE (the built dma-probe)" >&2
        exit 1
fi
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is missing (package qemu-system-x86)"
[ -x /bin/busybox ] || skip "/bin/busybox is missing (package busybox-static)"
[ -r /usr/src/linux-source-6.12.tar.xz ] || skip "/usr/src/linux-source-6.12.tar.xz is missing (package linux-source-6.12)"
[ -x "$python3" ] || skip "$python3 is missing"
[ "$(id -u)" = 0 ] || skip "not root: QEMU's 9p export of / must read root-only files, dma-probe needs root in the guest"

t0=$(date +%s)
kernel=$("$here/build-kernel.sh" "$here/kernel.config")
krc=$?
if [ "$krc" = 77 ]; then
        skip "the kernel source package is not installed"
elif [ "$krc" != 0 ] || [ ! -f "$kernel" ]; then
        echo "vm-dma: FAIL: building the guest kernel failed (exit $krc)" >&2
        exit 1
fi
echo "vm-dma: kernel $kernel (ready after $(($(date +%s) - t0)) s)"

work=$(mktemp -d "${TMPDIR:-/tmp}/noiommu-vm-dma.XXXXXX")
failed=()
for scenario in noiommu viommu; do
        echo "vm-dma: ---- scenario $scenario ----"
        "$python3" "$here/run-vm.py" "$scenario" "$here/guest-dma.sh" --kernel "$kernel" \
                --file "$probe:dma-probe" --timeout 240 --workdir "$work/$scenario"
        rc=$?
        plog=$work/$scenario/results/dma-probe.log
        if [ -f "$plog" ]; then
                sed 's/^/vm-dma: guest: /' "$plog"
        fi
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
echo "vm-dma: PASS: both scenarios ($(($(date +%s) - t0)) s in all)"
exit 0
