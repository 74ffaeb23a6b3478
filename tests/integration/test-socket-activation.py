#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Socket activation (design.md §4: noiommud.socket + noiommud.service), without systemd as
PID 1: the built daemon runs under systemd-socket-activate, which binds the socket, waits for
the first connection and then execs the daemon with LISTEN_FDS=1, LISTEN_PID and
LISTEN_FDNAMES — the sd_listen_fds() protocol the service manager uses. Inside the harness
world (private bus, real polkitd, journal capture):

  * a client (uid 1) on the activation socket gets GetInfo, ListDevices and an AllocateMemory;
  * the daemon did not bind a socket of its own: fd 3 is the inherited listening socket (same
    inode as the one systemd-socket-activate bound), it is the only listening socket among the
    daemon's fds, and $LISTEN_* are gone from its environment (unset_environment=true);
  * the units: build/units/noiommud.socket listens on /run/noiommud/io.noiommud.Broker
    (Accept=no, FileDescriptorName=io) and noiommud.service's ExecStart is
    <prefix>/<libexecdir>/noiommud.

"Installed layout", approximated: the second activation is derived from the unit files —
ListenStream, FileDescriptorName and SocketMode from noiommud.socket, the arguments of ExecStart
from noiommud.service — with two substitutions, because nothing is installed and /run is the
host's: the ListenStream path is replaced by a temporary path, and ExecStart's binary (which
must be <prefix>/<libexecdir>/noiommud) by the built daemon. systemd-socket-activate does not
apply SocketMode, so the test chmods the socket to the unit's mode before the first connection.
"""

import json
import os
import shutil
import signal
import socket
import stat
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness
from harness import (ALLOWED_UID, GET_INFO, LIST, Environment, Skip, allocate, wait_until)

UNITS = os.path.join(harness.BUILD_ROOT, "units")
INSTALLED_SOCKET = "/run/noiommud/io.noiommud.Broker"


def parse_unit(path):
    """{section: {key: [values]}} of a unit file (no line continuations used in ours)."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = out.setdefault(line[1:-1], {})
                continue
            k, sep, v = line.partition("=")
            assert sep and section is not None, "%s: bad line %r" % (path, line)
            section.setdefault(k.strip(), []).append(v.strip())
    return out


def one(unit, section, key):
    v = unit.get(section, {}).get(key, [])
    assert len(v) == 1, "%s=%r in [%s], expected exactly one" % (key, v, section)
    return v[0]


def build_option(name):
    with open(os.path.join(harness.BUILD_ROOT, "meson-info", "intro-buildoptions.json")) as f:
        for o in json.load(f):
            if o["name"] == name:
                return o["value"]
    raise AssertionError("build option %s not found" % name)


def socket_inode(fd_target):
    assert fd_target.startswith("socket:["), fd_target
    return int(fd_target[len("socket:["):-1])


def listening_unix_inodes():
    """{inode: path} of every listening AF_UNIX socket (/proc/net/unix: flags __SO_ACCEPTCON,
    state SS_UNCONNECTED)."""
    out = {}
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            cols = line.split()
            flags, st, inode = int(cols[3], 16), int(cols[5], 16), int(cols[6])
            if flags & 0x10000 and st == 1:
                out[inode] = cols[7] if len(cols) > 7 else ""
    return out


