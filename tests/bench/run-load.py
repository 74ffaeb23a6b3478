#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""On-demand load benchmark (security.md §4.3, §7.1, §7.2, §10 row 10), run as root:

    /usr/bin/python3 tests/bench/run-load.py [BUILD_DIR] [--idle N] [--samples N] ...

In one run, in the integration tests' private world (private system bus, the real polkitd, the
built daemon; device_harness.py for the vfio fixture backend), two phases, each on a fresh daemon:

  * the daemon alone: AllocateMemory of 2 MiB by a legitimate client (uid 1, allowed by the test
    rules), from connect() to the memfd mapped;
  * the daemon with the vfio fixture backend preloaded: AcquireDevice + ReleaseDevice, from
    connect() to the release's reply. AllocateMemory is not measured here: the fixture's close()
    hook fstat()s every entry of /proc/self/fd to tell whether a closed memfd was the last one,
    so under 20,000 daemon fds each memfd close costs the fixture ~50 ms, not the daemon.

Each phase measures --samples times (a new connection per sample):

  1. unloaded;
  2. then opens --idle idle connections spread over uids 2, 3 and 65534: each completes one
     GetInfo (the daemon closes a connection without a complete first request after 5 s) and
     then sits idle; the count is checked on the daemon's side in /proc/PID/fd (a socket and a
     pidfd per connection), and the daemon's RSS before and after gives the cost of an idle
     connection;
  3. adds, from the same three uids, slowloris clients (one byte of a request per second,
     reconnecting when cut off) and malformed clients (garbage, a message one byte over the
     64 KiB cap, a request with an fd in SCM_RIGHTS, 8 MiB without a NUL, in turn; each
     reconnects as soon as it is cut off);
  4. loaded: the same measurements again, while the idle connections stay open (the loaded
     phase fits well inside the daemon's 60 s idle timeout; the agents would also re-arm any
     connection idle for 45 s with another GetInfo, and report it);
  5. unloaded again once the load is gone (a control for drift), after checking that the
     daemon's fd count is back at its resting value;

and prints p50/p99 unloaded vs loaded and the p99 ratio (goal <= 2), RSS per idle connection
(goal <= 4 KiB), the daemon's CPU time (utime + stime from /proc/PID/stat) over the load window
as % of one core, and how the slowloris and malformed clients were cut off.

The load comes from separate processes (tests/integration/flood_agent.py, one per uid and role,
each running as its uid with RLIMIT_NOFILE raised), and the legitimate client is one more, so no
Python GIL sits between the load and the timings. The daemon needs two fds per connection: its
RLIMIT_NOFILE is raised as far as the machine allows (the unit sets LimitNOFILE=65536); if even
the hard limit is too low for --idle, the idle count is lowered and the reason printed.

