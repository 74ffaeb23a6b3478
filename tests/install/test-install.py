#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Installs like a distribution package, and checks where everything went.

1. "meson setup --prefix=/usr" (nothing else, as a packager would: no werror, which must not be
   a default) in a build directory of its own, ninja, "DESTDIR=ROOT meson install"; the tree in
   ROOT equals expected-prefix-usr.txt plus docs/ and the man pages; the installed unit's
   ExecStart= is the installed daemon and Documentation= an installed file; systemd-analyze
   verify accepts the installed units in ROOT (plus the host's own units, which they need);
   journalctl --root=ROOT --update-catalog accepts the installed catalog; a program compiled and
   linked against the installed tree through the installed libnoiommu.pc runs and sees the
   version; the example configuration is strict JSON with keys the daemon knows.
2. The default prefix (/usr/local), configured only (meson introspect --installed says where
   each file goes): the daemon goes to /usr/local/libexec and the unit's ExecStart= says so,
   while the units, catalog and polkit action go where systemd and polkitd read them, so the
   installed daemon works; no configure warning.
3. A directory the component does not read (-Dpolkit-actiondir=/usr/local/share/polkit-1/actions
   and the like) is a loud configure warning naming the right directory (fatal with
   --fatal-meson-warnings); polkit's own pkg-config file decides the action directory.

usage: test-install.py SOURCE_ROOT WORK_DIR. Prints the installed tree.
"""
import json
import os
import re
import shutil
import subprocess
import sys

FAILURES = []
HERE = os.path.dirname(os.path.abspath(__file__))
# Where the documentation goes with the default prefix /usr/local.
DEFAULT_DOCDIR = "/usr/local/share/doc/noiommud"
MAN_PAGES = ["/usr/share/man/man1/noiommuctl.1", "/usr/share/man/man3/libnoiommu.3",
             "/usr/share/man/man5/noiommud.conf.5", "/usr/share/man/man8/noiommud.8"]


def check(ok, msg, detail=""):
    if ok:
        print("ok - " + msg)
    else:
        FAILURES.append(msg)
        print("FAIL: " + msg + (("\n" + detail) if detail else ""))
    return ok


def run(argv, env=None, check_rc=True, **kw):
    e = dict(os.environ)
    # The test must see meson's defaults, not options or paths the calling build was given.
    for k in ("DESTDIR", "MESON_INSTALL_PREFIX"):
        e.pop(k, None)
    e.update(env or {})
    p = subprocess.run(argv, env=e, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if check_rc and p.returncode != 0:
        print(p.stdout)
        raise SystemExit("FAIL: %s exited %d" % (" ".join(argv), p.returncode))
    return p


def pkgvar(pkg, var):
    p = run(["pkg-config", "--variable=" + var, pkg], check_rc=False)
    return p.stdout.strip() if p.returncode == 0 else None


def tree(root):
    """{"/path": None for files, target for symlinks}; directories are implied."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            rel = "/" + os.path.relpath(p, root)
            out[rel] = os.readlink(p) if os.path.islink(p) else None
    return out


def unit_setting(path, key):
    with open(path) as f:
        return [m.group(1) for m in re.finditer(r"^%s=(.*)$" % key, f.read(), flags=re.M)]


def buildoption(builddir, name):
    opts = json.loads(run(["meson", "introspect", "--buildoptions", builddir]).stdout)
    return [o["value"] for o in opts if o["name"] == name][0]


def installed_map(builddir):
    """meson introspect --installed: {install destination: source or build path}."""
    m = json.loads(run(["meson", "introspect", "--installed", builddir]).stdout)
    return {dest: src for src, dest in m.items()}


def settings_keys(src):
    with open(os.path.join(src, "daemon", "settings.c")) as f:
        return set(re.findall(r'streq\(key, "([A-Za-z]+)"\)', f.read()))


# ---- 1. --prefix=/usr, built and installed --------------------------------------------------

def test_prefix_usr(src, work, unitdir, catalogdir, actiondir):
    build = os.path.join(work, "build-usr")
    root = os.path.join(work, "root")
    shutil.rmtree(build, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    setup = run(["meson", "setup", "--prefix=/usr", "-Dtests=false", build, src])
    check("WARNING" not in setup.stdout, "meson setup --prefix=/usr: no warning", setup.stdout)
    check(buildoption(build, "werror") is False,
          "werror is not a default option (a packager's newer compiler must not fail the build)")
    run(["ninja", "-C", build])
    run(["meson", "install", "-C", build, "--no-rebuild"], env={"DESTDIR": root})

    version = run(["meson", "introspect", "--projectinfo", build]).stdout
    version = json.loads(version)["version"]
    libdir = buildoption(build, "libdir")
    subst = {"@LIBDIR@": libdir, "@UNITDIR@": unitdir, "@CATALOGDIR@": catalogdir,
             "@ACTIONDIR@": actiondir, "@VERSION@": version, "@MAJOR@": version.split(".")[0]}
    expected = {}
    with open(os.path.join(HERE, "expected-prefix-usr.txt")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            for k, v in subst.items():
                line = line.replace(k, v)
            path, _, target = line.partition(" -> ")
            expected[path] = target or None
    for dirpath, _dirs, files in os.walk(os.path.join(src, "docs")):
        for name in files:
            rel = os.path.relpath(os.path.join(dirpath, name), os.path.join(src, "docs"))
            expected["/usr/share/doc/noiommud/docs/" + rel] = None

    got = tree(root)
    print("# installed tree (DESTDIR=ROOT meson install, prefix /usr):")
    for p in sorted(got):
        print("#   " + p + ((" -> " + got[p]) if got[p] else ""))
    man = {p for p in got if p.startswith("/usr/share/man/")}
    rest = {p: t for p, t in got.items() if p not in man}
    missing = sorted(set(expected) - set(rest))
    extra = sorted(set(rest) - set(expected))
    wrong = sorted(p for p in set(expected) & set(rest) if expected[p] != rest[p])
    check(not missing and not extra and not wrong,
          "the installed tree is exactly the expected one (%d files)" % len(rest),
          "missing: %s\nunexpected: %s\nwrong symlink: %s" % (missing, extra, wrong))
    if os.path.isdir(os.path.join(src, "man")):
        check(man == set(MAN_PAGES), "the four man pages are installed",
              "installed: %s" % sorted(man))
    else:
        check(not man - set(MAN_PAGES), "no man pages but the four (no man/ yet: %s)" % sorted(man))

    # The unit names what was installed.
    service = os.path.join(root, unitdir.lstrip("/"), "noiommud.service")
    execstart = unit_setting(service, "ExecStart")
    check(execstart == ["/usr/libexec/noiommud"] and "/usr/libexec/noiommud" in got,
          "ExecStart=%s is the installed daemon" % execstart)
    check(os.access(os.path.join(root, "usr/libexec/noiommud"), os.X_OK),
          "/usr/libexec/noiommud is executable")
    for unit in ("noiommud.service", "noiommud.socket"):
        docs = unit_setting(os.path.join(root, unitdir.lstrip("/"), unit), "Documentation")
        paths = [d[len("file://"):] for d in " ".join(docs).split() if d.startswith("file://")]
        check(paths and all(p in got for p in paths),
              "%s: Documentation=%s is installed" % (unit, " ".join(docs)))
    # systemd loads units from that directory on this machine.
    unitpaths = run(["systemd-analyze", "unit-paths"]).stdout.split()
    check(unitdir in unitpaths or os.path.realpath(unitdir) in [os.path.realpath(p) for p in unitpaths],
          "systemd loads units from %s (systemd-analyze unit-paths)" % unitdir)

    # systemd-analyze verify in a root that holds the installed tree plus the host's own units
    # (noiommud.service needs sysinit.target, sockets.target, dbus.socket ...) and /bin/kill
    # (ExecReload=): with --root it looks for ExecStart='s binary inside the root.
    vroot = os.path.join(work, "verify-root")
    shutil.rmtree(vroot, ignore_errors=True)
    shutil.copytree("/usr/lib/systemd/system", os.path.join(vroot, "usr/lib/systemd/system"),
                    symlinks=True)
    shutil.copytree(root, vroot, symlinks=True, dirs_exist_ok=True)
    os.makedirs(os.path.join(vroot, "bin"), exist_ok=True)
    shutil.copy("/bin/kill", os.path.join(vroot, "bin/kill"))
    p = run(["systemd-analyze", "verify", "--root=" + vroot, "noiommud.socket", "noiommud.service"],
            check_rc=False)
    check(p.returncode == 0 and "noiommud" not in p.stdout,
          "systemd-analyze verify --root=ROOT noiommud.socket noiommud.service", p.stdout)
    os.remove(os.path.join(vroot, "usr/libexec/noiommud"))
    p = run(["systemd-analyze", "verify", "--root=" + vroot, "noiommud.service"], check_rc=False)
    check(p.returncode != 0 and "/usr/libexec/noiommud" in p.stdout,
          "... and it does look for ExecStart='s binary in ROOT (fails without it)", p.stdout)

    # journalctl reads the installed catalog.
    p = run(["journalctl", "--root=" + root, "--update-catalog"], check_rc=False)
    check(p.returncode == 0 and not p.stdout.strip(), "journalctl --root=ROOT --update-catalog", p.stdout)
    dump = run(["journalctl", "--root=" + root, "--dump-catalog"]).stdout
    with open(os.path.join(src, "daemon", "msgid.h")) as f:
        ids = re.findall(r'"([0-9a-f]{32})"', f.read())
    check(ids and all("-- " + i in dump for i in ids),
          "journalctl --root=ROOT --dump-catalog explains all %d MESSAGE_IDs" % len(ids))
    shutil.rmtree(os.path.join(root, "var"))

    # A consumer of the installed library, through its .pc (sysroot: ROOT).
    pcenv = {"PKG_CONFIG_PATH": os.path.join(root, "usr", libdir, "pkgconfig"),
             "PKG_CONFIG_SYSROOT_DIR": root, "PKG_CONFIG_LIBDIR": ""}
    pc = run(["pkg-config", "--modversion", "libnoiommu"], env=pcenv).stdout.strip()
    check(pc == version, "installed libnoiommu.pc: version %s" % pc)
    flags = run(["pkg-config", "--cflags", "--libs", "libnoiommu"], env=pcenv).stdout.split()
    exe = os.path.join(work, "version-macros-installed")
    cc = os.environ.get("CC", "cc")
    p = run([cc, "-std=gnu11", "-Wall", "-Werror", "-o", exe, os.path.join(HERE, "version-macros.c")]
            + flags, check_rc=False)
    check(p.returncode == 0, "version-macros.c compiles and links against the installed tree "
          "(pkg-config --cflags --libs libnoiommu: %s)" % " ".join(flags), p.stdout)
    if p.returncode == 0:
        p = run([exe], env={"LD_LIBRARY_PATH": os.path.join(root, "usr", libdir)}, check_rc=False)
        v = version.split(".")
        check(p.stdout.split()[:4] == v + [version],
              "it runs against the installed libnoiommu.so.%s and sees version %s" % (v[0], p.stdout.strip()))
        p = run(["ldd", exe], env={"LD_LIBRARY_PATH": os.path.join(root, "usr", libdir)})
        check(os.path.join(root, "usr", libdir, "libnoiommu.so." + v[0]) in p.stdout,
              "... the installed one (ldd)", p.stdout)
        node = "LIBNOIOMMU_%s.%s" % (v[0], v[1])
        p = run(["readelf", "-V", "-W", exe])
        check(re.search(r"Name: %s\b" % re.escape(node), p.stdout.split("Version needs section")[-1]),
              "a program using the %s.%s API the header announces needs symbol version %s"
              % (v[0], v[1], node), p.stdout)

    # The example configuration: strict JSON, only keys the daemon accepts (settings.c).
    with open(os.path.join(root, "usr/share/doc/noiommud/examples/noiommud.conf")) as f:
        try:
            conf = json.load(f, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        except ValueError as e:
            conf = None
            check(False, "examples/noiommud.conf is strict JSON: %s" % e)
    if conf is not None:
        keys = settings_keys(src)
        check(isinstance(conf, dict) and set(conf) == keys,
              "examples/noiommud.conf sets every key the daemon knows (%s)" % " ".join(sorted(keys)),
              "example: %s" % sorted(conf))


# ---- 2. the default prefix ------------------------------------------------------------------

def test_default_prefix(src, work, unitdir, catalogdir, actiondir):
    build = os.path.join(work, "build-default")
    shutil.rmtree(build, ignore_errors=True)
    setup = run(["meson", "setup", "-Dtests=false", build, src])
    check(buildoption(build, "prefix") == "/usr/local", "default prefix /usr/local")
    check("WARNING" not in setup.stdout, "default prefix: configures without a warning", setup.stdout)
    inst = installed_map(build)
    want = {"/usr/local/libexec/noiommud": "daemon under the prefix",
            "/usr/local/bin/noiommuctl": "noiommuctl under the prefix",
            os.path.join(unitdir, "noiommud.service"): "unit where systemd reads it",
            os.path.join(unitdir, "noiommud.socket"): "socket unit where systemd reads it",
            os.path.join(catalogdir, "noiommud.catalog"): "catalog where journalctl reads it",
            os.path.join(actiondir, "io.noiommud.policy"): "polkit action where polkitd reads it",
            os.path.join(DEFAULT_DOCDIR, "README.md"): "README under the prefix"}
    for dest, what in want.items():
        check(dest in inst, "default prefix: %s -> %s" % (what, dest))
    check(not any("/usr/local/share/polkit-1" in d for d in inst),
          "default prefix: nothing goes to /usr/local/share/polkit-1, which polkitd never reads")
    service = os.path.join(build, "units", "noiommud.service")
    check(unit_setting(service, "ExecStart") == ["/usr/local/libexec/noiommud"],
          "default prefix: ExecStart=%s is where the daemon is installed"
          % unit_setting(service, "ExecStart"))
    docs = unit_setting(service, "Documentation")
    check(docs == ["file://" + os.path.join(DEFAULT_DOCDIR, "README.md")],
          "default prefix: Documentation=%s is installed" % docs)


# ---- 3. directories the components do not read ----------------------------------------------

def test_warnings(src, work, actiondir):
    cases = [
        (["-Dpolkit-actiondir=/usr/local/share/polkit-1/actions"],
         "polkitd reads actions only from %s" % actiondir, "-Dpolkit-actiondir=%s" % actiondir),
        (["-Dsystemdsystemunitdir=/opt/units"], "which systemd does not load units from",
         "-Dsystemdsystemunitdir="),
        (["-Dcatalogdir=/opt/catalog"], "which journalctl --update-catalog does not read",
         "-Dcatalogdir="),
    ]
    for i, (opts, says, fix) in enumerate(cases):
        build = os.path.join(work, "build-warn%d" % i)
        shutil.rmtree(build, ignore_errors=True)
        p = run(["meson", "setup", "-Dtests=false"] + opts + [build, src])
        out = " ".join(p.stdout.split())
        check("WARNING:" in out and says in out and fix in out,
              "%s: configure warns \"...%s...\" and names %s" % (" ".join(opts), says, fix), p.stdout)
        shutil.rmtree(build, ignore_errors=True)
        p = run(["meson", "setup", "--fatal-meson-warnings", "-Dtests=false"] + opts + [build, src],
                check_rc=False)
        check(p.returncode != 0, "%s with --fatal-meson-warnings: configure fails" % " ".join(opts))
        shutil.rmtree(build, ignore_errors=True)

    # polkit's own pkg-config file decides where the action goes (a polkit built elsewhere).
    pcdir = os.path.join(work, "fake-pc")
    os.makedirs(pcdir, exist_ok=True)
    with open(os.path.join(pcdir, "polkit-gobject-1.pc"), "w") as f:
        f.write("prefix=/opt/polkit\ndatadir=${prefix}/share\nactiondir=${datadir}/polkit-1/actions\n"
                "Name: polkit-gobject-1\nDescription: test double\nVersion: 122\n")
    build = os.path.join(work, "build-pc")
    shutil.rmtree(build, ignore_errors=True)
    p = run(["meson", "setup", "-Dtests=false", build, src],
            env={"PKG_CONFIG_PATH": pcdir + ":" + os.environ.get("PKG_CONFIG_PATH", "")})
    check("/opt/polkit/share/polkit-1/actions/io.noiommud.policy" in installed_map(build)
          and "WARNING" not in p.stdout,
          "polkit-gobject-1.pc's actiondir (/opt/polkit/share/polkit-1/actions) is used", p.stdout)
    shutil.rmtree(build, ignore_errors=True)


def main():
    src, work = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(work, exist_ok=True)
    unitdir = pkgvar("systemd", "systemdsystemunitdir") or "/usr/lib/systemd/system"
    catalogdir = pkgvar("systemd", "catalogdir") or "/usr/lib/systemd/catalog"
    actiondir = pkgvar("polkit-gobject-1", "actiondir") or "/usr/share/polkit-1/actions"
    print("# systemd.pc: units %s, catalog %s; polkit actions %s" % (unitdir, catalogdir, actiondir))
    test_default_prefix(src, work, unitdir, catalogdir, actiondir)
    test_warnings(src, work, actiondir)
    test_prefix_usr(src, work, unitdir, catalogdir, actiondir)
    if FAILURES:
        print("%d failure(s)" % len(FAILURES))
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
