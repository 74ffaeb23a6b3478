#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Restart without losing leases (security.md §8, design.md §3.3): the daemon runs under
fdstore_manager.FdStoreManager, a fake service manager with an fd store, and is killed with
SIGKILL and started again with everything it stored.

First the manager itself is checked against a toy daemon written here in Python (self-check;
`test-restart.py --self-check` runs only that part, without polkit, the bus or the daemon):
LISTEN_* handed over correctly, the state memfd survives three kill -9 cycles without being
duplicated, unknown fds are removed with FDSTOREREMOVE, hung-up connections are dropped unless
FDPOLL=0, messages from other pids, invalid names and fds without FDSTORE=1 are refused,
FileDescriptorStoreMax= is enforced, and a stop flushes the store.

Then the real daemon (private bus, real polkitd, journal capture from harness.py):

  a. memory survives kill -9: nothing is freed while the daemon is dead; after the restart the
     client's connection still answers, FreeMemory works and the pages come back; the store
     holds each file once and the daemon's fd count is what it was before the kill;
  b. a client that went away while the daemon was dead is reclaimed on restart (MEMORY_FREED,
     reason reclaim-after-restart), also when its hung-up connection is still in the store;
  c. fds the daemon does not recognise (junk, a made-up mem-<id>) are removed on restart;
  d. three kill -9/restart cycles (fd orders fifo, lifo, random) with a live client: memory
     intact, store size stable, exactly one state generation;
  e. with the vfio mock: a device lease survives kill -9 and is released with the quiesce
     order; a lease whose client died meanwhile is reclaimed with quiesce; a cdev-noiommu
     lease whose physical addresses moved meanwhile (the mock's moved-pa fault: GET_PA
     answers other addresses than those granted) is quarantined on restart (LEASE_BROKEN),
     nothing is released even after the client lets go, and a RevokeLease quiesces first;
  f. SIGTERM with memory held: everything freed (reason shutdown), exit 0, STOPPING=1;
  g. a connection the daemon closes reaches the client as EOF although the store held a copy.
"""

import json
import os
import re
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fdstore_manager as M  # noqa: E402

MiB = 1 << 20
HP = 2 * MiB
REVOKE = "io.noiommud.Broker.RevokeLease"

# --- self-check: a toy daemon ------------------------------------------------------------------

TOY = r"""
import json, os, signal, socket, sys
report = sys.argv[1]
pid = os.getpid()
n = int(os.environ.get("LISTEN_FDS", "0"))
names = os.environ.get("LISTEN_FDNAMES", "").split(":") if n else []
info = {"pid": pid, "listen_pid": os.environ.get("LISTEN_PID"), "n": n, "names": names, "fds": []}
for i in range(n):
    fd = 3 + i
    st = os.fstat(fd)
    kind = "sock" if (st.st_mode & 0o170000) == 0o140000 else "other"
    acc = None
    if kind == "sock":
        s = socket.socket(fileno=os.dup(fd))
        acc = s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        s.close()
    info["fds"].append({"fd": fd, "kind": kind, "listening": acc,
                        "cloexec": bool(__import__("fcntl").fcntl(fd, 1) & 1)})
path = os.environ["NOTIFY_SOCKET"]
def notify(text, fds=()):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, b"".join(f.to_bytes(4, sys.byteorder, signed=True) for f in fds))] if fds else []
    s.sendmsg([text.encode()], anc, 0, path)
    s.close()
listen = None
state = None
for i, name in enumerate(names):
    fd = 3 + i
    if name == "io":
        listen = socket.socket(fileno=fd)
    elif name == "state":
        state = fd
    elif name.startswith("keep-") or name.startswith("conn-"):
        notify("FDSTORE=1\nFDNAME=%s%s" % (name, "" if name.startswith("conn-") else "\nFDPOLL=0"), [fd])
    else:
        notify("FDSTOREREMOVE=1\nFDNAME=" + name)
        os.close(fd)
if state is None:
    state = os.memfd_create("toy-state")
    os.write(state, b"0")
counter = int(os.pread(state, 32, 0) or b"0") + 1
os.ftruncate(state, 0)
os.pwrite(state, str(counter).encode(), 0)
info["counter"] = counter
notify("FDSTORE=1\nFDNAME=state\nFDPOLL=0", [state, state])  # twice: the manager keeps one
with open(report, "a") as f:
    f.write(json.dumps(info) + "\n")
def term(*a):
    notify("STOPPING=1")
    os._exit(0)
