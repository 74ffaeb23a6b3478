#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""One lease per device (security.md §10 row 17), with the vfio mock preloaded into the real
daemon:

  * a second AcquireDevice for a leased device gets DeviceBusy, from another connection and from
    the holder's own; the device is not opened a second time;
  * also while the first request is still waiting for polkit (polkitd stopped with SIGSTOP):
    the reservation is taken before polkit is asked, so the second request is answered
    DeviceBusy at once, without polkit, and the first then gets the lease;
  * a reservation dies with its connection: a client that disconnects while polkit decides
    leaves the device free;
  * a device fd that outlives its lease (the client kept a copy) keeps the device from being
    granted again: for a cdev the next VFIO_DEVICE_BIND_IOMMUFD fails (the mock models the
    kernel's "one bind per device"), for a noiommu group the group cannot be opened; either way
    DeviceBusy with an audit record, and the device is served again once the copy is closed.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (ACQUIRE, CDEV_IOMMU_DEV, CDEV_NOIOMMU_DEV, GROUP_DEV, RELEASE,
                            DeviceEnvironment, acquire, run)
from harness import ALLOWED_UID, ERR, wait_until


def body():
    with DeviceEnvironment(hugepages=8) as env:
        log_ = env.mock_log
        base = env.settled_baseline()

        with env.subtest("second AcquireDevice of a leased device -> DeviceBusy, not opened again"):
            a = env.connect(uid=ALLOWED_UID)
            b = env.connect(uid=ALLOWED_UID)
            for address in (GROUP_DEV, CDEV_NOIOMMU_DEV, CDEV_IOMMU_DEV):
                lease, devfd = acquire(a, address)
                mark = log_.mark()
                for conn in (b, a):
                    err, params = conn.call_error(ACQUIRE, {"device": address})
                    assert err == ERR + "DeviceBusy" and params == {"device": address}, (err, params)
                opened = log_.find("open-node", since=mark) + log_.find("get-device-fd", since=mark)
                assert not opened, "a busy device was opened again: %r" % opened
                a.call_ok(RELEASE, {"lease": lease["lease"]})
                os.close(devfd)
            a.close()
            b.close()
            env.wait_baseline(base, what="after the busy checks")

        with env.subtest("second request while the first waits for polkit -> DeviceBusy at once"):
            a = env.connect(uid=ALLOWED_UID)
            b = env.connect(uid=ALLOWED_UID)
            with env.polkitd_stopped():
                mark = log_.mark()
                a.send(ACQUIRE, {"device": GROUP_DEV})
                # the handler scans sysfs and reserves in one go, then asks polkit (which hangs)
                log_.wait("open", since=mark, path="/sys/class/vfio/noiommu-7")
                time.sleep(0.2)
                t0 = time.monotonic()
                err, params = b.call_error(ACQUIRE, {"device": GROUP_DEV}, timeout=5)
                assert err == ERR + "DeviceBusy", (err, params)
                assert time.monotonic() - t0 < 2, "DeviceBusy took %.1fs" % (time.monotonic() - t0)
                assert not log_.find("open-node", since=mark), \
                    "a device node was opened before polkit answered:\n" + log_.describe(mark)
            reply, fds = a.recv(timeout=30)
            assert "error" not in reply and len(fds) == 1, "first request: %r" % reply
            assert reply["parameters"]["device"]["address"] == GROUP_DEV, reply
            err, _ = b.call_error(ACQUIRE, {"device": GROUP_DEV})
            assert err == ERR + "DeviceBusy", err
            assert len(log_.find("get-device-fd", since=mark)) == 2, "one lease, two device fds: " \
                + log_.describe(mark)
            a.call_ok(RELEASE, {"lease": reply["parameters"]["lease"]})
            os.close(fds[0])
            a.close()
            b.close()
            env.wait_baseline(base, what="after the race through polkit")

        with env.subtest("client gone while polkit decides -> the reservation is dropped"):
            a = env.connect(uid=ALLOWED_UID)
            with env.polkitd_stopped():
                mark = log_.mark()
                a.send(ACQUIRE, {"device": CDEV_NOIOMMU_DEV})
                log_.wait("open", since=mark, path="/sys/class/vfio/noiommu-7")
                time.sleep(0.2)
                a.close()
                time.sleep(0.2)
            b = env.connect(uid=ALLOWED_UID)
            lease, devfd = acquire(b, CDEV_NOIOMMU_DEV)
            assert len(log_.find("bind", since=mark)) == 1, log_.describe(mark)
            b.call_ok(RELEASE, {"lease": lease["lease"]})
            os.close(devfd)
            b.close()
            env.wait_baseline(base, what="after the abandoned reservation")

        for address, refusal in ((CDEV_NOIOMMU_DEV, ("bind-refused", {"reason": "still-bound-elsewhere"})),
                                 (CDEV_IOMMU_DEV, ("bind-refused", {"reason": "still-bound-elsewhere"})),
                                 (GROUP_DEV, ("open-node-refused", {"kind": "group", "errno": "EBUSY"}))):
            with env.subtest("%s: a device fd kept after ReleaseDevice -> DeviceBusy until closed" % address):
                a = env.connect(uid=ALLOWED_UID)
                lease, leaked = acquire(a, address)
                a.call_ok(RELEASE, {"lease": lease["lease"]})     # ... and keep the fd
                # settled: the daemon writes its state in the background (a short-lived memfd)
                fds_with_conn = env.settled_baseline()[0]
                mark = log_.mark()
                err, params = a.call_error(ACQUIRE, {"device": address})
                assert err == ERR + "DeviceBusy", (err, params)
                name, fields = refusal
                assert log_.find(name, since=mark, **fields), \
                    "no %s %r in the mock log:\n%s" % (name, fields, log_.describe(mark))
                env.wait_journal("AUTHZ_DENIED", NOIOMMUD_DEVICE=address,
                                 NOIOMMUD_REASON=lambda r: r is not None and "still open elsewhere" in r)
                # the refused attempt left nothing behind in the daemon
                wait_until(lambda: env.daemon_fd_count() == fds_with_conn, 5,
                           lambda: "daemon fds %r, expected %d" % (env.daemon_fds(), fds_with_conn))
                os.close(leaked)
                lease, devfd = acquire(a, address)
                a.call_ok(RELEASE, {"lease": lease["lease"]})
                os.close(devfd)
                a.close()
                env.wait_baseline(base, what="after the leaked fd of %s" % address)


if __name__ == "__main__":
    run(body)
