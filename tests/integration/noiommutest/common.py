# SPDX-License-Identifier: LGPL-2.1-or-later
"""Basics every other module uses: where the source and build trees are, how a test reports
(Skip, run: exit 0 pass, 1 fail, 77 skip with a loud reason), waiting with a timeout, and small
readers of /proc and of pipes. Children are started with PR_SET_PDEATHSIG (_pdeathsig) so that
a killed test leaves nothing behind."""

import ctypes
import os
import select
import signal
import sys
import time
import traceback

EXIT_SKIP = 77

# tests/integration: the package lives one level below it.
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE_ROOT = os.environ.get("NOIOMMU_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("NOIOMMU_BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build")
PYTHON = "/usr/bin/python3"

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class Skip(Exception):
    """Raised to skip the test (exit 77) with a reason."""


def log(*args):
    print("#", *args, flush=True)


def require(cond, reason):
    if not cond:
        raise Skip(reason)


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
