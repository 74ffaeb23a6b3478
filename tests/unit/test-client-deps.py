#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""libnoiommu.so and noiommuctl must run in minimal container images, which have no
libsystemd: neither may name it in DT_NEEDED, import an sd_* symbol, or (the library) make its
pkg-config file pull it in. The daemon links libsystemd, and the client copy of the internal
library is the one place where that could leak back in (client/meson.build).

Usage: test-client-deps.py LIBNOIOMMU_SO NOIOMMUCTL [LIBNOIOMMU_PC]"""

import re
import subprocess
import sys


def readelf(args, path):
    return subprocess.run(["readelf", "-W"] + args + [path], check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout


def check(path):
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^]]+)\]", readelf(["-d"], path))
    assert needed, "%s: no DT_NEEDED entries at all (readelf output changed?)" % path
    bad = [n for n in needed if n.startswith("libsystemd")]
    assert not bad, "%s needs %s (DT_NEEDED: %s)" % (path, bad, needed)
    undefined = [line.split()[-1] for line in readelf(["--dyn-syms"], path).splitlines()
                 if " UND " in line and re.search(r"\bsd_[a-z]", line)]
    assert not undefined, "%s imports %s" % (path, undefined)
    print("ok: %s needs %s" % (path, ", ".join(needed)))


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    for path in sys.argv[1:3]:
        check(path)
    if len(sys.argv) == 4:
        with open(sys.argv[3]) as f:
            pc = f.read()
        assert "libsystemd" not in pc and "-lsystemd" not in pc, "%s:\n%s" % (sys.argv[3], pc)
        print("ok: %s does not mention libsystemd" % sys.argv[3])


try:
    main()
except AssertionError as e:
    print("FAIL: %s" % e)
    sys.exit(1)
