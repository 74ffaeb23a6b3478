#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hugepage exhaustion (security.md §5.1, §10 row 15): a request beyond HugePages_Free is a clean
OutOfMemory {requested, hugepageSize} from the daemon (preallocation fails there, never SIGBUS in
a client), nothing is leaked, the pool can be used up exactly, and a following small allocation
works. A fallocate() that fails with ENOSPC although the pool looks big enough (another process
took the pages first, or a hugetlb cgroup limit) is injected with strace and gives the same clean
OutOfMemory, with nothing pinned."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from noiommutest.fixtures import warm_baseline  # noqa: E402

MiB = 1 << 20
HP = 2 * MiB
OOM = H.ERR + "OutOfMemory"


def main():
    with H.Environment(hugepages=32) as env:
        base = warm_baseline(env)
        c = env.connect(uid=H.ALLOWED_UID)
        c.call_ok(H.GET_INFO)
        base_c = env.settled_baseline(base[1])          # with c open

        with env.subtest("one page more than HugePages_Free: OutOfMemory, nothing leaked"):
            want = (H.hugepages_available() + 1) * HP
            err, params = c.call_error(H.ALLOCATE, {"size": want})
            assert err == OOM, (err, params)
            assert params == {"requested": want, "hugepageSize": HP}, params
            env.wait_baseline(base_c, what="after OutOfMemory")
            assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)

        with env.subtest("an unaligned size beyond the pool reports the rounded request"):
            want = H.hugepages_available() * HP + 1
            err, params = c.call_error(H.ALLOCATE, {"size": want})
            assert err == OOM, (err, params)
            assert params.get("hugepageSize") == HP and params.get("requested") in (want, want - 1 + HP), params

        with env.subtest("1 TiB: a clean error"):
            err, params = c.call_error(H.ALLOCATE, {"size": 1 << 40})
            assert err in (OOM, H.ERR + "LimitExceeded", H.INVALID_PARAMETER), (err, params)
            env.wait_baseline(base_c, what="after 1 TiB")

        with env.subtest("the whole pool can be taken, then the next page is OutOfMemory"):
            n = H.hugepages_available()
            r, fd = H.allocate(c, n * HP)
            assert H.hugepages_available() == 0, H.hugepages_available()
            other = env.connect(uid=H.ALLOWED_UID)
            err, params = other.call_error(H.ALLOCATE, {"size": HP})
            assert err == OOM and params == {"requested": HP, "hugepageSize": HP}, (err, params)
            other.close()
            # the holder's memory is intact after the failed request of another client
            assert os.fstat(fd).st_size == n * HP
            os.close(fd)
            c.call_ok(H.FREE, {"memory": r["memory"]})
            env.wait_baseline(base_c, what="after freeing the pool")

        with env.subtest("a following small allocation works"):
            r, fd = H.allocate(c, HP)
            assert H.hugepages_free() == base[1] - 1
            os.close(fd)
            c.close()
            env.wait_baseline(base, what="end")

        with env.subtest("fallocate fails with ENOSPC (strace -e inject): OutOfMemory, nothing pinned"):
            os.environ["NOIOMMU_TEST_WRAPPER"] = "strace -f -qq -o /dev/null -e trace=fallocate -e inject=fallocate:error=ENOSPC"
            try:
                # LeakSanitizer cannot run under ptrace and would fail the exit of an ASan build;
                # the rest of ASan and UBSan still watch this daemon.
                env.restart_daemon(env_overrides={
                    "ASAN_OPTIONS": "detect_leaks=0:" + os.environ.get("ASAN_OPTIONS", "")})
            finally:
                os.environ.pop("NOIOMMU_TEST_WRAPPER", None)
            free_before = H.hugepages_free()
            c = env.connect(uid=H.ALLOWED_UID)
            err, params = c.call_error(H.ALLOCATE, {"size": HP})
            assert err == OOM and params == {"requested": HP, "hugepageSize": HP}, (err, params)
            assert H.hugepages_free() == free_before, "pages taken by a failed allocation"
            assert env.daemon_hugetlb_kb() == 0, "the daemon maps hugetlb memory after a failed allocation"
            c.call_ok(H.GET_INFO)
            c.close()
            env.restart_daemon()
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, HP)                   # without the fault: served
            os.close(fd)
            c.close()


H.run(main)
