#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Real containers as noiommud clients: podman 4.3 (Debian 12), rootful and rootless, on top of
tests/integration/harness.py (private dbus-daemon, real polkitd, the built daemon, its journal).

What a ContainerEnvironment adds to harness.Environment:

  * the daemon listens on <tmp>/run-noiommud/io.noiommud.Broker: a directory of its own, so that
    the CDI spec can bind-mount the socket's directory (a bind-mounted socket file goes stale
    when the daemon restarts and makes a new one);
  * a polkit rule that allows CTEST_USER (the non-root user the containers run as);
  * a rootfs built from the host: busybox-static, the built noiommuctl and libnoiommu, the
    shared libraries they need (ldd), and the test programs given to it; mount points that
    runc would otherwise create are made in advance, because a rootless container cannot
    create them in a root-owned rootfs;
  * the CDI spec from `noiommuctl cdi generate`, written to /var/run/cdi/noiommud-ctest-PID.json:
    podman 4.3 has no cdi_spec_dirs setting (added in 4.5), it reads /etc/cdi and /var/run/cdi
    only. The file is removed at teardown, and stale ones of killed runs at start-up. Runs are
    serialized by the integration lock (harness.Environment), so two specs of the same kind
    never coexist (the CDI registry refuses conflicting device names in one directory);
  * Podman objects: rootful (as root) and rootless (as CTEST_USER, XDG_RUNTIME_DIR and HOME in
    the test's directory). Each has private storage (--root/--runroot, vfs driver: no
    fuse-overlayfs, no daemon), a private containers.conf (CONTAINERS_CONF) with a private
    tmp_dir, network config dir and events log, so nothing of the host's podman is touched.

Set-up decisions for this machine, each forced by something observed here:
  * --runtime runc: crun fails on the hybrid cgroup v1/v2 layout of the test machines;
  * --ulimit nofile=1024:1024 --ulimit nproc=4096:4096: rootful podman raises RLIMIT_NOFILE and
    RLIMIT_NPROC to its defaults (above our hard limits), which needs CAP_SYS_RESOURCE; the test
    sandbox's root lacks it, and runc then fails with "error setting rlimit type 7 (then 6):
    operation not permitted";
  * cgroup_manager "cgroupfs": there is no systemd as PID 1 here;
  * --network none, --rootfs: no network, no registry, no images.

