#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Root integration-test environment for noiommud (security.md §10, house-style.md §6).

One Environment is a context manager that builds, for one test file:

  * a reservation of free 2 MiB hugepages (nr_hugepages raised if needed, restored on exit);
  * a world-readable temporary directory;
  * a private system-type dbus-daemon with a permissive policy and no service activation;
  * optionally the real polkitd in a private mount namespace, with the project's action file
    (or none) and the test rules below bind-mounted over the system directories; or instead
    python3-dbusmock's polkitd template (Environment(polkit="mock")), for tests that must hang,
    delay or inspect the exact CheckAuthorization call (MockPolkit below, security.md §10.1);
  * a journal capture: a SOCK_DGRAM socket that the daemon sees as
    /run/systemd/journal/socket, parsed as the native journal protocol;
  * the built daemon, as root, in its own mount namespace, listening on <tmp>/noiommud.sock;
  * helpers to talk Varlink as any uid (the connecting process runs under setpriv and stays
    alive, so SO_PEERCRED/SO_PEERPIDFD name it), to run noiommuctl, and to read the daemon's
    fd count, HugePages_Free and the captured journal.

The host's own D-Bus and polkit are never touched: everything lives on the private bus and in
private mount namespaces. Every child is started with PR_SET_PDEATHSIG where that survives, in its
own process group, and is killed at teardown. Teardown fails the test if the daemon died early or
did not exit cleanly on SIGTERM.

Exit codes: 0 pass, 1 fail, 77 skip (printed with a loud reason). Run with Debian's
/usr/bin/python3 (python3-dbus and python3-dbusmock live in its dist-packages).

Running: `meson test -C build --suite integration` as root, or one file on its own:
  NOIOMMU_BUILD_ROOT=build /usr/bin/python3 tests/integration/test-denied.py

Environment variables: NOIOMMUD_TEST_BINARY, NOIOMMUCTL_TEST_BINARY, NOIOMMU_SOURCE_ROOT,
NOIOMMU_BUILD_ROOT (set by meson; standalone runs default to <source>/build); NOIOMMU_TEST_KEEP=1
keeps the temporary directory; NOIOMMU_TEST_WRAPPER="strace -f -o /tmp/x" runs the daemon under a
wrapper (fd counts and signals then go to the real daemon process below it; valgrind 3.19 lacks
pidfd_send_signal, so the daemon refuses every peer under it); NOIOMMU_TEST_POLICY=FILE uses
another action file (development only).

