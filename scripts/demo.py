#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The main job on a machine without VFIO devices: noiommud serving a real unprivileged client.

Builds a private world (private system bus, the real polkitd with the project's action file
and a rule granting the user `daemon`, the built noiommud), then, as the unprivileged user
`daemon` (uid 1), lists devices and allocates pinned DMA memory with noiommuctl, and checks as
root that the physical addresses the daemon reported are where the client's pages really are.
Also shows a user polkit denies, and the audit records the daemon wrote. Run as root.
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
sys.path.insert(0, os.path.join(SOURCE_ROOT, "tests", "integration"))
import harness  # noqa: E402


def step(text):
    print("\n\033[1m==> %s\033[0m" % text, flush=True)


def show(cmd, r):
    print("$ %s" % cmd)
    sys.stdout.write(r.stdout)
    sys.stdout.write(r.stderr)


def main():
    with harness.Environment(hugepages=16, name="demo") as env:
        step("noiommud is running as root on %s (pid %d), polkitd on a private bus"
             % (env.socket_path, env.daemon_pid))

        step("As user 'daemon' (uid 1): list VFIO devices")
        show("noiommuctl list", env.ctl(["list"], uid=1))

        step("As user 'daemon': allocate 4 MiB of pinned DMA memory (human output)")
        show("noiommuctl alloc 4M", env.ctl(["alloc", "4M"], uid=1))

        step("As user 'daemon': allocate 4 MiB and hold it; root checks the physical addresses")
        before = harness.hugepages_free()
        p = env.ctl_popen(["--json", "alloc", "4M", "--hold"], uid=1)
        reply = json.loads(p.stdout.readline())
        print("client pid %d got memory %s, %d segment(s), addressKind %s"
              % (p.pid, reply["memory"], len(reply["segments"]), reply["addressKind"]))
        client = harness.wait_until(lambda: _find_client(p.pid, reply["memory"]), 10,
                                    "the client's memfd mapping")
        pid, vma = client
        checked = harness.check_physical_addresses(pid, vma, reply["segments"], reply["size"])
        for s in reply["segments"]:
            print("  offset %#010x length %#010x dmaAddress %#014x" % (s["offset"], s["length"], s["dmaAddress"]))
        print("OK: all %d pages of the client's mapping are at the physical addresses the daemon "
              "reported (read from /proc/%d/pagemap as root)" % (checked, pid))
        print("HugePages_Free: %d before, %d while held" % (before, harness.hugepages_free()))
        p.stdin.close()
        p.wait(timeout=10)
        harness.wait_until(lambda: harness.hugepages_free() == before, 10, "the pages to return")
        print("client released the memory; HugePages_Free back to %d" % harness.hugepages_free())

        step("As user 'bin' (uid 2), whom no polkit rule allows")
        show("noiommuctl alloc 2M", env.ctl(["alloc", "2M"], uid=2))

        step("Audit records the daemon wrote (journal entries, NOIOMMUD_* fields)")
        time.sleep(0.2)
        for e in env.journal.find():
            if "NOIOMMUD_CLIENT_UID" not in e:
                continue
            print("  %-58s uid=%s pid=%s %s" % (e.get("MESSAGE", "")[:58], e.get("NOIOMMUD_CLIENT_UID"),
                                                  e.get("NOIOMMUD_CLIENT_PID"),
                                                  e.get("NOIOMMUD_POLKIT_ACTION", e.get("NOIOMMUD_MEMORY_ID", ""))))
    print("\nDemo finished: the daemon served an unprivileged client real pinned DMA memory.")
    return 0


def _find_client(pid, memory_id):
    # setpriv execs noiommuctl in place, so the pid is the client's.
    for row in harness.proc_maps(pid):
        if ("noiommud-" + memory_id) in row["path"]:
            return pid, row
    return None


if __name__ == "__main__":
    sys.exit(main())
