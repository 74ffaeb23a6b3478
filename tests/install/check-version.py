#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""One version everywhere: the project version (meson.build) against the public header's
NOIOMMU_VERSION_* (as a program compiled against it prints them), libnoiommu.pc, the built
library's file name and SONAME, and its symbol versions: the newest node of
client/lib/libnoiommu.sym must be LIBNOIOMMU_MAJOR.MINOR, the nodes must form one chain
0.1 <- 0.2 <- ... each inheriting the previous, and the library must define exactly those.

usage: check-version.py VERSION SOURCE_ROOT VERSION_MACROS_EXE LIBNOIOMMU_SO LIBNOIOMMU_PC
"""
import os
import re
import subprocess
import sys

FAILURES = []


def check(ok, msg):
    if ok:
        print("ok - " + msg)
    else:
        FAILURES.append(msg)
        print("FAIL: " + msg)


def sym_nodes(path):
    """[(name, inherited name or None), ...] in file order, comments removed."""
    with open(path) as f:
        text = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    return re.findall(r"(LIBNOIOMMU_[0-9.]+)\s*\{[^}]*\}\s*(LIBNOIOMMU_[0-9.]+)?\s*;", text)


def main():
    version, root, exe, lib, pc = sys.argv[1:6]
    parts = version.split(".")
    check(len(parts) == 3 and all(p.isdigit() for p in parts),
          "project version %s is MAJOR.MINOR.MICRO" % version)
    major, minor, micro = (int(p) for p in parts)

    out = subprocess.run([exe], stdout=subprocess.PIPE, text=True, check=True).stdout.split()
    check(out[:4] == [str(major), str(minor), str(micro), version],
          "<noiommu/version.h>: NOIOMMU_VERSION_MAJOR/MINOR/MICRO/STRING %s agree with %s"
          % (" ".join(out[:4]), version))
    check(int(out[4]) == (major << 16 | minor << 8 | micro),
          "NOIOMMU_VERSION 0x%06x encodes %s" % (int(out[4]), version))

    with open(pc) as f:
        pcv = re.search(r"^Version:\s*(\S+)", f.read(), flags=re.M)
    check(pcv and pcv.group(1) == version, "libnoiommu.pc Version: %s" % (pcv and pcv.group(1)))

    check(os.path.basename(lib) == "libnoiommu.so.%s" % version,
          "library file %s is libnoiommu.so.%s" % (os.path.basename(lib), version))
    dyn = subprocess.run(["readelf", "-d", "-W", lib], stdout=subprocess.PIPE, text=True, check=True).stdout
    soname = re.search(r"\(SONAME\)\s+Library soname: \[([^\]]+)\]", dyn)
    check(soname and soname.group(1) == "libnoiommu.so.%d" % major,
          "SONAME %s is libnoiommu.so.%d (the major version)" % (soname and soname.group(1), major))

    nodes = sym_nodes(os.path.join(root, "client", "lib", "libnoiommu.sym"))
    names = [n for n, _ in nodes]
    check(len(nodes) > 0, "libnoiommu.sym has version nodes: %s" % " ".join(names))
    chain = all(parent == (names[i - 1] if i else "") for i, (_, parent) in enumerate(nodes))
    check(chain, "each node of libnoiommu.sym inherits the one before it")
    expected = ["LIBNOIOMMU_%d.%d" % (major, m) for m in range(1, minor + 1)] if major == 0 else None
    if expected is not None:
        check(names == expected, "the nodes are %s, one per minor version up to %d.%d"
              % (" ".join(expected), major, minor))
    check(names and names[-1] == "LIBNOIOMMU_%d.%d" % (major, minor),
          "newest node %s is LIBNOIOMMU_%d.%d" % (names[-1] if names else None, major, minor))

    verdefs = subprocess.run(["readelf", "-V", "-W", lib], stdout=subprocess.PIPE, text=True,
                             check=True).stdout
    section = verdefs.split("Version definition section")[1].split("Version needs section")[0] \
        if "Version definition section" in verdefs else ""
    defined = [n for n in re.findall(r"Name: (\S+)", section) if n.startswith("LIBNOIOMMU_")]
    check(defined == names, "the library defines the symbol versions %s" % " ".join(defined))

    if FAILURES:
        print("%d failure(s)" % len(FAILURES))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
