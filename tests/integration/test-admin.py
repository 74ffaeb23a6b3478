#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Administration of leases (design.md §4: noiommuctl leases | revoke; the ListLeases and
RevokeLease methods, polkit action io.noiommud.manage), with the vfio mock preloaded into the
real daemon:

  * ListLeases as an allowed uid shows a lease held by another connection: holder uid/gid/pid,
    device, backend, state "active", bytesPinned == the memory mapped into it; a uid without a
    rule gets PermissionDenied;
  * RevokeLease of another connection's lease: {} and the teardown order of a release
    (clear_bme -> reset -> unpin -> munmap -> close-memfd), a LEASE_RELEASED record with
    NOIOMMUD_REASON=revoke, the hugepages come back once the holder closes its fds, the holder's
    connection stays open and its ReleaseDevice gets NoSuchLease, the device can be acquired
    again;
  * RevokeLease of an unknown id -> NoSuchLease, of a malformed id -> InvalidParameter, as a uid
    without a rule -> PermissionDenied;
  * a quarantined device (Bus Master clear does not stick, holder gone): ListLeases shows state
    "quarantined" and holder null; RevokeLease while the fault is on -> DeviceQuarantined and the
    memory stays pinned; with the fault off -> {}, memory freed, device acquirable again;
  * noiommuctl leases (table, --json, "No leases.") and revoke (text, --json) as uid 1.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (BACKENDS, CDEV_NOIOMMU_DEV, GROUP_DEV, RELEASE, DeviceEnvironment,
                            acquire, allocate_leased, order, run)
from harness import (ALLOWED_UID, DENIED_UID, ERR, FREE, INVALID_PARAMETER, hugepages_free,
                     readline_timeout, wait_until)

LIST_LEASES = "io.noiommud.Broker.ListLeases"
REVOKE = "io.noiommud.Broker.RevokeLease"
MiB = 1 << 20


def list_leases(conn):
    reply, fds = conn.call_ok(LIST_LEASES, {})
    assert not fds, "ListLeases reply carried fds"
    assert set(reply) == {"leases", "pool"}, reply
    assert isinstance(reply["leases"], list), reply
    assert reply["pool"] == [], "a pool without hugepagePool configured: %r" % reply
    return reply["leases"]


def find_lease(leases, lease_id):
    got = [l for l in leases if l.get("lease") == lease_id]
    assert len(got) == 1, "lease %s listed %d times in %r" % (lease_id, len(got), leases)
    return got[0]


def wait_free(expected, what):
    wait_until(lambda: hugepages_free() == expected, 10,
               lambda: "HugePages_Free %d, expected %d (%s)" % (hugepages_free(), expected, what))


