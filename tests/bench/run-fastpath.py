#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The fast-path benchmark of issue 10 in one run, as root:

    /usr/bin/python3 tests/bench/run-fastpath.py [BUILD_DIR] [--iterations N] [--smoke] ...

BUILD_DIR gives the daemon (BUILD/daemon/noiommud) and the vfio mock (BUILD/tests/mock/
libvfio-mock.so); any build works, old or new. The timed part is tests/bench/bench-fastpath (C,
Varlink by hand, no client library), taken from BUILD if it has one, else from this source
tree's build/ (--helper overrides). Features a build lacks are rows that say "n/a: <why>" (the
daemon refuses the `hugepagePool` key, or AcquireDevice's `memory` parameter), so one script
gives the before and the after figures.

In the integration tests' private world (tests/integration/noiommutest: private dbus-daemon, the
real polkitd with the project's action file and a rule that lets root ask, a journal socket and
a sd_notify socket read by the harness's thread, which also takes the daemon's FDSTORE=1 fds:
the service manager's fd store as far as the daemon can tell), it starts

  A  the daemon with no pool                 GetInfo, AllocateMemory 2 MiB and 1 GiB
  B  the daemon with the pool of issue 10    AllocateMemory 2 MiB and 1 GiB from the pool
  C  the daemon on the vfio mock fixture     AcquireDevice with memory (one call), and
     (with the pool when B has one)          AcquireDevice + AllocateMemory(lease) (two calls)
  F  a minimal C server (bench-fastpath serve): the transport floor

