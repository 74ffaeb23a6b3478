#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""polkit fault injection with python3-dbusmock's polkitd template (security.md §10 rows 2, 3, 6
and 21; harness Environment(polkit="mock")). The mock logs every call with its exact D-Bus types
and can delay (SetDelay) or park (SimulateHang, SimulateHangActions) CheckAuthorization.

  * rows 2+3: the subject is unix-process{pid:u, start-time:t, uid:i, pidfd:h} with the
    connecting pid, its real start time, the kernel's uid (a uid or pid in the request body is
    refused before polkit is asked) and a pidfd of that very process; the action id, the
    validated details, flags 0 (1 only on request) and a fresh cancellation id.
  * row 21: polkitd slower than usual but within the daemon's timeout -> granted after the
    delay; polkitd hung -> PermissionDenied "polkit-unavailable" at the daemon's timeout (25 s,
    daemon/polkit.h), measured, and the late answer is ignored; 200 requests from 50 uids at once
    while polkitd hangs -> exactly the requests over the global cap of checks in flight are
    refused with LimitExceeded at once, the others are answered when polkitd is released, the
    journal is not flooded, nothing leaks, and service is normal afterwards.
  * row 6: clients that disconnect or die at every step of the authorization path, in random
    waves of 1-4 clients with random death times while SetDelay varies: socket closed (process
    alive), process killed (its socket dies with it), process killed with the socket still open
    (subject-gone). A client that was dead before polkit even saw its check must never be granted
    anything; every check the daemon abandoned is cancelled with CancelCheckAuthorization; fds
    and hugepages return to the baseline. Then a pinned phase: clients die while their checks hang
    (SimulateHangActions), and a client disconnects while the daemon itself is stopped and the
    answer is queued behind the hang-up.
  * row 17 (the same device requested during authorization) needs the vfio fixture and is
    test-device-busy.py's.

Clients of rows 6 and 21 come from a fork server (a root Python process that forks a child per
client, which drops to the wanted uid, connects and hands the socket over): a setpriv'd Python
per client would make thousands of clients take minutes. Clients are told apart by (pid,
start time), which survives pid reuse; the journal and the mock's subject carry both.
Environment: NOIOMMU_FAULTS_ITERATIONS (row 6 clients, default 1200), NOIOMMU_FAULTS_BUDGET (row 6
stops early after this many seconds, default 40), NOIOMMU_FAULTS_SEED (repeat a run)."""

import json
import os
import random
import re
import select
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from noiommutest.fixtures import served  # noqa: E402

MiB = 1 << 20
ALLOCATE_ACTION = "io.noiommud.allocate-memory"
LIST_ACTION = "io.noiommud.list-devices"
PERMISSION_DENIED = H.ERR + "PermissionDenied"
LIMIT_EXCEEDED = H.ERR + "LimitExceeded"
SUBJECT_GONE = {"error": PERMISSION_DENIED, "parameters": {"reason": "subject-gone"}}


def header_define(name):
    """An integer #define of daemon/polkit.h (the test follows the daemon's own numbers)."""
    with open(os.path.join(H.SOURCE_ROOT, "daemon", "polkit.h")) as f:
        m = re.search(r"#define\s+%s\s+\(?(\d+)(?:ULL)?(?:\s*\*\s*(\d+)ULL)?\)?" % name, f.read())
    assert m, "%s not found in daemon/polkit.h" % name
    return int(m.group(1)) * int(m.group(2) or 1)


POLKIT_TIMEOUT = header_define("NOIOMMU_POLKIT_TIMEOUT_USEC") / 1e6
PENDING_MAX = header_define("NOIOMMU_POLKIT_PENDING_MAX")
PENDING_PER_UID_MAX = header_define("NOIOMMU_POLKIT_PENDING_PER_UID_MAX")

# How late a timeout may come, and how long a delayed answer may take beyond its delay, on a
# loaded 2-core machine with the daemon under ASan.
EPSILON = 3.0


# --- fast clients as any uid -------------------------------------------------------------------

# Runs as root. For each request "uid gid keep" it forks a child that drops to uid/gid (no
# supplementary groups), connects to the daemon and sends back, over the control socket, its pid
# and three fds: the connected socket, one end of a lifeline socketpair and a pidfd of itself.
# The child then blocks on the lifeline and exits when the test closes its end (or dies, or kills
# it); teardown kills the server's process group. With keep=1 the child keeps its own copy of the
# connection, so that killing it closes the connection (once the test has closed its copy).
# SIGCHLD is ignored: the kernel reaps the children. Kept small: fork() is the cost per client.
FORK_SERVER = r"""
import os, signal, socket, sys
path, ctl = sys.argv[1], socket.socket(fileno=int(sys.argv[2]))
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
while True:
    cmd = ctl.recv(64)
    if not cmd:
        break
    uid, gid, keep = (int(x) for x in cmd.split())
    life, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:
        try:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            me = os.pidfd_open(os.getpid())
            socket.send_fds(ctl, [b"K%d" % os.getpid()], [s.fileno(), theirs.fileno(), me])
            ctl.close(); theirs.close(); os.close(me)
            if not keep:
                s.close()
            life.recv(1)
        except OSError as e:
            try:
                ctl.send(b"E%d" % e.errno)
            except OSError:
                pass
        os._exit(0)
    life.close()
    theirs.close()
"""


