#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# meson tests "vm-daemon-6.12" and "vm-daemon-7.3" (suite vm): the real noiommud in QEMU, with
# the host's dbus-daemon and real polkitd, serving edu to an unprivileged client that makes edu
# DMA into its memory (both directions, MSI), on one kernel series.
#
#   test-vm-daemon.sh [--linux 6.12|7] NOIOMMUD EDU_CLIENT LIBNOIOMMU_SO POLICY
#
# Builds or reuses the guest kernel (build-kernel.sh), then boots it once per case and runs
# guest-daemon.sh in it:
#   Linux 6.12 (VFIO's container)
#     noiommu        group-noiommu   physical addresses from pagemap
#     viommu         cdev-iommu      IOVAs, behind an emulated Intel IOMMU
#   Linux 7.x (the merged noiommu cdev, iommufd's container; edu has both noiommu nodes)
#     noiommu        cdev-noiommu    the daemon's choice: IOAS_MAP pins, GET_PA addresses
#     noiommu-group  group-noiommu   the same boot, forced by the deviceBackends setting,
#                                    through iommufd's /dev/vfio/vfio
#     viommu         cdev-iommu      IOVAs, behind an emulated Intel IOMMU
# The binaries and the policy are copied into the guest's results share (run-vm.py --file): a
# build tree under /tmp would be invisible through the host root, and edu-client finds
# libnoiommu.so.0 there through LD_LIBRARY_PATH (its RUNPATH points into the build tree).
#
# Prints per case PASS/FAIL, the boot time, and the acquire latency medians measured in the
# guest (connect -> device fd; connect -> 2 MiB with addresses); writes the medians to
# $NOIOMMU_BUILD_ROOT/meson-logs/vm-latency-<series>.txt, and the 7.x run prints them beside
# the 6.12 run's when that file exists. Exit 0 only if every case passed; 77 (loudly) only if
# QEMU, busybox, the kernel source or root is missing.
set -uo pipefail

