# SPDX-License-Identifier: LGPL-2.1-or-later
"""Root integration-test environment for noiommud (security.md §10, house-style.md §6).

One Environment is a context manager that builds, for one test file:

  * a reservation of free 2 MiB hugepages (pool.py; nr_hugepages raised if needed, restored
    on exit), under the machine-wide integration lock;
  * a world-readable temporary directory;
  * a private system-type dbus-daemon (bus.py);
  * optionally the real polkitd in a private mount namespace, or python3-dbusmock's polkitd
    template (Environment(polkit="mock"), polkit.py);
  * a journal capture and a sd_notify socket (journal.py);
  * the built daemon, as root, in its own mount namespace, listening on <tmp>/noiommud.sock;
  * helpers to talk Varlink as any uid (varlink.py), to run noiommuctl (ctl.py), and to read
    the daemon's fd count, HugePages_Free and hugetlb mappings (oracles.py).

The host's own D-Bus and polkit are never touched: everything lives on the private bus and in
private mount namespaces. Every child is started with PR_SET_PDEATHSIG where that survives, in its
own process group, and is killed at teardown. Teardown fails the test if the daemon died early or
did not exit cleanly on SIGTERM.

Environment variables: NOIOMMUD_TEST_BINARY, NOIOMMUCTL_TEST_BINARY, NOIOMMU_SOURCE_ROOT,
NOIOMMU_BUILD_ROOT (set by meson; standalone runs default to <source>/build); NOIOMMU_TEST_KEEP=1
keeps the temporary directory; NOIOMMU_TEST_WRAPPER="strace -f -o /tmp/x" runs the daemon under a
wrapper (fd counts and signals then go to the real daemon process below it; valgrind 3.19 lacks
pidfd_send_signal, so the daemon refuses every peer under it); NOIOMMU_TEST_POLICY=FILE uses
another action file (development only).
"""

import contextlib
import glob
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

from . import pool
from .bus import PrivateBus
from .common import (BUILD_ROOT, PYTHON, Skip, _pdeathsig, describe_status, find_descendant, log,
                     read_int, require, wait_until, write_int)
from .ctl import CtlHelpers
from .journal import MSGID, JournalCapture
from .oracles import DaemonOracles
from .polkit import TEST_RULES, PolkitControl
from .pool import HUGEPAGE_SYSFS
from .varlink import Connection


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


class Environment(PrivateBus, PolkitControl, DaemonOracles, CtlHelpers):
    """See the module docstring. Arguments:
      polkit:      True: start the real polkitd; "mock": python3-dbusmock's polkitd template
                   instead (self.polkit_mock, a MockPolkit); False: the bus has no polkit at all
      install_policy: put the project's action file into polkitd's action directory
      daemon:      start noiommud (False for self-tests of the harness)
      hugepages:   how many free 2 MiB pages to guarantee
      daemon_args: extra arguments for noiommud
    """

    LOCK_PATH = pool.LOCK_PATH
    STATE_PATH = pool.STATE_PATH

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
        # Serialize integration runs on this machine: they share the hugepage pool.
        self.lock_fd = pool.lock(self.LOCK_PATH)

    def _reserve_hugepages(self):
        pool.restore_stale(self.STATE_PATH)
        for d in glob.glob(os.path.join(tempfile.gettempdir(), "noiommud-itest-*")):
            try:
                pid = read_int(os.path.join(d, "owner-pid"))
            except (OSError, ValueError):
                continue
            if not os.path.exists("/proc/%d" % pid) and not os.path.exists(os.path.join(d, "keep")):
                shutil.rmtree(d, ignore_errors=True)
        self.nr_hugepages_orig = pool.reserve(self.hugepages, self.STATE_PATH)

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

    def __exit__(self, exc_type, exc, tb):
        failed = exc_type is not None or bool(self.failures)
        if exc_type is not None and not issubclass(exc_type, Skip):
            print("FAIL: %s" % self.name, flush=True)
            traceback.print_exception(exc_type, exc, tb)
        failed = self._teardown(failed=failed) or failed
        if failed and (exc_type is None or (issubclass(exc_type, Skip) and self.failures)):
            # A skip after a failed block must not turn the failure into exit 77.
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
        pool.restore(self.nr_hugepages_orig, self.STATE_PATH)
        self.nr_hugepages_orig = None
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

    def find_journal(self, name, **fields):
        return self.journal.find(MSGID[name], **fields)

    def wait_journal(self, name, timeout=10, **fields):
        return self.journal.wait(MSGID[name], timeout=timeout, **fields)
