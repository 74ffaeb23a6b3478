#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Clients that go away while polkit is deciding (security.md §10 rows 4, 6, 21): the real
polkitd is stopped with SIGSTOP, a client sends AllocateMemory (the CheckAuthorization call is
seen on the bus by dbus-monitor), then disconnects or dies, then polkitd continues. Nothing may
be granted or left behind (daemon fd count, HugePages_Free), the pending check should be
cancelled, other clients are served meanwhile and afterwards. A client whose connecting process
died while its socket lives on is denied with reason "subject-gone"."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from noiommutest.fixtures import served  # noqa: E402

MiB = 1 << 20


def wait_check_sent(env, before, n=1):
    H.wait_until(lambda: env.monitor_count("CheckAuthorization") >= before + n, 10,
                 lambda: "%d CheckAuthorization call(s) on the bus (seen %d)"
                 % (n, env.monitor_count("CheckAuthorization") - before))


def main():
    with H.Environment() as env:
        env.start_bus_monitor()
        free0 = H.hugepages_free()
        served(env)
        base = env.settled_baseline(free0)
        gone = []          # pids of clients that must never be granted anything

        with env.subtest("socket closed while polkitd is stopped (process alive); others served meanwhile"):
            n0 = env.monitor_count("CheckAuthorization")
            c0 = env.monitor_count("CancelCheckAuthorization")
            with env.polkitd_stopped():
                c = env.connect(uid=H.ALLOWED_UID)
                gone.append(c.pid)
                c.send(H.ALLOCATE, {"size": 4 * MiB})
                wait_check_sent(env, n0)
                h = env.connect(uid=H.ALLOWED_UID)
                info, _ = h.call_ok(H.GET_INFO, timeout=5)
                h.close()
                c.close(keep_process=True)
                # give the daemon the chance to see the EOF (and cancel) before polkitd answers
                try:
                    H.wait_until(lambda: env.monitor_count("CancelCheckAuthorization") > c0, 3, "cancel")
                    cancelled = True
                except AssertionError:
                    cancelled = False
            served(env)
            env.wait_baseline(base, what="after polkitd answered the abandoned check")
            c.end_process()
            assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=gone[-1]), \
                "memory granted to a client that had disconnected"

        with env.subtest("the abandoned check was cancelled (CancelCheckAuthorization)"):
            cancelled = cancelled or env.monitor_count("CancelCheckAuthorization") > c0
            assert cancelled, "no CancelCheckAuthorization after the client disconnected (security.md §3.8)"

        with env.subtest("client process killed while polkitd is stopped"):
            n0 = env.monitor_count("CheckAuthorization")
            with env.polkitd_stopped():
                c = env.connect(uid=H.ALLOWED_UID)
                gone.append(c.pid)
                c.send(H.ALLOCATE, {"size": 4 * MiB})
                wait_check_sent(env, n0)
                c.close(keep_process=True)
                c.end_process(kill=True)
            served(env)
            env.wait_baseline(base, what="after the killed client")
            assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=gone[-1])

        with env.subtest("connecting process dies, socket stays open: subject-gone"):
            n0 = env.monitor_count("CheckAuthorization")
            with env.polkitd_stopped():
                c = env.connect(uid=H.ALLOWED_UID)
                gone.append(c.pid)
                c.send(H.ALLOCATE, {"size": 4 * MiB})
                wait_check_sent(env, n0)
                c.end_process(kill=True)       # the socket lives on in this (root) process
            reply, fds = c.recv(timeout=30)
            for fd in fds:
                os.close(fd)
            assert reply is not None, "connection closed instead of a PermissionDenied reply"
            assert not fds, "fds sent for a dead subject"
            assert reply.get("error") == H.ERR + "PermissionDenied", reply
            assert reply.get("parameters") == {"reason": "subject-gone"}, reply
            c.close()
            env.wait_baseline(base, what="after subject-gone")
            assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=gone[-1])

        with env.subtest("connecting process already dead when the request arrives: subject-gone"):
            c = env.connect(uid=H.ALLOWED_UID)
            gone.append(c.pid)
            pid = c.pid
            c.end_process(kill=True)
            H.wait_until(lambda: H.process_state(pid) is None, 5, "the helper to be reaped")
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB}, timeout=30)
            assert err == H.ERR + "PermissionDenied" and params == {"reason": "subject-gone"}, (err, params)
            c.close()
            env.wait_baseline(base, what="after the dead-connector request")
            e = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=pid)[0]
            assert e.get("NOIOMMUD_REASON") == "subject-gone", e

        with env.subtest("per-uid cap: the 5th pending check of a uid is LimitExceeded at once"):
            n0 = env.monitor_count("CheckAuthorization")
            with env.polkitd_stopped():
                pending = [env.connect(uid=H.ALLOWED_UID) for _ in range(4)]
                for c in pending:
                    gone.append(c.pid)
                    c.send(H.ALLOCATE, {"size": 2 * MiB})
                wait_check_sent(env, n0, 4)
                extra = env.connect(uid=H.ALLOWED_UID)
                gone.append(extra.pid)
                err, params = extra.call_error(H.ALLOCATE, {"size": 2 * MiB}, timeout=5)
                assert err == H.ERR + "LimitExceeded", (err, params)
                assert params == {"limit": "polkit-checks-per-uid"}, params
                env.wait_journal("LIMIT_EXCEEDED", NOIOMMUD_CLIENT_PID=extra.pid)
                extra.close()
                # other uids are not affected by uid 1's cap
                others = [env.connect(uid=u) for u in (1000, 1001, 1002, 1003) for _ in range(4)]
                for c in others:
                    gone.append(c.pid)
                    c.send(H.ALLOCATE, {"size": 2 * MiB})
                wait_check_sent(env, n0, 4 + len(others))
                for i, c in enumerate(pending + others):      # half close, half die
                    c.close(keep_process=bool(i % 2))
                for c in pending + others:
                    c.end_process(kill=True)
            served(env)
            env.wait_baseline(base, what="after 20 abandoned checks")
            for pid in gone:
                assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=pid), pid

        with env.subtest("a new client is served normally"):
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, 4 * MiB)
            assert H.hugepages_free() == base[1] - 2
            os.close(fd)
            c.close()
            env.wait_baseline(base, what="end")


H.run(main)
