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
set -u

cd "$NOIOMMU_VM_RESULTS" || exit 1
export LD_LIBRARY_PATH=$PWD
[ -n "${NOIOMMU_VM_BDF:-}" ] || { echo "guest: FAIL: no edu device"; exit 1; }
for f in noiommud edu-client libnoiommu.so.0 io.noiommud.policy fdstore_manager.py restart-driver.py; do
        [ -e "$f" ] || { echo "guest: FAIL: $f was not passed to the guest"; exit 1; }
done

mkdir -p /run/pk/actions /run/pk/rules /run/dbus /run/noiommud
cp io.noiommud.policy /run/pk/actions/io.noiommud.policy
cat >/run/pk/rules/50-noiommud-vm-test.rules <<'RULE'
// vm-restart test rule: the guest has no logind, so every subject is inactive and rules decide.
polkit.addRule(function(action, subject) {
        if (action.id.indexOf("io.noiommud.") == 0 && subject.user == "nobody")
                return polkit.Result.YES;
        return polkit.Result.NOT_HANDLED;
});
RULE
mount --bind /run/pk/actions /usr/share/polkit-1/actions &&
        mount --bind /run/pk/rules /etc/polkit-1/rules.d ||
        { echo "guest: FAIL: cannot bind-mount the polkit directories"; exit 1; }
dbus-daemon --system --fork || { echo "guest: FAIL: dbus-daemon --system did not start"; exit 1; }
echo "guest: dbus-daemon started"

exec timeout -k 5 210 /usr/bin/python3 -u ./restart-driver.py
