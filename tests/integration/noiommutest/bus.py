# SPDX-License-Identifier: LGPL-2.1-or-later
"""The private system bus of one test: a dbus-daemon with a permissive policy and no service
activation on <tmp>/system_bus_socket, exported as DBUS_SYSTEM_BUS_ADDRESS. The host's own bus
is never touched. PrivateBus is a mixin of Environment (it needs self.tmp, self.spawn(),
self._kill(), self.read_log() and the polkit methods for restart_bus())."""

import os
import select
import subprocess

BUS_CONFIG = """\
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <!-- Private system bus of one noiommud integration test. No servicedir: no activation. -->
  <type>system</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""


class PrivateBus:
    def _start_bus(self):
        self.bus_path = os.path.join(self.tmp, "system_bus_socket")
        conf = os.path.join(self.tmp, "bus.conf")
        with open(conf, "w") as f:
            f.write(BUS_CONFIG.format(path=self.bus_path))
        p = self.spawn("dbus-daemon", ["dbus-daemon", "--config-file=" + conf, "--nofork",
                                        "--print-address", "--nosyslog"], stdout=subprocess.PIPE)
        r, _, _ = select.select([p.stdout], [], [], 10)
        line = p.stdout.readline().decode().strip() if r else ""
        if not line.startswith("unix:"):
            raise AssertionError("dbus-daemon did not print its address (got %r)\n%s"
                                 % (line, self.read_log("dbus-daemon")))
        p.stdout.close()
        # Without the printed ",guid=...": a client checks the server's guid against the
        # address, so a restarted bus on the same path would be refused (EPERM in sd-bus).
        self.bus_address = "unix:path=" + self.bus_path
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = self.bus_address
        self.env = dict(os.environ)

    def bus_name_owner(self, name):
        r = subprocess.run(["dbus-send", "--system", "--print-reply=literal", "--reply-timeout=2000",
                            "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
                            "org.freedesktop.DBus.GetNameOwner", "string:" + name],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=self.env)
        return r.stdout.decode().strip() if r.returncode == 0 else None

    def restart_bus(self):
        """Kills the private dbus-daemon (and polkitd, which exits with it) and starts a new one
        on the same socket path, with polkitd (or the mock, in its default state) again if this
        environment has one."""
        had_polkit = "mock" if self.polkit_mock else self.polkitd is not None
        self.stop_polkitd()
        self._kill("dbus-daemon")
        if os.path.exists(self.bus_path):
            os.unlink(self.bus_path)
        self._start_bus()
        if had_polkit == "mock":
            self.start_mock_polkitd()
        elif had_polkit:
            self.start_polkitd()
