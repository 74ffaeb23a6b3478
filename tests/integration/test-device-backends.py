#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Device leases on each backend, with the vfio mock (tests/mock/vfio-mock.c) preloaded into
the real daemon and the "devices" fixture root (design.md §3.1–3.3, kernel-api.md §5–§8):

  * group-noiommu: AcquireDevice, AllocateMemory with the lease -> physical addresses that are
    the pages' real ones (pagemap of our own mapping of the memfd);
  * cdev-noiommu: the same, with the addresses coming from the mock's IOMMU_IOAS_NOIOMMU_GET_PA
    (which reads the daemon's pagemap) and IOAS_MAP with FIXED_IOVA;
  * cdev-iommu: addressKind "iova", inside the IOVA ranges the mock reports after the attach,
    and the very IOVA the daemon mapped;
  * ReleaseDevice: Bus Master cleared (and read back), reset, then unmap/unpin/munmap/close of
    the memory, then the device closed — in that order, from the mock's event log; every
    hugepage back afterwards;
  * FreeMemory of lease memory: behind an IOMMU it is unmapped and freed at once; in noiommu
    mode it stays pinned until the lease ends with a quiesce;
  * noiommuctl acquire / batch (acquire, alloc --lease, release), libnoiommu underneath;
  * ListDevices' backendReason and availableBackends (0000:00:04.0 has a noiommu group and a
    noiommu cdev, matrix case 3 of linux-7.3.md: cdev-noiommu, both available), and the
    "deviceBackends" setting: the group path forced for that device and used end to end, an
    unavailable backend forced for another (not served, reason in ListDevices, AcquireDevice
    and noiommuctl list, warning at load);
  * the daemon never issues an iommufd call outside the allowed set (no "violation" events).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (ACQUIRE, ALLOCATE, BACKENDS, CDEV_IOMMU_DEV, CDEV_NOIOMMU_DEV, FREE,
                            GROUP_DEV, LIST, RELEASE, DeviceEnvironment, acquire,
                            allocate_leased, check_iova, check_physical, order, run)
from harness import ALLOWED_UID, ERR, hugepages_free, readline_timeout, wait_until
from device_harness import CDEV_NOIOMMU_DEV2, DEFAULT_CONFIG, UNLISTED_DEV


def release(conn, lease):
    conn.call_ok(RELEASE, {"lease": lease})


def teardown_steps(address, memories, backend):
    """The events a release must produce, in order."""
    steps = [("clear_bme", {"dev": address}), ("reset", {"dev": address})]
    for m in memories:
        name = "noiommud-" + m
        if backend != "group-noiommu":
            steps.append("ioas-unmap")
        steps += [("unpin", {"name": name}), ("munmap", {"name": name}),
                  ("close-memfd", {"name": name, "last": 1})]
    if backend != "group-noiommu":
        steps += ["detach", "destroy"]
    steps.append(("close-device", {"dev": address}))
    return steps


