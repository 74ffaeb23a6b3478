#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""FreeMemory and the end of memory (design.md §3.4): memory belongs to the connection that
allocated it (another connection, even of the same uid, gets NoSuchMemory); FreeMemory of one's
own id returns {} and the pages come back once the client has closed its memfd; a second free is
NoSuchMemory; a disconnect without free returns every page (MEMORY_FREED reason client-exit)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from noiommutest.fixtures import warm_baseline  # noqa: E402

MiB = 1 << 20
HP = 2 * MiB
NO_SUCH = H.ERR + "NoSuchMemory"


def main():
    with H.Environment() as env:
        base = warm_baseline(env)

        a = env.connect(uid=H.ALLOWED_UID)
        b = env.connect(uid=H.ALLOWED_UID)

        with env.subtest("FreeMemory of another connection's id: NoSuchMemory, memory kept"):
            ra, fa = H.allocate(a, 2 * HP)
            err, params = b.call_error(H.FREE, {"memory": ra["memory"]})
            assert err == NO_SUCH and params == {"memory": ra["memory"]}, (err, params)
            assert H.hugepages_free() == base[1] - 2
            assert not env.find_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=ra["memory"])

        with env.subtest("FreeMemory of an unknown well-formed id: NoSuchMemory"):
            unknown = "0" * 32
            err, params = b.call_error(H.FREE, {"memory": unknown})
            assert err == NO_SUCH and params == {"memory": unknown}, (err, params)

        with env.subtest("a denied uid cannot free someone's memory"):
            d = env.connect(uid=H.DENIED_UID)
            err, params = d.call_error(H.FREE, {"memory": ra["memory"]})
            assert err == NO_SUCH, (err, params)
            d.close()
            assert H.hugepages_free() == base[1] - 2

        with env.subtest("FreeMemory of own id: {} and MEMORY_FREED reason free; pages back after close"):
            empty, fds = a.call_ok(H.FREE, {"memory": ra["memory"]})
            assert empty == {} and not fds, (empty, fds)
            f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=ra["memory"])
            assert len(f) == 1, f
            f = f[0]
            assert f.get("NOIOMMUD_REASON") == "free", f
            assert f.get("NOIOMMUD_CLIENT_UID") == "1" and f.get("NOIOMMUD_CLIENT_PID") == str(a.pid), f
            assert f.get("NOIOMMUD_MEM_BYTES") == str(2 * HP), f
            # we still hold the memfd: the pages are ours until we close it
            assert H.hugepages_free() == base[1] - 2, "pages freed under a client that still maps/holds them"
            os.close(fa)
            H.wait_until(lambda: H.hugepages_free() == base[1], 10, "pages back after closing the memfd")

        with env.subtest("a second FreeMemory of the same id: NoSuchMemory"):
            err, params = a.call_error(H.FREE, {"memory": ra["memory"]})
            assert err == NO_SUCH, (err, params)

        with env.subtest("FreeMemory with the memfd closed first returns the pages at once"):
            r, fd = H.allocate(a, HP)
            os.close(fd)
            assert H.hugepages_free() == base[1] - 1
            a.call_ok(H.FREE, {"memory": r["memory"]})
            # The daemon handed a copy of the memfd to its fd store (here the harness's notify
            # reader) at allocation; that copy is gone once the reader has handled the datagram.
            env.journal.notify_barrier()
            assert H.hugepages_free() == base[1], "pages not back when FreeMemory returned"

        with env.subtest("disconnect without free: pages back, MEMORY_FREED client-exit for each"):
            got = [H.allocate(b, HP) for _ in range(3)]
            for _, fd in got:
                os.close(fd)
            assert H.hugepages_free() == base[1] - 3
            b.close(keep_process=True)
            H.wait_until(lambda: H.hugepages_free() == base[1], 10, "pages back after the disconnect")
            for r, _ in got:
                f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"])[0]
                assert f.get("NOIOMMUD_REASON") == "client-exit", f
                assert f.get("NOIOMMUD_CLIENT_PID") == str(b.pid), f
            b.end_process()

        with env.subtest("client killed while holding memory: pages back after the kill"):
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, 2 * HP)
            os.close(fd)
            c.end_process(kill=True)     # the connector dies ...
            c.close()                    # ... and its socket goes
            H.wait_until(lambda: H.hugepages_free() == base[1], 10, "pages back after the kill")
            f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"])[0]
            assert f.get("NOIOMMUD_REASON") == "client-exit", f

        a.close()
        with env.subtest("everything back at the baseline"):
            env.wait_baseline(base, what="end")


H.run(main)
