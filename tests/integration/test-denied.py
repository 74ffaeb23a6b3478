#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A user the polkit rules do not allow (uid 2, inactive subject, default "no") is denied:
PermissionDenied {reason: "denied"}, no fds in the reply, an AUTHZ_DENIED record, no hugepages
taken; an auth_admin answer (uid 3, no agent) is InteractiveAuthenticationRequired; a uid with no
passwd entry is denied too."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MiB = 1 << 20


def main():
    with H.Environment() as env:
        free0 = H.hugepages_free()
        w = env.connect(uid=H.DENIED_UID)
        w.call(H.ALLOCATE, {"size": 2 * MiB})           # warm-up: bus connection etc.
        w.close()
        base = env.settled_baseline(free0)

        with env.subtest("uid 2: PermissionDenied {reason: denied}, no fds, AUTHZ_DENIED"):
            c = env.connect(uid=H.DENIED_UID)
            err, params = c.call_error(H.ALLOCATE, {"size": 4 * MiB})   # asserts: no SCM_RIGHTS
            assert err == H.ERR + "PermissionDenied", (err, params)
            assert params == {"reason": "denied"}, params
            assert H.hugepages_free() == base[1], "hugepages taken by a denied request"
            e = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=c.pid)
            assert len(e) == 1, e
            e = e[0]
            want = {"NOIOMMUD_CLIENT_UID": "2", "NOIOMMUD_CLIENT_GID": "2",
                    "NOIOMMUD_POLKIT_ACTION": "io.noiommud.allocate-memory",
                    "NOIOMMUD_POLKIT_RESULT": "denied",
                    "NOIOMMUD_CLIENT_START_TIME": str(H.process_start_time(c.pid))}
            bad = {k: (e.get(k), v) for k, v in want.items() if e.get(k) != v}
            assert not bad, "AUTHZ_DENIED fields (got, want): %r" % bad
            assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)
            assert not env.find_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)

        with env.subtest("the denied connection stays usable"):
            info, _ = c.call_ok(H.GET_INFO)
            assert "io.noiommud.Broker" in info["interfaces"]
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "PermissionDenied", err
            assert len(env.find_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=c.pid)) >= 1
            c.close()
            env.wait_baseline(base, what="after the denied client left")

        with env.subtest("noiommuctl --json alloc as uid 2: exit 1 and an error line"):
            r = env.ctl(["--json", "alloc", "2M"], uid=H.DENIED_UID)
            assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
            out = json.loads(r.stdout.strip().splitlines()[-1])
            assert out == {"error": H.ERR + "PermissionDenied", "parameters": {"reason": "denied"}}, out
            env.wait_baseline(base, what="after noiommuctl")

        with env.subtest("uid 3 (auth_admin, no agent): InteractiveAuthenticationRequired"):
            c = env.connect(uid=H.CHALLENGE_UID)
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "InteractiveAuthenticationRequired", (err, params)
            e = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=c.pid)[0]
            assert e.get("NOIOMMUD_POLKIT_RESULT") == "challenge", e
            c.close()
            env.wait_baseline(base, what="after the challenged client left")

        with env.subtest("uid 4242 (no passwd entry): denied, nothing granted"):
            c = env.connect(uid=4242)
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "PermissionDenied", (err, params)
            assert params.get("reason") in ("denied", "error"), params
            assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)
            c.close()
            env.wait_baseline(base, what="after uid 4242 left")

        with env.subtest("the allowed user is still served"):
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            c.close()
            env.wait_baseline(base, what="after the allowed client left")


H.run(main)