CTEST_USER is created here if missing (idempotent: useradd --system, plus a fixed range in
/etc/subuid and /etc/subgid for rootless podman); it stays on the machine between runs.
"""

import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402
from harness import Environment, Skip, log  # noqa: E402

CTEST_USER = "noiommud-ctest"
SUBID_START = 1879048192          # 0x70000000, far from useradd's automatic ranges
SUBID_COUNT = 65536
CDI_DIR = "/var/run/cdi"
CDI_KIND = "noiommud.io/vfio"
CONTAINER_SOCKET_DIR = "/run/noiommud"
SHORT_PREFIX = "/run/noiommud-ct"

# See the module docstring for why each of these is needed on the test machines.
RUN_FLAGS = ["--runtime", "runc", "--network", "none",
             "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]

CONTAINER_RULES = """\
// The container user of the noiommud container tests (tests/containers/container_harness.py)
polkit.addRule(function(action, subject) {
        if (action.id.indexOf("io.noiommud.") == 0 && action.id != "io.noiommud.manage" &&
            subject.user == "%s")
                return polkit.Result.YES;
        return polkit.Result.NOT_HANDLED;
});
""" % CTEST_USER

CONTAINERS_CONF = """\
# Private podman configuration of one noiommud container test
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
runtime = "runc"
tmp_dir = "{d}/tmp"
[network]
network_config_dir = "{d}/net"
"""


def ensure_test_user():
    """Creates CTEST_USER and its subordinate id ranges if missing; returns its pwd entry."""
    try:
        pw = pwd.getpwnam(CTEST_USER)
    except KeyError:
        log("creating the container test user %s" % CTEST_USER)
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", CTEST_USER],
                       check=True)
        pw = pwd.getpwnam(CTEST_USER)
    for path, opt in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        try:
            with open(path) as f:
                have = any(l.split(":")[0] in (CTEST_USER, str(pw.pw_uid)) for l in f)
        except FileNotFoundError:
            have = False
        if not have:
            subprocess.run(["usermod", opt, "%d-%d" % (SUBID_START, SUBID_START + SUBID_COUNT - 1),
                            CTEST_USER], check=True)
    return pw


def check_container_prerequisites(rootless=False):
    for tool in ("podman", "runc", "conmon"):
        if not shutil.which(tool) and not os.path.exists("/usr/bin/" + tool) \
                and not os.path.exists("/usr/libexec/podman/" + tool):
            raise Skip("%s not installed (scripts/install-deps.sh installs podman, runc, conmon)" % tool)
    if not os.path.exists("/bin/busybox"):
        raise Skip("busybox-static not installed (scripts/install-deps.sh)")
    if rootless:
        for tool in ("newuidmap", "newgidmap"):
            if not shutil.which(tool):
                raise Skip("%s not installed (uidmap; scripts/install-deps.sh)" % tool)
        n = harness.read_int("/proc/sys/user/max_user_namespaces")
        if n == 0:
            raise Skip("user namespaces are disabled (user.max_user_namespaces = 0)")


# --- the rootfs --------------------------------------------------------------------------------

def _ldd(path):
    out = subprocess.run(["ldd", path], stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    libs = []
    for line in out.splitlines():
        parts = line.split()
        if "=>" in parts:
            i = parts.index("=>")
            if i + 1 < len(parts) and parts[i + 1].startswith("/"):
                libs.append(parts[i + 1])
        elif parts and parts[0].startswith("/"):
            libs.append(parts[0])            # the dynamic loader
    return libs


def build_rootfs(dest, ctl_bin, programs=(), users=()):
    """A rootfs at dest: busybox (every applet linked in /bin), noiommuctl in /usr/bin with
    libnoiommu and every library ldd names at its host path, `programs` in /usr/bin, and
    /etc/passwd with root and `users` ((name, uid, gid) tuples)."""
    for d in ("bin", "usr/bin", "etc", "tmp", "proc", "sys", "dev", "run", "var/tmp", "root",
              CONTAINER_SOCKET_DIR.lstrip("/")):
        os.makedirs(os.path.join(dest, d), exist_ok=True)
    os.chmod(os.path.join(dest, "tmp"), 0o1777)
    shutil.copy2("/bin/busybox", os.path.join(dest, "bin", "busybox"))
    applets = subprocess.run(["/bin/busybox", "--list"], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", os.path.join(dest, "bin", a))
    binaries = [ctl_bin] + list(programs)
    libs = set()
    for b in binaries:
        shutil.copy2(b, os.path.join(dest, "usr", "bin", os.path.basename(b)))
        libs.update(_ldd(b))
    for lib in sorted(libs):
        real = os.path.realpath(lib)
        if "/build" in lib or not lib.startswith(("/lib", "/usr/lib")):
            # a library of this build (libnoiommu): into the multiarch directory
            target = os.path.join(dest, "usr/lib/x86_64-linux-gnu", os.path.basename(lib))
        else:
            target = os.path.join(dest, lib.lstrip("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(real, target)
    passwd = ["root:x:0:0:root:/root:/bin/sh"] + ["%s:x:%d:%d::/tmp:/bin/sh" % u for u in users]
    group = ["root:x:0:"] + ["%s:x:%d:" % (u[0], u[2]) for u in users]
    with open(os.path.join(dest, "etc", "passwd"), "w") as f:
        f.write("\n".join(passwd) + "\n")
    with open(os.path.join(dest, "etc", "group"), "w") as f:
        f.write("\n".join(group) + "\n")
    # mount points runc would make; in a rootless container it cannot (the rootfs is root's)
    for p in ("etc/hostname", "etc/hosts", "etc/resolv.conf", "run/.containerenv"):
        open(os.path.join(dest, p), "a").close()
    os.symlink("/proc/mounts", os.path.join(dest, "etc", "mtab"))
    os.chmod(dest, 0o755)
    return dest


# --- podman ------------------------------------------------------------------------------------

class Podman:
    """podman with private storage and configuration, as root or (rootless) as CTEST_USER."""

    def __init__(self, env, rootless):
        self.env = env
        self.rootless = rootless
        self.dir = os.path.join(env.tmp, "podman-rootless" if rootless else "podman-rootful")
        # podman refuses a runroot longer than 50 characters (conmon's socket paths): the
        # runroot and the runtime directory live in a short directory of their own
        self.short = "%s-%d-%s" % (SHORT_PREFIX, os.getpid(), "rl" if rootless else "rf")
        self.pw = pwd.getpwnam(CTEST_USER) if rootless else None
        self.containers = []
        self.n = 0
        for d in (self.dir, self.short):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o755 if d == self.dir else 0o700)
        for d in ("tmp", "net", "home", "root"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        for d in ("xdg", "runroot"):
            os.makedirs(os.path.join(self.short, d), exist_ok=True)
        self.conf = os.path.join(self.dir, "containers.conf")
        with open(self.conf, "w") as f:
            f.write(CONTAINERS_CONF.format(d=self.dir))
        os.chmod(os.path.join(self.short, "xdg"), 0o700)
        if rootless:
            for top in (self.dir, self.short):
                for root, dirs, files in os.walk(top):
                    for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                        os.chown(n, self.pw.pw_uid, self.pw.pw_gid)
        self.proc_env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": os.path.join(self.dir, "home"),
            "XDG_RUNTIME_DIR": os.path.join(self.short, "xdg"),
            "XDG_CONFIG_HOME": os.path.join(self.dir, "home", ".config"),
            "CONTAINERS_CONF": self.conf,
            "LANG": "C.UTF-8",
            # without a session bus address, rootless podman autolaunches a session
            # dbus-daemon (dbus-launch) that outlives the test; it needs none with cgroupfs
            "DBUS_SESSION_BUS_ADDRESS": "unix:path=/dev/null/no-session-bus",
        }

    def argv(self, args):
        base = ["podman", "--root", os.path.join(self.dir, "root"),
                "--runroot", os.path.join(self.short, "runroot"), "--storage-driver", "vfs"]
        if self.rootless:
            return ["setpriv", "--reuid=%d" % self.pw.pw_uid, "--regid=%d" % self.pw.pw_gid,
                    "--init-groups"] + base + list(args)
        return base + list(args)

    def run(self, args, timeout=60, check=True, input=None):
        argv = self.argv(args)
        t0 = time.monotonic()
        r = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=self.proc_env, cwd="/", universal_newlines=True)
        if check and r.returncode != 0:
            raise AssertionError("%s exited %d (%.1fs)\nstdout: %s\nstderr: %s"
                                 % (" ".join(argv), r.returncode, time.monotonic() - t0,
                                    r.stdout[-3000:], r.stderr[-3000:]))
        return r

    def popen(self, args):
        p = subprocess.Popen(self.argv(args), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.proc_env, cwd="/",
                             start_new_session=True)
        self.env.procs["podman-%d" % p.pid] = p
        return p

    def run_flags(self, user=None, devices=("socket",), extra=()):
        flags = list(RUN_FLAGS)
        if user is not None:
            flags += ["--user", user]
        if self.rootless:
            # the container user is CTEST_USER itself, not a subordinate uid without a name
            flags += ["--userns", "keep-id"]
        for d in devices:
            flags += ["--device", d if "=" in d else "%s=%s" % (CDI_KIND, d)]
        # --rootfs is a switch: the image argument, which must come last, is then a directory
        return flags + list(extra) + ["--rootfs", self.env.rootfs]

    def start(self, user=None, devices=("socket",), extra=(), cmd=("/bin/sleep", "600")):
        """A detached container running `cmd` (default: sleep); returns a Container."""
        self.n += 1
        name = "noiommud-ctest-%d-%s-%d" % (os.getpid(), "rl" if self.rootless else "rf", self.n)
        self.run(["run", "-d", "--name", name] + self.run_flags(user, devices, extra) + list(cmd))
        c = Container(self, name)
        self.containers.append(c)
        return c

    def cleanup(self):
        """Removes every container, ends the rootless pause process, unmounts what is left."""
        try:
            self.run(["rm", "--all", "--force", "--time", "0"], timeout=60, check=False)
        except subprocess.TimeoutExpired:
            log("podman rm timed out")
        if self.rootless:
            # rootless podman leaves its pause process (it holds the user namespace) running;
            # end it and anything else started with our runtime directory, and nothing else
            xdg = ("XDG_RUNTIME_DIR=%s" % self.proc_env["XDG_RUNTIME_DIR"]).encode()
            for d in os.listdir("/proc"):
                if not d.isdigit():
                    continue
                try:
                    if os.stat("/proc/" + d).st_uid != self.pw.pw_uid:
                        continue
                    with open("/proc/%s/environ" % d, "rb") as f:
                        if xdg not in f.read().split(b"\0"):
                            continue
                    os.kill(int(d), signal.SIGKILL)
                except OSError:
                    pass
        with open("/proc/self/mountinfo") as f:
            mounts = [l.split()[4] for l in f]
        for m in sorted((m for m in mounts if m.startswith((self.dir + "/", self.short + "/"))),
                        key=len, reverse=True):
            subprocess.run(["umount", "-l", m], stderr=subprocess.DEVNULL)
        # conmon runs podman's exit command (`podman container cleanup`, which recreates the
        # runroot) after the container ended, possibly after `podman rm` returned: wait for
        # every process that names our runroot to end first
        deadline = time.monotonic() + 10
        while self._processes_naming(self.short) and time.monotonic() < deadline:
            time.sleep(0.05)
        while os.path.exists(self.short) and time.monotonic() < deadline:
            shutil.rmtree(self.short, ignore_errors=True)
            if os.path.exists(self.short):
                time.sleep(0.05)
        if os.path.exists(self.short):
            log("could not remove %s (removed by the next run)" % self.short)

    @staticmethod
    def _processes_naming(path):
        """Live processes whose command line contains path."""
        found = []
        needle = path.encode()
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % d, "rb") as f:
                    if needle in f.read() and harness.process_state(int(d)) not in ("Z", None):
                        found.append(int(d))
            except OSError:
                pass
        return found

    @staticmethod
    def remove_stale():
        """Short directories of killed runs."""
        for d in glob.glob(SHORT_PREFIX + "-*"):
            try:
                pid = int(d[len(SHORT_PREFIX) + 1:].split("-")[0])
            except ValueError:
                continue
            if not os.path.exists("/proc/%d" % pid):
                log("removing %s of a killed run" % d)
                shutil.rmtree(d, ignore_errors=True)


class Container:
    def __init__(self, podman, name):
        self.podman = podman
        self.name = name
        self._inspect = None

    def inspect(self):
        r = self.podman.run(["inspect", "--type", "container", self.name])
        return json.loads(r.stdout)[0]

    @property
    def id(self):
        return self.inspect()["Id"]

    @property
    def pid(self):
        """Host pid of the container's first process."""
        return self.inspect()["State"]["Pid"]

    def init_environ(self):
        """The environment of the container's first process, as the host sees it."""
        with open("/proc/%d/environ" % self.pid, "rb") as f:
            return dict(e.decode().partition("=")[::2] for e in f.read().split(b"\0") if e)

    def cdi_env(self):
        """The NOIOMMUD_* variables the CDI spec put into the container. podman 4.3 applies CDI
        containerEdits to the container's OCI spec only: `podman exec` does not get their env
        (it takes the environment from podman's own container config), so exec() passes them on
        explicitly, the way a shell started by the container's entrypoint would inherit them."""
        return ["%s=%s" % kv for kv in sorted(self.init_environ().items()) if kv[0].startswith("NOIOMMUD_")]

    def _exec_args(self, user, env, interactive):
        args = ["exec"] + (["-i"] if interactive else [])
        if user is not None:
            args += ["--user", user]
        for e in self.cdi_env() + list(env):
            args += ["--env", e]
        return args + [self.name]

    def exec(self, argv, user=None, timeout=60, check=False, input=None, env=()):
        return self.podman.run(self._exec_args(user, env, input is not None) + list(argv),
                               timeout=timeout, check=check, input=input)

    def exec_popen(self, argv, user=None, env=()):
        return self.podman.popen(self._exec_args(user, env, True) + list(argv))


