#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The write-ahead without the syscall storm (issue 10; security.md §8). The daemon runs under
fdstore_manager.FdStoreManager with the vfio mock; the manager's reader sees every notify
datagram, so the counts below are exact.

  1. AllocateMemory: the first grant on a connection is 4 notifications (conn-, mem-, the new
     state, the old state removed), every later one 3;
  2. nothing reaches the client before the state that describes it is in the store: when the
     reply arrives, every datagram the daemon sent before it is already queued on the notify
     socket (a datagram is queued by the sendmsg() that sends it), and once the manager has
     read them the newest state in its store names the memory (or the lease) and the
     connection;
  3. AcquireDevice: the lease's device fds travel in ONE notification under "lease-<id>", and
     a restart restores the lease from them (told apart by what each fd is);
  4. disconnects: one that was never granted anything sends nothing; one that was stored but
     holds nothing any more only removes its connection (no state write); six connections
     holding memory closing while the daemon is stopped cost one state write;
  5. a state write that fails while the pushes succeed (mock fault store-state): the held
     reply never reaches the client, its connection is closed, the memory is freed and the
     lease quiesced with reason not-stored; without the fault the next grants work;
  6. a store written before issue 10 (a lease's fds under lease-<id>-dev|grp|ctr) is restored,
     and the release removes those names.

1 and 3 failed before issue 10 (9 sd_notify calls per grant, 4 per lease); 2 fails if the reply
is not held until the state is written (conn_hold()); 4 failed before (every disconnect of a
stored connection rewrote the state); 5 is new (there was no deferred write to fail).
"""

import importlib
import json
import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness as H  # noqa: E402

R = importlib.import_module("test-restart")

HP = 2 << 20
HEX32 = r"[0-9a-f]{32}"


def settle(mgr, quiet=0.3, timeout=5):
    """Reads datagrams until none came for `quiet` seconds; returns every message so far."""
    deadline = time.monotonic() + timeout
    n = -1
    while time.monotonic() < deadline:
        mgr.drain()
        m = len(mgr.messages())
        if m == n:
            break
        n = m
        time.sleep(quiet)
    return mgr.messages()


def new_messages(mgr, mark):
    mgr.drain()
    return mgr.messages()[mark:]


def kinds(msgs):
    """["push conn-*", "push mem-*", ...] with ids replaced, in order."""
    out = []
    for n in msgs:
        name = re.sub(r"^state-[01]$", "state-*", re.sub(HEX32, "*", n.get("FDNAME") or ""))
        if "FDSTORE=1" in n.tags:
            out.append("push " + name)
        elif "FDSTOREREMOVE=1" in n.tags:
            out.append("remove " + name)
        else:
            out.append("other " + " ".join(n.tags))
    return out


def newest_state(mgr):
    """The newest state JSON the manager holds (by generation), or None."""
    best = None
    with mgr.lock:
        for e in mgr.entries:
            if not re.fullmatch(r"state-[01]", e.name):
                continue
            size = os.fstat(e.fd).st_size
            j = json.loads(os.pread(e.fd, size, 0))
            if best is None or j["generation"] > best["generation"]:
                best = j
    return best


def main():
    import device_harness as D
    with D.DeviceEnvironment(daemon=False, hugepages=12) as env:
        mgr = R.daemon_manager(env, extra_args=["--config", env.config_path],
                               extra_env=env.mock_daemon_env())
        log_ = env.mock_log
        try:
            R.start(env, mgr)
            free0 = H.hugepages_free()
            settle(mgr)

            with env.subtest("1. AllocateMemory: 4 notifications on a new connection, then 3"):
                c = env.connect(uid=H.ALLOWED_UID)
                mark = len(mgr.messages())
                mem, mfd = H.allocate(c, HP)
                got = kinds(new_messages(mgr, mark))
                assert got[:3] == ["push conn-*", "push mem-*", "push state-*"] and \
                    got[3:] == ["remove state-*"], got
                mark = len(mgr.messages())
                mem2, mfd2 = H.allocate(c, HP)
                msgs = new_messages(mgr, mark)
                assert kinds(msgs) == ["push mem-*", "push state-*", "remove state-*"], kinds(msgs)
                assert msgs[0].get("FDNAME") == "mem-" + mem2["memory"] and msgs[0].nfds == 1, msgs
                c.call_ok(H.FREE, {"memory": mem2["memory"]})
                os.close(mfd2)

            with env.subtest("2. the reply comes after a state that names the memory is stored"):
                for _ in range(5):
                    m, fd = H.allocate(c, HP)
                    mgr.drain()
                    st = newest_state(mgr)
                    assert st is not None, R.describe_store(mgr)
                    assert m["memory"] in [r["id"] for r in st["regions"]], \
                        "reply received, but the newest stored state (generation %d) does not name %s: %r" \
                        % (st["generation"], m["memory"], st["regions"])
                    assert any(r["id"] == m["memory"] and r["conn"] in [x["id"] for x in st["conns"]]
                               for r in st["regions"]), st
                    c.call_ok(H.FREE, {"memory": m["memory"]})
                    os.close(fd)
                c.call_ok(H.FREE, {"memory": mem["memory"]})
                os.close(mfd)           # c is stored, and holds nothing from here on

            with env.subtest("3. AcquireDevice: one notification for the lease's device fds"):
                c2 = env.connect(uid=H.ALLOWED_UID)
                mark = len(mgr.messages())
                acq, dfd = D.acquire(c2, D.GROUP_DEV)
                lease = acq["lease"]
                msgs = new_messages(mgr, mark)
                st = newest_state(mgr)
                assert lease in [x["id"] for x in st["leases"]], \
                    "reply received, but the newest stored state does not name lease %s: %r" % (lease, st["leases"])
                assert kinds(msgs) == ["push conn-*", "push lease-*", "push state-*", "remove state-*"], kinds(msgs)
                pushed = msgs[1]
                assert pushed.get("FDNAME") == "lease-" + lease, pushed
                # group-noiommu: the device, its group and the container
                assert pushed.nfds == 3, "lease fds in one message: %d, expected 3" % pushed.nfds
                assert mgr.names().count("lease-" + lease) == 3, R.describe_store(mgr)

                mark = len(mgr.messages())
                lm, lfd = D.allocate_leased(c2, lease, HP, "physical")
                assert kinds(new_messages(mgr, mark)) == ["push mem-*", "push state-*", "remove state-*"]

                # A restart restores the lease from the one name (the fds told apart by what
                # each one is): the holder releases it afterwards, quiesce first.
                R.kill9(env, mgr)
                R.restart(env, mgr)
                mark = log_.mark()
                c2.call_ok(H.FREE, {"memory": lm["memory"]})
                c2.call_ok(D.RELEASE, {"lease": lease})
                D.order(log_, mark, ("clear_bme", {"dev": D.GROUP_DEV}), ("reset", {"dev": D.GROUP_DEV}))
                R.wait_until(lambda: "lease-" + lease not in mgr.names(), 5, lambda: R.describe_store(mgr))
                os.close(lfd)
                os.close(dfd)
                # c held nothing at the crash, so the state did not name it: not resumed.
                c.wait_closed()
                c.close()

            with env.subtest("4. disconnects: nothing for a never-stored connection, no state write for one that holds nothing"):
                settle(mgr)
                mark = len(mgr.messages())
                idle = env.connect(uid=H.ALLOWED_UID)
                idle.call_ok(H.GET_INFO)
                idle.close()
                time.sleep(0.5)
                c2.call_ok(H.GET_INFO)        # the daemon has moved on
                assert kinds(settle(mgr)[mark:]) == [], kinds(mgr.messages()[mark:])

                # c2 is stored (it held the lease) and holds nothing now
                mark = len(mgr.messages())
                c2.close()
                R.wait_until(lambda: len(new_messages(mgr, mark)) >= 1, 5, "the conn- removal")
                assert kinds(settle(mgr)[mark:]) == ["remove conn-*"], kinds(mgr.messages()[mark:])

                # six connections holding memory, closed while the daemon is stopped: their
                # hang-ups are handled in one batch, and the state is written once
                conns, fds = [], []
                for _ in range(6):
                    x = env.connect(uid=H.ALLOWED_UID)
                    m, fd = H.allocate(x, HP)
                    conns.append(x)
                    fds.append(fd)
                for fd in fds:
                    os.close(fd)
                settle(mgr)
                mark = len(mgr.messages())
                os.kill(mgr.main_pid, signal.SIGSTOP)
                try:
                    for x in conns:
                        x.close()
                    time.sleep(0.2)
                finally:
                    os.kill(mgr.main_pid, signal.SIGCONT)
                R.wait_until(lambda: kinds(new_messages(mgr, mark)).count("remove conn-*") == 6, 10,
                             lambda: kinds(mgr.messages()[mark:]))
                got = kinds(settle(mgr)[mark:])
                assert got.count("push state-*") == 1, "state writes after 6 disconnects: %r" % got
                assert got.count("remove mem-*") == 6 and got.count("remove conn-*") == 6, got
                assert len(got) == 6 + 6 + 2, got
                R.wait_until(lambda: H.hugepages_free() == free0, 10, "pages back")

            with env.subtest("5. the state cannot be stored: the held reply never reaches the client"):
                x = env.connect(uid=H.ALLOWED_UID)
                with env.fault("store-state"):
                    x.send(H.ALLOCATE, {"size": HP})
                    msgs = x.wait_closed()
                    assert msgs == [], "the client got %r although the state was not stored" % msgs
                    env.wait_journal("MEMORY_FREED", NOIOMMUD_REASON="not-stored", NOIOMMUD_CLIENT_UID=H.ALLOWED_UID)
                    assert log_.find("store-state-refused"), "the fault did not fire"

                    y = env.connect(uid=H.ALLOWED_UID)
                    mark = log_.mark()
                    y.send(D.ACQUIRE, {"device": D.GROUP_DEV})
                    msgs = y.wait_closed()
                    assert msgs == [], "the client got %r although the state was not stored" % msgs
                    D.order(log_, mark, ("clear_bme", {"dev": D.GROUP_DEV}), ("reset", {"dev": D.GROUP_DEV}))
                    env.wait_journal("LEASE_RELEASED", NOIOMMUD_DEVICE=D.GROUP_DEV, NOIOMMUD_REASON="not-stored")
                R.wait_until(lambda: H.hugepages_free() == free0, 10, "pages back after the refusal")
                z = env.connect(uid=H.ALLOWED_UID)
                m, fd = H.allocate(z, HP)
                acq, dfd = D.acquire(z, D.GROUP_DEV)
                mgr.drain()     # every datagram sent before the reply is queued: read them
                st = newest_state(mgr)
                assert m["memory"] in [r["id"] for r in st["regions"]] and \
                    acq["lease"] in [x["id"] for x in st["leases"]], st
                z.call_ok(D.RELEASE, {"lease": acq["lease"]})
                # The removal of the lease's fds was sent before the reply: until the store drops
                # its copies the group stays open, and the next subtest's acquire would be busy.
                mgr.drain()
                z.close()
                os.close(fd)
                os.close(dfd)
                R.wait_until(lambda: H.hugepages_free() == free0, 10, "pages back")

            with env.subtest("6. a store written before issue 10 (one name per fd kind) is restored and emptied"):
                c = env.connect(uid=H.ALLOWED_UID)
                acq, dfd = D.acquire(c, D.GROUP_DEV)
                lease = acq["lease"]
                R.kill9(env, mgr)
                # what the previous daemon stored: lease-<id>-dev|grp|ctr|iommufd (the mock's
                # objects are files named <n>-<pid>-<kind>-<node> in its state directory)
                kind = {"device": "dev", "group": "grp", "container": "ctr", "iommufd": "iommufd"}
                with mgr.lock:
                    for e in mgr.entries:
                        if e.name == "lease-" + lease:
                            link = os.readlink("/proc/self/fd/%d" % e.fd)
                            k = re.search(r"/\d+-\d+-(device|group|container|iommufd)-[^/]*$", link)
                            assert k, link
                            e.name = "lease-%s-%s" % (lease, kind[k.group(1)])
                names = sorted(n for n in mgr.names() if n.startswith("lease-"))
                assert names == ["lease-%s-%s" % (lease, k) for k in ("ctr", "dev", "grp")], names
                R.restart(env, mgr)
                mark = log_.mark()
                c.call_ok(D.RELEASE, {"lease": lease})
                D.order(log_, mark, ("clear_bme", {"dev": D.GROUP_DEV}), ("reset", {"dev": D.GROUP_DEV}))
                R.wait_until(lambda: not any(n.startswith("lease-") for n in mgr.names()), 5,
                             lambda: R.describe_store(mgr))
                c.close()
                os.close(dfd)

            with env.subtest("no notify protocol errors; the store holds a sane shape"):
                assert not mgr.errors, mgr.errors
                R.check_store_sane(mgr, H)
            mgr.stop()
        finally:
            env.daemon = None
            mgr.close()


if __name__ == "__main__":
    H.run(main)