and measures, interleaved per iteration so that drift hits every row alike, p50/p99 of each
row next to the transport floor, dbus-daemon (connect + Hello + GetId), polkit
CheckAuthorization alone and the kernel's own calls (memfd + fallocate; the daemon's whole
kernel sequence done directly). Then, per daemon request kind, on the daemon's side: syscalls
per request (strace -f -c -p around a batch, minus an idle baseline of the same length), CPU per
request (utime + stime of /proc/PID/stat, and the ns of /proc/PID/task/*/schedstat: all threads,
and the main thread alone), and instructions per request (the same daemon configuration started
under valgrind --tool=callgrind; callgrind_control -z before a batch and -d after it). Finally
the idle RSS of each daemon at start and after the runs, and the checks issue 10 names.

Holds the integration lock (/run/lock/noiommud-integration.lock) for the whole run, waiting for
it as long as it takes. About 3-4 minutes with the defaults; --smoke runs every row a few times
only and fails (exit 1) unless every row has a number or an explicit n/a reason.
"""
import argparse
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
MiB = 1 << 20
GiB = 1 << 30


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("build", nargs="?", default=os.path.join(SOURCE_ROOT, "build"))
    p.add_argument("--iterations", type=int, default=1000,
                   help="interleaved iterations of the 2 MiB / GetInfo / floor rows (default 1000)")
    p.add_argument("--big-iterations", type=int, default=20,
                   help="interleaved iterations of the 1 GiB rows (default 20)")
    p.add_argument("--device-samples", type=int, default=200,
                   help="samples of each device row (default 200), spread over the iterations: a "
                        "device row costs milliseconds on the vfio mock")
    p.add_argument("--batch", type=int, default=200,
                   help="requests per batch for syscalls and CPU per request (default 200; "
                        "1 GiB kinds use a tenth, device kinds a quarter, at least 3)")
    p.add_argument("--callgrind-batch", type=int, default=30,
                   help="requests per batch under callgrind (default 30; 1 GiB kinds a tenth, at least 2)")
    p.add_argument("--no-callgrind", action="store_true", help="skip the instruction counts")
    p.add_argument("--no-strace", action="store_true", help="skip the syscall counts")
    p.add_argument("--helper", help="bench-fastpath binary (default: BUILD's, else this tree's build/)")
    p.add_argument("--smoke", action="store_true",
                   help="tiny counts; exit 1 unless every row has a number or an n/a reason")
    a = p.parse_args()
    if a.smoke:
        a.iterations, a.big_iterations, a.batch, a.callgrind_batch = 3, 1, 3, 2
    return a


args = parse_args()
build = os.path.abspath(args.build)
os.environ.setdefault("NOIOMMU_SOURCE_ROOT", SOURCE_ROOT)
os.environ.setdefault("NOIOMMU_BUILD_ROOT", build)
os.environ.setdefault("NOIOMMUD_TEST_BINARY", os.path.join(build, "daemon", "noiommud"))
os.environ.setdefault("NOIOMMUCTL_TEST_BINARY", os.path.join(build, "client", "lib", "noiommuctl"))
os.environ.setdefault("NOIOMMU_MOCK_LIB", os.path.join(build, "tests", "mock", "libvfio-mock.so"))


def build_source_dir():
    """The source tree BUILD was configured from (meson-info.json), or None."""
    try:
        with open(os.path.join(build, "meson-info", "meson-info.json")) as f:
            return json.load(f)["directories"]["source"]
    except (OSError, ValueError, KeyError):
        return None


# polkitd must know the actions of the daemon under test (a newer one may add some, like
# acquire-device-with-memory): its action file comes from the source tree of BUILD.
BUILD_SOURCE = build_source_dir()
if BUILD_SOURCE and os.path.exists(os.path.join(BUILD_SOURCE, "policy", "io.noiommud.policy")):
    os.environ.setdefault("NOIOMMU_TEST_POLICY", os.path.join(BUILD_SOURCE, "policy", "io.noiommud.policy"))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
import harness  # noqa: E402
import device_harness  # noqa: E402

POOL = [{"hugepageSize": 2 * MiB, "size": 2 * MiB, "count": 8},
        {"hugepageSize": 2 * MiB, "size": GiB, "count": 1}]
POOL_PAGES = sum(e["size"] // e["hugepageSize"] * e["count"] for e in POOL)
# Two noiommu devices of the same backend (cdev-noiommu) of the fixture, one per device row, so
# that one row's asynchronous teardown never makes the other wait.
DEV_ONE_CALL = device_harness.CDEV_NOIOMMU_DEV
DEV_TWO_CALLS = device_harness.CDEV_NOIOMMU_DEV2
ROOT_RULE = """\
// Benchmark only: root may do what the test rules allow uid 1, so that bench-fastpath can ask
// the daemon and polkit directly.
polkit.addRule(function(action, subject) {
        if (action.id.indexOf("io.noiommud.") == 0 && subject.user == "root")
                return polkit.Result.YES;
});
"""
MARK_GOAL = {True: "ok", False: "OVER GOAL", None: "n/a"}


def log(*a):
    print("#", *a, flush=True)


class BenchEnvironment(device_harness.DeviceEnvironment):
    """Waits for the integration lock as long as it takes instead of failing after 90 s."""

    def _lock(self):
        import fcntl
        os.makedirs(os.path.dirname(self.LOCK_PATH), exist_ok=True)
        self.lock_fd = os.open(self.LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log("waiting for %s (another test is running)" % self.LOCK_PATH)
            t0 = time.monotonic()
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            log("got the lock after %.0f s" % (time.monotonic() - t0))


# --- /proc readers ------------------------------------------------------------------------------

def status_kib(pid, field="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def cpu_ticks(pid):
    """utime + stime of the whole process (every thread), in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def schedstat_ns(pid):
    """(on-CPU ns of every current thread, of the main thread) from /proc/PID/task/*/schedstat.
    A thread that exits during a batch takes its time with it (the utime + stime figure keeps
    it)."""
    total = main = 0
    for path in glob.glob("/proc/%d/task/*/schedstat" % pid):
        try:
            with open(path) as f:
                ns = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        total += ns
        if path == "/proc/%d/task/%d/schedstat" % (pid, pid):
            main = ns
    return total, main


def hugepages_free():
    return harness.hugepages_free()


# --- daemons ------------------------------------------------------------------------------------

class Daemon:
    """One noiommud of the run, started like Environment.start_daemon() (its own mount namespace,
    the capture's journal socket over /run/systemd/journal, NOTIFY_SOCKET) but on a socket and
    config of its own; several run side by side."""

    def __init__(self, env, name, config, mock=False, wrapper=()):
        self.env, self.name, self.mock = env, name, mock
        self.pool = False
        self.socket_path = os.path.join(env.tmp, name + ".sock")
        self.config_path = os.path.join(env.tmp, name + ".conf")
        with open(self.config_path, "w") as f:
            json.dump(config, f)
        script = ('mount --make-rprivate / && mount --bind "$1" /run/systemd/journal && '
                  'shift && exec "$@"')
        os.makedirs("/run/systemd/journal", exist_ok=True)
        argv = list(wrapper) + [env.daemon_bin, "--listen", self.socket_path, "--config", self.config_path]
        denv = dict(env.env, NOTIFY_SOCKET=env.journal.notify_path)
        denv.pop("LISTEN_FDS", None)
        denv.pop("LISTEN_PID", None)
        if mock:
            denv.update(env.mock_daemon_env())
        self.proc = env.spawn(name, ["unshare", "-m", "sh", "-c", script, "sh",
                                     os.path.join(env.tmp, "journal")] + argv, env=denv)
        # unshare, sh and valgrind all exec in place: the Popen's pid is the daemon's.
        self.pid = self.proc.pid
        self.error = None
        deadline = time.monotonic() + (120 if wrapper else 20)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.error = "the daemon exited at start-up (%s): %s" % (
                    harness.describe_status(self.proc.returncode), self.last_error())
                env.procs.pop(name, None)
                return
            if self.connectable():
                return
            time.sleep(0.02)
        self.error = "the daemon did not listen within the start-up timeout"

    def last_error(self):
        """What the daemon said last at warning level or worse: in its journal (the capture
        marks each entry with the sender's pid), else on stderr."""
        time.sleep(0.2)                  # the capture thread reads the last datagrams
        said = [e.get("MESSAGE", "") for e in self.env.journal.find()
                if e.get("_PID") == str(self.pid) and e.get("PRIORITY", "6") <= "4"]
        if said:
            return " / ".join(said[-3:]).replace(self.env.tmp + "/", "")
        lines = [l for l in self.env.read_log(self.name).splitlines() if l.strip()]
        return lines[-1] if lines else "(no output)"

    def connectable(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket_path)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def alive(self):
        return self.error is None and self.proc.poll() is None

    def stop(self):
        if self.error is not None or self.proc.poll() is not None:
            return
        os.kill(self.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.env._kill(self.name)
            raise AssertionError("%s did not exit within 60 s of SIGTERM" % self.name)
        self.env._kill(self.name)
        if self.proc.returncode not in (0, -signal.SIGTERM):
            raise AssertionError("%s exited on SIGTERM with %s" % (self.name, harness.describe_status(self.proc.returncode)))


def wait_pool(free_before, pages, timeout):
    """Waits until HugePages_Free dropped by the pool's pages since free_before (the pool is
    full). Returns (pages taken, seconds)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if free_before - hugepages_free() >= pages:
            break
        time.sleep(0.05)
    return free_before - hugepages_free(), time.monotonic() - t0


def start_pool_daemon(env, name, config, mock=False, wrapper=(), timeout=60):
    """A daemon with POOL added to config. Returns (Daemon or None, n/a reason or None)."""
    free0 = hugepages_free()
    d = Daemon(env, name, dict(config, hugepagePool=POOL), mock=mock, wrapper=wrapper)
    if d.error:
        return None, "daemon refuses \"hugepagePool\": " + d.error
    taken, secs = wait_pool(free0, POOL_PAGES, timeout)
    if taken < POOL_PAGES:
        d.stop()
        if taken <= 0:
            return None, "daemon accepts \"hugepagePool\" but reserved no hugepages within %d s" % timeout
        return None, "pool holds %d of %d pages after %d s" % (taken, POOL_PAGES, timeout)
    log("%s: pool of %d pages full after %.1f s" % (name, POOL_PAGES, secs))
    return d, None


# --- the helper ---------------------------------------------------------------------------------

def find_helper():
    for path in ([args.helper] if args.helper else
                 [os.path.join(build, "tests", "bench", "bench-fastpath"),
                  os.path.join(SOURCE_ROOT, "build", "tests", "bench", "bench-fastpath")]):
        if path and os.access(path, os.X_OK):
            return os.path.abspath(path)
    raise harness.Skip("bench-fastpath not built (ninja -C build tests/bench/bench-fastpath), "
                       "or pass --helper")


def run_latency(helper, env, rows, n, warm):
    """rows: [(name, spec)]. Returns {name: ("ok", p50, p99, n) | ("na", reason) | ("fail", reason)}."""
    argv = [helper, "latency", str(n), str(warm)] + [
        "%s%s=%s" % (name, "@%d" % args.device_samples if spec.startswith("acq") else "", spec)
        for name, spec in rows]
    r = subprocess.run(argv, env=env.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=3600)
    out = {}
    for line in r.stdout.decode().splitlines():
        parts = line.split(" ", 2)
        if parts[0] == "ROW":
            name, rest = parts[1], parts[2].split()
            out[name] = ("ok", float(rest[0]), float(rest[1]), int(rest[2]))
        elif parts[0] == "NA":
            out[parts[1]] = ("na", parts[2] if len(parts) > 2 else "?")
        elif parts[0] == "FAIL":
            out[parts[1]] = ("fail", parts[2] if len(parts) > 2 else "?")
    if r.returncode != 0:
        raise AssertionError("bench-fastpath latency exited %d: %s" % (r.returncode, r.stderr.decode()[-2000:]))
    for name, _ in rows:
        out.setdefault(name, ("fail", "no output for this row"))
    return out


def run_batch(helper, env, spec, n):
    t0 = time.monotonic()
    r = subprocess.run([helper, "batch", str(n), "b=" + spec], env=env.env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=3600)
    if r.returncode != 0:
        raise AssertionError("batch %s: %s" % (spec, r.stderr.decode().strip()[-500:]))
    return time.monotonic() - t0


def settle_after(size):
    # Work the daemon does after the reply belongs to the request: the disconnect's teardown,
    # the state it saves, a pool refill (1 GiB: a few hundred ms of faulting and zeroing).
    return 2.0 if size >= GiB else 0.3


def measure_cpu(helper, env, d, spec, n, size):
    t0, (s0, m0) = cpu_ticks(d.pid), schedstat_ns(d.pid)
    run_batch(helper, env, spec, n)
    time.sleep(settle_after(size))
    t1, (s1, m1) = cpu_ticks(d.pid), schedstat_ns(d.pid)
    hz = os.sysconf("SC_CLK_TCK")
    return {"ticks_us": (t1 - t0) * 1e6 / hz / n, "sched_us": (s1 - s0) / 1e3 / n,
            "main_us": (m1 - m0) / 1e3 / n}


def strace_count(d, seconds_or_batch, tmp, label, threads=True):
    """Total syscalls of every thread of the daemon (threads=False: of its main thread alone;
    strace -p without -f attaches only the thread it names) while the callable (or a sleep of
    the given seconds) runs, counted by strace -c -p."""
    out = os.path.join(tmp, "strace-%s.txt" % label)
    err = open(os.path.join(tmp, "strace-%s.err" % label), "wb")
    p = subprocess.Popen(["strace"] + (["-f"] if threads else []) +
                         ["-c", "-U", "name,calls", "-o", out, "-p", str(d.pid)],
                         stdout=subprocess.DEVNULL, stderr=err, preexec_fn=harness._pdeathsig)
    err.close()
    errpath = os.path.join(tmp, "strace-%s.err" % label)
    harness.wait_until(lambda: "attached" in open(errpath).read(), 10, "strace to attach")
    time.sleep(0.2)
    if callable(seconds_or_batch):
        seconds_or_batch()
    else:
        time.sleep(seconds_or_batch)
    p.send_signal(signal.SIGINT)
    p.wait(30)
    calls = 0
    with open(out) as f:
        for line in f:
            m = re.match(r"^\s*(\w+)\s+(\d+)\s*$", line)
            if m and m.group(1) != "total":
                calls += int(m.group(2))
    return calls


def measure_syscalls(helper, env, d, spec, n, size, tmp, label, threads):
    wall = [0.0]

    def batch():
        wall[0] = run_batch(helper, env, spec, n)
        time.sleep(settle_after(size))
    busy = strace_count(d, batch, tmp, label, threads)
    idle = strace_count(d, wall[0] + settle_after(size), tmp, label + "-idle", threads)
    return (busy - idle) / n, busy, idle


def callgrind_ir(helper, env, d, spec, n, size, tmp):
    """Instructions per request of daemon d (running under callgrind): zero the counters, a
    batch, dump, read the dump's totals."""
    before = set(glob.glob(os.path.join(tmp, "callgrind.%d.out*" % d.pid)))
    subprocess.run(["callgrind_control", "-z", str(d.pid)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=60)
    run_batch(helper, env, spec, n)
    time.sleep(settle_after(size) * 3)      # everything runs ~50x slower under valgrind
    subprocess.run(["callgrind_control", "-d", str(d.pid)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=True, timeout=60)
    new = harness.wait_until(lambda: sorted(set(glob.glob(os.path.join(tmp, "callgrind.%d.out*" % d.pid))) - before),
                             30, "the callgrind dump")
    total = 0
    for path in new:
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
    return total / n


# --- the run ------------------------------------------------------------------------------------

def main():
    qlen_path = "/proc/sys/net/unix/max_dgram_qlen"
    with open(qlen_path) as f:
        qlen = f.read().strip()
    # systemd raises it to 512 at boot; the kernel's default of 10 would make the daemon's
    # journal datagrams wait for the capture thread (run-bench.py does the same).
    with open(qlen_path, "w") as f:
        f.write("512")
    try:
        return run()
    finally:
        with open(qlen_path, "w") as f:
            f.write(qlen)


class Results:
    def __init__(self):
        self.lat = {}         # row -> ("ok", p50, p99, n) | ("na", reason) | ("fail", reason)
        self.side = {}        # row -> {"syscalls": x, "cpu": {...}, "ir": x} or reasons
        self.notes = []


def run():
    helper = find_helper()
    daemon_bin = os.environ["NOIOMMUD_TEST_BINARY"]
    if not os.path.exists(daemon_bin):
        raise AssertionError("%s does not exist" % daemon_bin)
    have_mock = os.path.exists(os.environ["NOIOMMU_MOCK_LIB"])
    # A: 0 held; B: pool 520 + a 1 GiB grant + the pool's refill 512; C: pool 520 + grants;
    # the kernel rows 512; callgrind's daemons after A, B and C are gone.
    res = Results()
    with BenchEnvironment(daemon=False, hugepages=2600, name="fastpath") as env:
        t_start = time.monotonic()       # after the wait for the integration lock
        path = os.path.join(env.tmp, "rules", "40-bench-root.rules")
        with open(path, "w") as f:
            f.write(ROOT_RULE)
        os.chmod(path, 0o644)
        time.sleep(1.0)                  # polkitd picks up new rules through inotify

        log("daemon %s, helper %s, polkit actions %s" % (daemon_bin, helper, harness.find_policy()))
        daemons = []
        try:
            return run_in(env, helper, have_mock, res, daemons, t_start)
        finally:
            for d in daemons:
                try:
                    d.stop()
                except AssertionError as e:
                    print("FAIL: %s" % e, flush=True)
                    env.failures.append(d.name)


def run_in(env, helper, have_mock, res, daemons, t_start):
    floor_path = os.path.join(env.tmp, "floor.sock")
    env.spawn("floor", [helper, "serve", floor_path])
    harness.wait_until(lambda: os.path.exists(floor_path), 10, "the floor server")

    a = Daemon(env, "daemon-a", {})
    if a.error:
        raise AssertionError("daemon A: " + a.error)
    daemons.append(a)
    b, pool_na = start_pool_daemon(env, "daemon-b", {})
    if b:
        daemons.append(b)
    c, dev_na = None, None
    if not have_mock:
        dev_na = "no vfio mock in this build (%s)" % os.environ["NOIOMMU_MOCK_LIB"]
    else:
        if b:
            c, why = start_pool_daemon(env, "daemon-c", device_harness.DEFAULT_CONFIG, mock=True)
            if c:
                c.pool = True
            else:
                res.notes.append("daemon C without the pool: " + why)
        if not c:
            c = Daemon(env, "daemon-c", device_harness.DEFAULT_CONFIG, mock=True)
            if c.error:
                dev_na, c = "daemon on the vfio mock: " + c.error, None
        if c:
            daemons.append(c)
    rss_start = {d.name: status_kib(d.pid) for d in daemons}

    # --- latency, interleaved --------------------------------------------------------------
    small = [("floor", "floor,%s" % floor_path), ("peer", "peer"), ("polkit", "polkit,2M"),
             ("kernel-2m", "kernel,2M"), ("direct-2m", "direct,2M"),
             ("getinfo", "getinfo,%s" % a.socket_path), ("alloc-2m", "alloc,%s,2M" % a.socket_path)]
    if b:
        small.append(("alloc-2m-pool", "alloc,%s,2M" % b.socket_path))
    if c:
        # acq (no memory) follows acqmem on the same device, two rows later: the fixture's
        # asynchronous teardown of one has the other row's time to finish.
        small += [("acqmem", "acqmem,%s,%s,2M" % (c.socket_path, DEV_ONE_CALL)),
                  ("acq2", "acq2,%s,%s,2M" % (c.socket_path, DEV_TWO_CALLS)),
                  ("acq", "acq,%s,%s" % (c.socket_path, DEV_ONE_CALL))]
    big = [("kernel-1g", "kernel,1G"), ("direct-1g", "direct,1G"), ("alloc-1g", "alloc,%s,1G" % a.socket_path)]
    if b:
        big.append(("alloc-1g-pool", "alloc,%s,1G" % b.socket_path))
    log("latency: %d iterations of %d rows, then %d of %d 1 GiB rows"
        % (args.iterations, len(small), args.big_iterations, len(big)))
    res.lat.update(run_latency(helper, env, small, args.iterations, 5))
    res.lat.update(run_latency(helper, env, big, args.big_iterations, 1))
    for name, why in (("alloc-2m-pool", pool_na), ("alloc-1g-pool", pool_na),
                      ("acqmem", dev_na), ("acq2", dev_na), ("acq", dev_na)):
        if why:
            res.lat[name] = ("na", why)
    if b:
        res.notes.append(pool_hits(env, b))
    row_daemon = {"getinfo": a, "alloc-2m": a, "alloc-1g": a, "alloc-2m-pool": b, "alloc-1g-pool": b,
                  "acqmem": c, "acq2": c, "acq": c}
    for name, v in res.lat.items():
        if v[0] == "fail" and row_daemon.get(name):
            res.notes.append("%s failed; %s said last: %s" % (name, row_daemon[name].name,
                                                              row_daemon[name].last_error()))

    # --- daemon side: syscalls and CPU per request ---------------------------------------------
    kinds = [("getinfo", a, "getinfo,%s" % a.socket_path, 0),
             ("alloc-2m", a, "alloc,%s,2M" % a.socket_path, 2 * MiB),
             ("alloc-1g", a, "alloc,%s,1G" % a.socket_path, GiB)]
    if b:
        kinds += [("alloc-2m-pool", b, "alloc,%s,2M" % b.socket_path, 2 * MiB),
                  ("alloc-1g-pool", b, "alloc,%s,1G" % b.socket_path, GiB)]
    if c:
        kinds += [("acqmem", c, "acqmem,%s,%s,2M" % (c.socket_path, DEV_ONE_CALL), 2 * MiB),
                  ("acq2", c, "acq2,%s,%s,2M" % (c.socket_path, DEV_TWO_CALLS), 2 * MiB),
                  ("acq", c, "acq,%s,%s" % (c.socket_path, DEV_ONE_CALL), 0)]
    for name, d, spec, size in kinds:
        if res.lat.get(name, ("na",))[0] != "ok":
            continue
        # 1 GiB: a tenth (each is ~50 ms of zeroing); devices: a quarter (the mock grows, above)
        n = max(3, args.batch // 10) if size >= GiB else \
            max(3, args.batch // 4) if name.startswith("acq") else args.batch
        side = res.side.setdefault(name, {})
        side["cpu"] = measure_cpu(helper, env, d, spec, n, size)
        if args.no_strace:
            side["syscalls_na"] = "--no-strace"
        elif not shutil.which("strace"):
            side["syscalls_na"] = "strace not installed"
        else:
            side["syscalls"], busy, idle = measure_syscalls(helper, env, d, spec, n, size, env.tmp, name, True)
            side["strace_raw"] = (busy, idle, n)
            side["syscalls_main"], _, _ = measure_syscalls(helper, env, d, spec, n, size, env.tmp,
                                                           name + "-main", False)
        log("%s: %d requests a batch, CPU %.0f us/request, syscalls %s" % (
            name, n, side["cpu"]["sched_us"],
            "%.1f (main thread %.1f)" % (side["syscalls"], side["syscalls_main"]) if "syscalls" in side else "n/a"))

    time.sleep(1.0)
    rss_after = {d.name: status_kib(d.pid) for d in daemons}
    for d in list(daemons):
        d.stop()
        daemons.remove(d)

    # --- callgrind: instructions per request ---------------------------------------------------
    if args.no_callgrind:
        res.notes.append("instructions per request: not measured (--no-callgrind)")
    elif not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        res.notes.append("instructions per request: n/a, valgrind/callgrind_control not installed")
    else:
        measure_callgrind(env, helper, res, kinds_by_daemon={
            "a": [k for k in kinds if k[1] is a],
            "b": [k for k in kinds if k[1] is b] if b else [],
            "c": [k for k in kinds if k[1] is c] if c else []},
            pool_in_c=bool(c and c.pool), daemons=daemons)

    report(res, rss_start, rss_after, a, b, c, time.monotonic() - t_start)
    return check_complete(res)


def pool_hits(env, b):
    """How many of daemon B's grants so far (the latency phases) came from the pool, by its
    audit records (the pool marks MEMORY_GRANTED with NOIOMMUD_POOL=1)."""
    if "MEMORY_GRANTED" not in harness.MSGID:
        return "pool hits: no MEMORY_GRANTED message id"
    grants = [e for e in env.journal.find(harness.MSGID["MEMORY_GRANTED"])
              if e.get("_PID") == str(b.pid)]
    pooled = [e for e in grants if e.get("NOIOMMUD_POOL") == "1"]
    return ("daemon B's MEMORY_GRANTED records with NOIOMMUD_POOL=1: %d of %d in the latency phases "
            "(a grant finding its pool entry not yet refilled takes the normal path)"
            % (len(pooled), len(grants)))


def measure_callgrind(env, helper, res, kinds_by_daemon, pool_in_c, daemons):
    cg_tmp = os.path.join(env.tmp, "callgrind")
    os.makedirs(cg_tmp, exist_ok=True)
    wrapper = ["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/callgrind.%%p.out" % cg_tmp,
               "--dump-line=no", "--compress-strings=no"]
    configs = {"a": ({}, False, False), "b": ({}, False, True),
               "c": (device_harness.DEFAULT_CONFIG, True, pool_in_c)}
    for key, kinds in kinds_by_daemon.items():
        kinds = [k for k in kinds if res.lat.get(k[0], ("na",))[0] == "ok"]
        if not kinds:
            continue
        config, mock, with_pool = configs[key]
        name = "callgrind-" + key
        if with_pool:
            d, why = start_pool_daemon(env, name, config, mock=mock, wrapper=wrapper, timeout=300)
        else:
            d = Daemon(env, name, config, mock=mock, wrapper=wrapper)
            why = d.error
        if why or d is None:
            for k in kinds:
                res.side.setdefault(k[0], {})["ir_na"] = "under callgrind: %s" % why
            continue
        daemons.append(d)
        for kname, _, spec, size in kinds:
            spec = spec.replace("daemon-%s.sock" % key, name + ".sock")
            n = max(2, args.callgrind_batch // 10) if size >= GiB else args.callgrind_batch
            try:
                run_batch(helper, env, spec, 2)          # warm-up
                res.side.setdefault(kname, {})["ir"] = callgrind_ir(helper, env, d, spec, n, size, cg_tmp)
            except (AssertionError, subprocess.SubprocessError) as e:
                res.side.setdefault(kname, {})["ir_na"] = "under callgrind: %s" % str(e)[:200]
            s = res.side.get(kname, {})
            log("%s under callgrind: %s" % (kname, "%.0f Ir/request" % s["ir"] if "ir" in s else s.get("ir_na")))
        d.stop()
        daemons.remove(d)


LABELS = [
    ("floor", "transport floor: C server, connect+request+reply+fd+close"),
    ("peer", "peer: dbus-daemon connect + Hello + GetId"),
    ("polkit", "polkit CheckAuthorization alone (open bus connection)"),
    ("kernel-2m", "kernel 2 MiB: memfd + fallocate (prealloc+zero)"),
    ("direct-2m", "kernel 2 MiB: the daemon's full sequence, direct"),
    ("kernel-1g", "kernel 1 GiB: memfd + fallocate (prealloc+zero)"),
    ("direct-1g", "kernel 1 GiB: the daemon's full sequence, direct"),
    ("getinfo", "daemon: connect + GetInfo"),
    ("alloc-2m", "daemon: AllocateMemory 2 MiB, no pool"),
    ("alloc-2m-pool", "daemon: AllocateMemory 2 MiB, pool"),
    ("alloc-1g", "daemon: AllocateMemory 1 GiB, no pool"),
    ("alloc-1g-pool", "daemon: AllocateMemory 1 GiB, pool"),
    ("acqmem", "daemon: AcquireDevice with memory 2 MiB (1 call)"),
    ("acq2", "daemon: AcquireDevice + AllocateMemory(lease) 2 MiB"),
    ("acq", "daemon: AcquireDevice alone (the fixture's share)"),
]


def source_commit():
    """The commit BUILD's source tree is at, "+changes" if its tracked files differ from it."""
    if not BUILD_SOURCE:
        return "(unknown)"
    try:
        head = subprocess.run(["git", "-C", BUILD_SOURCE, "rev-parse", "--short", "HEAD"], check=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.decode().strip()
        dirty = subprocess.run(["git", "-C", BUILD_SOURCE, "diff", "--quiet", "HEAD", "--", "daemon", "client"],
                               stderr=subprocess.DEVNULL).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return "(not a git tree)"
    return head + (" + uncommitted changes in daemon/ or client/" if dirty else "")


def p50(res, name):
    v = res.lat.get(name)
    return v[1] if v and v[0] == "ok" else None


def report(res, rss_start, rss_after, a, b, c, elapsed):
    print()
    print("== fast path, one run: %s ==" % os.environ["NOIOMMUD_TEST_BINARY"])
    print("source %s at %s; polkit actions from %s" % (BUILD_SOURCE, source_commit(), harness.find_policy()))
    print("machine: %d CPUs, kernel %s; %s; iterations %d (1 GiB rows %d), batch %d, callgrind batch %d"
          % (os.cpu_count(), os.uname().release, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
             args.iterations, args.big_iterations, args.batch, args.callgrind_batch))
    print("daemons run with a service manager's notify socket (NOTIFY_SOCKET; the harness's thread "
          "takes FDSTORE=1 fds) and a journal socket present, as issue 10's figures were; "
          "real polkitd on a private bus")
    print("latency: connect to reply received (fds received, not mapped), interleaved per "
          "iteration; daemon side: syscalls (strace -c, every thread (-f) and the main thread alone, minus an idle baseline), CPU (all "
          "threads, /proc/PID/task/*/schedstat; utime+stime in brackets; main thread), Ir "
          "(callgrind, same config)")
    print()
    hdr = "%-54s %9s %9s | %15s | %20s %9s | %9s" % ("row", "p50 us", "p99 us", "syscalls all/main",
                                                     "CPU us (utime+stime)", "main us", "Ir/req")
    print(hdr)
    print("-" * len(hdr))
    for name, label in LABELS:
        v = res.lat.get(name)
        if v is None:
            continue
        if v[0] != "ok":
            print("%-54s %s" % (label, ("n/a: " if v[0] == "na" else "FAILED: ") + v[1]))
            continue
        s = res.side.get(name, {})
        if "syscalls" in s:
            sc = "%7.1f/%-7.1f" % (s["syscalls"], s["syscalls_main"])
        elif name in ("floor", "peer", "polkit") or name.startswith(("kernel", "direct")):
            sc = "%15s" % "-"
        else:
            sc = "%15s" % "n/a"
        cpu = s.get("cpu")
        cpus = ("%9.1f (%8.1f)" % (cpu["sched_us"], cpu["ticks_us"])) if cpu else "%20s" % "-"
        main_us = ("%9.1f" % cpu["main_us"]) if cpu else "%9s" % "-"
        if "ir" in s:
            ir = "%9.0f" % s["ir"]
        elif "ir_na" in s:
            ir = "%9s" % "n/a"
        else:
            ir = "%9s" % "-"
        print("%-54s %9.1f %9.1f | %s | %20s %s | %s" % (label, v[1], v[2], sc, cpus, main_us, ir))
    for name, s in res.side.items():
        for k in ("syscalls_na", "ir_na"):
            if k in s:
                print("  %s %s: n/a: %s" % (name, "syscalls" if k == "syscalls_na" else "Ir", s[k]))
    print()
    print("daemon RSS, idle at start -> after the runs (goal after load <= 4096 KiB):")
    for d in (a, b, c):
        if d and d.name in rss_start:
            print("  %-10s %6d KiB -> %6d KiB%s" % (
                d.name, rss_start[d.name], rss_after.get(d.name, -1),
                "   (includes the vfio mock, which runs inside the daemon)" if d.mock else ""))
    for n in res.notes:
        print("note: " + n)
    print()
    print("issue 10's checks (p50 unless said):")

    def check(label, value, goal, fmt, ok):
        if value is None:
            print("  %-62s n/a" % label)
        else:
            print("  %-62s %s   (goal %s) %s" % (label, fmt % value, goal, MARK_GOAL[ok]))

    for name, what in (("alloc-2m", "no pool"), ("alloc-2m-pool", "pool")):
        s = res.side.get(name, {})
        sc = s.get("syscalls")
        check("daemon syscalls per AllocateMemory 2 MiB, %s, all threads" % what, sc, "<= 60", "%.1f",
              None if sc is None else sc <= 60)
        sc = s.get("syscalls_main")
        check("  ... main thread only (the pool's refill excluded)", sc, "<= 60", "%.1f",
              None if sc is None else sc <= 60)
        cpu = s.get("cpu", {}).get("sched_us")
        check("daemon CPU per AllocateMemory 2 MiB, %s (us)" % what, cpu, "<= 250", "%.0f",
              None if cpu is None else cpu <= 250)
    pk, fl = p50(res, "polkit"), p50(res, "floor")
    for name, goal, lim in (("alloc-1g-pool", "<= 2000", 2000), ("alloc-2m-pool", "<= 100", 100),
                            ("alloc-2m", "<= 100", 100)):
        v = p50(res, name)
        work = v - pk if v is not None and pk is not None else None
        check("%s: round trip - polkit (us)" % name, work, goal, "%.0f", None if work is None else work <= lim)
        if work is not None and fl is not None:
            print("  %-62s %.0f" % ("  ... and - transport floor as well (us)", work - fl))
    acq, di = p50(res, "acqmem"), p50(res, "direct-2m")
    if acq is not None and None not in (pk, di, fl):
        base = pk + di + fl
        check("AcquireDevice+memory / (polkit + kernel seq. 2 MiB + floor)", acq / base, "<= 1.20",
              "%.2fx", acq / base <= 1.2)
        print("  %-62s %.0f + %.0f + %.0f = %.0f us; one call %.0f us" % ("  ... that is", pk, di, fl, base, acq))
    else:
        check("AcquireDevice+memory / (polkit + kernel seq. 2 MiB + floor)", None, "<= 1.20", "", None)
    ad = p50(res, "acq")
    if acq is not None and ad is not None and None not in (pk, di):
        print("  %-62s %.2fx" % ("  ... with AcquireDevice alone added to the sum (vfio mock's cost)",
                                 acq / (pk + di + ad)))
    a2 = p50(res, "acq2")
    if acq is not None and a2 is not None:
        print("  %-62s %.2fx" % ("one call / two calls (AcquireDevice + AllocateMemory)", acq / a2))
    gi = p50(res, "getinfo")
    if gi is not None and fl is not None:
        print("  %-62s %.2fx  (%.0f / %.0f us)" % ("daemon GetInfo / transport floor", gi / fl, gi, fl))
    pe = p50(res, "peer")
    if gi is not None and pe is not None:
        print("  %-62s %.2fx" % ("daemon GetInfo / dbus-daemon connect+Hello+GetId", gi / pe))
    for name, k in (("alloc-1g", "direct-1g"), ("alloc-1g", "kernel-1g")):
        v, w = p50(res, name), p50(res, k)
        if v is not None and w is not None:
            print("  %-62s %.2fx" % ("%s / %s" % (name, k), v / w))
    print("run took %.0f s (after the integration lock was taken)" % elapsed)


def check_complete(res):
    """Every row has a number or an n/a reason; a row that failed after its warm-up fails the run."""
    bad = []
    for name, _ in LABELS:
        v = res.lat.get(name)
        if v is None:
            bad.append("%s: no result" % name)
        elif v[0] == "fail":
            bad.append("%s: %s" % (name, v[1]))
        elif v[0] == "na" and not v[1].strip():
            bad.append("%s: n/a without a reason" % name)
        elif v[0] == "ok":
            s = res.side.get(name, {})
            if name in ("getinfo",) or name.startswith(("alloc", "acq")):
                if "cpu" not in s:
                    bad.append("%s: no CPU figure" % name)
                if "syscalls" not in s and not s.get("syscalls_na"):
                    bad.append("%s: no syscall figure or reason" % name)
                if not args.no_callgrind and "ir" not in s and not s.get("ir_na"):
                    bad.append("%s: no instruction count or reason" % name)
    if bad:
        print("FAIL: incomplete results:\n  " + "\n  ".join(bad), flush=True)
        return 1
    print("PASS: every row has a number or an n/a reason" if args.smoke else "done", flush=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except harness.Skip as e:
        print("SKIP: %s" % e, flush=True)
        sys.exit(77)
