#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Containers as clients, without a container engine (issue 14 findings 1-4, per-container
limits), with the real polkitd and the vfio fixture backend. tests/containers/ runs the same
scenarios with real podman; this file makes the kernel state those scenarios produce directly,
so that each rule is tested on its own:

  * finding 1, root without capabilities: a uid-0 client with no capabilities (setpriv
    --inh-caps=-all --bounding-set=-all, the case of a rootful container without a user
    namespace or a service with an empty capability set), a uid-0 client lacking only
    CAP_SYS_RAWIO, and uid 0 with all capabilities but in a child user namespace (unshare -U
    --map-root-user). polkitd would say yes to all of them without running a rule; the daemon
    refuses them itself with PermissionDenied {reason: root-without-capabilities, capability,
    message}, never asks polkit (dbus-monitor), and records why (AUTHZ_DENIED with
    NOIOMMUD_REQUIRED_CAPABILITY). With "rootWithoutCapabilities": "polkit" they are asked
    about, and polkit lets uid 0 through.
  * finding 2, forged unit names: clients moved into cgroups this test creates under a
    delegated subtree (a directory owned by uid 1, as systemd and manual delegation leave it):
    .../user@1.service/app.slice/sshd.service is recorded with its full path and unit
    user@1.service, and sshd.service below a delegated slice gives no unit at all.
  * finding 3, container fields: a client in /libpod_parent/libpod-<id> (podman's cgroupfs
    place, what podman makes on this machine) is recorded with NOIOMMUD_CLIENT_CONTAINER_ID,
    _CGROUP, _NSPID (a client in its own pid namespace) and _USERNS; polkit gets
    container_id/cgroup/unit details, and a rule that allows uid 2 only in that container
    works. A cgroup named like a container below a delegated directory gets no container id.
    A uid above INT32_MAX (setpriv --reuid=3000000000) is refused (uid-out-of-range) without
    asking polkit.
  * per-container limits: maxMemoryPerContainer and maxLeasesPerContainer across connections
    of one container; another container of the same uid is not affected.
  * finding 4: the daemon started under unshare -p -f (with and without --mount-proc) exits at
    once with a message naming the PID namespace.

Cgroups are made in the hierarchy the daemon reads (cgroup2 at /sys/fs/cgroup, else the
name=systemd hierarchy) with unique names and removed at the end.
"""

import json
import os
import re
import secrets
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402
from device_harness import (ACQUIRE, CDEV_IOMMU_DEV, CDEV_NOIOMMU_DEV, DEFAULT_CONFIG, GROUP_DEV,  # noqa: E402
                            RELEASE, DeviceEnvironment, acquire)

MiB = 1 << 20
HIGH_UID = 3000000000
CAP_SYS_RAWIO = 17
CAP_SYS_ADMIN = 21


# --- cgroups -----------------------------------------------------------------------------------

def cgroup_mount():
    """The mount of the hierarchy whose path the daemon records (identity.c): cgroup2 alone, or
    the name=systemd hierarchy of a legacy/hybrid layout."""
    if _fstype("/sys/fs/cgroup") == "cgroup2":
        return "/sys/fs/cgroup", False
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            fstype, _, opts = post.split()[:3]
            if fstype == "cgroup" and "name=systemd" in opts and pre.split()[3] == "/":
                return pre.split()[4], True
    raise H.Skip("no cgroup2-only layout and no name=systemd hierarchy to make test cgroups in")


def _fstype(path):
    best, fstype = "", None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, post = line.split(" - ", 1)
            mnt = pre.split()[4]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                best, fstype = mnt, post.split()[0]
    return fstype


class Cgroups:
    """Test cgroups, removed (deepest first) at the end."""

    def __init__(self):
        self.mount, self.named = cgroup_mount()
        self.made = []

    def make(self, path, owner=None):
        full = self.mount + path
        parts = path.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            d = self.mount + "/" + "/".join(parts[:i])
            if not os.path.isdir(d):
                os.mkdir(d)
                self.made.append(d)
        if owner is not None:
            os.chown(full, owner, owner)
        return path

    def procs(self, path):
        return self.mount + path + "/cgroup.procs"

    def cleanup(self):
        for d in reversed(self.made):
            try:
                os.rmdir(d)
            except OSError as e:
                H.log("could not remove test cgroup %s: %s" % (d, e))
        self.made = []


CG = None


# --- clients -----------------------------------------------------------------------------------

class WrappedConnection(H.Connection):
    """A Connection whose connecting helper runs under an arbitrary command prefix (setpriv with
    capability options, unshare), optionally moved into a cgroup before it connects."""

    def __init__(self, env, prefix, cgroup=None, uid=0):
        self._prefix = list(prefix)
        self._cgroup = cgroup
        super().__init__(env, uid=uid)

    def _connect_as(self, uid, gid):
        prefix = self._prefix
        if self._cgroup:
            # moved while still root, before setpriv/unshare run; exec keeps the cgroup
            prefix = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', CG.procs(self._cgroup)] + prefix
        self._connect_through(prefix, "through %r" % (self._prefix,))


def as_user(uid):
    return ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups"]


NO_CAPS = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]
NO_RAWIO = ["setpriv", "--inh-caps=-all", "--bounding-set=-sys_rawio"]
CHILD_USERNS = ["unshare", "--user", "--map-root-user"]


def check_calls(env):
    """(action, {detail: value}) of every CheckAuthorization dbus-monitor printed."""
    text = env.read_log("dbus-monitor", tail=None)
    out = []
    for m in re.finditer(r"^method call .*member=CheckAuthorization\n((?:[ \t].*\n?)*)", text, re.M):
        body = m.group(1)
        top = re.findall(r'^   string "((?:[^"\\]|\\.)*)"', body, re.M)
        after = body.split('   string "%s"' % top[0], 1)[1] if top else ""
        details = dict(re.findall(r'dict entry\(\s*\n\s*string "([^"]*)"\s*\n\s*string "((?:[^"\\]|\\.)*)"', after))
        uid = re.search(r'string "uid"\s*\n\s*variant\s+int32\s+(-?\d+)', body)
        out.append({"action": top[0] if top else None, "details": details,
                    "uid": int(uid.group(1)) if uid else None})
    return out


def settled_checks(env, stable=0.3):
    """The CheckAuthorization count once dbus-monitor has printed everything: it prints after
    the daemon already has polkit's answer, so a count read right after a reply can be short."""
    last, since = env.monitor_count("CheckAuthorization"), H.time.monotonic()
    while H.time.monotonic() - since < stable:
        H.time.sleep(0.05)
        n = env.monitor_count("CheckAuthorization")
        if n != last:
            last, since = n, H.time.monotonic()
    return last


