#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`noiommuctl run --memory 2M -- CMD` inside a rootful container (issue 14): noiommuctl
allocates, then execs CMD (tests/containers/ctest-dma-user.c) with the connection and the memfd
inherited and described in the environment; CMD adopts them with noiommu_from_environment(),
writes a pattern into every page and reads it back. From the host: the process holding the
memory is CMD itself (the daemon's record names its host pid, whose /proc/PID/exe is CMD), its
mapping is at the physical addresses its segment table says (pagemap), the pattern is in that
memory (/proc/PID/mem), and the memory lives exactly as long as CMD."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import container_harness as C  # noqa: E402
import harness as H  # noqa: E402

PROGRAM = os.environ.get("NOIOMMU_CTEST_DMA_USER") or os.path.join(H.BUILD_ROOT, "tests", "containers",
                                                                    "ctest-dma-user")


def body():
    if not os.path.exists(PROGRAM):
        raise AssertionError("ctest-dma-user not built: %s" % PROGRAM)
    with C.ContainerEnvironment(hugepages=8, programs=[PROGRAM]) as env:
        env.write_cdi_spec()
        uid = env.ctest_pw.pw_uid
        container = env.rootful.start(user="%d:%d" % (uid, env.ctest_pw.pw_gid))

        with env.subtest("noiommuctl run --memory 2M -- ctest-dma-user: CMD adopts and uses the memory"):
            p = container.exec_popen(["noiommuctl", "run", "--memory", "2M", "--", "ctest-dma-user"])
            try:
                line = H.readline_timeout(p.stdout, 30)
            except AssertionError:
                p.kill()
                raise AssertionError("ctest-dma-user printed nothing; stderr: %r"
                                     % p.stderr.read().decode(errors="replace"))
            out = json.loads(line)
            assert len(out["memory"]) == 1, out
            m = out["memory"][0]
            assert m["size"] == 2 << 20, m
            H.check_segments(dict(m, hugepageSize=m["hugepageSize"]), m["size"])
            g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=m["id"])[0]
            hpid = int(g["NOIOMMUD_CLIENT_PID"])
            exe = os.readlink("/proc/%d/exe" % hpid)
            H.log("memory %s granted to host pid %d (pid %d in the container), now running %s"
                  % (m["id"], hpid, out["pid"], exe))
            assert os.path.basename(exe) == "ctest-dma-user", \
                "the memory's client (pid %d) is %s, not the CMD noiommuctl exec'd" % (hpid, exe)
            n = C.check_pagemap(hpid, {"memory": m["id"], "size": m["size"], "segments": m["segments"]})
            with open("/proc/%d/mem" % hpid, "rb", buffering=0) as f:
                word = int.from_bytes(os.pread(f.fileno(), 8, m["address"]), "little")
            assert word == m["pattern"], "the memory holds %#x, CMD wrote %#x" % (word, m["pattern"])
            H.log("%d pages at the reported physical addresses; CMD's pattern %#x read back from the host"
                  % (n, word))
            assert not env.find_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=m["id"]), \
                "the memory was freed while CMD runs"

        with env.subtest("the memory lives as long as CMD"):
            p.stdin.close()
            rc = p.wait(20)
            assert rc == 0, "ctest-dma-user exited %d: %s" % (rc, p.stderr.read().decode(errors="replace"))
            f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=m["id"])[0]
            assert f.get("NOIOMMUD_REASON") == "client-exit", f


if __name__ == "__main__":
    C.run(body)
