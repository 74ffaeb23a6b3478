#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Device-lease test environment: harness.Environment plus the vfio-mock fixture backend.

The real built noiommud runs with tests/mock/vfio-mock.c preloaded (LD_PRELOAD; the daemon
binary has no test switch) against a fixture root made of

  * a copy of tests/fixtures/sysfs/<case>/sys (default case "devices", see its README row), and
  * the character nodes listed in <case>/dev.list, made with mknod (git cannot hold them),

and a --config file naming the devices that may be served in noiommu mode. The mock writes one
line per kernel event to mock.log ("SEQ EVENT key=value ..."), which MockLog parses.

Environment variables: NOIOMMU_MOCK_LIB (set by meson from vfio_mock.full_path(); standalone
runs default to <build>/tests/mock/libvfio-mock.so), plus everything harness.py reads.

Fault switches of the mock (no-reset, reset-fail, bme-stuck, no-get-pa) are flipped at run time
with DeviceEnvironment.set_fault(); see tests/mock/vfio-mock.c.
"""

import contextlib
import fcntl
import json
import mmap
import os
import re
import shutil
import socket
import stat
import time

import harness
from harness import (Environment, Skip, check_physical_addresses, check_segments, proc_maps,
                     wait_until)

FIXTURES = os.path.join(harness.SOURCE_ROOT, "tests", "fixtures", "sysfs")

ACQUIRE = "io.noiommud.Broker.AcquireDevice"
RELEASE = "io.noiommud.Broker.ReleaseDevice"
ALLOCATE = harness.ALLOCATE
FREE = harness.FREE
LIST = harness.LIST

# The "devices" fixture case (tests/fixtures/sysfs/README.md).
GROUP_DEV = "0000:00:03.0"      # group-noiommu, group 7
CDEV_NOIOMMU_DEV = "0000:00:04.0"   # cdev-noiommu, noiommu-vfio1
CDEV_IOMMU_DEV = "0000:00:05.0"     # cdev-iommu, vfio2
UNLISTED_DEV = "0000:00:06.0"   # group-noiommu, not in the configuration
CDEV_NOIOMMU_DEV2 = "0000:00:07.0"  # cdev-noiommu, noiommu-vfio3, no group

NODES = {
    GROUP_DEV: "dev/vfio/noiommu-7",
    CDEV_NOIOMMU_DEV: "dev/vfio/devices/noiommu-vfio1",
    CDEV_IOMMU_DEV: "dev/vfio/devices/vfio2",
    UNLISTED_DEV: "dev/vfio/noiommu-9",
    CDEV_NOIOMMU_DEV2: "dev/vfio/devices/noiommu-vfio3",
}
BACKENDS = {
    GROUP_DEV: "group-noiommu",
    CDEV_NOIOMMU_DEV: "cdev-noiommu",
    CDEV_IOMMU_DEV: "cdev-iommu",
    UNLISTED_DEV: "group-noiommu",
    CDEV_NOIOMMU_DEV2: "cdev-noiommu",
}

# The mock's default IOVA ranges once a device is attached (vfio-mock.c parse_ranges()).
IOVA_RANGES = [(0x0, 0xfedfffff), (0xfef00000, 0xffffffffffff)]

DEFAULT_CONFIG = {
    "noiommuDevices": [GROUP_DEV, CDEV_NOIOMMU_DEV, CDEV_NOIOMMU_DEV2],
    "iommuDevices": "all",
}

HUGEPAGE = harness.HUGEPAGE_2M


def mock_lib():
    path = os.environ.get("NOIOMMU_MOCK_LIB") or os.path.join(harness.BUILD_ROOT, "tests", "mock",
                                                               "libvfio-mock.so")
    if not os.path.exists(path):
        if "NOIOMMU_MOCK_LIB" in os.environ:
            raise AssertionError("NOIOMMU_MOCK_LIB=%s does not exist" % path)
        raise Skip("vfio-mock not built (%s missing; set NOIOMMU_MOCK_LIB)" % path)
    return path


def build_mock_root(dest, case="devices"):
    """Copies the fixture's sys/ to dest and creates its dev.list nodes. Returns dest."""
    src = os.path.join(FIXTURES, case)
    shutil.copytree(os.path.join(src, "sys"), os.path.join(dest, "sys"), symlinks=True)
    with open(os.path.join(src, "dev.list")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            path, kind, devnum = line.split()
            assert kind == "c", line
            major, minor = (int(x) for x in devnum.split(":"))
            full = os.path.join(dest, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            os.mknod(full, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    os.makedirs(os.path.join(dest, "mock-control"), exist_ok=True)
    return dest


class MockLog:
    """The mock's event log. Each event is a dict: index (its line number in the file, which
    keeps growing across daemon restarts, unlike the mock's own per-process seq), seq, event,
    and the key=value fields. "since" arguments and mark() are line numbers."""

    LINE = re.compile(r"^(\d+) (\S+)(.*)$")

    def __init__(self, path):
        self.path = path

    def events(self, since=0):
        out = []
        try:
            with open(self.path) as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return out
        for index, line in enumerate(lines):
            m = self.LINE.match(line)
            if index < since or not m:
                continue
            e = {"index": index, "seq": int(m.group(1)), "event": m.group(2)}
            for kv in m.group(3).split():
                k, _, v = kv.partition("=")
                e[k] = v
            out.append(e)
        return out

    def mark(self):
        """A position after every event so far (for events(since=...))."""
        try:
            with open(self.path) as f:
                return f.read().count("\n")
        except FileNotFoundError:
            return 0

    def find(self, event, since=0, **fields):
        return [e for e in self.events(since) if e["event"] == event and
                all(e.get(k) == str(v) for k, v in fields.items())]

    def wait(self, event, since=0, timeout=10, **fields):
        return wait_until(lambda: self.find(event, since, **fields), timeout,
                          lambda: "mock event %s %r; events since %d:\n%s"
                          % (event, fields, since, self.describe(since)))

    def describe(self, since=0):
        return "\n".join("  %d %s %s" % (e["seq"], e["event"],
                                         " ".join("%s=%s" % (k, v) for k, v in e.items()
                                                  if k not in ("index", "seq", "event")))
                         for e in self.events(since)) or "  (none)"


class DeviceEnvironment(Environment):
    """An Environment whose daemon runs with the vfio mock on a fixture root.

    Arguments beyond Environment's: config (the daemon's JSON configuration, default
    DEFAULT_CONFIG), case (fixture case), mock_env (extra NOIOMMU_MOCK_* variables for the
    daemon)."""

    def __init__(self, config=None, case="devices", mock_env=None, **kw):
        self.config = DEFAULT_CONFIG if config is None else config
        self.case = case
        self.mock_env = dict(mock_env or {})
        self.want_mock_daemon = kw.pop("daemon", True)
        super().__init__(daemon=False, **kw)

    def __enter__(self):
        harness.check_prerequisites(need_daemon=self.want_mock_daemon)
        self.mock_lib = mock_lib()
        super().__enter__()
        try:
            self.mock_root = build_mock_root(os.path.join(self.tmp, "mockroot"), self.case)
            os.chmod(self.mock_root, 0o755)
            self.mock_log = MockLog(os.path.join(self.tmp, "mock.log"))
            self.config_path = os.path.join(self.tmp, "noiommud.conf")
            self.write_config(self.config)
            if self.want_mock_daemon:
                self.start_mock_daemon()
        except BaseException:
            self._teardown(failed=True)
            raise
        return self

    def write_config(self, config):
        with open(self.config_path, "w") as f:
            json.dump(config, f)

    def mock_daemon_env(self):
        """The environment a daemon needs to run on the vfio mock (also for daemons that
        fdstore_manager.py starts)."""
        env = {
            "LD_PRELOAD": self.mock_lib,
            "NOIOMMU_MOCK_ROOT": self.mock_root,
            "NOIOMMU_MOCK_LOG": self.mock_log.path,
            "ASAN_OPTIONS": "verify_asan_link_order=0:" + os.environ.get("ASAN_OPTIONS", ""),
        }
        env.update(self.mock_env)
        return env

    def start_mock_daemon(self, extra_env=None):
        env = self.mock_daemon_env()
        env.update(extra_env or {})
        self.start_daemon(extra_args=["--config", self.config_path], env_overrides=env)

    def restart_mock_daemon(self, **kw):
        self.stop_daemon()
        self.start_mock_daemon(**kw)

    def set_fault(self, name, value):
        """Switches a mock fault on ("all" or a list of addresses) or off (None/"")."""
        path = os.path.join(self.mock_root, "mock-control", name)
        if isinstance(value, (list, tuple)):
            value = ",".join(value)
        with open(path, "w") as f:
            f.write(value or "")

    @contextlib.contextmanager
    def fault(self, name, value="all"):
        self.set_fault(name, value)
        try:
            yield
        finally:
            self.set_fault(name, None)

    def node_path(self, address):
        return os.path.join(self.mock_root, NODES[address])

    @contextlib.contextmanager
    def node_replaced(self, address, kind):
        """Replaces the device node of address (or a path relative to the mock root, like
        "dev/iommu") for the block: "symlink" (to /dev/null), "fifo", "regular" (an empty
        file), "wrong-rdev" (a char node 1:3, like a bind-mounted /dev/null), "directory",
        "socket" (a bound UNIX socket) or "missing"."""
        path = os.path.join(self.mock_root, NODES.get(address, address))
        st = os.lstat(path)
        os.unlink(path)
        try:
            if kind == "symlink":
                os.symlink("/dev/null", path)
            elif kind == "fifo":
                os.mkfifo(path, 0o600)
            elif kind == "regular":
                open(path, "w").close()
            elif kind == "wrong-rdev":
                os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
            elif kind == "directory":
                os.mkdir(path)
            elif kind == "socket":
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.bind(path)
                s.close()
            elif kind == "missing":
                pass
            else:
                raise ValueError(kind)
            yield path
        finally:
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            elif os.path.lexists(path):
                os.unlink(path)
            os.mknod(path, st.st_mode, st.st_rdev)

    def daemon_fd_targets(self):
        return sorted(self.daemon_fds().values())


# --- Varlink helpers ---------------------------------------------------------------------------

def acquire(conn, address, expect_backend=None, **params):
    """AcquireDevice that must succeed: checks the reply (backend: expect_backend, by default the
    fixture's, BACKENDS) and its single fd (the mock's state file of a device object), returns
    (reply parameters, device fd)."""
    reply, fds = conn.call_ok(ACQUIRE, dict(params, device=address))
    try:
        assert len(fds) == 1, "AcquireDevice reply carried %d fds, expected 1" % len(fds)
        assert reply.get("fd") == 0, "fd index %r" % reply.get("fd")
        assert re.fullmatch(r"[0-9a-f]{32}", reply.get("lease", "")), "lease id %r" % reply.get("lease")
        d = reply["device"]
        assert d["address"] == address, d
        assert d["backend"] == (expect_backend or BACKENDS[address]), d
        assert d["state"] == "available", d
        link = os.readlink("/proc/self/fd/%d" % fds[0])
        assert "-device-" in link and "/mock-state/" in link, \
            "the fd is not a (mock) device fd: %s" % link
        flags = fcntl.fcntl(fds[0], fcntl.F_GETFL)
        assert flags & os.O_ACCMODE == os.O_RDWR, "device fd is not O_RDWR"
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return reply, fds[0]


def allocate_leased(conn, lease, size, kind):
    """AllocateMemory with a lease; checks the reply's shape, memfd and addressKind."""
    reply, fds = conn.call_ok(ALLOCATE, {"size": size, "lease": lease})
    try:
        assert len(fds) == 1, "AllocateMemory reply carried %d fds" % len(fds)
        assert reply["addressKind"] == kind, "addressKind %r, expected %r" % (reply["addressKind"], kind)
        check_segments(reply, reply["size"])
        link = os.readlink("/proc/self/fd/%d" % fds[0])
        assert link == "/memfd:noiommud-%s (deleted)" % reply["memory"], link
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return reply, fds[0]


def check_physical(memfd, reply):
    """Maps the memfd in this process and checks every page against pagemap."""
    size = reply["size"]
    m = mmap.mmap(memfd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        m[0:1] = b"\x01"                     # fault the mapping in
        for off in range(0, size, HUGEPAGE):
            m[off:off + 1] = b"\x01"
        vma = [r for r in proc_maps(os.getpid()) if ("noiommud-" + reply["memory"]) in r["path"]]
        assert vma, "mapping of the memfd not found in /proc/self/maps"
        n = sum(check_physical_addresses(os.getpid(), v, reply["segments"], size) for v in vma)
        assert n == size // 4096, "checked %d pages of %d" % (n, size // 4096)
    finally:
        m.close()


def check_iova(reply):
    """The IOVA segments lie inside the mock's allowed ranges, aligned to the page size."""
    for s in reply["segments"]:
        a, n = s["dmaAddress"], s["length"]
        assert a != 0, "IOVA 0 handed out: %r" % s
        assert a % reply["hugepageSize"] == 0, "IOVA not aligned: %r" % s
        assert any(lo <= a and a + n - 1 <= hi for lo, hi in IOVA_RANGES), \
            "IOVA range %#x+%#x outside the allowed ranges %r" % (a, n, IOVA_RANGES)


def order(log_, since, *steps, timeout=10):
    """Asserts that the mock log has, after `since`, one event for each step in this order
    (waiting up to `timeout` seconds for them: a disconnect is handled asynchronously). A step is
    (event, {fields}) or an event name; returns the matched events."""
    deadline = time.monotonic() + timeout
    while True:
        events = log_.events(since)
        pos = 0
        got = []
        missing = None
        for step in steps:
            name, fields = (step, {}) if isinstance(step, str) else step
            for i in range(pos, len(events)):
                e = events[i]
                if e["event"] == name and all(e.get(k) == str(v) for k, v in fields.items()):
                    got.append(e)
                    pos = i + 1
                    break
            else:
                missing = (name, fields)
                break
        if missing is None:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError("mock log: no %s %r after %r; events since %d:\n%s"
                                 % (missing[0], missing[1], got[-1] if got else None, since,
                                    log_.describe(since)))
        time.sleep(0.02)


def run(body):
    harness.run(body)
