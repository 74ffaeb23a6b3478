#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The client-detach hazard of the 7.3 noiommu cdev (issue 15; linux-7.3.md, "Hazard: DETACH by
the client"), with the vfio mock preloaded into the real daemon.

A client holding a cdev-noiommu device fd can call VFIO_DEVICE_DETACH_IOMMUFD_PT. With the
automatic HWPT that used to unpin every mapping of the lease's IOAS, after which GET_PA answered
EOPNOTSUPP and the next AllocateMemory into the lease was refused. The daemon now attaches the
device to an explicit HWPT of its own (IOMMU_HWPT_ALLOC), which a DETACH does not touch:

  * acquire: HWPT_ALLOC (flags 0) on the lease's IOAS, attach to that HWPT id (auto=0);
  * the client DETACHes its fd (a real ioctl from a client process: python3 with the mock
    preloaded, which models the kernel object behind the fd it was given): nothing is unpinned,
    and memory allocated into the lease afterwards gets correct physical addresses (GET_PA,
    checked against pagemap in this process); the memory allocated before still translates;
  * the client re-ATTACHes to the IOAS id (a new automatic HWPT beside the explicit one) and
    DETACHes again: the same;
  * the client ATTACHes to a bogus id: ENOENT, nothing changes;
  * release: the teardown order is unchanged — Bus Master off, reset, then unmap and unpin,
    then DETACH through the daemon's handle, DESTROY of the HWPT, DESTROY of the IOAS, close.

And the 7.3 errno meanings (linux-7.3.md, "GET_PA errors"), with the mock's get-pa-stub fault
(GET_PA answers EOPNOTSUPP, as on 7.3 built without IOMMUFD_NOIOMMU):

  * at acquire (GET_PA on the empty IOAS): NotSupported, nothing handed out, and a log line
    saying what the kernel lacks;
  * in the middle of a lease: EOPNOTSUPP means "no noiommu page table behind this IOVA", not
    "unsupported": the allocation is answered DeviceQuarantined, the lease is quarantined and
    audited (LEASE_BROKEN), nothing is released, and a RevokeLease quiesces first.
"""

import os
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (ACQUIRE, ALLOCATE, CDEV_NOIOMMU_DEV, CDEV_NOIOMMU_DEV2, RELEASE,
                            DeviceEnvironment, acquire, allocate_leased, check_physical, order, run)
from harness import ALLOWED_UID, ERR, hugepages_free, wait_until

REVOKE = "io.noiommud.Broker.RevokeLease"

VFIO_DEVICE_ATTACH_IOMMUFD_PT = 0x3b77
VFIO_DEVICE_DETACH_IOMMUFD_PT = 0x3b78

# Runs in the client process: one ioctl on the given fd, prints "ok" or the errno name, and the
# struct the kernel wrote back (hex).
CLIENT_IOCTL = r"""
import errno, fcntl, sys
fd, req, payload = int(sys.argv[1]), int(sys.argv[2], 0), bytes.fromhex(sys.argv[3])
try:
    out = fcntl.ioctl(fd, req, payload)
    print("ok", out.hex())
except OSError as e:
    print(errno.errorcode.get(e.errno, str(e.errno)), "")
