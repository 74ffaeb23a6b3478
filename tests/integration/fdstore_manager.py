#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A fake systemd service manager with a file descriptor store (security.md §8), for restart
tests of noiommud without systemd as PID 1.

FdStoreManager plays the parts of PID 1 that the daemon relies on:

  * a "socket unit": a listening AF_UNIX SOCK_STREAM socket at a given path, passed to every
    start of the service as the fd named "io";
  * $NOTIFY_SOCKET: a SOCK_DGRAM socket with SO_PASSCRED, read by a thread. Only the main pid may
    talk (NotifyAccess=main: the SCM_CREDENTIALS pid must be the main pid, else the message and
    its fds are dropped). Handled: READY=1, STOPPING=1, STATUS=, FDSTORE=1 (+ FDNAME=, FDPOLL=0),
    FDSTOREREMOVE=1 (+ FDNAME=); anything else is only recorded;
  * the fd store, with PID 1's rules: FDNAME= must be valid (printable ASCII, no ':', at most 255
    characters; an invalid or missing name becomes "stored", as in systemd); a file already in
    the store is not stored twice (compared with kcmp(KCMP_FILE), since every anon-inode fd
    shares one inode); at most store_max fds (FileDescriptorStoreMax=); an fd stored without
    FDPOLL=0 is dropped as soon as it reports POLLHUP or POLLERR (watched all the time by the
    thread, and swept once more before each start); FDSTOREREMOVE=1 drops every fd of that name;
  * starting the service with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID: the fds at 3, 4, ...
    ("io" first, then the store in the order given by `order`), LISTEN_PID set in the child after
    fork() (by a tiny exec wrapper, so it is the pid of the final program as long as everything
    in argv execs rather than forks: `unshare -m sh -c '...; exec "$@"'` qualifies);
  * kill9() (SIGKILL, store kept), restart() (stop with SIGTERM if running — store kept — sweep,
    start again with every stored fd), stop() (SIGTERM, then the store is flushed: a plain stop
    does not keep it).

Every fd the manager holds is O_CLOEXEC and closed by close() (the class is a context manager).
Protocol problems (messages from other pids, invalid names, a full store, fds without FDSTORE=1,
FDSTOREREMOVE without a valid name, truncated messages) are appended to `errors`, which tests
should assert empty; they are never raised from the reader thread.
"""

import ctypes
import errno
import fcntl
import os
import platform
import random
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time

NOTIFY_BUFFER_MAX = 4096        # PIPE_BUF, as in systemd
NOTIFY_FD_MAX = 768             # systemd's limit per notify message
FDNAME_MAX = 255
DEFAULT_STORE_MAX = 4096

_KCMP_FILE = 0
_SYS_KCMP = {"x86_64": 312, "aarch64": 272, "i686": 349, "i386": 349, "ppc64le": 354,
             "s390x": 343, "riscv64": 272, "armv7l": 378}
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)

# exec wrapper: moves the fds named on its command line to 3, 4, ... (in that order), closes
# every other inherited fd, sets LISTEN_PID to its own pid and execs the rest of argv (same pid).
_WRAPPER = r"""
import fcntl, os, sys
n = int(sys.argv[1])
src = [int(x) for x in sys.argv[2:2 + n]]
argv = sys.argv[2 + n:]
base = max(src + [2 + n]) + 1
tmp = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, base) for fd in src]
for i, fd in enumerate(tmp):
    os.dup2(fd, 3 + i, inheritable=True)
os.closerange(3 + n, min(tmp) if tmp else 3 + n)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execvp(argv[0], argv)
"""
_PYTHON = "/usr/bin/python3"


def kcmp_same_file(a, b, pid=None):
    """True if fds a and b of this process (or of pid) refer to the same open file description
    (kcmp(2) KCMP_FILE). Raises OSError if kcmp is unavailable."""
    nr = _SYS_KCMP.get(platform.machine())
    if nr is None:
        raise OSError(errno.ENOSYS, "kcmp syscall number unknown for " + platform.machine())
    pid = os.getpid() if pid is None else pid
    r = _libc.syscall(nr, pid, pid, _KCMP_FILE, a, b)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, "kcmp: " + os.strerror(e))
    return r == 0


def kcmp_available():
    fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    fd2 = os.dup(fd)
    try:
        return kcmp_same_file(fd, fd2)
    except OSError:
        return False
    finally:
        os.close(fd)
        os.close(fd2)


def fdname_is_valid(name):
    """systemd's fdname_is_valid(), minus its acceptance of the empty name."""
    if not name or len(name) > FDNAME_MAX:
        return False
    return all(" " <= c <= "~" and c != ":" for c in name)


