#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A device acquired again right after its lease ended, over and over, with the vfio mock
preloaded into the real daemon (the fast-path benchmark's findings):

  * acquire, release, acquire ... (ReleaseDevice, and every third cycle a disconnect instead)
    for each backend, while another process renames a file back and forth without pause: every
    AcquireDevice must succeed. A rename anywhere in the system makes an openat2() with
    RESOLVE_IN_ROOT that walks through ".." answer EAGAIN (fs/namei.c handle_dots(),
    openat2(2)), and every sysfs device path the inventory opens goes through one
    (bus/pci/devices/BDF -> ../../../devices/...). Before inventory.c retried, such a scan
    failed and the client got InternalError ("Failed to scan PCI devices: Resource temporarily
    unavailable"). The mock logs each EAGAIN the real openat2() gave the daemon
    ("open-eagain"): the test fails if the race was never met, rather than pass without having
    exercised it.
  * the daemon's RSS stays flat over 200 acquire/release cycles: the mock frees its objects
    when the last fd of their open file goes (it used to keep every one, ~800 KB per iommufd).

After a ReleaseDevice the test waits for the harness's fd store (the sd_notify reader, playing
systemd) to have closed the lease's stored fds: until then they keep the group open or the cdev
bound, and DeviceBusy would be the right answer, as with systemd before it handles
FDSTOREREMOVE=1.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (ACQUIRE, BACKENDS, CDEV_IOMMU_DEV, CDEV_NOIOMMU_DEV, GROUP_DEV, RELEASE,
                            DeviceEnvironment, acquire, run)
from harness import ALLOWED_UID, ERR, Skip

CYCLES = int(os.environ.get("NOIOMMU_REACQUIRE_CYCLES", "60"))     # per backend
RSS_CYCLES = int(os.environ.get("NOIOMMU_REACQUIRE_RSS_CYCLES", "200"))
RSS_WARMUP = 20
# Allowed growth over RSS_CYCLES after the warm-up: allocator noise, far below what the mock's
# kept objects cost: ~800 KiB per cycle under meson's MALLOC_PERTURB_ (measured: +16 MiB over 20
# cycles), ~100 KiB without it.
RSS_SLACK_KIB = 1024

RENAMER = """
import os, sys
a, b = sys.argv[1], sys.argv[2]
open(a, "w").close()
while True:
    os.rename(a, b)
    os.rename(b, a)
"""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def acquire_once_more(env, conn, address, i, after_disconnect):
    """AcquireDevice that must succeed. After a disconnect the previous lease's teardown is
    asynchronous by design, so DeviceBusy is retried for a while then; any other error fails,
    with the daemon's log."""
    deadline = time.monotonic() + 10
    while True:
        mark = env.mock_log.mark()
        try:
            return acquire(conn, address)
        except AssertionError as e:
            if after_disconnect and (ERR + "DeviceBusy") in str(e) and time.monotonic() < deadline:
                time.sleep(0.002)
                continue
            raise AssertionError("%s, cycle %d: %s\ndaemon log:\n%s\nmock events of the acquire:\n%s"
                                 % (address, i, e, env.read_log("noiommud", tail=4000),
                                    env.mock_log.describe(mark))) from None


def cycles(env, address, n):
    """n cycles of acquire + end of lease on address: ReleaseDevice, and every third cycle a
    disconnect (the next acquire then comes on a new connection; the daemon's teardown of a
    connection that went away is asynchronous by design, so DeviceBusy is retried then)."""
    conn = env.connect(uid=ALLOWED_UID)
    after_disconnect = False
    for i in range(n):
        lease, devfd = acquire_once_more(env, conn, address, i, after_disconnect)
        after_disconnect = i % 3 == 2
        if after_disconnect:
            os.close(devfd)
            conn.close()
            conn = env.connect(uid=ALLOWED_UID)
        else:
            conn.call_ok(RELEASE, {"lease": lease["lease"]})
            os.close(devfd)
            # The daemon wrote the lease's device (and group, container) fds to the fd store
            # before granting it; the harness plays systemd's fd store and closes those copies
            # when its reader thread gets to the datagrams, as PID 1 does on FDSTOREREMOVE=1.
            # Until then they keep the group open / the cdev bound and the next acquire would
            # rightly be DeviceBusy: wait for the reader, so that any refusal here is a bug.
            env.journal.notify_barrier()
    conn.close()


def body():
    if os.environ.get("NOIOMMU_TEST_UNDER_VALGRIND"):
        # Debian 12's valgrind 3.19 answers openat2() (syscall 437) with ENOSYS, so the daemon
        # takes open_in_root()'s openat() fallback and cannot meet the race; and VmRSS would be
        # valgrind's. Both checks would pass without testing anything.
        raise Skip("under valgrind: openat2() is not implemented (ENOSYS), so the EAGAIN race "
                   "cannot happen, and the daemon's RSS is valgrind's")
    with DeviceEnvironment(hugepages=8) as env:
        log_ = env.mock_log
        base = env.settled_baseline()

        with env.subtest("acquire/release %d times per backend under rename churn -> every acquire succeeds"
                         % CYCLES):
            a, b = os.path.join(env.tmp, "churn-a"), os.path.join(env.tmp, "churn-b")
            renamer = subprocess.Popen([sys.executable, "-c", RENAMER, a, b])
            try:
                mark = log_.mark()
                for address in (GROUP_DEV, CDEV_NOIOMMU_DEV, CDEV_IOMMU_DEV):
                    cycles(env, address, CYCLES)
            finally:
                renamer.kill()
                renamer.wait()
            met = log_.find("open-eagain", since=mark)
            print("the daemon met EAGAIN from openat2() %d times in %d acquires"
                  % (len(met), 3 * CYCLES))
            assert met, ("the rename churn never made openat2() answer EAGAIN in %d acquires: "
                         "the race this test is about was not exercised" % (3 * CYCLES))
            env.wait_baseline(base, what="after the reacquire cycles")

        with env.subtest("the daemon's RSS stays flat over %d acquire/release cycles" % RSS_CYCLES):
            # cdev-iommu: its iommufd object was the mock's biggest (the IOAS table)
            cycles(env, CDEV_IOMMU_DEV, RSS_WARMUP)
            before = rss_kib(env.daemon_pid)
            cycles(env, CDEV_IOMMU_DEV, RSS_CYCLES)
            after = rss_kib(env.daemon_pid)
            print("daemon VmRSS %d KiB -> %d KiB over %d cycles (%s)"
                  % (before, after, RSS_CYCLES, BACKENDS[CDEV_IOMMU_DEV]))
            assert after - before <= RSS_SLACK_KIB, \
                "daemon RSS grew %d KiB over %d acquire/release cycles" % (after - before, RSS_CYCLES)
            env.wait_baseline(base, what="after the RSS cycles")


if __name__ == "__main__":
    run(body)
