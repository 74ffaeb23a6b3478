#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The project's polkit action file is not installed: polkitd answers "Action ... is not
registered", which the daemon must treat as a deny (PermissionDenied {reason:
"action-not-registered"}) and log loudly (POLICY_UNAVAILABLE). Installing the file later takes
effect without restarting anything."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MiB = 1 << 20


def main():
    with H.Environment(install_policy=False) as env:
        base = env.settled_baseline(H.hugepages_free())

        with env.subtest("AllocateMemory: PermissionDenied action-not-registered"):
            c = env.connect(uid=H.ALLOWED_UID)
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "PermissionDenied", (err, params)
            assert params == {"reason": "action-not-registered"}, params
            assert H.hugepages_free() == base[1]

        with env.subtest("a loud POLICY_UNAVAILABLE record names the reason"):
            e = env.wait_journal("POLICY_UNAVAILABLE", NOIOMMUD_REASON="action-not-registered")[0]
            assert int(e.get("PRIORITY", "6")) <= 3, "misconfiguration logged at PRIORITY %s" % e.get("PRIORITY")
            assert e.get("NOIOMMUD_POLKIT_ACTION") == "io.noiommud.allocate-memory", e
            assert not env.find_journal("MEMORY_GRANTED")

        with env.subtest("ListDevices: PermissionDenied action-not-registered"):
            err, params = c.call_error(H.LIST)
            assert err == H.ERR + "PermissionDenied", (err, params)
            assert params == {"reason": "action-not-registered"}, params

        with env.subtest("action file installed live: granted"):
            env.set_policy_installed(True)

            def granted():
                reply, fds = c.call(H.ALLOCATE, {"size": 2 * MiB})
                for fd in fds:
                    os.close(fd)
                if "error" in reply:
                    assert reply.get("parameters") == {"reason": "action-not-registered"}, reply
                    return None
                return reply["parameters"]
            r = H.wait_until(granted, 15, "polkitd to load the action file", interval=0.1)
            c.call_ok(H.FREE, {"memory": r["memory"]})
            c.close()
            env.wait_baseline(base, what="end")


H.run(main)