signal.signal(signal.SIGTERM, term)
notify("READY=1\nSTATUS=toy up")
conns = []
nconn = 0
while True:
    c, _ = listen.accept()
    nconn += 1
    conns.append(c)
    notify("FDSTORE=1\nFDNAME=conn-%d-%d" % (counter, nconn), [c.fileno()])
    f = c.makefile("rb")
    c.sendall(b"hello\n")
    for line in f:
        cmd = line.decode().split()
        if not cmd:
            continue
        if cmd[0] == "bad-name":
            m = os.memfd_create("x")
            notify("FDSTORE=1\nFDNAME=" + bytes.fromhex(cmd[1]).decode(), [m]); os.close(m)
        elif cmd[0] == "child-store":
            child = os.fork()
            if child == 0:
                m = os.memfd_create("x")
                notify("FDSTORE=1\nFDNAME=child\nFDPOLL=0", [m])
                os._exit(0)
            os.waitpid(child, 0)
        elif cmd[0] == "no-fdstore":
            m = os.memfd_create("x")
            notify("FDNAME=loose", [m]); os.close(m)
        elif cmd[0] == "flood":
            for i in range(int(cmd[1])):
                m = os.memfd_create("x")
                notify("FDSTORE=1\nFDNAME=keep-%d\nFDPOLL=0" % i, [m]); os.close(m)
        elif cmd[0] == "remove":
            notify("FDSTOREREMOVE=1\nFDNAME=" + cmd[1])
        c.sendall(b"ok\n")