"""


def client_ioctl(env, fd, req, payload):
    """A client's ioctl on its device fd, made in a process of its own with the mock preloaded
    (the mock adopts the object behind the fd; the daemon sees the effect at its next call,
    as with the kernel). Returns (result, bytes written back)."""
    e = dict(os.environ,
             LD_PRELOAD=env.mock_lib,
             NOIOMMU_MOCK_ROOT=env.mock_root,
             NOIOMMU_MOCK_LOG=env.mock_log.path,
             NOIOMMU_MOCK_PROGRAM="python3",
             # An ASan build's mock pulls in the ASan runtime; python3 is not built with it, and
             # its own allocations are no business of this test.
             ASAN_OPTIONS="verify_asan_link_order=0:detect_leaks=0:" + os.environ.get("ASAN_OPTIONS", ""))
    p = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", CLIENT_IOCTL, str(fd), hex(req), payload.hex()],
                       env=e, pass_fds=(fd,), capture_output=True, timeout=20, check=False)
    out = p.stdout.decode().split()
    assert p.returncode == 0 and out, "client ioctl helper failed: rc %d, %r %r" % (
        p.returncode, p.stdout, p.stderr)
    return out[0], bytes.fromhex(out[1]) if len(out) > 1 else b""


def detach(env, fd):
    return client_ioctl(env, fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, struct.pack("=III", 12, 0, 0))[0]


def attach(env, fd, pt_id):
    res, out = client_ioctl(env, fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, struct.pack("=IIII", 16, 0, pt_id, 0))
    return res, (struct.unpack("=IIII", out)[2] if res == "ok" else None)


def body():
    with DeviceEnvironment(hugepages=32) as env:
        log_ = env.mock_log
        base = env.settled_baseline()
        dev = CDEV_NOIOMMU_DEV

        c = env.connect(uid=ALLOWED_UID)
        mark0 = log_.mark()
        acq, devfd = acquire(c, dev)
        lease = acq["lease"]

        with env.subtest("acquire: an explicit HWPT on the lease's IOAS, the device attached to it"):
            alloc = log_.wait("hwpt-alloc", since=mark0, dev=dev)[0]
            ioas, hwpt = int(alloc["ioas"]), int(alloc["hwpt"])
            assert alloc["noiommu"] == "1", alloc
            log_.wait("attach", since=mark0, dev=dev, hwpt=hwpt, auto=0)
            assert not log_.find("attach", since=mark0, dev=dev, auto=1), log_.describe(mark0)

        mems = []
        with env.subtest("memory before any client ioctl: physical addresses from GET_PA"):
            m, mfd = allocate_leased(c, lease, 2 << 20, "physical")
            check_physical(mfd, m)
            mems.append((m, mfd))

        def allocate_and_check(what):
            mark = log_.mark()
            m, mfd = allocate_leased(c, lease, 2 << 20, "physical")
            mems.append((m, mfd))
            check_physical(mfd, m)
            gets = log_.find("get-pa", since=mark, ioas=ioas)
            assert gets, "no GET_PA for the new memory (%s):\n%s" % (what, log_.describe(mark))
            bad = [e for e in log_.events(mark) if e["event"] in ("get-pa-refused", "unpin-ioas")]
            assert not bad, "%s: %r" % (what, bad)
            # the earlier memory still has its addresses too
            for old, ofd in mems[:-1]:
                check_physical(ofd, old)

        with env.subtest("client DETACH: nothing unpinned; the next allocation gets correct addresses"):
            mark = log_.mark()
            assert detach(env, devfd) == "ok"
            log_.wait("detach", since=mark, dev=dev, hwpt=hwpt, auto=0)
            allocate_and_check("after the client's DETACH")
            assert not log_.find("unpin-ioas", since=mark), log_.describe(mark)

        with env.subtest("client re-ATTACH to the IOAS id: a new automatic HWPT beside the daemon's"):
            mark = log_.mark()
            res, pt = attach(env, devfd, ioas)
            assert res == "ok" and pt not in (ioas, hwpt), (res, pt)
            log_.wait("attach", since=mark, dev=dev, ioas=ioas, auto=1)
            allocate_and_check("after the client's re-attach")
            mark = log_.mark()
            assert detach(env, devfd) == "ok"       # destroys only the automatic one
            log_.wait("detach", since=mark, dev=dev, auto=1)
            allocate_and_check("after the client detached the automatic HWPT")
            assert not log_.find("unpin-ioas", since=mark), log_.describe(mark)

        with env.subtest("client ATTACH to a bogus id: ENOENT, the lease keeps working"):
            res, _ = attach(env, devfd, 0xdead)
            assert res == "ENOENT", res
            allocate_and_check("after the bogus attach")

        with env.subtest("release: quiesce -> unmap/unpin -> DETACH -> DESTROY hwpt -> DESTROY ioas"):
            mark = log_.mark()
            c.call_ok(RELEASE, {"lease": lease})
            last = "noiommud-" + mems[-1][0]["memory"]
            got = order(log_, mark, ("clear_bme", {"dev": dev}), ("reset", {"dev": dev}), "ioas-unmap",
                        ("unpin", {"name": last}), ("close-memfd", {"name": last, "last": 1}),
                        ("detach", {"dev": dev}), ("destroy", {"kind": "hwpt", "id": hwpt}),
                        ("destroy", {"kind": "ioas", "id": ioas}), ("close-device", {"dev": dev}))
            first_memory_step = got[2]["index"]
            early = [e for e in log_.events(mark) if e["index"] < first_memory_step and
                     (e["event"] in ("unpin", "munmap", "ioas-unmap", "unpin-ioas") or
                      (e["event"] == "close-memfd" and e["last"] == "1"))]
            assert not early, "memory released before the quiesce: %r" % early
            refused = [e for e in log_.events(mark) if e["event"] == "destroy-refused"]
            assert not refused, refused
            env.wait_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=lease)

        for _, mfd in mems:
            os.close(mfd)
        os.close(devfd)
        c.close()
        env.wait_baseline(base, what="after the lease")

        dev = CDEV_NOIOMMU_DEV2
        with env.subtest("GET_PA EOPNOTSUPP at acquire: NotSupported, says what the kernel lacks"):
            with env.fault("get-pa-stub", dev):
                c = env.connect(uid=ALLOWED_UID)
                err, params = c.call_error(ACQUIRE, {"device": dev})
                assert err == ERR + "NotSupported", (err, params)
                c.close()
            wait_until(lambda: [e for e in env.journal.find() if "lacks the noiommu cdev services"
                                in str(e.get("MESSAGE", ""))], 5,
                       lambda: "a log line saying what the kernel lacks:\n" + env.journal.describe())
            env.wait_baseline(base, what="after the refused acquire")

        with env.subtest("GET_PA EOPNOTSUPP mid-lease: the lease is quarantined, not 'unsupported'"):
            c = env.connect(uid=ALLOWED_UID)
            acq, devfd = acquire(c, dev)
            lease = acq["lease"]
            m, mfd = allocate_leased(c, lease, 2 << 20, "physical")
            free1 = hugepages_free()
            mark = log_.mark()
            with env.fault("get-pa-stub", dev):
                err, params = c.call_error(ALLOCATE, {"size": 2 << 20, "lease": lease})
            assert err == ERR + "DeviceQuarantined" and params.get("device") == dev, (err, params)
            env.wait_journal("LEASE_BROKEN", NOIOMMUD_LEASE_ID=lease, NOIOMMUD_DEVICE=dev,
                             NOIOMMUD_REASON="no-noiommu-page-table", NOIOMMUD_MEM_BYTES=2 << 20)
            err, params = c.call_error(ALLOCATE, {"size": 2 << 20, "lease": lease})
            assert err == ERR + "NoSuchLease", (err, params)
            name = "noiommud-" + m["memory"]
            os.close(mfd)
            os.close(devfd)
            c.close()
            assert hugepages_free() == free1, "HugePages_Free %d, expected %d" % (hugepages_free(), free1)
            gone = [e for e in log_.events(mark) if e["event"] in ("clear_bme", "unpin", "munmap") and
                    e.get("name", name) == name or (e["event"] == "close-memfd" and e.get("name") == name
                                                    and e.get("last") == "1")]
            assert not gone, "a quarantined lease released something: %r" % gone
            admin = env.connect(uid=ALLOWED_UID)
            mark = log_.mark()
            admin.call_ok(REVOKE, {"lease": lease})
            order(log_, mark, ("clear_bme", {"dev": dev}), ("reset", {"dev": dev}), "ioas-unmap",
                  ("unpin", {"name": name}), ("close-memfd", {"name": name, "last": 1}),
                  ("destroy", {"kind": "hwpt"}), ("destroy", {"kind": "ioas"}))
            admin.close()
            wait_until(lambda: hugepages_free() == base[1], 10, "pages back after the revoke")
        env.wait_baseline(base, what="after the quarantined lease")


if __name__ == "__main__":
    run(body)
