#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A lease lives as long as its connection, however quiet the client is, and memory a
noiommu device could reach outlives FreeMemory until the device is quiesced:

  * a client holding only a device lease (no memory) that sends nothing for longer than the
    daemon's 60 s idle timeout keeps its lease: no quiesce, no reset, no release record;
  * memory allocated WITHOUT a lease, whose physical addresses the client knows, freed with
    FreeMemory while the same connection holds a noiommu device: the reply is {} but the pages
    stay pinned (HugePages_Free does not recover) until ReleaseDevice, and the MEMORY_FREED
    record comes after the device's quiesce record;
  * the same behind an IOMMU (cdev-iommu): FreeMemory frees at once, the device cannot reach
    physical addresses.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (CDEV_IOMMU_DEV, GROUP_DEV, RELEASE, DeviceEnvironment, acquire, order,
                            run)
import harness as H  # noqa: E402

HP = 2 << 20
IDLE_TIMEOUT = 60          # NOIOMMU_IDLE_TIMEOUT_USEC in daemon/conn.h


def main():
    with DeviceEnvironment(hugepages=16) as env:
        log = env.mock_log
        base = env.settled_baseline()

        with env.subtest("memory freed while a noiommu device is held stays pinned until quiesce"):
            c = env.connect(uid=H.ALLOWED_UID)
            lease, dfd = acquire(c, GROUP_DEV)
            r, mfd = H.allocate(c, 2 * HP)          # no lease: physical addresses
            os.close(mfd)
            free_held = H.hugepages_free()
            assert free_held == base[1] - 2, (free_held, base)
            empty, _ = c.call_ok(H.FREE, {"memory": r["memory"]})
            assert empty == {}, empty
            time.sleep(0.3)
            assert H.hugepages_free() == free_held, \
                "pages went back to the pool while the noiommu device could still write there"
            assert not env.find_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"])
            mark = log.mark()
            os.close(dfd)
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            order(log, mark, "clear_bme", "reset", ("close-memfd", {"name": "noiommud-" + r["memory"]}))
            q = env.wait_journal("LEASE_QUIESCED", NOIOMMUD_LEASE_ID=lease["lease"])[0]
            f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"])[0]
            entries = list(env.journal.entries)       # in arrival order
            qi = next(i for i, e in enumerate(entries) if e is q)
            fi = next(i for i, e in enumerate(entries) if e is f)
            assert qi < fi, "MEMORY_FREED (#%d) before LEASE_QUIESCED (#%d)" % (fi, qi)
            H.wait_until(lambda: H.hugepages_free() == base[1], 10, "pages back after release")
            c.close()

        with env.subtest("behind an IOMMU, FreeMemory frees at once"):
            c = env.connect(uid=H.ALLOWED_UID)
            lease, dfd = acquire(c, CDEV_IOMMU_DEV)
            r, mfd = H.allocate(c, HP)
            os.close(mfd)
            c.call_ok(H.FREE, {"memory": r["memory"]})
            env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"])
            H.wait_until(lambda: H.hugepages_free() == base[1], 10, "pages back after FreeMemory")
            os.close(dfd)
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            c.close()

        with env.subtest("a quiet lease holder is not disconnected by the idle timeout"):
            c = env.connect(uid=H.ALLOWED_UID)
            lease, dfd = acquire(c, GROUP_DEV)
            mark = log.mark()
            time.sleep(IDLE_TIMEOUT + 3)
            assert not log.find("clear_bme", since=mark), log.describe(mark)
            assert not env.find_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=lease["lease"])
            assert c.is_open(), "the daemon closed the connection of a lease holder"
            assert c.call_ok(H.GET_INFO)[0]["product"] == "noiommud"
            os.close(dfd)
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            c.close()

        env.wait_baseline(base)


if __name__ == "__main__":
    run(main)
