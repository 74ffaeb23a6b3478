# SPDX-License-Identifier: LGPL-2.1-or-later
"""Oracles: what is true outside the daemon, checked against what it says or did.

  * physical addresses: /proc/PID/pagemap of a mapping of the memfd (pagemap.py, which the
    VM guests import on its own, so it stays a standalone file);
  * the shape of an AllocateMemory reply's segment table;
  * the daemon's open fds (/proc/PID/fd) and its hugetlb mappings (smaps_rollup), and the
    pool's HugePages_Free, together the "baseline" a test returns to (DaemonOracles, a mixin
    of Environment: it needs self.daemon_pid and self.assert_daemon_alive()).

The fd count and HugePages_Free are machine-wide or process-wide state, which is why runs are
serialized (pool.py); daemon_hugetlb_kb() is per daemon."""

import fcntl
import os
import time

from pagemap import check_physical_addresses, pagemap, proc_maps  # noqa: F401 (re-exported)

from .common import wait_until
from .pool import hugepages_free


def check_segments(reply, size):
    """Structural checks on an AllocateMemory reply's segment table."""
    segs = reply["segments"]
    assert isinstance(segs, list) and segs, "no segments in %r" % reply
    pos = 0
    for s in segs:
        assert set(s) == {"offset", "length", "dmaAddress"}, "segment fields: %r" % s
        assert s["offset"] == pos, "segments not contiguous in the file at %#x: %r" % (pos, segs)
        assert s["length"] > 0 and s["length"] % reply["hugepageSize"] == 0, "segment length %r" % s
        assert s["dmaAddress"] % reply["hugepageSize"] == 0, "dmaAddress not hugepage aligned: %r" % s
        pos += s["length"]
    assert pos == size, "segments cover %d bytes, size is %d" % (pos, size)
    for a, b in zip(segs, segs[1:]):
        assert a["dmaAddress"] + a["length"] != b["dmaAddress"], \
            "adjacent segments %r and %r are physically contiguous but not merged" % (a, b)


def memfd_seals(fd):
    return fcntl.fcntl(fd, fcntl.F_GET_SEALS)


class DaemonOracles:
    """The daemon's resources as the kernel sees them (mixed into Environment)."""

    def daemon_fds(self):
        d = "/proc/%d/fd" % self.daemon_pid
        out = {}
        for n in os.listdir(d):
            try:
                out[int(n)] = os.readlink(os.path.join(d, n))
            except OSError:
                pass
        return out

    def daemon_fd_count(self):
        self.assert_daemon_alive()
        return len(os.listdir("/proc/%d/fd" % self.daemon_pid))

    def hugepages_free(self):
        return hugepages_free()

    def daemon_hugetlb_kb(self):
        """Hugetlb memory the daemon maps (Shared_Hugetlb + Private_Hugetlb of smaps_rollup):
        its own mappings of the memory it holds, independent of anyone else's hugepages."""
        kb = 0
        with open("/proc/%d/smaps_rollup" % self.daemon_pid) as f:
            for line in f:
                if line.startswith(("Shared_Hugetlb:", "Private_Hugetlb:")):
                    kb += int(line.split()[1])
        return kb

    def baseline(self):
        """(daemon fd count, free hugepages, daemon hugetlb kB) now."""
        return self.daemon_fd_count(), hugepages_free(), self.daemon_hugetlb_kb()

    def settled_baseline(self, free=None, stable=0.2, timeout=10):
        """Baseline after earlier activity: waits until HugePages_Free equals `free` (if given)
        and the daemon's fd count has not changed for `stable` seconds."""
        if free is not None:
            wait_until(lambda: hugepages_free() == free, timeout,
                       lambda: "HugePages_Free %d to return to %d" % (hugepages_free(), free))
        deadline = time.monotonic() + timeout
        last, since = self.daemon_fd_count(), time.monotonic()
        while time.monotonic() - since < stable:
            assert time.monotonic() < deadline, "daemon fd count does not settle"
            time.sleep(0.02)
            n = self.daemon_fd_count()
            if n != last:
                last, since = n, time.monotonic()
        return last, hugepages_free(), self.daemon_hugetlb_kb()

    def wait_baseline(self, base, timeout=10, what=""):
        """Waits until the daemon's fd count, HugePages_Free and the daemon's hugetlb mappings
        are back at `base` (a tuple from baseline() or settled_baseline())."""
        fds, free, kb = base

        def describe():
            return ("%sdaemon fds %d (baseline %d), HugePages_Free %d (baseline %d), daemon hugetlb "
                    "mappings %d kB (baseline %d); fds now: %s"
                    % (what + ": " if what else "", self.daemon_fd_count(), fds, hugepages_free(), free,
                       self.daemon_hugetlb_kb(), kb, self.daemon_fds()))
        wait_until(lambda: (self.daemon_fd_count() == fds and hugepages_free() == free
                            and self.daemon_hugetlb_kb() == kb), timeout, describe)
        self.assert_daemon_alive()