Like the integration tests, the run holds /run/lock/noiommud-integration.lock (it waits for it
as long as it takes; other engineers' tests may be running).
"""
import argparse
import math
import os
import resource
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("build", nargs="?", default=os.path.join(SOURCE_ROOT, "build"))
    p.add_argument("--idle", type=int, default=10000, help="idle connections (default 10000)")
    p.add_argument("--samples", type=int, default=300,
                   help="samples per measurement and phase (default 300; at least 200)")
    p.add_argument("--slowloris", type=int, default=10, help="slowloris clients per uid (default 10)")
    p.add_argument("--malformed", type=int, default=2, help="malformed clients per uid (default 2)")
    p.add_argument("--malformed-interval", type=float, default=0.0,
                   help="pause of a malformed client between cut-off and reconnect (default 0)")
    p.add_argument("--ramp", type=float, default=3.0,
                   help="seconds of load (and of the load-only CPU window) before measuring")
    return p.parse_args()


args = parse_args()
build = os.path.abspath(args.build)
os.environ.setdefault("NOIOMMU_SOURCE_ROOT", SOURCE_ROOT)
os.environ.setdefault("NOIOMMU_BUILD_ROOT", build)
os.environ.setdefault("NOIOMMUD_TEST_BINARY", os.path.join(build, "daemon", "noiommud"))
os.environ.setdefault("NOIOMMUCTL_TEST_BINARY", os.path.join(build, "client", "lib", "noiommuctl"))
os.environ.setdefault("NOIOMMU_MOCK_LIB", os.path.join(build, "tests", "mock", "libvfio-mock.so"))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
import harness  # noqa: E402
import device_harness  # noqa: E402
from flood_agent import AgentProcess, proc_cpu_seconds  # noqa: E402

LEGIT_UID = harness.ALLOWED_UID
LOAD_UIDS = (2, 3, 65534)
DEVICE = device_harness.GROUP_DEV
MiB = 1 << 20


class LoadEnvironment(device_harness.DeviceEnvironment):
    """Waits for the integration lock as long as it takes instead of failing after 90 s."""

    def _lock(self):
        import fcntl
        os.makedirs(os.path.dirname(self.LOCK_PATH), exist_ok=True)
        self.lock_fd = os.open(self.LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("# waiting for %s (another test is running)" % self.LOCK_PATH, flush=True)
            t0 = time.monotonic()
            fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
            print("# got the lock after %.0f s" % (time.monotonic() - t0), flush=True)


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def slab_kib():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1])
    return -1


def fd_kinds(pid):
    """(sockets, pidfds, total) in /proc/PID/fd."""
    sockets = pidfds = total = 0
    d = "/proc/%d/fd" % pid
    for n in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, n))
        except OSError:
            continue
        total += 1
        if t.startswith("socket:"):
            sockets += 1
        elif "pidfd" in t:
            pidfds += 1
    return sockets, pidfds, total


def pct(samples, p):
    s = sorted(samples)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def ms(x):
    return "%.2f" % (x * 1e3)


def settle(pid, seconds=0.5, timeout=20):
    """Waits until the daemon's fd count has not changed for `seconds`."""
    deadline = time.monotonic() + timeout
    last, since = fd_kinds(pid)[2], time.monotonic()
    while time.monotonic() - since < seconds and time.monotonic() < deadline:
        time.sleep(0.05)
        n = fd_kinds(pid)[2]
        if n != last:
            last, since = n, time.monotonic()
    return last


def run_samples(legit, what, n, label):
    if what == "alloc":
        r = legit.cmd("bench_alloc", n=n, size=2 * MiB, timeout=1200)
    else:
        r = legit.cmd("bench_device", n=n, device=DEVICE, timeout=1200)
    if r["errors"] or len(r["samples"]) != n:
        raise AssertionError("%s %s: %d samples, errors %r" % (label, what, len(r["samples"]), r["errors"]))
    return r["samples"]


def raise_fd_limit(pid):
    """As far as the machine allows towards the unit's LimitNOFILE=65536. Returns
    ((soft, hard) before, (soft, hard) now)."""
    before = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (65536, max(65536, before[1])))
    except (PermissionError, ValueError):
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (before[1], before[1]))
    return before, resource.prlimit(pid, resource.RLIMIT_NOFILE)


