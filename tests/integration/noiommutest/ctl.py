# SPDX-License-Identifier: LGPL-2.1-or-later
"""noiommuctl, the built client, run against the test's daemon as any uid (under setpriv, as
ALLOWED_UID by default). CtlHelpers is a mixin of Environment (it needs self.ctl_bin,
self.socket_path, self.env and self.procs)."""

import os
import subprocess

from .common import _pdeathsig
from .polkit import ALLOWED_UID


class CtlHelpers:
    """noiommuctl --socket <ours> ARGS, to completion or in the background."""

    def ctl(self, args, uid=ALLOWED_UID, gid=None, timeout=30, input=None, check=False):
        """Runs noiommuctl --socket <ours> ARGS as uid (None: root). Returns CompletedProcess
        with str stdout/stderr."""
        argv = self.ctl_argv(args, uid, gid)
        r = subprocess.run(argv, input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, env=self.env, cwd="/", preexec_fn=_pdeathsig,
                           universal_newlines=True)
        if check and r.returncode != 0:
            raise AssertionError("%s exited %d\nstdout: %s\nstderr: %s"
                                 % (" ".join(argv), r.returncode, r.stdout, r.stderr))
        return r

    def ctl_argv(self, args, uid=ALLOWED_UID, gid=None):
        if not os.path.exists(self.ctl_bin):
            raise AssertionError("noiommuctl not built: %s" % self.ctl_bin)
        argv = [self.ctl_bin, "--socket", self.socket_path] + list(args)
        if uid is not None:
            argv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % (uid if gid is None else gid),
                    "--clear-groups"] + argv
        return argv

    def ctl_popen(self, args, uid=ALLOWED_UID, gid=None):
        """Starts noiommuctl (for --hold) with pipes; killed at teardown."""
        argv = self.ctl_argv(args, uid, gid)
        p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=self.env, cwd="/", start_new_session=True,
                             preexec_fn=_pdeathsig)
        self.procs["noiommuctl-%d" % p.pid] = p
        return p
