#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""On-demand benchmark for the question a DPDK user asks (issue 13, docs/dpdk.md): how long from
process start to a ready mbuf pool on 1 GiB of DMA memory,

  root   DPDK as root on its own hugepages in physical-address mode, as deployed today:
         noiommu-dpdk-extmem --own-hugepages -- --huge-dir <private hugetlbfs mount>
         (EAL: --in-memory --iova-mode=pa --no-pci --no-telemetry -l 0; the EAL allocates and
         faults its hugepages and reads their physical addresses from pagemap itself)
  noiommud  DPDK as the unprivileged allowed user on noiommud's memory:
         setpriv --reuid=1 ... noiommu-dpdk-extmem --socket S
         (AllocateMemory through polkit, the daemon's preallocation, pin and pagemap, then EAL
         --no-huge --no-pci --no-shconf and the external heap)

Both build the same pool (noiommu-dpdk-extmem's pool_fill() for the same size and page size,
RTE_MBUF_DEFAULT_BUF_SIZE buffers, cache 256) and check every mbuf afterwards; only the time to
the "ready" line counts, measured here from just before fork/exec to the line's arrival, so
the Python and setpriv overheads are in both. Rounds alternate root and noiommud, so drift hits
both alike. Run as root:

    /usr/bin/python3 tests/bench/run-dpdk-bench.py [BUILD_DIR] [--runs N] [--size SIZE_MIB]

Sets up the private world of the integration tests (tests/integration/harness.py: private bus,
real polkitd, the built daemon, the integration lock, hugepages reserved and restored) and a
private hugetlbfs mount for root DPDK, unmounted at the end.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build", nargs="?", default=os.path.join(SOURCE_ROOT, "build"))
    ap.add_argument("--runs", type=int, default=7, help="rounds (each: one root run, one noiommud run)")
    ap.add_argument("--size", type=int, default=1024, help="DMA memory in MiB (default 1024)")
    return ap.parse_args()


args = parse_args()
build = os.path.abspath(args.build)
os.environ.setdefault("NOIOMMU_SOURCE_ROOT", SOURCE_ROOT)
os.environ.setdefault("NOIOMMU_BUILD_ROOT", build)
os.environ.setdefault("NOIOMMUD_TEST_BINARY", os.path.join(build, "daemon", "noiommud"))
os.environ.setdefault("NOIOMMUCTL_TEST_BINARY", os.path.join(build, "client", "lib", "noiommuctl"))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
import harness as H  # noqa: E402

EXAMPLE = os.path.join(build, "examples", "dpdk-extmem", "noiommu-dpdk-extmem")
PAGE = 2 << 20


def one_run(env, argv, what):
    """(ms to the ready line, the ready line, the result line) of one run."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env.env, cwd="/", preexec_fn=H._pdeathsig)
    try:
        line = H.readline_timeout(p.stdout, 120)
        ms = (time.monotonic() - t0) * 1000
        if not line:
            raise AssertionError("%s printed nothing" % what)
        ready = json.loads(line)
        result = json.loads(H.readline_timeout(p.stdout, 120))
        rc = p.wait(120)
    except BaseException:
        p.kill()
        p.wait()
        raise AssertionError("%s failed; stderr:\n%s" % (what, p.stderr.read().decode(errors="replace")))
    err = p.stderr.read().decode(errors="replace")
    if rc != 0 or result.get("bad") != 0 or result["checked"] != result["mbufs"]:
        raise AssertionError("%s: %s, result %r\n%s" % (what, H.describe_status(rc),
                                                        {k: result.get(k) for k in ("mbufs", "checked", "bad")},
                                                        err))
    return ms, ready, result


def main():
    H.require(os.geteuid() == 0, "the benchmark runs DPDK as root for the baseline")
    H.require(os.access(EXAMPLE, os.X_OK), "%s not built (libdpdk-dev missing at meson setup?)" % EXAMPLE)
    size = args.size << 20
    pages = size // PAGE
    # both at once never happens (rounds are sequential), but the root run's EAL takes a few
    # pages beyond the pool for its own heap, and the daemon's pages come back asynchronously
    with H.Environment(hugepages=2 * pages + 64) as env:
        hugedir = tempfile.mkdtemp(prefix="dpdk-bench-huge-", dir=env.tmp)
        subprocess.run(["mount", "-t", "hugetlbfs", "-o", "pagesize=2M,mode=0700", "nodev", hugedir], check=True)
        try:
            root_argv = [EXAMPLE, "--own-hugepages", "--json", "--sample", "0", "--memory", "%dM" % args.size,
                         "--", "--huge-dir", hugedir]
            user_argv = ["setpriv", "--reuid=%d" % H.ALLOWED_UID, "--regid=%d" % H.ALLOWED_UID,
                         "--clear-groups", EXAMPLE, "--socket", env.socket_path, "--json", "--sample", "0",
                         "--memory", "%dM" % args.size]
            # one warm-up of each: page cache for DPDK's ~100 shared objects, the daemon's polkit
            # connection; not counted
            one_run(env, root_argv, "root warm-up")
            one_run(env, user_argv, "noiommud warm-up")
            rows = {"root": [], "noiommud": []}
            mbufs = {}
            for i in range(args.runs):
                for name, argv in (("root", root_argv), ("noiommud", user_argv)):
                    free = H.hugepages_free()
                    ms, ready, result = one_run(env, argv, "%s run %d" % (name, i))
                    rows[name].append((ms, ready["ms"]))
                    mbufs[name] = result["mbufs"]
                    # the next run starts with every page back in the pool
                    H.wait_until(lambda: H.hugepages_free() == free, 30,
                                 "HugePages_Free back to %d after the %s run" % (free, name))
        finally:
            subprocess.run(["umount", hugedir], check=False)
            os.rmdir(hugedir)

    print("DPDK %s, %d MiB of 2 MiB pages, mbuf pool of %d (root) / %d (noiommud) mbufs, %d rounds"
          % (result["version"].split()[-1], args.size, mbufs["root"], mbufs["noiommud"], args.runs))
    print("process start -> ready mbuf pool, ms (median; min-max); the program's own split (median):")
    print("  %-9s %8s %17s   %8s %8s %8s %8s" % ("", "total", "min-max", "memory", "EAL", "heap", "pool"))
    med = {}
    for name in ("root", "noiommud"):
        t = [r[0] for r in rows[name]]
        med[name] = statistics.median(t)
        split = {k: statistics.median(r[1][k] for r in rows[name]) for k in ("memory", "eal", "heap", "pool")}
        print("  %-9s %8.1f %8.1f-%-8.1f   %8.1f %8.1f %8.1f %8.1f" % (
            name, med[name], min(t), max(t), split["memory"], split["eal"], split["heap"], split["pool"]))
    print("  runs: root %s" % " ".join("%.0f" % r[0] for r in rows["root"]))
    print("        noiommud %s" % " ".join("%.0f" % r[0] for r in rows["noiommud"]))
    print("ratio noiommud / root: %.2f" % (med["noiommud"] / med["root"]))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except H.Skip as e:
        print("SKIP: %s" % e)
        sys.exit(H.EXIT_SKIP)
