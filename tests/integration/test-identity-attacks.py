#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Attacks on the client identity (security.md §3, §10 rows 1, 4, 5 and 28), with the real
polkitd. The daemon takes the identity once, at connect time (SO_PEERCRED uid/gid/pid, the
SO_PEERPIDFD pidfd, the start time); polkit is asked about exactly that identity, and after
polkit's answer the connecting process must still be the same live process.

Row 1, unauthorized uid: a denied (uid 2) and a challenged (uid 3) reply, read here with a raw
recvmsg() that has room for 253 fds, carry no control message at all (no SCM_RIGHTS).

Row 4, pid reuse during authorization: a uid-1 client (allowed) connects, hands its socket to
the test over SCM_RIGHTS and sends AllocateMemory itself while polkitd is stopped (SIGSTOP). Once
dbus-monitor shows the CheckAuthorization call, the client exits and is reaped and its pid is
recycled deterministically (ns_last_pid = pid - 1, then fork; the new pid is verified, and the
fork retried if another process on the machine took it first): by a uid-2 process, and in a
second variant by a uid-1 process (same uid as the dead client). Then polkitd continues (polkitd
122 then refuses by itself, as the start time no longer matches). Two more variants take that
check of polkitd's out of the picture: the daemon is stopped (SIGSTOP) before polkitd continues,
polkitd answers yes about the still-live client (asserted on the bus), and only then does the
client die and its pid get recycled; when the daemon continues, only its own re-check after the
answer (pidfd, start time) can deny, and the record must carry no polkit error. Oracle:
PermissionDenied {reason: subject-gone}, no control message on the reply, HugePages_Free and the
daemon's fd count back at the baseline, an AUTHZ_DENIED record with NOIOMMUD_REASON=subject-gone
and no grant records for the pid, and the next client is served.

