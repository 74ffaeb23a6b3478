#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Every Markdown document the project cites exists in the repository.

Comments, docs, units and tests cite documents by name ("security.md §3.7",
"docs/libnoiommu.md", "tests/vm/README.md"). A reader of a checkout or of an installed package
has only the repository, so every cited name must resolve to a file inside it:

  * a name with a directory part resolves relative to the citing file's directory or to the
    top of the repository, and must stay inside the repository (no "../elsewhere/...");
  * a bare name resolves the same way, or to docs/NAME.

Names inside URLs are not citations of ours. Files of other projects that the reference
documents name by their upstream path (each listed in EXTERNAL with its upstream) are not
either. Exit 0 when every citation resolves, 1 otherwise (each failure with file:line).
"""

import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("NOIOMMU_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))

# What is scanned: the whole tree as git knows it, or, outside a git checkout (a release
# tarball), every file below these places.
SCANNED = ("README.md", "meson.build", "meson_options.txt", "docs", "man", "units", "daemon",
           "client", "include", "tests", "policy", "scripts")

# Upstream files the reference documents name by their path in another repository.
EXTERNAL = {
    "CODING_STYLE.md": "systemd/systemd docs/ (docs/anchors.md §2)",
    "FILE_DESCRIPTOR_STORE.md": "systemd/systemd docs/ (docs/security.md §13)",
    "NEWS.md": "polkit-org/polkit and bus1/dbus-broker (docs/security.md §13)",
}

# The documentation directory of an installation with --prefix=/usr, as the man pages name it.
INSTALLED_DOCDIR = "/usr/share/doc/noiommud"

CITATION = re.compile(r"(?<![\w.@/-])((?:\.{0,2}/)?(?:[\w.+-]+/)*[\w+-][\w.+-]*\.md)\b")
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S*|www\.\S*")


def scanned_files():
    try:
        out = subprocess.run(["git", "-C", SOURCE_ROOT, "ls-files", "-z", "--cached", "--others",
                              "--exclude-standard", "--"] + list(SCANNED),
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True).stdout
        files = [f for f in out.decode().split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for top in SCANNED:
            p = os.path.join(SOURCE_ROOT, top)
            if os.path.isfile(p):
                files.append(top)
            for d, dirs, names in os.walk(p):
                dirs[:] = [x for x in dirs if not x.startswith(".")]
                files += [os.path.relpath(os.path.join(d, n), SOURCE_ROOT) for n in names]
    # This file cites made-up names on purpose (self_test()).
    me = os.path.relpath(os.path.abspath(__file__), SOURCE_ROOT)
    return sorted(f for f in files if os.path.isfile(os.path.join(SOURCE_ROOT, f)) and f != me)


def resolve(citing, name, root=SOURCE_ROOT):
    """The repository path a citation in file citing (relative to root) names, or None."""
    root = os.path.realpath(root)
    if name.startswith("/"):
        # An installed location: the documentation directory holds the repository's README and
        # docs/ (meson.build installs them there), so it names the same file in the checkout.
        if not name.startswith(INSTALLED_DOCDIR + "/"):
            return None
        name = name[len(INSTALLED_DOCDIR) + 1:]
        citing = "README.md"
    bases = [os.path.dirname(os.path.join(root, citing)), root]
    if "/" not in name:
        bases.append(os.path.join(root, "docs"))
    for b in bases:
        p = os.path.realpath(os.path.join(b, name))
        if (p == root or p.startswith(root + os.sep)) and os.path.isfile(p):
            return os.path.relpath(p, root)
    return None


def citations(text):
    """(line number, name) of each citation in text."""
    for n, line in enumerate(text.splitlines(), 1):
        line = URL.sub(" ", line)
        for m in CITATION.finditer(line):
            yield n, m.group(1)


def check(files, root=SOURCE_ROOT):
    """Returns (number of citations, [failure lines])."""
    count, failures = 0, []
    for f in files:
        try:
            with open(os.path.join(root, f), encoding="utf-8") as fh:
                text = fh.read()
        except (UnicodeDecodeError, OSError):
            continue                            # binary fixtures
        for n, name in citations(text):
            if os.path.basename(name) in EXTERNAL:
                continue
            count += 1
            if not resolve(f, name, root):
                failures.append("%s:%d: cites %s, which is not in the repository" % (f, n, name))
    return count, failures


def self_test():
    """The checker must see what it is meant to see: a known-good and a known-bad citation."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        os.makedirs(os.path.join(d, "docs"))
        os.makedirs(os.path.join(d, "daemon"))
        with open(os.path.join(d, "docs", "present.md"), "w") as f:
            f.write("x\n")
        with open(os.path.join(d, "daemon", "a.c"), "w") as f:
            f.write("/* present.md §1, docs/present.md, ../other/present.md, missing.md,\n"
                    " * https://example.org/missing-too.md, /usr/share/doc/noiommud/docs/present.md,\n"
                    " * /usr/share/doc/elsewhere/present.md, upstream docs/CODING_STYLE.md */\n")
        count, failures = check(["daemon/a.c"], d)
        assert count == 6, (count, failures)
        assert [x.split(": cites ")[1].split(",")[0] for x in failures] == \
            ["../other/present.md", "missing.md", "/usr/share/doc/elsewhere/present.md"], failures


def main():
    self_test()
    files = scanned_files()
    count, failures = check(files)
    print("%d citations of Markdown documents in %d files" % (count, len(files)))
    # A regex that stopped matching would pass vacuously: the tree cites well over 100.
    if count < 100:
        failures.append("only %d citations found: the scanner is broken" % count)
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