def body():
    with DeviceEnvironment(hugepages=32) as env:
        log_ = env.mock_log
        base = env.settled_baseline()
        free0 = base[1]

        # the administrator's connection stays open throughout: a baseline with it
        admin = env.connect(uid=ALLOWED_UID)
        assert list_leases(admin) == [], "leases before any was granted"
        base_admin = env.settled_baseline()

        with env.subtest("ListLeases shows another connection's lease; uid 2 is denied"):
            holder = env.connect(uid=ALLOWED_UID)
            acq, devfd = acquire(holder, GROUP_DEV)
            lease = acq["lease"]
            mem, memfd = allocate_leased(holder, lease, 4 * MiB, "physical")
            l = find_lease(list_leases(admin), lease)
            assert l["state"] == "active", l
            assert l["holder"] is not None, l
            h = l["holder"]
            assert (h["uid"], h["gid"], h["pid"]) == (ALLOWED_UID, ALLOWED_UID, holder.pid), \
                "holder %r, expected uid/gid %d pid %d" % (h, ALLOWED_UID, holder.pid)
            assert isinstance(h["unit"], str), h
            assert l["lastHolder"] == {"uid": ALLOWED_UID, "pid": holder.pid}, l
            assert l["device"]["address"] == GROUP_DEV, l
            assert l["device"]["backend"] == BACKENDS[GROUP_DEV], l
            assert l["bytesPinned"] == mem["size"] == 4 * MiB, l
            assert isinstance(l["ageUsec"], int) and 0 <= l["ageUsec"] < 120 * 10**6, l

            denied = env.connect(uid=DENIED_UID)
            err, params = denied.call_error(LIST_LEASES, {})
            assert err == ERR + "PermissionDenied" and params.get("reason") == "denied", (err, params)
            err, params = denied.call_error(REVOKE, {"lease": lease})
            assert err == ERR + "PermissionDenied", (err, params)
            denied.close()
            # the denied attempt changed nothing
            assert find_lease(list_leases(admin), lease)["state"] == "active"

        with env.subtest("RevokeLease of another connection's lease: quiesce first, holder stays"):
            mark = log_.mark()
            reply, fds = admin.call_ok(REVOKE, {"lease": lease})
            assert reply == {} and not fds, (reply, fds)
            name = "noiommud-" + mem["memory"]
            got = order(log_, mark, ("clear_bme", {"dev": GROUP_DEV}), ("reset", {"dev": GROUP_DEV}),
                        ("unpin", {"name": name}), ("munmap", {"name": name}),
                        ("close-memfd", {"name": name}))
            # (only this memory's events: the daemon has memfds of its own, e.g. for state)
            early = [e for e in log_.events(mark) if e["index"] < got[1]["index"] and
                     e["event"] in ("unpin", "munmap", "close-memfd") and e.get("name") == name]
            assert not early, "memory released before the reset: %r" % early
            env.wait_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=lease, NOIOMMUD_REASON="revoke")
            assert all(x["lease"] != lease for x in list_leases(admin)), "revoked lease still listed"

            # The holder still maps nothing but holds the memfd: the pages are its until it lets go.
            assert hugepages_free() == free0 - 2, "HugePages_Free %d" % hugepages_free()
            os.close(memfd)
            os.close(devfd)
            wait_free(free0, "after the holder of the revoked lease closed its fds")

            assert holder.is_open(0.1), "the holder's connection was closed by the revoke"
            err, params = holder.call_error(RELEASE, {"lease": lease})
            assert err == ERR + "NoSuchLease" and params.get("lease") == lease, (err, params)
            err, params = holder.call_error(FREE, {"memory": mem["memory"]})
            assert err == ERR + "NoSuchMemory", (err, params)
            # the device is free again, for the former holder too
            acq2, devfd2 = acquire(holder, GROUP_DEV)
            holder.call_ok(RELEASE, {"lease": acq2["lease"]})
            os.close(devfd2)
            holder.close()
            env.wait_baseline(base_admin, what="after the revoke")

        with env.subtest("RevokeLease: unknown id -> NoSuchLease, malformed id -> InvalidParameter"):
            unknown = "0123456789abcdef0123456789abcdef"
            err, params = admin.call_error(REVOKE, {"lease": unknown})
            assert err == ERR + "NoSuchLease" and params.get("lease") == unknown, (err, params)
            for bad in ("xyz", unknown.upper(), unknown + "0", 42, None):
                err, params = admin.call_error(REVOKE, {"lease": bad})
                assert err == INVALID_PARAMETER and params.get("parameter") == "lease", (bad, err, params)
            err, params = admin.call_error(REVOKE, {})
            assert err == INVALID_PARAMETER, (err, params)
            err, params = admin.call_error(LIST_LEASES, {"bogus": 1})
            assert err == INVALID_PARAMETER, (err, params)
            assert admin.is_open(0.05), "admin connection closed after an invalid parameter"

        with env.subtest("quarantine cleared by an administrator"):
            env.set_fault("bme-stuck", GROUP_DEV)
            try:
                holder = env.connect(uid=ALLOWED_UID)
                holder_pid = holder.pid
                acq, devfd = acquire(holder, GROUP_DEV)
                lease = acq["lease"]
                mem, memfd = allocate_leased(holder, lease, 2 * MiB, "physical")
                os.close(memfd)
                os.close(devfd)
                holder.close()          # the holder goes away; its quiesce fails
                env.wait_journal("QUIESCE_FAILED", NOIOMMUD_LEASE_ID=lease)
                l = find_lease(list_leases(admin), lease)
                assert l["state"] == "quarantined", l
                assert l["holder"] is None, l
                assert l["lastHolder"] == {"uid": ALLOWED_UID, "pid": holder_pid}, l
                assert l["bytesPinned"] == 2 * MiB, l
                env.settled_baseline()
                assert hugepages_free() == free0 - 1, "HugePages_Free %d" % hugepages_free()

                mark = log_.mark()
                err, params = admin.call_error(REVOKE, {"lease": lease})
                assert err == ERR + "DeviceQuarantined" and params.get("device") == GROUP_DEV, (err, params)
                log_.wait("bme-stuck", since=mark, dev=GROUP_DEV)
                name = "noiommud-" + mem["memory"]
                gone = [e for e in log_.events(mark) if e["event"] == "reset" or
                        (e["event"] in ("unpin", "munmap") and e.get("name") == name) or
                        (e["event"] == "close-memfd" and e.get("last") == "1" and e.get("name") == name)]
                assert not gone, "a failed retry released something: %r" % gone
                assert hugepages_free() == free0 - 1, "memory freed although still quarantined"
                assert find_lease(list_leases(admin), lease)["state"] == "quarantined"
                c = env.connect(uid=ALLOWED_UID)
                err, _ = c.call_error("io.noiommud.Broker.AcquireDevice", {"device": GROUP_DEV})
                assert err == ERR + "DeviceQuarantined", err
                c.close()
            finally:
                env.set_fault("bme-stuck", None)

            mark = log_.mark()
            reply, _ = admin.call_ok(REVOKE, {"lease": lease})
            assert reply == {}, reply
            order(log_, mark, ("clear_bme", {"dev": GROUP_DEV}), ("reset", {"dev": GROUP_DEV}),
                  ("unpin", {"name": name}), ("close-memfd", {"name": name, "last": 1}))
            env.wait_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=lease, NOIOMMUD_REASON="revoke")
            wait_free(free0, "after the quarantine was cleared")
            assert all(x["lease"] != lease for x in list_leases(admin)), "cleared lease still listed"
            c = env.connect(uid=ALLOWED_UID)
            acq2, devfd2 = acquire(c, GROUP_DEV)
            c.call_ok(RELEASE, {"lease": acq2["lease"]})
            os.close(devfd2)
            c.close()
            env.wait_baseline(base_admin, what="after clearing the quarantine")

        admin.close()

        with env.subtest("noiommuctl leases and revoke as uid 1"):
            r = env.ctl(["leases"], check=True)
            assert r.stdout == "No leases.\n", repr(r.stdout)
            r = env.ctl(["--json", "leases"], check=True)
            assert json.loads(r.stdout) == {"leases": [], "pool": []}, r.stdout

            p = env.ctl_popen(["--json", "batch"])
            p.stdin.write(("acquire %s\n" % CDEV_NOIOMMU_DEV).encode())
            p.stdin.flush()
            acq = json.loads(readline_timeout(p.stdout, 20))
            assert "lease" in acq, acq
            lease = acq["lease"]
            p.stdin.write(("alloc 2M --lease %s\n" % lease).encode())
            p.stdin.flush()
            mem = json.loads(readline_timeout(p.stdout, 20))
            assert "memory" in mem, mem

            r = env.ctl(["--json", "leases"], check=True)
            lines = r.stdout.splitlines()
            assert len(lines) == 1, "--json leases printed %d lines: %r" % (len(lines), r.stdout)
            l = find_lease(json.loads(lines[0])["leases"], lease)
            assert l["holder"]["pid"] == p.pid and l["bytesPinned"] == 2 * MiB, l

            r = env.ctl(["leases"], check=True)
            rows = r.stdout.splitlines()
            assert rows[0].split() == ["LEASE", "DEVICE", "BACKEND", "STATE", "UID", "PID", "UNIT",
                                       "PINNED", "AGE"], rows
            row = [x for x in rows[1:] if x.startswith(lease)]
            assert len(row) == 1, r.stdout
            cells = row[0].split()
            assert cells[:6] == [lease, CDEV_NOIOMMU_DEV, "cdev-noiommu", "active", str(ALLOWED_UID),
                                 str(p.pid)], cells
            assert cells[7] == "2M", cells

            r = env.ctl(["leases"], uid=DENIED_UID)
            assert r.returncode == 1 and "PermissionDenied" in r.stderr, (r.returncode, r.stderr)

            mark = log_.mark()
            r = env.ctl(["--json", "revoke", lease], check=True)
            assert r.stdout == "{}\n", repr(r.stdout)
            order(log_, mark, ("clear_bme", {"dev": CDEV_NOIOMMU_DEV}), ("reset", {"dev": CDEV_NOIOMMU_DEV}),
                  ("unpin", {"name": "noiommud-" + mem["memory"]}))
            env.wait_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=lease, NOIOMMUD_REASON="revoke")

            # the batch's own connection is still there, and its lease is gone
            p.stdin.write(("release %s\n" % lease).encode())
            p.stdin.flush()
            rel = json.loads(readline_timeout(p.stdout, 20))
            assert rel.get("error") == ERR + "NoSuchLease", rel

            r = env.ctl(["--json", "revoke", lease])
            assert r.returncode == 1, r
            assert json.loads(r.stdout)["error"] == ERR + "NoSuchLease", r.stdout
            assert "it has ended already" in r.stderr, r.stderr
            r = env.ctl(["revoke", "nothex"])
            assert r.returncode == 2, r

            p.stdin.close()
            p.wait(20)
            wait_free(free0, "after the revoked batch client exited")

            # a text-mode revoke
            p = env.ctl_popen(["--json", "batch"])
            p.stdin.write(("acquire %s\n" % CDEV_NOIOMMU_DEV).encode())
            p.stdin.flush()
            lease = json.loads(readline_timeout(p.stdout, 20))["lease"]
            r = env.ctl(["revoke", lease], check=True)
            assert r.stdout == "Revoked lease %s.\n" % lease, repr(r.stdout)
            p.stdin.close()
            p.wait(20)
            r = env.ctl(["leases"], check=True)
            assert r.stdout == "No leases.\n", repr(r.stdout)
            env.wait_baseline(base, what="after the noiommuctl checks")


if __name__ == "__main__":
    run(body)