class ForkClients:
    def __init__(self, env):
        self.env = env
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env.spawn("fork-server", [H.PYTHON, "-I", "-S", "-c", FORK_SERVER, env.socket_path,
                                  str(theirs.fileno())], pass_fds=[theirs.fileno()])
        theirs.close()
        ours.settimeout(10)
        self.ctl = ours

    def connect(self, uid, keep=False):
        self.ctl.send(b"%d %d %d" % (uid, uid, int(keep)))
        msg, fds, _, _ = socket.recv_fds(self.ctl, 64, 3)
        if not msg.startswith(b"K") or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            raise AssertionError("fork server: connecting as uid %d failed: %r" % (uid, msg))
        return FastConnection(self.env, fds, int(msg[1:]), uid, keep)


class FastConnection(H.Connection):
    """A harness Connection whose connecting process is a fork-server child. The child's pidfd
    tells when it is really gone; key = (pid, start time) identifies it for good."""

    def __init__(self, env, fds, pid, uid, keep):
        # the state H.Connection.__init__ sets up, for a socket connected elsewhere
        self.env, self.path, self.timeout, self.helper = env, env.socket_path, 10, None
        self.buf, self.queue, self.pending_fds, self.eof = bytearray(), [], [], False
        self.sock = socket.socket(fileno=fds[0])
        self.sock.settimeout(self.timeout)
        self.life, self.pidfd = socket.socket(fileno=fds[1]), fds[2]
        self.pid, self.uid, self.keep = pid, uid, keep
        self.key = (pid, H.process_start_time(pid))       # alive: blocked on its lifeline
        env.connections.append(self)

    def dead(self, wait=0.0):
        if self.pidfd is None:
            return True
        r, _, _ = select.select([self.pidfd], [], [], wait)
        return bool(r)

    def kill(self):
        """SIGKILL, and wait until the process has exited (its files are closed by then)."""
        signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        assert self.dead(10), "client %d did not die of SIGKILL" % self.pid

    def close_socket(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def end_process(self, kill=False):
        if self.pidfd is None:
            return
        if kill:
            self.kill()
        self.life.close()              # the child exits on its own
        os.close(self.pidfd)
        self.pidfd = None

    def reply_waiting(self):
        """Whether the daemon has sent something (a reply, or EOF) that is not read yet."""
        return bool(self.queue) or bool(select.select([self.sock], [], [], 0)[0])


# --- the mock's call log -----------------------------------------------------------------------

def fdinfo_pid(fd):
    with open("/proc/self/fdinfo/%d" % fd) as f:
        m = re.search(r"^Pid:\s*(-?\d+)", f.read(), re.M)
    return int(m.group(1)) if m else None


def parse_check(args):
    """A logged CheckAuthorization call: signatures and values (a pidfd becomes (pid, inode))."""
    sigs = [H.dbus_signature(a) for a in args]
    assert len(args) == 5, "CheckAuthorization with %d arguments: %r" % (len(args), sigs)
    subject, action, details, flags, cancel = args
    fields = {}
    for k, v in subject[1].items():
        sig = H.dbus_signature(v)
        if sig == "h":
            fd = v.take()
            try:
                val = (fdinfo_pid(fd), os.fstat(fd).st_ino)
            finally:
                os.close(fd)
        elif sig in ("u", "t", "i", "x", "q", "n", "y"):
            val = int(v)
        else:
            val = str(v)
        fields[str(k)] = (sig, val)
    pid = fields.get("pid", (None, None))[1]
    st = fields.get("start-time", (None, None))[1]
    # the client's containment, which the daemon adds to every request's own details
    # (identity.c; checked in test-container-identity.py)
    identity = {str(k): str(v) for k, v in details.items() if str(k) in IDENTITY_DETAILS}
    return {"sigs": sigs, "kind": str(subject[0]), "subject": fields, "action": str(action),
            "details": {str(k): str(v) for k, v in details.items() if str(k) not in IDENTITY_DETAILS},
            "identity": identity, "flags": int(flags), "cancel": str(cancel), "key": (pid, st)}


IDENTITY_DETAILS = ("container_id", "container_engine", "unit", "cgroup", "userns_owner")


class CallLog:
    """Everything the mock logged, popped in order and kept here. The mock also writes each call
    to its stdout (logs/polkitd-mock.log) with time.time() to the millisecond, before it runs
    the call: logged_at() gives that time for a check, by cancellation id."""

    def __init__(self, mock, log_path):
        self.mock = mock
        self.checks = {}       # subject key -> [check]
        self.all_checks = []
        self.cancels = []      # cancellation ids, in order
        self.log = open(log_path, "rb")
        self.log_tail = b""
        self.logged = {}       # cancellation id -> unix time the mock logged the check

    def logged_at(self, cancel_id):
        if cancel_id not in self.logged:
            self.log_tail += self.log.read()
            *lines, self.log_tail = self.log_tail.split(b"\n")
            for line in lines:
                m = re.match(rb'(\d+\.\d+) CheckAuthorization .* "([^"]*)"\s*$', line)
                if m:
                    self.logged[m.group(2).decode()] = float(m.group(1))
        return self.logged[cancel_id]

    def pop(self):
        """Takes what the mock logged since the last pop; returns the new checks."""
        new = []
        for _, name, args in self.mock.pop_calls():
            if name == "CheckAuthorization":
                c = parse_check(args)
                self.checks.setdefault(c["key"], []).append(c)
                self.all_checks.append(c)
                new.append(c)
            elif name == "CancelCheckAuthorization":
                self.cancels.append(str(args[0]))
        return new

    def wait_checks(self, keys, timeout=10):
        """Pops until the mock has logged a check for every subject key in keys."""
        def seen():
            self.pop()
            return all(k in self.checks for k in keys)
        H.wait_until(seen, timeout, lambda: "the mock to log checks of %d clients (missing %r)"
                     % (len(keys), [k for k in keys if k not in self.checks][:5]), interval=0.005)

    def wait_cancels(self, ids, timeout=10):
        def seen():
            self.pop()
            return set(ids) <= set(self.cancels)
        H.wait_until(seen, timeout, lambda: "CancelCheckAuthorization for %r (seen %d cancels)"
                     % (sorted(set(ids) - set(self.cancels))[:5], len(self.cancels)), interval=0.01)


def reset_mock(mock, allowed=(ALLOCATE_ACTION, LIST_ACTION)):
    mock.set_delay(0)
    mock.simulate_hang(False)
    mock.simulate_hang_actions([])
    mock.release_hanging_calls()
    mock.set_allowed(list(allowed))


def journal_by_client(env, names):
    """{(pid, start time): [(record name, entry)]} for the given MESSAGE_ID names."""
    ids = {H.MSGID[n]: n for n in names}
    out = {}
    for e in env.journal.find():
        n = ids.get(e.get("MESSAGE_ID"))
        if n and e.get("NOIOMMUD_CLIENT_PID"):
            k = (int(e["NOIOMMUD_CLIENT_PID"]), int(e.get("NOIOMMUD_CLIENT_START_TIME", 0)))
            out.setdefault(k, []).append((n, e))
    return out


def request_bytes(method, params):
    return json.dumps({"method": method, "parameters": params}).encode() + b"\0"


# --- rows 2 and 3 ------------------------------------------------------------------------------

def rows_2_3(env, mock, calls):
    with env.subtest("rows 2+3: uid or pid in the request body refused before polkit is asked"):
        reset_mock(mock)
        c = env.connect(uid=31337, gid=31338)
        calls.pop()
        for body in ({"size": 4 * MiB, "uid": 0}, {"size": 4 * MiB, "pid": 1},
                     {"size": 4 * MiB, "uid": 0, "pid": 1, "gid": 0}):
            err, params = c.call_error(H.ALLOCATE, body)
            assert err == H.INVALID_PARAMETER, (body, err, params)
        time.sleep(0.1)
        assert not calls.pop(), "a refused request reached polkit"

    with env.subtest("rows 2+3: CheckAuthorization(unix-process{pid:u, start-time:t, uid:i, pidfd:h}, "
                     "action, details, flags 0, id), exact D-Bus types"):
        r, fd = H.allocate(c, 4 * MiB)
        os.close(fd)
        c.call_ok(H.FREE, {"memory": r["memory"]})
        new = calls.pop()
        assert len(new) == 1, "%d checks for one request" % len(new)
        chk = new[0]
        assert chk["sigs"] == ["(sa{sv})", "s", "a{ss}", "u", "s"], chk["sigs"]
        assert chk["kind"] == "unix-process", chk["kind"]
        s = chk["subject"]
        assert set(s) == {"pid", "start-time", "uid", "pidfd"}, "subject keys %r" % sorted(s)
        assert s["pid"] == ("u", c.pid), ("pid must be uint32 %d" % c.pid, s["pid"])
        st = H.process_start_time(c.pid)
        assert st != 0
        assert s["start-time"] == ("t", st), ("start-time must be uint64 %d" % st, s["start-time"])
        assert s["uid"] == ("i", 31337), ("uid must be int32 31337 (SO_PEERCRED; gid is 31338)", s["uid"])
        assert s["pidfd"][0] == "h" and s["pidfd"][1][0] == c.pid, \
            ("pidfd must be a unix fd naming pid %d" % c.pid, s["pidfd"])
        assert chk["action"] == ALLOCATE_ACTION, chk["action"]
        assert chk["details"] == {"size": str(4 * MiB), "hugepage_size": str(2 * MiB), "numa_node": "any"}, \
            chk["details"]
        assert chk["identity"].get("cgroup", "").startswith("/"), chk["identity"]
        assert chk["flags"] == 0, chk["flags"]
        assert chk["cancel"], "empty cancellation id"
        first_cancel = chk["cancel"]

    with env.subtest("rows 2+3: interactive sets flags 1; ListDevices: its own action, empty details; "
                     "a fresh cancellation id per check"):
        r, fd = H.allocate(c, 2 * MiB, interactive=True)
        os.close(fd)
        c.call_ok(H.FREE, {"memory": r["memory"]})
        c.call_ok(H.LIST)
        new = calls.pop()
        assert [x["action"] for x in new] == [ALLOCATE_ACTION, LIST_ACTION], [x["action"] for x in new]
        assert new[0]["flags"] == 1 and new[0]["sigs"][3] == "u", (new[0]["flags"], new[0]["sigs"])
        assert new[1]["sigs"] == ["(sa{sv})", "s", "a{ss}", "u", "s"], new[1]["sigs"]
        assert new[1]["details"] == {} and new[1]["flags"] == 0, new[1]
        for x in new:
            assert x["subject"]["uid"] == ("i", 31337) and x["subject"]["pid"] == ("u", c.pid), x["subject"]
        ids = [first_cancel] + [x["cancel"] for x in new]
        assert len(set(ids)) == 3, "cancellation ids reused: %r" % ids
        c.close()


# --- row 21 ------------------------------------------------------------------------------------

def row_21_delay(env, mock, calls):
    with env.subtest("row 21: polkitd answers after 2 s (SetDelay, below the daemon's timeout) -> granted"):
        reset_mock(mock)
        c = env.connect(uid=H.ALLOWED_UID)
        mock.set_delay(2.0)
        try:
            t0 = time.monotonic()
            r, fd = H.allocate(c, 2 * MiB)
            elapsed = time.monotonic() - t0
        finally:
            mock.set_delay(0)
        os.close(fd)
        c.call_ok(H.FREE, {"memory": r["memory"]})
        c.close()
        H.log("granted after %.3f s with a 2 s polkit delay" % elapsed)
        assert 2.0 <= elapsed < 2.0 + EPSILON, "granted after %.3f s" % elapsed
        calls.pop()


def row_21_hang(env, mock, calls, clients):
    with env.subtest("row 21: polkitd hangs (SimulateHang) -> PermissionDenied polkit-unavailable at the "
                     "daemon's timeout (%g s); others served meanwhile; the late answer is ignored"
                     % POLKIT_TIMEOUT):
        reset_mock(mock)
        mock.simulate_hang(True)
        c = clients.connect(40001)
        other = env.connect(uid=H.ALLOWED_UID)
        t0 = time.monotonic()
        c.send(H.ALLOCATE, {"size": 2 * MiB})
        calls.wait_checks([c.key])
        worst = 0.0
        while not c.reply_waiting() and time.monotonic() - t0 < POLKIT_TIMEOUT + 2 * EPSILON:
            t = time.monotonic()
            other.call_ok(H.GET_INFO, timeout=5)
            worst = max(worst, time.monotonic() - t)
            select.select([c.sock], [], [], 0.5)
        reply, fds = c.recv(timeout=1)
        elapsed = time.monotonic() - t0
        H.log("hung polkitd: denied after %.3f s (timeout %g s); GetInfo meanwhile within %.1f ms"
              % (elapsed, POLKIT_TIMEOUT, worst * 1000))
        for fd in fds:
            os.close(fd)
        assert reply is not None and not fds, (reply, fds)
        assert reply.get("error") == PERMISSION_DENIED, reply
        assert reply.get("parameters") == {"reason": "polkit-unavailable"}, reply
        assert POLKIT_TIMEOUT - 0.05 <= elapsed <= POLKIT_TIMEOUT + EPSILON, \
            "denied after %.3f s, timeout is %g s" % (elapsed, POLKIT_TIMEOUT)
        assert worst < 1.0, "GetInfo took %.3f s while polkit hung" % worst
        me = {"NOIOMMUD_CLIENT_PID": c.key[0], "NOIOMMUD_CLIENT_START_TIME": c.key[1]}
        e = env.wait_journal("AUTHZ_DENIED", **me)[0]
        assert e.get("NOIOMMUD_REASON") == "polkit-unavailable", e
        assert e.get("NOIOMMUD_POLKIT_RESULT") == "error", e
        assert e.get("NOIOMMUD_POLKIT_ERROR") in ("org.freedesktop.DBus.Error.NoReply",
                                                   "org.freedesktop.DBus.Error.Timeout"), e
        env.wait_journal("POLICY_UNAVAILABLE", **me)
        # The mock now answers "yes" to the parked call: too late, it must change nothing.
        mock.release_hanging_calls()
        mock.simulate_hang(False)
        calls.pop()
        assert c.is_open(0.5) and not c.queue, "something arrived after the denial: %r" % c.queue
        assert not env.find_journal("MEMORY_GRANTED", **me)
        assert not env.find_journal("AUTHZ_GRANTED", **me)
        # and the same connection is served normally by a polkitd that answers again
        r, fd = H.allocate(c, 2 * MiB)
        os.close(fd)
        c.call_ok(H.FREE, {"memory": r["memory"]})
        c.close()
        other.close()


def row_21_burst(env, mock, calls, clients, base):
    n_uids, per_uid = 50, 4
    total = n_uids * per_uid
    over = total - PENDING_MAX
    with env.subtest("row 21: %d requests from %d uids while polkitd hangs -> %d in flight, the %d over "
                     "the global cap LimitExceeded at once, the rest answered on release"
                     % (total, n_uids, PENDING_MAX, over)):
        assert per_uid <= PENDING_PER_UID_MAX
        reset_mock(mock, allowed=())            # answers will be "no"
        mock.simulate_hang(True)
        calls.pop()
        n0 = len(calls.all_checks)
        j0 = len(env.journal.find())
        # Each request right after its connection (a connection has 5 s to send one): all of
        # them are outstanding together, since polkitd answers none.
        conns, sent, refused, latency = [], {}, {}, []

        def collect(wait):
            r, _, _ = select.select([c.sock for c in conns if c.key not in refused], [], [], wait)
            for s in r:
                c = next(x for x in conns if x.sock is s)
                reply, fds = c.recv(timeout=1)
                for fd in fds:
                    os.close(fd)
                refused[c.key] = reply
                latency.append(time.monotonic() - sent[c.key])

        t0 = time.monotonic()
        for _ in range(per_uid):
            for i in range(n_uids):
                c = clients.connect(20000 + i)
                c.send(H.ALLOCATE, {"size": 2 * MiB})
                sent[c.key] = time.monotonic()
                conns.append(c)
                collect(0)
        t_sent = time.monotonic()
        # The refusals come at once; the checks in flight stay unanswered.
        while len(refused) < over and time.monotonic() < t_sent + 10:
            collect(0.5)
        latest = max(latency or [0])

        def enough():
            calls.pop()
            return len(calls.all_checks) - n0 >= PENDING_MAX
        H.wait_until(enough, 10, lambda: "%d checks at the mock" % (len(calls.all_checks) - n0),
                     interval=0.02)
        time.sleep(0.3)                         # nothing more comes
        calls.pop()
        checks = calls.all_checks[n0:]
        in_flight = [c for c in conns if c.key not in refused]
        H.log("%d requests sent in %.1f s; %d refused, each within %.0f ms of its request (as seen "
              "between two connects); %d checks reached the mock"
              % (total, t_sent - t0, len(refused), latest * 1000, len(checks)))
        assert len(refused) == over, "%d refused, expected %d" % (len(refused), over)
        assert latest < 2.0, "a refusal took %.3f s" % latest
        for k, reply in refused.items():
            assert reply == {"error": LIMIT_EXCEEDED, "parameters": {"limit": "polkit-checks"}}, (k, reply)
        got = sorted(c["key"] for c in checks)
        assert got == sorted(c.key for c in in_flight), \
            "the mock saw %d checks; %d requests are in flight" % (len(got), len(in_flight))
        for c in in_flight:
            assert c.is_open(0) and not c.queue, "reply to a request whose check hangs: %r" % c.queue
        # No storm: at most one LIMIT_EXCEEDED record per refusal (the daemon rate-limits them),
        # nothing louder than a warning, no D-Bus LimitsExceeded behind a refusal.
        burst = env.journal.find()[j0:]
        n_limit = sum(1 for e in burst if e.get("MESSAGE_ID") == H.MSGID["LIMIT_EXCEEDED"])
        H.log("%d LIMIT_EXCEEDED records, %d journal records in all, for %d refusals"
              % (n_limit, len(burst), over))
        assert 1 <= n_limit <= over, n_limit
        assert len(burst) <= total, "%d journal records for %d requests" % (len(burst), total)
        loud = [e for e in burst if int(e.get("PRIORITY", 6)) <= 3]
        assert not loud, "error records during the burst:\n" + env.journal.describe(loud)

        t1 = time.monotonic()
        mock.release_hanging_calls()
        mock.simulate_hang(False)
        for c in in_flight:
            reply, fds = c.recv(timeout=10)
            for fd in fds:
                os.close(fd)
            assert reply == {"error": PERMISSION_DENIED, "parameters": {"reason": "denied"}}, reply
        H.log("the %d checks in flight were answered within %.0f ms of the release"
              % (len(in_flight), (time.monotonic() - t1) * 1000))
        burst = env.journal.find()[j0:]
        assert not any("LimitsExceeded" in e.get("NOIOMMUD_POLKIT_ERROR", "") for e in burst)

        # Normal service: refused connections ask again and get polkit's answer, not a refusal.
        for c in [x for x in conns if x.key in refused][:16]:
            err, params = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert (err, params) == (PERMISSION_DENIED, {"reason": "denied"}), (err, params)
        for c in conns:
            c.close()
        reset_mock(mock)
        served(env, clients)
        env.wait_baseline(base, what="after the burst")


# --- row 6 -------------------------------------------------------------------------------------

class Client:
    """One client of the kill loop and what happened to it."""

    def __init__(self, conn, mode, step):
        self.c, self.mode, self.step = conn, mode, step
        self.key = conn.key
        self.answered = False     # a reply was waiting when it died
        self.strict = None        # dead before polkit can have answered its check
        self.reply = None
        self.t_dead = None        # time.time() when it was dead


def die(cl):
    c = cl.c
    cl.answered = c.reply_waiting()
    if cl.mode == "close":                 # the process lives on, the connection is gone
        c.close_socket()
    elif cl.mode == "kill":                # the process dies and takes the connection with it
        c.close_socket()
        c.kill()
    else:                                  # "kill-keep": the process dies, the socket lives on
        c.kill()
    cl.t_dead = time.time()


def row_6_loop(env, mock, calls, clients, base, rng):
    iterations = int(os.environ.get("NOIOMMU_FAULTS_ITERATIONS", "1200"))
    budget = float(os.environ.get("NOIOMMU_FAULTS_BUDGET", "40"))      # seconds, for the meson timeout
    done = []
    with env.subtest("row 6: clients die at random points of the authorization (SetDelay varies), "
                     "never granted once dead, abandoned checks cancelled"):
        reset_mock(mock)
        calls.pop()
        # calibration: a whole allowed AllocateMemory
        t = []
        for _ in range(10):
            t0 = time.monotonic()
            served(env, clients, uid=40000)
            t.append(time.monotonic() - t0)
        t_req = sorted(t)[len(t) // 2]
        H.log("row 6: a whole request takes %.1f ms; up to %d clients within %.0f s"
              % (t_req * 1000, iterations, budget))
        base = env.settled_baseline(base[1])
        calls.pop()
        req = request_bytes(H.ALLOCATE, {"size": 2 * MiB})
        delay, t_start, n, wave_no, n_hung = 0.0, time.monotonic(), 0, 0, 0
        while n < iterations and time.monotonic() - t_start < budget:
            if wave_no % 25 == 0:
                delay = rng.choice([0, 0, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02])
                mock.set_delay(delay)
            wave_no += 1
            # One wave in five is pinned: its checks hang until every client of it is dead.
            hung = rng.random() < 0.2
            if hung:
                mock.simulate_hang(True)
                n_hung += 1
            wave = []
            for _ in range(rng.choice([1, 1, 2, 3, 4])):
                mode = rng.choice(["close", "kill", "kill-keep"])
                step = rng.choices(["connected", "partial", "request"], weights=[1, 1, 8])[0]
                uid = 40100 + n % 400              # never near the per-uid cap
                wave.append(Client(clients.connect(uid, keep=(mode == "kill")), mode, step))
                n += 1
            t0 = time.monotonic()
            horizon = 1.5 * (t_req + delay * len(wave))
            for cl in wave:
                if cl.step == "request":
                    cl.c.send_raw(req)
                elif cl.step == "partial":
                    cl.c.send_raw(req[:rng.randrange(1, len(req) - 1)])
                cl.t_die = t0 + (rng.uniform(0, t_req) if rng.random() < 0.5 else rng.uniform(0, horizon))
            for cl in sorted(wave, key=lambda x: x.t_die):
                pause = cl.t_die - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                die(cl)
            # Every client of the wave is dead now. A check polkit cannot have answered before
            # its client died must not lead to a grant: a check of a pinned wave; a check the
            # mock has not logged yet (it is answered after this pop, which follows the death);
            # a check logged less than the delay before the death (SetDelay sleeps first).
            calls.pop()
            if hung:
                mock.simulate_hang(False)          # first: nothing sent from now on is parked
                mock.release_hanging_calls()
            for cl in wave:
                cl.hung = hung
                chk = calls.checks.get(cl.key)
                cl.strict = (hung or not chk or
                             cl.t_dead < calls.logged_at(chk[0]["cancel"]) + delay - 0.002)
                if cl.mode == "kill-keep" and cl.step == "request":
                    cl.reply, fds = cl.c.recv(timeout=POLKIT_TIMEOUT + EPSILON)
                    for fd in fds:
                        os.close(fd)
                cl.c.close()
            done += wave
        elapsed = time.monotonic() - t_start
        mock.set_delay(0)
        env.wait_baseline(base, timeout=20, what="after the kill loop")
        time.sleep(0.2)
        calls.pop()
        H.log("row 6: %d clients in %d waves (%d pinned) in %.1f s (%.1f ms per client)"
              % (len(done), wave_no, n_hung, elapsed, elapsed * 1000 / max(len(done), 1)))
        H.log("row 6: dead before polkit can have answered: %d in pinned waves, %d by the mock's timing"
              % (sum(1 for cl in done if cl.strict and cl.hung and cl.step == "request"),
                 sum(1 for cl in done if cl.strict and not cl.hung and cl.step == "request")))
        check_row_6(env, calls, done)
        assert len(done) >= min(iterations, 200), "only %d clients ran" % len(done)
    return done


def check_row_6(env, calls, clients, expect_cancel_for=()):
    """The oracles of row 6 over a set of dead clients."""
    recs = journal_by_client(env, ["AUTHZ_GRANTED", "AUTHZ_DENIED", "MEMORY_GRANTED", "MEMORY_FREED"])
    cancels = set(calls.cancels)
    stats = {}
    problems = []
    for cl in clients:
        r = recs.get(cl.key, [])
        names = [n for n, _ in r]
        checks = calls.checks.get(cl.key, [])
        authz = [e for n, e in r if n in ("AUTHZ_GRANTED", "AUTHZ_DENIED")]
        granted = [e for n, e in r if n == "MEMORY_GRANTED"]
        outcome = ("granted" if granted else
                   authz[0].get("NOIOMMUD_REASON") if authz else
                   "no-check" if not checks else "answered-unused")
        stats.setdefault((cl.mode, cl.step), {}).setdefault(outcome, 0)
        stats[(cl.mode, cl.step)][outcome] += 1
        if len(checks) > 1:
            problems.append("%r: %d checks for one request" % (cl.key, len(checks)))
        if cl.step != "request" and checks:
            problems.append("%r: a check for an incomplete request" % (cl.key,))
        if len(authz) > 1:
            problems.append("%r: %d authorization records: %r" % (cl.key, len(authz), names))
        if cl.strict and (granted or "AUTHZ_GRANTED" in names):
            problems.append("%r (%s, %s): GRANTED although dead before polkit can have answered: %r"
                            % (cl.key, cl.mode, cl.step, names))
        if cl.strict and cl.answered:
            problems.append("%r: a reply before polkit can have answered" % (cl.key,))
        for g in granted:
            mem = g.get("NOIOMMUD_MEMORY_ID")
            if not any(n == "MEMORY_FREED" and e.get("NOIOMMUD_MEMORY_ID") == mem for n, e in r):
                problems.append("%r: memory %s granted and never freed" % (cl.key, mem))
        disconnected = [e for e in authz if e.get("NOIOMMUD_REASON") == "client-disconnected"]
        if disconnected:
            if not checks:
                problems.append("%r: abandoned a check the mock never saw" % (cl.key,))
            elif checks[0]["cancel"] not in cancels:
                problems.append("%r: check %s abandoned (client-disconnected) but not cancelled"
                                % (cl.key, checks[0]["cancel"]))
        if cl.key in expect_cancel_for and not disconnected:
            problems.append("%r: died while its check hung, but no client-disconnected record: %r"
                            % (cl.key, names))
        if cl.mode == "kill-keep" and cl.step == "request" and cl.reply is not None:
            if cl.strict and cl.reply != SUBJECT_GONE:
                problems.append("%r: dead before its check, but the reply was %r" % (cl.key, cl.reply))
    ours = {cl.key: cl for cl in clients}
    mine = {c["cancel"]: k for k, cs in calls.checks.items() for c in cs}
    for cid in cancels:
        if cid not in mine:
            problems.append("CancelCheckAuthorization(%s) for a check never sent" % cid)
    n_strict = sum(1 for cl in clients if cl.strict and cl.step == "request")
    n_strict_checked = sum(1 for cl in clients if cl.strict and cl.key in calls.checks)
    n_cancel = sum(1 for cid in cancels if mine.get(cid) in ours)
    n_granted = sum(v.get("granted", 0) for v in stats.values())
    H.log("%d clients: %d sent a whole request and died before polkit can have answered it (%d of "
          "them after the check was sent), %d checks cancelled, %d granted before death"
          % (len(clients), n_strict, n_strict_checked, n_cancel, n_granted))
    for (mode, step), v in sorted(stats.items()):
        H.log("  %-9s %-9s %s" % (mode, step, " ".join("%s=%d" % kv for kv in sorted(v.items()))))
    assert not problems, "%d problems:\n  %s" % (len(problems), "\n  ".join(problems[:30]))
    return stats


def row_6_pinned(env, mock, calls, clients, base):
    with env.subtest("row 6: clients die while their checks hang (SimulateHangActions), then "
                     "ReleaseHangingCalls: no grants, every abandoned check cancelled"):
        reset_mock(mock)
        mock.simulate_hang_actions([ALLOCATE_ACTION])
        calls.pop()
        wave = []
        for i, mode in enumerate(["close", "kill", "kill-keep"] * 4):
            wave.append(Client(clients.connect(41000 + i, keep=(mode == "kill")), mode, "request"))
        for cl in wave:
            cl.c.send(H.ALLOCATE, {"size": 2 * MiB})
        calls.wait_checks([cl.key for cl in wave])
        # the daemon still serves everything else, polkit included
        lister = clients.connect(41100)
        lister.call_ok(H.LIST, timeout=5)
        lister.close()
        for cl in wave:
            die(cl)
            cl.strict = True
        gone = [cl for cl in wave if cl.mode != "kill-keep"]
        ids = [calls.checks[cl.key][0]["cancel"] for cl in gone]
        calls.wait_cancels(ids)
        for cl in gone:
            env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=cl.key[0],
                             NOIOMMUD_CLIENT_START_TIME=cl.key[1], NOIOMMUD_REASON="client-disconnected")
        kept = [cl for cl in wave if cl.mode == "kill-keep"]
        for cl in kept:
            assert cl.c.is_open(0) and not cl.c.queue, "reply while the check hangs: %r" % cl.c.queue
        mock.release_hanging_calls()            # "yes" to every parked check, all too late
        for cl in kept:
            cl.reply, fds = cl.c.recv(timeout=10)
            for fd in fds:
                os.close(fd)
            assert not fds, "fds sent to a dead client"
            assert cl.reply == SUBJECT_GONE, cl.reply
            cl.c.close()
        for cl in wave:
            cl.c.close()
        mock.simulate_hang_actions([])
        env.wait_baseline(base, what="after the pinned phase")
        time.sleep(0.2)
        calls.pop()
        check_row_6(env, calls, wave, expect_cancel_for={cl.key for cl in gone})

    with env.subtest("row 6: the client disconnects while the daemon is stopped and the answer is "
                     "queued behind the hang-up -> no grant"):
        outcomes = []
        for mode in ("close", "kill") * 3:
            reset_mock(mock)
            mock.simulate_hang_actions([ALLOCATE_ACTION])
            cl = Client(clients.connect(41200 + len(outcomes), keep=(mode == "kill")), mode, "request")
            cl.c.send(H.ALLOCATE, {"size": 2 * MiB})
            calls.wait_checks([cl.key])
            os.kill(env.daemon_pid, signal.SIGSTOP)
            try:
                H.wait_until(lambda: H.process_state(env.daemon_pid) in ("T", "t"), 5, "the daemon to stop")
                die(cl)
                cl.strict = True
                mock.release_hanging_calls()   # "yes", while the daemon cannot read it yet
                time.sleep(0.2)                # the bus delivers it into the daemon's socket
            finally:
                os.kill(env.daemon_pid, signal.SIGCONT)
            cl.c.close()
            env.wait_baseline(base, what="after a disconnect during a stopped daemon")
            r = journal_by_client(env, ["AUTHZ_GRANTED", "AUTHZ_DENIED", "MEMORY_GRANTED"]).get(cl.key, [])
            outcomes.append((mode, [n + ("(%s)" % e.get("NOIOMMUD_REASON") if n == "AUTHZ_DENIED" else "")
                                    for n, e in r]))
            calls.pop()
            check_row_6(env, calls, [cl])
        H.log("stopped-daemon outcomes: %r" % outcomes)
        reset_mock(mock)


def main():
    seed = int(os.environ.get("NOIOMMU_FAULTS_SEED") or random.SystemRandom().randrange(1 << 32))
    H.log("seed %d (NOIOMMU_FAULTS_SEED to repeat)" % seed)
    rng = random.Random(seed)
    with H.Environment(polkit="mock") as env:
        mock = env.polkit_mock
        calls = CallLog(mock, env.logs["polkitd-mock"])
        clients = ForkClients(env)
        reset_mock(mock)
        free0 = H.hugepages_free()
        served(env)
        base = env.settled_baseline(free0)
        t_all = time.monotonic()

        rows_2_3(env, mock, calls)
        row_21_delay(env, mock, calls)
        row_6_loop(env, mock, calls, clients, base, rng)
        row_6_pinned(env, mock, calls, clients, base)
        row_21_burst(env, mock, calls, clients, base)
        row_21_hang(env, mock, calls, clients)

        with env.subtest("afterwards: a new client is served; fds and hugepages at the baseline"):
            reset_mock(mock)
            c = env.connect(uid=H.ALLOWED_UID)
            r, fd = H.allocate(c, 4 * MiB)
            assert H.hugepages_free() == base[1] - 2
            os.close(fd)
            c.close()
            env.wait_baseline(base, what="end")
            env.assert_daemon_alive()
        H.log("all subtests in %.1f s" % (time.monotonic() - t_all))


H.run(main)
