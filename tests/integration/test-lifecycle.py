#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Start-up and shutdown: READY=1 on $NOTIFY_SOCKET and a STARTED record; SIGTERM with memory
held frees it (MEMORY_FREED reason shutdown), returns every hugepage and exits cleanly; the
socket works again after a restart."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MiB = 1 << 20


def main():
    with H.Environment() as env:
        free0 = H.hugepages_free()

        with env.subtest("READY=1 and STARTED"):
            assert env.journal.wait_notify("READY=1", 10), \
                "no READY=1 on NOTIFY_SOCKET (got %r)" % env.journal.notifications
            env.wait_journal("STARTED", timeout=5)

        with env.subtest("SIGTERM with memory held: MEMORY_FREED shutdown, pages back, clean exit"):
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, 4 * MiB)
            os.close(fd)
            assert H.hugepages_free() == free0 - 2
            rc = env.stop_daemon()
            assert rc == 0, "exit status %s after SIGTERM, expected 0" % H.describe_status(rc)
            f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"])[0]
            assert f.get("NOIOMMUD_REASON") == "shutdown", f
            H.wait_until(lambda: H.hugepages_free() == free0, 10, "hugepages back after shutdown")
            assert c.wait_closed(5) == [], "messages after shutdown"
            c.close()

        with env.subtest("restart: served again"):
            env.start_daemon()
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            c.close()
            H.wait_until(lambda: H.hugepages_free() == free0, 10, "hugepages back")


H.run(main)
