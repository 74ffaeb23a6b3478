#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""org.varlink.service (GetInfo, GetInterfaceDescription), ListDevices on a machine without
VFIO, `noiommuctl list`, and pipelined requests answered in order."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def project_version():
    with open(os.path.join(H.SOURCE_ROOT, "meson.build")) as f:
        return re.search(r"version:\s*'([^']+)'", f.read()).group(1)


def read_source(*path):
    with open(os.path.join(H.SOURCE_ROOT, *path)) as f:
        return f.read()


def first_difference(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return "first difference at char %d: got %r, file has %r" % (i, a[i:i + 60], b[i:i + 60])
    return "lengths differ: got %d chars, file has %d (tail got %r, file %r)" % (
        len(a), len(b), a[min(len(a), len(b)):][:60], b[min(len(a), len(b)):][:60])


def main():
    with H.Environment() as env:
        c = env.connect(uid=H.ALLOWED_UID)

        with env.subtest("GetInfo"):
            info, fds = c.call_ok(H.GET_INFO)
            assert not fds, fds
            for key in ("vendor", "product", "version", "url"):
                assert isinstance(info.get(key), str) and info[key], "GetInfo %s: %r" % (key, info)
            assert info["version"] == project_version(), \
                "GetInfo version %r, meson.build says %r" % (info["version"], project_version())
            ifaces = info.get("interfaces")
            assert isinstance(ifaces, list), info
            assert "io.noiommud.Broker" in ifaces and "org.varlink.service" in ifaces, ifaces

        with env.subtest("GetInterfaceDescription io.noiommud.Broker == daemon/io.noiommud.Broker.varlink"):
            d, fds = c.call_ok(H.GET_DESCRIPTION, {"interface": "io.noiommud.Broker"})
            want = read_source("daemon", "io.noiommud.Broker.varlink")
            assert set(d) == {"description"}, d.keys()
            assert d["description"] == want, first_difference(d["description"], want)

        with env.subtest("GetInterfaceDescription org.varlink.service"):
            d, fds = c.call_ok(H.GET_DESCRIPTION, {"interface": "org.varlink.service"})
            assert d["description"].lstrip().find("interface org.varlink.service") >= 0, d
            path = os.path.join(H.SOURCE_ROOT, "daemon", "org.varlink.service.varlink")
            if os.path.exists(path):
                want = read_source("daemon", "org.varlink.service.varlink")
                assert d["description"] == want, first_difference(d["description"], want)

        with env.subtest("GetInterfaceDescription of an unknown interface -> InterfaceNotFound"):
            err, params = c.call_error(H.GET_DESCRIPTION, {"interface": "org.example.Nope"})
            assert err == H.INTERFACE_NOT_FOUND, (err, params)
            assert params == {"interface": "org.example.Nope"}, params

        with env.subtest("ListDevices as the allowed user: []"):
            r, fds = c.call_ok(H.LIST)
            assert r == {"devices": []} and not fds, (r, fds)

        with env.subtest("ListDevices as a user without rules (allow_any yes): []"):
            d = env.connect(uid=H.DENIED_UID)
            r, fds = d.call_ok(H.LIST)
            assert r == {"devices": []}, r
            d.close()

        with env.subtest("noiommuctl list"):
            r = env.ctl(["list"])
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
            assert r.stdout.strip() == "No VFIO devices found.", repr(r.stdout)

        with env.subtest("noiommuctl --json list"):
            r = env.ctl(["--json", "list"])
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
            assert json.loads(r.stdout) == {"devices": []}, repr(r.stdout)

        with env.subtest("pipelined requests in one write are answered in order"):
            reqs = [{"method": H.GET_INFO},
                    {"method": H.LIST},
                    {"method": H.GET_DESCRIPTION, "parameters": {"interface": "io.noiommud.Broker"}},
                    {"method": H.GET_INFO}]
            c.send_raw(b"".join(json.dumps(r).encode() + b"\0" for r in reqs))
            replies = [c.recv() for _ in reqs]
            assert all(not f for _, f in replies), replies
            replies = [r for r, _ in replies]
            assert "interfaces" in replies[0]["parameters"], replies[0]
            assert replies[1]["parameters"] == {"devices": []}, replies[1]
            assert "description" in replies[2]["parameters"], replies[2]
            assert replies[3] == replies[0], replies[3]

        with env.subtest("request split into 1-byte writes"):
            msg = json.dumps({"method": H.LIST}).encode() + b"\0"
            for i in range(len(msg)):
                c.send_raw(msg[i:i + 1])
            r, fds = c.recv()
            assert "error" not in r and r.get("parameters") == {"devices": []}, r

        with env.subtest("root client gets GetInfo"):
            r = env.connect()
            info, _ = r.call_ok(H.GET_INFO)
            assert "io.noiommud.Broker" in info["interfaces"]
            r.close()

        with env.subtest("STARTED journal record"):
            env.wait_journal("STARTED", timeout=5)

        c.close()


H.run(main)
