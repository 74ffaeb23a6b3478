#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Guest side of the vm-restart test (run by run-vm.py inside the guest, as root, in the chroot of
# the host's root): kill -9 noiommud while a client's edu is doing DMA, restart it with its fd
# store, the client keeps its lease; then the client dies and the device is quiesced before its
# memory is freed.
#
# Files beside this script in the results share (run-vm.py --file): noiommud, edu-client,
# libnoiommu.so.0, io.noiommud.policy, fdstore_manager.py (tests/integration) and
# restart-driver.py. This script does the polkit and bus setup exactly as guest-daemon.sh does
# (tmpfs action and rule directories bind-mounted before dbus-daemon starts), then hands over to
# restart-driver.py (the host's /usr/bin/python3), which runs the daemon under the fake service
# manager and does the checks. Exit status: the driver's.
[ -n "${BASH_VERSION:-}" ] || exec /bin/bash "$0" "$@"
set -u

# shellcheck source=guest-lib.sh
. "$NOIOMMU_VM_RESULTS/guest-lib.sh"
for f in noiommud edu-client libnoiommu.so.0 io.noiommud.policy fdstore_manager.py restart-driver.py; do
        [ -e "$f" ] || { echo "guest: FAIL: $f was not passed to the guest"; exit 1; }
done
start_bus_and_polkit
# The driver starts the daemon itself (under the fake service manager) with this configuration.
daemon_config >/run/noiommud/noiommud.conf
export NOIOMMU_VM_WANT_BACKEND=$want_backend NOIOMMU_VM_WANT_KIND=$want_kind
exec 8>&-
exec timeout -k 5 210 /usr/bin/python3 -u ./restart-driver.py
