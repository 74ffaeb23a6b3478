#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Varlink conformance of the daemon, on a raw socket (https://varlink.org/Method-Call):

  * a call with "oneway": true never gets a reply: not for a method that would succeed, not for
    an unknown method or interface, not for "upgrade", and not for AllocateMemory or
    AcquireDevice, which do nothing at all when called oneway (their reply would carry fds
    nobody reads: nothing is allocated, nothing is leased). Proved the way a spec-following
    client would notice: the next normal call on the same connection gets its own reply, and
    nothing else arrives;
  * Monitor, which streams, answers org.varlink.service.ExpectedMore without "more";
  * the same calls without oneway still get their error replies (so the checks above can fail).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MONITOR = "io.noiommud.Broker.Monitor"
ACQUIRE = "io.noiommud.Broker.AcquireDevice"
EXPECTED_MORE = "org.varlink.service.ExpectedMore"
MiB = 1 << 20


def assert_next_reply_is_get_info(c, what):
    """The first message after the oneway call must be GetInfo's reply, and nothing after it."""
    c.send(H.GET_INFO)
    msg, fds = c.recv()
    assert msg is not None, "%s: the connection was closed" % what
    assert not fds, "%s: fds arrived: %r" % (what, msg)
    assert "error" not in msg and "interfaces" in msg.get("parameters", {}), \
        "%s: a stray reply arrived where GetInfo's was expected: %r" % (what, msg)
    try:
        extra, fds = c.recv(timeout=0.3)
    except AssertionError:
        return                                          # nothing more: as it must be
    raise AssertionError("%s: an unexpected message after GetInfo's reply: %r" % (what, extra))


def oneway_case(env, what, method, parameters=None, **extra):
    with env.subtest("oneway %s: no reply, the next call gets its own" % what):
        base = env.settled_baseline()
        c = env.connect(uid=H.ALLOWED_UID)
        c.send(method, parameters, oneway=True, **extra)
        assert_next_reply_is_get_info(c, what)
        c.close()
        env.wait_baseline(base, what=what)
        env.assert_daemon_alive()


def main():
    with H.Environment(hugepages=4) as env:
        with env.subtest("control: without oneway, the same calls get their errors"):
            c = env.connect(uid=H.ALLOWED_UID)
            err, params = c.call_error(H.ERR + "NoSuchMethod")
            assert err == H.METHOD_NOT_FOUND, (err, params)
            err, params = c.call_error("org.example.Nope.Method")
            assert err == H.INTERFACE_NOT_FOUND, (err, params)
            err, params = c.call_error(H.GET_INFO, upgrade=True)
            assert err == H.INVALID_PARAMETER and params == {"parameter": "upgrade"}, (err, params)
            c.close()

        oneway_case(env, "GetInfo", H.GET_INFO)
        oneway_case(env, "ListDevices (polkit-checked)", H.LIST)
        oneway_case(env, "unknown method", H.ERR + "NoSuchMethod")
        oneway_case(env, "unknown interface", "org.example.Nope.Method")
        oneway_case(env, "upgrade", H.GET_INFO, upgrade=True)
        oneway_case(env, "invalid parameters", H.ALLOCATE, {"size": "big"})
        oneway_case(env, "Monitor without more", MONITOR, {})
        oneway_case(env, "Monitor with more", MONITOR, {}, more=True)
        oneway_case(env, "AcquireDevice", ACQUIRE, {"device": "0000:00:04.0"})

        with env.subtest("oneway AllocateMemory allocates nothing and answers nothing"):
            base = env.settled_baseline()
            free = H.hugepages_free()
            assert free >= 1, "no free 2 MiB hugepage to notice an allocation by: %d" % free
            c = env.connect(uid=H.ALLOWED_UID)
            c.send(H.ALLOCATE, {"size": 2 * MiB}, oneway=True)
            assert_next_reply_is_get_info(c, "AllocateMemory")
            assert H.hugepages_free() == free, \
                "oneway AllocateMemory took pages: HugePages_Free %d, was %d" % (H.hugepages_free(), free)
            # and the connection still serves a real allocation
            r, fds = c.call_ok(H.ALLOCATE, {"size": 2 * MiB})
            assert len(fds) == 1 and os.fstat(fds[0]).st_size == 2 * MiB, (r, fds)
            os.close(fds[0])
            c.close()
            env.wait_baseline(base, what="after oneway AllocateMemory")

        with env.subtest("oneway calls pipelined in one write: only the normal call is answered"):
            c = env.connect(uid=H.ALLOWED_UID)
            data = b"".join(json.dumps(m).encode() + b"\0" for m in (
                {"method": H.ERR + "NoSuchMethod", "oneway": True},
                {"method": H.ALLOCATE, "parameters": {"size": 2 * MiB}, "oneway": True},
                {"method": H.LIST, "oneway": True},
                {"method": H.LIST}))
            c.send_raw(data)
            msg, fds = c.recv()
            assert msg == {"parameters": {"devices": []}} and not fds, msg
            try:
                extra, _ = c.recv(timeout=0.3)
            except AssertionError:
                extra = None
            assert extra is None, "a stray reply: %r" % extra
            c.close()

        with env.subtest("Monitor without more: org.varlink.service.ExpectedMore"):
            c = env.connect(uid=H.ALLOWED_UID)
            err, params = c.call_error(MONITOR, {})
            assert err == EXPECTED_MORE and params == {}, (err, params)
            # "more": false is the same as no "more"
            err, params = c.call_error(MONITOR, {}, more=False)
            assert err == EXPECTED_MORE, (err, params)
            # the connection is still usable
            info, _ = c.call_ok(H.GET_INFO)
            assert "interfaces" in info, info
            c.close()

        with env.subtest("org.varlink.service declares ExpectedMore"):
            c = env.connect(uid=H.ALLOWED_UID)
            d, _ = c.call_ok(H.GET_DESCRIPTION, {"interface": "org.varlink.service"})
            assert "error ExpectedMore ()" in d["description"], d["description"]
            c.close()


H.run(main)
