#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Self-test of the integration harness, without the daemon: the private bus comes up, the real
polkitd claims its name and decides by the test rules and the project's action file, the journal
capture parses what libsystemd sends (inline, binary fields, memfd), and raw connections made as
another uid carry the right credentials and receive fds."""

import os
import socket
import struct
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402


def sleeper(env, uid):
    p = env.spawn("sleep-uid%d" % uid, ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
                                        "--clear-groups", "sleep", "60"])
    # wait until setpriv has exec'd sleep (so the uid and start time are final)
    H.wait_until(lambda: os.readlink("/proc/%d/exe" % p.pid).endswith("/sleep"), 5, "sleep to start")
    return p.pid


def pkcheck(env, action, pid, uid):
    subject = "%d,%d,%d" % (pid, H.process_start_time(pid), uid)
    r = subprocess.run(["pkcheck", "--action-id", action, "--process", subject],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env.env, timeout=30)
    return r.returncode, r.stdout.decode()


def main():
    with H.Environment(daemon=False) as env:
        allowed = sleeper(env, H.ALLOWED_UID)
        denied = sleeper(env, H.DENIED_UID)
        challenged = sleeper(env, H.CHALLENGE_UID)

        with env.subtest("private bus: polkitd owns org.freedesktop.PolicyKit1"):
            owner = env.bus_name_owner("org.freedesktop.PolicyKit1")
            assert owner and owner.startswith(":"), owner
            # the host's bus is not the one we talk to
            assert env.bus_address.startswith("unix:path=" + env.tmp), env.bus_address

        with env.subtest("dbus-monitor sees CheckAuthorization calls"):
            env.start_bus_monitor()
            before = env.monitor_count("CheckAuthorization")
            pkcheck(env, "io.noiommud.allocate-memory", allowed, H.ALLOWED_UID)
            H.wait_until(lambda: env.monitor_count("CheckAuthorization") == before + 1, 5,
                         lambda: "CheckAuthorization in the monitor log:\n" + env.read_log("dbus-monitor"))

        with env.subtest("polkitd decides by the test rules (pkcheck exit 0/1/2)"):
            # pkcheck: 0 authorized, 1 not authorized, 2 challenge, 127 error
            rc, out = pkcheck(env, "io.noiommud.allocate-memory", allowed, H.ALLOWED_UID)
            assert rc == 0, "uid 1 allocate-memory: rc %d %s" % (rc, out)
            rc, out = pkcheck(env, "io.noiommud.allocate-memory", denied, H.DENIED_UID)
            assert rc == 1, "uid 2 allocate-memory: rc %d %s" % (rc, out)
            rc, out = pkcheck(env, "io.noiommud.allocate-memory", challenged, H.CHALLENGE_UID)
            assert rc == 2, "uid 3 allocate-memory: rc %d %s" % (rc, out)
            rc, out = pkcheck(env, "io.noiommud.list-devices", denied, H.DENIED_UID)
            assert rc == 0, "uid 2 list-devices (allow_any yes): rc %d %s" % (rc, out)
            rc, out = pkcheck(env, "io.noiommud.manage", denied, H.DENIED_UID)
            assert rc == 1, "uid 2 manage: rc %d %s" % (rc, out)
            rc, out = pkcheck(env, "org.freedesktop.policykit.exec", allowed, H.ALLOWED_UID)
            assert rc == 127, "an action not in our action dir must be unknown: rc %d %s" % (rc, out)

        with env.subtest("action file removed live -> not registered"):
            env.set_policy_installed(False)
            H.wait_until(lambda: "not registered" in pkcheck(env, "io.noiommud.allocate-memory", allowed,
                                                                 H.ALLOWED_UID)[1], 10,
                         "polkitd to drop the action")
            env.set_policy_installed(True)
            H.wait_until(lambda: pkcheck(env, "io.noiommud.allocate-memory", allowed, H.ALLOWED_UID)[0] == 0,
                         10, "polkitd to load the action again")

        with env.subtest("journal capture: native protocol, inline and binary fields"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            payload = (b"MESSAGE=hello\nMESSAGE_ID=" + H.MSGID["STARTED"].encode() + b"\n"
                       + b"NOIOMMUD_REASON\n" + struct.pack("<Q", 9) + b"two\nlines\n"
                       + b"NOIOMMUD_CLIENT_UID=1\n")
            s.sendto(payload, env.journal.path)
            s.close()
            e = env.wait_journal("STARTED", timeout=5)[0]
            assert e["MESSAGE"] == "hello" and e["NOIOMMUD_REASON"] == "two\nlines", e
            assert e["_PID"] == str(os.getpid()), e
            assert env.find_journal("STARTED", NOIOMMUD_CLIENT_UID=1), "field filter"
            assert not env.find_journal("STARTED", NOIOMMUD_CLIENT_UID=2), "field filter"

        with env.subtest("journal capture: libsystemd (logger --journald) through the bind mount, "
                         "small and memfd-sized entries"):
            big = "x" * (9 << 20)   # beyond sd-journal's 8 MiB SO_SNDBUF: goes as a memfd
            fields = "MESSAGE_ID=%s\nMESSAGE=via logger\nNOIOMMUD_BIG=%s\n" % (H.MSGID["MEMORY_FREED"], big)
            path = os.path.join(env.tmp, "entry")
            with open(path, "w") as f:
                f.write("MESSAGE_ID=%s\nMESSAGE=small via logger\n" % H.MSGID["MEMORY_GRANTED"])
            path2 = os.path.join(env.tmp, "entry2")
            with open(path2, "w") as f:
                f.write(fields)
            script = ('mount --make-rprivate / && mount --bind "$1" /run/systemd/journal && '
                      'logger --journald="$2" && logger --journald="$3"')
            os.makedirs("/run/systemd/journal", exist_ok=True)
            subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", os.path.join(env.tmp, "journal"),
                            path, path2], check=True, timeout=30)
            e = env.wait_journal("MEMORY_GRANTED", timeout=5)[0]
            assert e["MESSAGE"] == "small via logger", e
            e = env.wait_journal("MEMORY_FREED", timeout=5)[0]
            assert e["NOIOMMUD_BIG"] == big, "big entry garbled (%d bytes)" % len(e.get("NOIOMMUD_BIG", ""))
            assert e.get("_TRANSPORT_FD") == "1", "expected the memfd transport for a 9 MiB entry"

        with env.subtest("raw connection as uid 1: peer credentials and fd passing"):
            path = os.path.join(env.tmp, "fake.sock")
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(path)
            os.chmod(path, 0o666)
            srv.listen(4)
            c = env.connect(uid=H.ALLOWED_UID, path=path)
            a, _ = srv.accept()
            pid, uid, gid = struct.unpack("iII", a.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
            assert (pid, uid, gid) == (c.pid, 1, 1), (pid, uid, gid, c.pid)
            assert os.path.exists("/proc/%d" % pid), "connecting process must stay alive"
            with open("/proc/%d/status" % pid) as f:
                st = f.read()
            groups = [l for l in st.splitlines() if l.startswith("Groups:")]
            assert groups and groups[0].split(":")[1].strip() == "", "supplementary groups: %r" % groups
            c.send("org.varlink.service.GetInfo")
            req = b""
            while not req.endswith(b"\0"):
                req += a.recv(4096)
            assert req == b'{"method": "org.varlink.service.GetInfo"}\0', req
            fd = os.memfd_create("harness-selftest")
            # two replies in one stream; fds on the first byte of the second
            a.sendall(b'{"parameters":{"n":1}}\0')
            socket.send_fds(a, [b'{"parameters":{"n":2}}\0'], [fd])
            os.close(fd)
            m1, f1 = c.recv()
            m2, f2 = c.recv()
            assert m1 == {"parameters": {"n": 1}} and f1 == [], (m1, f1)
            assert m2 == {"parameters": {"n": 2}} and len(f2) == 1, (m2, f2)
            assert os.readlink("/proc/self/fd/%d" % f2[0]).startswith("/memfd:harness-selftest"), f2
            os.close(f2[0])
            a.close()
            assert c.wait_closed(2) == []
            c.close()
            H.wait_until(lambda: not os.path.exists("/proc/%d" % pid) or
                         open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z", 5,
                         "the helper to exit")
            srv.close()

        with env.subtest("hugepages reserved"):
            assert H.hugepages_available() >= env.hugepages, H.hugepages_available()
            assert H.meminfo_hugepages_free() == H.hugepages_available()


H.run(main)
