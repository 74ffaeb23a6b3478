#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The pre-zeroed hugepage pool ("hugepagePool", daemon/pool.h), with the real daemon and polkitd:

  * at start HugePages_Free drops by the pool's pages (bounded wait) and ListLeases shows the
    entry ready == target;
  * a matching AllocateMemory is served from the pool (MEMORY_GRANTED NOIOMMUD_POOL=1), the memfd
    is named after the reply's id, the memory reads as zero, and the pool refills afterwards;
  * a non-matching request is made fresh (NOIOMMUD_POOL=0);
  * memory freed goes back to the system, never to the pool: HugePages_Free rises by its pages,
    and the next pooled grant is another memfd (inode, id) that reads as zero again, although the
    first was written;
  * with every other free page taken, a request the pool's pages are needed for still succeeds
    (the pool gave them back), and the pool refills with what is left;
  * noiommuctl leases prints the pool, --json carries it;
  * a re-exec (SIGHUP) keeps the client's pooled memory and refills a pool of its own;
  * under a service manager with an fd store (fdstore_manager.py), a pooled grant is stored and
    restored after kill -9 like any other (same memory, FreeMemory works), the dead daemon's pool
    goes back to the system and the restarted daemon fills its own;
  * bad configurations are refused at start with a message naming the key.