"""


def own_fds():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))


class ToyClient:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.s.settimeout(10)
        self.s.connect(path)
        self.f = self.s.makefile("rb")

    def line(self):
        return self.f.readline().decode().strip()

    def cmd(self, text):
        self.s.sendall(text.encode() + b"\n")
        got = self.line()
        assert got == "ok", "toy answered %r to %r" % (got, text)

    def close(self):
        self.f.close()
        self.s.close()


class Checks:
    """subtest() of harness.Environment for the self-check, which runs without an Environment."""

    def __init__(self):
        self.failures = []

    def subtest(self, name):
        import contextlib
        import traceback

        @contextlib.contextmanager
        def cm():
            t0 = time.monotonic()
            try:
                yield
            except Exception:
                self.failures.append(name)
                print("not ok - %s" % name, flush=True)
                traceback.print_exc()
                sys.stdout.flush()
            else:
                print("ok - %s (%.0f ms)" % (name, (time.monotonic() - t0) * 1000), flush=True)
        return cm()


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + (what() if callable(what) else what))
        time.sleep(0.01)


def toy_reports(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def self_check(t, tmp):
    """Checks FdStoreManager against the toy daemon. t: something with subtest()."""
    fds_before = own_fds()
    report = os.path.join(tmp, "toy-report")
    sock = os.path.join(tmp, "toy.sock")
    argv = [M._PYTHON, "-I", "-S", "-c", TOY, report]
    mgr = M.FdStoreManager(argv, listen_path=sock, workdir=tmp, log_path=os.path.join(tmp, "toy.log"))
    try:
        with t.subtest("manager: LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, io at fd 3, READY=1"):
            pid = mgr.start()
            mgr.wait_ready()
            r = toy_reports(report)[-1]
            assert r["pid"] == pid and r["listen_pid"] == str(pid), r
            assert r["n"] == 1 and r["names"] == ["io"], r
            assert r["fds"] == [{"fd": 3, "kind": "sock", "listening": 1, "cloexec": False}], r
            wait_until(lambda: mgr.names() == ["state"], 5, lambda: "state stored: %r" % mgr.names())
            assert mgr.duplicates == [("state", "state")], mgr.duplicates
            assert mgr.messages()[-1].get("STATUS") == "toy up", mgr.messages()
            assert not mgr.errors, mgr.errors

        with t.subtest("manager: state survives 3x kill -9 without duplicates; order of fds"):
            for i, order in enumerate(("fifo", "lifo", "random")):
                rc = mgr.kill9()
                assert rc == -9, rc
                mgr.inject("keep-%d" % i, mgr.stored()[0][1])  # a duplicate: refused
                mgr.restart(order=order)
                r = toy_reports(report)[-1]
                assert r["counter"] == i + 2, r
                assert r["names"] == ["io", "state"], r
            assert mgr.names() == ["state"], mgr.names()
            assert len(mgr.duplicates) == 10 and all(d[1] == "state" for d in mgr.duplicates), mgr.duplicates
            keeps = [os.memfd_create("k%d" % i) for i in range(3)]
            for i, fd in enumerate(keeps):
                assert mgr.inject("keep-%d" % i, fd)
                os.close(fd)
            mgr.kill9()
            mgr.restart(order="lifo")
            assert toy_reports(report)[-1]["names"] == ["io", "keep-2", "keep-1", "keep-0", "state"]
            mgr.kill9()
            mgr.restart(order="fifo")
            assert toy_reports(report)[-1]["names"] == ["io", "state", "keep-0", "keep-1", "keep-2"]
            assert mgr.names() == ["state", "keep-0", "keep-1", "keep-2"], mgr.names()
            assert not mgr.errors, mgr.errors

        with t.subtest("manager: an unknown fd is passed once and removed with FDSTOREREMOVE"):
            mgr.kill9()
            junk = os.eventfd(0)
            assert mgr.inject("junk", junk)
            os.close(junk)
            mgr.restart()
            assert "junk" in toy_reports(report)[-1]["names"]
            wait_until(lambda: "junk" not in mgr.names(), 5, lambda: "junk removed: %r" % mgr.names())
            assert (mgr.generation, "junk", 1) in mgr.removed, mgr.removed
            c = ToyClient(sock)
            assert c.line() == "hello"
            for i in range(3):
                c.cmd("remove keep-%d" % i)
            mgr.drain()
            assert sorted(mgr.names()) == sorted(["state"] + [n for n in mgr.names() if n.startswith("conn-")])
            c.close()

        with t.subtest("manager: hung-up connection dropped at once, FDPOLL=0 socket kept"):
            c = ToyClient(sock)
            assert c.line() == "hello"
            conn = wait_until(lambda: [n for n in mgr.names() if n.startswith("conn-")], 5, "conn stored")
            assert len(conn) == 1, conn
            c.close()
            wait_until(lambda: conn[0] not in mgr.names(), 5, lambda: "conn dropped: %r" % mgr.names())
            assert (conn[0], "POLLHUP") in mgr.dropped, mgr.dropped
            a, b = socket.socketpair()
            mgr.inject("peer-nopoll", a.fileno(), poll=False)
            mgr.inject("peer-poll", b.fileno(), poll=True)
            a.close()
            b.close()      # both ends now only in the store: neither hangs up
            time.sleep(0.1)
            mgr.sweep()
            assert "peer-nopoll" in mgr.names() and "peer-poll" in mgr.names(), mgr.names()
            # close the no-poll end in the store: the polled one hangs up and goes, the other stays
            with mgr.lock:
                e = mgr.entries_named("peer-nopoll")[0]
                s = socket.socket(fileno=os.dup(e.fd))
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            wait_until(lambda: "peer-poll" not in mgr.names(), 5, "peer-poll dropped")
            mgr.sweep()
            assert "peer-nopoll" in mgr.names(), mgr.names()
            mgr.kill9()
            mgr.restart()       # the toy removes peer-nopoll (unknown)
            wait_until(lambda: "peer-nopoll" not in mgr.names(), 5, "peer-nopoll removed")

        with t.subtest("manager: a client that hangs up while the daemon is dead is not passed on"):
            c = ToyClient(sock)
            assert c.line() == "hello"
            conn = wait_until(lambda: [n for n in mgr.names() if n.startswith("conn-")], 5, "conn stored")
            mgr.kill9()
            assert conn[0] in mgr.names()
            c2 = ToyClient(sock)          # queued in the backlog while nobody accepts
            c.close()
            wait_until(lambda: conn[0] not in mgr.names(), 5, "conn dropped while the toy is dead")
            mgr.restart()
            assert conn[0] not in mgr.starts[-1], mgr.starts[-1]
            assert c2.line() == "hello"   # the new instance accepts from the same socket
            c2.close()

        with t.subtest("manager: refuses other pids, invalid names, fds without FDSTORE=1"):
            c = ToyClient(sock)
            assert c.line() == "hello"
            before = list(mgr.errors)
            c.cmd("child-store")
            mgr.drain()
            new = mgr.errors[len(before):]
            assert len(new) == 1 and "from pid" in new[0] and "1 fds dropped" in new[0], new
            assert "child" not in mgr.names()
            for bad in ("a:b", "x" * 256, "tab\there", "\u00e9t\u00e9"):
                n0 = len(mgr.errors)
                c.cmd("bad-name " + bad.encode().hex())
                mgr.drain()
                assert len(mgr.errors) == n0 + 1 and "invalid FDNAME" in mgr.errors[-1], mgr.errors[n0:]
                assert "stored" in mgr.names()
                c.cmd("remove stored")
                mgr.drain()
                assert "stored" not in mgr.names()
            n0 = len(mgr.errors)
            c.cmd("no-fdstore")
            mgr.drain()
            assert len(mgr.errors) == n0 + 1 and "without FDSTORE=1" in mgr.errors[-1], mgr.errors[n0:]
            c.close()
            mgr.errors[:] = []
    finally:
        mgr.close()

    mgr = M.FdStoreManager(argv, listen_path=sock, workdir=tmp, store_max=4,
                           log_path=os.path.join(tmp, "toy.log"))
    try:
        with t.subtest("manager: FileDescriptorStoreMax= is enforced"):
            mgr.start()
            mgr.wait_ready()
            c = ToyClient(sock)
            assert c.line() == "hello"
            c.cmd("flood 5")
            mgr.drain()
            c.close()
            wait_until(lambda: not [n for n in mgr.names() if n.startswith("conn-")], 5, "conn dropped")
            # state + conn-1-1 + keep-0 + keep-1 fill the 4 slots; keep-2..4 are refused
            assert mgr.names() == ["state", "keep-0", "keep-1"], mgr.names()
            full = [e for e in mgr.errors if "store full" in e]
            assert len(full) == 3 and len(mgr.errors) == 3, mgr.errors
            mgr.errors[:] = []

        with t.subtest("manager: stop() sends SIGTERM, sees STOPPING=1 and flushes the store"):
            rc = mgr.stop()
            assert rc == 0, rc
            assert any("STOPPING=1" in n.tags for n in mgr.messages()), mgr.messages()
            assert mgr.stored() == [], mgr.names()
            mgr.start()
            mgr.wait_ready()
            r = toy_reports(report)[-1]
            assert r["names"] == ["io"] and r["counter"] == 1, r
            assert not mgr.errors, mgr.errors
    finally:
        mgr.close()

    with t.subtest("manager: no fd of the manager left behind"):
        assert own_fds() == fds_before, "fds before %r, after %r" % (fds_before, own_fds())


# --- the real daemon ---------------------------------------------------------------------------

DAEMON_SCRIPT = ('mount --make-rprivate / && mount --bind "$1" /run/systemd/journal && '
                 'shift && exec "$@"')
HEX32 = r"[0-9a-f]{32}"


def daemon_manager(env, extra_args=(), extra_env=None, order="fifo"):
    """An FdStoreManager running env's daemon the way harness.Environment.start_daemon() does,
    but socket-activated on env.socket_path. --listen names a decoy path the daemon must not
    bind (it has to use the socket it is given)."""
    os.makedirs("/run/systemd/journal", exist_ok=True)
    decoy = os.path.join(env.tmp, "decoy.sock")
    argv = (["unshare", "-m", "sh", "-c", DAEMON_SCRIPT, "sh", os.path.join(env.tmp, "journal"),
             env.daemon_bin, "--listen", decoy] + list(env.daemon_args) + list(extra_args))
    e = dict(env.env)
    e.update(extra_env or {})
    mgrdir = os.path.join(env.tmp, "manager")
    os.makedirs(mgrdir, exist_ok=True)
    env.logs["noiommud"] = os.path.join(env.tmp, "logs", "noiommud.log")
    mgr = M.FdStoreManager(argv, env=e, listen_path=env.socket_path, workdir=mgrdir,
                           log_path=env.logs["noiommud"], order=order)
    mgr.decoy = decoy
    return mgr


def attach(env, mgr):
    """Lets the harness helpers (daemon_fd_count, wait_baseline, ...) see the current daemon."""
    env.daemon = mgr.proc
    env.daemon_pid = mgr.main_pid


def start(env, mgr, **kw):
    mgr.start(**kw)
    attach(env, mgr)
    mgr.wait_ready()
    assert not os.path.exists(mgr.decoy), "the daemon bound --listen instead of the passed socket"


def kill9(env, mgr):
    env.daemon = None
    mgr.kill9()


def restart(env, mgr, **kw):
    env.daemon = None
    mgr.start(**kw)
    attach(env, mgr)
    mgr.wait_ready()


def describe_store(mgr):
    return "store %r; removed %r; dropped %r; errors %r" % (mgr.names(), mgr.removed[-10:],
                                                          mgr.dropped[-10:], mgr.errors)


def store_shape(mgr):
    """Store names with ids replaced, counted: {'conn-*': 1, 'mem-*': 2, 'state-*': 1}."""
    out = {}
    for n in mgr.names():
        k = re.sub(HEX32, "*", n)
        k = re.sub(r"^state-[01]$", "state-*", k)
        out[k] = out.get(k, 0) + 1
    return out


def check_store_sane(mgr, H):
    """Each file once (the manager guarantees it; count what the daemon tried to store twice),
    exactly one state generation, every name is one the daemon documents."""
    # The daemon stores a new state before it removes the previous one (so that a crash in
    # between leaves one), so two generations can be seen for a moment: wait for it to settle.
    deadline = time.monotonic() + 5
    while True:
        names = mgr.names()
        states = [n for n in names if re.fullmatch(r"state-[01]", n)]
        if len(states) == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert len(states) == 1, "state generations in the store: %r (%s)" % (states, describe_store(mgr))
    for n in names:
        assert re.fullmatch(r"(conn-%s|mem-%s|lease-%s(-(dev|grp|ctr|iommufd))?|state-[01])" % (HEX32, HEX32, HEX32), n), \
            "unexpected name %r in the store (%s)" % (n, describe_store(mgr))
    for n in set(names):
        if n.startswith("conn-") or n.startswith("state-"):
            assert names.count(n) == 1, "%s stored %d times: %s" % (n, names.count(n), describe_store(mgr))
        if n.startswith("mem-"):
            assert names.count(n) in (1, 2), "%s: %d fds (memfd + io_uring expected)" % (n, names.count(n))
    for e in mgr.entries:
        if e.name.startswith("conn-"):
            assert e.poll, "%s stored with FDPOLL=0: a dead client would never drop out" % e.name
        else:
            assert not e.poll, "%s stored without FDPOLL=0" % e.name


def mem_names(mgr, memory):
    return [n for n in mgr.names() if n == "mem-" + memory]


def conn_names(mgr):
    return sorted(set(n for n in mgr.names() if n.startswith("conn-")))


def daemon_tests(H):
    with H.Environment(daemon=False, hugepages=32) as env:
        mgr = daemon_manager(env)
        try:
            start(env, mgr)
            base_free = H.hugepages_free()
            empty_shape = store_shape(mgr)
            H.log("store after the first start: %r" % mgr.names())
            with env.subtest("fresh start: socket-activated, only a state generation stored"):
                assert mgr.starts[-1] == ["io"], mgr.starts
                c = env.connect(uid=H.ALLOWED_UID)
                c.call_ok(H.GET_INFO)
                c.close()
                wait_until(lambda: not conn_names(mgr), 5, lambda: describe_store(mgr))
                assert set(empty_shape) <= {"state-*"}, describe_store(mgr)
                assert not mgr.errors, mgr.errors

            run_a(env, mgr, H, base_free)
            run_b(env, mgr, H, base_free)
            run_c(env, mgr, H)
            run_d(env, mgr, H, base_free)
            run_g(env, mgr, H)
            run_h(env, mgr, H, base_free)
            run_f(env, mgr, H, base_free)
            with env.subtest("no notify protocol errors over the whole run"):
                assert not mgr.errors, mgr.errors
        finally:
            env.daemon = None
            mgr.close()


def store_failures(env):
    """The daemon's own warnings about fds it could not store (they explain a missing name)."""
    return [e.get("MESSAGE") for e in env.journal.find() if "fd store" in str(e.get("MESSAGE", ""))]


