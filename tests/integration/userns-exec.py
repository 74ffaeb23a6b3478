#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""userns-exec.py PROGRAM [ARGS...]: runs PROGRAM as root of a new user namespace that maps every
uid and gid to itself, so that identities (SO_PEERCRED, /proc) read the same as outside, while
everything that checks a capability against the initial namespace fails as it would in a
container. The Linux audit socket then answers ECONNREFUSED (security.md §9.3).

unshare(1) needs newuidmap for a map of more than one id; writing the map for another process
needs CAP_SETUID in the parent namespace, so a child that stays outside writes it for us
(user_namespaces(7), "Defining user and group ID mappings")."""

import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: userns-exec.py PROGRAM [ARGS...]")
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        os.close(go_w)
        os.close(done_r)
        if os.read(go_r, 1) != b"x":
            os._exit(1)
        for name in ("uid_map", "gid_map"):
            with open("/proc/%d/%s" % (parent, name), "w") as f:
                f.write("0 0 4294967295\n")
        os.write(done_w, b"x")
        os._exit(0)
    os.close(go_r)
    os.close(done_w)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWUSER) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "unshare(CLONE_NEWUSER): " + os.strerror(e))
    os.write(go_w, b"x")
    ok = os.read(done_r, 1) == b"x"
    _, status = os.waitpid(child, 0)
    if not ok or status != 0:
        sys.exit("userns-exec.py: could not write the id maps")
    os.execvp(sys.argv[1], sys.argv[1:])


main()