def assert_root_refused(env, conn, method, params, capability):
    n = settled_checks(env)
    err, p = conn.call_error(method, params)
    assert err == H.ERR + "PermissionDenied", (err, p)
    assert p.get("reason") == "root-without-capabilities", p
    assert p.get("capability") == capability, p
    assert "rootWithoutCapabilities" in p.get("message", ""), p
    rec = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_PID=conn.pid,
                           NOIOMMUD_REASON="root-without-capabilities",
                           NOIOMMUD_REQUIRED_CAPABILITY=capability)
    assert rec[-1]["NOIOMMUD_CLIENT_UID"] == "0", rec[-1]
    assert rec[-1]["NOIOMMUD_POLKIT_RESULT"] == "not-asked", rec[-1]
    assert settled_checks(env) == n, "polkit was asked about a capability-less root"
    return rec[-1]


# --- the tests ---------------------------------------------------------------------------------

def capabilities(env, base):
    with env.subtest("uid 0 with all capabilities: polkit's answer, as before"):
        with env.connect() as c:
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            rec = env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)
            assert int(rec[-1]["NOIOMMUD_CLIENT_CAP_EFFECTIVE"], 16) & (1 << CAP_SYS_ADMIN), rec[-1]

    with env.subtest("uid 0 without capabilities: refused without asking polkit"):
        with WrappedConnection(env, NO_CAPS) as c:
            rec = assert_root_refused(env, c, H.ALLOCATE, {"size": 2 * MiB}, "CAP_SYS_ADMIN")
            assert rec["NOIOMMUD_CLIENT_CAP_EFFECTIVE"] == "0000000000000000", rec
            assert_root_refused(env, c, ACQUIRE, {"device": GROUP_DEV}, "CAP_SYS_RAWIO")
            assert_root_refused(env, c, ACQUIRE, {"device": CDEV_IOMMU_DEV}, "CAP_SYS_ADMIN")
            assert_root_refused(env, c, "io.noiommud.Broker.ListLeases", {}, "CAP_SYS_ADMIN")
            c.call_ok(H.LIST)                   # harmless: no capability needed
        env.wait_baseline(base, what="after the capability-less root")

    with env.subtest("uid 0 without CAP_SYS_RAWIO: memory yes, noiommu device no"):
        with WrappedConnection(env, NO_RAWIO) as c:
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            assert_root_refused(env, c, ACQUIRE, {"device": CDEV_NOIOMMU_DEV}, "CAP_SYS_RAWIO")
            lease, devfd = acquire(c, CDEV_IOMMU_DEV)     # behind an IOMMU: CAP_SYS_ADMIN is enough
            os.close(devfd)
            c.call_ok(RELEASE, {"lease": lease["lease"]})
        env.wait_baseline(base, what="after root without CAP_SYS_RAWIO")

    with env.subtest("uid 0 with all capabilities in a child user namespace: refused"):
        with WrappedConnection(env, CHILD_USERNS) as c:
            rec = assert_root_refused(env, c, ACQUIRE, {"device": GROUP_DEV}, "CAP_SYS_RAWIO")
            assert rec["NOIOMMUD_CLIENT_USERNS_INITIAL"] == "0", rec
            own = os.stat("/proc/self/ns/user").st_ino
            assert rec["NOIOMMUD_CLIENT_USERNS"] not in ("", "0", str(own)), rec
            assert rec["NOIOMMUD_CLIENT_USERNS_OWNER"] == "0", rec

    with env.subtest('"rootWithoutCapabilities": "polkit" asks polkit, which trusts uid 0'):
        env.stop_daemon()
        env.write_config(dict(DEFAULT_CONFIG, rootWithoutCapabilities="polkit"))
        env.start_mock_daemon()
        with WrappedConnection(env, NO_CAPS) as c:
            n = settled_checks(env)
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            H.wait_until(lambda: env.monitor_count("CheckAuthorization") == n + 1, 5, "polkit to be asked")
            rec = env.wait_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)
            assert rec[-1]["NOIOMMUD_CLIENT_CAP_EFFECTIVE"] == "0000000000000000", rec[-1]
            lease, devfd = acquire(c, GROUP_DEV)
            os.close(devfd)
            c.call_ok(RELEASE, {"lease": lease["lease"]})
        env.stop_daemon()
        env.write_config({"rootWithoutCapabilities": "maybe"})
        p = subprocess.run([env.daemon_bin, "--config", env.config_path, "--listen",
                            os.path.join(env.tmp, "bad.sock")], capture_output=True, text=True, timeout=10)
        assert p.returncode != 0 and "rootWithoutCapabilities" in p.stderr, (p.returncode, p.stderr)
        env.write_config(DEFAULT_CONFIG)
        env.start_mock_daemon()


