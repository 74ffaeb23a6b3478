#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Memory whose physical addresses a client knows is reachable by every noiommu device that
client holds, not only by the lease it was allocated into or freed under (design.md §3.2). When
one of two noiommu leases ends, that memory stays pinned with the other until it too is
quiesced:

  a. lease-less memory freed with FreeMemory while devices A and B are held: ReleaseDevice A
     quiesces A but frees nothing; ReleaseDevice B quiesces B, then frees the memory;
  b. memory allocated into lease A (physical addresses): ReleaseDevice A unmaps it from A but
     keeps it pinned while B is held; the client's disconnect quiesces B, then frees it.

Both failed before lease_end_to(): the memory was freed right after A's quiesce while B, which
the client could program with the same addresses, was still live.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (CDEV_NOIOMMU_DEV, GROUP_DEV, RELEASE, DeviceEnvironment, acquire,
                            allocate_leased, order, run)
import harness as H  # noqa: E402

HP = 2 << 20


def closed(log, since, memory):
    """The memory's last fd in the daemon closed since `since` (freed). Not any close: the
    daemon closes its duplicate of a reply's memfd right after the sendmsg(), which can be
    logged after the client read the reply and took its mark (last=0)."""
    return log.find("close-memfd", since=since, name="noiommud-" + memory, last="1")


def main():
    with DeviceEnvironment(hugepages=16) as env:
        log = env.mock_log
        base = env.settled_baseline()

        with env.subtest("a. freed memory outlives the first of two noiommu leases"):
            c = env.connect(uid=H.ALLOWED_UID)
            a, afd = acquire(c, GROUP_DEV)
            b, bfd = acquire(c, CDEV_NOIOMMU_DEV)
            r, mfd = H.allocate(c, HP)              # no lease: physical addresses
            os.close(mfd)
            c.call_ok(H.FREE, {"memory": r["memory"]})
            mark = log.mark()
            c.call_ok(RELEASE, {"lease": a["lease"]})
            order(log, mark, ("clear_bme", {"dev": GROUP_DEV}), ("reset", {"dev": GROUP_DEV}))
            env.journal.notify_barrier()
            assert not closed(log, mark, r["memory"]), \
                "memory freed after A's quiesce while B could still reach it:\n" + log.describe(mark)
            assert H.hugepages_free() == base[1] - 1, "pages back while B is held"
            assert not env.find_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"])
            mark = log.mark()
            c.call_ok(RELEASE, {"lease": b["lease"]})
            order(log, mark, ("clear_bme", {"dev": CDEV_NOIOMMU_DEV}),
                  ("close-memfd", {"name": "noiommud-" + r["memory"]}))
            H.wait_until(lambda: H.hugepages_free() == base[1], 10, "pages back after B's release")
            for fd in (afd, bfd):
                os.close(fd)
            c.close()

        with env.subtest("b. memory allocated into lease A stays pinned while B is held"):
            c = env.connect(uid=H.ALLOWED_UID)
            a, afd = acquire(c, GROUP_DEV)
            b, bfd = acquire(c, CDEV_NOIOMMU_DEV)
            m, mfd = allocate_leased(c, a["lease"], HP, "physical")
            os.close(mfd)
            mark = log.mark()
            c.call_ok(RELEASE, {"lease": a["lease"]})
            order(log, mark, ("clear_bme", {"dev": GROUP_DEV}), ("reset", {"dev": GROUP_DEV}))
            env.journal.notify_barrier()
            assert not closed(log, mark, m["memory"]), \
                "A's memory freed while B could still reach it:\n" + log.describe(mark)
            assert H.hugepages_free() == base[1] - 1, "pages back while B is held"
            mark = log.mark()
            for fd in (afd, bfd):
                os.close(fd)
            c.close()                               # disconnect: B is quiesced, then the memory goes
            order(log, mark, ("clear_bme", {"dev": CDEV_NOIOMMU_DEV}),
                  ("close-memfd", {"name": "noiommud-" + m["memory"]}))
            H.wait_until(lambda: H.hugepages_free() == base[1], 10, "pages back after the disconnect")
            f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=m["memory"])[0]
            assert f.get("NOIOMMUD_REASON") == "client-exit", f

        with env.subtest("everything back at the baseline"):
            env.wait_baseline(base, what="end")


run(main)