def hold_memory(env, H, mgr, size=4 * MiB):
    c = env.connect(uid=H.ALLOWED_UID)
    r, fd = H.allocate(c, size)
    try:
        wait_until(lambda: mem_names(mgr, r["memory"]) and conn_names(mgr), 5,
                   lambda: "mem-%s and a conn-* in the store before the memfd reached the client: %s;"
                   " daemon said: %r" % (r["memory"], describe_store(mgr), store_failures(env)))
    except AssertionError:
        os.close(fd)
        c.close()
        raise
    return c, r, fd


def run_a(env, mgr, H, free0):
    with env.subtest("a. memory survives kill -9, FreeMemory after the restart"):
        c, r, fd = hold_memory(env, H, mgr)
        pages = r["size"] // HP
        check_store_sane(mgr, H)
        fds_before = env.settled_baseline()[0]
        shape = store_shape(mgr)
        conns = conn_names(mgr)
        kill9(env, mgr)
        time.sleep(0.3)
        assert H.hugepages_free() == free0 - pages, "pages freed while the daemon is dead"
        assert conn_names(mgr) == conns and mem_names(mgr, r["memory"]), describe_store(mgr)
        restart(env, mgr)
        c.call_ok(H.GET_INFO)
        assert H.hugepages_free() == free0 - pages, "HugePages_Free %d after restart" % H.hugepages_free()
        check_store_sane(mgr, H)
        assert store_shape(mgr) == shape, "store %r before kill, %r after" % (shape, store_shape(mgr))
        assert conn_names(mgr) == conns, describe_store(mgr)
        fds_after = env.settled_baseline()[0]
        assert fds_after == fds_before, "daemon fds %d before kill -9, %d after restart: %r" % (
            fds_before, fds_after, env.daemon_fds())
        assert not [x for x in mgr.removed if x[0] == mgr.generation and not x[1].startswith("state-")], \
            "the restarted daemon removed %r" % mgr.removed
        reply, fds = c.call_ok(H.FREE, {"memory": r["memory"]})
        assert reply == {} and not fds, (reply, fds)
        wait_until(lambda: not mem_names(mgr, r["memory"]), 5,
                   lambda: "mem-%s removed from the store after FreeMemory: %s" % (r["memory"], describe_store(mgr)))
        assert H.hugepages_free() == free0 - pages, "pages freed under a client that holds the memfd"
        os.close(fd)
        wait_until(lambda: H.hugepages_free() == free0, 10,
                   lambda: "pages back after FreeMemory + close (HugePages_Free %d, want %d; %s)"
                   % (H.hugepages_free(), free0, describe_store(mgr)))
        env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"], NOIOMMUD_REASON="free")
        c.close()
        wait_until(lambda: not conn_names(mgr), 5, lambda: "conn-* gone after disconnect: " + describe_store(mgr))


