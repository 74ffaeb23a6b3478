#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The exact CheckAuthorization call (security.md §3.6, §10 rows 2 and 3), read off the private
bus with dbus-monitor while the real polkitd answers: subject unix-process with pid:u (the
connecting process), start-time:t (its real start time, never 0), uid:i (from SO_PEERCRED) and
pidfd:h; the action id; validated details only, plus the client's cgroup path (and unit or
container id when it has them, test-container-identity.py); flags 1 only when the client asked for
interaction; a cancellation id. A uid in the request body never reaches polkit."""

import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MiB = 1 << 20


def check_calls(env):
    """The CheckAuthorization method calls in the dbus-monitor log, each as a dict."""
    text = env.read_log("dbus-monitor", tail=None)
    calls = []
    for m in re.finditer(r"^method call .*member=CheckAuthorization\n((?:[ \t].*\n?)*)", text, re.M):
        body = m.group(1)
        subject = {}
        for k, typ, val in re.findall(r'string "([\w-]+)"\s*\n\s*variant\s+(u?int\d+|string)\s+(\S+)\s*\n', body):
            subject[k] = (typ, val)
        # an fd is printed as "variant file descriptor" followed by inode/type lines
        for k in re.findall(r'string "([\w-]+)"\s*\n\s*variant\s+file descriptor', body):
            subject[k] = ("unix fd", None)
        # top-level arguments are indented by three spaces: action id, flags, cancellation id
        top = re.findall(r'^   string "((?:[^"\\]|\\.)*)"', body, re.M)
        kind = re.search(r'string "([^"]*)"', body)
        uints = re.findall(r"^   uint32 (\d+)\s*$", body, re.M)
        after_action = body.split('   string "%s"' % top[0], 1)[1] if top else ""
        details = dict(re.findall(r'dict entry\(\s*\n\s*string "([^"]*)"\s*\n\s*string "([^"]*)"', after_action))
        calls.append({"kind": kind.group(1) if kind else None, "subject": subject,
                      "action": top[0] if top else None,
                      "details": details, "flags": int(uints[-1]) if uints else None,
                      "cancellation": top[-1] if len(top) > 1 else None, "raw": body})
    return calls


def last_call(env, n_before):
    H.wait_until(lambda: env.monitor_count("CheckAuthorization") > n_before, 10, "a CheckAuthorization call")
    calls = check_calls(env)
    assert len(calls) > n_before, "could not parse the call:\n" + env.read_log("dbus-monitor")
    return calls[-1]


def main():
    with H.Environment() as env:
        env.start_bus_monitor()

        with env.subtest("AllocateMemory: subject pid:u start-time:t uid:i pidfd:h, details, flags 0"):
            c = env.connect(uid=H.ALLOWED_UID)
            n = env.monitor_count("CheckAuthorization")
            r, fd = H.allocate(c, 4 * MiB)
            os.close(fd)
            call = last_call(env, n)
            s = call["subject"]
            assert call["kind"] == "unix-process", call["raw"]
            assert s.get("pid") == ("uint32", str(c.pid)), ("pid", s.get("pid"), c.pid, call["raw"])
            st = H.process_start_time(c.pid)
            assert s.get("start-time") == ("uint64", str(st)), ("start-time", s.get("start-time"), st)
            assert s.get("uid") == ("int32", "1"), ("uid must be int32 1", s.get("uid"))
            assert "pidfd" in s and s["pidfd"][0] == "unix fd", \
                "no pidfd:h in the subject although the kernel has SO_PEERPIDFD: %r" % s
            assert call["action"] == "io.noiommud.allocate-memory", call["action"]
            assert call["flags"] == 0, "flags %r without interactive" % call["flags"]
            assert call["cancellation"], "no cancellation id"
            vals = set(call["details"].values())
            assert str(4 * MiB) in vals and str(2 * MiB) in vals, \
                "details should carry the size and hugepage size: %r" % call["details"]
            for k, v in call["details"].items():
                # the client's containment (identity.c): a cgroup path, escaped to these
                # characters, and a unit name; everything else is a validated value
                if k == "cgroup":
                    assert re.fullmatch(r"/[\w.:@/+,=\\-]*", v), "unescaped cgroup detail %r" % v
                    continue
                assert re.fullmatch(r"[\w.:@-]*", v) or k.startswith("polkit."), "unvalidated detail %r=%r" % (k, v)
            with open("/proc/%d/cgroup" % c.pid) as f:
                lines = dict(line.rstrip("\n").split(":", 2)[1:] for line in f)
            assert call["details"].get("cgroup") in (lines.get(""), lines.get("name=systemd")), \
                "cgroup detail %r, /proc says %r" % (call["details"].get("cgroup"), lines)
            assert "container_id" not in call["details"], call["details"]
            c.call_ok(H.FREE, {"memory": r["memory"]})

        with env.subtest("each request gets its own check (no caching across requests)"):
            n = env.monitor_count("CheckAuthorization")
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            H.wait_until(lambda: env.monitor_count("CheckAuthorization") == n + 1, 10, "a second check")

        with env.subtest("interactive: true sets flag 1"):
            n = env.monitor_count("CheckAuthorization")
            r, fd = H.allocate(c, 2 * MiB, interactive=True)
            os.close(fd)
            call = last_call(env, n)
            assert call["flags"] == 1, "flags %r with interactive: true" % call["flags"]
            c.close()

        with env.subtest("uid in the request body is refused before polkit is asked"):
            d = env.connect(uid=H.DENIED_UID)
            n = env.monitor_count("CheckAuthorization")
            err, params = d.call_error(H.ALLOCATE, {"size": 2 * MiB, "uid": 1})
            assert err == H.INVALID_PARAMETER, (err, params)
            # a following valid request is checked for uid 2, whatever the body said before
            err, params = d.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "PermissionDenied", (err, params)
            call = last_call(env, n)
            assert env.monitor_count("CheckAuthorization") == n + 1, "the refused request reached polkit"
            assert call["subject"].get("uid") == ("int32", "2"), call["subject"]
            assert call["subject"].get("pid") == ("uint32", str(d.pid)), call["subject"]
            d.close()

        with env.subtest("ListDevices asks about io.noiommud.list-devices"):
            e = env.connect(uid=H.DENIED_UID)
            n = env.monitor_count("CheckAuthorization")
            e.call_ok(H.LIST)
            call = last_call(env, n)
            assert call["action"] == "io.noiommud.list-devices", call["action"]
            e.close()


H.run(main)
