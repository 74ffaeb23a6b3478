# SPDX-License-Identifier: LGPL-2.1-or-later
"""The machine's 2 MiB hugepage pool, shared by every integration run on the machine.

Runs are serialized machine-wide by flock(LOCK_PATH): they share the pool, and HugePages_Free
is an oracle ("the daemon gave every page back"). Anything else that allocates hugepages
meanwhile (another engineer's test, a benchmark) can make the HugePages_Free checks fail.
reserve() raises nr_hugepages if fewer than the wanted pages are free and writes the old value
to STATE_PATH first, so that a run killed before restore() is undone by the next one."""

import fcntl
import os
import time

from .common import Skip, log, read_int, write_int

HUGEPAGE_2M = 2 * 1024 * 1024
HUGEPAGE_SYSFS = "/sys/kernel/mm/hugepages/hugepages-2048kB"

LOCK_PATH = "/run/lock/noiommud-integration.lock"
# nr_hugepages before a run changed it; removed when the run restores it. If it exists when
# we get the lock, the run that wrote it was killed, and we restore its value first.
STATE_PATH = "/run/lock/noiommud-integration.nr_hugepages"

NR_PATH = os.path.join(HUGEPAGE_SYSFS, "nr_hugepages")

# nr_hugepages right after the Environment reserved its pages (see hugepages_free).
_pool_base = None


def _pool_counts():
    """(nr_hugepages, free_hugepages) of the 2 MiB pool, read consistently."""
    free_path = os.path.join(HUGEPAGE_SYSFS, "free_hugepages")
    while True:
        a = (read_int(NR_PATH), read_int(free_path))
        if a == (read_int(NR_PATH), read_int(free_path)):
            return a


def hugepages_available():
    """Free 2 MiB hugepages right now: what an allocation can get."""
    return _pool_counts()[1]


def hugepages_free():
    """HugePages_Free of the 2 MiB pool, corrected for resizes of the pool by anyone else since
    the environment reserved its pages (someone writing nr_hugepages changes HugePages_Free by
    the same amount as HugePages_Total; pages in use are unaffected). Without that correction
    this is HugePages_Free exactly; it is the oracle for "the daemon gave every page back"."""
    nr, free = _pool_counts()
    return free if _pool_base is None else free - (nr - _pool_base)


def meminfo_hugepages_free():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("HugePages_Free:"):
                return int(line.split()[1])
    raise AssertionError("no HugePages_Free in /proc/meminfo")


def lock(path=LOCK_PATH, timeout=90):
    """Takes the machine-wide integration lock; returns its fd (closing it releases)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise AssertionError("another integration test holds %s for %ds" % (path, timeout))
            time.sleep(0.1)


def restore_stale(state_path=STATE_PATH):
    """Undoes the nr_hugepages change of a run that was killed before it could."""
    if os.path.exists(state_path):
        stale = read_int(state_path)
        log("a killed test run left nr_hugepages raised; restoring %d" % stale)
        write_int(NR_PATH, stale)
        os.unlink(state_path)


def reserve(count, state_path=STATE_PATH):
    """Makes sure `count` pages are free, raising nr_hugepages if needed (Skip if the kernel
    cannot find them). Returns the nr_hugepages to restore, or None if it was left alone.
    From here on hugepages_free() is corrected for other resizes of the pool."""
    global _pool_base
    _pool_base = None
    orig = read_int(NR_PATH)
    free = hugepages_available()
    nr_orig = None
    if free < count:
        nr_orig = orig
        write_int(state_path, orig)
        write_int(NR_PATH, orig + count - free)
        got = hugepages_available()
        if got < count:
            restore(nr_orig, state_path)
            raise Skip("could only get %d of %d free 2 MiB hugepages (memory fragmented?)" % (got, count))
        log("nr_hugepages %d -> %d (restored at exit)" % (orig, read_int(NR_PATH)))
    _pool_base = _pool_counts()[0]
    return nr_orig


def restore(nr_orig, state_path=STATE_PATH):
    """Ends the reservation: nr_hugepages back to nr_orig (if reserve() changed it)."""
    global _pool_base
    _pool_base = None
    if nr_orig is not None:
        write_int(NR_PATH, nr_orig)
        os.unlink(state_path)