def run_h(env, mgr, H, free0):
    # A restored connection is not a fresh one: a fresh connection that sends nothing is cut
    # after the request timeout (5 s), one that holds memory never is. A client that stays quiet
    # after the restart (a DPDK application talks to the daemon only at start) must keep its
    # connection and its memory.
    with env.subtest("h. a quiet client keeps its connection and memory past 5 s after the restart"):
        c, r, fd = hold_memory(env, H, mgr)
        pages = r["size"] // HP
        kill9(env, mgr)
        restart(env, mgr)
        time.sleep(6.5)
        assert not env.find_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"]), \
            "the quiet client's memory was freed after the restart"
        assert H.hugepages_free() == free0 - pages, "HugePages_Free %d" % H.hugepages_free()
        reply, fds = c.call_ok(H.FREE, {"memory": r["memory"]})
        assert reply == {} and not fds, (reply, fds)
        os.close(fd)
        c.close()
        wait_until(lambda: H.hugepages_free() == free0, 10, "pages back after FreeMemory + close")
        wait_until(lambda: not conn_names(mgr), 5, lambda: "conn-* gone after disconnect: " + describe_store(mgr))


def run_b(env, mgr, H, free0):
    for race in (False, True):
        title = ("b. a client gone while the daemon was dead is reclaimed"
                 + (" (its hung-up connection still passed to the daemon)" if race else ""))
        with env.subtest(title):
            c, r, fd = hold_memory(env, H, mgr)
            pages = r["size"] // HP
            conn = conn_names(mgr)
            if race:
                mgr.set_autopoll(False)     # the client dies between the sweep and the exec
            kill9(env, mgr)
            try:
                c.close()
                os.close(fd)
                if race:
                    time.sleep(0.2)
                    assert conn_names(mgr) == conn, describe_store(mgr)
                else:
                    wait_until(lambda: not conn_names(mgr), 5,
                               lambda: "manager drops the dead conn: " + describe_store(mgr))
                time.sleep(0.2)
                assert H.hugepages_free() == free0 - pages, "pages back while the daemon is dead"
                restart(env, mgr, sweep=not race)
            finally:
                mgr.set_autopoll(True)
            if race:
                assert set(conn) <= set(mgr.starts[-1]), "conn not passed: %r" % mgr.starts[-1]
            else:
                assert not set(conn) & set(mgr.starts[-1]), "dead conn passed: %r" % mgr.starts[-1]
            wait_until(lambda: H.hugepages_free() == free0, 10,
                       lambda: "reclaimed pages back (HugePages_Free %d, want %d; %s)"
                       % (H.hugepages_free(), free0, describe_store(mgr)))
            env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"],
                             NOIOMMUD_REASON="reclaim-after-restart")
            wait_until(lambda: not mem_names(mgr, r["memory"]) and not conn_names(mgr), 5,
                       lambda: "mem-/conn- names gone: " + describe_store(mgr))
            check_store_sane(mgr, H)


