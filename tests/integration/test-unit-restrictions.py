#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon works within the privileges its unit grants (units/noiommud.service.in).

No machine here runs systemd, so the unit itself cannot be started; this applies the parts of it
that decide whether the daemon can do its job at all — the capability bounding set and
NoNewPrivileges= — with setpriv, and checks that the daemon then still serves: ListDevices,
AllocateMemory with physical addresses that match pagemap (needs CAP_SYS_ADMIN at start for
pagemap, CAP_IPC_LOCK for the pin), FreeMemory, and a clean exit. The system call filter and
the namespace settings are checked only by systemd-analyze (test-unit-security).
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

CAP_NAMES = {"CAP_SYS_ADMIN": 21, "CAP_IPC_LOCK": 14, "CAP_SYS_RAWIO": 17, "CAP_AUDIT_WRITE": 29}


def unit_settings():
    path = os.path.join(H.BUILD_ROOT, "units", "noiommud.service")
    with open(path) as f:
        text = f.read()
    caps = re.search(r"^CapabilityBoundingSet=(.*)$", text, re.M)
    assert caps, "no CapabilityBoundingSet= in %s" % path
    nnp = re.search(r"^NoNewPrivileges=yes$", text, re.M) is not None
    return caps.group(1).split(), nnp


def main():
    caps, nnp = unit_settings()
    for c in caps:
        assert c in CAP_NAMES, "capability %s in the unit is unknown to this test" % c
    bounding = "-all," + ",".join("+" + c[4:].lower() for c in caps)
    wrapper = ["setpriv", "--bounding-set=" + bounding] + (["--no-new-privs"] if nnp else [])
    os.environ["NOIOMMU_TEST_WRAPPER"] = " ".join(wrapper)
    print("# daemon runs under: %s" % " ".join(wrapper))

    with H.Environment() as env:
        with env.subtest("the daemon's bounding set is exactly the unit's"):
            with open("/proc/%d/status" % env.daemon_pid) as f:
                status = f.read()
            bnd = int(re.search(r"^CapBnd:\s*([0-9a-f]+)$", status, re.M).group(1), 16)
            want = sum(1 << CAP_NAMES[c] for c in caps)
            assert bnd == want, "CapBnd %#x, want %#x (%s)" % (bnd, want, caps)
            if nnp:
                assert re.search(r"^NoNewPrivs:\s*1$", status, re.M), "NoNewPrivs not set"

        with env.subtest("ListDevices, AllocateMemory (pagemap-checked) and FreeMemory work"):
            c = env.connect(uid=H.ALLOWED_UID)
            reply, _ = c.call_ok(H.LIST)
            assert "devices" in reply, reply
            r, fd = H.allocate(c, 2 * (2 << 20))
            p = env.ctl_popen(["--json", "alloc", "2M", "--hold"])
            import json
            held = json.loads(H.readline_timeout(p.stdout, 20))
            vma = [row for row in H.proc_maps(p.pid) if ("noiommud-" + held["memory"]) in row["path"]]
            assert vma, "noiommuctl does not map its memory"
            H.check_physical_addresses(p.pid, vma[0], held["segments"], held["size"])
            p.stdin.close()
            p.wait(timeout=10)
            c.call_ok(H.FREE, {"memory": r["memory"]})
            os.close(fd)
            c.close()


if __name__ == "__main__":
    H.run(main)
