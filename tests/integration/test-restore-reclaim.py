#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""What a restart reclaims, and in which order (issue 9; security.md §8, design.md §3.3). The
daemon runs under fdstore_manager.FdStoreManager with the vfio mock, as test-restart.py's part e.

  a1. a client that held a noiommu device and memory allocated without a lease dies while the
      daemon is down: after the restart its device is quiesced BEFORE that memory is freed (the
      device may have been given its physical addresses), as conn_free() does for a live client;
  a2. a stored state with more mapped memory for a lease than a lease may have (65 regions, the
      extra ones re-opened copies of the client's own memfd): nothing of it is unpinned, unmapped
      or closed at restore; it goes only after the device is quiesced;
  a3. memory mapped for a noiommu lease that cannot be restored (the stored state no longer
      matches its memfd) is not given back to the hugepage pool: the lease is quarantined
      (LEASE_BROKEN, memory-unrestorable) and the fd store keeps the memfd, and so the pages,
      until a RevokeLease has quiesced the device, across a reload and a second crash too;
  b.  memory reclaimed because its client is gone is recorded as that client's (its uid), never
      as UID 0 (identity.h: an unset uid that stayed 0 is how CVE-2021-3560 happened).

Each of these failed before the restore went through the lease constructors (persist.c freed
such memory itself, before or without the quiesce, and audited it with uid 0).
"""

import importlib
import json
import os
import secrets
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness as H  # noqa: E402

R = importlib.import_module("test-restart")

MiB = 1 << 20
HP = 2 * MiB
RELEASE_EVENTS = ("unpin", "munmap", "close-memfd")


def released(log_, since, name):
    """Mock-log events since `since` that unpin, unmap or close the memfd called name."""
    return [e for e in log_.events(since) if e["event"] in RELEASE_EVENTS and e.get("name") == name]


def wait_store_empty(mgr):
    """Waits until the store holds no lease or memory entry any more."""
    R.wait_until(lambda: not any(n.startswith("lease-") or n.startswith("mem-") for n in mgr.names()),
                 5, lambda: R.describe_store(mgr))


def stored_state(mgr):
    """The newest state the daemon left in the store: (entry name, parsed JSON)."""
    best = None
    for e in mgr.entries:
        if e.name in ("state-0", "state-1"):
            size = os.fstat(e.fd).st_size
            j = json.loads(os.pread(e.fd, size, 0))
            if best is None or j["generation"] > best[1]["generation"]:
                best = (e.name, j)
    assert best, "no state in the store: %s" % R.describe_store(mgr)
    return best


def inject_state(mgr, state):
    """Stores state as the newest generation (under the state name not in use)."""
    used = [e.name for e in mgr.entries if e.name in ("state-0", "state-1")]
    name = "state-1" if "state-0" in used else "state-0"
    fd = os.memfd_create("noiommud_state", os.MFD_CLOEXEC)
    try:
        os.write(fd, json.dumps(state).encode())
        assert mgr.inject(name, fd), "state not stored"
    finally:
        os.close(fd)


def wait_pages(free0, what):
    R.wait_until(lambda: H.hugepages_free() == free0, 10,
                 lambda: "%s: HugePages_Free %d, expected %d" % (what, H.hugepages_free(), free0))


def run_a1(env, mgr, D, free0):
    with env.subtest("a1. a dead client's memory without a lease is freed only after its noiommu "
                     "device is quiesced, and recorded as its own"):
        log_ = env.mock_log
        dev = D.CDEV_NOIOMMU_DEV
        c = env.connect(uid=H.ALLOWED_UID)
        acq, dfd = D.acquire(c, dev)
        lease = acq["lease"]
        mem, mfd = H.allocate(c, HP)
        name = "noiommud-" + mem["memory"]
        R.wait_until(lambda: R.mem_names(mgr, mem["memory"]) and
                     any(n.startswith("lease-" + lease) for n in mgr.names()), 5,
                     lambda: R.describe_store(mgr))
        R.kill9(env, mgr)
        c.close()
        os.close(dfd)
        os.close(mfd)
        mark = log_.mark()
        R.restart(env, mgr)
        D.order(log_, mark, ("clear_bme", {"dev": dev}), ("close-memfd", {"name": name, "last": 1}))
        freed = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=mem["memory"])
        assert freed[0].get("NOIOMMUD_CLIENT_UID") == str(H.ALLOWED_UID), \
            "reclaimed memory recorded as UID %r" % freed[0].get("NOIOMMUD_CLIENT_UID")
        env.wait_journal("LEASE_RECLAIMED", NOIOMMUD_LEASE_ID=lease)
        wait_pages(free0, "pages back")
        wait_store_empty(mgr)


def run_a2(env, mgr, D, free0):
    with env.subtest("a2. a lease restored with more memory than a lease may have: nothing freed "
                     "before the quiesce"):
        log_ = env.mock_log
        dev = D.GROUP_DEV
        c = env.connect(uid=H.ALLOWED_UID)
        acq, dfd = D.acquire(c, dev)
        lease = acq["lease"]
        mem, mfd = D.allocate_leased(c, lease, HP, "physical")
        name = "noiommud-" + mem["memory"]
        R.wait_until(lambda: R.mem_names(mgr, mem["memory"]), 5, lambda: R.describe_store(mgr))
        R.kill9(env, mgr)

        # 64 more regions of the lease in the state (NOIOMMU_REGIONS_PER_LEASE_MAX is 64), each
        # a memfd of its own open file description on the same pages, so that the store keeps it
        # (kcmp tells them apart) and its addresses are the granted ones.
        _, state = stored_state(mgr)
        region = [r for r in state["regions"] if r["id"] == mem["memory"]]
        assert len(region) == 1 and region[0]["lease"] == lease, state["regions"]
        for _ in range(64):
            extra = dict(region[0], id=secrets.token_hex(16))
            state["regions"].append(extra)
            fd = os.open("/proc/self/fd/%d" % mfd, os.O_RDWR | os.O_CLOEXEC)
            try:
                assert mgr.inject("mem-" + extra["id"], fd), "mem-%s not stored" % extra["id"]
            finally:
                os.close(fd)
        state["generation"] += 1
        inject_state(mgr, state)

        mark = log_.mark()
        R.restart(env, mgr)
        c.call_ok(H.GET_INFO)                   # the restore is over once it answers
        early = released(log_, mark, name)
        assert not early, "memory of a noiommu lease released at restore, before any quiesce:\n" + \
            log_.describe(mark)
        assert not log_.find("clear_bme", since=mark), "quiesced a live lease:\n" + log_.describe(mark)

        os.close(mfd)
        mark = log_.mark()
        c.call_ok(D.RELEASE, {"lease": lease})
        D.order(log_, mark, ("clear_bme", {"dev": dev}), ("reset", {"dev": dev}),
                ("close-memfd", {"name": name, "last": 1}))
        os.close(dfd)
        c.close()
        wait_pages(free0, "pages back after the release")
        wait_store_empty(mgr)


def run_a3(env, mgr, D, free0):
    with env.subtest("a3. memory of a noiommu lease that cannot be restored stays taken until a "
                     "revoke quiesces the device"):
        log_ = env.mock_log
        dev = D.CDEV_NOIOMMU_DEV
        c = env.connect(uid=H.ALLOWED_UID)
        acq, dfd = D.acquire(c, dev)
        lease = acq["lease"]
        mem, mfd = D.allocate_leased(c, lease, HP, "physical")
        R.wait_until(lambda: R.mem_names(mgr, mem["memory"]) and
                     any(n.startswith("lease-" + lease) for n in mgr.names()), 5,
                     lambda: R.describe_store(mgr))
        R.kill9(env, mgr)
        os.close(mfd)           # from now on only the store (and the daemon) hold the pages
        _, state = stored_state(mgr)
        for r in state["regions"]:
            if r["id"] == mem["memory"]:
                r["size"] *= 2  # no longer what the memfd is: the restore refuses it
        state["generation"] += 1
        inject_state(mgr, state)

        mark = log_.mark()
        R.restart(env, mgr)
        env.wait_journal("LEASE_BROKEN", NOIOMMUD_LEASE_ID=lease, NOIOMMUD_REASON="memory-unrestorable")
        time.sleep(0.3)         # the store drops its copy asynchronously
        assert H.hugepages_free() == free0 - 1, \
            "memory a noiommu device may reach went back to the pool: HugePages_Free %d" % H.hugepages_free()
        assert not log_.find("clear_bme", since=mark), log_.describe(mark)

        # The store's copy is what keeps the pages: it goes only once the device is quiesced.
        stored = "mem-" + mem["memory"]
        assert stored in mgr.names() and not [x for x in mgr.removed if x[1] == stored], \
            "the store's copy of unrestorable memory was dropped: %s" % R.describe_store(mgr)

        # A reload, then a crash, before the revoke. The re-exec passes on only the fds the
        # daemon holds (not this one: only the store has it), and the state the new image writes
        # must still name the memory, so that the restore after the crash claims the store's
        # entry again instead of closing it as a leftover.
        ready = sum("READY=1" in n.tags for n in mgr.messages())
        os.kill(mgr.main_pid, signal.SIGHUP)
        R.wait_until(lambda: sum("READY=1" in n.tags for n in mgr.messages()) > ready, 10,
                     "READY=1 after the reload")
        assert stored in mgr.names(), "the reload dropped the store's copy: %s" % R.describe_store(mgr)
        R.kill9(env, mgr)
        mark = log_.mark()
        R.restart(env, mgr)
        time.sleep(0.3)
        assert stored in mgr.names() and not [x for x in mgr.removed if x[1] == stored], \
            "a second restart dropped the store's copy of unrestorable memory: %s" % R.describe_store(mgr)
        assert H.hugepages_free() == free0 - 1, \
            "after a second restart, memory a noiommu device may reach went back to the pool"
        assert not log_.find("clear_bme", since=mark), log_.describe(mark)
        other = env.connect(uid=H.ALLOWED_UID)
        mark = log_.mark()
        other.call_ok(R.REVOKE, {"lease": lease})
        D.order(log_, mark, ("clear_bme", {"dev": dev}), ("reset", {"dev": dev}))
        R.wait_until(lambda: stored not in mgr.names(), 5, lambda: R.describe_store(mgr))
        other.close()
        os.close(dfd)
        c.close()
        wait_pages(free0, "pages back after the revoke")
        wait_store_empty(mgr)


def run_b(env, mgr, D, free0):
    with env.subtest("b. memory reclaimed after a restart is recorded as its client's, not UID 0"):
        c = env.connect(uid=H.ALLOWED_UID)
        mem, mfd = H.allocate(c, HP)
        R.wait_until(lambda: R.mem_names(mgr, mem["memory"]), 5, lambda: R.describe_store(mgr))
        R.kill9(env, mgr)
        c.close()
        os.close(mfd)
        R.restart(env, mgr)
        freed = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=mem["memory"],
                                 NOIOMMUD_REASON="reclaim-after-restart")
        uid = freed[0].get("NOIOMMUD_CLIENT_UID")
        assert uid == str(H.ALLOWED_UID), "reclaimed memory recorded as UID %r, expected %d" % (uid, H.ALLOWED_UID)
        wait_pages(free0, "pages back")


def main():
    import device_harness as D
    with D.DeviceEnvironment(daemon=False, hugepages=16) as env:
        mgr = R.daemon_manager(env, extra_args=["--config", env.config_path],
                               extra_env=env.mock_daemon_env())
        try:
            R.start(env, mgr)
            free0 = H.hugepages_free()
            run_a1(env, mgr, D, free0)
            run_a2(env, mgr, D, free0)
            run_a3(env, mgr, D, free0)
            run_b(env, mgr, D, free0)
            mgr.stop()
        finally:
            env.daemon = None
            mgr.close()


if __name__ == "__main__":
    H.run(main)
