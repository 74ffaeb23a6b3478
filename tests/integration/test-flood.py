#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Connection floods (security.md §4.3, §7.1, §7.2, §10 row 10).

Connections are made by flood_agent.py processes, one per uid, each running as that uid (so the
daemon's SO_PEERCRED names it) and holding thousands of sockets. The daemon's RLIMIT_NOFILE is
raised first where the machine allows it: every connection costs it two fds (the socket and the
peer's pidfd), and the unit sets LimitNOFILE=65536 for that reason.

  a. Per-uid cap: one uid opens NOIOMMU_CONNS_PER_UID_MAX (4096) connections, each answered;
     its 4097th gets LimitExceeded(limit: "connections-per-uid") and is closed, with a
     LIMIT_EXCEEDED record; meanwhile another uid is served (GetInfo) and the allowed uid gets
     memory; once one of the 4096 closes, the uid can connect again.
  b. Global cap (NOIOMMU_CONNS_MAX, 16384): four uids hold 4096 each; a fifth uid gets
     LimitExceeded(limit: "connections"). That needs 2 x 16384 daemon fds: skipped, loudly, when
     the daemon's hard RLIMIT_NOFILE is lower and cannot be raised (no CAP_SYS_RESOURCE).
  c. Slowloris: a client sending one byte per second is closed 5 s after its first byte, and one
     that never sends is closed 5 s after connecting (the first-request deadline), with nothing
     but (at most) an error before the close; other clients are served meanwhile. (The close
     leaves no journal record at the default log level, which the test prints as a NOTE.)
  d. EMFILE: with the daemon's RLIMIT_NOFILE lowered to 256, more connections than fit: the
     daemon holds no more fds than the limit, does not spin (CPU time over 2 s stays near 0),
     refuses at most one connection with LimitExceeded(limit: "file-descriptors") per pause and
     drops none silently: the rest wait in the backlog. With fds back, every waiting connection
     is served, and new ones too.
  e. A legitimate client during a flood (3000 idle connections from two uids, slowloris and
     malformed clients reconnecting in a loop from a third): AllocateMemory and GetInfo stay
     fast (bounds below); the attack clients are cut off the documented way.
  f. No fd or hugepage leaks: everything back at the baseline after each block.

Under `meson test --setup valgrind` (NOIOMMU_TEST_UNDER_VALGRIND) c and e are skipped: their
oracles are timings.
"""

import os
import resource
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from flood_agent import AgentProcess, proc_cpu_seconds  # noqa: E402

PER_UID_MAX = 4096          # NOIOMMU_CONNS_PER_UID_MAX
CONNS_MAX = 16384           # NOIOMMU_CONNS_MAX
REQUEST_TIMEOUT = 5.0       # NOIOMMU_REQUEST_TIMEOUT_USEC
# Load uids: none of them is the allowed uid (1) whose requests are measured.
FLOOD_UIDS = (2, 3, 65534, 4001)
EXTRA_UID = 4002
LE = "LimitExceeded"
MiB = 1 << 20

# Bounds for a legitimate client while the daemon is flooded. Unloaded, AllocateMemory of
# 2 MiB takes a few ms (polkit included; ~3x that under ASan).
FLOOD_ALLOC_MAX = 2.0       # seconds, any single call
FLOOD_ALLOC_MEDIAN = 0.25
FLOOD_GETINFO_MAX = 1.0
# `meson test --setup valgrind`: the deadline and latency oracles mean nothing under memcheck,
# so those blocks are skipped; the caps, EMFILE and the leak checks still run, with more time.
VALGRIND = bool(os.environ.get("NOIOMMU_TEST_UNDER_VALGRIND"))
SLOW = 10 if VALGRIND else 1


def fd_limit(pid):
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


def raise_fd_limit(pid, want=65536):
    """Raises the daemon's RLIMIT_NOFILE towards `want` (what the unit's LimitNOFILE= gives it):
    the hard limit too if we may (CAP_SYS_RESOURCE), else the soft limit up to the hard one.
    Returns the (soft, hard) now in force."""
    soft, hard = fd_limit(pid)
    try:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (PermissionError, ValueError):
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return fd_limit(pid)


def wait_status(agent, pred, timeout, what):
    last = {}

    def check():
        last["s"] = agent.cmd("status")
        return pred(last["s"])
    H.wait_until(check, timeout, lambda: "%s (agent uid %d: %r)" % (what, agent.uid, last.get("s")),
                 interval=0.05)
    return last["s"]


def body():
    with H.Environment(hugepages=16) as env:
        pid = env.daemon_pid
        soft0, hard0 = fd_limit(pid)
        soft, hard = raise_fd_limit(pid)
        H.log("daemon RLIMIT_NOFILE %d/%d, raised to %d/%d (the unit sets LimitNOFILE=65536)"
              % (soft0, hard0, soft, hard))
        base = env.settled_baseline()
        agents = {}

        def agent(uid):
            if uid not in agents:
                agents[uid] = AgentProcess(env.socket_path, uid, nofile=PER_UID_MAX + 256)
            return agents[uid]

        def close_agents():
            for a in list(agents.values()):
                a.close()
            agents.clear()

        def allowed_alloc():
            c = env.connect(uid=H.ALLOWED_UID)
            try:
                t0 = time.monotonic()
                reply, memfd = H.allocate(c, 2 * MiB)
                dt = time.monotonic() - t0
                os.close(memfd)
            finally:
                c.close()
            return dt

        def get_info(uid):
            a = agent(uid).cmd("call", method=H.GET_INFO)
            assert "error" not in a["reply"] and a["reply"]["parameters"]["product"] == "noiommud", a
            return a["seconds"]

        try:
            with env.subtest("per-uid cap: connection 4097 of one uid gets LimitExceeded, others are served"):
                assert soft >= 2 * PER_UID_MAX + 256, \
                    "the daemon's RLIMIT_NOFILE %d cannot hold %d connections" % (soft, PER_UID_MAX)
                a = agent(FLOOD_UIDS[0])
                r = a.cmd("open", n=PER_UID_MAX, wait=30 * SLOW, timeout=120 * SLOW)
                assert r["opened"] == PER_UID_MAX and not r["refused"], r
                assert env.daemon_fd_count() == base[0] + 2 * PER_UID_MAX, \
                    "daemon fds %d, expected %d + 2 x %d" % (env.daemon_fd_count(), base[0], PER_UID_MAX)
                r = a.cmd("open", n=1, wait=10)
                assert r["opened"] == 0 and r["refused"] == {LE + "(connections-per-uid)": 1}, r
                assert r["messages"] == ['{"error":"io.noiommud.Broker.LimitExceeded",'
                                         '"parameters":{"limit":"connections-per-uid"}}'], r
                env.wait_journal("LIMIT_EXCEEDED", NOIOMMUD_LIMIT="connections-per-uid",
                                 NOIOMMUD_CLIENT_UID=FLOOD_UIDS[0])
                # another uid, and the allowed uid's memory, are not affected
                get_info(FLOOD_UIDS[1])
                allowed_alloc()
                s = a.cmd("status")
                assert s["open"] == PER_UID_MAX and not s["closed"], s
                # a freed slot can be used again
                a.cmd("close", n=1)
                H.wait_until(lambda: env.daemon_fd_count() == base[0] + 2 * (PER_UID_MAX - 1), 10 * SLOW,
                             "the daemon to notice the close")
                r = a.cmd("open", n=1, wait=10)
                assert r["opened"] == 1 and not r["refused"], r
                close_agents()
                env.wait_baseline(base, timeout=10 * SLOW, what="after the per-uid cap")

            need = 2 * CONNS_MAX + 256
            if soft < need:
                print("ok - global cap # SKIP it needs %d daemon fds (2 per connection), the "
                      "daemon's RLIMIT_NOFILE is %d/%d and the hard limit cannot be raised here (no "
                      "CAP_SYS_RESOURCE); the per-uid cap above runs the same code" % (need, soft, hard),
                      flush=True)
            else:
                with env.subtest("global cap: a fifth uid gets LimitExceeded(connections) at 16384"):
                    for uid in FLOOD_UIDS:
                        r = agent(uid).cmd("open", n=PER_UID_MAX, wait=60)
                        assert r["opened"] == PER_UID_MAX and not r["refused"], (uid, r)
                    r = agent(EXTRA_UID).cmd("open", n=1, wait=10)
                    assert r["opened"] == 0 and r["refused"] == {LE + "(connections)": 1}, r
                    env.wait_journal("LIMIT_EXCEEDED", NOIOMMUD_LIMIT="connections",
                                     NOIOMMUD_CLIENT_UID=EXTRA_UID)
                    agent(FLOOD_UIDS[0]).cmd("close", n=1)
                    H.wait_until(lambda: env.daemon_fd_count() == base[0] + 2 * (CONNS_MAX - 1), 20,
                                 "the daemon to notice the close")
                    r = agent(EXTRA_UID).cmd("open", n=1, wait=10)
                    assert r["opened"] == 1, r
                    close_agents()
                    env.wait_baseline(base, timeout=30, what="after the global cap")

            if VALGRIND:
                print("ok - slowloris # SKIP deadline timing under valgrind", flush=True)
                print("ok - legitimate client during a flood # SKIP latency under valgrind", flush=True)
            else:
                with env.subtest("slowloris: 1 byte/s and silent clients are closed at the 5 s deadline"):
                    before = len(env.journal.entries)
                    slow = env.connect(uid=FLOOD_UIDS[0])
                    silent = env.connect(uid=FLOOD_UIDS[0])
                    t_silent = time.monotonic()
                    request = b'{"method":"org.varlink.service.GetInfo","parameters":{}}' + b" " * 100 + b"\0"
                    slow.send_raw(request[:1])
                    t_first = time.monotonic()
                    sent, served, closed_at, silent_at, allocs = 1, 0, None, None, []
                    while closed_at is None or silent_at is None:
                        now = time.monotonic()
                        assert now - t_first < REQUEST_TIMEOUT + 4, \
                            "slowloris still connected %.1fs after its first byte" % (now - t_first)
                        if closed_at is None and now >= t_first + sent:
                            try:
                                slow.send_raw(request[sent:sent + 1])
                                sent += 1
                            except (BrokenPipeError, ConnectionResetError):
                                pass
                        # others are served meanwhile
                        get_info(FLOOD_UIDS[1])
                        served += 1
                        if len(allocs) < 3 and now - t_first > 1.5 * (len(allocs) + 1):
                            allocs.append(allowed_alloc())
                        if closed_at is None and not slow.is_open(0.05):
                            closed_at = time.monotonic()
                        if silent_at is None and not silent.is_open(0.05):
                            silent_at = time.monotonic()
                    life, silent_life = closed_at - t_first, silent_at - t_silent
                    H.log("slowloris closed %.2fs after its first byte (%d bytes sent), the silent "
                          "client %.2fs after connecting; %d GetInfo and %d AllocateMemory served meanwhile"
                          % (life, sent, silent_life, served, len(allocs)))
                    assert REQUEST_TIMEOUT - 0.2 <= life <= REQUEST_TIMEOUT + 1.5, life
                    assert REQUEST_TIMEOUT - 0.2 <= silent_life <= REQUEST_TIMEOUT + 1.5, silent_life
                    assert served >= 5 and len(allocs) == 3, (served, allocs)
                    # What the daemon said on its way out: nothing, or an error (never a reply).
                    for name, c in (("slowloris", slow), ("silent", silent)):
                        for m, fds in c.queue:
                            assert not fds, "%s got fds" % name
                            msg = H.strict_json(m.decode())
                            assert "error" in msg, "%s got a reply: %r" % (name, msg)
                    records = [e for e in env.journal.entries[before:]
                               if e.get("NOIOMMUD_CLIENT_UID") == str(FLOOD_UIDS[0])]
                    if not records:
                        H.log("NOTE: the deadline closes left no journal record at the default log "
                              "level (conn.c on_timer() logs at debug only)")
                    else:
                        H.log("records: " + env.journal.describe(records))
                    slow.close()
                    silent.close()
                    close_agents()
                    env.wait_baseline(base, what="after slowloris")

                with env.subtest("a legitimate client during a flood stays fast; attackers are cut off"):
                    legit = agent(H.ALLOWED_UID)
                    quiet = legit.cmd("bench_alloc", n=20)
                    assert not quiet["errors"], quiet
                    for uid in FLOOD_UIDS[:2]:
                        r = agent(uid).cmd("open", n=1500, wait=30)
                        assert r["opened"] == 1500 and not r["refused"], (uid, r)
                    attacker = agent(FLOOD_UIDS[2])
                    attacker.cmd("attack", slowloris=20, malformed=4)
                    t_attack = time.monotonic()
                    time.sleep(1)
                    loaded = legit.cmd("bench_alloc", n=20)
                    infos = [legit.cmd("call", method=H.GET_INFO)["seconds"] for _ in range(20)]
                    # long enough for every slowloris client to be cut off once
                    time.sleep(max(0, t_attack + REQUEST_TIMEOUT + 2 - time.monotonic()))
                    stats = attacker.cmd("stop_attack")
                    H.log("AllocateMemory 2 MiB, connect to mapped: quiet median %.1f ms max %.1f ms; "
                          "flooded median %.1f ms max %.1f ms; GetInfo flooded max %.1f ms"
                          % (1e3 * statistics.median(quiet["samples"]), 1e3 * max(quiet["samples"]),
                             1e3 * statistics.median(loaded["samples"]), 1e3 * max(loaded["samples"]),
                             1e3 * max(infos)))
                    H.log("attack: %r" % stats)
                    assert not loaded["errors"] and len(loaded["samples"]) == 20, loaded
                    assert max(loaded["samples"]) <= FLOOD_ALLOC_MAX, loaded
                    assert statistics.median(loaded["samples"]) <= FLOOD_ALLOC_MEDIAN, loaded
                    assert max(infos) <= FLOOD_GETINFO_MAX, infos
                    sl, mf = stats["slowloris"], stats["malformed"]
                    assert sl["cut_off"] >= 20, sl
                    assert set(sl["outcomes"]) <= {"no reply, eof", "no reply, reset"}, sl
                    assert REQUEST_TIMEOUT - 0.2 <= sl["lifetime_median"] <= REQUEST_TIMEOUT + 1.5, sl
                    want = {"garbage: ProtocolViolation(malformed message)",
                            "oversized: ProtocolViolation(request too large)",
                            "fds: ProtocolViolation(file descriptors sent to the daemon)",
                            "huge: ProtocolViolation(request too large)"}
                    assert set(mf["outcomes"]) == want, mf
                    for uid in FLOOD_UIDS[:2]:
                        s = agent(uid).cmd("status")
                        assert s["open"] == 1500 and not s["closed"], (uid, s)
                    close_agents()
                    env.wait_baseline(base, timeout=20, what="after the flood")

            with env.subtest("EMFILE: RLIMIT_NOFILE 256, no spin, nothing dropped, served once fds free"):
                limit = 256
                # valgrind's own fds sit above any limit the daemon may be given; not the daemon's
                tool_fds = len([fd for fd in env.daemon_fds() if fd >= limit])
                resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, hard))
                try:
                    a = agent(FLOOD_UIDS[0])
                    n = 300
                    cpu0 = proc_cpu_seconds(pid)
                    r = a.cmd("open", n=n, window=n, wait=3 * SLOW)
                    fds = env.daemon_fd_count() - tool_fds
                    fit = (limit - (base[0] - tool_fds)) // 2
                    H.log("with %d fds: %r, daemon fds %d" % (limit, r, fds))
                    assert fds <= limit, "daemon holds %d fds, limit %d" % (fds, limit)
                    assert fit - 3 <= r["opened"] <= fit, (fit, r)
                    # nothing dropped silently: refused ones were told why, the rest wait
                    assert set(r["refused"]) <= {LE + "(file-descriptors)"}, r
                    assert sum(r["refused"].values()) <= 2, r
                    assert r["opened"] + sum(r["refused"].values()) + r["pending"] == n, r
                    env.wait_journal("LIMIT_EXCEEDED", NOIOMMUD_LIMIT="file-descriptors")
                    assert not env.find_journal("PROTOCOL_VIOLATION",
                                                NOIOMMUD_REASON="peer identity could not be verified at accept"), \
                        "the daemon's own fd exhaustion was recorded as the peer's protocol violation"
                    # no spin while the backlog is full and the socket readable
                    cpu1 = proc_cpu_seconds(pid)
                    time.sleep(2)
                    cpu2 = proc_cpu_seconds(pid)
                    H.log("daemon CPU: %.2fs while the %d connections came, %.2fs in the 2 s after"
                          % (cpu1 - cpu0, n, cpu2 - cpu1))
                    assert cpu2 - cpu1 <= 0.1 * SLOW, "daemon used %.2fs of CPU in 2s at EMFILE" % (cpu2 - cpu1)
                    s = a.cmd("status")
                    assert s["open"] == r["opened"] and s["pending"] == r["pending"] and not s["closed"], s

                    # Closing answered connections while the limit stays low lets waiting ones
                    # in (one LimitExceeded per pause at most), and drops none silently.
                    a.cmd("close", n=20, which="idle")
                    s = wait_status(a, lambda s: s["pending"] <= r["pending"] - 15, 10 * SLOW,
                                    "waiting connections to be let in after 20 closed")
                    time.sleep(0.3 * SLOW)
                    s = a.cmd("status")
                    refused = sum(s["closed"].values())
                    H.log("after closing 20: %r" % s)
                    assert set(s["closed"]) <= {"refused: " + LE + "(file-descriptors)"}, s
                    assert refused <= 5, s
                    assert s["open"] + s["pending"] + refused == r["opened"] - 20 + r["pending"], s
                    assert env.daemon_fd_count() - tool_fds <= limit
                finally:
                    resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))

                # With fds back, one closing connection resumes accepting: every waiting
                # connection is served, and so is a new one from another uid.
                pending = s["pending"]
                a.cmd("close", n=1, which="idle")
                s2 = wait_status(a, lambda x: x["pending"] == 0, 10 * SLOW, "every waiting connection served")
                assert s2["open"] == s["open"] - 1 + pending and s2["closed"] == s["closed"], (s, s2)
                get_info(FLOOD_UIDS[1])
                allowed_alloc()
                close_agents()
                env.wait_baseline(base, timeout=10 * SLOW, what="after EMFILE")

            with env.subtest("no leaks: daemon fds and hugepages at the baseline, daemon alive"):
                close_agents()
                env.wait_baseline(base, timeout=20 * SLOW, what="at the end")
                get_info(FLOOD_UIDS[1])
                close_agents()
                env.wait_baseline(base, what="at the end")

        finally:
            close_agents()


if __name__ == "__main__":
    H.run(body)
