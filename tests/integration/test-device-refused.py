#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""AcquireDevice requests that must be refused, with the vfio mock preloaded into the real
daemon (security.md §10 rows 1, 18, 19; kernel-api.md §10):

  * a noiommu device not named in the configuration -> NotSupported, nothing opened, polkit not
    asked; a cdev-iommu device excluded by "iommuDevices" -> NotSupported; noiommu mode switched
    off -> NotSupported; an unknown address -> NoSuchDevice;
  * a user the polkit rules deny -> PermissionDenied (acquire-device and acquire-device-iommu),
    a user that would need to authenticate -> InteractiveAuthenticationRequired; no device
    node is opened for them;
  * cdev-noiommu on a kernel without IOMMU_IOAS_NOIOMMU_GET_PA (ENOTTY) -> NotSupported, nothing
    leaked, and the IOAS mapping the daemon made for the lookup is undone;
  * device node swapped for a symlink, a FIFO, a regular file or a character device with the
    wrong major:minor (also /dev/vfio/vfio and /dev/iommu) -> NotSupported with a reason, no fd
    leaked, the daemon fine, and the device served again once the node is right; a directory,
    a socket or no node at all -> NotSupported too;
  * path traversal and malformed names ("../../dev/sda", "0000:00:03.0/..", upper case,
    trailing space, too long, embedded NUL, not a string) -> InvalidParameter (or, for the NUL,
    a protocol violation) before any filesystem access: the mock logs no access at all.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (ACQUIRE, ALLOCATE, CDEV_IOMMU_DEV, CDEV_NOIOMMU_DEV, CDEV_NOIOMMU_DEV2,
                            DEFAULT_CONFIG, GROUP_DEV, RELEASE, UNLISTED_DEV, DeviceEnvironment, acquire,
                            run)
import harness  # noqa: E402
from harness import ALLOWED_UID, CHALLENGE_UID, DENIED_UID, ERR, INVALID_PARAMETER, hugepages_free

PROTOCOL_VIOLATION = ERR + "ProtocolViolation"


def node_opens(log_, since):
    return [e for e in log_.events(since) if e["event"] in ("open-node", "get-device-fd", "bind")]


