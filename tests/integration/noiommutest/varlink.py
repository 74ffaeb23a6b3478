# SPDX-License-Identifier: LGPL-2.1-or-later
"""A raw Varlink client (https://varlink.org: NUL-terminated JSON messages on a stream socket,
fds with SCM_RIGHTS on the first byte of their reply) that connects as any uid, the method
and error names the tests use, and allocate(), an AllocateMemory that checks its reply.

A connection "as uid N" is made by a helper process under setpriv that stays alive, so the
daemon's SO_PEERCRED pid and pidfd name a live process of that uid; the socket itself is used
from the (root) test process, so received fds land here."""

import json
import os
import re
import socket
import struct
import subprocess
import time

from .common import PYTHON, _pdeathsig
from .oracles import check_segments


# The client side of a connection made as another uid: run under setpriv, it connects, hands
# the connected socket to the test over an inherited socketpair and then stays alive (so the
# daemon's SO_PEERCRED pid and pidfd name a live process) until the socketpair is closed.
CONNECT_HELPER = r"""
import os, socket, sys
path, back = sys.argv[1], int(sys.argv[2])
b = socket.socket(fileno=back)
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(path)
except OSError as e:
    b.sendall(("E%d" % e.errno).encode())
    sys.exit(1)
socket.send_fds(b, [b"K"], [s.fileno()])
s.close()
while b.recv(64):
    pass
"""


