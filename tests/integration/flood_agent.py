#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Connection-load agent for test-flood.py and tests/bench/run-load.py (security.md §10 row 10).

One agent is one process, started as the uid whose connections it makes (setpriv --reuid, so
SO_PEERCRED names it), with RLIMIT_NOFILE already raised by whoever started it. It is driven by
JSON commands on stdin, one per line, and answers each with one JSON line on stdout. It exits
when stdin closes (its starter died or is done). It uses the standard library only, so it runs
under `python3 -I -S`.

Commands:

  {"cmd": "open", "n": N, "window": W, "wait": S, "block": B}
      Opens N connections (at most W waiting for their reply at once). Each sends one GetInfo at
      once, so the daemon's 5 s first-request deadline is met, and then stays idle. Waits up to S
      seconds for every reply. With B true, a connect() that finds the listen backlog full waits
      for room (a blocking unix connect, bounded by SO_SNDTIMEO = S) instead of failing with
      EAGAIN: what a burst of N clients each retrying looks like. Answer: {"opened": connections answered by GetInfo's reply,
      "refused": {outcome: count} (closed with an error reply or without one), "pending": still
      without a reply (not accepted yet: kept, and counted as opened once answered)}.
  {"cmd": "request_all", "wait": S}
      Sends GetInfo on every idle connection at once and waits up to S seconds for all the
      replies: {"answered": N, "pending": N}.
  {"cmd": "status"}
      {"open": idle connections still open, "pending": ..., "closed": {outcome: count} of idle
      connections the daemon closed, "rearmed": GetInfo calls sent to re-arm idle connections}.
  {"cmd": "close", "n": N, "which": "any" | "idle" | "pending"}
      Closes N of this agent's connections (pending ones first), or all without "n"; with
      "which", only answered ("idle") or only unanswered ("pending") ones.
  {"cmd": "rearm_after", "seconds": S}
      From now on, sends GetInfo again on any connection idle for S seconds, so that the
      daemon's 60 s idle timeout never closes it (0: never, the default).
  {"cmd": "attack", "slowloris": S, "malformed": M, "malformed_interval": I}
      Starts S slowloris clients (each sends one byte of a request per second and reconnects
      when cut off) and M malformed clients (garbage, an oversized message, a request with an
      fd in SCM_RIGHTS, 8 MiB without a NUL, in turn; each reconnects I seconds after the
      daemon cut it off). Answer: {"started": true}.
  {"cmd": "attack_stats"}
      {"slowloris": {...}, "malformed": {...}}: per kind, how many connections the daemon cut
      off, by outcome, with the median and maximum connection lifetime.
  {"cmd": "stop_attack"}
      Stops the attack clients and returns attack_stats.
  {"cmd": "bench_alloc", "n": N, "size": BYTES, "pause": S}
      The legitimate client: N times connect, AllocateMemory(size), mmap the memfd; the time
      from connect() to mmap() returning, in seconds, is one sample. Answer: {"samples": [...]}.
  {"cmd": "bench_device", "n": N, "device": ADDRESS, "pause": S}
      N times connect, AcquireDevice, ReleaseDevice; one sample is connect() to the release's
      reply. Answer: {"samples": [...]}.
  {"cmd": "bench_getinfo", "n": N, "seconds": S, "pause": P}
      The legitimate client: connect, GetInfo, close, N times or for S seconds, whichever ends
      first, sleeping P s between calls; with "while_exists": PATH, also stops once PATH is
      gone (the driver removes it). Answer: {"samples": [...], "starts": [...], "errors":
      {...}}, starts being each sample's connect() time on CLOCK_MONOTONIC (time.monotonic(), the
      same clock in every process), so a driver can pick the samples taken during a burst.
      bench_alloc takes "seconds" too and answers "starts" as well.
  {"cmd": "call", "method": M, "parameters": {...}}
      One call on a new connection: {"reply": ..., "n_fds": ..., "seconds": ...}.
  {"cmd": "quit"}