def _pdeathsig():
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Entry:
    __slots__ = ("name", "fd", "poll", "seq")

    def __init__(self, name, fd, poll, seq):
        self.name, self.fd, self.poll, self.seq = name, fd, poll, seq

    def __repr__(self):
        return "<%s fd=%d%s>" % (self.name, self.fd, "" if self.poll else " FDPOLL=0")


class Notification:
    """One accepted notify message: pid, generation (which start of the service), tags (list
    of "KEY=VALUE" lines), nfds (how many fds came with it)."""
    __slots__ = ("pid", "generation", "tags", "nfds", "time")

    def __init__(self, pid, generation, tags, nfds):
        self.pid, self.generation, self.tags, self.nfds = pid, generation, tags, nfds
        self.time = time.monotonic()

    def get(self, key):
        for t in self.tags:
            if t.startswith(key + "="):
                return t[len(key) + 1:]
        return None

    def __repr__(self):
        return "<notify pid=%d gen=%d fds=%d %r>" % (self.pid, self.generation, self.nfds, self.tags)


class FdStoreManager:
    """See the module docstring.

    argv, env:    the service's command line and environment (NOTIFY_SOCKET, LISTEN_FDS,
                  LISTEN_FDNAMES and LISTEN_PID are set here)
    listen_path:  where the "socket unit" listens (mode socket_mode); None: no socket, no "io"
    workdir:      directory for the notify socket (default: a new temporary directory)
    store_max:    FileDescriptorStoreMax=
    log_path:     the service's stdout and stderr are appended there (default: inherited)
    order:        order of the stored fds on start: "fifo" (oldest first), "lifo" (newest first,
                  as systemd 252 does), or "random"; restart(order=...) overrides it once
    """

    def __init__(self, argv, env=None, listen_path=None, workdir=None, store_max=DEFAULT_STORE_MAX,
                 log_path=None, order="fifo", socket_mode=0o666, listen_name="io"):
        self.argv = list(argv)
        self.env = dict(os.environ if env is None else env)
        self.listen_path = listen_path
        self.listen_name = listen_name
        self.store_max = store_max
        self.log_path = log_path
        self.order = order
        self.autopoll = True         # False: hung-up fds stay until sweep() (a race, on purpose)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.entries = []
        self.seq = 0
        self.notifications = []      # accepted messages, every generation
        self.errors = []             # protocol problems (strings)
        self.removed = []            # (generation, name, how many fds) per FDSTOREREMOVE
        self.dropped = []            # (name, why) for fds dropped by POLLHUP/POLLERR
        self.duplicates = []         # (name sent, name already stored) for suppressed duplicates
        self.starts = []             # per start: list of names passed, in fd order (3, 4, ...)
        self.proc = None
        self.main_pid = None
        self.generation = 0
        self.exit_statuses = []      # (generation, returncode)
        self.closed = False
        self._own_workdir = workdir is None
        self.workdir = tempfile.mkdtemp(prefix="fdstore-manager-") if workdir is None else workdir
        self.listen_sock = None
        self.notify_sock = None
        self.wake_r = self.wake_w = None
        self.thread = None
        try:
            if not kcmp_available():
                raise OSError(errno.ENOSYS, "kcmp(KCMP_FILE) is not available, the fd store "
                              "cannot drop duplicate files")
            self.notify_path = os.path.join(self.workdir, "notify")
            if os.path.lexists(self.notify_path):
                os.unlink(self.notify_path)
            self.notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self.notify_sock.bind(self.notify_path)
            self.notify_sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            try:
                self.notify_sock.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)   # SO_RCVBUFFORCE
            except OSError:
                pass
            if listen_path is not None:
                if os.path.lexists(listen_path):
                    os.unlink(listen_path)
                self.listen_sock = socket.socket(socket.AF_UNIX,
                                                 socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                self.listen_sock.bind(listen_path)
                os.chmod(listen_path, socket_mode)
                self.listen_sock.listen(128)
            self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
            self.thread = threading.Thread(target=self._run, name="fdstore-manager", daemon=True)
            self.thread.start()
        except BaseException:
            self.close()
            raise

    # --- the store -----------------------------------------------------------------------------

    def stored(self):
        """[(name, fd)] of the store, oldest first. The fds stay the manager's."""
        with self.lock:
            return [(e.name, e.fd) for e in self.entries]

    def names(self):
        with self.lock:
            return [e.name for e in self.entries]

    def entries_named(self, name):
        with self.lock:
            return [e for e in self.entries if e.name == name]

    def inject(self, name, fd, poll=False):
        """Puts a duplicate of fd into the store under name (as if the service had stored it).
        Returns True if stored, False if it was a duplicate of a stored file."""
        if not fdname_is_valid(name):
            raise ValueError("invalid fd name %r" % name)
        copy = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        with self.lock:
            ok = self._add(copy, name, poll, injected=True)
        self._wake()
        return ok

    def _add(self, fd, name, poll, injected=False):
        for e in self.entries:
            try:
                same = kcmp_same_file(e.fd, fd)
            except OSError as err:
                self.errors.append("kcmp(%d, %d) failed: %s" % (e.fd, fd, err))
                same = False
            if same:
                self.duplicates.append((name, e.name))
                os.close(fd)
                return False
        if len(self.entries) >= self.store_max:
            self.errors.append("fd store full (FileDescriptorStoreMax=%d): %s not stored"
                               % (self.store_max, name))
            os.close(fd)
            return False
        self.seq += 1
        self.entries.append(Entry(name, fd, poll, self.seq))
        self.cond.notify_all()
        return True

    def _remove(self, entry, why=None):
        if entry in self.entries:
            self.entries.remove(entry)
            os.close(entry.fd)
            if why:
                self.dropped.append((entry.name, why))
            self.cond.notify_all()

    def flush(self):
        """Empties the store (what a full stop of the unit does)."""
        with self.lock:
            for e in list(self.entries):
                self._remove(e)
        self._wake()

    def sweep(self):
        """Drops every polled fd that reports POLLHUP or POLLERR right now."""
        with self.lock:
            watched = [e for e in self.entries if e.poll]
            if not watched:
                return
            p = select.poll()
            for e in watched:
                p.register(e.fd, 0)
            bad = dict(p.poll(0))
            for e in watched:
                ev = bad.get(e.fd, 0)
                if ev & (select.POLLHUP | select.POLLERR):
                    self._remove(e, "POLLHUP" if ev & select.POLLHUP else "POLLERR")

    # --- the notify socket -----------------------------------------------------------------------

    def set_autopoll(self, on):
        with self.lock:
            self.autopoll = on
        self._wake()

    def _wake(self):
        try:
            os.write(self.wake_w, b"x")
        except (BlockingIOError, OSError, TypeError):
            pass

    def _run(self):
        while True:
            with self.lock:
                watched = [e for e in self.entries if e.poll] if self.autopoll else []
            p = select.poll()
            p.register(self.wake_r, select.POLLIN)
            p.register(self.notify_sock.fileno(), select.POLLIN)
            byfd = {}
            for e in watched:
                p.register(e.fd, 0)
                byfd[e.fd] = e
            try:
                events = p.poll(1000)
            except InterruptedError:
                continue
            for fd, ev in events:
                if fd == self.wake_r:
                    try:
                        data = os.read(self.wake_r, 64)
                    except BlockingIOError:
                        data = b""
                    if b"q" in data:
                        return
                elif fd == self.notify_sock.fileno():
                    with self.lock:
                        self._receive_one()
                elif ev & (select.POLLHUP | select.POLLERR):
                    with self.lock:
                        e = byfd[fd]
                        # still stored under this number (not removed and the number reused)?
                        if e in self.entries:
                            self._remove(e, "POLLHUP" if ev & select.POLLHUP else "POLLERR")

    def _receive_one(self):
        """Reads and handles one datagram (lock held). False if there was none."""
        try:
            data, anc, flags, _ = self.notify_sock.recvmsg(
                NOTIFY_BUFFER_MAX, socket.CMSG_SPACE(NOTIFY_FD_MAX * 4) + socket.CMSG_SPACE(12),
                socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC)
        except (BlockingIOError, InterruptedError):
            return False
        fds, cred = [], None
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("%di" % (len(cdata) // 4), cdata[:len(cdata) // 4 * 4]))
            elif level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS:
                cred = struct.unpack("iII", cdata[:12])
        try:
            self._handle(data, fds, flags, cred)
        finally:
            for fd in fds:
                if fd >= 0:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
        return True

    def _handle(self, data, fds, flags, cred):
        """Handles one message; fds it keeps are set to -1 in the list."""
        if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            self.errors.append("notify message truncated (flags %#x, %d bytes, %d fds): %r"
                               % (flags, len(data), len(fds), data[:200]))
            return
        if cred is None:
            self.errors.append("notify message without credentials: %r" % data[:200])
            return
        pid = cred[0]
        if self.main_pid is None or pid != self.main_pid:
            self.errors.append("notify message from pid %d, main pid is %s (%d fds dropped): %r"
                               % (pid, self.main_pid, len(fds), data[:200]))
            return
        if b"\0" in data:
            self.errors.append("notify message with an embedded NUL: %r" % data[:200])
            return
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            self.errors.append("notify message is not UTF-8: %r" % data[:200])
            return
        tags = [t for t in text.split("\n") if t]
        n = Notification(pid, self.generation, tags, len(fds))
        self.notifications.append(n)
        name = n.get("FDNAME")
        if "FDSTOREREMOVE=1" in tags:
            if name is None or not fdname_is_valid(name):
                self.errors.append("FDSTOREREMOVE=1 without a valid FDNAME=: %r" % tags)
            else:
                gone = [e for e in self.entries if e.name == name]
                for e in gone:
                    self._remove(e)
                self.removed.append((self.generation, name, len(gone)))
        if "FDSTORE=1" in tags:
            if not fds:
                self.errors.append("FDSTORE=1 without fds: %r" % tags)
            if name is not None and not fdname_is_valid(name):
                self.errors.append("FDSTORE=1 with an invalid FDNAME=%r; stored as \"stored\"" % name)
                name = None
            if name is None:
                name = "stored"
            poll = "FDPOLL=0" not in tags
            for i, fd in enumerate(fds):
                fds[i] = -1
                self._add(fd, name, poll)
            self._wake()
        elif fds:
            self.errors.append("%d fds without FDSTORE=1 (closed): %r" % (len(fds), tags))
        self.cond.notify_all()

    def drain(self):
        """Handles every datagram already queued on the notify socket."""
        with self.lock:
            while self._receive_one():
                pass

    # --- the service ---------------------------------------------------------------------------

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, order=None, extra_env=None, sweep=True):
        """Starts the service with the socket and the whole store (swept first unless
        sweep=False). Returns its pid."""
        if self.running():
            raise AssertionError("service already running (pid %d)" % self.proc.pid)
        if sweep:
            self.sweep()
        order = order or self.order
        with self.lock:
            entries = list(self.entries)
            if order == "lifo":
                entries.reverse()
            elif order == "random":
                random.shuffle(entries)
            elif order != "fifo":
                raise ValueError("order " + order)
            fds, names = [], []
            if self.listen_sock is not None:
                fds.append(self.listen_sock.fileno())
                names.append(self.listen_name)
            fds += [e.fd for e in entries]
            names += [e.name for e in entries]
            env = dict(self.env)
            env.update(extra_env or {})
            env.pop("LISTEN_PID", None)
            env.pop("LISTEN_FDS", None)
            env.pop("LISTEN_FDNAMES", None)
            env["NOTIFY_SOCKET"] = self.notify_path
            if fds:
                env["LISTEN_FDS"] = str(len(fds))
                env["LISTEN_FDNAMES"] = ":".join(names)
            argv = [_PYTHON, "-I", "-S", "-c", _WRAPPER, str(len(fds))] + [str(f) for f in fds] + self.argv
            logf = open(self.log_path, "ab") if self.log_path else None
            try:
                self.generation += 1
                self.proc = subprocess.Popen(argv, env=env, pass_fds=fds, stdin=subprocess.DEVNULL,
                                             stdout=logf, stderr=logf, start_new_session=True,
                                             preexec_fn=_pdeathsig, cwd="/")
            finally:
                if logf:
                    logf.close()
            self.main_pid = self.proc.pid
            self.starts.append(names)
            self.cond.notify_all()
        return self.main_pid

    def ready(self, generation=None):
        generation = self.generation if generation is None else generation
        with self.lock:
            return any(n.generation == generation and "READY=1" in n.tags for n in self.notifications)

    def wait_ready(self, timeout=20):
        """Waits for READY=1 from the current start; AssertionError if the service exits or
        times out."""
        return self.wait_notify(lambda n: "READY=1" in n.tags, timeout, "READY=1")

    def wait_notify(self, pred, timeout=10, what="a notify message", generation=None):
        """Waits for an accepted message of this start (or `generation`) satisfying pred;
        returns it."""
        generation = self.generation if generation is None else generation
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for n in self.notifications:
                    if n.generation == generation and pred(n):
                        return n
                if self.proc is not None and self.proc.poll() is not None:
                    self.drain()
                    for n in self.notifications:
                        if n.generation == generation and pred(n):
                            return n
                    raise AssertionError("service exited (%s) before %s%s"
                                         % (self.proc.returncode, what, self._log_tail()))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s within %.1fs; messages of this start: %r%s"
                                         % (what, timeout, self.messages(generation), self._log_tail()))
                self.cond.wait(min(left, 0.05))

    def messages(self, generation=None):
        generation = self.generation if generation is None else generation
        with self.lock:
            return [n for n in self.notifications if n.generation == generation]

    def _log_tail(self):
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                return "\n--- service log ---\n" + f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _reap(self, timeout):
        p = self.proc
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        try:
            os.killpg(p.pid, signal.SIGKILL)     # leftovers of its session, if any
        except (ProcessLookupError, PermissionError):
            pass
        self.drain()                             # what it said before dying still counts
        with self.lock:
            self.exit_statuses.append((self.generation, p.returncode))
            self.main_pid = None
        return True

    def kill9(self, timeout=10):
        """SIGKILL to the service (its whole session) and waits; the store is kept."""
        if self.proc is None:
            raise AssertionError("service not started")
        if self.proc.poll() is not None:
            rc = self.proc.returncode
            self._reap(0)
            self.proc = None
            raise AssertionError("service had already exited with %s before kill -9" % rc)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if not self._reap(timeout):
            raise AssertionError("service did not die on SIGKILL")
        rc = self.proc.returncode
        self.proc = None
        return rc

    def terminate(self, timeout=10):
        """SIGTERM to the main pid; waits; returns the exit status (negative: signal). The
        store is kept (like a restart). SIGKILL and AssertionError after timeout."""
        if self.proc is None:
            return None
        was_running = self.proc.poll() is None
        if was_running:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if not self._reap(timeout):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(10)
            self.proc = None
            raise AssertionError("service did not exit within %ds of SIGTERM" % timeout)
        rc = self.proc.returncode
        self.proc = None
        if not was_running:
            raise AssertionError("service had already exited with %s before SIGTERM" % rc)
        return rc

    def stop(self, timeout=10):
        """Stops the unit: SIGTERM, wait, then the store is flushed. Returns the exit status."""
        try:
            return self.terminate(timeout)
        finally:
            self.flush()

    def restart(self, order=None, extra_env=None, wait=True, timeout=20, sweep=True):
        """SIGTERM if still running (store kept), sweep, start with the store; waits for READY=1
        unless wait=False. Returns the new pid."""
        if self.proc is not None:
            self.terminate()
        self.start(order=order, extra_env=extra_env, sweep=sweep)
        if wait:
            self.wait_ready(timeout)
        return self.main_pid

    # --- teardown ------------------------------------------------------------------------------

    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        if self.thread is not None:
            try:
                os.write(self.wake_w, b"q")
            except OSError:
                pass
            self.thread.join(5)
            self.thread = None
        with self.lock:
            for e in list(self.entries):
                self._remove(e)
        for s in (self.notify_sock, self.listen_sock):
            if s is not None:
                s.close()
        self.notify_sock = self.listen_sock = None
        for fd in (self.wake_r, self.wake_w):
            if fd is not None:
                os.close(fd)
        self.wake_r = self.wake_w = None
        if self.listen_path and os.path.lexists(self.listen_path):
            try:
                os.unlink(self.listen_path)
            except OSError:
                pass
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        elif os.path.lexists(getattr(self, "notify_path", "")):
            try:
                os.unlink(self.notify_path)
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
