#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# meson test "vm-daemon" (suite vm): the real noiommud in QEMU, with the host's dbus-daemon and
# real polkitd, serving edu to an unprivileged client that makes edu DMA into its memory.
#
#   test-vm-daemon.sh NOIOMMUD EDU_CLIENT LIBNOIOMMU_SO POLICY
#
# Builds or reuses the guest kernel (build-kernel.sh; ~10 minutes on a cache miss), then boots it
# twice with run-vm.py and runs guest-daemon.sh in it:
#   noiommu  backend group-noiommu, the client programs physical addresses
#   viommu   backend cdev-iommu behind an emulated Intel IOMMU, the client programs IOVAs
# The four files and noiommuctl are copied into the guest's results share (run-vm.py --file): a
# build tree under /tmp would be invisible through the host root, and edu-client finds
# libnoiommu.so.0 there through LD_LIBRARY_PATH (its RUNPATH points into the build tree).
#
# Prints per scenario: PASS/FAIL, the guest's boot time and the acquire latencies measured in
# the guest. Exit 0 only if both scenarios passed; 77 (loudly) only if QEMU, busybox, the kernel
# source package or root is missing (scripts/install-vm-deps.sh installs them).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python3=/usr/bin/python3

skip() {
        {
                echo "####################################################################"
                echo "## SKIPPED vm-daemon: $*"
                echo "## Run scripts/install-vm-deps.sh (as root) to install what is missing."
                echo "####################################################################"
        } >&2
        exit 77
}

if [ $# -ne 4 ]; then
        echo "usage: $0 NOIOMMUD EDU_CLIENT LIBNOIOMMU_SO POLICY" >&2
        exit 1
fi
daemon=$1 client=$2 lib=$3 policy=$4
# noiommuctl (for the guest's "noiommuctl --json monitor") comes from the test environment
# (tests/meson.build), else from beside libnoiommu in the build tree.
ctl=${NOIOMMUCTL_TEST_BINARY:-$(dirname "$lib")/noiommuctl}
for f in "$daemon" "$client" "$lib" "$policy" "$ctl"; do
        [ -f "$f" ] || { echo "vm-daemon: FAIL: $f does not exist" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is missing (package qemu-system-x86)"
[ -x /bin/busybox ] || skip "/bin/busybox is missing (package busybox-static)"
[ -r /usr/src/linux-source-6.12.tar.xz ] || skip "/usr/src/linux-source-6.12.tar.xz is missing (package linux-source-6.12)"
[ -x "$python3" ] || skip "$python3 is missing"
[ "$(id -u)" = 0 ] || skip "not root: QEMU's 9p export of / must read root-only files (polkit rules)"
# The guest runs the host's own userland: these must be installed on the host. Missing ones are
# a broken test machine, not a reason to skip.
for f in /usr/bin/dbus-daemon /usr/lib/polkit-1/polkitd /usr/bin/setpriv /usr/bin/timeout; do
        [ -x "$f" ] || { echo "vm-daemon: FAIL: $f is missing on the host (the guest uses the host's userland)" >&2; exit 1; }
done

t0=$(date +%s)
kernel=$("$here/build-kernel.sh" "$here/kernel.config")
krc=$?
if [ "$krc" = 77 ]; then
        skip "the kernel source package is not installed"
elif [ "$krc" != 0 ] || [ ! -f "$kernel" ]; then
        echo "vm-daemon: FAIL: building the guest kernel failed (exit $krc)" >&2
        exit 1
fi
echo "vm-daemon: kernel $kernel (ready after $(($(date +%s) - t0)) s)"

work=$(mktemp -d "${TMPDIR:-/tmp}/noiommu-vm-daemon.XXXXXX")
failed=()
summary=()
for scenario in noiommu viommu; do
        echo "vm-daemon: ---- scenario $scenario ----"
        case $scenario in
        noiommu) backend=group-noiommu ;;
        viommu)  backend=cdev-iommu ;;
        esac
        out=$work/$scenario.out
        "$python3" "$here/run-vm.py" "$scenario" "$here/guest-daemon.sh" --kernel "$kernel" \
                --file "$daemon:noiommud" --file "$client:edu-client" --file "$ctl:noiommuctl" --file "$lib:libnoiommu.so.0" \
                --file "$policy:io.noiommud.policy" --timeout 240 --workdir "$work/$scenario" -v \
                >"$out" 2>"$work/$scenario.err"
        rc=$?
        # The serial console (with host timestamps) is the guest's whole story.
        sed 's/^/vm-daemon: /' "$work/$scenario.err"
        boot=$(sed -n "s/^boot-time $scenario //p" "$out")
        serial=$work/$scenario/serial.log
        lat=$(grep -o "guest: LATENCY $scenario .*" "$serial" 2>/dev/null | sed 's/^guest: //')
        # Belt and braces: besides the exit status, the guest must report the key results.
        if [ "$rc" = 0 ] &&
           grep -q "guest: PASS: nobody: acquire + 2 MiB + BAR + Bus Master + MSI + DMA at the reported .* ($backend)" "$serial" &&
           grep -q "guest: PASS: daemon log: quiesce .* before memory freed" "$serial" &&
           grep -q "guest: PASS: monitor: device-removed (unbind) and device-added (vfio-pci)" "$serial" &&
           grep -q "guest: PASS: a second client acquired" "$serial" &&
           grep -q "guest: PASS: uid .* gets PermissionDenied" "$serial" &&
           grep -q "guest: $scenario: [0-9]* passed, 0 failed" "$serial"; then
                echo "vm-daemon: PASS: $scenario ($backend): daemon-granted DMA landed, kill -9 mid-lease quiesced before freeing, unbind/bind seen by monitor, device re-granted, denial works"
                summary+=("PASS $scenario backend=$backend boot=${boot:-?}s")
        else
                echo "vm-daemon: FAIL: $scenario (run-vm.py exit $rc); logs in $work/$scenario" >&2
                failed+=("$scenario")
                summary+=("FAIL $scenario backend=$backend boot=${boot:-?}s")
        fi
        while IFS= read -r l; do
                [ -n "$l" ] && summary+=("  $l")
        done <<<"$lat"
done

echo "vm-daemon: ---- summary (latencies in microseconds, measured in the TCG guest) ----"
for l in "${summary[@]}"; do
        echo "vm-daemon: $l"
done
if [ ${#failed[@]} -ne 0 ]; then
        echo "vm-daemon: FAIL: ${failed[*]} (kept $work)" >&2
        exit 1
fi
rm -rf "$work"
echo "vm-daemon: PASS: both scenarios ($(($(date +%s) - t0)) s in all)"
exit 0
