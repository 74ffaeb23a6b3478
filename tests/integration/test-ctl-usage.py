#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""noiommuctl's rough edges (issue 12), as the allowed user against the real daemon:

  * a negative number ("alloc -1") is a usage error that says so, exit 2, and with --json one
    JSON line, wherever --json is; the same inside a batch;
  * size suffixes in any case (2m, 2M, 2mib, 2MiB, 2mb);
  * a size too large names the maximum;
  * --hugepage-size 3M (not a power of two) or 4M (not offered by this kernel) is a usage error
    found before connecting (exit 2, no connection);
  * "list --hold" names --hold only;
  * "monitor" ends cleanly (exit 0) on SIGINT and SIGTERM;
  * "alloc --hold" with stdin at /dev/null holds until SIGTERM; --hold=signal ignores stdin;
    plain --hold with a pipe still releases at EOF;
  * a --socket that is a directory, a regular file or a socket nobody listens on gets a hint
    that says which, not "is noiommud running?" for all of them.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MiB = 1 << 20
INT64_MAX = (1 << 63) - 1


def json_lines(out):
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def assert_usage(r, *needles, json_line=False):
    assert r.returncode == 2, "exit %d, want 2 (usage):\nstdout %r\nstderr %r" % (r.returncode, r.stdout, r.stderr)
    assert "invalid option" not in r.stderr, "getopt's own message leaked: %r" % r.stderr
    for n in needles:
        assert n in r.stderr, "%r not in stderr %r" % (n, r.stderr)
    lines = json_lines(r.stdout)
    if json_line:
        assert len(lines) == 1 and lines[0]["error"] == "usage", r.stdout
        for n in needles:
            assert n in lines[0]["parameters"]["message"], lines
    else:
        assert lines == [], r.stdout
    return lines


def hold_popen(env, args, stdin):
    argv = env.ctl_argv(args)
    p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env.env, cwd="/", start_new_session=True)
    env.procs["noiommuctl-%d" % p.pid] = p
    return p