"""

import array
import errno
import json
import mmap
import os
import selectors
import socket
import sys
import time

GET_INFO = b'{"method":"org.varlink.service.GetInfo"}\0'
ALLOCATE = "io.noiommud.Broker.AllocateMemory"
ACQUIRE = "io.noiommud.Broker.AcquireDevice"
RELEASE = "io.noiommud.Broker.ReleaseDevice"
REQUEST_SIZE_MAX = 64 * 1024            # NOIOMMU_REQUEST_SIZE_MAX, including the NUL
# A request that never completes at one byte per second within the 5 s deadline.
SLOW_REQUEST = b'{"method":"org.varlink.service.GetInfo","parameters":{}}' + b" " * 200 + b"\0"

MALFORMED_KINDS = ("garbage", "oversized", "fds", "huge")


def outcome(msg, how):
    """A short name for how the daemon ended a connection: its error reply (if any) and how the
    socket ended ("eof", "reset", "epipe")."""
    if msg is None:
        return "no reply, " + how
    try:
        m = json.loads(msg.decode("utf-8", "replace"))
    except ValueError:
        return "unparsable reply, " + how
    err = m.get("error")
    if not err:
        return "reply, " + how
    err = err.rsplit(".", 1)[-1]
    p = m.get("parameters") or {}
    detail = p.get("reason") or p.get("limit")
    return "%s(%s)" % (err, detail) if detail else err


class Conn:
    __slots__ = ("sock", "state", "buf", "first_msg", "t_open", "t_first", "last", "kind",
                 "out", "out_fds", "slow_pos", "next_send", "how", "in_open")

    def __init__(self, sock, kind):
        self.sock = sock
        self.kind = kind              # "idle", "slowloris", "malformed"
        self.state = "pending"        # idle: pending -> idle; attack: connecting -> sending -> ...
        self.buf = bytearray()
        self.first_msg = None
        self.t_open = time.monotonic()
        self.t_first = None           # first byte of the request sent (slowloris)
        self.last = self.t_open
        self.out = b""
        self.out_fds = []
        self.slow_pos = 0
        self.next_send = 0.0
        self.how = None
        self.in_open = False


class Agent:
    def __init__(self, path):
        self.path = path
        self.sel = selectors.DefaultSelector()
        self.idle = {}                # fd -> Conn (pending or idle)
        self.closed = {}              # outcome -> count, for idle connections
        self.rearmed = 0
        self.rearm_after = 0.0
        self.attack = []              # attack Conns (connected or waiting to reconnect)
        self.attack_stats = {"slowloris": {}, "malformed": {}}
        self.attack_lifetimes = {"slowloris": [], "malformed": []}
        self.attack_cycles = {"slowloris": 0, "malformed": 0}
        self.attack_backlog_full = 0
        self.malformed_interval = 0.0
        self.malformed_n = 0
        self.attacking = False
        self.devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        self.stdin_buf = b""
        self.sel.register(0, selectors.EVENT_READ, None)
        self.quit = False

    # --- sockets ---------------------------------------------------------------------------

    def new_socket(self, blocking_connect=True, timeout=30, wait_backlog=False):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        if wait_backlog:
            # Python's settimeout() makes the socket non-blocking, and a non-blocking unix
            # connect() fails with EAGAIN on a full backlog; a blocking one waits for room
            # (unix_wait_for_peer()), for at most SO_SNDTIMEO.
            sec = int(timeout)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                         array.array("q", [sec, int((timeout - sec) * 1e6)]).tobytes())
            s.connect(self.path)
            s.setblocking(False)
        elif blocking_connect:
            s.settimeout(timeout)
            s.connect(self.path)
            s.setblocking(False)
        else:
            s.setblocking(False)
            s.connect(self.path)          # EAGAIN (BlockingIOError) when the backlog is full
        return s

    def read_conn(self, c):
        """Reads what is there. Returns "open", or how the connection ended."""
        while True:
            try:
                data = c.sock.recv(65536)
            except BlockingIOError:
                return "open"
            except InterruptedError:
                continue
            except ConnectionResetError:
                return "reset"
            if not data:
                return "eof"
            c.buf += data
            while True:
                nul = c.buf.find(b"\0")
                if nul < 0:
                    break
                msg = bytes(c.buf[:nul])
                del c.buf[:nul + 1]
                if c.first_msg is None:
                    c.first_msg = msg
                self.on_message(c, msg)

    def on_message(self, c, msg):
        if c.kind == "idle" and c.state == "pending":
            # An error (LimitExceeded) is followed by the close, which end_idle() records.
            try:
                ok = "error" not in json.loads(msg.decode("utf-8", "replace"))
            except ValueError:
                ok = False
            if ok:
                c.state = "idle"

    def unregister(self, c):
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass

    # --- idle connections ------------------------------------------------------------------

    def cmd_open(self, n, window=256, wait=30.0, block=False):
        opened, refused = 0, {}
        started = []
        deadline = None
        i = 0
        inflight = 0
        while True:
            while i < n and inflight < window:
                try:
                    s = self.new_socket(timeout=max(1.0, wait), wait_backlog=block)
                except OSError as e:
                    key = "connect failed: %s" % errno.errorcode.get(e.errno, e.errno)
                    refused[key] = refused.get(key, 0) + 1
                    i += 1
                    continue
                c = Conn(s, "idle")
                c.in_open = True
                try:
                    s.send(GET_INFO)
                except OSError:
                    pass                  # refused at once; its error reply is still readable
                self.idle[s.fileno()] = c
                self.sel.register(s, selectors.EVENT_READ, c)
                started.append(c)
                inflight += 1
                i += 1
            if i >= n and deadline is None:
                deadline = time.monotonic() + wait
            left = (deadline - time.monotonic()) if deadline is not None else 0.05
            if deadline is not None and left <= 0:
                break
            self.poll(min(max(left, 0), 0.05), stdin=False)
            inflight = sum(1 for c in started if c.state == "pending")
            if i >= n and inflight == 0:
                break
        messages = []
        for c in started:
            c.in_open = False
            if c.state == "idle":
                opened += 1
            elif c.state != "pending":
                refused[c.how] = refused.get(c.how, 0) + 1
                m = None if c.first_msg is None else c.first_msg.decode("utf-8", "replace")
                if m not in messages and len(messages) < 5:
                    messages.append(m)
        return {"opened": opened, "refused": refused, "messages": messages,
                "pending": sum(1 for c in started if c.state == "pending")}

    def end_idle(self, c, how):
        fd = c.sock.fileno()
        self.unregister(c)
        self.idle.pop(fd, None)
        c.sock.close()
        if c.state == "pending":
            c.state = "refused"
            c.how = outcome(c.first_msg, how)
            if c.in_open:
                return                    # cmd_open counts it
            key = "refused: " + c.how
        else:
            c.state = "closed"
            c.how = key = "closed while idle, " + how
        self.closed[key] = self.closed.get(key, 0) + 1

    def cmd_request_all(self, wait=30.0):
        conns = [c for c in self.idle.values() if c.state == "idle"]
        for c in conns:
            c.state = "pending"
            try:
                c.sock.send(GET_INFO)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while any(c.state == "pending" for c in conns) and time.monotonic() < deadline:
            self.poll(0.05, stdin=False)
        pending = sum(1 for c in conns if c.state == "pending")
        return {"answered": len(conns) - pending, "pending": pending}

    def cmd_status(self):
        self.poll(0, stdin=False)
        return {"open": sum(1 for c in self.idle.values() if c.state == "idle"),
                "pending": sum(1 for c in self.idle.values() if c.state == "pending"),
                "closed": self.closed, "rearmed": self.rearmed}

    def cmd_close(self, n=None, which="any"):
        conns = sorted(self.idle.values(), key=lambda c: c.state != "pending")
        if which != "any":
            conns = [c for c in conns if c.state == which]
        if n is not None:
            conns = conns[:n]
        for c in conns:
            self.unregister(c)
            del self.idle[c.sock.fileno()]
            c.sock.close()
        return {"open": sum(1 for c in self.idle.values() if c.state == "idle"),
                "pending": sum(1 for c in self.idle.values() if c.state == "pending")}

    def rearm(self, now):
        if self.rearm_after <= 0:
            return
        for c in self.idle.values():
            if c.state == "idle" and now - c.last >= self.rearm_after:
                try:
                    c.sock.send(GET_INFO)
                    c.last = now
                    self.rearmed += 1
                except OSError:
                    pass                  # the read side reports the close

    # --- attack clients --------------------------------------------------------------------

    def attack_connect(self, c):
        try:
            s = self.new_socket(blocking_connect=False)
        except BlockingIOError:
            self.attack_backlog_full += 1
            c.next_send = time.monotonic() + 0.01
            c.state = "reconnect"
            return
        except OSError as e:
            key = "connect failed: %s" % errno.errorcode.get(e.errno, e.errno)
            self.record(c, key)
            c.next_send = time.monotonic() + 0.1
            c.state = "reconnect"
            return
        c.sock = s
        c.buf = bytearray()
        c.first_msg = None
        c.t_open = time.monotonic()
        c.t_first = None
        c.state = "sending"
        if c.kind == "slowloris":
            c.slow_pos = 0
            c.next_send = c.t_open
            self.sel.register(s, selectors.EVENT_READ, c)
        else:
            k = MALFORMED_KINDS[self.malformed_n % len(MALFORMED_KINDS)]
            self.malformed_n += 1
            c.how = k
            if k == "garbage":
                c.out = os.urandom(64).replace(b"\0", b"x") + b"\0"
                c.out_fds = []
            elif k == "oversized":
                c.out = b'{"method":"' + b"a" * REQUEST_SIZE_MAX   # one byte over, no NUL
                c.out_fds = []
            elif k == "fds":
                c.out = GET_INFO
                c.out_fds = [self.devnull]
            else:
                c.out = memoryview(b"x" * (8 << 20))
                c.out_fds = []
            self.sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
            self.attack_write(c)

    def attack_write(self, c):
        while c.out and c.sock is not None:
            try:
                if c.out_fds:
                    n = c.sock.sendmsg([c.out], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                  array.array("i", c.out_fds))])
                    c.out_fds = []
                else:
                    n = c.sock.send(c.out)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                c.out = b""
                break
            c.out = c.out[n:]
        if c.sock is not None:
            try:
                self.sel.modify(c.sock, selectors.EVENT_READ, c)
            except (KeyError, ValueError):
                pass

    def record(self, c, key, lifetime=None):
        st = self.attack_stats[c.kind]
        st[key] = st.get(key, 0) + 1
        if lifetime is not None:
            self.attack_lifetimes[c.kind].append(lifetime)

    def attack_ended(self, c, how):
        now = time.monotonic()
        self.unregister(c)
        c.sock.close()
        c.sock = None
        start = c.t_first if (c.kind == "slowloris" and c.t_first is not None) else c.t_open
        key = outcome(c.first_msg, how)
        if c.kind == "malformed":
            key = "%s: %s" % (c.how, key)
        self.record(c, key, now - start)
        self.attack_cycles[c.kind] += 1
        c.state = "reconnect"
        c.next_send = now + (self.malformed_interval if c.kind == "malformed" else 0)

    def attack_tick(self, now):
        for c in self.attack:
            if c.state == "reconnect" and now >= c.next_send:
                self.attack_connect(c)
            elif c.kind == "slowloris" and c.state == "sending" and now >= c.next_send:
                try:
                    c.sock.send(SLOW_REQUEST[c.slow_pos:c.slow_pos + 1])
                    if c.t_first is None:
                        c.t_first = now
                    c.slow_pos += 1
                except BlockingIOError:
                    pass
                except OSError:
                    pass              # cut off: the read side reports it
                c.next_send += 1.0
                if c.slow_pos >= len(SLOW_REQUEST) - 1:
                    c.slow_pos = 0    # never send the NUL

    def cmd_attack(self, slowloris=0, malformed=0, malformed_interval=0.0):
        self.malformed_interval = malformed_interval
        now = time.monotonic()
        for i in range(slowloris):
            c = Conn(None, "slowloris")
            c.state = "reconnect"
            c.next_send = now + i / max(slowloris, 1)       # spread over a second
            self.attack.append(c)
        for i in range(malformed):
            c = Conn(None, "malformed")
            c.state = "reconnect"
            c.next_send = now
            self.attack.append(c)
        self.attacking = True
        return {"started": True}

    def cmd_attack_stats(self):
        out = {}
        for kind in ("slowloris", "malformed"):
            lt = sorted(self.attack_lifetimes[kind])
            out[kind] = {"outcomes": self.attack_stats[kind], "cut_off": self.attack_cycles[kind],
                         "lifetime_median": lt[len(lt) // 2] if lt else None,
                         "lifetime_max": lt[-1] if lt else None,
                         "connected": sum(1 for c in self.attack if c.kind == kind and c.sock is not None)}
        out["backlog_full"] = self.attack_backlog_full
        return out

    def cmd_stop_attack(self):
        stats = self.cmd_attack_stats()
        for c in self.attack:
            if c.sock is not None:
                self.unregister(c)
                c.sock.close()
                c.sock = None
        self.attack = []
        self.attacking = False
        return stats

    # --- the legitimate client -------------------------------------------------------------

    def call(self, sock, method, params, timeout=30):
        sock.settimeout(timeout)
        sock.sendall(json.dumps({"method": method, "parameters": params}).encode() + b"\0")
        buf = bytearray()
        fds = []
        while True:
            data, anc, flags, _ = sock.recvmsg(1 << 16, socket.CMSG_SPACE(16 * 4),
                                               socket.MSG_CMSG_CLOEXEC)
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(cdata[:len(cdata) - len(cdata) % 4])
                    fds += list(a)
            if not data:
                raise OSError(errno.ECONNRESET, "connection closed instead of a reply to " + method)
            buf += data
            if b"\0" in buf:
                return json.loads(buf[:buf.index(b"\0")].decode()), fds

    def legit_connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(30)
        s.connect(self.path)
        return s

    def cmd_bench_getinfo(self, n=1 << 30, seconds=None, pause=0.001, while_exists=None):
        samples, starts, errors = [], [], {}
        end = time.monotonic() + seconds if seconds is not None else None
        for _ in range(n):
            t0 = time.monotonic()
            if end is not None and t0 >= end:
                break
            if while_exists is not None and not os.path.exists(while_exists):
                break
            # During a connect burst the backlog may be full: wait for room, as a client would.
            s = self.new_socket(wait_backlog=True, timeout=30)
            s.settimeout(30)
            try:
                reply, fds = self.call(s, "org.varlink.service.GetInfo", {})
                for fd in fds:
                    os.close(fd)
                if "error" in reply:
                    errors[reply["error"]] = errors.get(reply["error"], 0) + 1
                    continue
                samples.append(time.monotonic() - t0)
                starts.append(t0)
            finally:
                s.close()
            time.sleep(pause)
        return {"samples": samples, "starts": starts, "errors": errors}

    def cmd_bench_alloc(self, n, size=2 << 20, pause=0.005, seconds=None):
        samples, starts, errors = [], [], {}
        end = time.monotonic() + seconds if seconds is not None else None
        for _ in range(n):
            t0 = time.monotonic()
            if end is not None and t0 >= end:
                break
            s = self.legit_connect()
            try:
                reply, fds = self.call(s, ALLOCATE, {"size": size})
                if "error" in reply or len(fds) != 1:
                    k = reply.get("error", "%d fds" % len(fds))
                    errors[k] = errors.get(k, 0) + 1
                    for fd in fds:
                        os.close(fd)
                    continue
                m = mmap.mmap(fds[0], reply["parameters"]["size"], mmap.MAP_SHARED,
                              mmap.PROT_READ | mmap.PROT_WRITE)
                samples.append(time.monotonic() - t0)
                starts.append(t0)
                m.close()
                os.close(fds[0])
            finally:
                s.close()
            time.sleep(pause)
        return {"samples": samples, "starts": starts, "errors": errors}

    def cmd_bench_device(self, n, device, pause=0.005):
        samples, errors = [], {}
        for _ in range(n):
            t0 = time.monotonic()
            s = self.legit_connect()
            try:
                reply, fds = self.call(s, ACQUIRE, {"device": device})
                for fd in fds:
                    os.close(fd)
                if "error" in reply:
                    errors[reply["error"]] = errors.get(reply["error"], 0) + 1
                    continue
                rel, fds = self.call(s, RELEASE, {"lease": reply["parameters"]["lease"]})
                for fd in fds:
                    os.close(fd)
                if "error" in rel:
                    errors[rel["error"]] = errors.get(rel["error"], 0) + 1
                    continue
                samples.append(time.monotonic() - t0)
            finally:
                s.close()
            time.sleep(pause)
        return {"samples": samples, "errors": errors}

    def cmd_call(self, method, parameters=None):
        t0 = time.monotonic()
        s = self.legit_connect()
        try:
            reply, fds = self.call(s, method, parameters or {})
        finally:
            s.close()
        for fd in fds:
            os.close(fd)
        return {"reply": reply, "n_fds": len(fds), "seconds": time.monotonic() - t0}

    # --- loop ------------------------------------------------------------------------------

    def poll(self, timeout, stdin=True):
        now = time.monotonic()
        if self.attacking:
            wakes = [c.next_send for c in self.attack if c.state in ("reconnect", "sending")
                     and (c.kind == "slowloris" or c.state == "reconnect")]
            if wakes:
                timeout = max(0, min(timeout, min(wakes) - now))
        for key, ev in self.sel.select(timeout):
            c = key.data
            if c is None:
                if stdin:
                    self.read_stdin()
                continue
            if c.sock is None or key.fileobj is not c.sock:
                continue
            if c.kind == "idle":
                how = self.read_conn(c)
                c.last = time.monotonic()
                if how != "open":
                    self.end_idle(c, how)
                continue
            if ev & selectors.EVENT_WRITE:
                self.attack_write(c)
            if c.sock is not None and ev & selectors.EVENT_READ:
                how = self.read_conn(c)
                if how != "open":
                    self.attack_ended(c, how)
        now = time.monotonic()
        if self.attacking:
            self.attack_tick(now)
        self.rearm(now)

    def read_stdin(self):
        data = os.read(0, 65536)
        if not data:
            self.quit = True
            return
        self.stdin_buf += data
        while b"\n" in self.stdin_buf:
            line, self.stdin_buf = self.stdin_buf.split(b"\n", 1)
            if line.strip():
                self.handle(json.loads(line))

    def handle(self, cmd):
        name = cmd.pop("cmd")
        if name == "quit":
            self.quit = True
            answer = {"bye": True}
        elif name == "rearm_after":
            self.rearm_after = float(cmd["seconds"])
            answer = {"ok": True}
        else:
            try:
                answer = getattr(self, "cmd_" + name)(**cmd)
            except OSError as e:
                answer = {"exception": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

    def run(self):
        sys.stdout.write(json.dumps({"ready": os.getpid(), "uid": os.getuid()}) + "\n")
        sys.stdout.flush()
        while not self.quit:
            self.poll(1.0)


class AgentProcess:
    """The starter's side: runs this file as an agent under `uid` (and gid = uid, no
    supplementary groups) with RLIMIT_NOFILE raised to `nofile`, and sends it commands."""

    def __init__(self, socket_path, uid, nofile=8192, name=None):
        import resource
        import subprocess

        def preexec():
            # Raised while still root; setpriv and the exec keep the limits.
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            os.setsid()

        self.uid = uid
        self.name = name or "agent-uid%d" % uid
        self.proc = subprocess.Popen(
            ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups",
             "/usr/bin/python3", "-I", "-S", os.path.abspath(__file__), socket_path],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd="/", preexec_fn=preexec)
        self.buf = b""
        self.pending = None
        hello = self._answer(30)
        self.pid = hello["ready"]
        assert hello["uid"] == uid, hello

    def _answer(self, timeout):
        import select
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: no answer within %.0fs" % (self.name, timeout))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                data = os.read(fd, 1 << 20)
                if not data:
                    raise AssertionError("%s exited (status %s)" % (self.name, self.proc.poll()))
                self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def send(self, name, **args):
        """Starts a command without waiting for its answer (result() collects it), so that
        several agents can act at the same instant."""
        self.proc.stdin.write((json.dumps(dict(args, cmd=name)) + "\n").encode())
        self.proc.stdin.flush()
        self.pending = name

    def result(self, timeout=120):
        name, self.pending = self.pending, None
        a = self._answer(timeout)
        if "exception" in a:
            raise AssertionError("%s: %s failed: %s" % (self.name, name, a["exception"]))
        return a

    def cmd(self, name, timeout=120, **args):
        self.proc.stdin.write((json.dumps(dict(args, cmd=name)) + "\n").encode())
        self.proc.stdin.flush()
        a = self._answer(timeout)
        if "exception" in a:
            raise AssertionError("%s: %s failed: %s" % (self.name, name, a["exception"]))
        return a

    def close(self):
        if self.proc is None:
            return
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(10)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.proc = None

    def cpu_seconds(self):
        """utime + stime of the agent so far."""
        return proc_cpu_seconds(self.pid)


def proc_cpu_seconds(pid):
    """utime + stime of a process from /proc/PID/stat, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        st = f.read()
    fields = st[st.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    Agent(sys.argv[1]).run()
