#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""AcquireDevice carrying its memory (issue 10): one round trip, one polkit check, with the vfio
mock preloaded into the real daemon and the real polkitd:

  * granted: the reply carries the lease, the device fd and one memfd per region (after the
    device fd, "fd" indices 1..N), each region mapped into the lease (physical addresses checked
    against pagemap for noiommu, IOVAs in the mock's ranges behind an IOMMU); exactly one
    authorization record, of io.noiommud.acquire-device[-iommu]-with-memory, whose details carry
    the device and the total size, hugepage size, NUMA node and region count; then LEASE_GRANTED
    and one MEMORY_GRANTED per region naming the lease;
  * denied by the rules: PermissionDenied, no device node opened, nothing allocated;
  * a rule that grants only the two separate actions (acquire-device[-iommu], allocate-memory)
    does not grant the combined one; a rule for the new action sees its details;
  * out of hugepages in the second region: OutOfMemory, the device quiesced before the first
    region is released, and the daemon's fds and HugePages_Free back to where they were by the
    time the error arrives;
  * limits: maxMemoryPerUid counts the total (before polkit is asked), more than 3 regions is
    InvalidParameter "memory";
  * bad parameters: InvalidParameter naming the field ("memory[1].size"), polkit not asked;
  * the client disconnects right after the grant: quiesce, then the memory (teardown order).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (ACQUIRE, BACKENDS, CDEV_IOMMU_DEV, CDEV_NOIOMMU_DEV, DEFAULT_CONFIG, GROUP_DEV,
                            RELEASE, DeviceEnvironment, check_iova, check_physical, order, run)
import harness as H
from harness import ALLOWED_UID, DENIED_UID, ERR, INVALID_PARAMETER, hugepages_free

MiB = 1 << 20
ACTION = "io.noiommud.acquire-device-with-memory"
ACTION_IOMMU = "io.noiommud.acquire-device-iommu-with-memory"

# uid 2 ("bin") is granted the two separate actions only, and the combined one only for 4 MiB
# in one region of 2 MiB pages on any node (to see the details a rule decides on).
RULES = """\
polkit.addRule(function(action, subject) {
        if (subject.user != "bin")
                return polkit.Result.NOT_HANDLED;
        if (action.id == "io.noiommud.acquire-device" || action.id == "io.noiommud.acquire-device-iommu" ||
            action.id == "io.noiommud.allocate-memory")
                return polkit.Result.YES;
        if (action.id == "io.noiommud.acquire-device-with-memory" &&
            action.lookup("device") == "%s" && action.lookup("size") == "4194304" &&
            action.lookup("regions") == "1" && action.lookup("hugepage_size") == "2097152" &&
            action.lookup("numa_node") == "any")
                return polkit.Result.YES;
        return polkit.Result.NOT_HANDLED;
});
"""


def authz_records(env):
    return env.find_journal("AUTHZ_GRANTED") + env.find_journal("AUTHZ_DENIED")


def node_opens(log_, since):
    return [e for e in log_.events(since) if e["event"] in ("open-node", "get-device-fd", "bind")]


def acquire_with_memory(c, address, memory, **params):
    """AcquireDevice with memory that must succeed; checks the reply's shape and fds, returns
    (reply parameters, device fd, [memfds])."""
    reply, fds = c.call_ok(ACQUIRE, dict(params, device=address, memory=memory))
    try:
        assert len(fds) == 1 + len(memory), "reply carried %d fds, expected %d" % (len(fds), 1 + len(memory))
        assert reply["fd"] == 0, reply
        assert reply["device"]["address"] == address, reply
        link = os.readlink("/proc/self/fd/%d" % fds[0])
        assert "-device-" in link and "/mock-state/" in link, "fd 0 is not a device fd: %s" % link
        assert len(reply["memory"]) == len(memory), reply
        for i, (m, want) in enumerate(zip(reply["memory"], memory)):
            assert m["fd"] == i + 1, m
            hp = want.get("hugepageSize", 2 * MiB)
            assert m["size"] == (want["size"] + hp - 1) // hp * hp and m["hugepageSize"] == hp, (m, want)
            H.check_segments(m, m["size"])
            link = os.readlink("/proc/self/fd/%d" % fds[m["fd"]])
            assert link == "/memfd:noiommud-%s (deleted)" % m["memory"], link
            assert os.fstat(fds[m["fd"]]).st_size == m["size"]
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return reply, fds[0], fds[1:]


def close_all(fds):
    for fd in fds:
        os.close(fd)


def body():
    with DeviceEnvironment(hugepages=16) as env:
        log_ = env.mock_log
        base = env.settled_baseline()

        for address, action, kind in ((CDEV_NOIOMMU_DEV, ACTION, "physical"), (GROUP_DEV, ACTION, "physical"),
                                      (CDEV_IOMMU_DEV, ACTION_IOMMU, "iova")):
            with env.subtest("%s: granted in one call, one polkit check of %s" % (BACKENDS[address], action)):
                c = env.connect(uid=ALLOWED_UID)
                n_authz = len(authz_records(env))
                n_granted = len(env.find_journal("AUTHZ_GRANTED", NOIOMMUD_POLKIT_ACTION=action))
                # the second region names a node: numa_node lists both ("any,0")
                memory = [{"size": 2 * MiB}, {"size": 3 * MiB, "hugepageSize": 2 * MiB, "numaNode": 0}]
                reply, devfd, memfds = acquire_with_memory(c, address, memory)
                assert hugepages_free() == base[1] - 3, "HugePages_Free %d" % hugepages_free()
                lease = reply["lease"]
                for m, fd in zip(reply["memory"], memfds):
                    assert m["addressKind"] == kind, m
                    if kind == "physical":
                        check_physical(fd, m)
                    else:
                        check_iova(m)
                # The journal is read by another thread: wait for this request's record, not
                # the previous subtest's (same action, another device).
                rec = env.wait_journal("AUTHZ_GRANTED", count=n_granted + 1, NOIOMMUD_POLKIT_ACTION=action)[-1]
                details = rec["NOIOMMUD_POLKIT_DETAILS"]
                for want in ("device=" + address, "size=%d" % (6 * MiB), "hugepage_size=%d" % (2 * MiB),
                             "numa_node=any,0", "regions=2", "backend=" + BACKENDS[address]):
                    assert want in details, "%r not in the details %r" % (want, details)
                env.wait_journal("LEASE_GRANTED", NOIOMMUD_LEASE_ID=lease)
                granted = env.wait_journal("MEMORY_GRANTED", count=2, NOIOMMUD_LEASE_ID=lease)
                assert sorted(g["NOIOMMUD_MEMORY_ID"] for g in granted) == \
                    sorted(m["memory"] for m in reply["memory"]), granted
                env.settled_baseline()
                assert len(authz_records(env)) == n_authz + 1, \
                    "%d authorization records for one request" % (len(authz_records(env)) - n_authz)
                # FreeMemory knows the regions: they are the lease's, like AllocateMemory's
                c.call_ok(H.FREE, {"memory": reply["memory"][0]["memory"]})
                close_all([devfd] + memfds)
                c.call_ok(RELEASE, {"lease": lease})
                c.close()
                env.wait_baseline(base, what="after releasing %s" % address)

        with env.subtest("denied by the rules: PermissionDenied, nothing opened, nothing allocated"):
            c = env.connect(uid=DENIED_UID)
            mark = log_.mark()
            err, params = c.call_error(ACQUIRE, {"device": CDEV_NOIOMMU_DEV, "memory": [{"size": 2 * MiB}]})
            assert err == ERR + "PermissionDenied" and params.get("reason") == "denied", (err, params)
            env.wait_journal("AUTHZ_DENIED", NOIOMMUD_POLKIT_ACTION=ACTION)
            assert not node_opens(log_, mark), log_.describe(mark)
            assert hugepages_free() == base[1]
            c.close()
            env.wait_baseline(base, what="after the denial")

        with env.subtest("a rule granting the two separate actions does not grant the combined one"):
            path = os.path.join(env.tmp, "rules", "40-acquire-with-memory.rules")
            with open(path, "w") as f:
                f.write(RULES % CDEV_NOIOMMU_DEV)
            os.chmod(path, 0o644)
            c = env.connect(uid=DENIED_UID)
            # polkitd reloads the rules when the directory changes: wait until the separate
            # action is granted
            for attempt in range(30):
                reply, fds = c.call(ACQUIRE, {"device": GROUP_DEV})
                close_all(fds)
                if "error" not in reply:
                    break
                H.time.sleep(0.3)
            assert "error" not in reply, reply
            c.call_ok(RELEASE, {"lease": reply["parameters"]["lease"]})
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            c.call_ok(H.FREE, {"memory": r["memory"]})
            mark = log_.mark()
            for address in (GROUP_DEV, CDEV_IOMMU_DEV):
                err, params = c.call_error(ACQUIRE, {"device": address, "memory": [{"size": 2 * MiB}]})
                assert err == ERR + "PermissionDenied" and params.get("reason") == "denied", (address, err, params)
            assert not node_opens(log_, mark), log_.describe(mark)
            # the rule for the new action decides on its details: 4 MiB in one region, yes ...
            reply, devfd, memfds = acquire_with_memory(c, CDEV_NOIOMMU_DEV, [{"size": 4 * MiB}])
            close_all([devfd] + memfds)
            c.call_ok(RELEASE, {"lease": reply["lease"]})
            # ... 6 MiB, or two regions, no
            for memory in ([{"size": 6 * MiB}], [{"size": 2 * MiB}, {"size": 2 * MiB}]):
                err, params = c.call_error(ACQUIRE, {"device": CDEV_NOIOMMU_DEV, "memory": memory})
                assert err == ERR + "PermissionDenied", (memory, err, params)
            c.close()
            os.unlink(path)
            env.wait_baseline(base, what="after the rules")

        with env.subtest("out of hugepages in the second region: all undone, quiesce first, nothing leaked"):
            c = env.connect(uid=ALLOWED_UID)
            free = hugepages_free()
            fds_before = env.daemon_fd_count()
            mark = log_.mark()
            err, params = c.call_error(ACQUIRE, {"device": CDEV_NOIOMMU_DEV,
                                                 "memory": [{"size": 2 * MiB}, {"size": (free + 1) * 2 * MiB}]})
            assert err == ERR + "OutOfMemory", (err, params)
            # undone before the error was sent: no waiting
            assert hugepages_free() == free, "HugePages_Free %d, was %d" % (hugepages_free(), free)
            assert env.daemon_fd_count() == fds_before, (env.daemon_fd_count(), fds_before, env.daemon_fds())
            steps = order(log_, mark, ("clear_bme", {"dev": CDEV_NOIOMMU_DEV}), ("reset", {"dev": CDEV_NOIOMMU_DEV}),
                          "unpin", ("close-device", {"dev": CDEV_NOIOMMU_DEV}))
            early = [e for e in log_.events(mark) if e["index"] < steps[0]["index"] and e["event"] == "unpin"]
            assert not early, "memory released before the quiesce: %r" % early
            rel = env.wait_journal("LEASE_QUIESCED", NOIOMMUD_DEVICE=CDEV_NOIOMMU_DEV, NOIOMMUD_REASON="memory-refused")
            lease = rel[-1]["NOIOMMUD_LEASE_ID"]
            assert not env.find_journal("LEASE_GRANTED", NOIOMMUD_LEASE_ID=lease), "a refused lease was recorded granted"
            assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_LEASE_ID=lease), "refused memory was recorded granted"
            # the device is free again at once
            reply, devfd, memfds = acquire_with_memory(c, CDEV_NOIOMMU_DEV, [{"size": 2 * MiB}])
            close_all([devfd] + memfds)
            c.close()
            env.wait_baseline(base, what="after the out-of-memory rollback")

        with env.subtest("noiommuctl acquire --memory: one call, the lease and each region printed"):
            n_authz = len(authz_records(env))
            r = env.ctl(["--json", "acquire", CDEV_IOMMU_DEV, "--memory", "2M,3M", "--hugepage-size", "2M"],
                        check=True)
            lines = [json.loads(line) for line in r.stdout.splitlines()]
            assert len(lines) == 3, r.stdout
            assert lines[0]["device"]["address"] == CDEV_IOMMU_DEV and lines[0]["deviceFd"] >= 0, lines[0]
            assert [x["size"] for x in lines[1:]] == [2 * MiB, 4 * MiB], lines
            assert all(x["addressKind"] == "iova" for x in lines[1:]), lines
            env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_POLKIT_ACTION=ACTION_IOMMU,
                             NOIOMMUD_POLKIT_DETAILS=lambda d: "size=%d" % (6 * MiB) in d)
            env.wait_journal("MEMORY_GRANTED", count=2, NOIOMMUD_LEASE_ID=lines[0]["lease"])
            env.wait_baseline(base, what="after noiommuctl acquire --memory exited")
            assert len(authz_records(env)) == n_authz + 1, "%d authorization records" % (len(authz_records(env)) - n_authz)
            # held: the memory stays until stdin ends
            p = env.ctl_popen(["--json", "acquire", GROUP_DEV, "--memory", "2M", "--hold"])
            lease_line = json.loads(H.readline_timeout(p.stdout, 20))
            mem_line = json.loads(H.readline_timeout(p.stdout, 20))
            assert lease_line["device"]["address"] == GROUP_DEV and mem_line["size"] == 2 * MiB, (lease_line, mem_line)
            assert hugepages_free() == base[1] - 1, "HugePages_Free %d" % hugepages_free()
            p.stdin.close()
            assert p.wait(20) == 0, p.stderr.read()
            env.wait_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=lease_line["lease"], NOIOMMUD_REASON="release")
            env.wait_baseline(base, what="after noiommuctl acquire --memory --hold")
            # usage errors, before any connection
            r = env.ctl(["acquire", GROUP_DEV, "--memory", "2M,2M,2M,2M"])
            assert r.returncode == 2 and "at most 3" in r.stderr, (r.returncode, r.stderr)
            r = env.ctl(["acquire", GROUP_DEV, "--hugepage-size", "2M"])
            assert r.returncode == 2 and "--hugepage-size" in r.stderr, (r.returncode, r.stderr)
            r = env.ctl(["--json", "acquire", GROUP_DEV, "--memory", "2M", "--numa-node", "0"])
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout.splitlines()[1])["numaNode"] in (0, -1), r.stdout
            env.wait_baseline(base, what="after noiommuctl acquire --memory --numa-node 0")

        with env.subtest("bad parameters: InvalidParameter naming the field, polkit not asked"):
            c = env.connect(uid=ALLOWED_UID)
            n_authz = len(authz_records(env))
            mark = log_.mark()
            cases = [
                ({"memory": {"size": 2 * MiB}}, "memory"),
                ({"memory": []}, "memory"),
                ({"memory": [{"size": 2 * MiB}] * 4}, "memory"),
                ({"memory": [2 * MiB]}, "memory[0]"),
                ({"memory": [{}]}, "memory[0].size"),
                ({"memory": [{"size": 0}]}, "memory[0].size"),
                ({"memory": [{"size": -1}]}, "memory[0].size"),
                ({"memory": [{"size": "2M"}]}, "memory[0].size"),
                ({"memory": [{"size": 2 * MiB}, {"size": 2.5}]}, "memory[1].size"),
                ({"memory": [{"size": 2 * MiB, "hugepageSize": 3 * MiB}]}, "memory[0].hugepageSize"),
                ({"memory": [{"size": 2 * MiB, "numaNode": -1}]}, "memory[0].numaNode"),
                ({"memory": [{"size": 2 * MiB, "numaNode": 1024}]}, "memory[0].numaNode"),
                ({"memory": [{"size": 2 * MiB, "lease": "0" * 32}]}, "memory[0].lease"),
                ({"memory": [{"size": 2 * MiB}], "interactive": 1}, "interactive"),
            ]
            for params, field in cases:
                err, p = c.call_error(ACQUIRE, dict(params, device=CDEV_NOIOMMU_DEV))
                assert err == INVALID_PARAMETER and p == {"parameter": field}, (params, err, p)
            err, p = c.call_error(ACQUIRE, {"device": CDEV_NOIOMMU_DEV,
                                            "memory": [{"size": 2 * MiB, "hugepageSize": 4096}]})
            assert err == ERR + "NotSupported", (err, p)
            err, p = c.call_error(ACQUIRE, {"device": CDEV_NOIOMMU_DEV, "memory": [{"size": 65 << 30}]})
            assert err == ERR + "LimitExceeded" and p == {"limit": "allocation-size"}, (err, p)
            assert not node_opens(log_, mark), log_.describe(mark)
            assert len(authz_records(env)) == n_authz, "polkit was asked about a bad request"
            c.close()

        with env.subtest("maxMemoryPerUid counts the total, before polkit is asked"):
            env.stop_daemon()
            env.write_config(dict(DEFAULT_CONFIG, maxMemoryPerUid=4 * MiB))
            env.start_mock_daemon()
            base = env.settled_baseline()
            c = env.connect(uid=ALLOWED_UID)
            n_authz = len(authz_records(env))
            err, p = c.call_error(ACQUIRE, {"device": CDEV_NOIOMMU_DEV,
                                            "memory": [{"size": 2 * MiB}, {"size": 4 * MiB}]})
            assert err == ERR + "LimitExceeded" and p == {"limit": "memory-per-uid"}, (err, p)
            assert len(authz_records(env)) == n_authz, "polkit was asked about a request over the limit"
            reply, devfd, memfds = acquire_with_memory(c, CDEV_NOIOMMU_DEV, [{"size": 2 * MiB}, {"size": 2 * MiB}])
            close_all([devfd] + memfds)
            err, p = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == ERR + "LimitExceeded" and p == {"limit": "memory-per-uid"}, (err, p)
            c.close()
            env.wait_baseline(base, what="after the limits")

        with env.subtest("client disconnects right after the grant: quiesce, then the memory"):
            c = env.connect(uid=ALLOWED_UID)
            reply, devfd, memfds = acquire_with_memory(c, GROUP_DEV, [{"size": 2 * MiB}])
            name = "noiommud-" + reply["memory"][0]["memory"]
            close_all([devfd] + memfds)
            mark = log_.mark()
            c.close(keep_process=True)
            order(log_, mark, ("clear_bme", {"dev": GROUP_DEV}), ("reset", {"dev": GROUP_DEV}),
                  ("unpin", {"name": name}), ("munmap", {"name": name}),
                  ("close-memfd", {"name": name, "last": 1}), ("close-device", {"dev": GROUP_DEV}))
            c.end_process()
            env.wait_journal("LEASE_QUIESCED", NOIOMMUD_LEASE_ID=reply["lease"], NOIOMMUD_RESET=1)
            env.wait_baseline(base, what="after the disconnect")


if __name__ == "__main__":
    run(body)