def forged_units(env):
    tag = "noiommud-itest-%d" % os.getpid()
    with env.subtest("sshd.service below a delegated unit: recorded as the delegated unit, full path"):
        deleg = CG.make("/%s.slice/user@1.service" % tag, owner=H.ALLOWED_UID)
        forged = CG.make(deleg + "/app.slice/sshd.service")
        with WrappedConnection(env, as_user(H.ALLOWED_UID), cgroup=forged, uid=H.ALLOWED_UID) as c:
            n = settled_checks(env)
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            H.wait_until(lambda: len(check_calls(env)) > n, 5, "the CheckAuthorization call")
            rec = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)[-1]
            assert rec["NOIOMMUD_CLIENT_CGROUP"] == forged, rec
            assert rec["NOIOMMUD_CLIENT_UNIT"] == "user@1.service", rec
            assert rec["NOIOMMUD_CLIENT_CONTAINER_ID"] == "", rec
            call = check_calls(env)[n]
            assert call["details"].get("unit") == "user@1.service", call
            assert call["details"].get("cgroup") == forged, call
            assert "container_id" not in call["details"], call

    with env.subtest("sshd.service below a delegated slice: no unit at all"):
        evil = CG.make("/%s-evil.slice" % tag, owner=H.ALLOWED_UID)
        forged = CG.make(evil + "/sshd.service")
        fake_ctr = CG.make(evil + "/libpod-" + "ab" * 32 + ".scope")
        # a name meant for an authentication dialog: it reaches polkit escaped
        spoof = CG.make(evil + "/ok (device 0000:01:00.0, harmless)")
        for cg in (forged, fake_ctr, spoof):
            with WrappedConnection(env, as_user(H.ALLOWED_UID), cgroup=cg, uid=H.ALLOWED_UID) as c:
                n = settled_checks(env)
                r, fd = H.allocate(c, 2 * MiB)
                os.close(fd)
                rec = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_PID=c.pid)[-1]
                assert rec["NOIOMMUD_CLIENT_CGROUP"] == cg, rec
                assert rec["NOIOMMUD_CLIENT_UNIT"] == "", rec
                assert rec["NOIOMMUD_CLIENT_CONTAINER_ID"] == "", rec
                H.wait_until(lambda: len(check_calls(env)) > n, 5, "the CheckAuthorization call")
                got = check_calls(env)[n]["details"].get("cgroup")
                want = re.sub(r"[^A-Za-z0-9._:@/+,=-]", lambda m: "\\x%02x" % ord(m.group(0)), cg)
                assert got == want, (got, want)


    with env.subtest("a cgroup name that is not UTF-8: ListLeases still answers, escaped"):
        bad = CG.make("/%s-evil.slice/bad\udcffname" % tag)     # the byte 0xff (surrogateescape)
        with WrappedConnection(env, as_user(H.ALLOWED_UID), cgroup=bad, uid=H.ALLOWED_UID) as c:
            lease, devfd = acquire(c, GROUP_DEV)
            os.close(devfd)
            with env.connect() as admin:
                leases, _ = admin.call_ok("io.noiommud.Broker.ListLeases")
            mine = [x for x in leases["leases"] if x["lease"] == lease["lease"]]
            assert mine and mine[0]["holder"]["cgroup"].endswith("/bad\\xffname"), leases
            assert mine[0]["holder"]["unit"] == "" and mine[0]["holder"]["containerId"] is None, mine
            c.call_ok(RELEASE, {"lease": lease["lease"]})


