#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# meson tests "vm-restart-6.12" and "vm-restart-7.3" (suite vm): kill -9 noiommud in QEMU while
# an unprivileged client's edu is doing DMA; restart it with its fd store
# (tests/integration/fdstore_manager.py as the service manager); the client keeps its lease and
# its DMA still lands; then the client dies and the restarted daemon quiesces the device before
# it frees the memory.
#
#   test-vm-restart.sh [--linux 6.12|7] NOIOMMUD EDU_CLIENT LIBNOIOMMU_SO POLICY
#
# Builds or reuses the guest kernel (build-kernel.sh), then boots it once per case with
# run-vm.py and runs guest-restart.sh (polkit and bus set-up) and restart-driver.py (the checks):
#   Linux 6.12: noiommu (group-noiommu), viommu (cdev-iommu behind an emulated Intel IOMMU)
#   Linux 7.x:  noiommu (cdev-noiommu: the restored mappings' addresses are checked with GET_PA),
#               noiommu-group (group-noiommu through iommufd's container), viommu (cdev-iommu)
# The four files plus fdstore_manager.py and restart-driver.py are copied into the guest's
# results share (run-vm.py --file).
#
# Exit 0 only if every case passed; 77 (loudly) only if QEMU, busybox, the kernel source or root
# is missing.
set -uo pipefail

# shellcheck source=vm-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/vm-common.sh"
vm_begin vm-restart "$@"
set -- "${VM_ARGS[@]}"
if [ $# -ne 4 ]; then
        echo "usage: $0 [--linux 6.12|7] NOIOMMUD EDU_CLIENT LIBNOIOMMU_SO POLICY" >&2
        exit 1
fi
daemon=$1 client=$2 lib=$3 policy=$4
for f in "$daemon" "$client" "$lib" "$policy"; do
        [ -f "$f" ] || { echo "vm-restart: FAIL: $f does not exist" >&2; exit 1; }
done
vm_need_host
vm_kernel

case $VM_SERIES in
6.12) cases=(noiommu:group-noiommu viommu:cdev-iommu) ;;
7)    cases=(noiommu:cdev-noiommu noiommu-group:group-noiommu viommu:cdev-iommu) ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/noiommu-vm-restart.XXXXXX")
failed=()
summary=()
for c in "${cases[@]}"; do
        name=${c%%:*} backend=${c#*:} scenario=${name%%-*}
        echo "vm-restart: ---- $name: backend $backend on $VM_KERNEL_SOURCE ----"
        vm_run "$scenario" "$VM_HERE/guest-restart.sh" "$work/$name" \
                --env "NOIOMMU_VM_WANT_BACKEND=$backend" \
                --file "$VM_HERE/guest-lib.sh:guest-lib.sh" \
                --file "$daemon:noiommud" --file "$client:edu-client" --file "$lib:libnoiommu.so.0" \
                --file "$policy:io.noiommud.policy" \
                --file "$VM_HERE/../integration/fdstore_manager.py:fdstore_manager.py" \
                --file "$VM_HERE/restart-driver.py:restart-driver.py" --timeout 240
        rc=$?
        boot=$(sed -n "s/^boot-time $scenario //p" "$work/$name.out")
        serial=$work/$name/serial.log
        # Belt and braces: besides the exit status, the guest must report the key results.
        if [ "$rc" = 0 ] &&
           grep -q "guest: PASS: daemon log: lease .* restored" "$serial" &&
           grep -q "guest: PASS: probe round trip after the restart landed" "$serial" &&
           grep -q "guest: PASS: daemon log: quiesce .* before memory freed" "$serial" &&
           grep -q "guest: PASS: a second client acquired" "$serial" &&
           grep -q "guest: $scenario: [0-9]* passed, 0 failed" "$serial"; then
                echo "vm-restart: PASS: $name ($backend): lease survived kill -9 + restart with DMA running, DMA still lands, client death quiesced before freeing, device re-granted"
                summary+=("PASS $name backend=$backend boot=${boot:-?}s")
        else
                echo "vm-restart: FAIL: $name (run-vm.py exit $rc); logs in $work/$name" >&2
                failed+=("$name")
                summary+=("FAIL $name backend=$backend boot=${boot:-?}s")
        fi
done

echo "vm-restart: ---- summary ($VM_KERNEL_SOURCE) ----"
for l in "${summary[@]}"; do
        echo "vm-restart: $l"
done
if [ ${#failed[@]} -ne 0 ]; then
        echo "vm-restart: FAIL: ${failed[*]} (kept $work)" >&2
        exit 1
fi
rm -rf "$work"
echo "vm-restart: PASS: ${#cases[@]} cases on $VM_KERNEL_SOURCE ($(($(date +%s) - VM_T0)) s in all)"
exit 0
