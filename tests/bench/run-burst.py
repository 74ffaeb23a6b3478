#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""On-demand burst benchmark (issue 10: no O(n²) bursts, memory back after load), run as root:

    /usr/bin/python3 tests/bench/run-burst.py [BUILD_DIR] [--sizes 1000,2000,4000,8000,10000]
                                              [--rounds 3] [--samples 300]

In the integration tests' private world (private system bus, the real polkitd, the built daemon),
on one daemon:

  1. unloaded: a legitimate client (uid 1, allowed by the test rules) measures connect + GetInfo +
     close, and connect + AllocateMemory 2 MiB + mmap, --samples times each;
  2. for each N of --sizes, --rounds + 1 rounds of:
       a connect burst: N connections from uids 2, 3 and 65534 (three agent processes, started at
       the same instant), each sending one GetInfo at once and waiting for its reply; a connect()
       that finds the listen backlog full waits for room (a blocking connect) rather than failing;
       a close burst: all N closed at the same instant;
     the first round without the legitimate client, for the daemon's CPU (utime + stime from
     /proc/PID/stat) per connection of each burst; the other rounds with the legitimate client
     looping GetInfo (1 ms apart) through both bursts: the samples that started while a burst
     was being served (from its start until the agents had every reply, resp. until the
     daemon's fd count was back at rest) are its latency during the burst;
  3. the daemon's RSS at start, and after the close burst of each N (1.5 s after the fd count
     settled, past the daemon's heap trim 1 s after a close: what it gives back once idle).

Prints daemon CPU per connection and in total vs N (O(n) work shows as a flat per-connection
figure), legitimate p50/p99 unloaded vs during the bursts (goal: p99 within 2x of unloaded), and
RSS after the closes (goal <= 4 MiB). N is capped by the daemon's RLIMIT_NOFILE (two fds per
connection: socket and pidfd; raised towards the unit's 65536 as far as the hard limit allows)
and by 4096 per uid (NOIOMMU_CONNS_PER_UID_MAX), and the cap is printed.

Like the integration tests, the run holds /run/lock/noiommud-integration.lock (waiting for it).
"""
import argparse
import math
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("build", nargs="?", default=os.path.join(SOURCE_ROOT, "build"))
    p.add_argument("--sizes", default="1000,2000,4000,8000,10000",
                   help="burst sizes, comma-separated (default 1000,2000,4000,8000,10000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds with the legitimate client per size")
    p.add_argument("--samples", type=int, default=300, help="unloaded samples (default 300)")
    return p.parse_args()


args = parse_args()
build = os.path.abspath(args.build)
os.environ.setdefault("NOIOMMU_SOURCE_ROOT", SOURCE_ROOT)
os.environ.setdefault("NOIOMMU_BUILD_ROOT", build)
os.environ.setdefault("NOIOMMUD_TEST_BINARY", os.path.join(build, "daemon", "noiommud"))
os.environ.setdefault("NOIOMMUCTL_TEST_BINARY", os.path.join(build, "client", "lib", "noiommuctl"))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
import harness  # noqa: E402
from flood_agent import AgentProcess, proc_cpu_seconds  # noqa: E402

LEGIT_UID = harness.ALLOWED_UID
LOAD_UIDS = (2, 3, 65534)
PER_UID_MAX = 4096                      # NOIOMMU_CONNS_PER_UID_MAX (daemon/manager.h)
MiB = 1 << 20


class BurstEnvironment(harness.Environment):
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


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def n_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def settle(pid, target=None, quiet=0.3, timeout=60):
    """Waits until the fd count is target (if given) and has not changed for `quiet` s. Returns
    the time it first reached its final value."""
    deadline = time.monotonic() + timeout
    last, since = n_fds(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.01)
        n = n_fds(pid)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet and (target is None or n == target):
            break
    return since


def wait_fds(pid, done, timeout=120):
    """Polls the daemon's fd count until done(count); returns when it first was. The legitimate
    client's own connection (socket + pidfd) may come and go meanwhile, hence a predicate."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done(n_fds(pid)):
            return time.monotonic()
        # Listing 20,000 fds costs this process milliseconds of CPU, taken from the daemon and
        # the clients on a small machine: not too often.
        time.sleep(0.02)
    raise AssertionError("the daemon's fd count did not settle in %d s" % timeout)


def pct(samples, p):
    s = sorted(samples)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)] if s else float("nan")


def ms(x):
    return "%.2f" % (x * 1e3)


