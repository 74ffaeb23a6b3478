#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Root integration-test environment for noiommud (security.md §10, house-style.md §6): the
facade of the noiommutest package, which does the work one job per module (see
noiommutest/__init__.py; Environment is in noiommutest/env.py, whose docstring describes what
it builds). Every name this module had before the split is re-exported here, so test files keep
`import harness as H` and `from harness import ...`.

Exit codes: 0 pass, 1 fail, 77 skip (printed with a loud reason). Run with Debian's
/usr/bin/python3 (python3-dbus and python3-dbusmock live in its dist-packages).

Running: `meson test -C build --suite integration` as root, or one file on its own:
  NOIOMMU_BUILD_ROOT=build /usr/bin/python3 tests/integration/test-denied.py

Runs are serialized machine-wide by flock(/run/lock/noiommud-integration.lock): they share the
hugepage pool, and HugePages_Free is an oracle (noiommutest/pool.py).
"""

# Test files reach some standard modules through the facade (H.time); the old module imported
# all of these.
import contextlib  # noqa: F401
import ctypes  # noqa: F401
import fcntl  # noqa: F401
import glob  # noqa: F401
import json  # noqa: F401
import os
import re  # noqa: F401
import select  # noqa: F401
import shlex  # noqa: F401
import shutil  # noqa: F401
import signal  # noqa: F401
import socket  # noqa: F401
import struct  # noqa: F401
import subprocess  # noqa: F401
import sys
import tempfile  # noqa: F401
import threading  # noqa: F401
import time  # noqa: F401
import traceback  # noqa: F401

# The package sits next to this file, which may have been found under another spelling of
# this directory (or loaded by path).
if os.path.dirname(os.path.abspath(__file__)) not in sys.path:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from noiommutest.bus import BUS_CONFIG  # noqa: E402,F401
from noiommutest.common import (EXIT_SKIP, HERE, PR_SET_PDEATHSIG, PYTHON, BUILD_ROOT,  # noqa: E402,F401
                                SOURCE_ROOT, Skip, _libc, _pdeathsig, describe_status, find_descendant,
                                log, process_start_time, process_state, read_int, readline_timeout,
                                require, run, wait_until, write_int)
from noiommutest.env import Environment, check_prerequisites  # noqa: E402,F401
from noiommutest.journal import MSGID, JournalCapture, parse_journal_native, parse_msgids  # noqa: E402,F401
from noiommutest.oracles import (check_physical_addresses, check_segments, memfd_seals,  # noqa: E402,F401
                                 pagemap, proc_maps)
from noiommutest.polkit import (ALLOWED_UID, CHALLENGE_UID, DBUSMOCK_IFACE, DENIED_UID,  # noqa: E402,F401
                                POLKIT_BUS_NAME, POLKIT_IFACE, POLKIT_PATH, TEST_RULES, MockPolkit,
                                dbus_signature, find_policy)
from noiommutest.pool import (HUGEPAGE_2M, HUGEPAGE_SYSFS, _pool_counts, hugepages_available,  # noqa: E402,F401
                              hugepages_free, meminfo_hugepages_free)
from noiommutest.varlink import (ALLOCATE, CONNECT_HELPER, ERR, FREE, GET_DESCRIPTION, GET_INFO,  # noqa: E402,F401
                                 INTERFACE_NOT_FOUND, INVALID_PARAMETER, LIST, METHOD_NOT_FOUND,
                                 Connection, VarlinkError, allocate, strict_json)


def __getattr__(name):
    # _pool_base changes during a run: read it where it lives (PEP 562), never a stale copy.
    if name == "_pool_base":
        from noiommutest import pool
        return pool._pool_base
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
