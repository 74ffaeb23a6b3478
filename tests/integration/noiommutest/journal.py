# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon's journald and service manager, as far as a test needs them: a SOCK_DGRAM
socket that the daemon sees as /run/systemd/journal/socket, parsed as the native journal
protocol (https://systemd.io/JOURNAL_NATIVE_PROTOCOL/: KEY=value lines, binary fields with a
64-bit little-endian length, large entries as a sealed memfd), and a sd_notify socket
(NOTIFY_SOCKET), both read by one thread (JournalCapture). MSGID maps the names of
daemon/msgid.h to their MESSAGE_IDs."""

import os
import re
import select
import socket
import struct
import threading
import time

from .common import SOURCE_ROOT


def parse_msgids():
    """MESSAGE_IDs from daemon/msgid.h, e.g. {'MEMORY_GRANTED': '1346db79...'}."""
    path = os.path.join(SOURCE_ROOT, "daemon", "msgid.h")
    ids = {}
    with open(path) as f:
        for m in re.finditer(r'#define\s+NOIOMMU_MSGID_(\w+)\s+"([0-9a-f]{32})"', f.read()):
            ids[m.group(1)] = m.group(2)
    assert ids, "no MESSAGE_IDs found in " + path
    return ids


MSGID = parse_msgids()


def parse_journal_native(data):
    """Parses one native-protocol journal datagram into a dict of str -> str. A field sent more
    than once becomes a list (the daemon should never do that, and tests comparing it to a string
    will notice)."""
    entry = {}
    i = 0
    n = len(data)
    while i < n:
        nl = data.find(b"\n", i)
        if nl < 0:
            raise ValueError("unterminated field at byte %d" % i)
        line = data[i:nl]
        eq = line.find(b"=")
        if eq >= 0:
            key, value = line[:eq], line[eq + 1:]
            i = nl + 1
        else:
            key = line
            if nl + 9 > n:
                raise ValueError("truncated binary field %r" % key)
            (size,) = struct.unpack_from("<Q", data, nl + 1)
            start = nl + 9
            if start + size + 1 > n or data[start + size:start + size + 1] != b"\n":
                raise ValueError("bad binary field %r (size %d)" % (key, size))
            value = data[start:start + size]
            i = start + size + 1
        k = key.decode("ascii", "replace")
        if not re.fullmatch(r"[A-Z0-9_]+", k):
            raise ValueError("invalid field name %r" % k)
        v = value.decode("utf-8", "replace")
        if k in entry:
            entry[k] = (entry[k] if isinstance(entry[k], list) else [entry[k]]) + [v]
        else:
            entry[k] = v
    return entry


class JournalCapture:
    """A native journal socket plus a sd_notify socket, read by one thread."""

    def __init__(self, journal_dir, notify_path):
        self.path = os.path.join(journal_dir, "socket")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.notify_path = notify_path
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(notify_path)
        self.notify.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self.entries = []
        self.notifications = []
        self.errors = []
        self.cond = threading.Condition()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC)
        self.thread = threading.Thread(target=self._run, name="journal", daemon=True)
        self.thread.start()

    def _recv(self, sock):
        fd_size = socket.CMSG_SPACE(16 * 4)
        cred_size = socket.CMSG_SPACE(12)
        # the real size of the next datagram (MSG_TRUNC makes recv return it)
        size = sock.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)
        data, anc, flags, _ = sock.recvmsg(max(size, 1), fd_size + cred_size, socket.MSG_CMSG_CLOEXEC)
        fds, cred = [], None
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("%di" % (len(cdata) // 4), cdata[:len(cdata) // 4 * 4]))
            elif level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                cred = struct.unpack("iII", cdata[:12])
        return data, fds, flags, cred

    def _run(self):
        while True:
            r, _, _ = select.select([self.sock, self.notify, self.wake_r], [], [])
            if self.wake_r in r:
                return
            if self.sock in r:
                self._journal_datagram()
            if self.notify in r:
                data, fds, flags, cred = self._recv(self.notify)
                for fd in fds:
                    os.close(fd)
                with self.cond:
                    self.notifications.append(data.decode("utf-8", "replace"))
                    self.cond.notify_all()

    def _journal_datagram(self):
        try:
            data, fds, flags, cred = self._recv(self.sock)
        except OSError as e:
            with self.cond:
                self.errors.append("recvmsg: %s" % e)
            return
        try:
            if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
                raise ValueError("datagram truncated (flags %#x)" % flags)
            if fds:
                # A large entry: the payload is a (sealed) memfd and the datagram is empty.
                if len(fds) != 1 or data:
                    raise ValueError("%d fds with %d data bytes" % (len(fds), len(data)))
                size = os.fstat(fds[0]).st_size
                data = os.pread(fds[0], size, 0)
                if len(data) != size:
                    raise ValueError("short read of memfd entry")
            entry = parse_journal_native(data)
            if fds:
                entry["_TRANSPORT_FD"] = "1"
            if cred:
                entry["_PID"], entry["_UID"], entry["_GID"] = (str(x) for x in cred)
            with self.cond:
                self.entries.append(entry)
                self.cond.notify_all()
        except ValueError as e:
            with self.cond:
                self.errors.append("%s: %r" % (e, data[:300]))
        finally:
            for fd in fds:
                os.close(fd)

    def stop(self):
        os.write(self.wake_w, b"x")
        self.thread.join(5)
        for s in (self.sock, self.notify):
            s.close()
        os.close(self.wake_r)
        os.close(self.wake_w)

    @staticmethod
    def _matches(e, message_id, fields):
        if message_id is not None and e.get("MESSAGE_ID") != message_id:
            return False
        for k, v in fields.items():
            got = e.get(k)
            if callable(v):
                if not v(got):
                    return False
            elif got != str(v):
                return False
        return True

    def find(self, message_id=None, **fields):
        """Entries with this MESSAGE_ID whose fields equal the given values (str() is applied;
        a callable value is a predicate on the field)."""
        with self.cond:
            return [e for e in self.entries if self._matches(e, message_id, fields)]

    def wait(self, message_id=None, timeout=10, count=1, **fields):
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [e for e in self.entries if self._matches(e, message_id, fields)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "no journal entry MESSAGE_ID=%s %r within %ds; entries seen:\n%s"
                        % (message_id, fields, timeout, self.describe()))
                self.cond.wait(left)

    def notify_barrier(self, timeout=10):
        """Return once every sd_notify datagram sent before this call has been read and its
        fds closed. FDSTORE=1 datagrams carry copies of the daemon's memfds: until this thread
        has read them, those copies keep the pages of a freed allocation in use (as systemd's
        fd store would until it handles FDSTOREREMOVE=1). The datagram queue is FIFO, so our
        own marker arriving means everything queued before it has been handled."""
        self._barriers = getattr(self, "_barriers", 0) + 1
        marker = "NOIOMMUD_TEST_BARRIER=%d" % self._barriers
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(marker.encode(), self.notify_path)
        if not self.wait_notify(marker, timeout):
            raise AssertionError("the notify socket's reader did not reach %s within %ds" % (marker, timeout))

    def wait_notify(self, text, timeout):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not any(text in n.split("\n") for n in self.notifications):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return True

    def describe(self, entries=None):
        names = {v: k for k, v in MSGID.items()}
        with self.cond:
            entries = list(self.entries if entries is None else entries)
        lines = []
        for e in entries:
            mid = e.get("MESSAGE_ID", "")
            fields = " ".join("%s=%s" % (k, repr(v)[:120]) for k, v in sorted(e.items())
                              if k.startswith("NOIOMMUD_") or k in ("PRIORITY", "ERRNO"))
            lines.append("  [%s] %s | %s" % (names.get(mid, mid or "-"), repr(e.get("MESSAGE", ""))[:200],
                                             fields))
        return "\n".join(lines) if lines else "  (none)"
