#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`noiommuctl run` and noiommu_from_environment(), with the real daemon and the vfio mock's
fixture devices, as the allowed (unprivileged) user. The CMD is run-adopt (run-adopt.c), which
adopts what it was passed, writes every byte of the memory and prints what it got:

  * memory only: the connection and the memfd arrive, nothing else is left open or in the
    environment; the physical addresses of the adopted mapping (read here, as root, from the
    child's /proc/PID/pagemap) are the segment table's; the connection works for further calls;
    the memory lives as long as CMD and is freed when it exits;
  * with a device: the lease is the one the daemon granted (journal), the memory is mapped for
    it, and the lease ends when CMD exits;
  * $NOIOMMUD_SOCKET and $NOIOMMUD_DEVICE as the defaults of run and acquire, and the error
    when neither names a device;
  * what breaks it: CMD closing fd 3 before adopting (the lease ends at once), a fork between
    noiommuctl and the adopter (-ESRCH), an exec failure (exit 127, everything freed).
"""

import errno
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (CDEV_NOIOMMU_DEV, GROUP_DEV, DeviceEnvironment, check_physical_addresses,
                            proc_maps, run)
from harness import ALLOWED_UID, _pdeathsig, hugepages_free, readline_timeout

MiB = 1 << 20
ADOPT = os.environ.get("NOIOMMU_RUN_ADOPT") or os.path.join(
    os.environ.get("NOIOMMU_BUILD_ROOT", "build"), "tests", "integration", "run-adopt")
PROTOCOL = ("NOIOMMU_PID", "NOIOMMU_FDS", "NOIOMMU_FD_NAMES", "NOIOMMU_LEASE")


def protocol_left(names):
    return [n for n in names if n in PROTOCOL or n.startswith(("NOIOMMU_DEVICE_", "NOIOMMU_MEMORY_"))]


def start(env, args, extra_env=None, socket=True, uid=ALLOWED_UID):
    """noiommuctl [--socket S] ARGS as uid, with pipes; killed at teardown."""
    argv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", env.ctl_bin]
    if socket:
        argv += ["--socket", env.socket_path]
    e = dict(env.env)
    e.update(extra_env or {})
    p = subprocess.Popen(argv + list(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=e, cwd="/", start_new_session=True,
                         preexec_fn=_pdeathsig)
    env.procs["noiommuctl-%d" % p.pid] = p
    return p


def adopted(p):
    line = readline_timeout(p.stdout, 20)
    if not line:
        p.wait(5)
        raise AssertionError("run-adopt printed nothing; exit %r, stderr %r"
                             % (p.returncode, p.stderr.read().decode(errors="replace")))
    return json.loads(line)


def command(p, line):
    p.stdin.write(line.encode() + b"\n")
    p.stdin.flush()
    return json.loads(readline_timeout(p.stdout, 20))


def finish(p):
    p.stdin.write(b"exit\n")
    p.stdin.close()
    rc = p.wait(20)
    assert rc == 0, "run-adopt exited %d: %s" % (rc, p.stderr.read().decode(errors="replace"))


def check_memory(pid, m, size):
    assert m["size"] == size and m["hugepageSize"] == 2 * MiB, m
    assert m["addressKind"] == "physical", m
    vma = [v for v in proc_maps(pid) if v["start"] == m["address"]]
    assert len(vma) == 1, "no mapping at %#x in pid %d" % (m["address"], pid)
    assert vma[0]["path"].startswith("/memfd:noiommud-" + m["memory"]), vma[0]
    n = check_physical_addresses(pid, vma[0], m["segments"], m["size"])
    assert n == size // 4096, (n, size)


def body():
    with DeviceEnvironment(hugepages=16) as env:
        base = env.settled_baseline()

        with env.subtest("run --memory 2M: connection and memfd adopted, pagemap, lives as long as CMD"):
            p = start(env, ["run", "--memory", "2M", "--", ADOPT])
            a = adopted(p)
            assert a["adopted"] == 1 and a["pid"] == p.pid, (a, p.pid)    # exec kept the pid
            assert a["lease"] is None, a
            assert len(a["memory"]) == 1, a
            m = a["memory"][0]
            check_memory(p.pid, m, 2 * MiB)
            # exactly stdio and the adopted (O_CLOEXEC) copies; the inherited 3 and 4 are closed
            assert sorted(a["fds"]) == sorted([0, 1, 2, a["connFd"], m["fd"]]), a
            assert 3 not in a["fds"] and 4 not in a["fds"], a
            for fd in (a["connFd"], m["fd"]):
                flags = open("/proc/%d/fdinfo/%d" % (p.pid, fd)).read().split("flags:")[1].split()[0]
                assert int(flags, 8) & 0o2000000, "fd %d of the adopter is not O_CLOEXEC" % fd
            assert protocol_left(a["envLeft"]) == [], a["envLeft"]
            g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=m["memory"])[0]
            assert g.get("NOIOMMUD_CLIENT_PID") == str(p.pid) and g.get("NOIOMMUD_CLIENT_UID") == "1", g
            assert hugepages_free() == base[1] - 1, (hugepages_free(), base)
            # the adopted connection is an ordinary one
            assert command(p, "list")["devices"] >= 4
            finish(p)
            e = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=m["memory"])[0]
            assert e.get("NOIOMMUD_REASON") == "client-exit", e
            env.wait_baseline(base, what="after run --memory 2M")

        with env.subtest("run --device --memory 2M,4M: the lease and its memory, ended when CMD exits"):
            p = start(env, ["run", "--device", CDEV_NOIOMMU_DEV, "--memory", "2M,4M", "--", ADOPT])
            a = adopted(p)
            lease = a["lease"]
            assert lease and lease["address"] == CDEV_NOIOMMU_DEV and lease["backend"] == "cdev-noiommu", a
            assert lease["fd"] >= 0 and lease["fd"] in a["fds"], a
            assert os.readlink("/proc/%d/fd/%d" % (p.pid, lease["fd"])).endswith("noiommu-vfio1"), \
                os.readlink("/proc/%d/fd/%d" % (p.pid, lease["fd"]))
            env.wait_journal("LEASE_GRANTED", NOIOMMUD_LEASE_ID=lease["lease"])
            assert [m["size"] for m in a["memory"]] == [2 * MiB, 4 * MiB], a
            for m, size in zip(a["memory"], (2 * MiB, 4 * MiB)):
                check_memory(p.pid, m, size)
            assert len(a["fds"]) == 3 + 1 + 1 + 2, a
            assert protocol_left(a["envLeft"]) == [], a["envLeft"]
            # FreeMemory through the adopted objects: noiommu memory of a lease stays pinned
            # until the lease ends (test-device-backends), but the call itself works
            assert command(p, "free 1")["r"] == 0
            finish(p)
            env.wait_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=lease["lease"])
            env.wait_baseline(base, what="after run --device")

        with env.subtest("$NOIOMMUD_SOCKET and $NOIOMMUD_DEVICE are the defaults"):
            defaults = {"NOIOMMUD_SOCKET": env.socket_path, "NOIOMMUD_DEVICE": GROUP_DEV}
            p = start(env, ["run", "--memory", "2M", "--", ADOPT], defaults, socket=False)
            a = adopted(p)
            assert a["lease"]["address"] == GROUP_DEV and a["lease"]["backend"] == "group-noiommu", a
            finish(p)
            env.wait_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=a["lease"]["lease"])

            p = start(env, ["--json", "acquire"], defaults, socket=False)
            out, err = p.communicate(timeout=30)
            assert p.returncode == 0, (p.returncode, err)
            got = json.loads(out)
            assert got["device"]["address"] == GROUP_DEV, got

            p = start(env, ["acquire"], {"NOIOMMUD_SOCKET": env.socket_path}, socket=False)
            out, err = p.communicate(timeout=30)
            assert p.returncode == 2 and b"NOIOMMUD_DEVICE" in err, (p.returncode, err)
            # libnoiommu's own default: noiommu_acquire_device(c, NULL) takes $NOIOMMUD_DEVICE,
            # -ENXIO without it
            p = start(env, ["run", "--", "/bin/sh", "-c",
                            "export NOIOMMUD_DEVICE=%s; exec %s" % (CDEV_NOIOMMU_DEV, ADOPT)])
            a = adopted(p)
            assert a["adopted"] == 1 and a["lease"] is None, a
            got = command(p, "acquire")
            assert got.get("address") == CDEV_NOIOMMU_DEV, got
            finish(p)
            env.wait_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=got["lease"])
            p = start(env, ["run", "--", ADOPT])
            adopted(p)
            assert command(p, "acquire") == {"error": errno.ENXIO}
            finish(p)
            # run without a device is memory only
            p = start(env, ["run", "--", ADOPT], {"NOIOMMUD_SOCKET": env.socket_path}, socket=False)
            a = adopted(p)
            assert a["adopted"] == 1 and a["lease"] is None and a["memory"] == [], a
            finish(p)
            env.wait_baseline(base, what="after the defaults")

        with env.subtest("CMD closing fd 3 before adopting ends the lease at once"):
            script = "exec 3>&-; sleep 0.5; exec %s" % ADOPT
            p = start(env, ["run", "--device", CDEV_NOIOMMU_DEV, "--memory", "2M", "--",
                            "/bin/sh", "-c", script])
            a = adopted(p)
            assert a["adopted"] == -errno.EBADF, a
            # run-adopt still holds the memfd and device fd copies at 4 and 5; the daemon ended
            # the lease when the connection's only copy closed
            env.wait_journal("LEASE_RELEASED", NOIOMMUD_DEVICE=CDEV_NOIOMMU_DEV, timeout=10)
            assert protocol_left(a["envLeft"]) == [], a["envLeft"]
            assert p.wait(20) == 0
            env.wait_baseline(base, what="after closing fd 3")

        with env.subtest("a tampered environment: -EBADMSG, the inherited fds left alone"):
            tampered = [
                'NOIOMMU_FDS=3',                                    # more fds than names
                'NOIOMMU_FD_NAMES=connection:memory-1',             # memory numbered from 0
                'NOIOMMU_FD_NAMES=connection::memory-0',            # empty name
                'NOIOMMU_MEMORY_1_ID=$NOIOMMU_MEMORY_0_ID',         # memory that was not passed
                'NOIOMMU_MEMORY_0_COLOUR=red',                      # a field we do not know
                'NOIOMMU_MEMORY_0_SEGMENTS=$NOIOMMU_MEMORY_0_SEGMENTS,',   # trailing separator
                'NOIOMMU_MEMORY_0_SIZE=0x0200000',                  # not the one spelling
                'NOIOMMU_MEMORY_0_SIZE=2097152',                    # decimal where hex is due
                'NOIOMMU_MEMORY_0_SEGMENTS=0x0:0x100000:0x0',       # does not cover the size
                'NOIOMMU_PID=0$NOIOMMU_PID',                        # leading zero
                'NOIOMMU_LEASE=0123456789abcdef0123456789abcdef',   # a lease without a device
            ]
            for t in tampered:
                script = 'export %s; exec %s' % (t, ADOPT)
                p = start(env, ["run", "--memory", "2M", "--", "/bin/sh", "-c", script])
                a = adopted(p)
                assert a["adopted"] == -errno.EBADMSG, (t, a)
                assert protocol_left(a["envLeft"]) == [], (t, a["envLeft"])
                # nothing of ours left open, the inherited connection and memfd untouched
                assert sorted(a["fds"]) == [0, 1, 2, 3, 4], (t, a["fds"])
                assert p.wait(20) == 0
                env.wait_baseline(base, what="after %s" % t)
            # fd 3 is not a socket (stdin's /dev/null put there): -ENOTSOCK
            p = start(env, ["run", "--memory", "2M", "--", "/bin/sh", "-c",
                            "exec 3</dev/null; exec %s" % ADOPT])
            a = adopted(p)
            assert a["adopted"] == -errno.ENOTSOCK, a
            assert p.wait(20) == 0
            env.wait_baseline(base, what="after fd 3 replaced")

        with env.subtest("a fork between noiommuctl and the adopter: -ESRCH"):
            p = start(env, ["run", "--memory", "2M", "--", ADOPT, "fork"])
            out = json.loads(readline_timeout(p.stdout, 20))
            assert out == {"forked": -errno.ESRCH}, out
            assert p.wait(20) == 0
            env.wait_baseline(base, what="after the fork")

        with env.subtest("CMD that cannot be executed: exit 127, everything freed"):
            p = start(env, ["run", "--memory", "2M", "--", "/nonexistent/cmd"])
            out, err = p.communicate(timeout=30)
            assert p.returncode == 127 and b"/nonexistent/cmd" in err, (p.returncode, err)
            env.wait_baseline(base, what="after the failed exec")


run(body)
