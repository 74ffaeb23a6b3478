#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""AllocateMemory for an allowed user: `noiommuctl --json alloc 4M --hold` under setpriv, with the
physical addresses of the client's mapping checked page by page against the segment table through
/proc/PID/pagemap; the hugepage accounting; the audit records; and, with a raw client, the memfd
itself (name, size, seals, EPERM on resize, zeroed, physical addresses of our own mapping)."""

import ctypes
import errno
import fcntl
import json
import mmap
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from noiommutest.fixtures import warm_baseline  # noqa: E402

MiB = 1 << 20
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL


def expect_errno(e, fn, *args):
    try:
        fn(*args)
    except OSError as x:
        assert x.errno == e, "%s%r failed with %s, expected %s" % (
            fn.__name__, args, errno.errorcode.get(x.errno), errno.errorcode[e])
    else:
        raise AssertionError("%s%r succeeded, expected %s" % (fn.__name__, args, errno.errorcode[e]))


def memfd_vmas(pid, memory_id):
    name = "/memfd:noiommud-%s (deleted)" % memory_id
    return [v for v in H.proc_maps(pid) if v["path"] == name]


def main():
    with H.Environment() as env:
        base = warm_baseline(env)

        with env.subtest("noiommuctl --json alloc 4M --hold: physical addresses via pagemap"):
            p = env.ctl_popen(["--json", "alloc", "4M", "--hold"])
            try:
                line = H.readline_timeout(p.stdout, 30)
            except AssertionError:
                p.kill()
                raise AssertionError("noiommuctl printed no line; stderr: %r"
                                     % p.stderr.read().decode(errors="replace"))
            out = json.loads(line)
            for key in ("memory", "size", "hugepageSize", "numaNode", "addressKind", "segments"):
                assert key in out, "noiommuctl --json alloc output lacks %r: %r" % (key, out)
            assert out["size"] == 4 * MiB and out["hugepageSize"] == 2 * MiB, out
            assert out["addressKind"] == "physical", out
            H.check_segments(out, out["size"])
            start_time = H.process_start_time(p.pid)

            assert H.hugepages_free() == base[1] - 2, \
                "HugePages_Free %d, expected %d - 2" % (H.hugepages_free(), base[1])

            vmas = memfd_vmas(p.pid, out["memory"])
            assert vmas, "no /memfd:noiommud-%s mapping in /proc/%d/maps:\n%s" % (
                out["memory"], p.pid, open("/proc/%d/maps" % p.pid).read())
            checked = sum(H.check_physical_addresses(p.pid, v, out["segments"], out["size"]) for v in vmas)
            assert checked == out["size"] // 4096, \
                "checked %d pages, the memory has %d" % (checked, out["size"] // 4096)
            # the daemon maps it too (its pin), and nobody else has extra pages
            assert memfd_vmas(env.daemon_pid, out["memory"]), "the daemon does not map the memory"

            p.stdin.close()
            rc = p.wait(20)
            assert rc == 0, "noiommuctl exited %d: %s" % (rc, p.stderr.read().decode(errors="replace"))
            env.wait_baseline(base, what="after noiommuctl exited")

            g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=out["memory"])
            assert len(g) == 1, g
            g = g[0]
            want = {"NOIOMMUD_CLIENT_UID": "1", "NOIOMMUD_CLIENT_GID": "1",
                    "NOIOMMUD_CLIENT_PID": str(p.pid), "NOIOMMUD_CLIENT_START_TIME": str(start_time),
                    "NOIOMMUD_MEM_BYTES": str(4 * MiB), "NOIOMMUD_HUGEPAGE_SIZE": str(2 * MiB)}
            bad = {k: (g.get(k), v) for k, v in want.items() if g.get(k) != v}
            assert not bad, "MEMORY_GRANTED fields (got, want): %r" % bad
            f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=out["memory"])[0]
            assert f.get("NOIOMMUD_CLIENT_UID") == "1" and f.get("NOIOMMUD_CLIENT_PID") == str(p.pid), f
            assert f.get("NOIOMMUD_REASON") in ("free", "client-exit"), f
            a = env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=p.pid,
                                 NOIOMMUD_POLKIT_ACTION="io.noiommud.allocate-memory")
            assert len(a) == 1, a
            assert a[0].get("NOIOMMUD_CLIENT_UID") == "1", a
            assert a[0].get("NOIOMMUD_POLKIT_RESULT") == "authorized", a

        with env.subtest("raw client: the memfd is sealed, sized, zeroed and at the reported addresses"):
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, 3 * MiB)          # rounded up to two 2 MiB pages
            assert r["size"] == 4 * MiB and r["hugepageSize"] == 2 * MiB, r
            assert H.hugepages_free() == base[1] - 2, H.hugepages_free()
            seals = H.memfd_seals(fd)
            assert seals & SEALS == SEALS, "seals %#x lack SHRINK|GROW|SEAL" % seals
            expect_errno(errno.EPERM, os.ftruncate, fd, 2 * MiB)
            expect_errno(errno.EPERM, os.ftruncate, fd, 6 * MiB)
            expect_errno(errno.EPERM, fcntl.fcntl, fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
            expect_errno(errno.EPERM, os.posix_fallocate, fd, 4 * MiB, 2 * MiB)
            assert os.fstat(fd).st_size == 4 * MiB
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            assert flags & fcntl.FD_CLOEXEC, "received fd without CLOEXEC (we asked MSG_CMSG_CLOEXEC)"

            m = mmap.mmap(fd, r["size"], mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            try:
                assert m[:] == bytes(r["size"]), "fresh DMA memory is not zeroed"
                addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
                vma = {"start": addr, "end": addr + r["size"], "offset": 0}
                n = H.check_physical_addresses(os.getpid(), vma, r["segments"], r["size"])
                assert n == r["size"] // 4096, n
                m[0] = 0x5a
            finally:
                m.close()
            assert H.hugepages_free() == base[1] - 2, "our mapping took extra pages"
            os.close(fd)

            empty, fds = c.call_ok(H.FREE, {"memory": r["memory"]})
            assert empty == {} and not fds, (empty, fds)
            H.wait_until(lambda: H.hugepages_free() == base[1], 10, "pages back after FreeMemory")
            g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=r["memory"])[0]
            assert g.get("NOIOMMUD_CLIENT_PID") == str(c.pid), (g, c.pid)
            f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"])[0]
            assert f.get("NOIOMMUD_REASON") == "free", f
            c.close()
            env.wait_baseline(base, what="after the client left")

        with env.subtest("explicit hugepageSize 2 MiB and numaNode 0"):
            c = env.connect(uid=H.ALLOWED_UID)
            params = {"hugepageSize": 2 * MiB}
            if os.path.exists("/sys/devices/system/node/node0"):
                params["numaNode"] = 0
            r, fd = H.allocate(c, 2 * MiB, **params)
            assert r["hugepageSize"] == 2 * MiB and r["size"] == 2 * MiB, r
            if "numaNode" in params:
                assert r["numaNode"] == 0, r
            os.close(fd)
            c.close()
            env.wait_baseline(base, what="after disconnect")

        with env.subtest("a lease parameter -> NoSuchLease (no leases in this version)"):
            c = env.connect(uid=H.ALLOWED_UID)
            lease = "0123456789abcdef0123456789abcdef"
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB, "lease": lease})
            assert err == H.ERR + "NoSuchLease" and params == {"lease": lease}, (err, params)
            c.close()
            env.wait_baseline(base, what="after NoSuchLease")

        with env.subtest("several allocations on one connection have distinct ids and pages"):
            c = env.connect(uid=H.ALLOWED_UID)
            got = [H.allocate(c, 2 * MiB) for _ in range(3)]
            ids = {r["memory"] for r, _ in got}
            assert len(ids) == 3, ids
            addrs = [s["dmaAddress"] for r, _ in got for s in r["segments"]]
            assert len(set(addrs)) == len(addrs), addrs
            assert H.hugepages_free() == base[1] - 3
            for _, fd in got:
                os.close(fd)
            c.close()
            env.wait_baseline(base, what="after disconnect")
            for i in ids:
                f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=i)[0]
                assert f.get("NOIOMMUD_REASON") == "client-exit", f


H.run(main)