def body():
    with DeviceEnvironment(hugepages=32) as env:
        log_ = env.mock_log

        with env.subtest("ListDevices shows the fixture's devices with their backends"):
            c = env.connect(uid=ALLOWED_UID)
            reply, _ = c.call_ok(LIST)
            got = {d["address"]: d["backend"] for d in reply["devices"]}
            for address, backend in BACKENDS.items():
                assert got.get(address) == backend, "%s: %r, expected %s (%r)" % (
                    address, got.get(address), backend, reply)
            c.close()

        with env.subtest("ListDevices: backendReason and availableBackends; case 3 picks the cdev"):
            c = env.connect(uid=ALLOWED_UID)
            reply, _ = c.call_ok(LIST)
            devs = {d["address"]: d for d in reply["devices"]}
            expected = {
                GROUP_DEV: ["group-noiommu"],
                CDEV_NOIOMMU_DEV: ["cdev-noiommu", "group-noiommu"],
                CDEV_IOMMU_DEV: ["cdev-iommu"],
                UNLISTED_DEV: ["group-noiommu"],
                CDEV_NOIOMMU_DEV2: ["cdev-noiommu"],
            }
            for address, available in expected.items():
                d = devs[address]
                assert d["availableBackends"] == available, (address, d)
                if address == UNLISTED_DEV:
                    # Usable by the kernel, refused by the configuration: ListDevices says so.
                    assert d["state"] == "disabled" and "noiommuDevices" in d["reason"] and d["backendReason"], d
                    continue
                assert d["state"] == "available" and d["reason"] is None and d["backendReason"], (address, d)
            assert "preferred over group-noiommu" in devs[CDEV_NOIOMMU_DEV]["backendReason"], devs[CDEV_NOIOMMU_DEV]
            assert "IOMMUFD_NOIOMMU" in devs[GROUP_DEV]["backendReason"], devs[GROUP_DEV]
            assert "no noiommu group" in devs[CDEV_NOIOMMU_DEV2]["backendReason"], devs[CDEV_NOIOMMU_DEV2]
            c.close()

            r = env.ctl(["list"], check=True)
            row = [l for l in r.stdout.splitlines() if l.startswith(CDEV_NOIOMMU_DEV)]
            assert "AVAILABLE" in r.stdout.splitlines()[0], r.stdout
            assert row and "cdev-noiommu,group-noiommu" in row[0] and "preferred over group-noiommu" in row[0], \
                r.stdout
            r = env.ctl(["--json", "list"], check=True)
            assert json.loads(r.stdout) == reply, "list --json is not the reply verbatim: %s" % r.stdout

        base = env.settled_baseline()

        with env.subtest("group-noiommu: lease, physical addresses from pagemap, release order"):
            c = env.connect(uid=ALLOWED_UID)
            mark = log_.mark()
            lease, devfd = acquire(c, GROUP_DEV)
            # the group path: container, group, two GET_DEVICE_FD (the daemon's and ours)
            order(log_, mark, ("open-node", {"kind": "container"}), ("open-node", {"kind": "group"}),
                  ("set-iommu", {"type": "noiommu"}), ("get-device-fd", {"dev": GROUP_DEV}),
                  ("get-device-fd", {"dev": GROUP_DEV}), ("send-fd", {"kind": "device"}))
            mem, memfd = allocate_leased(c, lease["lease"], 4 << 20, "physical")
            check_physical(memfd, mem)
            assert hugepages_free() == base[1] - 2, "HugePages_Free %d, expected %d" % (
                hugepages_free(), base[1] - 2)

            mark = log_.mark()
            release(c, lease["lease"])
            order(log_, mark, *teardown_steps(GROUP_DEV, [mem["memory"]], "group-noiommu"))
            os.close(memfd)
            os.close(devfd)
            c.close()
            env.wait_baseline(base, what="after the group-noiommu lease")

        with env.subtest("cdev-noiommu: lease, physical addresses from GET_PA == pagemap, release order"):
            c = env.connect(uid=ALLOWED_UID)
            mark = log_.mark()
            lease, devfd = acquire(c, CDEV_NOIOMMU_DEV)
            order(log_, mark, ("open-node", {"kind": "iommufd"}),
                  ("open-node", {"kind": "device", "dev": CDEV_NOIOMMU_DEV}),
                  ("bind", {"dev": CDEV_NOIOMMU_DEV}), "ioas-alloc", ("attach", {"dev": CDEV_NOIOMMU_DEV}),
                  ("iova-ranges", {"errno": "EMSGSIZE"}), "iova-ranges", ("send-fd", {"kind": "device"}))

            mark = log_.mark()
            mem, memfd = allocate_leased(c, lease["lease"], 6 << 20, "physical")
            maps = log_.find("ioas-map", since=mark)
            assert len(maps) == 1 and maps[0]["pinned"] == "1", "IOAS_MAP events: %r" % maps
            assert int(maps[0]["length"], 16) == mem["size"], maps
            # every segment start was asked of GET_PA, and the answers are what we were told
            pas = {int(e["phys"], 16) for e in log_.find("get-pa", since=mark)}
            for s in mem["segments"]:
                assert s["dmaAddress"] in pas, "segment %r not from GET_PA (%r)" % (s, pas)
            check_physical(memfd, mem)

            mark = log_.mark()
            release(c, lease["lease"])
            order(log_, mark, *teardown_steps(CDEV_NOIOMMU_DEV, [mem["memory"]], "cdev-noiommu"))
            os.close(memfd)
            os.close(devfd)
            c.close()
            env.wait_baseline(base, what="after the cdev-noiommu lease")

        with env.subtest("cdev-iommu: addressKind iova inside the allowed ranges, the IOVA mapped"):
            c = env.connect(uid=ALLOWED_UID)
            lease, devfd = acquire(c, CDEV_IOMMU_DEV)
            mark = log_.mark()
            mems = []
            for size in (2 << 20, 4 << 20):
                mem, memfd = allocate_leased(c, lease["lease"], size, "iova")
                check_iova(mem)
                assert len(mem["segments"]) == 1, "one IOVA run per allocation: %r" % mem
                mems.append((mem, memfd))
            maps = log_.find("ioas-map", since=mark)
            assert [int(e["iova"], 16) for e in maps] == [m["segments"][0]["dmaAddress"] for m, _ in mems], \
                "IOVAs mapped %r vs handed out %r" % (maps, mems)
            a, b = (m["segments"][0] for m, _ in mems)
            assert a["dmaAddress"] + a["length"] <= b["dmaAddress"] or \
                b["dmaAddress"] + b["length"] <= a["dmaAddress"], "overlapping IOVAs %r %r" % (a, b)
            assert not log_.find("get-pa", since=mark), "GET_PA used on a real-IOMMU device"

            mark = log_.mark()
            release(c, lease["lease"])
            order(log_, mark, *teardown_steps(CDEV_IOMMU_DEV, [mems[1][0]["memory"], mems[0][0]["memory"]],
                                              "cdev-iommu"))
            for _, fd in mems:
                os.close(fd)
            os.close(devfd)
            c.close()
            env.wait_baseline(base, what="after the cdev-iommu lease")

        with env.subtest("FreeMemory of lease memory: at once behind an IOMMU, after quiesce without"):
            c = env.connect(uid=ALLOWED_UID)
            # IOMMU: unmapped and unpinned at once, no quiesce needed
            lease, devfd = acquire(c, CDEV_IOMMU_DEV)
            mem, memfd = allocate_leased(c, lease["lease"], 2 << 20, "iova")
            os.close(memfd)
            mark = log_.mark()
            c.call_ok(FREE, {"memory": mem["memory"]})
            order(log_, mark, "ioas-unmap", ("unpin", {"name": "noiommud-" + mem["memory"]}),
                  ("close-memfd", {"name": "noiommud-" + mem["memory"], "last": 1}))
            assert not log_.find("clear_bme", since=mark), log_.describe(mark)
            wait_until(lambda: hugepages_free() == base[1], 10, "pages back after FreeMemory")
            release(c, lease["lease"])
            os.close(devfd)

            # noiommu: FreeMemory answers, but the pages stay pinned until the quiesce
            lease, devfd = acquire(c, GROUP_DEV)
            mem, memfd = allocate_leased(c, lease["lease"], 2 << 20, "physical")
            os.close(memfd)
            mark = log_.mark()
            c.call_ok(FREE, {"memory": mem["memory"]})
            err, _ = c.call_error(FREE, {"memory": mem["memory"]})
            assert err == ERR + "NoSuchMemory", "freed twice: %s" % err
            assert not log_.find("unpin", since=mark), "noiommu memory unpinned before the quiesce:\n" \
                + log_.describe(mark)
            assert hugepages_free() == base[1] - 1, "HugePages_Free %d" % hugepages_free()
            release(c, lease["lease"])
            order(log_, mark, ("clear_bme", {"dev": GROUP_DEV}), ("reset", {"dev": GROUP_DEV}),
                  ("unpin", {"name": "noiommud-" + mem["memory"]}))
            os.close(devfd)
            c.close()
            env.wait_baseline(base, what="after FreeMemory")

        with env.subtest("AllocateMemory with a lease of another connection -> NoSuchLease"):
            a = env.connect(uid=ALLOWED_UID)
            b = env.connect(uid=ALLOWED_UID)
            lease, devfd = acquire(a, GROUP_DEV)
            err, params = b.call_error(ALLOCATE, {"size": 2 << 20, "lease": lease["lease"]})
            assert err == ERR + "NoSuchLease", (err, params)
            err, params = b.call_error(RELEASE, {"lease": lease["lease"]})
            assert err == ERR + "NoSuchLease", (err, params)
            os.close(devfd)
            a.close()
            b.close()
            env.wait_baseline(base, what="after the foreign-lease checks")

        with env.subtest("noiommuctl acquire --json --hold, then SIGTERM releases"):
            p = env.ctl_popen(["--json", "acquire", CDEV_NOIOMMU_DEV, "--hold"])
            line = readline_timeout(p.stdout, 20)
            out = json.loads(line)
            assert set(out) == {"lease", "device", "deviceFd"}, out
            assert out["device"]["address"] == CDEV_NOIOMMU_DEV and \
                out["device"]["backend"] == "cdev-noiommu", out
            link = os.readlink("/proc/%d/fd/%d" % (p.pid, out["deviceFd"]))
            assert "-device-noiommu-vfio1" in link, "deviceFd %d of noiommuctl is %s" % (out["deviceFd"], link)
            mark = log_.mark()
            p.terminate()
            assert p.wait(20) == 0, "noiommuctl exited %s: %s" % (p.returncode, p.stderr.read())
            log_.wait("clear_bme", since=mark, dev=CDEV_NOIOMMU_DEV)
            log_.wait("close-iommufd", since=mark)
            env.wait_baseline(base, what="after noiommuctl acquire --hold")

        with env.subtest("noiommuctl batch: acquire, alloc --lease, release on one connection"):
            p = env.ctl_popen(["--json", "batch"])
            p.stdin.write(("acquire %s\n" % GROUP_DEV).encode())
            p.stdin.flush()
            acq = json.loads(readline_timeout(p.stdout, 20))
            assert acq["device"]["backend"] == "group-noiommu", acq
            p.stdin.write(("alloc 4M --lease %s\n" % acq["lease"]).encode())
            p.stdin.flush()
            mem = json.loads(readline_timeout(p.stdout, 20))
            assert mem["addressKind"] == "physical" and mem["size"] == 4 << 20, mem
            mark = log_.mark()
            p.stdin.write(("release %s\n" % acq["lease"]).encode())
            p.stdin.flush()
            assert json.loads(readline_timeout(p.stdout, 20)) == {}, "release output"
            order(log_, mark, ("clear_bme", {"dev": GROUP_DEV}), ("reset", {"dev": GROUP_DEV}),
                  ("unpin", {"name": "noiommud-" + mem["memory"]}))
            p.stdin.write(("release %s\n" % acq["lease"]).encode())
            p.stdin.flush()
            err = json.loads(readline_timeout(p.stdout, 20))
            assert err["error"] == ERR + "NoSuchLease", err
            p.stdin.close()
            assert p.wait(20) == 1, "batch with one failed command must exit 1"
            env.wait_baseline(base, what="after noiommuctl batch")

        with env.subtest("noiommuctl release on its own connection -> NoSuchLease, exit 1"):
            r = env.ctl(["release", "0" * 32])
            assert r.returncode == 1, (r.returncode, r.stderr)
            assert "no lease" in r.stderr and "batch" in r.stderr, r.stderr
            r = env.ctl(["acquire", "0000:00:03.0/.."])
            assert r.returncode == 2 and "Invalid PCI address" in r.stderr, (r.returncode, r.stderr)

        with env.subtest("deviceBackends: the group path forced for a case-3 device, end to end"):
            free = hugepages_free()
            env.write_config(dict(DEFAULT_CONFIG, deviceBackends={CDEV_NOIOMMU_DEV: "group-noiommu",
                                                                   GROUP_DEV: "cdev-noiommu"}))
            env.restart_mock_daemon()
            # the unusable entry is reported at load
            warning = "deviceBackends asks for cdev-noiommu for %s" % GROUP_DEV
            wait_until(lambda: warning in env.read_log("noiommud") or
                       env.journal.find(MESSAGE=lambda m: m is not None and warning in m),
                       10, "the daemon's warning about %s" % GROUP_DEV)

            c = env.connect(uid=ALLOWED_UID)
            reply, _ = c.call_ok(LIST)
            devs = {d["address"]: d for d in reply["devices"]}
            d = devs[CDEV_NOIOMMU_DEV]
            assert d["backend"] == "group-noiommu" and d["state"] == "available", d
            assert d["availableBackends"] == ["cdev-noiommu", "group-noiommu"], d
            assert "deviceBackends" in d["backendReason"], d
            d = devs[GROUP_DEV]
            assert d["backend"] is None and d["state"] == "unsupported" and d["backendReason"] is None, d
            assert d["availableBackends"] == ["group-noiommu"], d
            assert d["reason"].startswith("deviceBackends in the daemon's configuration asks for cdev-noiommu") \
                and "IOMMUFD_NOIOMMU" in d["reason"], d
            # the others are untouched
            assert devs[CDEV_NOIOMMU_DEV2]["backend"] == "cdev-noiommu", devs[CDEV_NOIOMMU_DEV2]

            # the forced device goes through the group path: container, group, GET_DEVICE_FD
            mark = log_.mark()
            lease, devfd = acquire(c, CDEV_NOIOMMU_DEV, expect_backend="group-noiommu")
            order(log_, mark, ("open-node", {"kind": "container"}), ("open-node", {"kind": "group"}),
                  ("set-iommu", {"type": "noiommu"}), ("get-device-fd", {"dev": CDEV_NOIOMMU_DEV}),
                  ("send-fd", {"kind": "device"}))
            assert not log_.find("bind", since=mark), "the cdev was bound:\n" + log_.describe(mark)
            mem, memfd = allocate_leased(c, lease["lease"], 2 << 20, "physical")
            check_physical(memfd, mem)
            assert not log_.find("get-pa", since=mark), "GET_PA on the group path"
            mark = log_.mark()
            release(c, lease["lease"])
            order(log_, mark, *teardown_steps(CDEV_NOIOMMU_DEV, [mem["memory"]], "group-noiommu"))
            os.close(memfd)
            os.close(devfd)

            # the device that cannot use its forced backend is not served, and says why
            mark = log_.mark()
            err, params = c.call_error(ACQUIRE, {"device": GROUP_DEV})
            assert err == ERR + "NotSupported" and params["reason"] == d["reason"], (err, params)
            assert not log_.find("open-node", since=mark), log_.describe(mark)
            c.close()

            r = env.ctl(["list"], check=True)
            row = [l for l in r.stdout.splitlines() if l.startswith(GROUP_DEV)]
            assert row and "unsupported" in row[0] and "asks for cdev-noiommu" in row[0], r.stdout

            env.write_config(DEFAULT_CONFIG)
            env.restart_mock_daemon()
            wait_until(lambda: hugepages_free() == free, 10, "hugepages back after the forced lease")

        with env.subtest("nodes and sysfs were opened through the production openat2() path"):
            # The mock traps syscall(SYS_openat2) (tests/mock/vfio-mock.c, do_openat2) and logs
            # the caller's RESOLVE_* flags: vfio_open_node() resolves without symlinks,
            # inventory.c's open_in_root() inside the root. No node was opened by the
            # open(O_PATH|O_NOFOLLOW) fallback, which logs no "via".
            opens = log_.find("open", trapped=1)
            nodes = [e for e in opens if e["path"].startswith("/dev/")]
            assert nodes, "no /dev node opened at all:\n" + log_.describe()
            tried = [e for e in nodes if e.get("via") == "openat2"]
            fallback = [e for e in nodes if e.get("via") != "openat2"]
            if os.environ.get("NOIOMMU_TEST_UNDER_VALGRIND"):
                # valgrind 3.19 does not implement openat2 (ENOSYS for every call, whatever the
                # arguments): under it each node must show the openat2 attempt, then the fallback.
                assert fallback and all(any(t["path"] == e["path"] and t["index"] < e["index"] for t in tried)
                                        for e in fallback), "fallback opens without an openat2 attempt: %r" % nodes
            else:
                assert not fallback, "nodes opened without openat2: %r" % fallback
            for e in tried:
                assert set(e["resolve"].split(",")) == {"no-symlinks", "no-magiclinks"}, e
            for path in ("/dev/vfio/vfio", "/dev/iommu", "/dev/vfio/noiommu-7"):
                assert any(e["path"] == path for e in tried), "%s not opened: %r" % (path, nodes)
            sysfs = [e for e in opens if e.get("via") == "openat2" and e["path"].startswith("/sys/bus/pci/devices/")]
            assert sysfs and all(set(e["resolve"].split(",")) == {"in-root", "no-magiclinks"} for e in sysfs), \
                "inventory's sysfs opens: %r" % sysfs

        with env.subtest("the daemon used no iommufd call outside the allowed set"):
            bad = log_.find("violation") + log_.find("unhandled-ioctl")
            assert not bad, "mock reported: %r" % bad


if __name__ == "__main__":
    run(body)
