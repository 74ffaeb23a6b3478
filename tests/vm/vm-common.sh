# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced (bash) by the host side of every vm test (test-vm-*.sh): the checks every test makes
# before it boots anything, the choice and build of the guest kernel, and one call that boots
# a scenario and keeps its logs.
#
#   vm_begin NAME "$@"    NAME for messages; takes "--linux 6.12|7" off the arguments (default
#                         6.12) and leaves the rest in VM_ARGS
#   vm_skip REASON        says loudly why the test cannot run here, exits 77
#   vm_need_host          QEMU, busybox, python3, root and the host userland the guest borrows
#   vm_kernel             builds or reuses the kernel (build-kernel.sh): VM_KERNEL (bzImage),
#                         VM_KERNEL_SOURCE ("linux-source-7.3 7.3.4-1~bpo13+1")
#   vm_run SCENARIO GUEST_SCRIPT WORKDIR [run-vm.py options...]
#                         boots SCENARIO (noiommu | viommu) with run-vm.py, echoes the guest's
#                         console (prefixed), returns run-vm.py's status; the serial log is
#                         WORKDIR/serial.log, the results share WORKDIR/results
#
# Kernel series: "6.12" is Debian 12's linux-source-6.12 (VFIO's own container); "7" is the
# newest linux-source-7.N (N >= 3) of Debian trixie-backports, fetched privately (the merged
# noiommu cdev, iommufd's container). See build-kernel.sh.

VM_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_PYTHON=/usr/bin/python3

vm_begin() {
        VM_NAME=$1
        shift
        VM_SERIES=6.12
        if [ "${1:-}" = --linux ]; then
                VM_SERIES=${2:?--linux needs 6.12 or 7}
                shift 2
        fi
        case "$VM_SERIES" in
        6.12 | 7) ;;
        *) echo "$VM_NAME: FAIL: --linux takes 6.12 or 7, not $VM_SERIES" >&2; exit 1 ;;
        esac
        VM_ARGS=("$@")
        VM_T0=$(date +%s)
}

vm_skip() {
        {
                echo "####################################################################"
                echo "## SKIPPED $VM_NAME: $*"
                echo "## Run scripts/install-vm-deps.sh (as root) to install what is missing."
                echo "####################################################################"
        } >&2
        exit 77
}

vm_need_host() {
        local f
        command -v qemu-system-x86_64 >/dev/null || vm_skip "qemu-system-x86_64 is missing (package qemu-system-x86)"
        [ -x /bin/busybox ] || vm_skip "/bin/busybox is missing (package busybox-static)"
        [ -x "$VM_PYTHON" ] || vm_skip "$VM_PYTHON is missing"
        [ "$(id -u)" = 0 ] || vm_skip "not root: QEMU's 9p export of / must read root-only files (polkit rules)"
        # The guest runs the host's own userland: these must be installed on the host. Missing
        # ones are a broken test machine, not a reason to skip.
        for f in /usr/bin/dbus-daemon /usr/lib/polkit-1/polkitd /usr/bin/setpriv /usr/bin/timeout; do
                [ -x "$f" ] || { echo "$VM_NAME: FAIL: $f is missing on the host (the guest uses the host's userland)" >&2; exit 1; }
        done
}

vm_kernel() {
        local krc
        VM_KERNEL=$("$VM_HERE/build-kernel.sh" --linux "$VM_SERIES")
        krc=$?
        if [ "$krc" = 77 ]; then
                vm_skip "the Linux $VM_SERIES kernel source cannot be had here (see build-kernel.sh's message above)"
        elif [ "$krc" != 0 ] || [ ! -f "$VM_KERNEL" ]; then
                echo "$VM_NAME: FAIL: building the Linux $VM_SERIES guest kernel failed (exit $krc)" >&2
                exit 1
        fi
        VM_KERNEL_SOURCE=$(head -n 1 "$(dirname "$VM_KERNEL")/info" 2>/dev/null || echo "unknown source")
        echo "$VM_NAME: kernel $VM_KERNEL_SOURCE: $VM_KERNEL (ready after $(($(date +%s) - VM_T0)) s)"
}

vm_run() {
        local scenario=$1 script=$2 work=$3 rc
        shift 3
        "$VM_PYTHON" "$VM_HERE/run-vm.py" "$scenario" "$script" --kernel "$VM_KERNEL" \
                --workdir "$work" --env "NOIOMMU_VM_KERNEL_SERIES=$VM_SERIES" "$@" -v \
                >"$work.out" 2>"$work.err"
        rc=$?
        # The serial console (with host timestamps) is the guest's whole story.
        sed "s/^/$VM_NAME: /" "$work.err"
        return $rc
}
