#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""`noiommuctl cdi generate` against the real daemon with the vfio mock's fixture devices: the
Container Device Interface spec it writes has the structure of CDI 0.5.0 (the newest version
podman 4.3 reads), kind noiommud.io/vfio, a device "socket" and one device per PCI address the
daemon serves ("available" with a backend), each bind-mounting the socket's directory
read-only at the same path and setting NOIOMMUD_SOCKET (and NOIOMMUD_DEVICE), no device nodes,
keys in a stable order; --output writes it atomically with mode 0644; $NOIOMMUD_SOCKET is the
default socket. Real podman runs the spec in tests/containers."""

import json
import os
import re
import stat
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import (CDEV_IOMMU_DEV, CDEV_NOIOMMU_DEV, CDEV_NOIOMMU_DEV2, GROUP_DEV,
                            LIST, UNLISTED_DEV, DeviceEnvironment, run)
from harness import ALLOWED_UID, _pdeathsig, strict_json

# CDI 0.5.0 (pkg/cdi of container-device-interface v0.5.x, which podman 4.3 vendors):
# kind "vendor/class", vendor: letter first, [A-Za-z0-9_.-], letter or digit last; class: letter
# first, [A-Za-z0-9_-]; device names: letter or digit first and last, [A-Za-z0-9_.:-] between.
KIND_RE = re.compile(r"^[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9])?/[A-Za-z][A-Za-z0-9_-]*$")
NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.:-]*[A-Za-z0-9])?$")
ENV_RE = re.compile(r"^[^=]+=.*$")
# The fields a 0.5.0 spec, device, edit and mount may have (specs-go/config.go of v0.5.x).
SPEC_KEYS = {"cdiVersion", "kind", "devices", "containerEdits"}
EDIT_KEYS = {"env", "deviceNodes", "hooks", "mounts"}
MOUNT_KEYS = {"hostPath", "containerPath", "options", "type"}


def check_spec(text, socket_path, addresses):
    spec = strict_json(text)
    # stable key order: what jansson was told, not a hash order
    assert list(spec) == ["cdiVersion", "kind", "devices"], list(spec)
    assert set(spec) <= SPEC_KEYS
    assert spec["cdiVersion"] == "0.5.0", spec["cdiVersion"]
    assert spec["kind"] == "noiommud.io/vfio" and KIND_RE.match(spec["kind"]), spec["kind"]
    names = [d["name"] for d in spec["devices"]]
    assert names == ["socket"] + addresses, "device names %r, expected socket + %r" % (names, addresses)
    assert len(set(names)) == len(names), names
    directory = os.path.dirname(socket_path)
    for d in spec["devices"]:
        assert list(d) == ["name", "containerEdits"], d
        assert NAME_RE.match(d["name"]), "%r is not a valid CDI 0.5.0 device name" % d["name"]
        edits = d["containerEdits"]
        assert list(edits) == ["env", "mounts"] and set(edits) <= EDIT_KEYS, edits
        assert "deviceNodes" not in edits and "hooks" not in edits, edits
        want_env = ["NOIOMMUD_SOCKET=" + socket_path]
        if d["name"] != "socket":
            want_env.append("NOIOMMUD_DEVICE=" + d["name"])
        assert edits["env"] == want_env, (d["name"], edits["env"], want_env)
        assert all(isinstance(e, str) and ENV_RE.match(e) for e in edits["env"]), edits["env"]
        assert len(edits["mounts"]) == 1, edits["mounts"]
        m = edits["mounts"][0]
        assert list(m) == ["hostPath", "containerPath", "type", "options"] and set(m) <= MOUNT_KEYS, m
        # the directory, not the socket: a bind-mounted socket is stale after a daemon restart
        assert m["hostPath"] == directory and m["containerPath"] == directory, m
        assert os.path.isabs(m["hostPath"]), m
        assert m["type"] == "bind", m
        assert all(isinstance(o, str) for o in m["options"]), m
        assert "bind" in m["options"] and "ro" in m["options"] and "rw" not in m["options"], m
    return spec


def served_addresses(env):
    c = env.connect(uid=ALLOWED_UID)
    reply, _ = c.call_ok(LIST)
    c.close()
    return sorted(d["address"] for d in reply["devices"]
                  if d.get("state") == "available" and d.get("backend"))


def ctl_plain(env, args, extra_env, uid=ALLOWED_UID):
    """noiommuctl without --socket, as uid, with extra environment variables."""
    argv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", env.ctl_bin] + args
    e = dict(env.env)
    e.update(extra_env)
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, env=e,
                          cwd="/", preexec_fn=_pdeathsig, universal_newlines=True)


def body():
    with DeviceEnvironment(hugepages=4) as env:
        addresses = served_addresses(env)

        with env.subtest("the fixture's devices that ListDevices reports available"):
            for a in (GROUP_DEV, CDEV_NOIOMMU_DEV, CDEV_IOMMU_DEV, CDEV_NOIOMMU_DEV2):
                assert a in addresses, (a, addresses)
            # A noiommu device the configuration does not name (noiommuDevices) is listed as
            # "disabled", so it gets no CDI name: the spec offers only what a container can get.
            assert UNLISTED_DEV not in addresses, addresses

        with env.subtest("cdi generate to stdout: CDI 0.5.0, kind, names, mounts, env"):
            r = env.ctl(["cdi", "generate"])
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
            assert r.stdout.endswith("}\n"), r.stdout[-20:]
            check_spec(r.stdout, env.socket_path, addresses)
            # and byte for byte the same when nothing changed
            again = env.ctl(["cdi", "generate"])
            assert again.stdout == r.stdout

        with env.subtest("cdi generate --output: atomic, mode 0644, same content"):
            outdir = os.path.join(env.tmp, "cdi")
            os.mkdir(outdir, 0o755)
            os.chown(outdir, ALLOWED_UID, ALLOWED_UID)
            path = os.path.join(outdir, "noiommud.json")
            old = os.umask(0o077)           # the mode must not depend on the caller's umask
            try:
                w = env.ctl(["cdi", "generate", "--output", path])
            finally:
                os.umask(old)
            assert w.returncode == 0 and w.stdout == "", (w.returncode, w.stdout, w.stderr)
            st = os.stat(path)
            assert stat.S_IMODE(st.st_mode) == 0o644, oct(st.st_mode)
            with open(path) as f:
                assert f.read() == r.stdout
            # regenerating replaces the file (a new inode: rename, not rewrite in place)
            w = env.ctl(["cdi", "generate", "--output", path])
            assert w.returncode == 0, (w.returncode, w.stderr)
            assert os.stat(path).st_ino != st.st_ino, "the spec was rewritten in place"
            assert os.listdir(outdir) == ["noiommud.json"], os.listdir(outdir)   # no temp files
            # a directory we may not write: an error, and nothing left behind
            w = env.ctl(["cdi", "generate", "--output", os.path.join(env.tmp, "journal", "x.json")])
            assert w.returncode == 1 and "Failed to write" in w.stderr, (w.returncode, w.stderr)

        with env.subtest("$NOIOMMUD_SOCKET is the default socket, and what the spec names"):
            link_dir = os.path.join(env.tmp, "sockdir")
            os.mkdir(link_dir, 0o755)
            alias = os.path.join(link_dir, "io.noiommud.Broker")
            os.symlink(env.socket_path, alias)
            p = ctl_plain(env, ["cdi", "generate"], {"NOIOMMUD_SOCKET": alias})
            assert p.returncode == 0, (p.returncode, p.stderr)
            check_spec(p.stdout, alias, addresses)

        with env.subtest("a socket path CDI cannot mount is a usage error"):
            p = ctl_plain(env, ["--socket", "@abstract", "cdi", "generate"], {})
            assert p.returncode == 2 and "absolute" in p.stderr, (p.returncode, p.stderr)


run(body)
