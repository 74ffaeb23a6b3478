#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""test-cdi-rootful.py from rootless podman (as CTEST_USER, --userns keep-id): the client is in
a user namespace owned by CTEST_USER. On a cgroup v1 host rootless podman makes no cgroup, so the
container id can only be named where the cgroup path shows one (checked when it does)."""

import importlib.util
import os

spec = importlib.util.spec_from_file_location(
    "test_cdi_rootful", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-cdi-rootful.py"))
t = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t)
t.ROOTLESS = True

if __name__ == "__main__":
    t.C.run(t.body)