def activate(env, listen, fdname, mode, argv):
    """Runs argv under systemd-socket-activate on `listen` (in its own mount namespace with the
    journal capture, like Environment.start_daemon) and registers it as env's daemon. Returns
    the inode of the listening socket systemd-socket-activate bound."""
    ssa = shutil.which("systemd-socket-activate")
    if not ssa:
        raise Skip("systemd-socket-activate not installed")
    script = ('mount --make-rprivate / && mount --bind "$1" /run/systemd/journal && '
              'shift && exec "$@"')
    cmd = [ssa, "-l", listen, "--fdname=" + fdname,
           "-E", "DBUS_SYSTEM_BUS_ADDRESS=" + env.bus_address,
           "-E", "NOTIFY_SOCKET=" + env.journal.notify_path,
           "-E", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"] + argv
    os.makedirs("/run/systemd/journal", exist_ok=True)
    with env.journal.cond:
        env.journal.notifications.clear()
    run_env = {k: v for k, v in env.env.items() if not k.startswith("LISTEN_")}
    p = env.spawn("noiommud", ["unshare", "-m", "sh", "-c", script, "sh",
                               os.path.join(env.tmp, "journal")] + cmd, env=run_env)
    env.daemon = p
    env.daemon_pid = p.pid          # sh execs systemd-socket-activate, which execs the daemon

    def bound():
        if p.poll() is not None:
            raise AssertionError("systemd-socket-activate exited with %s:\n%s"
                                 % (p.returncode, env.read_log("noiommud")))
        return os.path.exists(listen) and stat.S_ISSOCK(os.stat(listen).st_mode)
    wait_until(bound, 10, "systemd-socket-activate to bind " + listen)
    os.chmod(listen, mode)          # SocketMode=, which systemd-socket-activate does not apply
    # bind() makes the path, listen() comes after it: under load the check can fall between.
    wait_until(lambda: any(path == listen for path in listening_unix_inodes().values()), 10,
               "systemd-socket-activate to listen on " + listen)
    inodes = [i for i, path in listening_unix_inodes().items() if path == listen]
    assert len(inodes) == 1, "listening sockets on %s: %r" % (listen, inodes)
    exe = os.path.realpath("/proc/%d/exe" % p.pid)
    assert exe == os.path.realpath(ssa), "%s runs before the first connection" % exe
    return inodes[0]


def check_activated(env, listen, inode, daemon_bin, fdname):
    n_started = len(env.find_journal("STARTED"))
    # The first connection makes systemd-socket-activate exec the daemon (same pid).
    c = env.connect(uid=ALLOWED_UID, path=listen)
    info, _ = c.call_ok(GET_INFO)
    assert "io.noiommud.Broker" in info.get("interfaces", []), info
    assert env.journal.wait_notify("READY=1", 10), "no READY=1 from the activated daemon"
    exe = os.path.realpath("/proc/%d/exe" % env.daemon_pid)
    assert exe == os.path.realpath(daemon_bin), "pid %d runs %s" % (env.daemon_pid, exe)
    env.assert_daemon_alive()

    devices, fds = c.call_ok(LIST)
    assert not fds and isinstance(devices.get("devices"), list), devices
    reply, memfd = allocate(c, 2 << 20)
    os.close(memfd)

    # fd 3 is the inherited socket, and it is the only listening socket the daemon has.
    fds = env.daemon_fds()
    assert socket_inode(fds.get(3, "socket:[0]")) == inode, \
        "fd 3 of the daemon is %r, not the inherited socket (inode %d); fds: %r" % (fds.get(3), inode, fds)
    listening = listening_unix_inodes()
    own = {n: t for n, t in fds.items() if t.startswith("socket:[") and socket_inode(t) in listening}
    print("  daemon pid %d fds: %r; listening: %r" % (env.daemon_pid, fds, own), flush=True)
    assert list(own) == [3], "listening sockets among the daemon's fds: %r (%r)" % (
        own, {n: listening[socket_inode(t)] for n, t in own.items()})
    assert not os.path.exists(INSTALLED_SOCKET) or \
        all(listening.get(socket_inode(t)) != INSTALLED_SOCKET for t in own.values()), \
        "the daemon bound the default socket itself"

    with open("/proc/%d/environ" % env.daemon_pid, "rb") as f:
        environ = dict(kv.split(b"=", 1) for kv in f.read().split(b"\0") if b"=" in kv)
    left = sorted(k.decode() for k in environ if k.startswith(b"LISTEN_"))
    # sd_listen_fds(true) unsets them in the daemon's environment block; /proc shows the block
    # from exec time, so only check that they were what sd_listen_fds() expects.
    if left:
        assert environ.get(b"LISTEN_FDS") == b"1", environ.get(b"LISTEN_FDS")
        assert environ.get(b"LISTEN_PID") == str(env.daemon_pid).encode(), environ.get(b"LISTEN_PID")
        assert environ.get(b"LISTEN_FDNAMES") == fdname.encode(), environ.get(b"LISTEN_FDNAMES")
    started = env.journal.wait(harness.MSGID["STARTED"], count=n_started + 1)[-1]
    assert "passed by the service manager" in started.get("MESSAGE", ""), \
        "STARTED does not say the socket came from the service manager: %r" % started.get("MESSAGE")

    # a second client on the same socket
    c2 = env.connect(uid=ALLOWED_UID, path=listen)
    c2.call_ok(GET_INFO)
    c2.close()
    c.close()
    rc = env.stop_daemon()
    assert rc in (0, -signal.SIGTERM), rc


def body():
    sock_unit = parse_unit(os.path.join(UNITS, "noiommud.socket"))
    svc_unit = parse_unit(os.path.join(UNITS, "noiommud.service"))

    with Environment(daemon=False, hugepages=8) as env:
        daemon_bin = env.daemon_bin
        if not os.path.exists(daemon_bin):
            raise AssertionError("noiommud not built: %s" % daemon_bin)

        with env.subtest("unit files: socket path, Accept=no, fd name, ExecStart in libexec"):
            assert one(sock_unit, "Socket", "ListenStream") == INSTALLED_SOCKET, sock_unit["Socket"]
            assert one(sock_unit, "Socket", "Accept") == "no", sock_unit["Socket"]
            assert one(sock_unit, "Socket", "FileDescriptorName") == "io", sock_unit["Socket"]
            exec_start = one(svc_unit, "Service", "ExecStart").split()
            libexec = os.path.join(build_option("prefix"), build_option("libexecdir"), "noiommud")
            assert exec_start[0] == libexec, "ExecStart=%s, expected %s" % (exec_start, libexec)
            assert "--listen" not in exec_start, "ExecStart binds a socket itself: %r" % exec_start
            assert "noiommud.socket" in " ".join(svc_unit["Unit"].get("Requires", []) +
                                                  svc_unit["Unit"].get("After", [])), svc_unit["Unit"]

        with env.subtest("systemd-socket-activate -l SOCK --fdname=io: served on the inherited fd"):
            listen = os.path.join(env.tmp, "sock")
            inode = activate(env, listen, "io", 0o666, [daemon_bin])
            check_activated(env, listen, inode, daemon_bin, "io")

        with env.subtest("installed layout (socket path and binary substituted) from the units"):
            listen = os.path.join(env.tmp, "installed", os.path.basename(INSTALLED_SOCKET))
            os.makedirs(os.path.dirname(listen),
                        int(one(sock_unit, "Socket", "DirectoryMode"), 8))
            mode = int(one(sock_unit, "Socket", "SocketMode"), 8)
            fdname = one(sock_unit, "Socket", "FileDescriptorName")
            exec_start = one(svc_unit, "Service", "ExecStart").split()
            argv = [daemon_bin] + exec_start[1:]
            inode = activate(env, listen, fdname, mode, argv)
            check_activated(env, listen, inode, daemon_bin, fdname)
            assert stat.S_IMODE(os.stat(listen).st_mode) == mode


if __name__ == "__main__":
    harness.run(body)
