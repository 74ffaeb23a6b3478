# SPDX-License-Identifier: LGPL-2.1-or-later
"""Set-up steps that several test files repeated word for word (found with `duplicates`), as
functions of an Environment. They assert nothing a test relies on beyond what the copies did."""

import os

from .polkit import ALLOWED_UID
from .pool import HUGEPAGE_2M
from .varlink import FREE, allocate


def warm_baseline(env, uid=ALLOWED_UID, size=HUGEPAGE_2M):
    """One allocation made and dropped (memfd closed, connection closed, no FreeMemory) before
    the baseline is taken, so that what the daemon sets up on its first request (its bus
    connection, polkit's, and the like) is part of the baseline; returns settled_baseline()
    relative to HugePages_Free before the warm-up."""
    free0 = env.hugepages_free()
    w = env.connect(uid=uid)
    _, fd = allocate(w, size)
    os.close(fd)
    w.close()
    return env.settled_baseline(free0)


def served(env, clients=None, uid=ALLOWED_UID):
    """An allowed client gets memory and frees it: the daemon still serves, and, since requests
    are answered in order, polkitd has answered everything sent before. clients, if given, is
    a pool whose connect(uid) replaces env.connect()."""
    c = clients.connect(uid) if clients else env.connect(uid=uid)
    r, fd = allocate(c, 2 * 1024 * 1024)
    os.close(fd)
    c.call_ok(FREE, {"memory": r["memory"]})
    c.close()
