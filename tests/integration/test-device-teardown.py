#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Quiesce before reclaim (security.md §6; §10 row 12), with the vfio mock preloaded into the
real daemon:

  * a client killed with SIGKILL while it holds a lease and DMA memory: the daemon clears Bus
    Master through its own handle, resets the device, and only then unmaps/unpins/unmaps and
    closes the memory (clear_bme -> reset -> [ioas-unmap] -> unpin -> munmap -> close-memfd ->
    close-device), and every hugepage comes back; for each backend, and for a client that just
    closes its socket;
  * a device without VFIO_DEVICE_FLAGS_RESET: no RESET is issued, Bus Master is still cleared,
    and the audit record says there was no reset;
  * a quiesce that fails — the Bus Master clear does not stick on read-back, or the reset fails
    — quarantines the device: ReleaseDevice answers DeviceQuarantined, nothing is unpinned,
    unmapped or closed, HugePages_Free does not recover even after the client let go, a
    QUIESCE_FAILED record is written, and the next AcquireDevice gets DeviceQuarantined (also
    after the fault is gone); likewise when the holder is killed;
  * SIGTERM of the daemon with a lease held: the same quiesce-first teardown, reason "shutdown"
    (security.md §6, "Stopping with leases").
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (ACQUIRE, BACKENDS, CDEV_IOMMU_DEV, CDEV_NOIOMMU_DEV, CDEV_NOIOMMU_DEV2,
                            GROUP_DEV, RELEASE, DeviceEnvironment, acquire, allocate_leased, order, run)
from harness import ALLOWED_UID, ERR, hugepages_free, proc_maps, readline_timeout


def batch_client(env, address, size="4M"):
    """noiommuctl batch as the allowed uid, holding a lease on address and `size` of memory
    mapped into it. Returns (process, lease, memory reply)."""
    p = env.ctl_popen(["--json", "batch"])
    p.stdin.write(("acquire %s\n" % address).encode())
    p.stdin.flush()
    acq = json.loads(readline_timeout(p.stdout, 20))
    assert "lease" in acq, "acquire failed: %r" % acq
    p.stdin.write(("alloc %s --lease %s\n" % (size, acq["lease"])).encode())
    p.stdin.flush()
    mem = json.loads(readline_timeout(p.stdout, 20))
    assert "memory" in mem, "alloc failed: %r" % mem
    # the client really holds both: its device fd and a mapping of the memfd
    fds = [os.readlink("/proc/%d/fd/%s" % (p.pid, n)) for n in os.listdir("/proc/%d/fd" % p.pid)]
    assert any("-device-" in f for f in fds), "noiommuctl holds no device fd: %r" % fds
    assert any(("noiommud-" + mem["memory"]) in r["path"] for r in proc_maps(p.pid)), \
        "noiommuctl does not map the memory"
    return p, acq["lease"], mem


def expected_teardown(address, memory):
    backend = BACKENDS[address]
    name = "noiommud-" + memory
    steps = [("clear_bme", {"dev": address}), ("reset", {"dev": address})]
    if backend != "group-noiommu":
        steps.append("ioas-unmap")
    steps += [("unpin", {"name": name}), ("munmap", {"name": name}),
              ("close-memfd", {"name": name, "last": 1})]
    if backend != "group-noiommu":
        steps += ["detach", "destroy"]
    # The daemon's own handle goes last. For a cdev it shares the open file with the client's
    # copy, which a dying client may not have closed yet (exit_files() closes in fd order, and
    # the socket may go first), so "still-open" is only certain for the group backend, where
    # the daemon's handle is a file of its own.
    steps.append(("close-device", {"dev": address, "still-open": 0} if backend == "group-noiommu"
                  else {"dev": address}))
    return steps