def main():
    with H.Environment(hugepages=8) as env:
        free0 = H.hugepages_free()
        r = env.ctl(["--json", "alloc", "2M"])              # warm-up, as test-ctl-batch does
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
        base = env.settled_baseline(free0)

        with env.subtest("alloc -1: a usage error naming the negative number, JSON wherever --json is"):
            assert_usage(env.ctl(["alloc", "-1"]), "'-1'", "negative numbers")
            assert_usage(env.ctl(["--json", "alloc", "-1"]), "'-1'", "negative", json_line=True)
            assert_usage(env.ctl(["alloc", "-1", "--json"]), "'-1'", "negative", json_line=True)
            assert_usage(env.ctl(["alloc", "-12", "--json"]), "'-12'", "negative", json_line=True)
            assert_usage(env.ctl(["--json", "alloc", "2M", "--bogus"]), "'--bogus'", json_line=True)
            assert_usage(env.ctl(["--json", "list", "--socket"]), "needs an argument", json_line=True)
            # --numa-node takes -1 (any) as its argument, separate or attached
            for args in (["--numa-node", "-1"], ["--numa-node=-1"]):
                r = env.ctl(["--json", "alloc", "2M"] + args)
                assert r.returncode == 0 and json_lines(r.stdout)[0]["size"] == 2 * MiB, (args, r.stdout, r.stderr)

        with env.subtest("batch: alloc -1 is the same usage error"):
            r = env.ctl(["--json", "batch"], input="alloc -1\nalloc -12\nalloc 2M --hugepage-size 3M\n")
            assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
            lines = json_lines(r.stdout)
            assert [l["error"] for l in lines] == ["usage"] * 3, lines
            assert "'-1'" in lines[0]["parameters"]["message"] and "negative" in lines[0]["parameters"]["message"], lines
            assert "'-12'" in lines[1]["parameters"]["message"], lines
            assert "powers of two" in lines[2]["parameters"]["message"], lines

        with env.subtest("size suffixes in any case"):
            for size in ("2m", "2M", "2mib", "2MiB", "2MIB", "2mb", "2048k", "2048KiB"):
                r = env.ctl(["--json", "alloc", size, "--hugepage-size", "2mib"])
                assert r.returncode == 0, (size, r.returncode, r.stdout, r.stderr)
                assert json_lines(r.stdout)[0]["size"] == 2 * MiB, (size, r.stdout)

        with env.subtest("too large: the maximum is named"):
            for size in ("99999999T", str(INT64_MAX + 1), "99999999999999999999999"):
                assert_usage(env.ctl(["--json", "alloc", size]), "too large", str(INT64_MAX), json_line=True)
            assert_usage(env.ctl(["alloc", "2M", "--hugepage-size", "16777216T"]), "too large", str(INT64_MAX))
            # the maximum itself passes the local check and reaches the daemon, which refuses it
            r = env.ctl(["--json", "alloc", str(INT64_MAX)])
            assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
            assert "error" in json_lines(r.stdout)[0] and json_lines(r.stdout)[0]["error"] != "usage", r.stdout

        with env.subtest("--hugepage-size 3M / 4M: usage errors before any connection"):
            nowhere = os.path.join(env.tmp, "no-such-socket")
            for hp, needle in (("3M", "powers of two"), ("4097", "powers of two"), ("1K", "powers of two")):
                r = subprocess.run(env.ctl_argv(["--socket", nowhere, "alloc", "2M", "--hugepage-size", hp]),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env.env)
                assert_usage(r, needle)
                assert "connect" not in r.stderr, r.stderr
            offered = sorted(int(d[len("hugepages-"):-len("kB")]) * 1024
                             for d in os.listdir("/sys/kernel/mm/hugepages"))
            candidate = next(s for s in (4 * MiB, 8 * MiB, 16 * MiB, 32 * MiB) if s not in offered)
            r = subprocess.run(env.ctl_argv(["--socket", nowhere, "alloc", "2M", "--hugepage-size",
                                             "%dM" % (candidate // MiB)]),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env.env)
            assert_usage(r, "this kernel's hugepage sizes are", "2M")
            # a size the kernel offers passes and reaches the daemon
            r = env.ctl(["--json", "alloc", "2M", "--hugepage-size", "2M"])
            assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)

        with env.subtest("list --hold names --hold only"):
            r = env.ctl(["list", "--hold"])
            assert_usage(r, "--hold only applies to 'alloc' and 'acquire'")
            assert "--interactive" not in r.stderr, r.stderr
            r = env.ctl(["batch", "--hold"], input="")
            assert_usage(r, "--hold only applies", "batch holds")
            assert_usage(env.ctl(["alloc", "2M", "--hold=forever"]), "--hold=signal")

        for sig in (signal.SIGINT, signal.SIGTERM):
            with env.subtest("monitor ends cleanly on %s" % sig.name):
                p = env.ctl_popen(["--json", "monitor"])
                first = H.readline_timeout(p.stdout, 10)
                assert json.loads(first) == {"event": "subscribed"}, first
                p.send_signal(sig)
                rc = p.wait(10)
                err = p.stderr.read().decode(errors="replace")
                assert rc == 0, "monitor after %s: %s; stderr %r" % (sig.name, H.describe_status(rc), err)
                assert err == "", err

        with env.subtest("alloc --hold with stdin at /dev/null holds until SIGTERM"):
            p = hold_popen(env, ["--json", "alloc", "2M", "--hold"], subprocess.DEVNULL)
            a = json.loads(H.readline_timeout(p.stdout, 10))
            assert a["size"] == 2 * MiB, a
            time.sleep(1)
            assert p.poll() is None, "released at once: %s" % H.describe_status(p.returncode)
            assert H.hugepages_free() == base[1] - 1, (H.hugepages_free(), base)
            p.send_signal(signal.SIGTERM)
            assert p.wait(10) == 0, H.describe_status(p.returncode)
            err = p.stderr.read().decode(errors="replace")
            assert "/dev/null" in err and "--hold=signal" in err, err
            env.wait_baseline(base, what="after SIGTERM")

        with env.subtest("--hold=signal ignores stdin's EOF; plain --hold releases at EOF"):
            p = hold_popen(env, ["--json", "alloc", "2M", "--hold=signal"], subprocess.PIPE)
            json.loads(H.readline_timeout(p.stdout, 10))
            p.stdin.close()
            time.sleep(1)
            assert p.poll() is None, "released at stdin EOF: %s" % H.describe_status(p.returncode)
            p.send_signal(signal.SIGINT)
            assert p.wait(10) == 0, H.describe_status(p.returncode)
            env.wait_baseline(base, what="after SIGINT")

            p = hold_popen(env, ["--json", "alloc", "2M", "--hold"], subprocess.PIPE)
            json.loads(H.readline_timeout(p.stdout, 10))
            assert p.poll() is None
            p.stdin.close()
            assert p.wait(10) == 0, H.describe_status(p.returncode)
            env.wait_baseline(base, what="after stdin EOF")

        with env.subtest("--socket: directory, regular file, dead socket, missing"):
            d = os.path.join(env.tmp, "sockdir")
            os.mkdir(d, 0o755)
            f = os.path.join(env.tmp, "plainfile")
            with open(f, "w"):
                pass
            os.chmod(f, 0o644)
            dead = os.path.join(env.tmp, "dead.sock")
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(dead)                            # bound, never listening: ECONNREFUSED
            os.chmod(dead, 0o777)
            cases = [
                (d, "that is a directory", "socket file itself"),
                (f, "that is not a socket", None),
                (dead, "nothing listens on this socket", "is noiommud running?"),
                (os.path.join(env.tmp, "missing"), "no such socket", "is noiommud running"),
            ]
            try:
                # as root the kernel says ECONNREFUSED for the directory and the file, as the
                # test user EACCES (it may not write to them): the same hint either way
                for uid in (None, H.ALLOWED_UID):
                    for path, hint, more in cases:
                        r = env.ctl(["--socket", path, "--json", "list"], uid=uid)
                        assert r.returncode == 1, (uid, path, r.returncode, r.stderr)
                        assert hint in r.stderr and (more is None or more in r.stderr), (uid, path, r.stderr)
                        if path in (d, f):
                            assert "is noiommud running" not in r.stderr, (uid, path, r.stderr)
                        assert json_lines(r.stdout)[0]["error"] == "local", r.stdout
            finally:
                s.close()

        env.wait_baseline(base, what="at the end")


H.run(main)