def run_c(env, mgr, H):
    with env.subtest("c. unknown fds (junk eventfd, made-up mem-<id>) are removed on restart"):
        before = store_shape(mgr)
        kill9(env, mgr)
        junk = os.eventfd(0)
        fake = os.memfd_create("noiommud-" + "f" * 32, os.MFD_ALLOW_SEALING)
        nul = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        try:
            assert mgr.inject("junk", junk)
            assert mgr.inject("mem-" + "f" * 32, fake)
            assert mgr.inject("lease-" + "e" * 32 + "-dev", nul)
        finally:
            for fd in (junk, fake, nul):
                os.close(fd)
        restart(env, mgr)
        for n in ("junk", "mem-" + "f" * 32, "lease-" + "e" * 32 + "-dev"):
            assert n in mgr.starts[-1], mgr.starts[-1]
            wait_until(lambda: n not in mgr.names(), 5,
                       lambda: "%s removed with FDSTOREREMOVE: %s" % (n, describe_store(mgr)))
            assert any(x[0] == mgr.generation and x[1] == n for x in mgr.removed), mgr.removed
        assert store_shape(mgr) == before, (before, store_shape(mgr))
        fds = env.daemon_fds()
        assert not [t for t in fds.values() if "eventfd" in t], "daemon kept the junk eventfd: %r" % fds
        assert not [t for t in fds.values() if "f" * 32 in t], "daemon kept the fake memfd: %r" % fds