CONTAINER_RULE = """\
polkit.addRule(function(action, subject) {
        if (action.id == "io.noiommud.allocate-memory" && subject.user == "bin" &&
            action.lookup("container_id") == "%s")
                return polkit.Result.YES;
        return polkit.Result.NOT_HANDLED;
});
"""


def containers(env, base):
    id_a, id_b = secrets.token_hex(32), secrets.token_hex(32)
    cg_a = CG.make("/libpod_parent/libpod-" + id_a)
    cg_b = CG.make("/libpod_parent/libpod-" + id_b)

    with env.subtest("a container's client: container id, cgroup, NSpid, user namespace in the records"):
        with WrappedConnection(env, ["unshare", "-p", "-f", "--kill-child"] + as_user(H.ALLOWED_UID),
                               cgroup=cg_a, uid=H.ALLOWED_UID) as c:
            n = settled_checks(env)
            r, fd = H.allocate(c, 2 * MiB)
            os.close(fd)
            H.wait_until(lambda: len(check_calls(env)) > n, 5, "the CheckAuthorization call")
            rec = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_CLIENT_CONTAINER_ID=id_a)[-1]
            assert rec["NOIOMMUD_CLIENT_CONTAINER_ENGINE"] == "podman", rec
            assert rec["NOIOMMUD_CLIENT_CGROUP"] == cg_a, rec
            assert rec["NOIOMMUD_CLIENT_NSPID"] == "1", rec       # pid 1 of its own pid namespace
            assert rec["NOIOMMUD_CLIENT_PID"] != "1", rec
            assert rec["NOIOMMUD_CLIENT_USERNS"] == str(os.stat("/proc/self/ns/user").st_ino), rec
            assert rec["NOIOMMUD_CLIENT_USERNS_OWNER"] == "0", rec
            auth = env.find_journal("AUTHZ_GRANTED", NOIOMMUD_CLIENT_CONTAINER_ID=id_a)
            assert auth, "the authorization record does not name the container"
            call = check_calls(env)[n]
            assert call["details"].get("container_id") == id_a, call
            assert call["details"].get("container_engine") == "podman", call
            assert call["details"].get("cgroup") == cg_a, call

    with env.subtest("a polkit rule can allow a uid in one container only"):
        path = os.path.join(env.tmp, "rules", "40-container.rules")
        with open(path, "w") as f:
            f.write(CONTAINER_RULE % id_a)
        os.chmod(path, 0o644)
        for attempt in range(20):               # polkitd reloads rules when the directory changes
            with WrappedConnection(env, as_user(H.DENIED_UID), cgroup=cg_a, uid=H.DENIED_UID) as c:
                reply, fds = c.call(H.ALLOCATE, {"size": 2 * MiB})
                for fd in fds:
                    os.close(fd)
            if "error" not in reply:
                break
            H.time.sleep(0.3)
        assert "error" not in reply, reply
        with WrappedConnection(env, as_user(H.DENIED_UID), cgroup=cg_b, uid=H.DENIED_UID) as c:
            err, p = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "PermissionDenied" and p == {"reason": "denied"}, (err, p)
        os.unlink(path)

    with env.subtest("maxMemoryPerContainer and maxLeasesPerContainer"):
        env.stop_daemon()
        env.write_config(dict(DEFAULT_CONFIG, maxMemoryPerContainer=4 * MiB, maxLeasesPerContainer=1))
        env.start_mock_daemon()
        a1 = WrappedConnection(env, as_user(H.ALLOWED_UID), cgroup=cg_a, uid=H.ALLOWED_UID)
        a2 = WrappedConnection(env, as_user(H.ALLOWED_UID), cgroup=cg_a, uid=H.ALLOWED_UID)
        b1 = WrappedConnection(env, as_user(H.ALLOWED_UID), cgroup=cg_b, uid=H.ALLOWED_UID)
        r1, f1 = H.allocate(a1, 2 * MiB)
        r2, f2 = H.allocate(a2, 2 * MiB)
        err, p = a2.call_error(H.ALLOCATE, {"size": 2 * MiB})
        assert err == H.ERR + "LimitExceeded" and p == {"limit": "memory-per-container"}, (err, p)
        env.wait_journal("LIMIT_EXCEEDED", NOIOMMUD_LIMIT="memory-per-container",
                         NOIOMMUD_CLIENT_CONTAINER_ID=id_a)
        r3, f3 = H.allocate(b1, 4 * MiB)           # the other container, same uid: unaffected
        with env.connect(uid=H.ALLOWED_UID) as host:  # not in a container: per-uid limits only
            r4, f4 = H.allocate(host, 2 * MiB)
            os.close(f4)
        lease, devfd = acquire(a1, GROUP_DEV)
        err, p = a2.call_error(ACQUIRE, {"device": CDEV_NOIOMMU_DEV})
        assert err == H.ERR + "LimitExceeded" and p == {"limit": "leases-per-container"}, (err, p)
        lease_b, devfd_b = acquire(b1, CDEV_NOIOMMU_DEV)
        os.close(devfd)                             # a kept device fd would make it busy
        a1.call_ok(RELEASE, {"lease": lease["lease"]})
        lease2, devfd2 = acquire(a2, GROUP_DEV)    # room again
        a1.call_ok(H.FREE, {"memory": r1["memory"]})
        r5, f5 = H.allocate(a2, 2 * MiB)           # room again
        for fd in (f1, f2, f3, f5, devfd_b, devfd2):
            os.close(fd)
        for c in (a1, a2, b1):
            c.close()
        env.stop_daemon()
        env.write_config(DEFAULT_CONFIG)
        env.start_mock_daemon()
        base = env.settled_baseline(base[1])
    return base