def body():
    with DeviceEnvironment(hugepages=8) as env:
        log_ = env.mock_log
        base = env.settled_baseline()

        with env.subtest("noiommu device not in the configuration -> NotSupported, nothing opened"):
            c = env.connect(uid=ALLOWED_UID)
            n_authz = len(env.find_journal("AUTHZ_GRANTED")) + len(env.find_journal("AUTHZ_DENIED"))
            mark = log_.mark()
            err, params = c.call_error(ACQUIRE, {"device": UNLISTED_DEV})
            assert err == ERR + "NotSupported" and "configuration" in params.get("reason", ""), (err, params)
            assert not node_opens(log_, mark), log_.describe(mark)
            assert len(env.find_journal("AUTHZ_GRANTED")) + len(env.find_journal("AUTHZ_DENIED")) == n_authz, \
                "polkit was asked about a device the configuration excludes"
            err, params = c.call_error(ACQUIRE, {"device": "0000:00:1f.0"})
            assert err == ERR + "NoSuchDevice" and params == {"device": "0000:00:1f.0"}, (err, params)
            c.close()

        with env.subtest("users polkit denies -> PermissionDenied / InteractiveAuthenticationRequired"):
            for address in (GROUP_DEV, CDEV_NOIOMMU_DEV, CDEV_IOMMU_DEV):
                mark = log_.mark()
                c = env.connect(uid=DENIED_UID)
                err, params = c.call_error(ACQUIRE, {"device": address})
                assert err == ERR + "PermissionDenied" and params.get("reason") == "denied", (address, err, params)
                c.close()
                c = env.connect(uid=CHALLENGE_UID)
                err, params = c.call_error(ACQUIRE, {"device": address})
                assert err == ERR + "InteractiveAuthenticationRequired", (address, err, params)
                c.close()
                assert not node_opens(log_, mark), "opened for a denied user:\n" + log_.describe(mark)
            env.wait_journal("AUTHZ_DENIED", NOIOMMUD_POLKIT_ACTION="io.noiommud.acquire-device-iommu",
                             NOIOMMUD_CLIENT_UID=DENIED_UID)
            # the device is free again for an allowed user
            c = env.connect(uid=ALLOWED_UID)
            lease, devfd = acquire(c, GROUP_DEV)
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            os.close(devfd)
            c.close()
            env.wait_baseline(base, what="after the denied requests")

        with env.subtest("cdev-noiommu without IOMMU_IOAS_NOIOMMU_GET_PA -> NotSupported"):
            with env.fault("no-get-pa", "all"):
                c = env.connect(uid=ALLOWED_UID)
                mark = log_.mark()
                reply, fds = c.call(ACQUIRE, {"device": CDEV_NOIOMMU_DEV})
                where = "AcquireDevice"
                if "error" not in reply:
                    # the lease is granted; the lookup is first needed for memory
                    lease = reply["parameters"]["lease"]
                    for fd in fds:
                        os.close(fd)
                    where = "AllocateMemory"
                    reply, fds = c.call(ALLOCATE, {"size": 2 << 20, "lease": lease})
                for fd in fds:
                    os.close(fd)
                assert reply.get("error") == ERR + "NotSupported", "%s: %r" % (where, reply)
                print("# GET_PA missing is reported by %s: %r" % (where, reply["parameters"]), flush=True)
                assert log_.find("get-pa-absent", since=mark), log_.describe(mark)
                if where == "AllocateMemory":
                    maps, unmaps = log_.find("ioas-map", since=mark), log_.find("ioas-unmap", since=mark)
                    assert len(maps) == len(unmaps), "IOAS mapping left behind:\n" + log_.describe(mark)
                    c.call_ok(RELEASE, {"lease": lease})
                c.close()
            env.wait_baseline(base, what="after GET_PA was missing")

        for address, rel in ((GROUP_DEV, None), (CDEV_NOIOMMU_DEV, None), (CDEV_IOMMU_DEV, None),
                             (GROUP_DEV, "dev/vfio/vfio"), (CDEV_NOIOMMU_DEV, "dev/iommu")):
            what = rel or "its node"
            with env.subtest("%s, %s swapped -> refused with a reason" % (address, what)):
                c = env.connect(uid=ALLOWED_UID)
                # one round trip first: connect() returns before the daemon has accepted
                c.call_ok(harness.GET_INFO)
                # settled: the daemon writes its state in the background (a short-lived memfd)
                fds_with_conn = env.settled_baseline()[0]
                for kind in ("symlink", "fifo", "regular", "wrong-rdev"):
                    with env.node_replaced(rel or address, kind):
                        err, params = c.call_error(ACQUIRE, {"device": address}, timeout=10)
                        assert err == ERR + "NotSupported", (kind, err, params)
                        assert params.get("reason") == "the device node does not match sysfs", (kind, params)
                        env.assert_daemon_alive()
                        assert env.daemon_fd_count() == fds_with_conn, \
                            "%s: daemon fds %r" % (kind, env.daemon_fds())
                lease, devfd = acquire(c, address)
                c.call_ok(RELEASE, {"lease": lease["lease"]})
                os.close(devfd)
                c.close()
                env.wait_baseline(base, what="after swapping %s" % what)

        with env.subtest("node is a directory, a socket, or missing -> NotSupported, not InternalError"):
            c = env.connect(uid=ALLOWED_UID)
            got = {}
            for address in (GROUP_DEV, CDEV_NOIOMMU_DEV):
                for kind in ("directory", "socket", "missing"):
                    with env.node_replaced(address, kind):
                        reply, fds = c.call(ACQUIRE, {"device": address})
                        for fd in fds:
                            os.close(fd)
                        got["%s %s" % (address, kind)] = (reply.get("error"), reply.get("parameters"))
                        env.assert_daemon_alive()
            bad = {k: v for k, v in got.items() if v[0] != ERR + "NotSupported"}
            assert not bad, "refused without a reason (expected NotSupported): %r" % bad
            c.close()
            env.wait_baseline(base, what="after odd nodes")

        with env.subtest("path traversal and malformed names -> InvalidParameter, no file touched"):
            c = env.connect(uid=ALLOWED_UID)
            bad = ["../../dev/sda", "0000:00:03.0/..", "0000:00:03.0/../../..", "/sys/bus/pci/devices/0000:00:03.0",
                   "0000:00:0A.0", "0000:00:03.0 ", " 0000:00:03.0", "0000:00:03.00", "0000:00:03.0" + "0" * 300,
                   "", "0000:00:03", "0000:00:03.8", "dev/vfio/noiommu-7", 3, None, ["0000:00:03.0"],
                   {"address": "0000:00:03.0"}]
            mark = log_.mark()
            for name in bad:
                err, params = c.call_error(ACQUIRE, {"device": name})
                assert err == INVALID_PARAMETER and params == {"parameter": "device"}, (name, err, params)
            # an embedded NUL: the parser refuses the message (or the name)
            c.send_raw(b'{"method":"' + ACQUIRE.encode() + b'","parameters":{"device":"0000:00:03.0\\u0000/../x"}}\0')
            reply, fds = c.recv()
            assert reply is None or reply.get("error") in (INVALID_PARAMETER, PROTOCOL_VIOLATION), reply
            assert not fds
            c.close()
            touched = log_.events(mark)
            assert not touched, "the daemon touched files for invalid names:\n" + log_.describe(mark)
            env.assert_daemon_alive()

        with env.subtest("cdev-iommu device not in iommuDevices; noiommu mode off -> NotSupported"):
            env.write_config(dict(DEFAULT_CONFIG, iommuDevices=[]))
            env.restart_mock_daemon()
            c = env.connect(uid=ALLOWED_UID)
            err, params = c.call_error(ACQUIRE, {"device": CDEV_IOMMU_DEV})
            assert err == ERR + "NotSupported" and "configuration" in params.get("reason", ""), (err, params)

            param = os.path.join(env.mock_root, "sys/module/vfio/parameters/enable_unsafe_noiommu_mode")
            with open(param, "w") as f:
                f.write("N\n")
            try:
                mark = log_.mark()
                for address in (GROUP_DEV, CDEV_NOIOMMU_DEV2):
                    err, params = c.call_error(ACQUIRE, {"device": address})
                    assert err == ERR + "NotSupported" and params.get("reason", "").startswith("noiommu mode is not enabled: set vfio.enable_unsafe_noiommu_mode=1"), \
                        (address, err, params)
                assert not node_opens(log_, mark), log_.describe(mark)
            finally:
                with open(param, "w") as f:
                    f.write("Y\n")
            lease, devfd = acquire(c, GROUP_DEV)
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            os.close(devfd)
            c.close()
            assert hugepages_free() == base[1]


if __name__ == "__main__":
    run(body)