def main():
    sizes = [int(x) for x in args.sizes.split(",")]
    with BurstEnvironment(hugepages=16, name="bench-burst", daemon=False) as env:
        env.start_daemon()
        return run(env, sizes)


def run(env, sizes):
    def say(line=""):
        print(line, flush=True)

    pid = env.daemon_pid
    before = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (65536, max(65536, before[1])))
    except (PermissionError, ValueError):
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (before[1], before[1]))
    soft = resource.prlimit(pid, resource.RLIMIT_NOFILE)[0]
    say("noiommud burst benchmark (tests/bench/run-burst.py), %s" % time.strftime("%Y-%m-%d %H:%M:%S"))
    say("machine: %d CPUs, kernel %s; daemon %s (PID %d), RLIMIT_NOFILE %d" %
        (os.cpu_count(), os.uname().release, env.daemon_bin, pid, soft))
    time.sleep(0.5)
    base = n_fds(pid)
    # headroom: the legitimate client's connections, closed ones waiting for their teardown
    # batch while a burst is being served, and the daemon's transient fds (/proc reads)
    fit = min((soft - base - 1024) // 2, PER_UID_MAX * len(LOAD_UIDS))
    capped = [min(n, fit) for n in sizes]
    if capped != sizes:
        say("NOTE: sizes capped at %d: two daemon fds per connection under RLIMIT_NOFILE %d, and "
            "%d connections per uid over %d uids" % (fit, soft, PER_UID_MAX, len(LOAD_UIDS)))
    rss_start = rss_kib(pid)

    stop_path = "/tmp/noiommud-burst-%d.run" % os.getpid()     # the legitimate loop runs while it exists
    agents = []
    try:
        legit = AgentProcess(env.socket_path, LEGIT_UID, name="legit")
        agents.append(legit)
        load = [AgentProcess(env.socket_path, u, nofile=PER_UID_MAX + 512, name="burst-uid%d" % u)
                for u in LOAD_UIDS]
        agents += load

        # --- unloaded -----------------------------------------------------------------------
        legit.cmd("bench_getinfo", n=20)
        legit.cmd("bench_alloc", n=10, size=2 * MiB)
        unl = legit.cmd("bench_getinfo", n=args.samples, timeout=600)["samples"]
        r = legit.cmd("bench_alloc", n=args.samples, size=2 * MiB, timeout=600)
        if r["errors"]:
            raise AssertionError("AllocateMemory unloaded: %r" % r["errors"])
        unl_alloc = r["samples"]
        settle(pid, base)

        rows = []
        for n in capped:
            per = [n // len(load) + (1 if i < n % len(load) else 0) for i in range(len(load))]
            row = {"n": n, "open_cpu": None, "close_cpu": None, "during_open": [], "during_close": [],
                   "open_wall": [], "close_wall": []}
            for rnd in range(args.rounds + 1):
                with_legit = rnd > 0
                if with_legit:
                    with open(stop_path, "w"):
                        pass
                    legit.send("bench_getinfo", seconds=600, pause=0.001, while_exists=stop_path)
                    time.sleep(0.2)
                # connect burst
                cpu0, t0 = proc_cpu_seconds(pid), time.monotonic()
                for a, k in zip(load, per):
                    a.send("open", n=k, window=k, wait=60, block=True)
                res = [a.result(300) for a in load]
                t1 = time.monotonic()
                opened = sum(x["opened"] for x in res)
                if opened != n:
                    raise AssertionError("N=%d: %d opened: %r" % (n, opened, [x["refused"] for x in res]))
                wait_fds(pid, lambda k: k >= base + 2 * n)
                cpu1 = proc_cpu_seconds(pid)
                # request burst: every one of the N sends GetInfo at the same instant
                time.sleep(0.1)
                cpu4, t4 = proc_cpu_seconds(pid), time.monotonic()
                for a in load:
                    a.send("request_all", wait=60)
                res = [a.result(300) for a in load]
                t5, cpu5 = time.monotonic(), proc_cpu_seconds(pid)
                if sum(x["answered"] for x in res) != n:
                    raise AssertionError("N=%d: request burst: %r" % (n, res))
                # close burst
                cpu2, t2 = proc_cpu_seconds(pid), time.monotonic()
                for a in load:
                    a.send("close")
                for a in load:
                    a.result(300)
                t3 = wait_fds(pid, lambda k: k <= base + 2)
                cpu3 = proc_cpu_seconds(pid)
                if with_legit:
                    time.sleep(0.2)
                    os.unlink(stop_path)        # ends the legitimate client's loop
                if not with_legit:
                    row["open_cpu"], row["close_cpu"] = cpu1 - cpu0, cpu3 - cpu2
                    row["open_wall1"], row["close_wall1"] = t1 - t0, t3 - t2
                    row["req_cpu"], row["req_wall1"] = cpu5 - cpu4, t5 - t4
                    continue
                row.setdefault("during_req", [])
                row["open_wall"].append(t1 - t0)
                row["close_wall"].append(t3 - t2)
                lr = legit.result(60)
                for s, st in zip(lr["samples"], lr["starts"]):
                    if t0 <= st <= t1:
                        row["during_open"].append(s)
                    elif t2 <= st <= t3:
                        row["during_close"].append(s)
                    elif t4 <= st <= t5:
                        row["during_req"].append(s)
                if lr["errors"]:
                    raise AssertionError("legitimate GetInfo during the bursts: %r" % lr["errors"])
            settle(pid, base)
            time.sleep(1.5)             # NOIOMMU_TRIM_DELAY_USEC (1 s) and its accuracy (0.25 s)
            row["rss"] = rss_kib(pid)
            rows.append(row)
            say("N=%d done: open %.2f s CPU, close %.2f s CPU, RSS %d KiB" %
                (n, row["open_cpu"], row["close_cpu"], row["rss"]))
    finally:
        for a in agents:
            a.close()

    say()
    say("legitimate client (uid %d), unloaded, %d samples: GetInfo p50 %s ms p99 %s ms; "
        "AllocateMemory 2 MiB p50 %s ms p99 %s ms" % (LEGIT_UID, len(unl), ms(pct(unl, 50)), ms(pct(unl, 99)),
                                                     ms(pct(unl_alloc, 50)), ms(pct(unl_alloc, 99))))
    say()
    say("%6s | %9s %9s %7s | %9s %9s %7s | %s" % ("N", "open CPU", "us/conn", "wall", "close CPU", "us/conn",
                                                 "wall", "daemon CPU from /proc/PID/stat, round without the legitimate client"))
    for r in rows:
        n = r["n"]
        say("%6d | %8.3fs %9.1f %6.2fs | %8.3fs %9.1f %6.2fs |" %
            (n, r["open_cpu"], r["open_cpu"] * 1e6 / n, r["open_wall1"],
             r["close_cpu"], r["close_cpu"] * 1e6 / n, r["close_wall1"]))
    say()
    say("request burst (all N established connections send GetInfo at once):")
    for r in rows:
        d = r.get("during_req", [])
        say("%6d | daemon CPU %6.3fs = %5.1f us/request, %5.2fs wall | legitimate GetInfo during it: n=%d p50 %s "
            "p99 %s ms (%.1fx unloaded p99)" % (r["n"], r["req_cpu"], r["req_cpu"] * 1e6 / r["n"], r["req_wall1"],
                                               len(d), ms(pct(d, 50)), ms(pct(d, 99)), pct(d, 99) / pct(unl, 99)))
    say()
    say("%6s | %26s | %26s | %s" % ("N", "GetInfo during connect burst", "GetInfo during close burst",
                                    "p99 / unloaded p99 (goal <= 2)"))
    u99 = pct(unl, 99)
    for r in rows:
        o, c = r["during_open"], r["during_close"]
        say("%6d | n=%4d p50 %6s p99 %7s | n=%4d p50 %6s p99 %7s | open %.1fx, close %.1fx" %
            (r["n"], len(o), ms(pct(o, 50)), ms(pct(o, 99)), len(c), ms(pct(c, 50)), ms(pct(c, 99)),
             pct(o, 99) / u99, pct(c, 99) / u99))
    say("(ms; samples whose connect() started while a burst was served; bursts took %s s to "
        "connect and %s s to close, wall)" %
        ("/".join("%.2f" % (sum(r["open_wall"]) / max(1, len(r["open_wall"]))) for r in rows),
         "/".join("%.2f" % (sum(r["close_wall"]) / max(1, len(r["close_wall"]))) for r in rows)))
    say()
    say("daemon RSS: %d KiB at start; after the close burst of N (1.5 s later): %s (goal <= 4096 KiB)" %
        (rss_start, ", ".join("%d: %d KiB" % (r["n"], r["rss"]) for r in rows)))
    return 0



if __name__ == "__main__":
    sys.exit(main())
