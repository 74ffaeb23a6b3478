# SPDX-License-Identifier: LGPL-2.1-or-later
"""Where a process's pages are in physical memory, read as root from /proc/PID/pagemap.

The oracle for every "the daemon reported the right addresses" check: the integration tier
(through harness.py, which re-exports these), the demo, and the vm tier's guests (which get
this file alone through run-vm.py --file; it needs nothing but the standard library).
"""

import os
import struct


def proc_maps(pid):
    """Rows of /proc/PID/maps as dicts: start, end, perms, offset, path."""
    rows = []
    with open("/proc/%d/maps" % pid) as f:
        for line in f:
            parts = line.rstrip("\n").split(None, 5)
            start, end = (int(x, 16) for x in parts[0].split("-"))
            rows.append({"start": start, "end": end, "perms": parts[1],
                         "offset": int(parts[2], 16),
                         "path": parts[5] if len(parts) > 5 else ""})
    return rows


def pagemap(pid, start, length, pagesize=4096):
    """Physical address of each 4 KiB page in [start, start+length) of process pid, read from
    /proc/PID/pagemap (bit 63 present, bits 0-54 PFN); None for a page that is not present.
    The reader must have CAP_SYS_ADMIN to see PFNs (we run as root)."""
    out = []
    with open("/proc/%d/pagemap" % pid, "rb", buffering=0) as f:
        n = length // pagesize
        data = os.pread(f.fileno(), 8 * n, (start // pagesize) * 8)
        if len(data) != 8 * n:
            raise AssertionError("short pagemap read: %d of %d bytes" % (len(data), 8 * n))
        for (e,) in struct.iter_unpack("<Q", data):
            if not (e >> 63) & 1:
                out.append(None)
            else:
                out.append((e & ((1 << 55) - 1)) * pagesize)
    return out


def check_physical_addresses(pid, vma, segments, total_size, pagesize=4096):
    """Asserts that every 4 KiB page of the memfd mapping `vma` (a proc_maps row) in process pid
    is present and lies at segment.dmaAddress + (file offset - segment.offset). Returns the
    number of pages checked."""
    length = vma["end"] - vma["start"]
    phys = pagemap(pid, vma["start"], length, pagesize)
    checked = 0
    for i, pa in enumerate(phys):
        off = vma["offset"] + i * pagesize
        if off >= total_size:
            break
        seg = [s for s in segments if s["offset"] <= off < s["offset"] + s["length"]]
        assert len(seg) == 1, "file offset %#x is covered by %d segments: %r" % (off, len(seg), segments)
        seg = seg[0]
        assert pa is not None, ("page at file offset %#x (vaddr %#x) of pid %d is not present "
                                "in pagemap (bit 63 clear)" % (off, vma["start"] + i * pagesize, pid))
        want = seg["dmaAddress"] + (off - seg["offset"])
        assert pa == want, ("file offset %#x: pagemap says physical %#x, segment %r says %#x"
                            % (off, pa, seg, want))
        checked += 1
    return checked