Runs are serialized machine-wide by flock(/run/lock/noiommud-integration.lock): they share the
hugepage pool, and HugePages_Free is an oracle. Anything else that allocates hugepages meanwhile
(another engineer's test, a benchmark) can make the HugePages_Free checks fail.
"""

import contextlib
import ctypes
import fcntl
import glob
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

from pagemap import check_physical_addresses, pagemap, proc_maps  # noqa: F401 (re-exported)

EXIT_SKIP = 77

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("NOIOMMU_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("NOIOMMU_BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build")
PYTHON = "/usr/bin/python3"

HUGEPAGE_2M = 2 * 1024 * 1024
HUGEPAGE_SYSFS = "/sys/kernel/mm/hugepages/hugepages-2048kB"

# Users of the test rules. uid 1 (daemon) is allowed, uid 2 (bin) has no rule (default "no"
# for an inactive subject), uid 3 (sys) is answered with auth_admin (a challenge).
ALLOWED_UID = 1
DENIED_UID = 2
CHALLENGE_UID = 3

TEST_RULES = """\
// Test rules of the noiommud integration tests (tests/integration/harness.py).
// No logind here: every subject is inactive, so rules decide.
polkit.addRule(function(action, subject) {
        if (action.id.indexOf("io.noiommud.") != 0 && action.id != "org.freedesktop.policykit.exec")
                return polkit.Result.NOT_HANDLED;
        if (subject.user == "daemon")
                return polkit.Result.YES;
        if (subject.user == "sys")
                return polkit.Result.AUTH_ADMIN;
        return polkit.Result.NOT_HANDLED;
});
"""

BUS_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <!-- Private system bus of one noiommud integration test. No servicedir: no activation. -->
  <type>system</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

# The client side of a connection made as another uid: run under setpriv, it connects, hands
# the connected socket to the test over an inherited socketpair and then stays alive (so the
# daemon's SO_PEERCRED pid and pidfd name a live process) until the socketpair is closed.
CONNECT_HELPER = r"""
import os, socket, sys
path, back = sys.argv[1], int(sys.argv[2])
b = socket.socket(fileno=back)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(path)
except OSError as e:
    b.sendall(("E%d" % e.errno).encode())
    sys.exit(1)
socket.send_fds(b, [b"K"], [s.fileno()])
s.close()
while b.recv(64):
    pass
"""

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class Skip(Exception):
    """Raised to skip the test (exit 77) with a reason."""


def log(*args):
    print("#", *args, flush=True)


def _pdeathsig():
    """preexec_fn: kill the child when the test process dies (kept across exec unless the
    child changes credentials, as polkitd does; polkitd exits when its bus goes away)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def wait_until(predicate, timeout, what, interval=0.01):
    """Polls predicate() until it returns a true value, which is returned; AssertionError with
    `what` (a string or a callable giving one) after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s"
                                 % (timeout, what() if callable(what) else what))
        time.sleep(interval)


def read_int(path):
    with open(path) as f:
        return int(f.read().strip())


def write_int(path, v):
    with open(path, "w") as f:
        f.write("%d\n" % v)


# nr_hugepages right after the Environment reserved its pages (see hugepages_free).
_pool_base = None


def _pool_counts():
    """(nr_hugepages, free_hugepages) of the 2 MiB pool, read consistently."""
    nr_path = os.path.join(HUGEPAGE_SYSFS, "nr_hugepages")
    free_path = os.path.join(HUGEPAGE_SYSFS, "free_hugepages")
    while True:
        a = (read_int(nr_path), read_int(free_path))
        if a == (read_int(nr_path), read_int(free_path)):
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


def process_state(pid):
    """State letter of /proc/PID/stat ('R', 'S', 'T', 'Z', ...); None if the process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except FileNotFoundError:
        return None
    return s[s.rindex(")") + 2]


def process_start_time(pid):
    """Field 22 of /proc/PID/stat, parsed after the last ')'."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    return int(s[s.rindex(")") + 2:].split()[19])


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


def strict_json(data):
    """json.loads that refuses duplicate keys (a daemon reply must never have them)."""
    def hook(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise ValueError("duplicate key %r in reply" % k)
            d[k] = v
        return d
    return json.loads(data, object_pairs_hook=hook)


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


# --- Journal native protocol -------------------------------------------------------------------

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


# --- Varlink client ----------------------------------------------------------------------------

class VarlinkError(AssertionError):
    pass


class Connection:
    """A raw Varlink connection to the daemon. When uid is given, the connect() is done by a
    helper process running as that uid (setpriv --reuid --regid --clear-groups) that stays alive
    until close(); the socket itself is used from this (root) process, so received fds land here.
    """

    def __init__(self, env, uid=None, gid=None, path=None, timeout=10):
        self.env = env
        self.path = path or env.socket_path
        self.timeout = timeout
        self.helper = None
        self.buf = bytearray()
        self.queue = []          # complete messages (bytes, fds) not yet returned
        self.pending_fds = []    # fds of the message being assembled
        self.eof = False
        self.uid = 0 if uid is None else uid
        if uid is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self.sock.settimeout(timeout)
            self.sock.connect(self.path)
            self.pid = os.getpid()
        else:
            self._connect_as(uid, uid if gid is None else gid)
        env.connections.append(self)

    def _connect_as(self, uid, gid):
        self._connect_through(["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups"],
                              "as uid %d" % uid)

    def _connect_through(self, prefix, what):
        """Connects in CONNECT_HELPER, run under the command prefix (setpriv, unshare, ...), which
        passes the connected socket back and stays as the connection's pid; what is for the error
        ("connecting WHAT failed")."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.helper = subprocess.Popen(
            list(prefix) + [PYTHON, "-I", "-S", "-c", CONNECT_HELPER, self.path, str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, cwd="/",
            preexec_fn=_pdeathsig)
        theirs.close()
        self.helper_sock = ours
        self.pid = self.helper.pid
        ours.settimeout(self.timeout)
        msg, anc, flags, _ = ours.recvmsg(64, socket.CMSG_SPACE(4 * 4))
        fds = []
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("%di" % (len(data) // 4), data[:len(data) // 4 * 4]))
        if msg != b"K" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self.helper.kill()
            self.helper.wait()
            raise AssertionError("connecting %s failed: %r" % (what, msg))
        self.sock = socket.socket(fileno=fds[0])
        self.sock.settimeout(self.timeout)

    # sending

    def send_raw(self, data, fds=()):
        """Sends bytes (all of them), with fds attached to the first sendmsg()."""
        anc = []
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % len(fds), *fds))]
        view = memoryview(data)
        sent = self.sock.sendmsg([view], anc)
        while sent < len(view):
            sent += self.sock.send(view[sent:])

    def send(self, method, parameters=None, **extra):
        msg = {"method": method}
        if parameters is not None:
            msg["parameters"] = parameters
        msg.update(extra)
        self.send_raw(json.dumps(msg).encode() + b"\0")

    # receiving

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        data, anc, flags, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(32 * 4),
                                                socket.MSG_CMSG_CLOEXEC)
        fds = []
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("%di" % (len(cdata) // 4), cdata[:len(cdata) // 4 * 4]))
        assert not flags & socket.MSG_CTRUNC, "MSG_CTRUNC on a reply (more fds than expected?)"
        if not data:
            assert not fds, "fds arrived with EOF"
            self.eof = True
            return
        # fds ride on the first byte of their reply, and the kernel ends this read at the end of
        # that sendmsg(): they belong to the message that contains the last byte read.
        start = len(self.buf)
        self.buf += data
        if fds:
            self.pending_fds.append((start + len(data) - 1, fds))
        while True:
            nul = self.buf.find(b"\0")
            if nul < 0:
                break
            mine = [f for pos, fl in self.pending_fds if pos <= nul for f in fl]
            self.pending_fds = [(pos - nul - 1, fl) for pos, fl in self.pending_fds if pos > nul]
            self.queue.append((bytes(self.buf[:nul]), mine))
            del self.buf[:nul + 1]

    def recv(self, timeout=None):
        """Next message as (dict, [fds]); (None, []) on EOF. AssertionError on timeout."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.queue and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply within %.1fs" % timeout)
            try:
                self._fill(left)
            except socket.timeout:
                raise AssertionError("no reply within %.1fs" % timeout) from None
            except ConnectionResetError:
                self.eof = True
        if not self.queue:
            return None, []
        data, fds = self.queue.pop(0)
        try:
            return strict_json(data.decode("utf-8")), fds
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            raise AssertionError("reply is not valid JSON (%s): %r" % (e, data[:500])) from None

    def call(self, method, parameters=None, timeout=None, **extra):
        """Sends one request and returns (reply, fds). reply is the whole message: check
        reply.get('error') or use reply['parameters']."""
        self.send(method, parameters, **extra)
        reply, fds = self.recv(timeout)
        if reply is None:
            raise AssertionError("connection closed instead of a reply to %s %r" % (method, parameters))
        return reply, fds

    def call_ok(self, method, parameters=None, timeout=None, **extra):
        reply, fds = self.call(method, parameters, timeout, **extra)
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            raise VarlinkError("%s %r failed: %r" % (method, parameters, reply))
        return reply.get("parameters", {}), fds

    def call_error(self, method, parameters=None, timeout=None, **extra):
        """Expects an error reply with no fds; returns (error name, error parameters)."""
        reply, fds = self.call(method, parameters, timeout, **extra)
        for fd in fds:
            os.close(fd)
        assert "error" in reply, "%s %r succeeded, expected an error: %r" % (method, parameters, reply)
        assert not fds, "error reply %r carried %d fds" % (reply, len(fds))
        return reply["error"], reply.get("parameters", {})

    def wait_closed(self, timeout=None):
        """Reads until EOF; returns the messages (dict or raw bytes) that came before it."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        msgs = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection still open after %.1fs (messages: %r)" % (timeout, msgs))
            try:
                m, fds = self.recv(left)
            except AssertionError as e:
                if "no reply" in str(e):
                    raise AssertionError("connection still open after %.1fs (messages: %r)"
                                         % (timeout, msgs)) from None
                raise
            for fd in fds:
                os.close(fd)
            if m is None:
                return msgs
            msgs.append(m)

    def is_open(self, wait=0.0):
        """True if no EOF arrives within `wait` seconds (queued messages are kept)."""
        if self.eof:
            return False
        try:
            self._fill(max(wait, 0.001))
        except socket.timeout:
            return True
        except ConnectionResetError:
            self.eof = True
        return not self.eof

    def close(self, keep_process=False):
        """Closes the socket; unless keep_process, also ends the connecting helper process."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for _, fds in self.queue:
            for fd in fds:
                os.close(fd)
        self.queue = []
        if not keep_process:
            self.end_process()

    def end_process(self, kill=False):
        if self.helper is not None:
            if kill:
                self.helper.kill()
            self.helper_sock.close()
            try:
                self.helper.wait(10)
            except subprocess.TimeoutExpired:
                self.helper.kill()
                self.helper.wait()
            self.helper = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- python3-dbusmock's polkitd ----------------------------------------------------------------

POLKIT_BUS_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_IFACE = "org.freedesktop.PolicyKit1.Authority"
DBUSMOCK_IFACE = "org.freedesktop.DBus.Mock"


def dbus_signature(v):
    """The D-Bus type signature of a value as python3-dbus unmarshalled it (for a value that came
    in a variant, the signature of what the variant held). Exact: each python3-dbus class stands
    for one wire type."""
    import dbus
    for cls, sig in ((dbus.Boolean, "b"), (dbus.Byte, "y"), (dbus.Int16, "n"), (dbus.UInt16, "q"),
                     (dbus.Int32, "i"), (dbus.UInt32, "u"), (dbus.Int64, "x"), (dbus.UInt64, "t"),
                     (dbus.Double, "d"), (dbus.ObjectPath, "o"), (dbus.Signature, "g"),
                     (dbus.String, "s"), (dbus.types.UnixFd, "h")):
        if type(v) is cls:
            return sig
    if isinstance(v, dbus.Struct):
        return "(" + "".join(dbus_signature(x) for x in v) + ")"
    if isinstance(v, dbus.Dictionary) and v.signature:
        return "a{%s}" % v.signature
    if isinstance(v, dbus.Array) and v.signature:
        return "a" + v.signature
    raise AssertionError("no D-Bus signature for %r (%s)" % (v, type(v).__name__))


class MockPolkit:
    """python3-dbusmock's polkitd template on the private bus, driven over python3-dbus
    (Environment(polkit="mock") or env.start_mock_polkitd()). Template semantics (0.28):

      * set_allowed(actions) / allow_unknown(b): CheckAuthorization answers
        (allowed, false, {"test": "test"}) with allowed = action in the list, or allow_unknown;
        by default every action is denied.
      * set_delay(seconds): each CheckAuthorization sleeps first. The mock is single-threaded, so
        this also delays every later call to it, control calls included: calls are answered one
        after another.
      * simulate_hang(b) / simulate_hang_actions(actions): CheckAuthorization (of those actions)
        is logged but not answered until release_hanging_calls(), which answers all parked calls.
      * The call log: get_calls() (org.freedesktop.DBus.Mock.GetCalls), pop_calls() (takes the
        logged calls out of the mock, nothing logged meanwhile is lost), clear_calls(). Each call
        is (unix time, method, [args]) with the args as python3-dbus values, so dbus_signature()
        gives their exact D-Bus types. A pidfd in a subject comes back as a dbus.types.UnixFd
        holding a duplicate of it (closed when the object goes away; .take() keeps it). The bus
        takes at most 16 fds per message and disconnects a sender that puts more in one (the
        mock then exits): get_calls() fails past 16 logged pidfds, pop_calls() fetches in
        batches of POP_BATCH calls.
      * CancelCheckAuthorization(s), which the template lacks, is added with AddMethod so that it
        is accepted and logged like the other calls.
    """

    POP_BATCH = 8

    def __init__(self, bus_address, timeout=60):
        import dbus
        self.timeout = timeout
        self.bus = dbus.bus.BusConnection(bus_address)
        obj = self.bus.get_object(POLKIT_BUS_NAME, POLKIT_PATH, introspect=False)
        self.mock = dbus.Interface(obj, DBUSMOCK_IFACE)
        self.authority = dbus.Interface(obj, POLKIT_IFACE)
        xml = obj.Introspect(dbus_interface="org.freedesktop.DBus.Introspectable", timeout=timeout)
        if 'name="CancelCheckAuthorization"' not in xml:
            self.mock.AddMethod(POLKIT_IFACE, "CancelCheckAuthorization", "s", "", "", timeout=timeout)
        self.mock.AddMethod(DBUSMOCK_IFACE, "PopCalls", "u", "a(tsav)",
                            "log = [c for c in self.call_log if c[1] != 'PopCalls']\n"
                            "ret, self.call_log = log[:args[0]], log[args[0]:]",
                            timeout=timeout)

    def close(self):
        if self.bus is not None:
            self.bus.close()
            self.bus = None

    def _call(self, name, *args):
        return getattr(self.mock, name)(*args, timeout=self.timeout)

    def set_allowed(self, actions):
        import dbus
        self._call("SetAllowed", dbus.Array(actions, signature="s"))

    def allow_unknown(self, allow):
        self._call("AllowUnknown", bool(allow))

    def set_delay(self, seconds):
        self._call("SetDelay", float(seconds))

    def simulate_hang(self, hang):
        self._call("SimulateHang", bool(hang))

    def simulate_hang_actions(self, actions):
        import dbus
        self._call("SimulateHangActions", dbus.Array(actions, signature="s"))

    def release_hanging_calls(self):
        self._call("ReleaseHangingCalls")

    def have_hanging_calls(self):
        return bool(self._call("HaveHangingCalls"))

    def get_calls(self):
        return [(int(t), str(m), list(a)) for t, m, a in self._call("GetCalls")]

    def pop_calls(self):
        out = []
        while True:
            batch = self._call("PopCalls", self.POP_BATCH)
            out += [(int(t), str(m), list(a)) for t, m, a in batch]
            if len(batch) < self.POP_BATCH:
                return out

    def clear_calls(self):
        self._call("ClearCalls")


# --- The environment ---------------------------------------------------------------------------

def find_policy():
    override = os.environ.get("NOIOMMU_TEST_POLICY")
    candidates = [override] if override else [
        os.path.join(SOURCE_ROOT, "policy", "io.noiommud.policy"),
        os.path.join(BUILD_ROOT, "policy", "io.noiommud.policy"),
    ]
    for c in candidates:
        if c and os.path.exists(c):
            return c
    raise AssertionError("polkit action file not found (looked at %s)" % ", ".join(candidates))


def require(cond, reason):
    if not cond:
        raise Skip(reason)


def check_prerequisites(need_daemon=True, need_dbusmock=False):
    require(os.geteuid() == 0, "integration tests need root (they run polkitd, dbus-daemon, "
            "the daemon and mount namespaces, and change vm.nr_hugepages)")
    require(sys.platform.startswith("linux"), "Linux only")
    for tool in ("dbus-daemon", "dbus-send", "setpriv", "unshare", "mount"):
        require(shutil.which(tool), "%s not found" % tool)
    require(os.access("/usr/lib/polkit-1/polkitd", os.X_OK), "/usr/lib/polkit-1/polkitd not installed")
    require(os.path.isdir(HUGEPAGE_SYSFS), "no 2 MiB hugetlb pool (%s missing)" % HUGEPAGE_SYSFS)
    require(hasattr(os, "memfd_create"), "python lacks memfd_create")
    require(os.path.exists("/proc/self/ns/mnt"), "no mount namespaces")
    r = subprocess.run(["unshare", "-m", "true"], stderr=subprocess.PIPE)
    require(r.returncode == 0, "unshare -m does not work here: %s" % r.stderr.decode().strip())
    if need_dbusmock:
        r = subprocess.run([PYTHON, "-c", "import dbus, dbusmock.templates.polkitd"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        require(r.returncode == 0, "python3-dbusmock (polkitd template) or python3-dbus missing for %s "
                "(scripts/install-deps.sh): %s" % (PYTHON, r.stderr.decode().strip()[-200:]))
    if need_daemon:
        daemon = os.environ.get("NOIOMMUD_TEST_BINARY") or os.path.join(BUILD_ROOT, "daemon", "noiommud")
        if not os.path.exists(daemon):
            if "NOIOMMUD_TEST_BINARY" in os.environ:
                raise AssertionError("NOIOMMUD_TEST_BINARY=%s does not exist" % daemon)
            raise Skip("daemon not built (%s missing; set NOIOMMUD_TEST_BINARY)" % daemon)


class Environment:
    """See the module docstring. Arguments:
      polkit:      True: start the real polkitd; "mock": python3-dbusmock's polkitd template
                   instead (self.polkit_mock, a MockPolkit); False: the bus has no polkit at all
      install_policy: put the project's action file into polkitd's action directory
      daemon:      start noiommud (False for self-tests of the harness)
      hugepages:   how many free 2 MiB pages to guarantee
      daemon_args: extra arguments for noiommud
    """

    LOCK_PATH = "/run/lock/noiommud-integration.lock"
    # nr_hugepages before a run changed it; removed when the run restores it. If it exists when
    # we get the lock, the run that wrote it was killed, and we restore its value first.
    STATE_PATH = "/run/lock/noiommud-integration.nr_hugepages"

    def __init__(self, polkit=True, install_policy=True, daemon=True, hugepages=64,
                 daemon_args=(), name=None):
        self.want_polkit = polkit
        self.install_policy = install_policy
        self.want_daemon = daemon
        self.hugepages = hugepages
        self.daemon_args = list(daemon_args)
        self.name = name or os.path.basename(sys.argv[0])
        self.procs = {}          # name -> Popen
        self.logs = {}           # name -> path
        self.connections = []
        self.failures = []
        self.stack = contextlib.ExitStack()
        self.daemon = None
        self.daemon_pid = None
        self.polkitd = None      # Popen of the real polkitd or of the mock
        self.polkit_mock = None  # MockPolkit when polkit="mock"
        self.journal = None
        self.nr_hugepages_orig = None
        self.daemon_bin = os.environ.get("NOIOMMUD_TEST_BINARY") or os.path.join(BUILD_ROOT, "daemon", "noiommud")
        self.ctl_bin = os.environ.get("NOIOMMUCTL_TEST_BINARY") or os.path.join(BUILD_ROOT, "client", "lib", "noiommuctl")

    # setup

    def __enter__(self):
        check_prerequisites(need_daemon=self.want_daemon, need_dbusmock=self.want_polkit == "mock")
        try:
            self._lock()
            self._reserve_hugepages()
            self._make_tmp()
            self._start_bus()
            if self.want_polkit == "mock":
                self.start_mock_polkitd()
            elif self.want_polkit:
                self.start_polkitd()
            self.journal = JournalCapture(os.path.join(self.tmp, "journal"), os.path.join(self.tmp, "notify"))
            if self.want_daemon:
                self.start_daemon()
        except BaseException:
            self._teardown(failed=True)
            raise
        return self

    def _lock(self):
        os.makedirs(os.path.dirname(self.LOCK_PATH), exist_ok=True)
        self.lock_fd = os.open(self.LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        # Serialize integration runs on this machine: they share the hugepage pool.
        deadline = time.monotonic() + 90
        while True:
            try:
                fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError("another integration test holds %s for 90s" % self.LOCK_PATH)
                time.sleep(0.1)

    def _reserve_hugepages(self):
        nr_path = os.path.join(HUGEPAGE_SYSFS, "nr_hugepages")
        if os.path.exists(self.STATE_PATH):
            stale = read_int(self.STATE_PATH)
            log("a killed test run left nr_hugepages raised; restoring %d" % stale)
            write_int(nr_path, stale)
            os.unlink(self.STATE_PATH)
        for d in glob.glob(os.path.join(tempfile.gettempdir(), "noiommud-itest-*")):
            try:
                pid = read_int(os.path.join(d, "owner-pid"))
            except (OSError, ValueError):
                continue
            if not os.path.exists("/proc/%d" % pid) and not os.path.exists(os.path.join(d, "keep")):
                shutil.rmtree(d, ignore_errors=True)
        global _pool_base
        _pool_base = None
        orig = read_int(nr_path)
        free = hugepages_available()
        if free < self.hugepages:
            self.nr_hugepages_orig = orig
            write_int(self.STATE_PATH, orig)
            write_int(nr_path, orig + self.hugepages - free)
            got = hugepages_available()
            if got < self.hugepages:
                raise Skip("could only get %d of %d free 2 MiB hugepages (memory fragmented?)"
                           % (got, self.hugepages))
            log("nr_hugepages %d -> %d (restored at exit)" % (orig, read_int(nr_path)))
        _pool_base = _pool_counts()[0]

    def _make_tmp(self):
        self.tmp = tempfile.mkdtemp(prefix="noiommud-itest-")
        os.chmod(self.tmp, 0o755)                     # polkitd (user polkitd) reads below here
        write_int(os.path.join(self.tmp, "owner-pid"), os.getpid())
        for d in ("rules", "actions", "empty", "journal", "logs"):
            os.mkdir(os.path.join(self.tmp, d), 0o755)
        with open(os.path.join(self.tmp, "rules", "50-noiommud-test.rules"), "w") as f:
            f.write(TEST_RULES)
        os.chmod(os.path.join(self.tmp, "rules", "50-noiommud-test.rules"), 0o644)
        if self.install_policy:
            self.set_policy_installed(True)
        self.socket_path = os.path.join(self.tmp, "noiommud.sock")

    def set_policy_installed(self, installed):
        """Adds or removes the action file (polkitd picks the change up live)."""
        dst = os.path.join(self.tmp, "actions", "io.noiommud.policy")
        if installed:
            shutil.copyfile(find_policy(), dst)
            os.chmod(dst, 0o644)
        elif os.path.exists(dst):
            os.unlink(dst)

    def _logfile(self, name):
        path = os.path.join(self.tmp, "logs", name + ".log")
        self.logs[name] = path
        return open(path, "ab")

    def spawn(self, name, argv, **kw):
        """Starts a background process in its own process group, with stdout and stderr going to
        logs/<name>.log; it is killed at teardown."""
        with self._logfile(name) as logf:
            kw.setdefault("stdout", logf)
            kw.setdefault("stdin", subprocess.DEVNULL)
            p = subprocess.Popen(argv, stderr=logf, start_new_session=True,
                                 preexec_fn=_pdeathsig, **kw)
        self.procs[name] = p
        return p

    def _start_bus(self):
        self.bus_path = os.path.join(self.tmp, "system_bus_socket")
        conf = os.path.join(self.tmp, "bus.conf")
        with open(conf, "w") as f:
            f.write(BUS_CONFIG.format(path=self.bus_path))
        p = self.spawn("dbus-daemon", ["dbus-daemon", "--config-file=" + conf, "--nofork",
                                        "--print-address", "--nosyslog"], stdout=subprocess.PIPE)
        r, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline().decode().strip() if r else ""
        if not line.startswith("unix:"):
            raise AssertionError("dbus-daemon did not print its address (got %r)\n%s"
                                 % (line, self.read_log("dbus-daemon")))
        p.stdout.close()
        # Without the printed ",guid=...": a client checks the server's guid against the
        # address, so a restarted bus on the same path would be refused (EPERM in sd-bus).
        self.bus_address = "unix:path=" + self.bus_path
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus_address
        self.env = dict(os.environ)

    def bus_name_owner(self, name):
        r = subprocess.run(["dbus-send", "--system", "--print-reply=literal", "--reply-timeout=2000",
                            "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                            "org.freedesktop.DBus.GetNameOwner", "string:" + name],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env)
        return r.stdout.decode().strip() if r.returncode == 0 else None

    def start_polkitd(self):
        script = ("mount --make-rprivate / && "
                  "mount --bind \"$1/rules\" /etc/polkit-1/rules.d && "
                  "mount --bind \"$1/empty\" /usr/share/polkit-1/rules.d && "
                  "mount --bind \"$1/actions\" /usr/share/polkit-1/actions && "
                  "exec /usr/lib/polkit-1/polkitd --no-debug")
        self.polkitd = self.spawn("polkitd", ["unshare", "-m", "sh", "-c", script, "sh", self.tmp],
                                   env=self.env)

        def owned():
            if self.polkitd.poll() is not None:
                raise AssertionError("polkitd exited with %s:\n%s"
                                     % (self.polkitd.returncode, self.read_log("polkitd")))
            return self.bus_name_owner("org.freedesktop.PolicyKit1")
        wait_until(owned, 15, "polkitd to own org.freedesktop.PolicyKit1", interval=0.02)

    def start_mock_polkitd(self):
        """python3-dbusmock's polkitd template in place of polkitd (security.md §10.1); returns
        (and keeps as self.polkit_mock) a MockPolkit. Its call log goes to logs/polkitd-mock.log."""
        self.polkitd = self.spawn("polkitd-mock", [PYTHON, "-m", "dbusmock", "--system", "--template",
                                                   "polkitd"], env=self.env)

        def owned():
            if self.polkitd.poll() is not None:
                raise AssertionError("the polkitd mock exited with %s:\n%s"
                                     % (self.polkitd.returncode, self.read_log("polkitd-mock")))
            return self.bus_name_owner(POLKIT_BUS_NAME)
        wait_until(owned, 15, "the polkitd mock to own " + POLKIT_BUS_NAME, interval=0.02)
        self.polkit_mock = MockPolkit(self.bus_address)
        return self.polkit_mock

    def stop_polkitd(self):
        if self.polkitd is not None:
            self._kill("polkitd-mock" if self.polkit_mock else "polkitd")
            self.polkitd = None
        if self.polkit_mock is not None:
            self.polkit_mock.close()
            self.polkit_mock = None

    def start_daemon(self, extra_args=(), env_overrides=None):
        """Starts noiommud (as root, in its own mount namespace with the journal capture over
        /run/systemd/journal) and waits until it accepts connections or says READY=1."""
        os.makedirs("/run/systemd/journal", exist_ok=True)   # bind-mount target, on the host
        wrapper = shlex.split(os.environ.get("NOIOMMU_TEST_WRAPPER", ""))
        script = ('mount --make-rprivate / && mount --bind "$1" /run/systemd/journal && '
                  'shift && exec "$@"')
        argv = wrapper + [self.daemon_bin, "--listen", self.socket_path] + self.daemon_args + list(extra_args)
        env = dict(self.env, NOTIFY_SOCKET=self.journal.notify_path)
        env.update(env_overrides or {})
        with self.journal.cond:
            self.journal.notifications.clear()
        env.pop("LISTEN_FDS", None)
        env.pop("LISTEN_PID", None)
        self.daemon = self.spawn("noiommud", ["unshare", "-m", "sh", "-c", script, "sh",
                                               os.path.join(self.tmp, "journal")] + argv, env=env)
        self.daemon_pid = self.daemon.pid

        def ready():
            if self.daemon.poll() is not None:
                raise AssertionError("noiommud exited during start-up with %s:\n%s"
                                     % (self.daemon.returncode, self.read_log("noiommud")))
            if self.journal.wait_notify("READY=1", 0):
                return True
            if not os.path.exists(self.socket_path):
                return False
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.socket_path)
                return True
            except OSError:
                return False
            finally:
                s.close()
        wait_until(ready, 20, "noiommud to listen on " + self.socket_path, interval=0.01)
        wait_until(lambda: os.path.exists(self.socket_path), 5, "the socket file")
        if wrapper:
            # strace and the like run the daemon as a child: count fds and send signals there
            self.daemon_pid = find_descendant(self.daemon.pid, self.daemon_bin) or self.daemon.pid
        mode = os.stat(self.socket_path).st_mode & 0o777
        assert mode == 0o666, "socket mode is %o, expected 666" % mode

    def restart_daemon(self, **kw):
        self.stop_daemon()
        self.start_daemon(**kw)

    def restart_bus(self):
        """Kills the private dbus-daemon (and polkitd, which exits with it) and starts a new one
        on the same socket path, with polkitd (or the mock, in its default state) again if this
        environment has one."""
        had_polkit = "mock" if self.polkit_mock else self.polkitd is not None
        self.stop_polkitd()
        self._kill("dbus-daemon")
        if os.path.exists(self.bus_path):
            os.unlink(self.bus_path)
        self._start_bus()
        if had_polkit == "mock":
            self.start_mock_polkitd()
        elif had_polkit:
            self.start_polkitd()

    @contextlib.contextmanager
    def polkitd_stopped(self):
        """SIGSTOPs the real polkitd for the duration of the block (SIGCONT on the way out)."""
        pid = self.polkitd.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(lambda: process_state(pid) in ("T", "t"), 5, "polkitd to stop")
            yield pid
        finally:
            os.kill(pid, signal.SIGCONT)

    def start_bus_monitor(self):
        """dbus-monitor on the private bus, watching polkit's Authority interface; its output
        goes to logs/dbus-monitor.log (see monitor_count)."""
        p = self.spawn("dbus-monitor", ["dbus-monitor", "--address", self.bus_address,
                                        "interface='org.freedesktop.PolicyKit1.Authority'"],
                       env=self.env)
        # dbus-monitor announces itself with a NameAcquired/NameLost signal once it monitors
        wait_until(lambda: "member=NameLost" in self.read_log("dbus-monitor")
                   or "member=NameAcquired" in self.read_log("dbus-monitor"), 10,
                   "dbus-monitor to start")
        return p

    def monitor_count(self, member):
        """How many method calls named `member` dbus-monitor has seen so far."""
        return len(re.findall(r"method call .* member=%s\b" % member,
                              self.read_log("dbus-monitor", tail=None)))

    def stop_daemon(self, timeout=10):
        """SIGTERM; returns the exit status. Fails if it had died before or did not exit cleanly."""
        p = self.daemon
        if p is None:
            return None
        if p.poll() is not None:
            self.daemon = None
            raise AssertionError("noiommud died during the test: %s" % describe_status(p.returncode))
        try:
            os.kill(self.daemon_pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill("noiommud")
            self.daemon = None
            raise AssertionError("noiommud did not exit within %ds of SIGTERM" % timeout)
        self._kill("noiommud")       # anything left in its process group
        self.daemon = None
        if p.returncode not in (0, -signal.SIGTERM):
            raise AssertionError("noiommud exited on SIGTERM with %s" % describe_status(p.returncode))
        return p.returncode

    def _kill(self, name):
        p = self.procs.get(name)
        if p is None:
            return
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:       # not a group leader, or gone
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        del self.procs[name]

    # teardown

    def __exit__(self, exc_type, exc, tb):
        failed = exc_type is not None or bool(self.failures)
        if exc_type is not None and not issubclass(exc_type, Skip):
            print("FAIL: %s" % self.name, flush=True)
            traceback.print_exception(exc_type, exc, tb)
        failed = self._teardown(failed=failed) or failed
        if failed and exc_type is None:
            raise AssertionError("%d failure(s): %s" % (len(self.failures), ", ".join(self.failures)))
        return False

    def _teardown(self, failed):
        for c in list(self.connections):
            try:
                c.close()
            except Exception:
                pass
        if self.daemon is not None:
            try:
                self.stop_daemon()
            except AssertionError as e:
                print("FAIL: %s" % e, flush=True)
                self.failures.append("daemon exit")
                failed = True
        if self.journal is not None and self.journal.errors:
            print("FAIL: malformed journal datagrams:\n  " + "\n  ".join(self.journal.errors), flush=True)
            self.failures.append("journal protocol")
            failed = True
        if self.polkit_mock is not None:
            self.polkit_mock.close()
        for name in list(self.procs):
            self._kill(name)
        if self.journal is not None:
            if failed:
                print("--- journal entries captured ---\n" + self.journal.describe(), flush=True)
            self.journal.stop()
        if failed:
            for name, path in self.logs.items():
                print("--- %s log (%s) ---\n%s" % (name, path, self.read_log(name)), flush=True)
        os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        global _pool_base
        _pool_base = None
        if self.nr_hugepages_orig is not None:
            write_int(os.path.join(HUGEPAGE_SYSFS, "nr_hugepages"), self.nr_hugepages_orig)
            self.nr_hugepages_orig = None
            os.unlink(self.STATE_PATH)
        if getattr(self, "tmp", None):
            if os.environ.get("NOIOMMU_TEST_KEEP"):
                open(os.path.join(self.tmp, "keep"), "w").close()
                log("kept", self.tmp)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
        if getattr(self, "lock_fd", None) is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        return failed

    def read_log(self, name, tail=20000):
        try:
            with open(self.logs[name], "rb") as f:
                text = f.read().decode("utf-8", "replace")
                return text[-tail:] if tail else text
        except (KeyError, OSError):
            return "(no log)"

    # helpers for tests

    @contextlib.contextmanager
    def subtest(self, name):
        """Runs a block as a named check: a failure is reported and recorded, and the test goes
        on with the next block. The file fails at the end if any block failed."""
        t0 = time.monotonic()
        n_conn = len(self.connections)
        try:
            yield
        except Skip:
            raise
        except Exception:
            # close what the failed block left open, so later blocks start from the baseline
            for c in self.connections[n_conn:]:
                try:
                    c.close()
                except Exception:
                    pass
            self.failures.append(name)
            print("not ok - %s" % name, flush=True)
            traceback.print_exc()
            sys.stdout.flush()
        else:
            print("ok - %s (%.0f ms)" % (name, (time.monotonic() - t0) * 1000), flush=True)

    def connect(self, uid=None, gid=None, **kw):
        return Connection(self, uid=uid, gid=gid, **kw)

    def daemon_alive(self):
        return self.daemon is not None and self.daemon.poll() is None

    def assert_daemon_alive(self):
        assert self.daemon is not None, "daemon not running"
        rc = self.daemon.poll()
        assert rc is None, "noiommud died: %s" % describe_status(rc)

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

    def find_journal(self, name, **fields):
        return self.journal.find(MSGID[name], **fields)

    def wait_journal(self, name, timeout=10, **fields):
        return self.journal.wait(MSGID[name], timeout=timeout, **fields)

    def ctl(self, args, uid=ALLOWED_UID, gid=None, timeout=30, input=None, check=False):
        """Runs noiommuctl --socket <ours> ARGS as uid (None: root). Returns CompletedProcess
        with str stdout/stderr."""
        argv = self.ctl_argv(args, uid, gid)
        r = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=self.env, cwd="/", preexec_fn=_pdeathsig,
                           universal_newlines=True)
        if check and r.returncode != 0:
            raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s"
                                 % (" ".join(argv), r.returncode, r.stdout, r.stderr))
        return r

    def ctl_argv(self, args, uid=ALLOWED_UID, gid=None):
        if not os.path.exists(self.ctl_bin):
            raise AssertionError("noiommuctl not built: %s" % self.ctl_bin)
        argv = [self.ctl_bin, "--socket", self.socket_path] + list(args)
        if uid is not None:
            argv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % (uid if gid is None else gid),
                    "--clear-groups"] + argv
        return argv

    def ctl_popen(self, args, uid=ALLOWED_UID, gid=None):
        """Starts noiommuctl (for --hold) with pipes; killed at teardown."""
        argv = self.ctl_argv(args, uid, gid)
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.env, cwd="/", start_new_session=True,
                             preexec_fn=_pdeathsig)
        self.procs["noiommuctl-%d" % p.pid] = p
        return p


def find_descendant(pid, exe):
    """A descendant of pid (or pid itself) running the executable exe, or None."""
    exe = os.path.realpath(exe)
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read()
                children.setdefault(int(st[st.rindex(")") + 2:].split()[1]), []).append(int(d))
            except (OSError, ValueError):
                pass
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            if os.path.realpath("/proc/%d/exe" % p) == exe:
                return p
        except OSError:
            pass
        todo += children.get(p, [])
    return None


def describe_status(rc):
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return "signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "signal %d" % -rc
    return "exit status %d" % rc


def readline_timeout(f, timeout):
    """One line from a binary pipe, or AssertionError after timeout."""
    fd = f.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        r, _, _ = select.select([fd], [], [], max(left, 0))
        if not r:
            raise AssertionError("no line within %.1fs (got %r)" % (timeout, buf))
        c = os.read(fd, 1)
        if not c:
            break
        buf += c
    return buf.decode("utf-8", "replace")


def memfd_seals(fd):
    return fcntl.fcntl(fd, fcntl.F_GET_SEALS)


ALLOCATE = "io.noiommud.Broker.AllocateMemory"
FREE = "io.noiommud.Broker.FreeMemory"
LIST = "io.noiommud.Broker.ListDevices"
GET_INFO = "org.varlink.service.GetInfo"
GET_DESCRIPTION = "org.varlink.service.GetInterfaceDescription"
ERR = "io.noiommud.Broker."
INVALID_PARAMETER = "org.varlink.service.InvalidParameter"
METHOD_NOT_FOUND = "org.varlink.service.MethodNotFound"
INTERFACE_NOT_FOUND = "org.varlink.service.InterfaceNotFound"


def allocate(conn, size, **params):
    """AllocateMemory that must succeed: checks the reply's shape and its single memfd, and
    returns (reply parameters, memfd)."""
    params = dict(params, size=size)
    reply, fds = conn.call_ok(ALLOCATE, params)
    try:
        assert len(fds) == 1, "AllocateMemory reply carried %d fds, expected 1" % len(fds)
        assert reply.get("fd") == 0, "fd index %r, expected 0" % reply.get("fd")
        assert re.fullmatch(r"[0-9a-f]{32}", reply.get("memory", "")), "memory id %r" % reply.get("memory")
        hp = reply["hugepageSize"]
        assert reply["size"] >= size and reply["size"] % hp == 0 and reply["size"] - size < hp, \
            "size %d for a request of %d with %d pages" % (reply["size"], size, hp)
        assert reply["addressKind"] == "physical", reply
        assert isinstance(reply["numaNode"], int), reply
        check_segments(reply, reply["size"])
        link = os.readlink("/proc/self/fd/%d" % fds[0])
        assert link == "/memfd:noiommud-%s (deleted)" % reply["memory"], "memfd is %r" % link
        assert os.fstat(fds[0]).st_size == reply["size"], "memfd size %d" % os.fstat(fds[0]).st_size
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return reply, fds[0]


def run(body):
    """Runs body() and exits 0 / 1 / 77. body builds its own Environment."""
    try:
        body()
    except Skip as e:
        print("SKIP: %s" % e, flush=True)
        sys.stderr.write("SKIP: %s\n" % e)
        sys.exit(EXIT_SKIP)
    except AssertionError as e:
        print("FAIL: %s" % e, flush=True)
        sys.exit(1)
    except Exception:
        traceback.print_exc()
        print("FAIL: unexpected exception", flush=True)
        sys.exit(1)
    print("PASS", flush=True)
    sys.exit(0)
