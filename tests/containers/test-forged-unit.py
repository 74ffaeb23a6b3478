#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Issue 14, finding 2: whoever owns a delegated cgroup (a container engine, a user manager) can
make a child cgroup named sshd.service and put a process in it. The daemon must record the
client's true full cgroup path and never present a name from a delegated subtree as its unit.

  * in a rootful podman container: the client moves into <container cgroup>/sshd.service (made
    by the engine's side, here the test as root, in the unified hierarchy the daemon reads);
  * on the host, a systemd-like delegated subtree: /noiommud-ctest-PID.slice/user@1.service
    (a delegated unit, as user@.service is) /app.slice/sshd.service.

Each client is a shell that waits for a line before exec'ing noiommuctl, so it connects only
after it has been moved."""

import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import container_harness as C  # noqa: E402
import harness as H  # noqa: E402

UNIFIED = "/sys/fs/cgroup/unified" if os.path.exists("/sys/fs/cgroup/unified/cgroup.procs") else "/sys/fs/cgroup"
# On a hybrid host systemd tracks processes in the named v1 hierarchy (and the daemon reads it
# there): whoever owns a delegated subtree owns it in every hierarchy, so the move is made in both.
NAMED = "/sys/fs/cgroup/systemd" if os.path.exists("/sys/fs/cgroup/systemd/cgroup.procs") else None
HIERARCHIES = [UNIFIED] + ([NAMED] if NAMED else [])


def cgroup_v2_path(pid):
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].rstrip("\n")
    raise AssertionError("no cgroup v2 line for pid %d" % pid)


def move(pid, cgroup):
    for h in HIERARCHIES:
        os.makedirs(h + cgroup, exist_ok=True)
        with open(h + cgroup + "/cgroup.procs", "w") as f:
            f.write("%d\n" % pid)
    assert cgroup_v2_path(pid) == cgroup, (cgroup_v2_path(pid), cgroup)


def rmdirs(top, cgroup):
    """Removes cgroup and its parents up to and including top (deepest first)."""
    path = cgroup
    while path.startswith(top) and len(path) >= len(top):
        for h in HIERARCHIES:
            try:
                os.rmdir(h + path)
            except OSError:
                pass
        path = os.path.dirname(path)


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return None


def check_record(env, out, cgroup):
    g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=out["memory"])[0]
    a = env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=g["NOIOMMUD_CLIENT_PID"])[0]
    H.log("recorded: NOIOMMUD_CLIENT_UNIT=%r NOIOMMUD_CLIENT_CGROUP=%r"
          % (g.get("NOIOMMUD_CLIENT_UNIT"), g.get("NOIOMMUD_CLIENT_CGROUP")))
    for e in (g, a):
        assert e.get("NOIOMMUD_CLIENT_UNIT") != "sshd.service", \
            "the forged unit name was recorded as the unit: %r" % e
        assert e.get("NOIOMMUD_CLIENT_CGROUP") == cgroup, \
            "NOIOMMUD_CLIENT_CGROUP %r, the client's cgroup is %r" % (e.get("NOIOMMUD_CLIENT_CGROUP"), cgroup)
    return g


def body():
    with C.ContainerEnvironment(hugepages=8) as env:
        env.write_cdi_spec()
        uid = env.ctest_pw.pw_uid
        made = []
        try:
            with env.subtest("a container client in <container cgroup>/sshd.service"):
                container = env.rootful.start(user="%d:%d" % (uid, env.ctest_pw.pw_gid))
                init = container.pid
                base = cgroup_v2_path(init)
                assert container.inspect()["Id"] in base, "container cgroup %r" % base
                p = container.exec_popen(["/bin/sh", "-c", "read x && exec noiommuctl --json alloc 2M --hold"])
                # the exec'd shell, once it is the shell: `runc init` places itself in the
                # container's cgroups before it execs, and would undo an earlier move
                sh = H.wait_until(lambda: [q for q in (int(x) for x in open(UNIFIED + base + "/cgroup.procs").read().split())
                                           if q != init and comm(q) == "sh"], 10,
                                  "the exec'd shell in the container's cgroup")[0]
                forged = base + "/sshd.service"
                made.append((base + "/sshd.service", forged))
                move(sh, forged)
                p.stdin.write(b"go\n")
                p.stdin.flush()
                out = json.loads(H.readline_timeout(p.stdout, 30))
                check_record(env, out, forged)
                p.stdin.close()
                p.wait(20)

            with env.subtest("a host client in a delegated subtree: .../user@1.service/app.slice/sshd.service"):
                top = "/noiommud-ctest-%d.slice" % os.getpid()
                forged = top + "/user@1.service/app.slice/sshd.service"
                made.append((top, forged))
                p = subprocess.Popen(["/bin/sh", "-c", "read x && exec \"$0\" \"$@\""]
                                     + env.ctl_argv(["--json", "alloc", "2M", "--hold"], uid=H.ALLOWED_UID),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env.env, cwd="/")
                env.procs["forged-host"] = p
                move(p.pid, forged)
                p.stdin.write(b"go\n")
                p.stdin.flush()
                out = json.loads(H.readline_timeout(p.stdout, 30))
                g = check_record(env, out, forged)
                assert g.get("NOIOMMUD_CLIENT_UNIT") not in ("app.slice", "sshd.service"), g
                p.stdin.close()
                p.wait(20)
        finally:
            for top, path in made:
                for h in HIERARCHIES:
                    procs = h + path + "/cgroup.procs"
                    for pid in open(procs).read().split() if os.path.exists(procs) else []:
                        try:
                            with open(h + "/cgroup.procs", "w") as f:
                                f.write(pid + "\n")
                        except OSError:
                            pass
                rmdirs(top, path)


if __name__ == "__main__":
    C.run(body)
