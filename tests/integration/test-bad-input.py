#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Hostile and malformed input (security.md §4.2, §10 rows 2, 7, 8, 9): each case is sent by an
unprivileged client on its own connection and must get the documented error and/or a closed
connection; a ProtocolViolation reply is always followed by the close. After every case a second,
simultaneously open connection is still served, nothing was granted, and the daemon's fd count
and HugePages_Free are back at their baseline."""

import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from noiommutest.fixtures import warm_baseline  # noqa: E402

MiB = 1 << 20
PV = H.ERR + "ProtocolViolation"
IP = H.INVALID_PARAMETER
MAX = 64 * 1024            # NOIOMMU_REQUEST_SIZE_MAX, including the NUL


def raw(data):
    return lambda conn: conn.send_raw(data)


def req(obj):
    return raw(json.dumps(obj).encode() + b"\0")


def alloc(**params):
    return req({"method": H.ALLOCATE, "parameters": params})


def with_fds(n, split=False):
    """A valid GetInfo request carrying n fds (dups of a canary memfd). With split, the fds ride
    on the second half of the message instead of its first byte."""
    def send(conn):
        canary = os.memfd_create("itest-canary")
        fds = [canary] + [os.dup(canary) for _ in range(n - 1)]
        msg = json.dumps({"method": H.GET_INFO}).encode() + b"\0"
        try:
            if split:
                conn.send_raw(msg[:10])
                conn.send_raw(msg[10:], fds)
            else:
                conn.send_raw(msg, fds)
        finally:
            for fd in fds:
                os.close(fd)
    return send


def huge_without_nul(n):
    def send(conn):
        conn.send_raw(b'{"method":"' + b"a" * (n - 11))
    return send


def padded_get_info(total):
    """GetInfo padded with spaces so that the message including its NUL is `total` bytes."""
    head = b'{"method":"org.varlink.service.GetInfo"'
    return raw(head + b" " * (total - len(head) - 2) + b"}\0")


class Case:
    def __init__(self, name, send, errors=None, params=None, after="any", reply="required"):
        """errors: acceptable error names (None: no reply expected, only the close);
        params: the exact error parameters (unless the error is ProtocolViolation); after: "open" (must stay usable),
        "closed" (must be closed), "any"; reply: "required", "optional" (close alone is fine)."""
        self.name, self.send, self.errors, self.params = name, send, errors, params
        self.after, self.reply = after, reply


CASES = [
    # framing and JSON
    Case("malformed JSON", raw(b'{"method": "org.varlink.service.GetInfo"\0'), [PV, IP]),
    Case("not JSON at all, invalid UTF-8", raw(b"\xff\xfe\x00"), [PV, IP]),
    Case("invalid UTF-8 inside a string", raw(b'{"method":"org.varlink.service.GetInfo\xff"}\0'), [PV, IP]),
    Case("empty message (a lone NUL)", raw(b"\0"), [PV, IP]),
    Case("non-object JSON: array", raw(b"[1,2,3]\0"), [PV, IP]),
    Case("non-object JSON: string", raw(b'"org.varlink.service.GetInfo"\0'), [PV, IP]),
    Case("non-object JSON: number", raw(b"42\0"), [PV, IP]),
    Case("non-object JSON: null", raw(b"null\0"), [PV, IP]),
    Case("two JSON values in one message", raw(b'{"method":"org.varlink.service.GetInfo"}{}\0'), [PV, IP]),
    Case("missing method", req({"parameters": {}}), [PV, IP]),
    Case("method is not a string", req({"method": 42}), [PV, IP]),
    Case("parameters is not an object", req({"method": H.GET_INFO, "parameters": [1]}), [PV, IP]),
    Case("deeply nested parameters (10000 levels)",
         raw(b'{"method":"org.varlink.service.GetInfo","parameters":{"a":' + b"[" * 10000 + b"]" * 10000
             + b"}}\0"), [PV, IP]),
    Case("duplicate key in parameters",
         raw(b'{"method":"io.noiommud.Broker.AllocateMemory","parameters":{"size":2097152,"size":4194304}}\0'),
         [PV, IP]),
    Case("duplicate method key",
         raw(b'{"method":"org.varlink.service.GetInfo","method":"io.noiommud.Broker.AllocateMemory",'
             b'"parameters":{"size":2097152}}\0'), [PV, IP]),
    # methods
    Case("unknown method", req({"method": "io.noiommud.Broker.Nope"}), [H.METHOD_NOT_FOUND],
         params={"method": "io.noiommud.Broker.Nope"}, after="open"),
    Case("unknown interface", req({"method": "org.example.Foo.Bar"}),
         [H.METHOD_NOT_FOUND, H.INTERFACE_NOT_FOUND], after="open"),
    Case("method name without interface", req({"method": "GetInfo"}),
         [H.METHOD_NOT_FOUND, H.INTERFACE_NOT_FOUND, IP, PV]),
    Case("\\u0000 inside the method name",
         req({"method": "io.noiommud.Broker.ListDevices\u0000.x"}), [H.METHOD_NOT_FOUND, IP, PV]),
    Case("\\u0000 inside the interface name",
         req({"method": H.GET_DESCRIPTION, "parameters": {"interface": "io.noiommud.Broker\u0000x"}}),
         [IP, H.INTERFACE_NOT_FOUND, PV]),
    # parameters of AllocateMemory
    # the daemon refuses any JSON real, anywhere, as a malformed message (security.md §4.2)
    Case("float size", alloc(size=2097152.0), [IP, PV], params={"parameter": "size"}),
    Case("float size in exponent form", raw(b'{"method":"io.noiommud.Broker.AllocateMemory",'
                                            b'"parameters":{"size":2e6}}\0'), [IP, PV],
         params={"parameter": "size"}),
    Case("negative size", alloc(size=-2097152), [IP], params={"parameter": "size"}, after="open"),
    Case("zero size", alloc(size=0), [IP], params={"parameter": "size"}, after="open"),
    Case("size as a string", alloc(size="2M"), [IP], params={"parameter": "size"}, after="open"),
    Case("size null", alloc(size=None), [IP], params={"parameter": "size"}, after="open"),
    Case("size missing", alloc(), [IP], params={"parameter": "size"}, after="open"),
    Case("size 2^64 (beyond int64)", raw(b'{"method":"io.noiommud.Broker.AllocateMemory",'
                                         b'"parameters":{"size":18446744073709551616}}\0'), [IP, PV]),
    Case("size 2^63-1", alloc(size=2**63 - 1), [IP, H.ERR + "OutOfMemory", H.ERR + "LimitExceeded"]),
    Case("size 2^64-2^21 (rounding overflow)", raw(b'{"method":"io.noiommud.Broker.AllocateMemory",'
                                                   b'"parameters":{"size":18446744073707454464}}\0'),
         [IP, PV, H.ERR + "OutOfMemory", H.ERR + "LimitExceeded"]),
    Case("hugepageSize 4096", alloc(size=2 * MiB, hugepageSize=4096),
         [IP, H.ERR + "NotSupported"], after="open"),
    Case("hugepageSize 3 MiB", alloc(size=2 * MiB, hugepageSize=3 * MiB),
         [IP, H.ERR + "NotSupported"], after="open"),
    Case("hugepageSize negative", alloc(size=2 * MiB, hugepageSize=-2 * MiB), [IP], after="open"),
    Case("numaNode 999", alloc(size=2 * MiB, numaNode=999),
         [IP, H.ERR + "NotSupported", H.ERR + "OutOfMemory"], after="open"),
    Case("numaNode -5", alloc(size=2 * MiB, numaNode=-5), [IP, H.ERR + "NotSupported"], after="open"),
    Case("unknown parameter", alloc(size=2 * MiB, bogus=1), [IP], params={"parameter": "bogus"}, after="open"),
    Case("uid in the request body (SO_PEERCRED wins)", alloc(size=2 * MiB, uid=0), [IP],
         params={"parameter": "uid"}, after="open"),
    Case("lease of the wrong type", alloc(size=2 * MiB, lease=7), [IP], params={"parameter": "lease"},
         after="open"),
    Case("FreeMemory with \\u0000 in the id",
         req({"method": H.FREE, "parameters": {"memory": "0123456789abcdef0123456789abcdef\u0000x"}}),
         [IP, PV, H.ERR + "NoSuchMemory"]),
    Case("FreeMemory with a malformed id", req({"method": H.FREE, "parameters": {"memory": "../../x"}}),
         [IP, H.ERR + "NoSuchMemory"], after="open"),
    Case("FreeMemory without id", req({"method": H.FREE, "parameters": {}}), [IP],
         params={"parameter": "memory"}, after="open"),
    Case("GetInfo with a parameter", req({"method": H.GET_INFO, "parameters": {"x": 1}}), [IP], after="open"),
    # size limit
    Case("> 64 KiB without NUL", huge_without_nul(MAX + 1), [PV], after="closed", reply="optional"),
    Case("8 MiB without NUL", huge_without_nul(8 * MiB), [PV], after="closed", reply="optional"),
    Case("64 KiB + 1 including the NUL", padded_get_info(MAX + 1), [PV], after="closed", reply="optional"),
    # file descriptors from the client
    Case("SCM_RIGHTS: 1 fd", with_fds(1), [PV], after="closed"),
    Case("SCM_RIGHTS: 3 fds", with_fds(3), [PV], after="closed"),
    Case("SCM_RIGHTS: 253 fds", with_fds(253), [PV], after="closed"),
    Case("SCM_RIGHTS on the second half of a message", with_fds(2, split=True), [PV], after="closed"),
]


def check_case(env, healthy, base, case):
    a = env.connect(uid=H.ALLOWED_UID)
    try:
        case.send(a)
    except (BrokenPipeError, ConnectionResetError):
        pass                                  # closed while we were still sending: fine
    except socket.timeout:
        raise AssertionError("the daemon neither read the input nor closed the connection")
    reply, fds = a.recv(timeout=10)
    for fd in fds:
        os.close(fd)
    assert not fds, "an error reply carried fds: %r" % reply
    leaked = [l for l in env.daemon_fds().values() if "itest-canary" in l]
    assert not leaked, "client fds were installed in the daemon: %r" % leaked
    if reply is None:
        assert case.reply == "optional", "connection closed without an error reply (wanted one of %s)" % case.errors
        return a
    assert "error" in reply, "expected an error (%s), got %r" % (case.errors, reply)
    assert reply["error"] in case.errors, "got %r, expected one of %s" % (reply, case.errors)
    if case.params is not None and reply["error"] != PV:
        assert reply.get("parameters") == case.params, \
            "error parameters %r, expected %r" % (reply.get("parameters"), case.params)
    if reply["error"] == PV or case.after == "closed":
        rest = a.wait_closed(5)
        assert not rest, "messages after the error: %r" % rest
    elif case.after == "open":
        info, _ = a.call_ok(H.GET_INFO)
        assert "interfaces" in info
    else:
        # either closed or still usable, nothing in between
        try:
            a.send(H.GET_INFO)
            r, _ = a.recv(timeout=10)
            assert r is None or ("parameters" in r and "interfaces" in r["parameters"]), r
        except (BrokenPipeError, ConnectionResetError):
            pass
    return a


def main():
    with H.Environment() as env:
        healthy = env.connect(uid=H.ALLOWED_UID)
        healthy.call_ok(H.GET_INFO)
        base = warm_baseline(env)

        for case in CASES:
            with env.subtest(case.name):
                a = check_case(env, healthy, base, case)
                a.close()
                info, _ = healthy.call_ok(H.GET_INFO, timeout=10)
                env.wait_baseline(base, what=case.name)
                assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=a.pid), \
                    "memory granted for bad input"

        with env.subtest("exactly 64 KiB including the NUL is accepted"):
            a = env.connect(uid=H.ALLOWED_UID)
            padded_get_info(MAX)(a)
            r, _ = a.recv()
            assert r is not None and "interfaces" in r.get("parameters", {}), r
            a.close()

        with env.subtest("a bad message after a good one in the same write"):
            a = env.connect(uid=H.ALLOWED_UID)
            a.send_raw(json.dumps({"method": H.GET_INFO}).encode() + b"\0" + b"[1]\0")
            r1, _ = a.recv()
            assert "interfaces" in r1.get("parameters", {}), r1
            r2, _ = a.recv()
            assert r2 is not None and r2.get("error") in (PV, IP), r2
            a.close()
            env.wait_baseline(base, what="good-then-bad")

        with env.subtest("PROTOCOL_VIOLATION journal record"):
            e = env.wait_journal("PROTOCOL_VIOLATION", NOIOMMUD_CLIENT_UID=1)
            assert e[0].get("NOIOMMUD_REASON"), e[0]

        with env.subtest("the healthy connection and a new allocation still work"):
            healthy.call_ok(H.LIST)
            r, fd = H.allocate(healthy, 2 * MiB)
            os.close(fd)
            healthy.call_ok(H.FREE, {"memory": r["memory"]})
            env.wait_baseline(base, what="end")
            assert not env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_UID=2)


H.run(main)