Row 5, setuid exec after connect (the CVE-2013-4288 pattern): setuid-exec-helper (a C program)
started as uid 2 connects, then execs a setuid-root copy of itself (made by this test in a
directory whose mount has no nosuid) that keeps the socket, calls setresuid(0,0,0) and sends
AllocateMemory. Same pid, same start time, alive: only its uids changed. polkit must be asked
about uid 2 (dbus-monitor: uid:i 2, never 0) and uid 2's rule decides (denied, no fds).
polkitd 122 authorizes a uid-0 subject unconditionally (checked first), so the denial itself
shows that polkit was not asked about root. A second variant is the exact 2013 race: the request
is sent before the exec, held in the stopped polkitd, and the process is root by the time
polkitd evaluates it. A uid-3 variant gets uid 3's answer (a challenge), not root's. The
reverse: a uid-1 client that execs the setuid copy gets uid 1's decision (granted) with subject
uid 1 (here root's answer would be the same, so the subject and the records are the oracle).

Row 28, socket handed to another process:
  (a) a uid-1 process connects, forks, and exits (reaped, and in a variant not yet reaped: a
      zombie, which polkitd 122 still authorizes, so the daemon's own re-check must refuse it);
      the child sends the request: PermissionDenied {reason: subject-gone}, no fds, nothing
      granted. The subject sent to polkit is the connector's pid, never the child's.
  (b) the connector (uid 1) stays alive and passes the socket over SCM_RIGHTS to a uid-2
      process, which sends the request: it is decided as the connector, uid 1, and granted, and
      the memfd goes to the uid-2 process. This is by design: a connection's identity is fixed
      at connect time, and handing the connected socket to someone else is an action of the
      connector, equivalent to the connector making the request and passing on what it got
      (it could as well pass the memfd). The test asserts that the subject pid/uid polkit was
      asked about and the records name the connector, not the process that sent the request.
"""

import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from noiommutest.fixtures import served  # noqa: E402

MiB = 1 << 20
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
SLEEP = shutil.which("sleep") or "/bin/sleep"
HELPER = (os.environ.get("NOIOMMU_SETUID_EXEC_HELPER")
          or os.path.join(H.BUILD_ROOT, "tests", "integration", "setuid-exec-helper"))
NS_LAST_PID = "/proc/sys/kernel/ns_last_pid"
PR_SET_CHILD_SUBREAPER = 36
FDS_MAX = 253                   # SCM_MAX_FD

# Clients run as other uids (setpriv ... python3 -c AGENT MODE ARGS). Each prints JSON lines on
# stdout and exits when its stdin is closed (or after its job), so nothing outlives the test.
AGENT = r"""
import json, os, socket, struct, sys

def out(d):
    sys.stdout.write(json.dumps(d) + "\n")
    sys.stdout.flush()

def request(s, size):
    s.sendall(json.dumps({"method": "io.noiommud.Broker.AllocateMemory",
                          "parameters": {"size": size}}).encode() + b"\0")

def read_reply(s):
    # recvmsg() with room for 253 fds: any SCM_RIGHTS is counted (and closed), never lost
    s.settimeout(60)
    buf, nfds, cmsgs, ctrunc = b"", 0, [], False
    while b"\0" not in buf:
        data, anc, flags, _ = s.recvmsg(1 << 16, socket.CMSG_SPACE(253 * 4), socket.MSG_CMSG_CLOEXEC)
        ctrunc = ctrunc or bool(flags & socket.MSG_CTRUNC)
        for level, typ, d in anc:
            cmsgs.append([level, typ, len(d)])
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                for fd in struct.unpack("%di" % (len(d) // 4), d[:len(d) // 4 * 4]):
                    os.close(fd)
                    nfds += 1
        if not data:
            break
        buf += data
    reply = json.loads(buf[:buf.index(b"\0")]) if b"\0" in buf else None
    return {"reply": reply, "nfds": nfds, "cmsgs": cmsgs, "ctrunc": ctrunc,
            "pid": os.getpid(), "uid": os.getuid()}

def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.connect(path)
    return s

def wait_stdin_eof():
    while sys.stdin.buffer.read(1):
        pass

mode = sys.argv[1]
if mode == "victim":
    # connect, hand a copy of the socket to the test, send the request ourselves, then live
    # until told to go (stdin EOF)
    path, ctl, size = sys.argv[2], socket.socket(fileno=int(sys.argv[3])), int(sys.argv[4])
    s = connect(path)
    socket.send_fds(ctl, [b"S"], [s.fileno()])
    ctl.close()
    out({"connected": os.getpid(), "uid": os.getuid()})
    request(s, size)
    out({"sent": True})
    wait_stdin_eof()
elif mode == "handoff":
    # connect, fork; the connector exits at once, the child waits for "go" on stdin, then sends
    # the request on the inherited socket and reports the reply
    path, size = sys.argv[2], int(sys.argv[3])
    s = connect(path)
    child = os.fork()
    if child:
        out({"connector": os.getpid(), "child": child})
        os._exit(0)
    if not sys.stdin.readline():
        os._exit(1)
    request(s, size)
    out(read_reply(s))
    os._exit(0)
elif mode == "pass":
    # connect and pass the socket to another process over SCM_RIGHTS; keep no copy; stay alive
    path, peer = sys.argv[2], socket.socket(fileno=int(sys.argv[3]))
    s = connect(path)
    socket.send_fds(peer, [b"S"], [s.fileno()])
    s.close()
    peer.close()
    out({"connector": os.getpid(), "uid": os.getuid()})
    wait_stdin_eof()
elif mode == "receive":
    # receive a connected socket over SCM_RIGHTS, send the request on it, report the reply
    peer, size = socket.socket(fileno=int(sys.argv[2])), int(sys.argv[3])
    peer.settimeout(30)
    out({"ready": os.getpid(), "uid": os.getuid()})
    msg, fds, flags, _ = socket.recv_fds(peer, 16, 4)
    if msg != b"S" or len(fds) != 1:
        out({"error": "received %r with %d fds" % (msg, len(fds))})
        sys.exit(1)
    s = socket.socket(fileno=fds[0])
    request(s, size)
    out(read_reply(s))
else:
    sys.exit("unknown mode %r" % mode)
"""


# --- helpers ---------------------------------------------------------------------------------

class Procs:
    """Processes this test started outside the harness: killed and reaped at the end (only if
    they have not been reaped yet: their pids may be recycled on purpose here)."""

    def __init__(self):
        self.popens = []
        self.pids = []               # raw fork() children

    def popen(self, env, name, argv, **kw):
        path = os.path.join(env.tmp, "logs", name + ".log")
        env.logs[name] = path
        with open(path, "ab") as logf:
            p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logf,
                                 cwd="/", env=env.env, preexec_fn=H._pdeathsig, **kw)
        p.log_name = name
        self.popens.append(p)
        return p

    def kill_pid(self, pid):
        if pid in self.pids:
            self.pids.remove(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:       # not (or no longer) our child
                pass

    def cleanup(self):
        for p in self.popens:
            if p.returncode is None:
                p.kill()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    pass
            for f in (p.stdin, p.stdout):
                if f:
                    try:
                        f.close()
                    except OSError:
                        pass
        self.popens = []
        for pid in list(self.pids):
            self.kill_pid(pid)


PROCS = Procs()


def agent(env, uid, mode, args, pass_fds=()):
    argv = [SETPRIV, "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups",
            H.PYTHON, "-I", "-S", "-c", AGENT, mode] + [str(a) for a in args]
    return PROCS.popen(env, "agent-%s-%d" % (mode, len(PROCS.popens)), argv, pass_fds=pass_fds)


def read_json_line(p, timeout=20):
    line = H.readline_timeout(p.stdout, timeout)
    if not line:
        raise AssertionError("process %d closed stdout without a line (exit %r)" % (p.pid, p.poll()))
    return json.loads(line)


def recv_fds_cloexec(sock, timeout=15):
    """One message with fds from a socketpair, the fds made O_CLOEXEC (socket.recv_fds() does not,
    and a process forked here later must not inherit the client's connection)."""
    sock.settimeout(timeout)
    msg, anc, flags, _ = sock.recvmsg(64, socket.CMSG_SPACE(4 * 4), socket.MSG_CMSG_CLOEXEC)
    fds = []
    for level, typ, d in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds += list(struct.unpack("%di" % (len(d) // 4), d[:len(d) // 4 * 4]))
    return msg, fds


def recv_reply_raw(sock, timeout=30):
    """Reads one Varlink reply with recvmsg() and room for 253 fds per call. Returns (message or
    None on EOF, [(level, type, length) of every control message], [fds], OR of msg_flags)."""
    buf, cmsgs, fds, flags_all = b"", [], [], 0
    deadline = time.monotonic() + timeout
    while b"\0" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("no reply within %.0fs (got %r)" % (timeout, buf[:200]))
        sock.settimeout(left)
        try:
            data, anc, flags, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(FDS_MAX * 4),
                                               socket.MSG_CMSG_CLOEXEC)
        except socket.timeout:
            continue
        flags_all |= flags
        for level, typ, d in anc:
            cmsgs.append((level, typ, len(d)))
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("%di" % (len(d) // 4), d[:len(d) // 4 * 4]))
        if not data:
            break
        buf += data
    msg = H.strict_json(buf[:buf.index(b"\0")].decode()) if b"\0" in buf else None
    return msg, cmsgs, fds, flags_all


def assert_denied_raw(sock, reason, what, timeout=30):
    """The next reply is PermissionDenied {reason} and recvmsg() saw no control message."""
    msg, cmsgs, fds, flags = recv_reply_raw(sock, timeout)
    for fd in fds:
        os.close(fd)
    assert msg is not None, "%s: connection closed instead of a reply" % what
    assert not cmsgs and not fds, "%s: reply %r carried control messages %r (%d fds)" % (what, msg, cmsgs, len(fds))
    assert not flags & socket.MSG_CTRUNC, "%s: MSG_CTRUNC on the reply" % what
    assert msg.get("error") == H.ERR + "PermissionDenied", "%s: %r" % (what, msg)
    assert msg.get("parameters") == {"reason": reason}, "%s: %r" % (what, msg)
    return msg


def polkit_calls(env):
    """The CheckAuthorization calls dbus-monitor printed, in order, with the subject's
    {key: (type, value)} and the action id (None while the call is only half printed)."""
    text = env.read_log("dbus-monitor", tail=None)
    calls = []
    for m in re.finditer(r"^method call .* sender=(\S+) -> .* serial=(\d+) .*member=CheckAuthorization\n"
                         r"((?:[ \t].*\n?)*)", text, re.M):
        body = m.group(3)
        subject = {k: (typ, val) for k, typ, val in
                   re.findall(r'string "([\w-]+)"\s*\n\s*variant\s+(u?int\d+|string)\s+(\S+)\s*\n', body)}
        top = re.findall(r'^   string "((?:[^"\\]|\\.)*)"', body, re.M)
        calls.append({"subject": subject, "action": top[0] if top else None, "raw": body,
                      "sender": m.group(1), "serial": int(m.group(2))})
    return calls


def start_reply_monitor(env):
    """A second dbus-monitor, for replies (the harness's watches the Authority interface, which
    method returns do not carry); its output goes to logs/dbus-replies.log."""
    env.spawn("dbus-replies", ["dbus-monitor", "--address", env.bus_address,
                               "type='method_return'", "type='error'"], env=env.env)
    H.wait_until(lambda: re.search(r"member=Name(Acquired|Lost)", env.read_log("dbus-replies")), 10,
                 "the reply monitor to start")


def wait_polkit_reply(env, call, timeout=10):
    """The reply to `call` as dbus-monitor printed it: (kind, body), kind 'method return' or
    'error'."""
    pat = re.compile(r"^(method return|error) .* -> destination=%s serial=\d+ reply_serial=%d\b.*\n"
                     r"((?:[ \t].*\n?)*)" % (re.escape(call["sender"]), call["serial"]), re.M)

    def found():
        m = pat.search(env.read_log("dbus-replies", tail=None))
        return (m.group(1), m.group(2)) if m and (m.group(1) == "error" or "array" in m.group(2)) else None
    return H.wait_until(found, timeout, "polkitd's reply to CheckAuthorization serial %d" % call["serial"])


def signal_daemon(env, sig):
    """SIGSTOP (waits until stopped) or SIGCONT noiommud."""
    os.kill(env.daemon_pid, sig)
    if sig == signal.SIGSTOP:
        H.wait_until(lambda: H.process_state(env.daemon_pid) in ("T", "t"), 5, "noiommud to stop")


def calls_since(env, n0, pid=None):
    cs = polkit_calls(env)[n0:]
    return [c for c in cs if pid is None or c["subject"].get("pid") == ("uint32", str(pid))]


def wait_call(env, n0, pid, timeout=10):
    """The CheckAuthorization call for subject pid `pid` made after the first n0 calls, once
    dbus-monitor has printed it completely."""
    def found():
        cs = [c for c in calls_since(env, n0, pid) if "uid" in c["subject"] and c["action"]]
        return cs[-1] if cs else None
    return H.wait_until(found, timeout, lambda: "a CheckAuthorization call for pid %d on the bus "
                        "(calls since: %r)" % (pid, [c["subject"] for c in calls_since(env, n0)]))


def no_grants(env, pid):
    for name in ("AUTHZ_GRANTED", "MEMORY_GRANTED"):
        got = env.find_journal(name, NOIOMMUD_CLIENT_PID=pid)
        assert not got, "%s record for pid %d: %s" % (name, pid, env.journal.describe(got))


def proc_uids(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    return [int(x) for x in line.split()[1:]]
    except FileNotFoundError:
        return None
    return None


def recycle_pid(pid, uid, attempts=200):
    """Makes a new process get `pid`: ns_last_pid = pid - 1, then fork. The child becomes
    `sleep` running as uid (setpriv execs, the pid stays). Verifies the pid and waits until the
    process really runs as uid; another process on the machine can take the pid between the
    write and our fork, so that is retried. Returns (start time of the new process, attempts)."""
    exe = os.path.realpath(SLEEP)
    last = "no attempt"
    for attempt in range(1, attempts + 1):
        if os.path.exists("/proc/%d" % pid):
            try:
                with open("/proc/%d/comm" % pid) as f:
                    last = "pid %d is in use by %r" % (pid, f.read().strip())
            except OSError:
                last = "pid %d was in use" % pid
            time.sleep(0.05)
            continue
        try:
            H.write_int(NS_LAST_PID, pid - 1)
        except OSError as e:
            raise AssertionError("cannot write %s (%s): pid reuse on demand needs CAP_SYS_ADMIN or "
                                 "CAP_CHECKPOINT_RESTORE in the daemon's pid namespace" % (NS_LAST_PID, e))
        child = os.fork()
        if child == 0:
            try:
                os.closerange(3, 1 << 16)
                os.execv(SETPRIV, [SETPRIV, "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups",
                                   SLEEP, "120"])
            finally:
                os._exit(127)
        PROCS.pids.append(child)
        if child == pid:
            H.wait_until(lambda: (proc_uids(pid) == [uid] * 4
                                  and os.path.realpath("/proc/%d/exe" % pid) == exe), 10,
                         lambda: "pid %d to run %s as uid %d (uids %r)" % (pid, exe, uid, proc_uids(pid)))
            return H.process_start_time(pid), attempt
        last = "fork got pid %d instead of %d" % (child, pid)
        PROCS.kill_pid(child)
    raise AssertionError("could not recycle pid %d in %d attempts: %s" % (pid, attempts, last))


def mount_options(path):
    """(mount point, per-mount options) of the mount holding path, from /proc/self/mountinfo
    (the last of stacked mounts wins)."""
    path = os.path.realpath(path)
    best = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            mp = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
            if path == mp or path.startswith(mp.rstrip("/") + "/"):
                if best is None or len(mp) >= len(best[0]):
                    best = (mp, parts[5].split(","))
    return best


def traversable_by_all(path):
    p = os.path.realpath(path)
    while True:
        if not os.stat(p).st_mode & stat.S_IXOTH:
            return False
        if p == "/":
            return True
        p = os.path.dirname(p)


def make_setuid_copies(env):
    """Copies setuid-exec-helper into a new directory on a mount without nosuid that every uid
    can reach: 'connect' (0755, runs as the client's uid) and 'setuid' (root, 4755; run set-id,
    the helper only talks on an inherited fd). Returns (directory, connect copy, setuid copy)."""
    assert os.path.exists(HELPER), "setuid-exec-helper not built: %s" % HELPER
    tried = []
    for base in (env.tmp, tempfile.gettempdir(), "/var/tmp", H.BUILD_ROOT):
        if not os.path.isdir(base):
            continue
        mp, opts = mount_options(base)
        if "nosuid" in opts or not traversable_by_all(base):
            tried.append("%s (mount %s: %s)" % (base, mp, ",".join(opts)))
            continue
        d = tempfile.mkdtemp(prefix="noiommud-setuid-", dir=base)
        os.chmod(d, 0o755)
        connect_copy, setuid_copy = os.path.join(d, "connect"), os.path.join(d, "setuid")
        for dst in (connect_copy, setuid_copy):
            shutil.copyfile(HELPER, dst)
            os.chown(dst, 0, 0)
        os.chmod(connect_copy, 0o755)
        os.chmod(setuid_copy, 0o4755)          # after chown, which clears the set-id bits
        H.log("setuid copy in %s (mount %s: %s)" % (d, mp, ",".join(opts)))
        return d, connect_copy, setuid_copy
    raise AssertionError("no directory on a mount without nosuid for the setuid copy: %s" % "; ".join(tried))


def helper_lines(out):
    """{first word: rest} of setuid-exec-helper's output lines."""
    d = {}
    for line in out.splitlines():
        k, _, v = line.partition(" ")
        d[k] = v
    return d


def kv(s):
    return dict(x.split("=", 1) for x in s.split())


@contextlib.contextmanager
def subreaper():
    """Orphans of this block are reparented to the test (to be reaped by it), not to pid 1."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def root_probe_allowed(env):
    """Asks as root (this process, alive): True if granted, False if PermissionDenied."""
    c = env.connect()
    try:
        reply, fds = c.call(H.ALLOCATE, {"size": 2 * MiB})
        for fd in fds:
            os.close(fd)
        if "error" in reply:
            assert reply["error"] == H.ERR + "PermissionDenied", reply
            return False
        return True
    finally:
        c.close()


# --- subtests --------------------------------------------------------------------------------

def row1(env, base):
    for uid, reason, err in ((H.DENIED_UID, "denied", "PermissionDenied"),
                             (H.CHALLENGE_UID, None, "InteractiveAuthenticationRequired")):
        with env.subtest("row 1: uid %d's %s reply has no control message (raw recvmsg, room for 253 fds)"
                         % (uid, err)):
            c = env.connect(uid=uid)
            c.send(H.ALLOCATE, {"size": 4 * MiB})
            msg, cmsgs, fds, flags = recv_reply_raw(c.sock)
            for fd in fds:
                os.close(fd)
            assert msg is not None, "EOF instead of a reply"
            assert not cmsgs and not fds, "reply %r carried %r" % (msg, cmsgs)
            assert not flags & socket.MSG_CTRUNC
            assert msg.get("error") == H.ERR + err, msg
            if reason:
                assert msg.get("parameters") == {"reason": reason}, msg
            assert H.hugepages_free() == base[1], "hugepages taken by a refused request"
            e = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=c.pid)[0]
            assert e.get("NOIOMMUD_CLIENT_UID") == str(uid), e
            no_grants(env, c.pid)
            c.close()
            env.wait_baseline(base, what="row 1 uid %d" % uid)


def row4(env, base, squatter_uid, polkit_yes_first=False):
    """A uid-1 client's check is held in the stopped polkitd; the client exits, is reaped, and
    its pid goes to a new process of squatter_uid; then polkitd answers. With polkit_yes_first
    the daemon is stopped (SIGSTOP) before polkitd continues, so polkitd answers yes about the
    still-live client; the client then dies and its pid is recycled while that yes waits in the
    daemon's bus socket, and only the daemon's own re-check (pidfd, start time) can deny."""
    if not polkit_yes_first:
        name = ("row 4: pid reused by a uid-%d process while polkitd decides about the dead uid-1 "
                "client: subject-gone" % squatter_uid)
    else:
        name = ("row 4: polkitd says yes, then the client dies and its pid goes to a uid-%d process "
                "before the daemon reads the yes: subject-gone" % squatter_uid)
    with env.subtest(name):
        n0 = len(polkit_calls(env))
        state = {"sock": None, "squatter": None, "daemon_stopped": False}

        def exit_and_recycle(p, pid, st0):
            # the client exits and is reaped; the socket lives on here
            p.stdin.close()
            assert p.wait(10) == 0, "victim exited with %r" % p.returncode
            assert H.process_state(pid) is None, "pid %d still exists after reaping" % pid
            st1, attempts = recycle_pid(pid, squatter_uid)
            state["squatter"] = pid
            H.log("pid %d recycled (fork attempt %d): uid %d, start time %d -> %d"
                  % (pid, attempts, squatter_uid, st0, st1))

        try:
            with env.polkitd_stopped():
                ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
                p = agent(env, H.ALLOWED_UID, "victim", [env.socket_path, theirs.fileno(), 4 * MiB],
                          pass_fds=[theirs.fileno()])
                theirs.close()
                msg, fds = recv_fds_cloexec(ours)
                ours.close()
                assert msg == b"S" and len(fds) == 1, "victim handed over %r with %d fds" % (msg, len(fds))
                sock = state["sock"] = socket.socket(fileno=fds[0])
                hello = read_json_line(p)
                pid = hello["connected"]
                assert pid == p.pid and hello["uid"] == H.ALLOWED_UID, hello
                st0 = H.process_start_time(pid)
                assert read_json_line(p) == {"sent": True}
                call = wait_call(env, n0, pid)
                s = call["subject"]
                assert s.get("uid") == ("int32", str(H.ALLOWED_UID)), s
                assert s.get("start-time") == ("uint64", str(st0)), (s, st0)
                if polkit_yes_first:
                    signal_daemon(env, signal.SIGSTOP)
                    state["daemon_stopped"] = True
                else:
                    exit_and_recycle(p, pid, st0)
            if polkit_yes_first:
                kind, body = wait_polkit_reply(env, call)
                assert kind == "method return" and re.search(r"struct \{\s*boolean true", body), \
                    "polkitd should have said yes about the live uid-1 client: %s\n%s" % (kind, body)
                exit_and_recycle(p, pid, st0)
                signal_daemon(env, signal.SIGCONT)
                state["daemon_stopped"] = False
            # the daemon handles polkit's answer about pid `pid`, now another process
            assert_denied_raw(sock, "subject-gone", "reply after pid reuse")
            assert H.hugepages_free() == base[1], "hugepages taken for a recycled pid"
            assert env.daemon_hugetlb_kb() == base[2], "daemon maps hugetlb memory for a recycled pid"
            e = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=pid,
                                 NOIOMMUD_CLIENT_START_TIME=st0)[0]
            assert e.get("NOIOMMUD_REASON") == "subject-gone", e
            assert e.get("NOIOMMUD_CLIENT_UID") == str(H.ALLOWED_UID), e
            H.log("decided by: %s" % ("polkitd error %s" % e["NOIOMMUD_POLKIT_ERROR"]
                                      if e.get("NOIOMMUD_POLKIT_ERROR") else
                                      "the daemon's re-check after polkit (result %s)" % e.get("NOIOMMUD_POLKIT_RESULT")))
            if polkit_yes_first:
                assert not e.get("NOIOMMUD_POLKIT_ERROR"), "polkit had answered yes: %r" % e
            no_grants(env, pid)
            assert len(calls_since(env, n0, pid)) == 1, "more than one check for pid %d" % pid
            sock.close()
            state["sock"] = None
            PROCS.kill_pid(state["squatter"])
            state["squatter"] = None
            env.wait_baseline(base, what="after the recycled-pid check")
            served(env)
            env.wait_baseline(base, what="after the next client")
        finally:
            if state["daemon_stopped"]:
                signal_daemon(env, signal.SIGCONT)
            if state["sock"] is not None:
                state["sock"].close()
            if state["squatter"] is not None:
                PROCS.kill_pid(state["squatter"])


def row28a(env, base, reaped):
    name = ("row 28a: connector forks and exits (%s), the child sends the request: subject-gone"
            % ("reaped" if reaped else "a zombie, not yet reaped"))
    with env.subtest(name), subreaper():
        n0 = len(polkit_calls(env))
        p = agent(env, H.ALLOWED_UID, "handoff", [env.socket_path, 4 * MiB])
        pids = read_json_line(p)
        connector, child = pids["connector"], pids["child"]
        assert connector == p.pid, pids
        PROCS.pids.append(child)        # reparented to us (subreaper): reaped at the end
        try:
            if reaped:
                assert p.wait(10) == 0
                assert H.process_state(connector) is None
            else:
                H.wait_until(lambda: H.process_state(connector) == "Z", 10, "the connector to be a zombie")
            p.stdin.write(b"go\n")
            p.stdin.flush()
            r = read_json_line(p, timeout=40)
            assert r["pid"] == child and r["uid"] == H.ALLOWED_UID, r
            assert r["nfds"] == 0 and not r["cmsgs"] and not r["ctrunc"], "fds sent to the child: %r" % r
            assert r["reply"] == {"error": H.ERR + "PermissionDenied",
                                  "parameters": {"reason": "subject-gone"}}, r
            e = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=connector)[0]
            assert e.get("NOIOMMUD_REASON") == "subject-gone", e
            assert e.get("NOIOMMUD_CLIENT_UID") == str(H.ALLOWED_UID), e
            H.log("decided by: %s" % ("polkitd error %s" % e["NOIOMMUD_POLKIT_ERROR"]
                                      if e.get("NOIOMMUD_POLKIT_ERROR") else
                                      "the daemon's re-check after polkit (result %s)" % e.get("NOIOMMUD_POLKIT_RESULT")))
            no_grants(env, connector)
            no_grants(env, child)
            assert not calls_since(env, n0, child), "polkit was asked about the child, not the connector"
            if not reaped:
                assert p.wait(10) == 0
        finally:
            PROCS.kill_pid(child)
        env.wait_baseline(base, what="after the orphaned child")


def row28b(env, base):
    with env.subtest("row 28b: connector alive passes the socket to a uid-2 process: decided as "
                     "the connector (uid 1), by design"):
        n0 = len(polkit_calls(env))
        x1, x2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        # the receiver first, so the request follows the connect at once (a connection that
        # sends nothing for 5 s is closed)
        recv = agent(env, H.DENIED_UID, "receive", [x2.fileno(), 4 * MiB], pass_fds=[x2.fileno()])
        x2.close()
        assert read_json_line(recv) == {"ready": recv.pid, "uid": H.DENIED_UID}
        conn = agent(env, H.ALLOWED_UID, "pass", [env.socket_path, x1.fileno()], pass_fds=[x1.fileno()])
        x1.close()
        hello = read_json_line(conn)
        connector = hello["connector"]
        assert connector == conn.pid and hello["uid"] == H.ALLOWED_UID, hello
        r = read_json_line(recv, timeout=40)
        assert r["pid"] == recv.pid and r["uid"] == H.DENIED_UID, r
        assert "error" not in r["reply"], "the connector's (uid 1) decision is allow: %r" % r
        assert r["nfds"] == 1 and not r["ctrunc"], "expected the memfd: %r" % r
        call = wait_call(env, n0, connector)
        assert call["subject"].get("uid") == ("int32", str(H.ALLOWED_UID)), call["subject"]
        assert call["subject"].get("start-time") == ("uint64", str(H.process_start_time(connector))), \
            call["subject"]
        assert not calls_since(env, n0, recv.pid), "polkit was asked about the receiving process"
        assert len(calls_since(env, n0)) == 1, [c["subject"] for c in calls_since(env, n0)]
        g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=connector)[0]
        assert g.get("NOIOMMUD_CLIENT_UID") == str(H.ALLOWED_UID), g
        a = env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=connector)[0]
        assert a.get("NOIOMMUD_CLIENT_UID") == str(H.ALLOWED_UID), a
        no_grants(env, recv.pid)
        assert H.process_state(connector) not in (None, "Z"), "the connector died during the request"
        assert recv.wait(10) == 0
        conn.stdin.close()
        assert conn.wait(10) == 0
        env.wait_baseline(base, what="after the receiving process exited")


def run_setuid(env, uid, connect_copy, setuid_copy, n0, send_first=False):
    """Runs setuid-exec-helper as uid; returns (pid, {line key: value}). With send_first the
    request is held in a stopped polkitd until the process is root."""
    argv = [SETPRIV, "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups",
            connect_copy, "connect", env.socket_path, setuid_copy] + (["--send-first"] if send_first else [])
    p = PROCS.popen(env, "setuid-exec-%d-%d" % (uid, len(PROCS.popens)), argv)
    if not send_first:
        out, _ = p.communicate(timeout=60)
    else:
        with env.polkitd_stopped():
            first = [H.readline_timeout(p.stdout, 20), H.readline_timeout(p.stdout, 20)]
            assert first[1].strip() == "sent", first
            pid = p.pid
            call = wait_call(env, n0, pid)
            assert call["subject"].get("uid") == ("int32", str(uid)), call["subject"]
            p.stdin.write(b"exec\n")
            p.stdin.flush()
            # wait until the process is root before polkitd looks at it
            more = [H.readline_timeout(p.stdout, 20), H.readline_timeout(p.stdout, 20)]
            assert more[1].startswith("root "), (first, more, env.read_log(p.log_name))
            assert proc_uids(pid) == [0, 0, 0, 0], proc_uids(pid)
        rest, _ = p.communicate(timeout=60)
        out = "".join(first + more) + rest.decode()
    out = out.decode() if isinstance(out, bytes) else out
    lines = helper_lines(out)
    assert p.returncode == 0, "setuid-exec-helper exited %d:\n%s\nstderr: %s" % (
        p.returncode, out, env.read_log(p.log_name))
    c, x, r = kv(lines["connected"]), kv(lines["exec"]), kv(lines["root"])
    assert c["ruid"] == c["euid"] == str(uid), "connected as %r" % c
    assert x["pid"] == c["pid"] == r["pid"] == str(p.pid), (c, x, r)
    assert x["ruid"] == str(uid) and x["euid"] == "0", \
        "the setuid bit of %s was not honoured (%r): mount options %r" % (setuid_copy, x, mount_options(setuid_copy))
    assert r == {"pid": str(p.pid), "ruid": "0", "euid": "0", "suid": "0"}, r
    return p.pid, lines


def row5(env, base):
    d, connect_copy, setuid_copy = make_setuid_copies(env)
    try:
        with env.subtest("row 5 premise: polkitd authorizes a uid-0 subject unconditionally"):
            # polkitd 122 always answers yes for uid 0, whatever the rules say: had the daemon
            # asked about the uid of the process *after* it became root, it would be granted
            n0 = len(polkit_calls(env))
            assert root_probe_allowed(env), "a root client was not granted"
            call = wait_call(env, n0, os.getpid())
            assert call["subject"].get("uid") == ("int32", "0"), call["subject"]
            kind, body = wait_polkit_reply(env, call)
            assert kind == "method return" and re.search(r"struct \{\s*boolean true", body), \
                "polkitd did not say yes about uid 0 (%s):\n%s" % (kind, body)
            env.wait_baseline(base, what="after the root client")

        for uid, send_first in ((H.DENIED_UID, False), (H.DENIED_UID, True), (H.CHALLENGE_UID, False)):
            want = ({"error": H.ERR + "PermissionDenied", "parameters": {"reason": "denied"}}
                    if uid == H.DENIED_UID else {"error": H.ERR + "InteractiveAuthenticationRequired"})
            name = ("row 5: uid %d connects, execs a setuid-root copy, %s: uid %d's rule decides "
                    "(%s, where root is granted), subject uid %d never 0, no fds"
                    % (uid, "sends after setresuid(0,0,0)" if not send_first else
                       "request held in the stopped polkitd until the process is root",
                       uid, want["error"].rsplit(".", 1)[1], uid))
            with env.subtest(name):
                n0 = len(polkit_calls(env))
                pid, lines = run_setuid(env, uid, connect_copy, setuid_copy, n0, send_first)
                reply = json.loads(lines["reply"])
                assert {k: v for k, v in reply.items() if k != "parameters" or uid == H.DENIED_UID} == want, \
                    "uid %d's rule must decide (root is always granted): %r" % (uid, reply)
                assert lines["fds"] == "0 cmsgs 0 ctrunc 0", "reply control data: %r" % lines["fds"]
                calls = calls_since(env, n0, pid)
                assert len(calls) == 1, [c["subject"] for c in calls]
                assert calls[0]["subject"].get("uid") == ("int32", str(uid)), calls[0]["subject"]
                for c in calls_since(env, n0):
                    assert c["subject"].get("uid") != ("int32", "0"), "polkit asked about uid 0: %r" % c
                e = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=pid)[0]
                assert e.get("NOIOMMUD_CLIENT_UID") == str(uid), e
                assert e.get("NOIOMMUD_POLKIT_RESULT") == ("denied" if uid == H.DENIED_UID else "challenge"), e
                no_grants(env, pid)
                env.wait_baseline(base, what="after the setuid client")

        with env.subtest("row 5 reverse: uid 1 connects, execs the setuid-root copy: uid 1's decision "
                         "(granted), subject uid 1"):
            n0 = len(polkit_calls(env))
            pid, lines = run_setuid(env, H.ALLOWED_UID, connect_copy, setuid_copy, n0)
            reply = json.loads(lines["reply"])
            assert "error" not in reply and re.fullmatch(r"[0-9a-f]{32}", reply["parameters"]["memory"]), \
                "uid 1's rule must decide (granted): %r" % reply
            assert lines["fds"] == "1 cmsgs 1 ctrunc 0", "expected one memfd: %r" % lines["fds"]
            calls = calls_since(env, n0, pid)
            assert len(calls) == 1 and calls[0]["subject"].get("uid") == ("int32", str(H.ALLOWED_UID)), \
                [c["subject"] for c in calls]
            for name in ("AUTHZ_GRANTED", "MEMORY_GRANTED"):
                g = env.wait_journal(name, NOIOMMUD_CLIENT_PID=pid)[0]
                assert g.get("NOIOMMUD_CLIENT_UID") == str(H.ALLOWED_UID), g
            env.wait_baseline(base, what="after the setuid client exited")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main():
    with H.Environment() as env:
        try:
            env.start_bus_monitor()
            start_reply_monitor(env)
            free0 = H.hugepages_free()
            served(env)
            w = env.connect(uid=H.DENIED_UID)
            w.call(H.ALLOCATE, {"size": 2 * MiB})
            w.close()
            base = env.settled_baseline(free0)

            row1(env, base)
            row4(env, base, H.DENIED_UID)
            row4(env, base, H.ALLOWED_UID)
            row4(env, base, H.ALLOWED_UID, polkit_yes_first=True)
            row4(env, base, H.DENIED_UID, polkit_yes_first=True)
            row28a(env, base, reaped=True)
            row28a(env, base, reaped=False)
            row28b(env, base)
            row5(env, base)

            with env.subtest("a new client is served normally"):
                served(env)
                env.wait_baseline(base, what="end")
        finally:
            PROCS.cleanup()


H.run(main)
