#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The container part of the main job: a podman walk-through as a new user would type it.

In a private world like demo.py's (private system bus, the real polkitd with the project's
action file and a rule that allows the container user, the built noiommud listening in a
directory of its own), as root:

  1. noiommuctl cdi generate --output /var/run/cdi/...   the CDI spec for the daemon's socket
  2. podman run --device noiommud.io/vfio=socket ...      a container with no -v and no privilege,
     noiommuctl alloc 2M as its non-root user; the host checks the client's pages against
     /proc/PID/pagemap
  3. noiommuctl run --memory 2M -- CMD                    inside the container: CMD adopts the
     memory and writes to it, the host reads the pattern back through the physical addresses'
     pages
  4. container root (uid 0 without a user namespace, no CAP_SYS_RAWIO/CAP_SYS_ADMIN) is refused
     before polkit is asked
  5. the daemon's audit records, which name the container podman reports

podman runs with private storage (--root/--runroot, vfs) and, on this kind of machine, with
`--runtime runc --ulimit ...` (see tests/containers/container_harness.py for why); the commands
shown are what a user types, the extra flags are listed once. Run as root; podman and runc come
from scripts/install-deps.sh.
"""
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(HERE)
build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(SOURCE_ROOT, "build"))
os.environ.setdefault("NOIOMMU_SOURCE_ROOT", SOURCE_ROOT)
os.environ.setdefault("NOIOMMU_BUILD_ROOT", build)
os.environ.setdefault("NOIOMMUD_TEST_BINARY", os.path.join(build, "daemon", "noiommud"))
os.environ.setdefault("NOIOMMUCTL_TEST_BINARY", os.path.join(build, "client", "lib", "noiommuctl"))
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "containers"))
import container_harness as C  # noqa: E402
import harness  # noqa: E402

CMD = os.path.join(build, "tests", "containers", "ctest-dma-user")


def step(text):
    print("\n\033[1m==> %s\033[0m" % text, flush=True)


def typed(cmd):
    print("$ %s" % cmd, flush=True)


def main():
    with C.ContainerEnvironment(hugepages=8, programs=[CMD]) as env:
        podman = env.rootful
        user = C.CTEST_USER
        step("noiommud (pid %d) serves %s; polkit allows the container user '%s'"
             % (env.daemon_pid, env.socket_path, user))
        print("(podman here also gets: %s, private --root/--runroot)" % " ".join(C.RUN_FLAGS))

        step("Write the CDI spec for the daemon's socket (as root, once per machine)")
        typed("noiommuctl cdi generate --output %s" % "/var/run/cdi/noiommud.json")
        spec = env.write_cdi_spec()
        print(json.dumps(spec, indent=2))

        step("A container with the socket device: no -v, no privilege, a non-root user")
        uid, gid = env.ctest_pw.pw_uid, env.ctest_pw.pw_gid
        typed("podman run -d --user %d:%d --device noiommud.io/vfio=socket --rootfs ROOTFS sleep 600"
              % (uid, gid))
        container = podman.start(user="%d:%d" % (uid, gid))
        cid = container.id
        print(cid)
        typed("podman exec %s noiommuctl alloc 2M --hold" % container.name)
        p = container.exec_popen(["noiommuctl", "--json", "alloc", "2M", "--hold"])
        out = json.loads(harness.readline_timeout(p.stdout, 30))
        for s in out["segments"]:
            print("memory %s: offset %#x length %#x dmaAddress %#x (%s)"
                  % (out["memory"], s["offset"], s["length"], s["dmaAddress"], out["addressKind"]))
        g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=out["memory"])[0]
        pid = int(g["NOIOMMUD_CLIENT_PID"])
        n = C.check_pagemap(pid, out)
        print("OK (root on the host): all %d pages of the container client's mapping (host pid %d) are "
              "at the physical addresses the daemon reported" % (n, pid))
        p.stdin.close()
        p.wait(20)

        step("noiommuctl run in the container: the memory goes to CMD, which uses it")
        typed("podman exec %s noiommuctl run --memory 2M -- ctest-dma-user" % container.name)
        p = container.exec_popen(["noiommuctl", "run", "--memory", "2M", "--", "ctest-dma-user"])
        run_out = json.loads(harness.readline_timeout(p.stdout, 30))
        m = run_out["memory"][0]
        print(json.dumps(run_out))
        g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=m["id"])[0]
        hpid = int(g["NOIOMMUD_CLIENT_PID"])
        C.check_pagemap(hpid, {"memory": m["id"], "size": m["size"], "segments": m["segments"]})
        with open("/proc/%d/mem" % hpid, "rb", buffering=0) as f:
            word = int.from_bytes(os.pread(f.fileno(), 8, m["address"]), "little")
        print("OK (root on the host): the memory's client is %s (host pid %d, pid %d in the container); "
              "its pages are where the daemon said and hold the pattern it wrote (%#x)"
              % (os.readlink("/proc/%d/exe" % hpid), hpid, run_out["pid"], word))
        p.stdin.close()
        p.wait(20)

        step("Container root is not host root to the daemon")
        typed("podman run --rm --device noiommud.io/vfio=socket --rootfs ROOTFS noiommuctl alloc 2M")
        r = podman.run(["run", "--rm"] + podman.run_flags() + ["noiommuctl", "alloc", "2M"], check=False)
        sys.stdout.write(r.stdout + r.stderr)
        print("(exit status %d)" % r.returncode)

        step("The daemon's audit records for the container (journal fields)")
        time.sleep(0.2)
        for e in env.journal.find():
            if e.get("NOIOMMUD_CLIENT_CONTAINER_ID") != cid and \
               e.get("NOIOMMUD_REASON") != "root-without-capabilities":
                continue
            print("  %s" % e.get("MESSAGE", ""))
            print("      " + " ".join("%s=%s" % (k[len("NOIOMMUD_CLIENT_"):].lower() if k.startswith("NOIOMMUD_CLIENT_")
                                                 else k[len("NOIOMMUD_"):].lower(), e[k])
                                      for k in ("NOIOMMUD_CLIENT_UID", "NOIOMMUD_CLIENT_NSPID",
                                                "NOIOMMUD_CLIENT_CONTAINER_ENGINE", "NOIOMMUD_CLIENT_CONTAINER_ID",
                                                "NOIOMMUD_CLIENT_CGROUP", "NOIOMMUD_REASON") if e.get(k)))
        print("\npodman inspect says the container's Id is %s" % cid)
    print("\nContainer walk-through finished.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
