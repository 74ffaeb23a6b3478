#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs the Debian 12 packages the vm test tier needs (docs/vm-testing.md §2, §3):
# QEMU with the edu device, a static busybox for the initramfs, the kernel source
# (linux-source-6.12, from bookworm-security) and the tools to build it.
# Idempotent; run as root. apt-get update runs only when something is missing.
set -euo pipefail

PACKAGES=(
        # the emulator: qemu-system-x86_64 with TCG, edu, intel-iommu, virtio-9p
        qemu-system-x86
        # stage-one initramfs
        busybox-static cpio
        # kernel source, bookworm-security
        linux-source-6.12 xz-utils
        # kernel build
        build-essential bc bison flex libelf-dev libssl-dev make gcc
        # kernel build (scripts use them) and the host side of the tests
        python3 perl util-linux coreutils
)

if [ "$(id -u)" != 0 ]; then
        echo "install-vm-deps.sh: must run as root (apt-get install)" >&2
        exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
        echo "install-vm-deps.sh: all packages present"
        exit 0
fi
echo "install-vm-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# (no "| grep -q" under pipefail: grep's early exit would fail apt-cache with SIGPIPE)
policy=$(apt-cache policy linux-source-6.12)
if [[ "$policy" != *"Candidate: "[0-9]* ]]; then
        echo "install-vm-deps.sh: linux-source-6.12 has no candidate." >&2
        echo "  It is in bookworm-security; check that apt's sources list" >&2
        echo "  'deb http://deb.debian.org/debian-security bookworm-security main'." >&2
        exit 1
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}"