def phase(env, label, measures):
    """One daemon: `measures` (kinds of samples) unloaded, under load, and unloaded again after
    the load is gone (a control for drift). Returns a dict of results."""
    pid = env.daemon_pid
    res = {"label": label, "pid": pid, "lat": {}}
    res["limit_before"], (soft, hard) = raise_fd_limit(pid)
    res["limit"] = (soft, hard)
    base_fds = settle(pid)
    res["base_fds"] = base_fds
    attack_conns = len(LOAD_UIDS) * (args.slowloris + args.malformed)
    # two fds per connection; headroom for the attack clients, the legitimate client's
    # connection, memfd and device fds, and the daemon's own transient fds
    fit = (soft - base_fds - 2 * attack_conns - 64) // 2
    n_idle = res["n_idle"] = min(args.idle, fit)
    per_uid = res["per_uid"] = [n_idle // len(LOAD_UIDS) + (1 if i < n_idle % len(LOAD_UIDS) else 0)
                                for i in range(len(LOAD_UIDS))]
    agents = []
    try:
        legit = AgentProcess(env.socket_path, LEGIT_UID, name="legit")
        agents.append(legit)

        # --- unloaded -------------------------------------------------------------------
        for what in measures:
            run_samples(legit, what, 10, "warm-up")
        t0, cpu0 = time.monotonic(), proc_cpu_seconds(pid)
        for what in measures:
            res["lat"][what] = {"unloaded": run_samples(legit, what, args.samples, "unloaded")}
        res["cpu_unloaded"] = (proc_cpu_seconds(pid) - cpu0, time.monotonic() - t0)

        # --- idle connections -----------------------------------------------------------
        settle(pid)
        time.sleep(0.5)
        rss0, anon0, slab0 = status_kib(pid, "VmRSS"), status_kib(pid, "RssAnon"), slab_kib()
        sock0, pidfd0, fds0 = fd_kinds(pid)
        idle_agents = []
        t_open = time.monotonic()
        for uid, n in zip(LOAD_UIDS, per_uid):
            a = AgentProcess(env.socket_path, uid, nofile=n + 512, name="idle-uid%d" % uid)
            agents.append(a)
            idle_agents.append(a)
            a.cmd("rearm_after", seconds=45)
            r = a.cmd("open", n=n, window=256, wait=30, timeout=300)
            if r["opened"] != n:
                raise AssertionError("uid %d: %d of %d idle connections opened: %r" % (uid, r["opened"], n, r))
        res["open_seconds"] = time.monotonic() - t_open
        settle(pid)
        time.sleep(0.5)
        rss1, anon1, slab1 = status_kib(pid, "VmRSS"), status_kib(pid, "RssAnon"), slab_kib()
        sock1, pidfd1, fds1 = fd_kinds(pid)
        if sock1 - sock0 != n_idle:
            raise AssertionError("the daemon has %d more sockets, expected %d" % (sock1 - sock0, n_idle))
        res.update(rss=(rss0, rss1), anon=(anon0, anon1), slab=(slab0, slab1),
                   fds=(fds0, fds1), sockets=(sock0, sock1), pidfds=(pidfd0, pidfd1))

        # --- attack ---------------------------------------------------------------------
        attackers = []
        for uid in LOAD_UIDS:
            a = AgentProcess(env.socket_path, uid, nofile=1024, name="attack-uid%d" % uid)
            agents.append(a)
            attackers.append(a)
        gen_cpu0 = sum(a.cpu_seconds() for a in attackers + idle_agents)
        t_attack, cpu_a0 = time.monotonic(), proc_cpu_seconds(pid)
        for a in attackers:
            a.cmd("attack", slowloris=args.slowloris, malformed=args.malformed,
                  malformed_interval=args.malformed_interval)
        time.sleep(args.ramp)
        res["cpu_ramp"] = (proc_cpu_seconds(pid) - cpu_a0, time.monotonic() - t_attack)

        # --- loaded ---------------------------------------------------------------------
        t1, cpu1 = time.monotonic(), proc_cpu_seconds(pid)
        for what in measures:
            res["lat"][what]["loaded"] = run_samples(legit, what, args.samples, "loaded")
        res["cpu_loaded"] = (proc_cpu_seconds(pid) - cpu1, time.monotonic() - t1)
        res["cpu_window"] = (proc_cpu_seconds(pid) - cpu_a0, time.monotonic() - t_attack)
        res["gen_cpu"] = sum(a.cpu_seconds() for a in attackers + idle_agents) - gen_cpu0
        res["sockets_loaded"] = fd_kinds(pid)[0]
        idle_status = [a.cmd("status") for a in idle_agents]
        res["still_open"] = sum(s["open"] for s in idle_status)
        res["rearmed"] = sum(s["rearmed"] for s in idle_status)
        closed = {}
        for s in idle_status:
            for k, v in s["closed"].items():
                closed[k] = closed.get(k, 0) + v
        res["closed"] = closed
        res["idle_age"] = time.monotonic() - t_open
        res["attack"] = [a.cmd("stop_attack") for a in attackers]
        for a in idle_agents + attackers:
            a.close()
            agents.remove(a)

        # --- unloaded again ---------------------------------------------------------------
        t2 = time.monotonic()
        after = settle(pid, seconds=1.0, timeout=60)
        res["fds_after"] = (after, time.monotonic() - t2)
        for what in measures:
            res["lat"][what]["after"] = run_samples(legit, what, args.samples, "after the load")
    finally:
        for a in agents:
            a.close()
    return res


