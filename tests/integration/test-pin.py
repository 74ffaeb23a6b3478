#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The pin is real (security.md §5.2, §5.3; test plan row 16), and the page sizes the kernel
offers are the ones served.

  - The client cannot truncate or grow its memfd (EPERM from the seals).
  - It CAN punch a hole (no usable seal prevents that), but the punched hugepage does not go
    back to the pool while the daemon holds the memory: the io_uring FOLL_LONGTERM pin keeps it.
    At FreeMemory the daemon notices the page left the file (NOIOMMUD_PFN_CHANGED=1) and, once
    unpinned, the page returns.
  - hugepageSize: a size the kernel offers is served with that page size; one it does not
    offer is NotSupported; a malformed one is InvalidParameter; a float is InvalidParameter.
"""
import ctypes
import errno
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MiB = 1 << 20
HP = 2 * MiB
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]


def offered_sizes():
    out = []
    for d in os.listdir("/sys/kernel/mm/hugepages"):
        if d.startswith("hugepages-") and d.endswith("kB"):
            out.append(int(d[len("hugepages-"):-2]) * 1024)
    return sorted(out)


def free_pages(size):
    with open("/sys/kernel/mm/hugepages/hugepages-%dkB/free_hugepages" % (size // 1024)) as f:
        return int(f.read())


def main():
    with H.Environment() as env:
        c = env.connect(uid=H.ALLOWED_UID)
        free0 = env.settled_baseline()[1]

        with env.subtest("truncate and grow of the received memfd fail with EPERM"):
            r, fd = H.allocate(c, 2 * HP)
            for size in (HP, 3 * HP):
                try:
                    os.ftruncate(fd, size)
                    raise AssertionError("ftruncate(%d) succeeded on a sealed memfd" % size)
                except OSError as e:
                    assert e.errno == errno.EPERM, e

        with env.subtest("punch-hole succeeds, but the pinned page stays out of the pool"):
            if libc.fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, HP) != 0:
                raise AssertionError("punch-hole failed: %s" % os.strerror(ctypes.get_errno()))
            # The page left the file; without a pin it would be free now.
            assert H.hugepages_free() == free0 - 2, \
                "HugePages_Free %d after punch-hole, expected %d: the pin did not hold the page" \
                % (H.hugepages_free(), free0 - 2)

        with env.subtest("FreeMemory: PFN change recorded, then every page returns"):
            empty, _ = c.call_ok(H.FREE, {"memory": r["memory"]})
            assert empty == {}, empty
            e = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"])[0]
            assert e.get("NOIOMMUD_PFN_CHANGED") == "1", e
            os.close(fd)
            H.wait_until(lambda: H.hugepages_free() == free0, 10, "HugePages_Free back to %d" % free0)

        with env.subtest("memory a client did not touch: PFNs unchanged at free"):
            r2, fd2 = H.allocate(c, HP)
            c.call_ok(H.FREE, {"memory": r2["memory"]})
            e = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r2["memory"])[0]
            assert e.get("NOIOMMUD_PFN_CHANGED") == "0", e
            os.close(fd2)

        sizes = offered_sizes()
        print("# hugepage sizes this kernel offers: %s" % ", ".join("%d KiB" % (s // 1024) for s in sizes))
        for size in sizes:
            with env.subtest("hugepageSize %d KiB is served with that page size" % (size // 1024)):
                if free_pages(size) < 1:
                    # Reserving gigantic pages at run time usually fails (fragmentation);
                    # say so loudly instead of pretending.
                    print("# NOTE: no free %d KiB pages reserved on this machine; checking the "
                          "OutOfMemory answer instead of an allocation" % (size // 1024))
                    err, params = c.call_error(H.ALLOCATE, {"size": size, "hugepageSize": size})
                    assert err == H.ERR + "OutOfMemory", (err, params)
                    continue
                rr, f = H.allocate(c, size, hugepageSize=size)
                assert rr["hugepageSize"] == size and rr["size"] == size, rr
                os.close(f)
                c.call_ok(H.FREE, {"memory": rr["memory"]})

        with env.subtest("a hugepage size the kernel does not offer: NotSupported"):
            missing = [s for s in (2 * MiB, 1 << 30) if s not in sizes]
            if not missing:
                missing = [1 << 25]           # 32 MiB: no x86 page size
            for s in missing:
                err, params = c.call_error(H.ALLOCATE, {"size": s, "hugepageSize": s})
                assert err == H.ERR + "NotSupported" and "reason" in params, (s, err, params)

        with env.subtest("malformed hugepageSize or size: InvalidParameter, connection stays"):
            for p in ({"size": HP, "hugepageSize": 3 * MiB}, {"size": HP, "hugepageSize": 0},
                      {"size": HP, "hugepageSize": -HP}, {"size": 2097152.0},
                      {"size": HP, "numaNode": 1.0}):
                err, params = c.call_error(H.ALLOCATE, p)
                assert err == H.INVALID_PARAMETER, (p, err, params)
            assert c.call_ok(H.GET_INFO)[0]["product"] == "noiommud"

        c.close()
        env.wait_baseline(env.baseline())


if __name__ == "__main__":
    H.run(main)
