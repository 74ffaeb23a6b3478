#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""On-demand benchmark of AllocateMemory (issue 2's figures), run as root:

    /usr/bin/python3 tests/bench/run-bench.py [BUILD_DIR]

Sets up the same private world as the integration tests (private system bus, the real polkitd
with the project's action file, the built daemon), adds a rule that lets root allocate, and
runs tests/bench/bench-alloc for 2 MiB and 1 GiB. bench-alloc interleaves four measurements per
iteration (daemon round trip, polkit alone, kernel prealloc+zero, the daemon's kernel calls
made directly) so that drift hits all of them alike, and prints medians, p99 and ratios.
Also prints the daemon's idle RSS before and after the runs.
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(os.path.dirname(HERE))
build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(SOURCE_ROOT, "build"))
os.environ.setdefault("NOIOMMU_SOURCE_ROOT", SOURCE_ROOT)
os.environ.setdefault("NOIOMMU_BUILD_ROOT", build)
os.environ.setdefault("NOIOMMUD_TEST_BINARY", os.path.join(build, "daemon", "noiommud"))
os.environ.setdefault("NOIOMMUCTL_TEST_BINARY", os.path.join(build, "client", "lib", "noiommuctl"))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
import harness  # noqa: E402

BENCH = os.path.join(build, "tests", "bench", "bench-alloc")
ROOT_RULE = """\
// Benchmark only: root may allocate, so that bench-alloc can also ask polkit directly.
polkit.addRule(function(action, subject) {
        if (action.id == "io.noiommud.allocate-memory" && subject.user == "root")
                return polkit.Result.YES;
});
"""


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def main():
    # systemd raises net.unix.max_dgram_qlen to 512 at boot; a machine without systemd keeps the
    # kernel's 10, and the daemon's journal datagrams would then wait for the test's journal
    # reader. Measure under the production value, and restore it afterwards.
    qlen_path = "/proc/sys/net/unix/max_dgram_qlen"
    with open(qlen_path) as f:
        qlen = f.read().strip()
    with open(qlen_path, "w") as f:
        f.write("512")
    try:
        return run()
    finally:
        with open(qlen_path, "w") as f:
            f.write(qlen)


def run():
    with harness.Environment(hugepages=600, name="bench") as env:
        path = os.path.join(env.tmp, "rules", "40-bench-root.rules")
        with open(path, "w") as f:
            f.write(ROOT_RULE)
        os.chmod(path, 0o644)
        time.sleep(1.0)                  # polkitd picks up new rules through inotify

        rss_idle = rss_kib(env.daemon_pid)
        lib = os.path.join(build, "client", "lib")
        runenv = dict(os.environ, LD_LIBRARY_PATH=lib)
        for size, n in (("2M", 300), ("1G", 15)):
            subprocess.run([BENCH, env.socket_path, size, "3"], env=runenv, check=True,
                           stdout=subprocess.DEVNULL)            # warm-up
            subprocess.run([BENCH, env.socket_path, size, str(n)], env=runenv, check=True)
        rss_after = rss_kib(env.daemon_pid)
        print("daemon RSS: idle at start %d KiB, idle after the runs %d KiB (goal <= 4096 KiB)"
              % (rss_idle, rss_after))
        print("machine: %d CPUs, kernel %s" % (os.cpu_count(), os.uname().release))


if __name__ == "__main__":
    sys.exit(main())
