#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A daemon restart while a container holds memory (issue 14): the CDI spec bind-mounts the
socket's directory, not the socket file, so the socket the restarted daemon makes (a new inode)
is what the running container sees, and a new request from the same container succeeds. The
holder keeps its mapping meanwhile (the restarted daemon does not pin it: without the fd store
the old daemon's memory is the holder's alone)."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import container_harness as C  # noqa: E402
import harness as H  # noqa: E402


def body():
    with C.ContainerEnvironment(hugepages=8) as env:
        env.write_cdi_spec()
        uid = env.ctest_pw.pw_uid
        container = env.rootful.start(user="%d:%d" % (uid, env.ctest_pw.pw_gid))
        cdi_env = dict(e.split("=", 1) for e in container.cdi_env())
        H.log("CDI environment: %s" % cdi_env)
        sock = cdi_env["NOIOMMUD_SOCKET"]

        # the contrast: a container given the socket FILE (podman -v), as people tend to do
        filed = env.rootful.start(user="%d:%d" % (uid, env.ctest_pw.pw_gid), devices=(),
                                  extra=["-v", "%s:/run/noiommud.sock" % env.socket_path])

        holder = container.exec_popen(["noiommuctl", "--json", "alloc", "2M", "--hold"])
        out = json.loads(H.readline_timeout(holder.stdout, 30))
        g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=out["memory"])[0]
        hpid = int(g["NOIOMMUD_CLIENT_PID"])
        C.check_pagemap(hpid, out)
        ino_before = os.stat(env.socket_path).st_ino
        in_before = container.exec(["stat", "-c", "%i", sock], check=True).stdout.strip()
        old_daemon = env.daemon_pid
        r = filed.exec(["noiommuctl", "--socket", "/run/noiommud.sock", "--json", "alloc", "2M"])
        assert r.returncode == 0, "the socket file mount does not work even before the restart: %s %s" % (
            r.stdout, r.stderr)

        env.restart_daemon()
        assert env.daemon_pid != old_daemon

        with env.subtest("a new request from the same container after a daemon restart succeeds"):
            ino_after = os.stat(env.socket_path).st_ino
            in_after = container.exec(["stat", "-c", "%i", sock], check=True).stdout.strip()
            H.log("socket inode on the host %d -> %d, in the container %s -> %s"
                  % (ino_before, ino_after, in_before, in_after))
            assert in_after == str(ino_after), "the container does not see the new socket"

            assert holder.poll() is None, "the holder died with the old daemon"
            assert C.memfd_vmas(hpid, out["memory"]), "the holder lost its mapping"
            r = container.exec(["noiommuctl", "--json", "alloc", "2M"])
            assert r.returncode == 0, "alloc after the restart failed (exit %d): %s %s" % (
                r.returncode, r.stdout, r.stderr)
            new = json.loads(r.stdout.splitlines()[0])
            g2 = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=new["memory"])[0]
            assert g2["NOIOMMUD_CLIENT_UID"] == str(uid), g2
            H.log("after the restart: %s granted to host pid %s"
                  % (new["memory"], g2["NOIOMMUD_CLIENT_PID"]))
            holder.stdin.close()
            rc = holder.wait(20)
            H.log("the holder exited %d after its daemon went away: %s"
                  % (rc, holder.stderr.read().decode(errors="replace").strip()[-300:]))

        with env.subtest("contrast: a bind-mounted socket file is stale after the restart"):
            r = filed.exec(["noiommuctl", "--socket", "/run/noiommud.sock", "--json", "alloc", "2M"])
            H.log("socket file mount after the restart: exit %d: %s%s"
                  % (r.returncode, r.stdout.strip(), r.stderr.strip()))
            assert r.returncode != 0, "a stale socket file mount still reached the daemon"


if __name__ == "__main__":
    C.run(body)
