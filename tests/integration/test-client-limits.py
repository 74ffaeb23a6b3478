#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Clients that do not take what they asked for, and per-uid limits (security.md §7.1, §10 row 11),
with the real polkitd and the vfio fixture backend:

  * a client that never reads the reply carrying its memfd or device fd: after
    NOIOMMU_RECEIPT_TIMEOUT_USEC (10 s) the daemon sees through SIOCOUTQ that the reply is still
    unread, ends the connection and reclaims the grant with reason "not-received" (the device
    quiesced before it is released); a client that did read stays connected and keeps its lease;
  * a libnoiommu client at RLIMIT_NOFILE (prlimit), whose SCM_RIGHTS is truncated (MSG_CTRUNC):
    the library reports the error and ends its connection, so the lease or memory goes back at
    once;
  * "maxMemoryPerUid" caps the bytes one uid holds over all its connections, and at most
    NOIOMMU_REGIONS_PER_UID_MAX (256) allocations per uid: LimitExceeded with the limit's name,
    other uids unaffected, the uid can allocate again after freeing.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from device_harness import (ACQUIRE, CDEV_IOMMU_DEV, DEFAULT_CONFIG, GROUP_DEV, RELEASE,  # noqa: E402
                            DeviceEnvironment, acquire)

MiB = 1 << 20
RECEIPT_TIMEOUT = 10.0
PER_UID_ALLOCATIONS = 256


def ctl_limited(env, args, nofile):
    """noiommuctl as uid 1 with RLIMIT_NOFILE lowered so that no fd can be received."""
    argv = ["prlimit", "--nofile=%d:%d" % (nofile, nofile), "--"] + env.ctl_argv(args)
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env.env)


