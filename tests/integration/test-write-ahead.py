#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The write-ahead is checked (issue 9; security.md §8): nothing reaches a client before its fds
are in the service manager's fd store. The daemon runs under fdstore_manager.FdStoreManager with
the vfio mock; the store is made unreachable by moving its $NOTIFY_SOCKET away (sendmsg() then
fails, which is what the daemon can notice; a store that accepts the datagram and drops the fds,
PID 1's FileDescriptorStoreMax=, is invisible to it by design of the protocol).

  1. AllocateMemory while the store is unreachable: InternalError, no fd, the memory is freed at
     once (MEMORY_FREED reason not-stored) and never recorded as granted;
  2. AcquireDevice while the store is unreachable: InternalError, no fd, the device is quiesced
     and released, so that it can be acquired again;
  3. with the store back both work, and the connection is stored (it was not, before);
  4. allocations into a lease do not store the lease's device fds again: one FDSTORE=1 for the
     lease's name over the lease's life.

1, 2 and 4 failed before (the result of persist_grant() was discarded, and every leased
allocation re-pushed the lease's device fds).
"""

import importlib
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness as H  # noqa: E402

R = importlib.import_module("test-restart")

HP = 2 << 20


class StoreGone:
    """Moves the manager's notify socket away for the duration of a with block."""

    def __init__(self, mgr):
        self.path = mgr.notify_path

    def __enter__(self):
        os.rename(self.path, self.path + ".gone")
        return self

    def __exit__(self, *exc):
        os.rename(self.path + ".gone", self.path)


def store_pushes(mgr, name):
    """FDSTORE=1 messages the daemon sent for name (in this daemon generation)."""
    return [n for n in mgr.messages() if "FDSTORE=1" in n.tags and n.get("FDNAME") == name]


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

            with env.subtest("1. AllocateMemory with the fd store unreachable is refused, memory freed"):
                n_granted = len(env.journal.find(H.MSGID["MEMORY_GRANTED"]))
                with StoreGone(mgr):
                    err, params = c.call_error(H.ALLOCATE, {"size": HP})
                assert err == H.ERR + "InternalError", (err, params)
                freed = env.wait_journal("MEMORY_FREED", NOIOMMUD_REASON="not-stored",
                                         NOIOMMUD_CLIENT_UID=H.ALLOWED_UID)
                assert len(env.journal.find(H.MSGID["MEMORY_GRANTED"])) == n_granted, \
                    "memory recorded as granted although it was refused"
                R.wait_until(lambda: H.hugepages_free() == free0, 10, "pages back after the refusal")
                assert freed[0]["NOIOMMUD_MEMORY_ID"] not in "".join(mgr.names()), R.describe_store(mgr)

            with env.subtest("2. AcquireDevice with the fd store unreachable is refused, device quiesced"):
                mark = log_.mark()
                with StoreGone(mgr):
                    err, params = c.call_error(D.ACQUIRE, {"device": D.GROUP_DEV})
                assert err == H.ERR + "InternalError", (err, params)
                D.order(log_, mark, ("clear_bme", {"dev": D.GROUP_DEV}), ("reset", {"dev": D.GROUP_DEV}))
                env.wait_journal("LEASE_RELEASED", NOIOMMUD_DEVICE=D.GROUP_DEV, NOIOMMUD_REASON="not-stored")

            with env.subtest("3. with the store back: both granted, the connection stored"):
                mem, mfd = H.allocate(c, HP)
                R.wait_until(lambda: R.mem_names(mgr, mem["memory"]) and R.conn_names(mgr), 5,
                             lambda: R.describe_store(mgr))
                acq, dfd = D.acquire(c, D.GROUP_DEV)
                R.wait_until(lambda: any(n.startswith("lease-" + acq["lease"]) for n in mgr.names()), 5,
                             lambda: R.describe_store(mgr))
                c.call_ok(D.RELEASE, {"lease": acq["lease"]})
                c.call_ok(H.FREE, {"memory": mem["memory"]})
                os.close(dfd)
                os.close(mfd)

            with env.subtest("4. leased allocations do not store the lease's device fds again"):
                acq, dfd = D.acquire(c, D.GROUP_DEV)
                lease = acq["lease"]
                fds = []
                for _ in range(2):
                    mem, mfd = D.allocate_leased(c, lease, HP, "physical")
                    fds.append(mfd)
                    R.wait_until(lambda: R.mem_names(mgr, mem["memory"]), 5, lambda: R.describe_store(mgr))
                # one name for all of the lease's device fds (issue 10)
                names = set(n for n in mgr.names() if n.startswith("lease-" + lease))
                assert names == {"lease-" + lease}, R.describe_store(mgr)
                for n in names:
                    pushes = store_pushes(mgr, n)
                    assert len(pushes) == 1, "%s stored %d times: %r" % (n, len(pushes), pushes)
                c.call_ok(D.RELEASE, {"lease": lease})
                for fd in fds + [dfd]:
                    os.close(fd)
                R.wait_until(lambda: H.hugepages_free() == free0, 10, "pages back")
            c.close()
            with env.subtest("no notify protocol errors"):
                assert not mgr.errors, mgr.errors
            mgr.stop()
        finally:
            env.daemon = None
            mgr.close()


if __name__ == "__main__":
    H.run(main)
