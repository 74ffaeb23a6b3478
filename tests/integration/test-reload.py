#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Live restart (issue 11): SIGHUP (what `systemctl reload noiommud` sends) re-executes the
daemon in the same process, and every lease, allocation and connection carries on with no
unpinned gap (daemon/reexec.h).

  a. A client holds memory, a device lease (vfio fixture backend) and memory mapped for it.
     SIGHUP: RELOADING=1 then READY=1 and a RELOADED record; the same pid serves; a new
     request on the SAME connection succeeds; the client's pages are where they were (pagemap,
     as root) and where the grant said; HugePages_Free unchanged; nothing quiesced or freed
     (mock log, MEMORY_FREED); the io_uring pins were never released: the very rings (fd
     numbers, and fdinfo still listing the buffers at the OLD image's virtual addresses, which
     only the old image's registration can show) are in the new image. The interruption a
     connected client sees is measured. Afterwards the lease still releases in quiesce order.
  b. Under socket activation with the fd store (fdstore_manager.py): reload keeps the lease, the
     store is consistent (same names, one state generation), and a later kill -9 + restart
     still restores the lease and the memory.
  c. A request in flight: an AllocateMemory whose polkit check hangs (python3-dbusmock) when
     SIGHUP comes is asked again by the new image and answered once polkit answers; another
     client is served meanwhile.
  d. A failed re-exec (the binary's path gone) leaves the old image serving, with the reason.
"""

import os
import re
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness as H  # noqa: E402

MiB = 1 << 20
HP = 2 * MiB


def io_uring_rings(pid):
    """{fd: fdinfo text} of the io_uring fds of pid."""
    out = {}
    d = "/proc/%d/fd" % pid
    for n in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, n)) == "anon_inode:[io_uring]":
                with open("/proc/%d/fdinfo/%s" % (pid, n)) as f:
                    out[int(n)] = f.read()
        except OSError:
            pass
    return out


def ring_buffers(info):
    """The registered buffers an io_uring fdinfo lists (UserBufs: lines "N: 0xADDR/LEN")."""
    m = re.search(r"UserBufs:\s*(\d+)\n((?:\s*\d+: 0x[0-9a-f]+/\d+\n)*)", info)
    assert m, "no UserBufs in io_uring fdinfo:\n" + info
    return int(m.group(1)), re.findall(r"0x[0-9a-f]+/\d+", m.group(2))


def memfd_maps(pid):
    return {r["path"]: r["start"] for r in H.proc_maps(pid) if "noiommud-" in r["path"]}


def client_phys(memfd, size):
    """Physical address of each hugepage of memfd, mapped in this process (pagemap as root)."""
    import mmap
    m = mmap.mmap(memfd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        for off in range(0, size, HP):
            m[off:off + 1] = b"\x01"
        vma = [r for r in H.proc_maps(os.getpid()) if r["offset"] == 0 and
               os.readlink("/proc/self/fd/%d" % memfd).split(" ")[0] in r["path"]]
        assert vma, "mapping not found"
        v = vma[-1]
        return [H.pagemap(os.getpid(), v["start"] + off, 4096)[0] for off in range(0, size, HP)]
    finally:
        m.close()


def reload_and_measure(env, c):
    """SIGHUP; returns the time until a request on connection c, sent right after the signal,
    is answered (what a client sees)."""
    with env.journal.cond:
        env.journal.notifications.clear()
    t0 = time.monotonic()
    os.kill(env.daemon_pid, signal.SIGHUP)
    c.call_ok(H.GET_INFO)
    gap = time.monotonic() - t0
    assert env.journal.wait_notify("RELOADING=1", 5), "no RELOADING=1"
    assert env.journal.wait_notify("READY=1", 5), "no READY=1 after the reload"
    return gap


def scenario_a(H, D):
    with D.DeviceEnvironment(hugepages=16) as env:
        log_ = env.mock_log
        pid = env.daemon_pid
        free0 = H.hugepages_free()
        with env.subtest("a. reload with memory and a device lease held: nothing changes"):
            c = env.connect(uid=H.ALLOWED_UID)
            mem, mfd = H.allocate(c, 2 * HP)
            acq, dfd = D.acquire(c, D.CDEV_NOIOMMU_DEV)
            lease = acq["lease"]
            lmem, lfd = D.allocate_leased(c, lease, HP, "physical")
            phys = client_phys(mfd, 2 * HP), client_phys(lfd, HP)
            D.check_physical(mfd, mem)
            D.check_physical(lfd, lmem)
            rings0 = io_uring_rings(pid)
            bufs0 = {fd: ring_buffers(i) for fd, i in rings0.items()}
            assert len(rings0) == 2 and all(n >= 1 for n, _ in bufs0.values()), rings0
            maps0 = memfd_maps(pid)
            free_held = H.hugepages_free()
            assert free_held == free0 - 3, (free_held, free0)
            mark = log_.mark()
            n_before = len(env.journal.find(H.MSGID["RELOADED"]))

            gap = reload_and_measure(env, c)
            H.log("reload: a request sent with the SIGHUP was answered after %.1f ms" % (gap * 1000))

            assert env.daemon.poll() is None and env.daemon_pid == pid
            with open("/proc/%d/status" % pid) as f:
                assert "Name:\tnoiommud" in f.read()
            env.journal.wait(H.MSGID["RELOADED"], count=n_before + 1)
            e = env.journal.find(H.MSGID["RELOADED"])
            assert len(e) == n_before + 1, e
            H.log("RELOADED: %s" % e[-1].get("MESSAGE"))
            # the same connection serves new work, on the old lease too
            r2, fd2 = H.allocate(c, HP)
            c.call_ok(H.FREE, {"memory": r2["memory"]})
            os.close(fd2)
            l2, lfd2 = D.allocate_leased(c, lease, HP, "physical")
            os.close(lfd2)
            assert client_phys(mfd, 2 * HP) == phys[0], "memory moved across the reload"
            assert client_phys(lfd, HP) == phys[1], "leased memory moved across the reload"
            D.check_physical(lfd, lmem)
            # the very same rings, still holding the buffers registered by the old image
            rings1 = io_uring_rings(pid)
            for fd, b in bufs0.items():
                assert fd in rings1, "pin ring fd %d gone after the reload: %r" % (fd, sorted(rings1))
                assert ring_buffers(rings1[fd]) == b, (fd, b, ring_buffers(rings1[fd]))
            maps1 = memfd_maps(pid)
            # The new image mapped every memfd again (new addresses); nothing was left out.
            assert set(maps0) <= set(maps1), (maps0, maps1)
            assert not log_.find("clear_bme", since=mark), "quiesced across the reload:\n" + log_.describe(mark)
            assert not log_.find("unpin", since=mark, name="noiommud-" + lmem["memory"]), log_.describe(mark)
            assert not env.journal.find(H.MSGID["MEMORY_FREED"], NOIOMMUD_MEMORY_ID=mem["memory"])
            assert not env.journal.find(H.MSGID["LEASE_RELEASED"], NOIOMMUD_LEASE_ID=lease)
            # r2 stays pinned with the noiommu lease after FreeMemory (design.md §3.2), l2 is held
            assert H.hugepages_free() == free_held - 2, \
                "HugePages_Free %d, was %d before the reload" % (H.hugepages_free(), free_held)

            # twice more: reload is repeatable, the fd count stays put
            fds1 = env.settled_baseline()[0]
            for _ in range(2):
                gap = reload_and_measure(env, c)
                H.log("reload again: %.1f ms" % (gap * 1000))
            assert env.settled_baseline()[0] == fds1, env.daemon_fds()
            assert client_phys(mfd, 2 * HP) == phys[0]

            # a lease carried over still ends in order
            mark = log_.mark()
            c.call_ok(D.RELEASE, {"lease": lease})
            D.order(log_, mark, ("clear_bme", {"dev": D.CDEV_NOIOMMU_DEV}), ("reset", {"dev": D.CDEV_NOIOMMU_DEV}),
                    ("close-memfd", {"name": "noiommud-" + lmem["memory"]}))
            for fd in (mfd, dfd, lfd):
                os.close(fd)
            c.close()
            H.wait_until(lambda: H.hugepages_free() == free0, 10, "pages back")

        with env.subtest("a. a connection that never asked for anything survives too"):
            idle = env.connect(uid=H.ALLOWED_UID)
            idle.call_ok(H.GET_INFO)
            other = env.connect(uid=H.ALLOWED_UID)
            reload_and_measure(env, other)
            idle.call_ok(H.GET_INFO)
            idle.close()
            other.close()

        with env.subtest("d. a failed re-exec keeps the old image serving"):
            c = env.connect(uid=H.ALLOWED_UID)
            mem, mfd = H.allocate(c, HP)
            exe = os.readlink("/proc/%d/exe" % pid)
            saved = exe + ".reload-test"
            os.rename(exe, saved)
            try:
                with env.journal.cond:
                    env.journal.notifications.clear()
                os.kill(pid, signal.SIGHUP)
                assert env.journal.wait_notify("READY=1", 5), "no READY=1 after the failed re-exec"
            finally:
                os.rename(saved, exe)
            H.wait_until(lambda: [e for e in env.journal.find() if "Failed to re-execute" in str(e.get("MESSAGE"))],
                         5, "the reason logged")
            assert env.daemon_pid == pid and env.daemon.poll() is None
            c.call_ok(H.FREE, {"memory": mem["memory"]})
            os.close(mfd)
            # and the next SIGHUP, with the binary back, works
            reload_and_measure(env, c)
            c.call_ok(H.GET_INFO)
            c.close()


def scenario_b(H, D):
    # test-restart.py's fd-store manager set-up (daemon_manager, start, kill9, restart, ...).
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "test_restart", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-restart.py"))
    R = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(R)
    with D.DeviceEnvironment(daemon=False, hugepages=16) as env:
        mgr = R.daemon_manager(env, extra_args=["--config", env.config_path],
                               extra_env=env.mock_daemon_env())
        log_ = env.mock_log
        try:
            R.start(env, mgr)
            free0 = H.hugepages_free()
            with env.subtest("b. socket-activated with the fd store: reload, then kill -9 still restores"):
                c = env.connect(uid=H.ALLOWED_UID)
                acq, dfd = D.acquire(c, D.GROUP_DEV)
                lease = acq["lease"]
                lmem, lfd = D.allocate_leased(c, lease, HP, "physical")
                mem, mfd = H.allocate(c, HP)
                # The manager reads its notify socket in its own thread: take the shape only once
                # it has handled the pushes of the lease and of both allocations.
                want = ("mem-" + lmem["memory"], "mem-" + mem["memory"])
                H.wait_until(lambda: any(n.startswith("lease-" + lease) for n in mgr.names())
                             and all(w in mgr.names() for w in want), 5,
                             lambda: R.describe_store(mgr))
                R.check_store_sane(mgr, H)
                shape, conns = R.store_shape(mgr), R.conn_names(mgr)
                pid = mgr.main_pid
                phys = client_phys(mfd, HP)
                mark = log_.mark()
                t0 = time.monotonic()
                os.kill(pid, signal.SIGHUP)
                c.call_ok(H.GET_INFO)
                H.log("reload under the fd-store manager: %.1f ms" % ((time.monotonic() - t0) * 1000))
                H.wait_until(lambda: any("RELOADING=1" in n.tags for n in mgr.messages()), 5, "RELOADING=1")
                H.wait_until(lambda: sum("READY=1" in n.tags for n in mgr.messages()) >= 2, 5, "READY=1 again")
                assert mgr.main_pid == pid and mgr.proc.poll() is None
                R.check_store_sane(mgr, H)
                assert R.store_shape(mgr) == shape and R.conn_names(mgr) == conns, \
                    (shape, R.store_shape(mgr), R.describe_store(mgr))
                assert not log_.find("clear_bme", since=mark), log_.describe(mark)
                assert not mgr.errors, mgr.errors
                assert client_phys(mfd, HP) == phys
                # a later crash restores from what the new image stored
                R.kill9(env, mgr)
                R.restart(env, mgr)
                assert not log_.find("clear_bme", since=mark), "quiesced a live lease:\n" + log_.describe(mark)
                m2, f2 = D.allocate_leased(c, lease, HP, "physical")
                os.close(f2)
                assert client_phys(mfd, HP) == phys
                mark = log_.mark()
                c.call_ok(D.RELEASE, {"lease": lease})
                D.order(log_, mark, ("clear_bme", {"dev": D.GROUP_DEV}), ("reset", {"dev": D.GROUP_DEV}),
                        ("close-memfd", {"name": "noiommud-" + lmem["memory"]}))
                for fd in (dfd, lfd, mfd):
                    os.close(fd)
                c.close()
                H.wait_until(lambda: H.hugepages_free() == free0, 10, "pages back")
                assert not mgr.errors, mgr.errors
            mgr.stop()
        finally:
            env.daemon = None
            mgr.close()


def scenario_c(H):
    with H.Environment(polkit="mock", hugepages=8) as env:
        pk = env.polkit_mock
        with env.subtest("c. a request waiting for polkit at reload is asked again and answered"):
            pk.set_allowed(["io.noiommud.allocate-memory", "io.noiommud.list-devices"])
            pk.simulate_hang_actions(["io.noiommud.allocate-memory"])
            c = env.connect(uid=H.ALLOWED_UID)
            c.send(H.ALLOCATE, {"size": HP})
            H.wait_until(pk.have_hanging_calls, 5, "the check to hang")
            other = env.connect(uid=H.ALLOWED_UID)
            os.kill(env.daemon_pid, signal.SIGHUP)
            other.call_ok(H.GET_INFO)           # served by the new image
            env.wait_journal("RELOADED")
            H.wait_until(lambda: len([x for x in pk.get_calls() if "CheckAuthorization" in str(x)]) >= 2, 5,
                         lambda: "polkit asked again: %r" % pk.get_calls())
            pk.simulate_hang_actions([])
            pk.release_hanging_calls()
            reply, fds = c.recv(timeout=10)
            assert "error" not in reply, reply
            assert len(fds) == 1, fds
            for fd in fds:
                os.close(fd)
            c.close()
            other.close()


def main():
    import device_harness as D
    scenario_a(H, D)
    scenario_b(H, D)
    scenario_c(H)


if __name__ == "__main__":
    H.run(main)
