#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""noiommuctl as a script would use it, as the allowed user: `batch` allocates and frees on one
connection (one JSON line per command, answered before the next line is read); a one-shot
`alloc` releases its memory on exit; `free` on its own connection is NoSuchMemory."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MiB = 1 << 20


def command(p, line, timeout=30):
    p.stdin.write(line.encode() + b"\n")
    p.stdin.flush()
    out = H.readline_timeout(p.stdout, timeout)
    if not out:
        p.wait(5)
        raise AssertionError("noiommuctl batch printed nothing for %r, exit %r, stderr: %r"
                             % (line, p.returncode, p.stderr.read().decode(errors="replace")))
    return json.loads(out)


def main():
    with H.Environment() as env:
        free0 = H.hugepages_free()
        r = env.ctl(["--json", "alloc", "2M"])              # warm-up
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        base = env.settled_baseline(free0)

        with env.subtest("batch: alloc then free on one connection"):
            p = env.ctl_popen(["--json", "batch"])
            a = command(p, "alloc 4M")
            assert a["size"] == 4 * MiB and a["hugepageSize"] == 2 * MiB and a["addressKind"] == "physical", a
            H.check_segments(a, a["size"])
            assert H.hugepages_free() == base[1] - 2, H.hugepages_free()
            b = command(p, "alloc 2M --hugepage-size 2M")
            assert b["size"] == 2 * MiB and b["memory"] != a["memory"], b
            assert H.hugepages_free() == base[1] - 3
            f = command(p, "free %s" % a["memory"])
            assert f == {}, f
            H.wait_until(lambda: H.hugepages_free() == base[1] - 1, 10, "the freed pages to come back")
            e = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=a["memory"])[0]
            assert e.get("NOIOMMUD_REASON") == "free", e
            assert e.get("NOIOMMUD_CLIENT_PID") == str(p.pid) and e.get("NOIOMMUD_CLIENT_UID") == "1", e
            granted = env.find_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=p.pid)
            assert {g["NOIOMMUD_MEMORY_ID"] for g in granted} == {a["memory"], b["memory"]}, granted
            # both allocations were authorized on the same connection, each by its own check
            authz = env.find_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=p.pid,
                                     NOIOMMUD_POLKIT_ACTION="io.noiommud.allocate-memory")
            assert len(authz) == 2, authz
            l = command(p, "list")
            assert l == {"devices": []}, l
            p.stdin.close()
            rc = p.wait(20)
            assert rc == 0, "batch exited %d: %s" % (rc, p.stderr.read().decode())
            env.wait_baseline(base, what="after batch")
            e = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=b["memory"])[0]
            assert e.get("NOIOMMUD_REASON") in ("free", "client-exit"), e

        with env.subtest("batch: an error line for a bad free, exit status 1 at the end"):
            p = env.ctl_popen(["--json", "batch"])
            e = command(p, "free " + "0" * 32)
            assert e == {"error": H.ERR + "NoSuchMemory", "parameters": {"memory": "0" * 32}}, e
            a = command(p, "alloc 2M")
            assert a["size"] == 2 * MiB, a
            p.stdin.close()
            rc = p.wait(20)
            assert rc == 1, "batch with a failed command exited %d" % rc
            env.wait_baseline(base, what="after the failing batch")

        with env.subtest("one-shot alloc releases its memory when it exits"):
            r = env.ctl(["--json", "alloc", "4M"])
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
            out = json.loads(r.stdout)
            assert out["size"] == 4 * MiB, out
            env.wait_baseline(base, what="after one-shot alloc")
            env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=out["memory"])

        with env.subtest("free on its own connection: NoSuchMemory, exit 1"):
            r = env.ctl(["--json", "free", "0123456789abcdef0123456789abcdef"])
            assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
            out = json.loads(r.stdout.strip().splitlines()[-1])
            assert out["error"] == H.ERR + "NoSuchMemory", out

        with env.subtest("human-readable alloc"):
            r = env.ctl(["alloc", "2M"])
            assert r.returncode == 0 and r.stdout.strip(), (r.returncode, r.stdout, r.stderr)
            env.wait_baseline(base, what="end")


H.run(main)