def run_d(env, mgr, H, free0):
    with env.subtest("d. 3x kill -9/restart with a live client: memory intact, store stable"):
        c, r, fd = hold_memory(env, H, mgr)
        pages = r["size"] // HP
        check_store_sane(mgr, H)            # let the state generations settle first
        shape = store_shape(mgr)
        size0 = len(mgr.names())
        fds0 = env.settled_baseline()[0]
        for order in ("fifo", "lifo", "random"):
            kill9(env, mgr)
            restart(env, mgr, order=order)
            c.call_ok(H.GET_INFO)
            check_store_sane(mgr, H)
            assert len(mgr.names()) == size0 and store_shape(mgr) == shape, \
                "order %s: store %r, was %r" % (order, store_shape(mgr), shape)
            assert mem_names(mgr, r["memory"]), describe_store(mgr)
            assert H.hugepages_free() == free0 - pages, "HugePages_Free %d" % H.hugepages_free()
            # the restarted daemon serves new work on the same connection
            r2, fd2 = H.allocate(c, HP)
            c.call_ok(H.FREE, {"memory": r2["memory"]})
            os.close(fd2)
            wait_until(lambda: H.hugepages_free() == free0 - pages, 10, "the extra page back")
            fds = env.settled_baseline()[0]
            assert fds == fds0, "order %s: daemon fds %d, were %d: %r" % (order, fds, fds0, env.daemon_fds())
        assert c.call_ok(H.FREE, {"memory": r["memory"]})[0] == {}
        os.close(fd)
        c.close()
        wait_until(lambda: H.hugepages_free() == free0, 10, "pages back")
        wait_until(lambda: len(mgr.names()) == 1, 5, lambda: describe_store(mgr))


def run_g(env, mgr, H):
    with env.subtest("g. a connection the daemon closes reaches the client as EOF"):
        c = env.connect(uid=H.ALLOWED_UID)
        m, mfd = H.allocate(c, HP)          # a grant: now the connection is in the store
        os.close(mfd)
        wait_until(lambda: conn_names(mgr), 5, lambda: "conn stored: " + describe_store(mgr))
        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            c.send_raw(json.dumps({"method": H.GET_INFO}).encode() + b"\0", fds=[r])
        finally:
            os.close(r)
            os.close(w)
        c.wait_closed(5)
        wait_until(lambda: not conn_names(mgr), 5, lambda: "conn gone: " + describe_store(mgr))
        c.close()


def run_f(env, mgr, H, free0):
    with env.subtest("f. SIGTERM with memory held: everything freed (shutdown), exit 0"):
        c, r, fd = hold_memory(env, H, mgr)
        os.close(fd)
        env.daemon = None
        rc = mgr.terminate()
        assert rc == 0, "exit status %r" % rc
        assert any("STOPPING=1" in n.tags for n in mgr.messages()), mgr.messages()
        env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r["memory"], NOIOMMUD_REASON="shutdown")
        H.log("store left at exit (flushed now): %r" % mgr.names())
        mgr.flush()
        wait_until(lambda: H.hugepages_free() == free0, 10, "pages back after stop")
        assert c.wait_closed(5) is not None
        c.close()


# --- e: device leases with the vfio mock --------------------------------------------------------

