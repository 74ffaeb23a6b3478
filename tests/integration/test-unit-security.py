#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Exposure of the hardened unit (design.md §4): `systemd-analyze security --offline=true` on
the built noiommud.service. Prints the whole table and the overall exposure, and fails if the
exposure is above 2.5, or if the unit lacks what the design requires: Type=notify, WatchdogSec=,
a CapabilityBoundingSet= that keeps CAP_SYS_RAWIO (noiommu devices) and CAP_SYS_ADMIN (pagemap
physical addresses), and PrivateDevices= not enabled (it would drop CAP_SYS_RAWIO and hide
/dev/vfio). Exit 77 only if systemd-analyze is not installed.
"""

import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("NOIOMMU_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("NOIOMMU_BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build")
UNIT = os.path.join(BUILD_ROOT, "units", "noiommud.service")
MAX_EXPOSURE = 2.5

TRUE = ("1", "yes", "true", "on")


def parse_service(path):
    """[Service] assignments as {key: [values]} (a later empty assignment resets a list)."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section != "Service":
                continue
            k, _, v = line.partition("=")
            k, v = k.strip(), v.strip()
            if v == "":
                out[k] = []
            else:
                out.setdefault(k, []).append(v)
    return out


def main():
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        print("SKIP: systemd-analyze not installed")
        return 77
    assert os.path.exists(UNIT), "%s not built" % UNIT

    failures = []
    env = dict(os.environ, SYSTEMD_COLORS="0", SYSTEMD_PAGER="", LC_ALL="C.UTF-8")
    r = subprocess.run([analyze, "security", "--offline=true", "--no-pager", UNIT],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env=env, timeout=60)
    print(r.stdout)
    if r.stderr:
        print("--- stderr ---\n" + r.stderr)
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout)
    if r.returncode != 0 or not m:
        failures.append("systemd-analyze security exited %d without an overall exposure" % r.returncode)
    else:
        exposure = float(m.group(1))
        print("exposure: %.1f (limit %.1f)" % (exposure, MAX_EXPOSURE))
        if exposure > MAX_EXPOSURE:
            failures.append("exposure %.1f is above %.1f" % (exposure, MAX_EXPOSURE))

    svc = parse_service(UNIT)
    if svc.get("Type", [""])[-1] != "notify":
        failures.append("Type=%r, expected notify" % svc.get("Type"))
    watchdog = svc.get("WatchdogSec", [])
    if not watchdog or watchdog[-1] in ("0", "infinity"):
        failures.append("no WatchdogSec= (got %r)" % watchdog)
    caps = " ".join(svc.get("CapabilityBoundingSet", [])).split()
    if not caps:
        failures.append("no CapabilityBoundingSet=")
    elif caps[0].startswith("~"):
        failures.append("CapabilityBoundingSet= is a deny list (%r); expected an allow list" % caps)
    else:
        for cap in ("CAP_SYS_RAWIO", "CAP_SYS_ADMIN"):
            if cap not in caps:
                failures.append("CapabilityBoundingSet= lacks %s (%r)" % (cap, caps))
    private_devices = svc.get("PrivateDevices", ["no"])[-1].lower()
    if private_devices in TRUE:
        failures.append("PrivateDevices=%s would drop CAP_SYS_RAWIO and hide /dev/vfio" % private_devices)

    for f in failures:
        print("FAIL: %s" % f)
    if failures:
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