def body():
    with DeviceEnvironment(hugepages=48) as env:
        log_ = env.mock_log
        base = env.settled_baseline()

        for address in (GROUP_DEV, CDEV_NOIOMMU_DEV, CDEV_IOMMU_DEV):
            with env.subtest("%s: SIGKILL of the client mid-lease -> quiesce, then reclaim" % BACKENDS[address]):
                p, lease, mem = batch_client(env, address)
                assert hugepages_free() == base[1] - 2, "HugePages_Free %d" % hugepages_free()
                mark = log_.mark()
                p.kill()
                p.wait(10)
                got = order(log_, mark, *expected_teardown(address, mem["memory"]))
                # nothing of the memory went before the reset
                first_memory_step = got[2]["index"]
                # (close-memfd last=0 is the daemon dropping the duplicate it sent us)
                early = [e for e in log_.events(mark) if e["index"] < first_memory_step and
                         (e["event"] in ("unpin", "munmap", "ioas-unmap") or
                          (e["event"] == "close-memfd" and e["last"] == "1"))]
                assert not early, "memory released before the quiesce: %r" % early
                env.wait_journal("LEASE_QUIESCED", NOIOMMUD_LEASE_ID=lease, NOIOMMUD_RESET=1)
                env.wait_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=lease)
                env.wait_baseline(base, what="after killing the holder of %s" % address)

        with env.subtest("client closes its socket (process alive) -> the same order"):
            c = env.connect(uid=ALLOWED_UID)
            lease, devfd = acquire(c, CDEV_NOIOMMU_DEV2)
            mem, memfd = allocate_leased(c, lease["lease"], 2 << 20, "physical")
            os.close(memfd)
            os.close(devfd)
            mark = log_.mark()
            c.close(keep_process=True)
            order(log_, mark, *expected_teardown(CDEV_NOIOMMU_DEV2, mem["memory"]))
            c.end_process()
            env.wait_baseline(base, what="after the disconnect")

        with env.subtest("no VFIO_DEVICE_FLAGS_RESET: Bus Master cleared, no RESET issued"):
            with env.fault("no-reset", GROUP_DEV):
                c = env.connect(uid=ALLOWED_UID)
                lease, devfd = acquire(c, GROUP_DEV)
                mem, memfd = allocate_leased(c, lease["lease"], 2 << 20, "physical")
                mark = log_.mark()
                c.call_ok(RELEASE, {"lease": lease["lease"]})
                order(log_, mark, ("clear_bme", {"dev": GROUP_DEV}), ("unpin", {"name": "noiommud-" + mem["memory"]}),
                      ("close-memfd", {"name": "noiommud-" + mem["memory"], "last": 1}))
                resets = log_.find("reset", since=mark) + log_.find("reset-unsupported", since=mark)
                assert not resets, "RESET issued on a device without the flag: %r" % resets
                env.wait_journal("LEASE_QUIESCED", NOIOMMUD_LEASE_ID=lease["lease"], NOIOMMUD_RESET=0)
                os.close(memfd)
                os.close(devfd)
                c.close()
            env.wait_baseline(base, what="after the lease without reset")

        kept = 0
        with env.subtest("Bus Master still set on read-back -> DeviceQuarantined, memory kept"):
            with env.fault("bme-stuck", GROUP_DEV):
                c = env.connect(uid=ALLOWED_UID)
                lease, devfd = acquire(c, GROUP_DEV)
                mem, memfd = allocate_leased(c, lease["lease"], 4 << 20, "physical")
                mark = log_.mark()
                err, params = c.call_error(RELEASE, {"lease": lease["lease"]})
                assert err == ERR + "DeviceQuarantined" and params.get("device") == GROUP_DEV, (err, params)
                log_.wait("bme-stuck", since=mark, dev=GROUP_DEV)
                gone = [e for e in log_.events(mark) if e["event"] in ("reset", "unpin", "munmap") or
                        (e["event"] == "close-memfd" and e["last"] == "1") or
                        (e["event"] == "close-device" and e["still-open"] == "0")]
                assert not gone, "a quarantined lease released something: %r" % gone
                env.wait_journal("QUIESCE_FAILED", NOIOMMUD_LEASE_ID=lease["lease"],
                                 NOIOMMUD_DEVICE=GROUP_DEV, NOIOMMUD_MEM_BYTES=4 << 20)
                os.close(memfd)
                os.close(devfd)
                c.close()
            kept += 2
            # the daemon keeps its pin and mapping: the pages stay taken
            env.settled_baseline()
            assert hugepages_free() == base[1] - kept, \
                "HugePages_Free %d, expected %d (quarantined memory freed?)" % (hugepages_free(), base[1] - kept)
            c = env.connect(uid=ALLOWED_UID)
            err, params = c.call_error(ACQUIRE, {"device": GROUP_DEV})
            assert err == ERR + "DeviceQuarantined", (err, params)
            c.close()

        with env.subtest("holder killed while the Bus Master clear does not stick -> quarantined"):
            with env.fault("bme-stuck", CDEV_NOIOMMU_DEV):
                p, lease, mem = batch_client(env, CDEV_NOIOMMU_DEV)
                mark = log_.mark()
                p.kill()
                p.wait(10)
                env.wait_journal("QUIESCE_FAILED", NOIOMMUD_LEASE_ID=lease)
                # (the daemon may still close its duplicate of the memfd it sent: last=0)
                gone = [e for e in log_.events(mark) if e["event"] in
                        ("reset", "ioas-unmap", "unpin", "munmap", "detach", "destroy") or
                        (e["event"] == "close-memfd" and e["last"] == "1")]
                assert not gone, "a quarantined lease released something: %r" % gone
            kept += 2
            env.settled_baseline()
            assert hugepages_free() == base[1] - kept, "HugePages_Free %d, expected %d" % (
                hugepages_free(), base[1] - kept)
            c = env.connect(uid=ALLOWED_UID)
            err, _ = c.call_error(ACQUIRE, {"device": CDEV_NOIOMMU_DEV})
            assert err == ERR + "DeviceQuarantined", err
            c.close()

        with env.subtest("VFIO_DEVICE_RESET fails -> quarantined, memory kept"):
            with env.fault("reset-fail", CDEV_IOMMU_DEV):
                c = env.connect(uid=ALLOWED_UID)
                lease, devfd = acquire(c, CDEV_IOMMU_DEV)
                mem, memfd = allocate_leased(c, lease["lease"], 2 << 20, "iova")
                mark = log_.mark()
                err, _ = c.call_error(RELEASE, {"lease": lease["lease"]})
                assert err == ERR + "DeviceQuarantined", err
                order(log_, mark, ("clear_bme", {"dev": CDEV_IOMMU_DEV}), ("reset-failed", {"dev": CDEV_IOMMU_DEV}))
                assert not log_.find("unpin", since=mark), log_.describe(mark)
                os.close(memfd)
                os.close(devfd)
                c.close()
            kept += 1
            env.settled_baseline()
            assert hugepages_free() == base[1] - kept, "HugePages_Free %d, expected %d" % (
                hugepages_free(), base[1] - kept)

        with env.subtest("quarantine outlives the fault; other devices are unaffected"):
            c = env.connect(uid=ALLOWED_UID)
            for address in (GROUP_DEV, CDEV_NOIOMMU_DEV, CDEV_IOMMU_DEV):
                err, _ = c.call_error(ACQUIRE, {"device": address})
                assert err == ERR + "DeviceQuarantined", (address, err)
            lease, devfd = acquire(c, CDEV_NOIOMMU_DEV2)
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            os.close(devfd)
            c.close()
            env.assert_daemon_alive()

        with env.subtest("SIGTERM with a lease held -> quiesce (reason shutdown), then exit"):
            c = env.connect(uid=ALLOWED_UID)
            lease, devfd = acquire(c, CDEV_NOIOMMU_DEV2)
            mem, memfd = allocate_leased(c, lease["lease"], 2 << 20, "physical")
            mark = log_.mark()
            env.stop_daemon()
            order(log_, mark, *expected_teardown(CDEV_NOIOMMU_DEV2, mem["memory"]))
            env.wait_journal("LEASE_QUIESCED", NOIOMMUD_LEASE_ID=lease["lease"], NOIOMMUD_REASON="shutdown")
            os.close(memfd)
            os.close(devfd)
            c.close()


if __name__ == "__main__":
    run(body)