# --- the environment ---------------------------------------------------------------------------

class ContainerMixin:
    """Mixed into harness.Environment or device_harness.DeviceEnvironment (see the module
    docstring). Arguments: rootless (also prepare rootless podman), programs (extra binaries
    for the rootfs's /usr/bin)."""

    def __init__(self, *a, rootless=False, programs=(), **kw):
        self.want_rootless = rootless
        self.programs = list(programs)
        self.rootful = None
        self.rootless = None
        self.cdi_spec_path = None
        super().__init__(*a, **kw)

    def __enter__(self):
        if os.geteuid() != 0:
            raise Skip("the container tests need root (rootful podman, the daemon, polkitd)")
        check_container_prerequisites(self.want_rootless)
        self.ctest_pw = ensure_test_user()
        super().__enter__()
        try:
            self.rootfs = build_rootfs(os.path.join(self.tmp, "rootfs"), self.ctl_bin, self.programs,
                                       users=[(CTEST_USER, self.ctest_pw.pw_uid, self.ctest_pw.pw_gid),
                                              ("daemon", 1, 1)])
            Podman.remove_stale()
            self.rootful = Podman(self, rootless=False)
            if self.want_rootless:
                self.rootless = Podman(self, rootless=True)
        except BaseException:
            self._teardown(failed=True)
            raise
        return self

    def _make_tmp(self):
        super()._make_tmp()
        with open(os.path.join(self.tmp, "rules", "60-noiommud-containers.rules"), "w") as f:
            f.write(CONTAINER_RULES)
        os.chmod(os.path.join(self.tmp, "rules", "60-noiommud-containers.rules"), 0o644)
        self.socket_dir = os.path.join(self.tmp, "run-noiommud")
        os.mkdir(self.socket_dir, 0o755)
        self.socket_path = os.path.join(self.socket_dir, "io.noiommud.Broker")

    def write_cdi_spec(self):
        """`noiommuctl cdi generate --output` into CDI_DIR; returns the parsed spec. Makes the
        mount points it names in the rootfs (see build_rootfs)."""
        os.makedirs(CDI_DIR, exist_ok=True)
        for stale in glob.glob(os.path.join(CDI_DIR, "noiommud-ctest-*.json")):
            try:
                pid = int(os.path.basename(stale)[len("noiommud-ctest-"):-len(".json")])
            except ValueError:
                continue
            if not os.path.exists("/proc/%d" % pid):
                log("removing a stale CDI spec of a killed run: %s" % stale)
                os.unlink(stale)
        path = os.path.join(CDI_DIR, "noiommud-ctest-%d.json" % os.getpid())
        self.cdi_spec_path = path
        r = self.ctl(["cdi", "generate", "--output", path], uid=None)
        if r.returncode != 0:
            raise AssertionError("noiommuctl cdi generate exited %d: %s%s"
                                 % (r.returncode, r.stdout, r.stderr))
        with open(path) as f:
            spec = json.load(f)
        for m in spec.get("containerEdits", {}).get("mounts", []) + [
                m for d in spec.get("devices", []) for m in d.get("containerEdits", {}).get("mounts", [])]:
            os.makedirs(os.path.join(self.rootfs, m["containerPath"].lstrip("/")), exist_ok=True)
        os.chmod(path, 0o644)
        return spec

    def _teardown(self, failed):
        for p in (self.rootful, self.rootless):
            if p is not None:
                try:
                    p.cleanup()
                except Exception as e:
                    print("FAIL: podman cleanup: %s" % e, flush=True)
                    failed = True
        if self.cdi_spec_path and os.path.exists(self.cdi_spec_path):
            os.unlink(self.cdi_spec_path)
        return super()._teardown(failed)


class ContainerEnvironment(ContainerMixin, Environment):
    pass


def memfd_vmas(pid, memory_id):
    name = "/memfd:noiommud-%s (deleted)" % memory_id
    return [v for v in harness.proc_maps(pid) if v["path"] == name]


def check_pagemap(pid, out):
    """Every page of the memory `out` (noiommuctl --json alloc output) mapped by host pid is at
    the physical address its segment table says. Returns the number of pages checked."""
    vmas = memfd_vmas(pid, out["memory"])
    assert vmas, "no /memfd:noiommud-%s mapping in /proc/%d/maps" % (out["memory"], pid)
    n = sum(harness.check_physical_addresses(pid, v, out["segments"], out["size"]) for v in vmas)
    assert n == out["size"] // 4096, "checked %d pages, the memory has %d" % (n, out["size"] // 4096)
    return n


run = harness.run


def device_environment(**kw):
    """A ContainerEnvironment whose daemon runs with the vfio fixture backend preloaded
    (tests/integration/device_harness.py); keyword arguments of both."""
    import device_harness

    class ContainerDeviceEnvironment(ContainerMixin, device_harness.DeviceEnvironment):
        pass
    return ContainerDeviceEnvironment(**kw)
