#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""On-demand benchmark of the pre-zeroed pool (issue 10), run as root:

    /usr/bin/python3 tests/bench/run-pool-bench.py [BUILD_DIR] [ITERATIONS_2M] [ITERATIONS_1G]

The same private world as the integration tests (private bus, real polkitd, the built daemon),
started twice: with "hugepagePool" entries for 2 MiB and for 1 GiB (of 2 MiB pages), and without
a pool. Per AllocateMemory on one open connection as an allowed uid it measures

  * daemon CPU: the run time of the daemon's main thread (the event loop) over the request, from
    /proc/PID/task/PID/schedstat (nanoseconds; the pool's worker thread is not in it, polkitd's
    time is not either): the daemon's own work on the critical path, polkit excluded;
  * round trip: the client's wall time for the call (polkit included).

With the pool, every iteration first waits until the pool is full again (ListLeases), so each
grant is a hand-over, and checks that the journal says NOIOMMUD_POOL=1. Prints p50 and p99.
"""
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(SOURCE_ROOT, "build"))
N_2M = int(sys.argv[2]) if len(sys.argv) > 2 else 200
N_1G = int(sys.argv[3]) if len(sys.argv) > 3 else 15
os.environ.setdefault("NOIOMMU_SOURCE_ROOT", SOURCE_ROOT)
os.environ.setdefault("NOIOMMU_BUILD_ROOT", build)
os.environ.setdefault("NOIOMMUD_TEST_BINARY", os.path.join(build, "daemon", "noiommud"))
os.environ.setdefault("NOIOMMUCTL_TEST_BINARY", os.path.join(build, "client", "lib", "noiommuctl"))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
import harness as H  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30
HP = 2 * MiB
LIST_LEASES = "io.noiommud.Broker.ListLeases"


def main_thread_ns(pid):
    with open("/proc/%d/task/%d/schedstat" % (pid, pid)) as f:
        return int(f.read().split()[0])


def pool_full(admin):
    reply, _ = admin.call_ok(LIST_LEASES, {})
    return all(e["ready"] == e["target"] for e in reply["pool"])


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def measure(env, size, n, pool):
    c = env.connect(uid=H.ALLOWED_UID)
    admin = env.connect(uid=H.ALLOWED_UID)
    cpu, wall, from_pool = [], [], 0
    for i in range(n + 2):                      # the first two are warm-up
        if pool:
            H.wait_until(lambda: pool_full(admin), 30, "the pool to refill", interval=0.005)
        else:
            time.sleep(0.005)
        a = main_thread_ns(env.daemon_pid)
        t0 = time.perf_counter_ns()
        r, fd = H.allocate(c, size)
        t1 = time.perf_counter_ns()
        b = main_thread_ns(env.daemon_pid)
        os.close(fd)
        c.call_ok(H.FREE, {"memory": r["memory"]})
        g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=r["memory"])
        if i < 2:
            continue
        from_pool += g[0].get("NOIOMMUD_POOL") == "1"
        cpu.append((b - a) / 1000.0)
        wall.append((t1 - t0) / 1000.0)
    c.close()
    admin.close()
    return cpu, wall, from_pool


def run(pool):
    tmp = tempfile.mkdtemp(prefix="pool-bench-")
    cfg = os.path.join(tmp, "noiommud.conf")
    with open(cfg, "w") as f:
        json.dump({"hugepagePool": [{"hugepageSize": HP, "size": HP, "count": 8},
                                    {"hugepageSize": HP, "size": GiB, "count": 1}]} if pool else {}, f)
    out = []
    try:
        with H.Environment(hugepages=1100, name="pool-bench", daemon_args=["--config", cfg]) as env:
            for label, size, n in (("2 MiB", HP, N_2M), ("1 GiB", GiB, N_1G)):
                cpu, wall, served = measure(env, size, n, pool)
                if pool:
                    assert served == n, "%d of %d grants came from the pool" % (served, n)
                out.append((label, pool, cpu, wall, served, n))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main():
    rows = run(pool=True) + run(pool=False)
    print("%-6s %-8s %14s %14s %14s %14s  %s" % ("size", "pool", "cpu p50 us", "cpu p99 us",
                                                "rtt p50 us", "rtt p99 us", "from pool"))
    for label, pool, cpu, wall, served, n in rows:
        print("%-6s %-8s %14.1f %14.1f %14.1f %14.1f  %d/%d" % (
            label, "yes" if pool else "no", statistics.median(cpu), pct(cpu, 99),
            statistics.median(wall), pct(wall, 99), served, n))
    print("machine: %d CPUs, kernel %s" % (os.cpu_count(), os.uname().release))
    return 0


if __name__ == "__main__":
    sys.exit(main())
