#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A rootful podman container as a client, through the CDI spec `noiommuctl cdi generate`
writes (issue 14): `podman run --device noiommud.io/vfio=socket` with no -v, a non-root container
user allowed by a polkit rule runs `noiommuctl --json alloc 2M --hold`; the host checks each page
of the client's mapping against /proc/PID/pagemap (PID: the host pid from the daemon's record);
the audit record names the container by the id `podman inspect` reports, its full cgroup path,
the client's pid in its own pid namespace, and its user namespace."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import container_harness as C  # noqa: E402
import harness as H  # noqa: E402

MiB = 1 << 20
ROOTLESS = False


def ns_inode(pid, ns):
    return os.stat("/proc/%d/ns/%s" % (pid, ns)).st_ino


def cgroup_v2_path(pid):
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].rstrip("\n")
    return None


def nspid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("NSpid:"):
                return line.split()[1:]
    return None


def body():
    with C.ContainerEnvironment(rootless=ROOTLESS, hugepages=8) as env:
        podman = env.rootless if ROOTLESS else env.rootful
        uid = env.ctest_pw.pw_uid

        with env.subtest("noiommuctl cdi generate: a CDI 0.5.0 spec podman accepts"):
            spec = env.write_cdi_spec()
            assert spec.get("cdiVersion") == "0.5.0", spec
            assert spec.get("kind") == C.CDI_KIND, spec
            devs = {d["name"]: d for d in spec["devices"]}
            assert "socket" in devs, "no device 'socket' in %r" % spec
            edits = devs["socket"]["containerEdits"]
            mounts = edits.get("mounts", []) + spec.get("containerEdits", {}).get("mounts", [])
            assert any(m["hostPath"] == env.socket_dir and "ro" in m.get("options", [])
                       for m in mounts), "the socket's directory is not bind-mounted read-only: %r" % mounts
            envs = edits.get("env", []) + spec.get("containerEdits", {}).get("env", [])
            assert any(e.startswith("NOIOMMUD_SOCKET=") for e in envs), envs
            log_spec = json.dumps(spec)
            H.log("CDI spec: " + log_spec[:600])

        container = podman.start(user="%d:%d" % (uid, env.ctest_pw.pw_gid))
        info = container.inspect()
        cid = info["Id"]
        H.log("container %s, host pid %d" % (cid, info["State"]["Pid"]))

        with env.subtest("the CDI device put NOIOMMUD_SOCKET into the container"):
            e = container.init_environ()
            assert e.get("NOIOMMUD_SOCKET"), "no NOIOMMUD_SOCKET in the container's environment: %r" % e
            plain = podman.run(["exec", container.name, "/bin/sh", "-c", "echo \"[$NOIOMMUD_SOCKET]\""],
                               check=False)
            H.log("container init: NOIOMMUD_SOCKET=%s; a plain podman exec sees %s (podman 4.3 "
                  "does not apply CDI env to exec)" % (e["NOIOMMUD_SOCKET"], plain.stdout.strip()))

        with env.subtest("non-root container user allowed by a rule: alloc 2M, pagemap matches"):
            r = container.exec(["/bin/sh", "-c", "id -u; echo $NOIOMMUD_SOCKET; ls -l /run/noiommud"])
            H.log("in the container: " + r.stdout.replace("\n", " | "))
            p = container.exec_popen(["noiommuctl", "--json", "alloc", "2M", "--hold"])
            try:
                line = H.readline_timeout(p.stdout, 30)
            except AssertionError:
                p.kill()
                raise AssertionError("noiommuctl in the container printed nothing; stderr: %r"
                                     % p.stderr.read().decode(errors="replace"))
            out = json.loads(line)
            assert out["size"] == 2 * MiB and out["addressKind"] == "physical", out
            H.check_segments(out, out["size"])
            g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=out["memory"])[0]
            pid = int(g["NOIOMMUD_CLIENT_PID"])
            assert g["NOIOMMUD_CLIENT_UID"] == str(uid), g
            n = C.check_pagemap(pid, out)
            H.log("host pid %d (NSpid %s): %d pages at the reported physical addresses, first %#x"
                  % (pid, nspid(pid), n, out["segments"][0]["dmaAddress"]))
            granted = g

        with env.subtest("the audit record names the container (id, cgroup, NSpid, user namespace)"):
            g = granted
            cg = cgroup_v2_path(pid)
            want = {"NOIOMMUD_CLIENT_CGROUP": cg,
                    "NOIOMMUD_CLIENT_NSPID": nspid(pid)[-1],
                    "NOIOMMUD_CLIENT_USERNS": str(ns_inode(pid, "user"))}
            if ROOTLESS:
                want["NOIOMMUD_CLIENT_USERNS_OWNER"] = str(uid)
            if not ROOTLESS or cid in (cg or ""):
                want["NOIOMMUD_CLIENT_CONTAINER_ID"] = cid
            bad = {k: (g.get(k), v) for k, v in want.items() if g.get(k) != v}
            assert not bad, "MEMORY_GRANTED fields (got, want): %r" % bad
            a = env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=pid)[0]
            bad = {k: (a.get(k), v) for k, v in want.items() if a.get(k) != v}
            assert not bad, "AUTHZ_GRANTED fields (got, want): %r" % bad
            H.log("MEMORY_GRANTED: " + " ".join("%s=%s" % (k, g.get(k)) for k in sorted(g)
                                                 if k.startswith("NOIOMMUD_CLIENT_")))

        p.stdin.close()
        rc = p.wait(20)
        assert rc == 0, "noiommuctl exited %d: %s" % (rc, p.stderr.read().decode(errors="replace"))
        env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=out["memory"])


if __name__ == "__main__":
    C.run(body)