def strict_json(data):
    """json.loads that refuses duplicate keys (a daemon reply must never have them)."""
    def hook(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise ValueError("duplicate key %r in reply" % k)
            d[k] = v
        return d
    return json.loads(data, object_pairs_hook=hook)


class VarlinkError(AssertionError):
    pass


class Connection:
    """A raw Varlink connection to the daemon. When uid is given, the connect() is done by a
    helper process running as that uid (setpriv --reuid --regid --clear-groups) that stays alive
    until close(); the socket itself is used from this (root) process, so received fds land here.
    """

    def __init__(self, env, uid=None, gid=None, path=None, timeout=10):
        self.env = env
        self.path = path or env.socket_path
        self.timeout = timeout
        self.helper = None
        self.buf = bytearray()
        self.queue = []          # complete messages (bytes, fds) not yet returned
        self.pending_fds = []    # fds of the message being assembled
        self.eof = False
        self.uid = 0 if uid is None else uid
        if uid is None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self.sock.settimeout(timeout)
            self.sock.connect(self.path)
            self.pid = os.getpid()
        else:
            self._connect_as(uid, uid if gid is None else gid)
        env.connections.append(self)

    def _connect_as(self, uid, gid):
        self._connect_through(["setpriv", "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups"],
                              "as uid %d" % uid)

    def _connect_through(self, prefix, what):
        """Connects in CONNECT_HELPER, run under the command prefix (setpriv, unshare, ...), which
        passes the connected socket back and stays as the connection's pid; what is for the error
        ("connecting WHAT failed")."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.helper = subprocess.Popen(
            list(prefix) + [PYTHON, "-I", "-S", "-c", CONNECT_HELPER, self.path, str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, cwd="/",
            preexec_fn=_pdeathsig)
        theirs.close()
        self.helper_sock = ours
        self.pid = self.helper.pid
        ours.settimeout(self.timeout)
        msg, anc, flags, _ = ours.recvmsg(64, socket.CMSG_SPACE(4 * 4))
        fds = []
        for level, typ, data in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("%di" % (len(data) // 4), data[:len(data) // 4 * 4]))
        if msg != b"K" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            self.helper.kill()
            self.helper.wait()
            raise AssertionError("connecting %s failed: %r" % (what, msg))
        self.sock = socket.socket(fileno=fds[0])
        self.sock.settimeout(self.timeout)

    # sending

    def send_raw(self, data, fds=()):
        """Sends bytes (all of them), with fds attached to the first sendmsg()."""
        anc = []
        if fds:
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("%di" % len(fds), *fds))]
        view = memoryview(data)
        sent = self.sock.sendmsg([view], anc)
        while sent < len(view):
            sent += self.sock.send(view[sent:])

    def send(self, method, parameters=None, **extra):
        msg = {"method": method}
        if parameters is not None:
            msg["parameters"] = parameters
        msg.update(extra)
        self.send_raw(json.dumps(msg).encode() + b"\0")

    # receiving

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        data, anc, flags, _ = self.sock.recvmsg(1 << 20, socket.CMSG_SPACE(32 * 4),
                                                socket.MSG_CMSG_CLOEXEC)
        fds = []
        for level, typ, cdata in anc:
            if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                fds += list(struct.unpack("%di" % (len(cdata) // 4), cdata[:len(cdata) // 4 * 4]))
        assert not flags & socket.MSG_CTRUNC, "MSG_CTRUNC on a reply (more fds than expected?)"
        if not data:
            assert not fds, "fds arrived with EOF"
            self.eof = True
            return
        # fds ride on the first byte of their reply, and the kernel ends this read at the end of
        # that sendmsg(): they belong to the message that contains the last byte read.
        start = len(self.buf)
        self.buf += data
        if fds:
            self.pending_fds.append((start + len(data) - 1, fds))
        while True:
            nul = self.buf.find(b"\0")
            if nul < 0:
                break
            mine = [f for pos, fl in self.pending_fds if pos <= nul for f in fl]
            self.pending_fds = [(pos - nul - 1, fl) for pos, fl in self.pending_fds if pos > nul]
            self.queue.append((bytes(self.buf[:nul]), mine))
            del self.buf[:nul + 1]

    def recv(self, timeout=None):
        """Next message as (dict, [fds]); (None, []) on EOF. AssertionError on timeout."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self.queue and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply within %.1fs" % timeout)
            try:
                self._fill(left)
            except socket.timeout:
                raise AssertionError("no reply within %.1fs" % timeout) from None
            except ConnectionResetError:
                self.eof = True
        if not self.queue:
            return None, []
        data, fds = self.queue.pop(0)
        try:
            return strict_json(data.decode("utf-8")), fds
        except ValueError as e:
            for fd in fds:
                os.close(fd)
            raise AssertionError("reply is not valid JSON (%s): %r" % (e, data[:500])) from None

    def call(self, method, parameters=None, timeout=None, **extra):
        """Sends one request and returns (reply, fds). reply is the whole message: check
        reply.get('error') or use reply['parameters']."""
        self.send(method, parameters, **extra)
        reply, fds = self.recv(timeout)
        if reply is None:
            raise AssertionError("connection closed instead of a reply to %s %r" % (method, parameters))
        return reply, fds

    def call_ok(self, method, parameters=None, timeout=None, **extra):
        reply, fds = self.call(method, parameters, timeout, **extra)
        if "error" in reply:
            for fd in fds:
                os.close(fd)
            raise VarlinkError("%s %r failed: %r" % (method, parameters, reply))
        return reply.get("parameters", {}), fds

    def call_error(self, method, parameters=None, timeout=None, **extra):
        """Expects an error reply with no fds; returns (error name, error parameters)."""
        reply, fds = self.call(method, parameters, timeout, **extra)
        for fd in fds:
            os.close(fd)
        assert "error" in reply, "%s %r succeeded, expected an error: %r" % (method, parameters, reply)
        assert not fds, "error reply %r carried %d fds" % (reply, len(fds))
        return reply["error"], reply.get("parameters", {})

    def wait_closed(self, timeout=None):
        """Reads until EOF; returns the messages (dict or raw bytes) that came before it."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        msgs = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection still open after %.1fs (messages: %r)" % (timeout, msgs))
            try:
                m, fds = self.recv(left)
            except AssertionError as e:
                if "no reply" in str(e):
                    raise AssertionError("connection still open after %.1fs (messages: %r)"
                                         % (timeout, msgs)) from None
                raise
            for fd in fds:
                os.close(fd)
            if m is None:
                return msgs
            msgs.append(m)

    def is_open(self, wait=0.0):
        """True if no EOF arrives within `wait` seconds (queued messages are kept)."""
        if self.eof:
            return False
        try:
            self._fill(max(wait, 0.001))
        except socket.timeout:
            return True
        except ConnectionResetError:
            self.eof = True
        return not self.eof

    def close(self, keep_process=False):
        """Closes the socket; unless keep_process, also ends the connecting helper process."""
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        for _, fds in self.queue:
            for fd in fds:
                os.close(fd)
        self.queue = []
        if not keep_process:
            self.end_process()

    def end_process(self, kill=False):
        if self.helper is not None:
            if kill:
                self.helper.kill()
            self.helper_sock.close()
            try:
                self.helper.wait(10)
            except subprocess.TimeoutExpired:
                self.helper.kill()
                self.helper.wait()
            self.helper = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


ALLOCATE = "io.noiommud.Broker.AllocateMemory"
FREE = "io.noiommud.Broker.FreeMemory"
LIST = "io.noiommud.Broker.ListDevices"
GET_INFO = "org.varlink.service.GetInfo"
GET_DESCRIPTION = "org.varlink.service.GetInterfaceDescription"
ERR = "io.noiommud.Broker."
INVALID_PARAMETER = "org.varlink.service.InvalidParameter"
METHOD_NOT_FOUND = "org.varlink.service.MethodNotFound"
INTERFACE_NOT_FOUND = "org.varlink.service.InterfaceNotFound"


def allocate(conn, size, **params):
    """AllocateMemory that must succeed: checks the reply's shape and its single memfd, and
    returns (reply parameters, memfd)."""
    params = dict(params, size=size)
    reply, fds = conn.call_ok(ALLOCATE, params)
    try:
        assert len(fds) == 1, "AllocateMemory reply carried %d fds, expected 1" % len(fds)
        assert reply.get("fd") == 0, "fd index %r, expected 0" % reply.get("fd")
        assert re.fullmatch(r"[0-9a-f]{32}", reply.get("memory", "")), "memory id %r" % reply.get("memory")
        hp = reply["hugepageSize"]
        assert reply["size"] >= size and reply["size"] % hp == 0 and reply["size"] - size < hp, \
            "size %d for a request of %d with %d pages" % (reply["size"], size, hp)
        assert reply["addressKind"] == "physical", reply
        assert isinstance(reply["numaNode"], int), reply
        check_segments(reply, reply["size"])
        link = os.readlink("/proc/self/fd/%d" % fds[0])
        assert link == "/memfd:noiommud-%s (deleted)" % reply["memory"], "memfd is %r" % link
        assert os.fstat(fds[0]).st_size == reply["size"], "memfd size %d" % os.fstat(fds[0]).st_size
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return reply, fds[0]
