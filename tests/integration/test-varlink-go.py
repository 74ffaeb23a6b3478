#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon driven by a Varlink implementation nobody on this project wrote: Debian's Go
library (golang-github-varlink-go-dev 0.4.0). varlink-go-client.go is built here, offline
(GO111MODULE=off, GOPATH=/usr/share/gocode, a private GOCACHE, GOPROXY=off), and run as the
allowed unprivileged user against the daemon of the integration harness (private bus, real
polkitd). It checks GetInfo, GetInterfaceDescription (and what varlink-go's parser makes of the
descriptions), ListDevices, AllocateMemory (the reply through varlink-go, the memfd through a
raw ReadMsgUnix connection, because varlink-go cannot receive SCM_RIGHTS: see the top of the Go
file), error replies decoded by varlink-go, oneway calls followed by a normal call on the same
connection, and a "more" stream. Afterwards every page and fd the client had is back."""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

GOPATH = "/usr/share/gocode"
VARLINK_GO = os.path.join(GOPATH, "src", "github.com", "varlink", "go", "varlink")
SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "varlink-go-client.go")

# Every check the Go client must report, in order (it exits 1 at the first failure).
EXPECTED = [
    "GetInfo:",
    "GetInterfaceDescription io.noiommud.Broker:",
    "varlink-go's idl parser accepts org.varlink.service",
    "ListDevices:",
    "AllocateMemory (varlink-go, fd not received):",
    "AllocateMemory (raw ReadMsgUnix): fd is /memfd:",
    "errors: MethodNotFound, InterfaceNotFound, InvalidParameter, NoSuchMemory, ExpectedMore",
    "oneway GetInfo:",
    "oneway unknown method:",
    "oneway unknown interface:",
    "oneway AllocateMemory:",
    "oneway AcquireDevice:",
    "oneway Monitor:",
    "Monitor with more:",
]


def project_version():
    with open(os.path.join(H.SOURCE_ROOT, "meson.build")) as f:
        return re.search(r"version:\s*'([^']+)'", f.read()).group(1)


def build(tmp):
    go = shutil.which("go")
    if not go or not os.path.isdir(VARLINK_GO):
        raise H.Skip("the third-party Varlink client needs Debian's golang-go and "
                     "golang-github-varlink-go-dev (scripts/install-deps.sh): %s missing"
                     % ("go" if not go else VARLINK_GO))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tmp,
        "GO111MODULE": "off",
        "GOPATH": GOPATH,
        "GOCACHE": os.path.join(tmp, "gocache"),
        "GOPROXY": "off",               # offline: nothing may be fetched
        "GOFLAGS": "",
    }
    binary = os.path.join(tmp, "varlink-go-client")
    r = subprocess.run([go, "build", "-o", binary, SOURCE], env=env, cwd=tmp,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    assert r.returncode == 0, "go build failed:\n%s" % r.stdout.decode(errors="replace")
    return binary


def main():
    tmp = tempfile.mkdtemp(prefix="noiommu-varlink-go-")
    try:
        os.chmod(tmp, 0o755)            # the client runs as the unprivileged test user
        binary = build(tmp)
        H.log("built %s with %s" % (binary, subprocess.run(["go", "version"], stdout=subprocess.PIPE,
                                                            text=True).stdout.strip()))
        with H.Environment(hugepages=8) as env:
            with env.subtest("varlink-go client as the allowed user"):
                base = env.settled_baseline()
                r = subprocess.run(["setpriv", "--reuid=%d" % H.ALLOWED_UID,
                                    "--regid=%d" % H.ALLOWED_UID, "--clear-groups",
                                    binary, env.socket_path, project_version()],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   cwd="/", timeout=120)
                sys.stdout.write(r.stdout)
                assert r.returncode == 0, "varlink-go client exited %d:\n%s%s" % (
                    r.returncode, r.stdout, r.stderr)
                lines = [line[len("ok - "):] for line in r.stdout.splitlines() if line.startswith("ok - ")]
                for want in EXPECTED:
                    assert any(line.startswith(want) for line in lines), \
                        "the Go client did not report %r:\n%s" % (want, r.stdout)
                env.wait_baseline(base, what="after the varlink-go client exited")
                env.assert_daemon_alive()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


H.run(main)