def device_tests(H):
    import device_harness as D
    with D.DeviceEnvironment(daemon=False, hugepages=32) as env:
        mgr = daemon_manager(env, extra_args=["--config", env.config_path],
                             extra_env=env.mock_daemon_env())
        log_ = env.mock_log
        try:
            start(env, mgr)
            free0 = H.hugepages_free()
            with env.subtest("e. a device lease survives kill -9; release quiesces after restart"):
                c = env.connect(uid=H.ALLOWED_UID)
                acq, dfd = D.acquire(c, D.GROUP_DEV)
                lease = acq["lease"]
                mem, mfd = D.allocate_leased(c, lease, HP, "physical")
                wait_until(lambda: any(n.startswith("lease-" + lease) for n in mgr.names()), 5,
                           lambda: describe_store(mgr))
                check_store_sane(mgr, H)
                kill9(env, mgr)
                mark = log_.mark()
                restart(env, mgr)
                assert not log_.find("clear_bme", since=mark), "quiesced a live lease:\n" + log_.describe(mark)
                mem2, mfd2 = D.allocate_leased(c, lease, HP, "physical")
                os.close(mfd2)
                mark = log_.mark()
                c.call_ok(D.RELEASE, {"lease": lease})
                D.order(log_, mark, ("clear_bme", {"dev": D.GROUP_DEV}), ("reset", {"dev": D.GROUP_DEV}),
                        ("close-memfd", {"name": "noiommud-" + mem["memory"]}))
                os.close(dfd)
                os.close(mfd)
                wait_until(lambda: not any(n.startswith("lease-" + lease) for n in mgr.names()), 5,
                           lambda: describe_store(mgr))
                c.close()
                wait_until(lambda: H.hugepages_free() == free0, 10, "pages back")

            with env.subtest("e. the lease of a client that died meanwhile is reclaimed with quiesce"):
                c = env.connect(uid=H.ALLOWED_UID)
                acq, dfd = D.acquire(c, D.CDEV_NOIOMMU_DEV)
                mem, mfd = D.allocate_leased(c, acq["lease"], HP, "physical")
                wait_until(lambda: any(n.startswith("lease-" + acq["lease"]) for n in mgr.names()), 5,
                           lambda: describe_store(mgr))
                kill9(env, mgr)
                c.close()
                os.close(dfd)
                os.close(mfd)
                mark = log_.mark()
                restart(env, mgr)
                D.order(log_, mark, ("clear_bme", {"dev": D.CDEV_NOIOMMU_DEV}),
                        ("close-memfd", {"name": "noiommud-" + mem["memory"]}))
                env.wait_journal("LEASE_RECLAIMED", NOIOMMUD_LEASE_ID=acq["lease"])
                wait_until(lambda: H.hugepages_free() == free0, 10, "pages back")
                wait_until(lambda: not any(n.startswith("lease-") for n in mgr.names()), 5,
                           lambda: describe_store(mgr))

            with env.subtest("e. addresses moved across kill -9: GET_PA re-check quarantines the lease"):
                dev = D.CDEV_NOIOMMU_DEV2
                c = env.connect(uid=H.ALLOWED_UID)
                acq, dfd = D.acquire(c, dev)
                lease = acq["lease"]
                mem, mfd = D.allocate_leased(c, lease, HP, "physical")
                name = "noiommud-" + mem["memory"]
                wait_until(lambda: any(n.startswith("lease-" + lease) for n in mgr.names()), 5,
                           lambda: describe_store(mgr))
                check_store_sane(mgr, H)
                kill9(env, mgr)
                # The restarted daemon's GET_PA finds the pinned pages elsewhere than granted.
                env.set_fault("moved-pa", dev)
                mark = log_.mark()
                restart(env, mgr)
                log_.wait("get-pa-moved", since=mark)
                env.wait_journal("LEASE_BROKEN", NOIOMMUD_LEASE_ID=lease, NOIOMMUD_DEVICE=dev,
                                 NOIOMMUD_REASON="addresses-moved-across-restart",
                                 NOIOMMUD_MEM_BYTES=HP)
                released = [e for e in log_.events(mark) if e["event"] in ("clear_bme", "reset", "unpin", "munmap",
                                                                           "ioas-unmap", "destroy") or
                            (e["event"] == "close-memfd" and e.get("last") == "1")]
                assert not released, "a quarantined lease was touched or released:\n" + log_.describe(mark)
                # Refused: nothing more for this lease or device, the memory stays taken.
                err, params = c.call_error(D.ALLOCATE, {"size": HP, "lease": lease})
                assert err in (H.ERR + "NoSuchLease", H.ERR + "DeviceQuarantined"), (err, params)
                other = env.connect(uid=H.ALLOWED_UID)
                err, params = other.call_error(D.ACQUIRE, {"device": dev})
                assert err == H.ERR + "DeviceQuarantined", (err, params)
                assert H.hugepages_free() == free0 - 1, "HugePages_Free %d" % H.hugepages_free()
                # The client lets go: still nothing released (the device was never quiesced).
                os.close(dfd)
                os.close(mfd)
                c.close()
                time.sleep(0.3)
                assert H.hugepages_free() == free0 - 1, "quarantined memory freed: %d" % H.hugepages_free()
                assert not log_.find("close-memfd", since=mark, name=name, last=1), log_.describe(mark)
                # An administrator revokes it: quiesce first, then the memory goes.
                env.set_fault("moved-pa", None)
                mark = log_.mark()
                other.call_ok(REVOKE, {"lease": lease})
                D.order(log_, mark, ("clear_bme", {"dev": dev}), ("reset", {"dev": dev}), "ioas-unmap",
                        ("unpin", {"name": name}), ("close-memfd", {"name": name, "last": 1}),
                        ("detach", {"dev": dev}), ("destroy", {"kind": "hwpt"}), ("destroy", {"kind": "ioas"}))
                other.close()
                wait_until(lambda: H.hugepages_free() == free0, 10, "pages back after the revoke")
                wait_until(lambda: not any(n.startswith("lease-") for n in mgr.names()), 5,
                           lambda: describe_store(mgr))
            mgr.stop()
        finally:
            env.daemon = None
            mgr.close()


def main():
    import tempfile
    import shutil
    t = Checks()
    tmp = tempfile.mkdtemp(prefix="fdstore-selfcheck-")
    try:
        self_check(t, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if t.failures:
        raise AssertionError("self-check failed: " + ", ".join(t.failures))
    if "--self-check" in sys.argv[1:]:
        return
    import harness as H
    failed = []
    # Device leases across a restart are their own meson test (restart-devices, --devices), so
    # that what cannot run is reported as skipped, not folded into this test's pass.
    parts = (device_tests,) if "--devices" in sys.argv[1:] else (daemon_tests,)
    for part in parts:
        try:
            part(H)
        except AssertionError as e:
            print("FAIL: %s: %s" % (part.__name__, e), flush=True)
            failed.append(part.__name__)
    if failed:
        raise AssertionError("failed: " + ", ".join(failed))


if __name__ == "__main__":
    if "--self-check" in sys.argv[1:]:
        try:
            main()
        except AssertionError as e:
            print("FAIL: %s" % e)
            sys.exit(1)
        print("PASS")
        sys.exit(0)
    import harness
    harness.run(main)
