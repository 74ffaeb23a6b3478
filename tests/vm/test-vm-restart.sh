#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# meson test "vm-restart" (suite vm): kill -9 noiommud in QEMU while an unprivileged client's edu
# is doing DMA; restart it with its fd store (tests/integration/fdstore_manager.py as the service
# manager); the client keeps its lease and its DMA still lands; then the client dies and the
# restarted daemon quiesces the device before it frees the memory.
#
#   test-vm-restart.sh NOIOMMUD EDU_CLIENT LIBNOIOMMU_SO POLICY
#
# Builds or reuses the guest kernel (build-kernel.sh), then boots it once per scenario with
# run-vm.py and runs guest-restart.sh (polkit and bus setup) and restart-driver.py (the checks):
#   noiommu  backend group-noiommu
#   viommu   backend cdev-iommu behind an emulated Intel IOMMU
# The four files plus fdstore_manager.py and restart-driver.py are copied into the guest's
# results share (run-vm.py --file).
#
# Exit 0 only if both scenarios passed; 77 (loudly) only if QEMU, busybox, the kernel source
# package or root is missing (scripts/install-vm-deps.sh installs them).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python3=/usr/bin/python3

skip() {
        {
                echo "####################################################################"
                echo "## SKIPPED vm-restart: $*"
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
for f in "$daemon" "$client" "$lib" "$policy"; do
        [ -f "$f" ] || { echo "vm-restart: FAIL: $f does not exist" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is missing (package qemu-system-x86)"
[ -x /bin/busybox ] || skip "/bin/busybox is missing (package busybox-static)"
[ -r /usr/src/linux-source-6.12.tar.xz ] || skip "/usr/src/linux-source-6.12.tar.xz is missing (package linux-source-6.12)"
[ -x "$python3" ] || skip "$python3 is missing"
[ "$(id -u)" = 0 ] || skip "not root: QEMU's 9p export of / must read root-only files (polkit rules)"
# The guest runs the host's own userland: these must be installed on the host. Missing ones are
# a broken test machine, not a reason to skip.
for f in /usr/bin/dbus-daemon /usr/lib/polkit-1/polkitd /usr/bin/setpriv /usr/bin/timeout; do
        [ -x "$f" ] || { echo "vm-restart: FAIL: $f is missing on the host (the guest uses the host's userland)" >&2; exit 1; }
done

t0=$(date +%s)
kernel=$("$here/build-kernel.sh" "$here/kernel.config")
krc=$?
if [ "$krc" = 77 ]; then
        skip "the kernel source package is not installed"
elif [ "$krc" != 0 ] || [ ! -f "$kernel" ]; then
        echo "vm-restart: FAIL: building the guest kernel failed (exit $krc)" >&2
        exit 1
fi
echo "vm-restart: kernel $kernel (ready after $(($(date +%s) - t0)) s)"

work=$(mktemp -d "${TMPDIR:-/tmp}/noiommu-vm-restart.XXXXXX")
failed=()
summary=()
for scenario in noiommu viommu; do
        echo "vm-restart: ---- scenario $scenario ----"
        case $scenario in
        noiommu) backend=group-noiommu ;;
        viommu)  backend=cdev-iommu ;;
        esac
        out=$work/$scenario.out
        "$python3" "$here/run-vm.py" "$scenario" "$here/guest-restart.sh" --kernel "$kernel" \
                --file "$daemon:noiommud" --file "$client:edu-client" --file "$lib:libnoiommu.so.0" \
                --file "$policy:io.noiommud.policy" \
                --file "$here/../integration/fdstore_manager.py:fdstore_manager.py" \
                --file "$here/restart-driver.py:restart-driver.py" --timeout 240 --workdir "$work/$scenario" -v \
                >"$out" 2>"$work/$scenario.err"
        rc=$?
        # The serial console (with host timestamps) is the guest's whole story.
        sed 's/^/vm-restart: /' "$work/$scenario.err"
        boot=$(sed -n "s/^boot-time $scenario //p" "$out")
        serial=$work/$scenario/serial.log
        lat=$(grep -o "guest: LATENCY $scenario .*" "$serial" 2>/dev/null | sed 's/^guest: //')
        # Belt and braces: besides the exit status, the guest must report the key results.
        if [ "$rc" = 0 ] &&
           grep -q "guest: PASS: daemon log: lease .* restored" "$serial" &&
           grep -q "guest: PASS: probe round trip after the restart landed" "$serial" &&
           grep -q "guest: PASS: daemon log: quiesce .* before memory freed" "$serial" &&
           grep -q "guest: PASS: a second client acquired" "$serial" &&
           grep -q "guest: $scenario: [0-9]* passed, 0 failed" "$serial"; then
                echo "vm-restart: PASS: $scenario ($backend): lease survived kill -9 + restart with DMA running, DMA still lands, client death quiesced before freeing, device re-granted"
                summary+=("PASS $scenario backend=$backend boot=${boot:-?}s")
        else
                echo "vm-restart: FAIL: $scenario (run-vm.py exit $rc); logs in $work/$scenario" >&2
                failed+=("$scenario")
                summary+=("FAIL $scenario backend=$backend boot=${boot:-?}s")
        fi
        while IFS= read -r l; do
                [ -n "$l" ] && summary+=("  $l")
        done <<<"$lat"
done

echo "vm-restart: ---- summary ----"
for l in "${summary[@]}"; do
        echo "vm-restart: $l"
done
if [ ${#failed[@]} -ne 0 ]; then
        echo "vm-restart: FAIL: ${failed[*]} (kept $work)" >&2
        exit 1
fi
rm -rf "$work"
echo "vm-restart: PASS: both scenarios ($(($(date +%s) - t0)) s in all)"
exit 0
