#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Start-up honesty (issue 11).

  a. A second noiommud with --listen on the socket of a live one refuses to start and says so;
     the first one's socket file (same inode) and service are intact, also after the second
     exits. A stale socket file (nobody listening) is replaced.
  b. A daemon whose socket file was replaced by another daemon's leaves that file alone when
     it exits.
  c. Missing privileges and kernel features are named at start-up: without CAP_SYS_ADMIN it
     warns that pagemap hides every physical address (memory requests answer NotSupported with
     that reason; IOMMU devices need none); without CAP_IPC_LOCK it warns
     about RLIMIT_MEMLOCK; with kernel.io_uring_disabled=2 it warns, and AllocateMemory answers
     NotSupported with that reason (sysctl restored afterwards).
  d. SIGHUP is never fatal: also a daemon started outside systemd re-executes and serves on.
"""

import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness as H  # noqa: E402


def run_second(env, argv_prefix=(), path=None, timeout=10):
    cfg = os.path.join(env.tmp, "empty.conf")
    with open(cfg, "w") as f:
        f.write("{}")
    argv = list(argv_prefix) + [env.daemon_bin, "--listen", path or env.socket_path, "--config", cfg]
    e = dict(env.env)
    e.pop("NOTIFY_SOCKET", None)
    e.pop("JOURNAL_STREAM", None)
    return subprocess.run(argv, env=e, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def messages(env):
    return [str(e.get("MESSAGE")) for e in env.journal.find()]


def main():
    with H.Environment(polkit=True, hugepages=4) as env:
        with open(os.path.join(env.tmp, "empty.conf"), "w") as f:
            f.write("{}")
        with env.subtest("a. a second daemon on a live socket refuses to start, the first is intact"):
            st0 = os.stat(env.socket_path)
            p = run_second(env)
            assert p.returncode != 0, "second daemon exited %d:\n%s" % (p.returncode, p.stderr)
            assert "Another daemon is listening on" in p.stderr, p.stderr
            H.log("second instance said: " + p.stderr.strip().splitlines()[-1])
            st1 = os.stat(env.socket_path)
            assert (st1.st_dev, st1.st_ino) == (st0.st_dev, st0.st_ino), "socket file replaced"
            c = env.connect(uid=H.ALLOWED_UID)
            c.call_ok(H.GET_INFO)
            c.close()

        with env.subtest("a. a stale socket file (nobody listening) is replaced"):
            stale = os.path.join(env.tmp, "stale.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(stale)
            s.close()
            e = dict(env.env)
            e.pop("NOTIFY_SOCKET", None)
            p = subprocess.Popen([env.daemon_bin, "--listen", stale, "--config", os.path.join(env.tmp, "empty.conf")],
                                 env=e, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
            try:
                def listening():
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        return s.connect_ex(stale) == 0
                # (inode numbers are reused at once on some file systems: connect() decides)
                H.wait_until(listening, 10, "the daemon to listen on the replaced socket")
                p.send_signal(signal.SIGTERM)
                out = p.communicate(timeout=10)[1]
            finally:
                if p.poll() is None:
                    p.kill()
            assert "Another daemon" not in out, out

        with env.subtest("b. a daemon leaves a socket another daemon bound meanwhile"):
            path = os.path.join(env.tmp, "b.sock")
            cfg = os.path.join(env.tmp, "empty.conf")
            e = dict(env.env)
            e.pop("NOTIFY_SOCKET", None)
            first = subprocess.Popen([env.daemon_bin, "--listen", path, "--config", cfg], env=e,
                                     stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                H.wait_until(lambda: os.path.exists(path), 10, "first daemon's socket")
                os.unlink(path)                     # an administrator removed it
                second = subprocess.Popen([env.daemon_bin, "--listen", path, "--config", cfg], env=e,
                                          stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    H.wait_until(lambda: os.path.exists(path), 10, "second daemon's socket")
                    ino = os.stat(path).st_ino
                    first.send_signal(signal.SIGTERM)
                    assert first.wait(10) == 0
                    assert os.path.exists(path) and os.stat(path).st_ino == ino, \
                        "the first daemon removed the second one's socket at exit"
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect(path)
                    s.close()
                    second.send_signal(signal.SIGTERM)
                    assert second.wait(10) == 0
                    assert not os.path.exists(path), "the second daemon left its own socket behind"
                finally:
                    if second.poll() is None:
                        second.kill()
            finally:
                if first.poll() is None:
                    first.kill()

        with env.subtest("c. without CAP_SYS_ADMIN: starts, says physical addresses are hidden"):
            path = os.path.join(env.tmp, "c1.sock")
            e = dict(env.env)
            e.pop("NOTIFY_SOCKET", None)
            e.pop("JOURNAL_STREAM", None)
            p = subprocess.Popen(["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin",
                                  env.daemon_bin, "--listen", path, "--config", os.path.join(env.tmp, "empty.conf")],
                                 env=e, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                H.wait_until(lambda: os.path.exists(path), 10, "the daemon to listen")
                p.send_signal(signal.SIGTERM)
                err = p.communicate(timeout=10)[1]
            finally:
                if p.poll() is None:
                    p.kill()
            assert p.returncode == 0, (p.returncode, err)
            assert "CAP_SYS_ADMIN" in err and "pagemap" in err and "NotSupported" in err, err
            H.log([l for l in err.splitlines() if "CAP_SYS_ADMIN" in l][0])

        with env.subtest("c. without CAP_IPC_LOCK: starts, warns about RLIMIT_MEMLOCK"):
            path = os.path.join(env.tmp, "c2.sock")
            cfg = os.path.join(env.tmp, "empty.conf")
            e = dict(env.env)
            e.pop("NOTIFY_SOCKET", None)
            p = subprocess.Popen(["setpriv", "--bounding-set=-ipc_lock", "--inh-caps=-ipc_lock",
                                  env.daemon_bin, "--listen", path, "--config", cfg], env=e,
                                 stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                H.wait_until(lambda: os.path.exists(path), 10, "the daemon to listen")
                p.send_signal(signal.SIGTERM)
                err = p.communicate(timeout=10)[1]
            finally:
                if p.poll() is None:
                    p.kill()
            assert "CAP_IPC_LOCK" in err and "RLIMIT_MEMLOCK" in err, err

        with env.subtest("c. kernel.io_uring_disabled=2: warns, AllocateMemory says why"):
            with open("/proc/sys/kernel/io_uring_disabled") as f:
                old = f.read().strip()
            try:
                with open("/proc/sys/kernel/io_uring_disabled", "w") as f:
                    f.write("2")
            except OSError as ex:
                raise H.Skip("cannot set kernel.io_uring_disabled: %s" % ex)
            try:
                env.restart_daemon()
                H.wait_until(lambda: [m for m in messages(env) if "io_uring is refused" in m], 5,
                             lambda: "the start-up warning: %r" % messages(env)[-10:])
                c = env.connect(uid=H.ALLOWED_UID)
                err, params = c.call_error(H.ALLOCATE, {"size": 2 << 20})
                assert err == H.ERR + "NotSupported" and "io_uring" in params.get("reason", ""), (err, params)
                c.close()
            finally:
                with open("/proc/sys/kernel/io_uring_disabled", "w") as f:
                    f.write(old)
            env.restart_daemon()
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, 2 << 20)
            os.close(fd)
            c.close()

        with env.subtest("d. SIGHUP outside systemd re-executes, never kills"):
            pid = env.daemon_pid
            c = env.connect(uid=H.ALLOWED_UID)
            for _ in range(3):
                os.kill(pid, signal.SIGHUP)
                c.call_ok(H.GET_INFO)
            time.sleep(0.2)
            assert env.daemon.poll() is None and env.daemon_pid == pid
            c.call_ok(H.GET_INFO)
            c.close()


if __name__ == "__main__":
    H.run(main)
