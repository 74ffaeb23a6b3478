#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs every Debian 12 package noiommud needs to build, run and test. Idempotent; run as root.
set -euo pipefail

PACKAGES=(
        # build
        meson ninja-build gcc clang pkg-config
        libsystemd-dev libjansson-dev libaudit-dev
        # examples/dpdk-extmem and its tests (docs/dpdk.md): DPDK 22.11's EAL, mempool and mbuf
        # headers and libraries (pkg-config libdpdk); the tests run the real framework
        libdpdk-dev
        # run: the daemon asks polkit on the system bus
        dbus-daemon polkitd libsystemd0 libjansson4
        # tests: private bus + real polkitd in a mount namespace, unprivileged clients via setpriv
        python3 python3-dbus python3-dbusmock util-linux procps strace valgrind
        # tests/install: systemd-journal-remote turns records into a journal file, so that the
        # test catalog-render sees journalctl -x fill in the catalog's @FIELD@s
        systemd-journal-remote
        # containers tier (tests/containers): podman from a rootfs the tests build (busybox-static
        # plus the built client), no images, no network. runc, not crun: crun 1.8 fails on the
        # hybrid cgroup v1/v2 layout of the test machines. uidmap (newuidmap/newgidmap) for
        # rootless podman; storage is the vfs driver, so no fuse-overlayfs and no extra daemons.
        podman runc conmon uidmap busybox-static
        # man pages (man/): scdoc builds them; man-db and groff-base render them in tests/docs,
        # which also runs the admin guide's commands (docs/admin.md: modprobe from kmod)
        scdoc man-db groff-base kmod
        # third-party Varlink client (tests/integration/test-varlink-go.py): Debian's Go Varlink
        # library, built offline from /usr/share/gocode in the test
        golang-go golang-github-varlink-go-dev
)

if [ "$(id -u)" != 0 ]; then
        echo "install-deps.sh: must run as root (apt-get install)" >&2
        exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
        echo "install-deps.sh: all packages present"
        exit 0
fi
echo "install-deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
