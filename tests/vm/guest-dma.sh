#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Guest side of the vm-dma test (run by run-vm.py inside the guest, as root, in the chroot).
# Checks the VFIO nodes the scenario must produce, then runs dma-probe (beside this script in
# the results share) on edu. Exit status: dma-probe's, or 1 if a node is wrong.
set -u
cd "$NOIOMMU_VM_RESULTS" || exit 1
# shellcheck disable=SC1091
[ -f guest.env ] && . ./guest.env
scenario=$NOIOMMU_VM_SCENARIO
bdf=$NOIOMMU_VM_BDF
series=${NOIOMMU_VM_KERNEL_SERIES:-6.12}
echo "guest: scenario $scenario, edu at ${bdf:-NONE}, kernel $(uname -r) (series $series)"
[ -n "$bdf" ] || { echo "guest: FAIL: no edu device"; exit 1; }
echo "guest: /dev/vfio:" /dev/vfio/* "/dev/vfio/devices:" /dev/vfio/devices/*
echo "guest: $(grep -E '^HugePages_(Total|Free)' /proc/meminfo | tr -s ' \n' '  ')"

bad=0
need() { if [ -e "$1" ]; then echo "guest: ok: $1 exists"; else echo "guest: FAIL: $1 is missing"; bad=1; fi; }
absent() { if [ -e "$1" ]; then echo "guest: FAIL: $1 exists"; bad=1; else echo "guest: ok: $1 is absent"; fi; }
group=$(readlink "/sys/bus/pci/devices/$bdf/iommu_group")
group=${group##*/}
case "$scenario" in
noiommu)
        mode=group
        need /dev/vfio/vfio
        need "/dev/vfio/noiommu-$group"
        if [ "$series" = 7 ]; then
                # 7.3 merged the noiommu cdev: with a container backend (here iommufd's) the
                # device has both paths (matrix case 3, linux-7.3.md); the probe takes the group.
                for d in "/sys/bus/pci/devices/$bdf/vfio-dev/"*; do need "/dev/vfio/devices/${d##*/}"; done
                case "$(ls "/sys/bus/pci/devices/$bdf/vfio-dev/")" in
                noiommu-vfio*) echo "guest: ok: the cdev is a noiommu cdev" ;;
                *) echo "guest: FAIL: vfio-dev/ has no noiommu-vfioN entry"; bad=1 ;;
                esac
        else
                # Before 7.3 a noiommu device gets no cdev (vm-testing.md §1).
                absent /dev/vfio/devices
        fi
        [ "$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode)" = Y ] ||
                { echo "guest: FAIL: enable_unsafe_noiommu_mode is not Y"; bad=1; }
        ;;
viommu)
        mode=cdev
        need /dev/iommu
        need "/dev/vfio/$group"
        for d in "/sys/bus/pci/devices/$bdf/vfio-dev/"vfio*; do need "/dev/vfio/devices/${d##*/}"; done
        ;;
*)
        echo "guest: FAIL: unknown scenario $scenario"; exit 1 ;;
esac

# Live on the console and kept in dma-probe.log; dash has no pipefail, so the status goes
# through a file.
rm -f dma-probe.rc
{ ./dma-probe "$mode" "$bdf" 2>&1; echo $? >dma-probe.rc; } | tee dma-probe.log
rc=$(cat dma-probe.rc 2>/dev/null || echo 1)
echo "guest: kernel messages about vfio/iommu/DMAR:"
dmesg | grep -iE 'vfio|dmar|iommu|remap' | tail -n 25
[ "$bad" = 0 ] || rc=1
echo "guest: exit $rc"
exit "$rc"