def body():
    with DeviceEnvironment(hugepages=PER_UID_ALLOCATIONS + 8,
                           config=dict(DEFAULT_CONFIG, maxMemoryPerUid=8 * MiB)) as env:
        base = env.settled_baseline()

        with env.subtest("grants never read: reclaimed after %.0f s (not-received), readers kept" % RECEIPT_TIMEOUT):
            good = env.connect(uid=H.ALLOWED_UID)
            lease, devfd = acquire(good, CDEV_IOMMU_DEV)
            r, memfd = H.allocate(good, 2 * MiB)
            os.close(memfd)

            mem_sink = env.connect(uid=H.ALLOWED_UID)
            dev_sink = env.connect(uid=H.ALLOWED_UID)
            t0 = time.monotonic()
            mem_sink.send(H.ALLOCATE, {"size": 2 * MiB})
            dev_sink.send(ACQUIRE, {"device": GROUP_DEV})
            env.wait_journal("LEASE_GRANTED", NOIOMMUD_CLIENT_PID=dev_sink.pid)
            env.wait_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=mem_sink.pid)

            freed = env.wait_journal("MEMORY_FREED", timeout=RECEIPT_TIMEOUT + 10,
                                     NOIOMMUD_CLIENT_PID=mem_sink.pid)
            t_mem = time.monotonic() - t0
            assert freed[0]["NOIOMMUD_REASON"] == "not-received", freed
            rel = env.wait_journal("LEASE_RELEASED", timeout=10, NOIOMMUD_CLIENT_PID=dev_sink.pid)
            assert rel[0]["NOIOMMUD_REASON"] == "not-received", rel
            q = env.find_journal("LEASE_QUIESCED", NOIOMMUD_CLIENT_PID=dev_sink.pid)
            entries = env.journal.entries
            assert q and entries.index(q[0]) < entries.index(rel[0]), "released without a quiesce first"
            assert RECEIPT_TIMEOUT - 0.5 <= t_mem <= RECEIPT_TIMEOUT + 3, \
                "reclaimed after %.1f s, expected about %.0f s" % (t_mem, RECEIPT_TIMEOUT)
            H.log("unread grant reclaimed after %.2f s" % t_mem)
            assert env.find_journal("PROTOCOL_VIOLATION", NOIOMMUD_CLIENT_PID=mem_sink.pid)

            # the late reader finds its reply and then the end of the connection; the memfd it
            # still receives holds its pages until closed, but the daemon no longer pins them
            for sink in (mem_sink, dev_sink):
                msgs = sink.wait_closed(timeout=5)
                assert len(msgs) == 1 and "parameters" in msgs[0], msgs
                sink.close()

            # the client that read its grants is untouched
            assert good.is_open(0.1), "a client that read its grants was disconnected"
            with env.connect() as admin:
                leases, _ = admin.call_ok("io.noiommud.Broker.ListLeases")
            assert lease["lease"] in [x["lease"] for x in leases["leases"]], leases
            good.call_ok(RELEASE, {"lease": lease["lease"]})
            os.close(devfd)
            good.close()
            # the device is served again
            c = env.connect(uid=H.ALLOWED_UID)
            lease, devfd = acquire(c, GROUP_DEV)
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            os.close(devfd)
            c.close()
            env.wait_baseline(base, what="after the unread grants")

        with env.subtest("RLIMIT_NOFILE: the fd is truncated away, libnoiommu gives the grant back"):
            for args, record in ((["--json", "acquire", CDEV_IOMMU_DEV], "LEASE_RELEASED"),
                                 (["--json", "alloc", "2M"], "MEMORY_FREED")):
                n_before = len(env.find_journal(record))
                r = ctl_limited(env, args, 4)
                assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
                assert r.stderr.strip() or r.stdout.strip(), "no error message"
                H.log("noiommuctl %s at RLIMIT_NOFILE=4: %s" % (" ".join(args), (r.stdout + r.stderr).strip()))
                e = env.journal.wait(H.MSGID[record], count=n_before + 1)
                # the library ends its connection on MSG_CTRUNC: whatever it was granted goes
                # back at once, not after a timeout
                assert e[-1]["NOIOMMUD_REASON"] in ("release", "free", "client-exit"), e[-1]
            env.wait_baseline(base, what="after the truncated grants")

        with env.subtest("maxMemoryPerUid (8 MiB) over all connections of a uid"):
            a = env.connect(uid=H.ALLOWED_UID)
            b = env.connect(uid=H.ALLOWED_UID)
            r1, f1 = H.allocate(a, 4 * MiB)
            r2, f2 = H.allocate(b, 4 * MiB)
            err, params = b.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "LimitExceeded" and params == {"limit": "memory-per-uid"}, (err, params)
            env.wait_journal("LIMIT_EXCEEDED", NOIOMMUD_LIMIT="memory-per-uid")
            root = env.connect()
            r3, f3 = H.allocate(root, 4 * MiB)          # another uid is not affected
            b.call_ok(H.FREE, {"memory": r2["memory"]})
            os.close(f2)
            r2, f2 = H.allocate(b, 2 * MiB)             # room again
            for f in (f1, f2, f3):
                os.close(f)
            for c in (a, b, root):
                c.close()
            env.wait_baseline(base, what="after the per-uid memory limit")

        with env.subtest("at most %d allocations per uid, over several connections" % PER_UID_ALLOCATIONS):
            env.stop_daemon()
            env.write_config(DEFAULT_CONFIG)
            env.start_mock_daemon()
            base = env.settled_baseline()
            conns, n = [], 0
            while n < PER_UID_ALLOCATIONS:
                c = env.connect(uid=H.ALLOWED_UID)
                conns.append(c)
                for _ in range(min(64, PER_UID_ALLOCATIONS - n)):
                    r, fd = H.allocate(c, 2 * MiB)
                    os.close(fd)
                    n += 1
            c = env.connect(uid=H.ALLOWED_UID)
            conns.append(c)
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "LimitExceeded" and params == {"limit": "allocations-per-uid"}, (err, params)
            root = env.connect()
            r, fd = H.allocate(root, 2 * MiB)
            os.close(fd)
            root.close()
            conns[0].close()
            r, fd = H.allocate(c, 2 * MiB)      # 64 freed by the first connection's exit
            os.close(fd)
            for c in conns:
                c.close()
            env.wait_baseline(base, what="after 256 allocations")


H.run(body)