def report(say, r):
    pid, n_idle = r["pid"], r["n_idle"]
    say("== %s (daemon PID %d) ==" % (r["label"], pid))
    (s0, h0), (s1, h1) = r["limit_before"], r["limit"]
    say("RLIMIT_NOFILE %d/%d as started by the harness, %d/%d for the run (the unit sets "
        "LimitNOFILE=65536); %d fds at rest" % (s0, h0, s1, h1, r["base_fds"]))
    if n_idle < args.idle:
        say("NOTE: %d idle connections requested, but each costs the daemon 2 fds (socket + pidfd) "
            "and its hard RLIMIT_NOFILE %d cannot be raised here (prlimit: EPERM, no "
            "CAP_SYS_RESOURCE): using %d" % (args.idle, h1, n_idle))
    say()
    say("%-50s %8s %8s | %8s %8s | %8s %8s | %s" % ("latency, ms", "unl p50", "unl p99", "load p50",
                                                    "load p99", "aft p50", "aft p99",
                                                    "p99 load/unl (goal <= 2)"))
    names = {"alloc": "AllocateMemory 2 MiB, connect -> mapped",
             "device": "AcquireDevice+ReleaseDevice, connect -> released"}
    for what, lat in r["lat"].items():
        u, l, a = lat["unloaded"], lat["loaded"], lat["after"]
        ratio = pct(l, 99) / pct(u, 99)
        say("%-50s %8s %8s | %8s %8s | %8s %8s | %.2f %s"
            % (names[what], ms(pct(u, 50)), ms(pct(u, 99)), ms(pct(l, 50)), ms(pct(l, 99)),
               ms(pct(a, 50)), ms(pct(a, 99)), ratio, "ok" if ratio <= 2 else "OVER GOAL"))
        say("%-50s %8s %8s | %8s %8s | %8s %8s |" % ("  max", "", ms(max(u)), "", ms(max(l)), "", ms(max(a))))
    say("(unl = unloaded; load = %d idle connections + attack; aft = unloaded again after the load "
        "was removed; %d samples each, a new connection per sample)" % (n_idle, args.samples))
    say()
    rss0, rss1 = r["rss"]
    per_conn = (rss1 - rss0) * 1024 / n_idle
    say("idle connections: %d (uids %s: %s) opened in %.1f s; daemon /proc/%d/fd %d -> %d "
        "(+%d sockets, +%d pidfds)" % (n_idle, ", ".join(map(str, LOAD_UIDS)), "/".join(map(str, r["per_uid"])),
                                       r["open_seconds"], pid, r["fds"][0], r["fds"][1],
                                       r["sockets"][1] - r["sockets"][0], r["pidfds"][1] - r["pidfds"][0]))
    say("  at the end of the loaded phase (%.0f s after the first was opened): %d of %d still open, "
        "%d sockets in the daemon; closed by the daemon: %s; re-armed with GetInfo: %d"
        % (r["idle_age"], r["still_open"], n_idle, r["sockets_loaded"], r["closed"] or "none", r["rearmed"]))
    say("  after the load went away: daemon fds %d (at rest before: %d%s), settled in %.1f s"
        % (r["fds_after"][0], r["base_fds"], "" if r["fds_after"][0] == r["base_fds"] else ": LEAK?",
           r["fds_after"][1]))
    say("daemon RSS: %d KiB before the idle connections, %d KiB after: %.0f bytes per idle "
        "connection (goal <= 4096: %s); RssAnon %+d KiB"
        % (rss0, rss1, per_conn, "ok" if per_conn <= 4096 else "OVER GOAL", r["anon"][1] - r["anon"][0]))
    slab = r["slab"][1] - r["slab"][0]
    say("  kernel Slab, whole machine (both socket ends, pidfds, epoll items; not in any RSS): %+d KiB "
        "= %.0f bytes per connection" % (slab, slab * 1024 / n_idle))
    say("daemon CPU (utime+stime from /proc/%d/stat, %d Hz ticks):" % (pid, os.sysconf("SC_CLK_TCK")))
    for label, key in (("unloaded measurements", "cpu_unloaded"),
                       ("load only (%.0f s ramp, no legitimate client)" % args.ramp, "cpu_ramp"),
                       ("loaded measurements", "cpu_loaded"),
                       ("load window (ramp + loaded measurements)", "cpu_window")):
        cpu, wall = r[key]
        say("  %-48s %6.2f s over %5.1f s = %5.1f%% of one core" % (label, cpu, wall, 100 * cpu / wall))
    say("  load generators (idle + attack agents) in the load window: %.2f s = %.1f%% of one core"
        % (r["gen_cpu"], 100 * r["gen_cpu"] / r["cpu_window"][1]))
    window = r["cpu_window"][1]
    for kind in ("slowloris", "malformed"):
        outcomes, cut, lt, ltmax = {}, 0, [], 0.0
        for s in r["attack"]:
            k = s[kind]
            cut += k["cut_off"]
            for o, v in k["outcomes"].items():
                outcomes[o] = outcomes.get(o, 0) + v
            if k["lifetime_median"] is not None:
                lt.append(k["lifetime_median"])
                ltmax = max(ltmax, k["lifetime_max"])
        say("%s clients cut off by the daemon: %d in %.1f s (%.0f/s); connection lifetime median %s, max %s"
            % (kind, cut, window, cut / window,
               "%.3f s" % statistics.median(lt) if lt else "-", "%.3f s" % ltmax if lt else "-"))
        for o, v in sorted(outcomes.items(), key=lambda x: -x[1]):
            say("    %7d  %s" % (v, o))
    full = sum(s["backlog_full"] for s in r["attack"])
    if full:
        say("  (attack clients found the listen backlog full %d times)" % full)
    say()