# shellcheck source=vm-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/vm-common.sh"
vm_begin vm-daemon "$@"
set -- "${VM_ARGS[@]}"
if [ $# -ne 4 ]; then
        echo "usage: $0 [--linux 6.12|7] NOIOMMUD EDU_CLIENT LIBNOIOMMU_SO POLICY" >&2
        exit 1
fi
daemon=$1 client=$2 lib=$3 policy=$4
# noiommuctl (for the guest's "noiommuctl --json list/monitor") comes from the test environment
# (tests/meson.build), else from beside libnoiommu in the build tree.
ctl=${NOIOMMUCTL_TEST_BINARY:-$(dirname "$lib")/noiommuctl}
for f in "$daemon" "$client" "$lib" "$policy" "$ctl"; do
        [ -f "$f" ] || { echo "vm-daemon: FAIL: $f does not exist" >&2; exit 1; }
done
vm_need_host
vm_kernel

case $VM_SERIES in
6.12) cases=(noiommu:group-noiommu viommu:cdev-iommu) ;;
7)    cases=(noiommu:cdev-noiommu noiommu-group:group-noiommu viommu:cdev-iommu) ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/noiommu-vm-daemon.XXXXXX")
failed=()
summary=()
medians=()
for c in "${cases[@]}"; do
        name=${c%%:*} backend=${c#*:} scenario=${name%%-*}
        echo "vm-daemon: ---- $name: backend $backend on $VM_KERNEL_SOURCE ----"
        vm_run "$scenario" "$VM_HERE/guest-daemon.sh" "$work/$name" \
                --env "NOIOMMU_VM_WANT_BACKEND=$backend" \
                --file "$VM_HERE/guest-lib.sh:guest-lib.sh" \
                --file "$VM_HERE/../integration/pagemap.py:pagemap.py" \
                --file "$daemon:noiommud" --file "$client:edu-client" --file "$ctl:noiommuctl" \
                --file "$lib:libnoiommu.so.0" --file "$policy:io.noiommud.policy" --timeout 300
        rc=$?
        boot=$(sed -n "s/^boot-time $scenario //p" "$work/$name.out")
        serial=$work/$name/serial.log
        # Belt and braces: besides the exit status, the guest must report the key results.
        if [ "$rc" = 0 ] &&
           grep -q "guest: PASS: ListDevices: edu is served through $backend" "$serial" &&
           grep -q "guest: PASS: nobody: acquire + 2 MiB + BAR + Bus Master + MSI + DMA at the reported .* ($backend)" "$serial" &&
           grep -q "guest: PASS: daemon audit record of the grant" "$serial" &&
           grep -q "guest: PASS: daemon log: quiesce .* before memory freed" "$serial" &&
           grep -q "guest: PASS: monitor: device-removed (unbind) and device-added (vfio-pci)" "$serial" &&
           grep -q "guest: PASS: a second client acquired" "$serial" &&
           grep -q "guest: PASS: uid .* gets PermissionDenied" "$serial" &&
           grep -q "guest: $scenario: [0-9]* passed, 0 failed" "$serial" &&
           { [ "$backend" = cdev-iommu ] || grep -q "guest: PASS: pagemap (as root)" "$serial"; } &&
           { [ "$backend" != cdev-noiommu ] || grep -q "guest: PASS: kernel log: 'Adding kernel taint for vfio-noiommu cdev'" "$serial"; }; then
                echo "vm-daemon: PASS: $name ($backend): daemon-granted DMA landed, kill -9 mid-lease quiesced before freeing, unbind/bind seen by monitor, device re-granted, denial works"
                summary+=("PASS $name backend=$backend boot=${boot:-?}s")
        else
                echo "vm-daemon: FAIL: $name (run-vm.py exit $rc); logs in $work/$name" >&2
                failed+=("$name")
                summary+=("FAIL $name backend=$backend boot=${boot:-?}s")
        fi
        # Medians of the clients' own measurements (microseconds, in the TCG guest).
        m=$(sed -n "s/.*guest: LATENCY $scenario $backend [a-z0-9-]* device_fd_us=\([0-9]*\) memory_us=\([0-9]*\).*/\1 \2/p" "$serial" |
            "$VM_PYTHON" -c '
import statistics, sys
rows = [tuple(map(int, l.split())) for l in sys.stdin if l.strip()]
if rows:
    print("%d %d %d" % (len(rows), statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows)))
')
        if [ -n "$m" ]; then
                read -r runs dev_us mem_us <<<"$m"
                medians+=("$(printf '%-8s %-14s %-14s %6d runs  device fd %7.1f ms  2 MiB + addresses %7.1f ms' \
                        "${VM_KERNEL_SOURCE#linux-source-}" "$name" "$backend" "$runs" \
                        "$(bc <<<"scale=1; $dev_us / 1000")" "$(bc <<<"scale=1; $mem_us / 1000")")")
        fi
done

echo "vm-daemon: ---- summary ($VM_KERNEL_SOURCE) ----"
for l in "${summary[@]}"; do
        echo "vm-daemon: $l"
done
echo "vm-daemon: ---- acquire latency in the guest (TCG), medians: connect -> device fd; connect -> 2 MiB with addresses ----"
lat_file=${NOIOMMU_BUILD_ROOT:+$NOIOMMU_BUILD_ROOT/meson-logs/vm-latency-$VM_SERIES.txt}
if [ -n "$lat_file" ] && [ -d "$(dirname "$lat_file")" ]; then
        printf '%s\n' "${medians[@]}" >"$lat_file"
fi
other=${NOIOMMU_BUILD_ROOT:+$NOIOMMU_BUILD_ROOT/meson-logs/vm-latency-6.12.txt}
if [ "$VM_SERIES" = 7 ] && [ -n "$other" ] && [ -f "$other" ]; then
        while IFS= read -r l; do
                echo "vm-daemon: $l   (vm-daemon-6.12, $(date -r "$other" +%H:%M))"
        done <"$other"
fi
for l in "${medians[@]}"; do
        echo "vm-daemon: $l"
done
if [ ${#failed[@]} -ne 0 ]; then
        echo "vm-daemon: FAIL: ${failed[*]} (kept $work)" >&2
        exit 1
fi
rm -rf "$work"
echo "vm-daemon: PASS: ${#cases[@]} cases on $VM_KERNEL_SOURCE ($(($(date +%s) - VM_T0)) s in all)"
exit 0
