#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Fail closed without polkit: a bus without polkitd (ServiceUnknown) gives PermissionDenied
{reason: "polkit-unavailable"} and a POLICY_UNAVAILABLE record, and the daemon stays up; polkitd
appearing later is used without a restart; an unreachable bus denies; a restarted bus is
reconnected to."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MiB = 1 << 20


def main():
    with H.Environment(polkit=False) as env:
        base = env.settled_baseline(H.hugepages_free())

        with env.subtest("no polkitd on the bus: PermissionDenied polkit-unavailable"):
            c = env.connect(uid=H.ALLOWED_UID)
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "PermissionDenied", (err, params)
            assert params == {"reason": "polkit-unavailable"}, params
            assert H.hugepages_free() == base[1]
            e = env.wait_journal("POLICY_UNAVAILABLE")
            assert e[0].get("NOIOMMUD_POLKIT_ACTION") in (None, "io.noiommud.allocate-memory"), e
            assert not env.find_journal("MEMORY_GRANTED")
            env.assert_daemon_alive()

        with env.subtest("ListDevices fails closed too"):
            err, params = c.call_error(H.LIST)
            assert err == H.ERR + "PermissionDenied", (err, params)
            assert params == {"reason": "polkit-unavailable"}, params

        with env.subtest("the daemon still answers GetInfo on the same and new connections"):
            c.call_ok(H.GET_INFO)
            d = env.connect(uid=H.DENIED_UID)
            d.call_ok(H.GET_INFO)
            err, params = d.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert params == {"reason": "polkit-unavailable"}, params
            d.close()

        with env.subtest("polkitd started later is used without restarting the daemon"):
            env.start_polkitd()
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            c.call_ok(H.FREE, {"memory": r["memory"]})
            env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)
            c.close()

        with env.subtest("polkitd killed: denied again, daemon up"):
            env.stop_polkitd()
            c = env.connect(uid=H.ALLOWED_UID)
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "PermissionDenied" and params == {"reason": "polkit-unavailable"}, \
                (err, params)
            c.close()

        with env.subtest("bus restarted (with polkitd): the daemon reconnects and grants"):
            env.restart_bus()
            env.start_polkitd()

            def granted():
                c = env.connect(uid=H.ALLOWED_UID)
                try:
                    reply, fds = c.call(H.ALLOCATE, {"size": 2 * MiB})
                    for fd in fds:
                        os.close(fd)
                    if "error" in reply:
                        assert reply["error"] == H.ERR + "PermissionDenied", reply
                        return False
                    return True
                finally:
                    c.close()
            # each attempt while the daemon reconnects must be a clean deny; one must succeed
            H.wait_until(granted, 20, "a grant after the bus restart", interval=0.2)
            env.assert_daemon_alive()

        with env.subtest("bus address unreachable: denied, daemon up"):
            env.restart_daemon(env_overrides={"DBUS_SYSTEM_BUS_ADDRESS":
                                              "unix:path=" + os.path.join(env.tmp, "no-such-bus")})
            c = env.connect(uid=H.ALLOWED_UID)
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "PermissionDenied", (err, params)
            assert params.get("reason") in ("polkit-unavailable", "error"), params
            c.call_ok(H.GET_INFO)
            c.close()
            env.assert_daemon_alive()

        H.wait_until(lambda: H.hugepages_free() == base[1], 10, "HugePages_Free back at the start value")


H.run(main)
