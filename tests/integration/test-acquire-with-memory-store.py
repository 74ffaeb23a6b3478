#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""AcquireDevice with memory and the write-ahead (issue 10; security.md §8): the daemon runs under
fdstore_manager.FdStoreManager with the vfio mock, as in test-write-ahead.py.

  1. with the fd store unreachable the combined grant is refused (InternalError, no fd): the
     lease's write-ahead fails before any memory is taken, so HugePages_Free never moves, the
     device is quiesced and released (reason not-stored), nothing is recorded as granted;
  2. with the store back, the lease's device fds and every region's memfd are in the store by
     the time the reply arrives, each pushed once;
  3. a kill -9 of the daemon with that grant held: the restarted daemon resumes the lease with
     its memory for the still-connected client (nothing quiesced, nothing freed), the lease
     takes more memory, and a ReleaseDevice quiesces and then gives every page back.
"""

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness as H  # noqa: E402

R = importlib.import_module("test-restart")
W = importlib.import_module("test-write-ahead")

MiB = 1 << 20


def main():
    import device_harness as D
    with D.DeviceEnvironment(daemon=False, hugepages=8) as env:
        mgr = R.daemon_manager(env, extra_args=["--config", env.config_path],
                               extra_env=env.mock_daemon_env())
        log_ = env.mock_log
        try:
            R.start(env, mgr)
            free0 = H.hugepages_free()
            c = env.connect(uid=H.ALLOWED_UID)
            params = {"device": D.GROUP_DEV, "memory": [{"size": 2 * MiB}, {"size": 4 * MiB}]}

            with env.subtest("1. the fd store unreachable: refused before any memory is taken"):
                n_granted = len(env.find_journal("MEMORY_GRANTED")) + len(env.find_journal("LEASE_GRANTED"))
                mark = log_.mark()
                with W.StoreGone(mgr):
                    err, p = c.call_error(D.ACQUIRE, params)
                assert err == H.ERR + "InternalError", (err, p)
                assert H.hugepages_free() == free0, "HugePages_Free %d, was %d" % (H.hugepages_free(), free0)
                D.order(log_, mark, ("clear_bme", {"dev": D.GROUP_DEV}), ("reset", {"dev": D.GROUP_DEV}),
                        ("close-device", {"dev": D.GROUP_DEV}))
                env.wait_journal("LEASE_RELEASED", NOIOMMUD_DEVICE=D.GROUP_DEV, NOIOMMUD_REASON="not-stored")
                assert len(env.find_journal("MEMORY_GRANTED")) + len(env.find_journal("LEASE_GRANTED")) == n_granted, \
                    "a refused grant was recorded"

            with env.subtest("2. the store back: lease and every region stored before the reply, once each"):
                reply, fds = c.call_ok(D.ACQUIRE, params)
                for fd in fds:
                    os.close(fd)
                lease = reply["lease"]
                ids = [m["memory"] for m in reply["memory"]]
                assert len(ids) == 2 and H.hugepages_free() == free0 - 3, (reply, H.hugepages_free())
                R.wait_until(lambda: all(R.mem_names(mgr, i) for i in ids) and
                             ("lease-" + lease) in mgr.names(), 5,
                             lambda: R.describe_store(mgr))
                # The lease's device fds travel in one notification under one name (persist.c).
                for n in ["lease-" + lease] + ["mem-" + i for i in ids]:
                    pushes = W.store_pushes(mgr, n)
                    assert len(pushes) == 1, "%s stored %d times: %r" % (n, len(pushes), pushes)

            with env.subtest("3. kill -9 and restart: the lease and its memory resume for the client"):
                R.check_store_sane(mgr, H)
                R.kill9(env, mgr)
                mark = log_.mark()
                R.restart(env, mgr)
                assert not log_.find("clear_bme", since=mark), "quiesced a live lease:\n" + log_.describe(mark)
                assert H.hugepages_free() == free0 - 3, "HugePages_Free %d after the restart" % H.hugepages_free()
                # the restored lease still takes memory, and its release quiesces before freeing
                mem, mfd = D.allocate_leased(c, lease, 2 * MiB, "physical")
                os.close(mfd)
                mark = log_.mark()
                c.call_ok(D.RELEASE, {"lease": lease})
                D.order(log_, mark, ("clear_bme", {"dev": D.GROUP_DEV}), ("reset", {"dev": D.GROUP_DEV}),
                        ("close-memfd", {"name": "noiommud-" + ids[0]}))
                R.wait_until(lambda: H.hugepages_free() == free0, 10, "pages back after the release")
                R.wait_until(lambda: not any(n.startswith("lease-" + lease) for n in mgr.names()), 5,
                             lambda: R.describe_store(mgr))
            c.close()
            with env.subtest("no notify protocol errors"):
                assert not mgr.errors, mgr.errors
            mgr.stop()
        finally:
            env.daemon = None
            mgr.close()


if __name__ == "__main__":
    H.run(main)
