#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Runs the administrator's guide (docs/admin.md): every shell block, as its marker says
(tests/docs/admin_guide.py).

"run" blocks are executed exactly as written, in document order, as root, by bash -e -o
pipefail, in a sandbox built here:

  * a private mount namespace (unshare -m; this script re-executes itself inside one) where a
    copy of /etc is bind-mounted over /etc: groupadd, usermod, the polkit rules, sysctl.d,
    modprobe.d and the daemon's configuration land in the copy. The users the guide assumes
    (alice, bob) are created there first;
  * /usr/libexec is a tmpfs holding only noiommud, the built daemon; PATH starts with a
    directory holding the built noiommuctl;
  * the integration harness (tests/integration/harness.py) provides the private system bus,
    the real polkitd and the built daemon. polkitd runs in a mount namespace of its own below
    the sandbox, with the project's action file and the sandbox's /etc/polkit-1/rules.d, that
    is the guide's rules exactly as the guide wrote them; the daemon reads the guide's
    /etc/noiommud/noiommud.conf. NOIOMMUD_SOCKET points noiommuctl at that daemon.

Before a block that uses pkcheck or noiommuctl, polkitd is (re)started if the rules directory
changed since it started, so that the rule set it decides with is certain (its own reload on
inotify is asynchronous). The one effect outside the sandbox is the hugepage reservation of the
sysctl block: it runs under the harness's machine-wide lock, the test checks that the kernel
took the number the file says, and nr_hugepages is restored afterwards.

"systemd" blocks need systemd as PID 1: `systemctl enable/disable` run offline with --root on a
tree holding the built units (and the result is checked), `journalctl --update-catalog` runs
with --root on the built catalog (and every MESSAGE_ID must then be listed), the journalctl
queries run as written (plus --directory) on a journal file made by systemd-journal-remote from
the records this test's daemon sent, as journald would have stored them for noiommud.service,
with the built catalog for -x (a MESSAGE_ID filter must show records of that id only, -x must
show explanations); unit names and MESSAGE_IDs are checked to exist, and every other line
(systemctl status, reload, restart, stop) is checked for syntax and reported as not run. "syntax" blocks (a real device, the boot configuration) get bash -n.