def main():
    if args.samples < 200:
        raise SystemExit("--samples must be at least 200")
    qlen_path = "/proc/sys/net/unix/max_dgram_qlen"
    with LoadEnvironment(hugepages=16, name="bench-load", daemon=False) as env:
        # As run-bench.py: systemd raises max_dgram_qlen to 512 at boot; without systemd the
        # kernel's 10 would make the daemon's journal datagrams wait for the capture thread.
        with open(qlen_path) as f:
            qlen = f.read().strip()
        with open(qlen_path, "w") as f:
            f.write("512")
        try:
            return run(env)
        finally:
            with open(qlen_path, "w") as f:
                f.write(qlen)


def run(env):
    def say(line=""):
        print(line, flush=True)

    say("noiommud load benchmark (tests/bench/run-load.py), %s" % time.strftime("%Y-%m-%d %H:%M:%S"))
    say("machine: %d CPUs, kernel %s; daemon %s" % (os.cpu_count(), os.uname().release, env.daemon_bin))
    say("load: --idle %d idle connections over uids %s, each after one GetInfo; per uid %d slowloris "
        "clients and %d malformed clients (reconnecting %s); legitimate client: uid %d"
        % (args.idle, ", ".join(map(str, LOAD_UIDS)), args.slowloris, args.malformed,
           "at once" if not args.malformed_interval else "after %.3f s" % args.malformed_interval,
           LEGIT_UID))
    say()

    # 1. The daemon as installed: nothing preloaded. AllocateMemory, RSS, CPU.
    env.start_daemon()
    plain = phase(env, "the daemon alone: AllocateMemory", ["alloc"])
    env.stop_daemon()
    report(say, plain)

    # 2. The same daemon with the vfio fixture backend preloaded, for AcquireDevice. Not used for
    # AllocateMemory: the mock's close() hook looks for other fds of a closed memfd by fstat()ing
    # every entry of /proc/self/fd, so each memfd close costs O(daemon fds), ~50 ms at 20k fds.
    env.start_mock_daemon()
    mock = phase(env, "the daemon with the vfio fixture backend (LD_PRELOAD): AcquireDevice + "
                 "ReleaseDevice on %s (%s)" % (DEVICE, device_harness.BACKENDS[DEVICE]), ["device"])
    report(say, mock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
