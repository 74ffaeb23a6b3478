#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Linux audit failing (security.md §9.3, §10 row 26), with the real polkitd and the vfio fixture
backend:

  * the daemon without CAP_AUDIT_WRITE (setpriv drops it from the bounding set; audit_open()
    works, every send fails with EPERM) under the default "auditFailure": "deny": polkit says
    yes, but nothing is granted: PermissionDenied {reason: "audit-failed"}, no fds, no hugepage,
    no device opened, and the journal records the denial with ERRNO=1;
  * the same with "auditFailure": "log": granted, and the failure is in the journal (ERRNO=1);
  * the daemon as root of a user namespace (the kernel refuses audit there with ECONNREFUSED,
    which means "no audit here", not a failure): granted under "deny", journal only.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from device_harness import (ACQUIRE, CDEV_IOMMU_DEV, DEFAULT_CONFIG, GROUP_DEV, RELEASE,  # noqa: E402
                            DeviceEnvironment, acquire)

MiB = 1 << 20
NO_AUDIT_WRITE = "setpriv --bounding-set=-audit_write"
USERNS = "%s %s" % (H.PYTHON, os.path.join(H.HERE, "userns-exec.py"))


def node_opens(log_, since):
    return [e for e in log_.events(since) if e["event"] in ("open-node", "get-device-fd", "bind")]


def daemon_caps(env):
    with open("/proc/%d/status" % env.daemon_pid) as f:
        return {k: int(v, 16) for k, v in (line.split(":\t") for line in f if line.startswith("Cap"))}


def journal_says(env, text):
    return env.journal.find(None, MESSAGE=lambda m: m is not None and text in m)


def restart(env, wrapper, config):
    os.environ["NOIOMMU_TEST_WRAPPER"] = wrapper
    try:
        env.write_config(config)
        env.restart_mock_daemon()
    finally:
        os.environ.pop("NOIOMMU_TEST_WRAPPER", None)


def body():
    with DeviceEnvironment(hugepages=8, daemon=False) as env:
        log_ = env.mock_log
        CAP_AUDIT_WRITE = 1 << 29

        with env.subtest("without CAP_AUDIT_WRITE, auditFailure deny (default): nothing granted"):
            restart(env, NO_AUDIT_WRITE, DEFAULT_CONFIG)
            assert not daemon_caps(env)["CapEff"] & CAP_AUDIT_WRITE, "the daemon still has CAP_AUDIT_WRITE"
            base = env.settled_baseline()
            c = env.connect(uid=H.ALLOWED_UID)
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB})      # asserts: no SCM_RIGHTS
            assert err == H.ERR + "PermissionDenied" and params == {"reason": "audit-failed"}, (err, params)
            e = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=c.pid,
                                 NOIOMMUD_POLKIT_ACTION="io.noiommud.allocate-memory")
            assert e[0].get("NOIOMMUD_REASON") == "audit-failed" and e[0].get("ERRNO") == "1", e
            assert not env.find_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)
            assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)

            mark = log_.mark()
            err, params = c.call_error(ACQUIRE, {"device": GROUP_DEV})
            assert err == H.ERR + "PermissionDenied" and params == {"reason": "audit-failed"}, (err, params)
            assert not node_opens(log_, mark), "a device was opened:\n" + log_.describe(mark)
            assert not env.find_journal("LEASE_GRANTED")

            # a denial is still a denial, and the daemon answers what needs no grant
            d = env.connect(uid=H.DENIED_UID)
            err, params = d.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "PermissionDenied" and params == {"reason": "denied"}, (err, params)
            d.close()
            c.call_ok(H.GET_INFO)
            c.close()
            env.wait_baseline(base, what="after the refused grants")
            assert journal_says(env, "refusing the grant (auditFailure=deny)"), "no explanation in the journal"

        with env.subtest("without CAP_AUDIT_WRITE, auditFailure log: granted, the failure journaled"):
            restart(env, NO_AUDIT_WRITE, dict(DEFAULT_CONFIG, auditFailure="log"))
            base = env.settled_baseline()
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            e = env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)
            assert e[0].get("ERRNO") == "1", e
            lease, devfd = acquire(c, CDEV_IOMMU_DEV)
            env.wait_journal("LEASE_GRANTED", NOIOMMUD_LEASE_ID=lease["lease"])
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            os.close(devfd)
            c.close()
            env.wait_baseline(base, what="after the logged grants")

        with env.subtest("user namespace (audit answers ECONNREFUSED): journal only, granted"):
            restart(env, USERNS, DEFAULT_CONFIG)
            with open("/proc/%d/uid_map" % env.daemon_pid) as f:
                assert f.read().split() == ["0", "0", "4294967295"], "the daemon is not in the user namespace"
            base = env.settled_baseline()
            c = env.connect(uid=H.ALLOWED_UID)
            devices, _ = c.call_ok(H.LIST)
            assert GROUP_DEV in [x["address"] for x in devices["devices"]], devices
            e = env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)
            assert e[0].get("ERRNO") == "0", e
            # DEV_ALLOC is refused the same way: still granted
            lease, devfd = acquire(c, CDEV_IOMMU_DEV)
            env.wait_journal("LEASE_GRANTED", NOIOMMUD_LEASE_ID=lease["lease"])
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            os.close(devfd)
            c.close()
            env.wait_baseline(base, what="after the user-namespace grants")

        with env.subtest("with CAP_AUDIT_WRITE again: granted under deny"):
            restart(env, "", DEFAULT_CONFIG)
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            e = env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)
            assert e[0].get("ERRNO") == "0", e
            c.close()

        with env.subtest("a bad auditFailure value stops the daemon with a clear message"):
            env.stop_daemon()
            env.write_config(dict(DEFAULT_CONFIG, auditFailure="maybe"))
            try:
                env.start_mock_daemon()
            except AssertionError as e:
                assert "exited during start-up with 1" in str(e), e
            else:
                raise AssertionError("noiommud started with auditFailure \"maybe\"")
            env.daemon = None                   # it exited, as it should
            assert journal_says(env, '"auditFailure" must be "deny" or "log"'), "no clear message"


H.run(body)