Exit 0 pass, 1 fail, 77 skip (not root, no unshare, or what the integration harness needs).
"""

import glob
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import admin_guide  # noqa: E402
import harness as H  # noqa: E402

SANDBOX_FLAG = "NOIOMMU_ADMIN_GUIDE_SANDBOX"
USERS = ("alice", "bob")          # the guide's users, made in the sandbox's /etc
NEEDS_POLKIT = re.compile(r"\b(pkcheck|noiommuctl)\b")
NEEDS_DAEMON = re.compile(r"\bnoiommuctl\b")
BLOCK_TIMEOUT = 120


def sh(*argv, **kw):
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    if r.returncode != 0:
        raise AssertionError("%s exited %d:\n%s" % (" ".join(argv), r.returncode, r.stdout.decode()))
    return r.stdout.decode()


class GuideEnvironment(H.Environment):
    """The harness's environment, except that polkitd reads the sandbox's
    /etc/polkit-1/rules.d (the guide's rules) instead of the harness's test rules."""

    polkit_test_rules = False

    def stop_polkitd(self):
        self._kill("polkitd")
        H.wait_until(lambda: not self.bus_name_owner("org.freedesktop.PolicyKit1"), 15,
                     "polkitd to leave the bus")


def rules_state():
    out = []
    for f in sorted(glob.glob("/etc/polkit-1/rules.d/*")):
        with open(f, "rb") as fh:
            out.append((f, fh.read()))
    return out


class Sandbox:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="noiommud-admin-guide-")
        os.chmod(self.dir, 0o755)      # the guide's users run noiommuctl from bin/
        self.bin = os.path.join(self.dir, "bin")
        self.root = os.path.join(self.dir, "root")      # systemctl/journalctl --root
        self.not_run = []

    def setup(self):
        sh("mount", "--make-rprivate", "/")
        sh("cp", "-a", "/etc", os.path.join(self.dir, "etc"))
        sh("mount", "--bind", os.path.join(self.dir, "etc"), "/etc")
        for u in USERS:
            if subprocess.run(["id", u], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
                sh("useradd", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", u)
        sh("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/usr/libexec")
        daemon = os.environ.get("NOIOMMUD_TEST_BINARY") or os.path.join(H.BUILD_ROOT, "daemon", "noiommud")
        ctl = os.environ.get("NOIOMMUCTL_TEST_BINARY") or os.path.join(H.BUILD_ROOT, "client", "lib", "noiommuctl")
        os.symlink(daemon, "/usr/libexec/noiommud")
        os.makedirs(self.bin, 0o755)
        os.symlink(ctl, os.path.join(self.bin, "noiommuctl"))
        # The tree systemctl --root and journalctl --root work on: the built units and catalog.
        units = os.path.join(self.root, "usr", "lib", "systemd", "system")
        catalog = os.path.join(self.root, "usr", "lib", "systemd", "catalog")
        os.makedirs(units)
        os.makedirs(catalog)
        os.makedirs(os.path.join(self.root, "etc", "systemd", "system"))
        for u in ("noiommud.socket", "noiommud.service"):
            shutil.copy(os.path.join(H.BUILD_ROOT, "units", u), units)
        shutil.copy(os.path.join(H.SOURCE_ROOT, "policy", "noiommud.catalog"), catalog)

    def teardown(self):
        subprocess.run(["umount", "/etc"], stderr=subprocess.DEVNULL)
        subprocess.run(["umount", "/usr/libexec"], stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_bash(args, block, env, cwd):
    """Runs the block with bash; returns (exit status, output). The output goes to a file, not
    a pipe: what the block leaves in the background (the pkcheck examples' sleep) keeps its
    stdout open, and is killed with the block's process group once bash has exited."""
    with tempfile.TemporaryFile() as out:
        p = subprocess.Popen(["bash"] + args + ["-c", block.text], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True)
        try:
            rc = p.wait(timeout=BLOCK_TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    if rc is None:
        raise AssertionError("%r timed out after %d s:\n%s" % (block, BLOCK_TIMEOUT, text))
    return rc, text


def msgids():
    with open(os.path.join(H.SOURCE_ROOT, "daemon", "msgid.h")) as f:
        return set(re.findall(r'"([0-9a-f]{32})"', f.read()))


REMOTE = "/lib/systemd/systemd-journal-remote"


def export_journal(entries, directory):
    """Writes the records the daemon sent (the harness's journal capture) into a journal file in
    directory, as journald would have stored them for noiommud.service: journal export format,
    converted by systemd-journal-remote."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        boot = f.read().strip().replace("-", "")
    now = int(__import__("time").time() * 1e6)
    out = bytearray()
    records = [e for e in entries if "MESSAGE" in e]
    for n, e in enumerate(records):
        fields = dict(e, _SYSTEMD_UNIT="noiommud.service", _BOOT_ID=boot, _HOSTNAME="sandbox",
                      _COMM="noiommud", SYSLOG_IDENTIFIER="noiommud")
        out += b"__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n" % (now - 1000 * (len(records) - n), 1000 + n)
        for k, v in sorted(fields.items()):
            for one in (v if isinstance(v, list) else [v]):
                data = one.encode()
                if b"\n" in data:
                    out += k.encode() + b"\n" + len(data).to_bytes(8, "little") + data + b"\n"
                else:
                    out += k.encode() + b"=" + data + b"\n"
        out += b"\n"
    os.makedirs(directory, exist_ok=True)
    export = os.path.join(directory, "records.export")
    with open(export, "wb") as f:
        f.write(out)
    sh(REMOTE, "--output=" + os.path.join(directory, "noiommud.journal"), "--split-mode=none", export)
    os.unlink(export)
    return len(records)


def run_journalctl(words, sb, env):
    """Runs a journalctl line of the guide on the records the daemon wrote in this test, with
    the built catalog (journalctl -x reads /var/lib/systemd/catalog only: bound over it in a
    mount namespace of its own)."""
    directory = os.path.join(sb.dir, "journal")
    shutil.rmtree(directory, ignore_errors=True)
    n = export_journal(env.journal.entries, directory)
    argv = ["journalctl", "--directory=" + directory, "--no-pager"] + words[1:]
    script = 'mount --bind "$1" /var/lib/systemd/catalog && shift && exec "$@"'
    r = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh",
                        os.path.join(sb.root, "var", "lib", "systemd", "catalog")] + argv,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=dict(os.environ, LC_ALL="C", SYSTEMD_COLORS="0"))
    text = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, "%s exited %d:\n%s" % (" ".join(argv), r.returncode, text)
    return n, text


def check_systemd_block(block, sb, env):
    rc, out = run_bash(["-n"], block, os.environ, sb.dir)
    assert rc == 0, "%r: bash -n: %s" % (block, out)
    known_units = {"noiommud.socket", "noiommud.service", "polkit.service"}
    for line in block.text.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        for w in words:
            if re.match(r"^[\w-]+\.(service|socket)$", w):
                assert w in known_units, "%r names unit %s, which the project does not ship" % (block, w)
            m = re.match(r"^MESSAGE_ID=([0-9a-f]+)$", w)
            if m:
                assert m.group(1) in msgids(), "%r: MESSAGE_ID %s is not in daemon/msgid.h" % (block, m.group(1))
        if words[0] == "systemctl":
            args = [w for w in words[1:] if not w.startswith("-")]
            verb, units = args[0], args[1:]
            if verb in ("enable", "disable"):
                sh("systemctl", "--root=" + sb.root, verb, *units)
                link = os.path.join(sb.root, "etc", "systemd", "system", "sockets.target.wants", "noiommud.socket")
                if verb == "enable" and "noiommud.socket" in units:
                    assert os.path.islink(link), "systemctl --root enable noiommud.socket made no %s" % link
                print("  ran offline: systemctl --root=ROOT %s %s" % (verb, " ".join(units)))
                continue
        elif words[0] == "journalctl" and "--update-catalog" in words:
            sh("journalctl", "--root=" + sb.root, "--update-catalog")
            listed = sh("journalctl", "--root=" + sb.root, "--list-catalog")
            missing = [m for m in msgids() if m not in listed]
            assert not missing, "the built catalog lacks MESSAGE_IDs %s" % missing
            print("  ran offline: journalctl --root=ROOT --update-catalog (all %d MESSAGE_IDs listed)" % len(msgids()))
            continue
        elif words[0] == "journalctl" and os.access(REMOTE, os.X_OK):
            n, text = run_journalctl(words, sb, env)
            ids = re.findall(r"^\s*MESSAGE_ID=([0-9a-f]{32})$", text, re.M)
            want = [w.split("=", 1)[1] for w in words if w.startswith("MESSAGE_ID=")]
            if want:
                # -o verbose: every record shown has the MESSAGE_ID asked for, and there is one
                assert ids and set(ids) == set(want), \
                    "%s showed MESSAGE_IDs %s, the line asks for %s:\n%s" % (line, set(ids), want, text)
            if "-x" in words:
                assert re.search(r"^-- ", text, re.M), "%s shows no catalog explanation:\n%s" % (line, text)
            shown = len(ids) if "verbose" in words else sum(1 for x in text.splitlines() if "noiommud[" in x)
            assert shown > 0, "%s shows no record:\n%s" % (line, text)
            print("  ran on the %d records of this test's daemon: %s (%d shown)" % (n, line.strip(), shown))
            print("\n".join("  | " + x for x in text.splitlines()[:12]))
            continue
        sb.not_run.append("%s: %s" % (block, line.strip()))
        print("  NOT RUN (needs systemd as PID 1; syntax checked): %s" % line.strip())


def body():
    blocks, problems = admin_guide.parse()
    assert not problems, "\n".join(problems)
    sb = Sandbox()
    try:
        sb.setup()
        with GuideEnvironment(polkit=False, daemon=False, hugepages=8) as env:
            nr_path = os.path.join(H.HUGEPAGE_SYSFS, "nr_hugepages")
            nr_before = H.read_int(nr_path)
            polkit_rules = None
            block_env = dict(env.env, PATH=sb.bin + ":" + os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
                             NOIOMMUD_SOCKET=env.socket_path, LC_ALL="C.UTF-8")
            try:
                for b in blocks:
                    with env.subtest("%r" % b):
                        if b.kind == "syntax":
                            rc, out = run_bash(["-n"], b, block_env, sb.dir)
                            assert rc == 0, "bash -n: %s" % out
                            print("  syntax only (needs a device or changes the machine's boot)")
                            continue
                        if b.kind == "systemd":
                            check_systemd_block(b, sb, env)
                            continue
                        if NEEDS_POLKIT.search(b.text) and polkit_rules != rules_state():
                            if env.polkitd is not None:
                                env.stop_polkitd()
                            env.start_polkitd()
                            polkit_rules = rules_state()
                        if NEEDS_DAEMON.search(b.text) and env.daemon is None:
                            env.start_daemon()
                        rc, out = run_bash(["-e", "-o", "pipefail"], b, block_env, sb.dir)
                        print("\n".join("  | " + x for x in out.splitlines()))
                        want = int(b.options.get("expect", "0"))
                        assert rc == want, "exit status %d, the guide expects %d" % (rc, want)
                        # The sysctl block's claim: the kernel now holds what the file asks for.
                        m = re.search(r"^vm\.nr_hugepages = (\d+)$", b.text, re.M)
                        if m:
                            got = H.read_int(nr_path)
                            assert got == int(m.group(1)), "nr_hugepages is %d after the guide's sysctl, " \
                                "the file says %s" % (got, m.group(1))
            finally:
                H.write_int(nr_path, nr_before)
            if env.failures:
                raise AssertionError("%d of %d blocks failed: %s" % (len(env.failures), len(blocks), env.failures))
            print("%d blocks: %d run, %d systemd (%d lines not run: no systemd as PID 1), %d syntax only"
                  % (len(blocks), sum(b.kind == "run" for b in blocks), sum(b.kind == "systemd" for b in blocks),
                     len(sb.not_run), sum(b.kind == "syntax" for b in blocks)))
    finally:
        sb.teardown()


def main():
    if os.environ.get(SANDBOX_FLAG) != "1":
        if os.geteuid() != 0:
            print("SKIP: the admin guide's commands run as root (groupadd, polkitd, the daemon)")
            return H.EXIT_SKIP
        if not shutil.which("unshare"):
            print("SKIP: unshare (util-linux) is missing")
            return H.EXIT_SKIP
        env = dict(os.environ, **{SANDBOX_FLAG: "1"})
        os.execvpe("unshare", ["unshare", "-m", "--propagation", "private", H.PYTHON,
                               os.path.abspath(__file__)], env)
    H.run(body)


if __name__ == "__main__":
    sys.exit(main())