def high_uid(env):
    with env.subtest("uid %d (above INT32_MAX): refused, polkit never sees a negative uid" % HIGH_UID):
        with env.connect(uid=HIGH_UID) as c:
            n = settled_checks(env)
            err, p = c.call_error(H.ALLOCATE, {"size": 2 * MiB})
            assert err == H.ERR + "PermissionDenied" and p.get("reason") == "uid-out-of-range", (err, p)
            assert str(HIGH_UID) in p.get("message", ""), p
            assert settled_checks(env) == n, "polkit was asked about uid %d" % HIGH_UID
            rec = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_UID=HIGH_UID)[-1]
            assert rec["NOIOMMUD_REASON"] == "uid-out-of-range", rec
        assert all(call["uid"] is None or call["uid"] >= 0 for call in check_calls(env)), check_calls(env)


def pid_namespace(env):
    with env.subtest("a daemon in a child pid namespace refuses to start and says why"):
        for extra in ([], ["--mount-proc"]):
            sock = os.path.join(env.tmp, "pidns.sock")
            p = subprocess.run(["unshare", "-p", "-f"] + extra +
                               [env.daemon_bin, "--listen", sock, "--config", env.config_path],
                               capture_output=True, text=True, timeout=20, env=env.env)
            assert p.returncode == 1, (extra, p.returncode, p.stderr)
            assert "child PID namespace" in p.stderr and "host's PID namespace" in p.stderr, p.stderr
            assert not os.path.exists(sock), "it bound its socket anyway"


def body():
    global CG
    CG = Cgroups()
    try:
        with DeviceEnvironment(hugepages=24) as env:
            env.start_bus_monitor()
            base = env.settled_baseline()
            capabilities(env, base)
            base = env.settled_baseline(base[1])
            forged_units(env)
            base = containers(env, base)
            high_uid(env)
            pid_namespace(env)
            env.wait_baseline(base, what="end")
    finally:
        CG.cleanup()


H.run(body)