"""

import json
import mmap
import os
import signal
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
import fdstore_manager as M  # noqa: E402

MiB = 1 << 20
HP = 2 * MiB
POOL_SIZE = 4 * MiB
POOL_COUNT = 2
POOL_PAGES = POOL_SIZE // HP * POOL_COUNT
LIST_LEASES = "io.noiommud.Broker.ListLeases"


def pool_of(conn):
    reply, _ = conn.call_ok(LIST_LEASES, {})
    assert "pool" in reply, reply
    return reply["pool"]


def wait_ready(conn, ready, what):
    H.wait_until(lambda: pool_of(conn)[0]["ready"] == ready, 30,
                 lambda: "pool ready %r, expected %d (%s)" % (pool_of(conn), ready, what))


def wait_free(expected, what, timeout=30):
    H.wait_until(lambda: H.hugepages_free() == expected, timeout,
                 lambda: "HugePages_Free %d, expected %d (%s)" % (H.hugepages_free(), expected, what))


def granted(env, memory_id):
    g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=memory_id)
    assert len(g) == 1, g
    return g[0]


def check_zero_and_name(fd, reply):
    link = os.readlink("/proc/self/fd/%d" % fd)
    assert link == "/memfd:noiommud-%s (deleted)" % reply["memory"], \
        "memfd %r does not carry the reply's id %s" % (link, reply["memory"])
    m = mmap.mmap(fd, reply["size"], mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        zero = bytes(1 << 20)
        for off in range(0, reply["size"], 1 << 20):
            assert m[off:off + (1 << 20)] == zero, "memory %s not zero at %d" % (reply["memory"], off)
        m[:] = b"\xa5" * reply["size"]          # leave a mark the next grant must not see
    finally:
        m.close()


def write_config(env, name, text):
    path = os.path.join(env.tmp, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def refused(env, config, must_say):
    e = dict(env.env)
    e.pop("NOTIFY_SOCKET", None)
    path = os.path.join(env.tmp, "refused.sock")
    p = subprocess.run([env.daemon_bin, "--listen", path, "--config", config], env=e,
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20, universal_newlines=True)
    assert p.returncode != 0, "daemon started with %s: %s" % (config, p.stderr)
    assert must_say in p.stderr, "expected %r in:\n%s" % (must_say, p.stderr)
    assert not os.path.exists(path), "a refused daemon left its socket"


def main():
    with H.Environment(hugepages=24, daemon=False) as env:
        cfg = write_config(env, "pool.conf", json.dumps({"hugepagePool": [
            {"hugepageSize": HP, "size": POOL_SIZE, "count": POOL_COUNT}]}))
        free0 = H.hugepages_free()
        assert free0 >= POOL_PAGES + 4, "need %d free 2 MiB pages, have %d" % (POOL_PAGES + 4, free0)
        env.start_daemon(extra_args=["--config", cfg])
        admin = env.connect(uid=H.ALLOWED_UID)

        with env.subtest("at start the pool takes its pages and says so in ListLeases"):
            wait_free(free0 - POOL_PAGES, "the pool filling at start")
            wait_ready(admin, POOL_COUNT, "at start")
            assert pool_of(admin) == [{"hugepageSize": HP, "size": POOL_SIZE, "numaNode": None,
                                       "ready": POOL_COUNT, "target": POOL_COUNT}], pool_of(admin)
            assert env.daemon_hugetlb_kb() == POOL_PAGES * HP // 1024, env.daemon_hugetlb_kb()

        c = env.connect(uid=H.ALLOWED_UID)
        with env.subtest("a matching request is served from the pool, zeroed; the pool refills"):
            r1, fd1 = H.allocate(c, POOL_SIZE)
            H.check_segments(r1, r1["size"])
            g = granted(env, r1["memory"])
            assert g.get("NOIOMMUD_POOL") == "1", g
            check_zero_and_name(fd1, r1)
            ino1 = os.fstat(fd1).st_ino
            wait_ready(admin, POOL_COUNT, "refill after a take")
            wait_free(free0 - POOL_PAGES - POOL_SIZE // HP, "pool refilled, client holds its pages")

        with env.subtest("a non-matching request is made fresh"):
            r2, fd2 = H.allocate(c, HP)
            assert granted(env, r2["memory"]).get("NOIOMMUD_POOL") == "0"
            check_zero_and_name(fd2, r2)
            os.close(fd2)
            c.call_ok(H.FREE, {"memory": r2["memory"]})

        with env.subtest("freed memory goes back to the system, never to the pool"):
            os.close(fd1)
            c.call_ok(H.FREE, {"memory": r1["memory"]})
            wait_free(free0 - POOL_PAGES, "after FreeMemory")
            assert pool_of(admin)[0]["ready"] == POOL_COUNT, pool_of(admin)
            r3, fd3 = H.allocate(c, POOL_SIZE)
            assert granted(env, r3["memory"]).get("NOIOMMUD_POOL") == "1"
            assert r3["memory"] != r1["memory"]
            assert os.fstat(fd3).st_ino != ino1, "the pool handed out the freed memfd again"
            check_zero_and_name(fd3, r3)        # zero although r1 was written with 0xa5
            os.close(fd3)
            c.call_ok(H.FREE, {"memory": r3["memory"]})
            wait_ready(admin, POOL_COUNT, "refill after the second take")
            wait_free(free0 - POOL_PAGES, "second grant freed")

        with env.subtest("noiommuctl leases prints the pool; --json carries it"):
            r = env.ctl(["leases"], check=True)
            lines = r.stdout.splitlines()
            assert lines[0] == "No leases.", r.stdout
            assert lines[2].split() == ["POOL-HUGEPAGE", "SIZE", "NODE", "READY", "TARGET"], r.stdout
            assert lines[3].split() == ["2M", "4M", "any", str(POOL_COUNT), str(POOL_COUNT)], r.stdout
            r = env.ctl(["--json", "leases"], check=True)
            assert json.loads(r.stdout)["pool"] == pool_of(admin), r.stdout

        with env.subtest("when the pool holds the last free pages, other requests still succeed"):
            hog = env.connect(uid=H.ALLOWED_UID)
            held = []
            left = H.hugepages_available()
            # everything else, in regions the pool does not serve (2 MiB each at the end)
            while left > 0:
                n = left if left * HP != POOL_SIZE else 1
                rr, ff = H.allocate(hog, n * HP)
                held.append((rr, ff))
                left -= n
            assert H.hugepages_available() == 0, H.hugepages_available()
            r4, fd4 = H.allocate(c, HP)         # needs a page only the pool has
            assert granted(env, r4["memory"]).get("NOIOMMUD_POOL") == "0"
            check_zero_and_name(fd4, r4)
            # the pool gave its 4 pages back; of the 3 left it takes one 4 MiB region again, and
            # the second fails for want of pages (one is free)
            wait_ready(admin, 1, "refill with what is left")
            H.wait_until(lambda: H.hugepages_available() == 1, 10,
                         lambda: "%d pages free, expected 1" % H.hugepages_available())
            assert pool_of(admin)[0]["ready"] == 1, pool_of(admin)
            os.close(fd4)
            c.call_ok(H.FREE, {"memory": r4["memory"]})
            for rr, ff in held:
                os.close(ff)
            hog.close()
            # the retry timer (10 s) refills the second region once pages are free again
            wait_ready(admin, POOL_COUNT, "retry after pages came back")
            wait_free(free0 - POOL_PAGES, "everything but the pool back")

        with env.subtest("a re-exec keeps a pooled grant and fills a pool of its own"):
            r5, fd5 = H.allocate(c, POOL_SIZE)
            assert granted(env, r5["memory"]).get("NOIOMMUD_POOL") == "1"
            pid = env.daemon_pid
            os.kill(pid, signal.SIGHUP)
            env.wait_journal("RELOADED", timeout=20)
            assert env.daemon_pid == pid
            wait_ready(admin, POOL_COUNT, "after the re-exec")
            wait_free(free0 - POOL_PAGES - POOL_SIZE // HP, "after the re-exec")
            check_zero_and_name(fd5, r5)        # the same memory, still the client's
            os.close(fd5)
            c.call_ok(H.FREE, {"memory": r5["memory"]})
            wait_free(free0 - POOL_PAGES, "pooled grant freed after the re-exec")
            c.close()
            admin.close()

        with env.subtest("a stop frees the pool"):
            env.stop_daemon()
            wait_free(free0, "after the daemon stopped")

        with env.subtest("kill -9 with a pooled grant held: restored like any other, pool refilled"):
            os.makedirs("/run/systemd/journal", exist_ok=True)
            script = ('mount --make-rprivate / && mount --bind "$1" /run/systemd/journal && '
                      'shift && exec "$@"')
            argv = ["unshare", "-m", "sh", "-c", script, "sh", os.path.join(env.tmp, "journal"),
                    env.daemon_bin, "--listen", os.path.join(env.tmp, "decoy.sock"), "--config", cfg]
            mgrdir = os.path.join(env.tmp, "manager")
            os.makedirs(mgrdir, exist_ok=True)
            env.logs["noiommud"] = os.path.join(env.tmp, "logs", "noiommud-fdstore.log")
            mgr = M.FdStoreManager(argv, env=dict(env.env), listen_path=env.socket_path, workdir=mgrdir,
                                   log_path=env.logs["noiommud"])
            try:
                mgr.start()
                env.daemon, env.daemon_pid = mgr.proc, mgr.main_pid
                mgr.wait_ready()
                wait_free(free0 - POOL_PAGES, "pool filled under the fd-store manager")
                c = env.connect(uid=H.ALLOWED_UID)
                r6, fd6 = H.allocate(c, POOL_SIZE)
                assert granted(env, r6["memory"]).get("NOIOMMUD_POOL") == "1"
                check_zero_and_name(fd6, r6)
                H.wait_until(lambda: "mem-" + r6["memory"] in mgr.names(), 5,
                             lambda: "mem-%s not in the store: %r" % (r6["memory"], mgr.names()))
                wait_free(free0 - POOL_PAGES - POOL_SIZE // HP, "refilled before the kill")
                env.daemon = None
                mgr.kill9()
                wait_free(free0 - POOL_SIZE // HP, "the dead daemon's pool is freed, the stored grant is not")
                mgr.start()
                env.daemon, env.daemon_pid = mgr.proc, mgr.main_pid
                mgr.wait_ready()
                c.call_ok(H.GET_INFO)
                wait_free(free0 - POOL_PAGES - POOL_SIZE // HP, "the restarted daemon fills its own pool")
                m = mmap.mmap(fd6, r6["size"], mmap.MAP_SHARED, mmap.PROT_READ)
                assert m[:4096] == b"\xa5" * 4096 and m[-4096:] == b"\xa5" * 4096, "memory changed across kill -9"
                m.close()
                admin = env.connect(uid=H.ALLOWED_UID)
                assert pool_of(admin)[0]["ready"] == POOL_COUNT, pool_of(admin)
                admin.close()
                reply, fds = c.call_ok(H.FREE, {"memory": r6["memory"]})
                assert reply == {} and not fds, (reply, fds)
                os.close(fd6)
                env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=r6["memory"], NOIOMMUD_REASON="free")
                wait_free(free0 - POOL_PAGES, "the restored pooled grant freed")
                c.close()
            finally:
                env.daemon = None
                mgr.close()
            wait_free(free0, "after the fd-store daemon was killed")

        with env.subtest("bad configurations are refused, naming the key"):
            bad = [
                ({"hugepagePool": {"size": HP}}, '"hugepagePool" must be a list'),
                ({"hugepagePool": [{"hugepageSize": HP, "size": 3 * MiB, "count": 1}]},
                 '"hugepagePool"[0].size must be a multiple of its hugepageSize'),
                ({"hugepagePool": [{"hugepageSize": 3 * MiB, "size": 3 * MiB, "count": 1}]},
                 '"hugepagePool"[0].hugepageSize must be a power of two'),
                ({"hugepagePool": [{"hugepageSize": HP, "size": HP}]}, '"hugepagePool"[0] lacks "count"'),
                ({"hugepagePool": [{"hugepageSize": HP, "size": HP, "count": 1, "node": 0}]},
                 '"hugepagePool"[0]: unknown key "node"'),
                ({"hugepagePool": [{"hugepageSize": HP, "size": HP, "count": 1, "numaNode": -1}]},
                 '"hugepagePool"[0].numaNode must be'),
                ({"hugepagePool": [{"hugepageSize": HP, "size": HP, "count": 65}]},
                 '"hugepagePool"[0].count must be at most 64'),
                ({"hugepagePool": [{"hugepageSize": HP, "size": HP, "count": 40},
                                   {"hugepageSize": HP, "size": 2 * HP, "count": 40}]},
                 '"hugepagePool" holds 80 regions'),
                ({"hugepagePool": [{"hugepageSize": HP, "size": HP, "count": 1},
                                   {"hugepageSize": HP, "size": HP, "count": 2}]},
                 '"hugepagePool"[1] repeats entry 0'),
            ]
            for i, (conf, msg) in enumerate(bad):
                refused(env, write_config(env, "bad%d.conf" % i, json.dumps(conf)), msg)
            assert H.hugepages_free() == free0


H.run(main)
