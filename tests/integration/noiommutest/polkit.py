# SPDX-License-Identifier: LGPL-2.1-or-later
"""polkit for the tests, on the private bus (bus.py):

  * the test rules and their users: uid 1 (daemon) is allowed, uid 2 (bin) has no rule
    (default "no" for an inactive subject), uid 3 (sys) is answered with auth_admin;
  * the real polkitd in a private mount namespace, with the project's action file (or none)
    and the test rules bind-mounted over the system directories;
  * or python3-dbusmock's polkitd template (MockPolkit), for tests that must hang, delay or
    inspect the exact CheckAuthorization call (security.md §10.1).

PolkitControl is a mixin of Environment (it needs self.tmp, self.spawn(), self._kill(),
self.read_log(), self.env and self.bus_address)."""

import contextlib
import os
import re
import shutil
import signal

from .common import BUILD_ROOT, PYTHON, SOURCE_ROOT, process_state, wait_until

# Users of the test rules. uid 1 (daemon) is allowed, uid 2 (bin) has no rule (default "no"
# for an inactive subject), uid 3 (sys) is answered with auth_admin (a challenge).
ALLOWED_UID = 1
DENIED_UID = 2
CHALLENGE_UID = 3

TEST_RULES = """\
// Test rules of the noiommud integration tests (tests/integration/harness.py).
// No logind here: every subject is inactive, so rules decide.
polkit.addRule(function(action, subject) {
        if (action.id.indexOf("io.noiommud.") != 0 && action.id != "org.freedesktop.policykit.exec")
                return polkit.Result.NOT_HANDLED;
        if (subject.user == "daemon")
                return polkit.Result.YES;
        if (subject.user == "sys")
                return polkit.Result.AUTH_ADMIN;
        return polkit.Result.NOT_HANDLED;
});
"""

POLKIT_BUS_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_IFACE = "org.freedesktop.PolicyKit1.Authority"
DBUSMOCK_IFACE = "org.freedesktop.DBus.Mock"


def dbus_signature(v):
    """The D-Bus type signature of a value as python3-dbus unmarshalled it (for a value that came
    in a variant, the signature of what the variant held). Exact: each python3-dbus class stands
    for one wire type."""
    import dbus
    for cls, sig in ((dbus.Boolean, "b"), (dbus.Byte, "y"), (dbus.Int16, "n"), (dbus.UInt16, "q"),
                     (dbus.Int32, "i"), (dbus.UInt32, "u"), (dbus.Int64, "x"), (dbus.UInt64, "t"),
                     (dbus.Double, "d"), (dbus.ObjectPath, "o"), (dbus.Signature, "g"),
                     (dbus.String, "s"), (dbus.types.UnixFd, "h")):
        if type(v) is cls:
            return sig
    if isinstance(v, dbus.Struct):
        return "(" + "".join(dbus_signature(x) for x in v) + ")"
    if isinstance(v, dbus.Dictionary) and v.signature:
        return "a{%s}" % v.signature
    if isinstance(v, dbus.Array) and v.signature:
        return "a" + v.signature
    raise AssertionError("no D-Bus signature for %r (%s)" % (v, type(v).__name__))


class MockPolkit:
    """python3-dbusmock's polkitd template on the private bus, driven over python3-dbus
    (Environment(polkit="mock") or env.start_mock_polkitd()). Template semantics (0.28):

      * set_allowed(actions) / allow_unknown(b): CheckAuthorization answers
        (allowed, false, {"test": "test"}) with allowed = action in the list, or allow_unknown;
        by default every action is denied.
      * set_delay(seconds): each CheckAuthorization sleeps first. The mock is single-threaded, so
        this also delays every later call to it, control calls included: calls are answered one
        after another.
      * simulate_hang(b) / simulate_hang_actions(actions): CheckAuthorization (of those actions)
        is logged but not answered until release_hanging_calls(), which answers all parked calls.
      * The call log: get_calls() (org.freedesktop.DBus.Mock.GetCalls), pop_calls() (takes the
        logged calls out of the mock, nothing logged meanwhile is lost), clear_calls(). Each call
        is (unix time, method, [args]) with the args as python3-dbus values, so dbus_signature()
        gives their exact D-Bus types. A pidfd in a subject comes back as a dbus.types.UnixFd
        holding a duplicate of it (closed when the object goes away; .take() keeps it). The bus
        takes at most 16 fds per message and disconnects a sender that puts more in one (the
        mock then exits): get_calls() fails past 16 logged pidfds, pop_calls() fetches in
        batches of POP_BATCH calls.
      * CancelCheckAuthorization(s), which the template lacks, is added with AddMethod so that it
        is accepted and logged like the other calls.
    """

    POP_BATCH = 8

    def __init__(self, bus_address, timeout=60):
        import dbus
        self.timeout = timeout
        self.bus = dbus.bus.BusConnection(bus_address)
        obj = self.bus.get_object(POLKIT_BUS_NAME, POLKIT_PATH, introspect=False)
        self.mock = dbus.Interface(obj, DBUSMOCK_IFACE)
        self.authority = dbus.Interface(obj, POLKIT_IFACE)
        xml = obj.Introspect(dbus_interface="org.freedesktop.DBus.Introspectable", timeout=timeout)
        if 'name="CancelCheckAuthorization"' not in xml:
            self.mock.AddMethod(POLKIT_IFACE, "CancelCheckAuthorization", "s", "", "", timeout=timeout)
        self.mock.AddMethod(DBUSMOCK_IFACE, "PopCalls", "u", "a(tsav)",
                            "log = [c for c in self.call_log if c[1] != 'PopCalls']\n"
                            "ret, self.call_log = log[:args[0]], log[args[0]:]",
                            timeout=timeout)

    def close(self):
        if self.bus is not None:
            self.bus.close()
            self.bus = None

    def _call(self, name, *args):
        return getattr(self.mock, name)(*args, timeout=self.timeout)

    def set_allowed(self, actions):
        import dbus
        self._call("SetAllowed", dbus.Array(actions, signature="s"))

    def allow_unknown(self, allow):
        self._call("AllowUnknown", bool(allow))

    def set_delay(self, seconds):
        self._call("SetDelay", float(seconds))

    def simulate_hang(self, hang):
        self._call("SimulateHang", bool(hang))

    def simulate_hang_actions(self, actions):
        import dbus
        self._call("SimulateHangActions", dbus.Array(actions, signature="s"))

    def release_hanging_calls(self):
        self._call("ReleaseHangingCalls")

    def have_hanging_calls(self):
        return bool(self._call("HaveHangingCalls"))

    def get_calls(self):
        return [(int(t), str(m), list(a)) for t, m, a in self._call("GetCalls")]

    def pop_calls(self):
        out = []
        while True:
            batch = self._call("PopCalls", self.POP_BATCH)
            out += [(int(t), str(m), list(a)) for t, m, a in batch]
            if len(batch) < self.POP_BATCH:
                return out

    def clear_calls(self):
        self._call("ClearCalls")


def find_policy():
    override = os.environ.get("NOIOMMU_TEST_POLICY")
    candidates = [override] if override else [
        os.path.join(SOURCE_ROOT, "policy", "io.noiommud.policy"),
        os.path.join(BUILD_ROOT, "policy", "io.noiommud.policy"),
    ]
    for c in candidates:
        if c and os.path.exists(c):
            return c
    raise AssertionError("polkit action file not found (looked at %s)" % ", ".join(candidates))


class PolkitControl:
    """Starting, stopping and freezing polkitd (real or mock), its action file, and watching
    its calls on the bus."""

    def set_policy_installed(self, installed):
        """Adds or removes the action file (polkitd picks the change up live)."""
        dst = os.path.join(self.tmp, "actions", "io.noiommud.policy")
        if installed:
            shutil.copyfile(find_policy(), dst)
            os.chmod(dst, 0o644)
        elif os.path.exists(dst):
            os.unlink(dst)

    # polkitd reads the test's rules in place of /etc/polkit-1/rules.d; an environment that
    # brings its own /etc (tests/docs/test-admin-guide.py) sets this to False.
    polkit_test_rules = True

    def start_polkitd(self):
        script = ("mount --make-rprivate / && " +
                  ("mount --bind \"$1/rules\" /etc/polkit-1/rules.d && " if self.polkit_test_rules else "") +
                  "mount --bind \"$1/empty\" /usr/share/polkit-1/rules.d && "
                  "mount --bind \"$1/actions\" /usr/share/polkit-1/actions && "
                  "exec /usr/lib/polkit-1/polkitd --no-debug")
        self.polkitd = self.spawn("polkitd", ["unshare", "-m", "sh", "-c", script, "sh", self.tmp],
                                   env=self.env)

        def owned():
            if self.polkitd.poll() is not None:
                raise AssertionError("polkitd exited with %s:\n%s"
                                     % (self.polkitd.returncode, self.read_log("polkitd")))
            return self.bus_name_owner("org.freedesktop.PolicyKit1")
        wait_until(owned, 15, "polkitd to own org.freedesktop.PolicyKit1", interval=0.02)

    def start_mock_polkitd(self):
        """python3-dbusmock's polkitd template in place of polkitd (security.md §10.1); returns
        (and keeps as self.polkit_mock) a MockPolkit. Its call log goes to logs/polkitd-mock.log."""
        self.polkitd = self.spawn("polkitd-mock", [PYTHON, "-m", "dbusmock", "--system", "--template",
                                                   "polkitd"], env=self.env)

        def owned():
            if self.polkitd.poll() is not None:
                raise AssertionError("the polkitd mock exited with %s:\n%s"
                                     % (self.polkitd.returncode, self.read_log("polkitd-mock")))
            return self.bus_name_owner(POLKIT_BUS_NAME)
        wait_until(owned, 15, "the polkitd mock to own " + POLKIT_BUS_NAME, interval=0.02)
        self.polkit_mock = MockPolkit(self.bus_address)
        return self.polkit_mock

    def stop_polkitd(self):
        if self.polkitd is not None:
            self._kill("polkitd-mock" if self.polkit_mock else "polkitd")
            self.polkitd = None
        if self.polkit_mock is not None:
            self.polkit_mock.close()
            self.polkit_mock = None

    @contextlib.contextmanager
    def polkitd_stopped(self):
        """SIGSTOPs the real polkitd for the duration of the block (SIGCONT on the way out)."""
        pid = self.polkitd.pid
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_until(lambda: process_state(pid) in ("T", "t"), 5, "polkitd to stop")
            yield pid
        finally:
            os.kill(pid, signal.SIGCONT)

    def start_bus_monitor(self):
        """dbus-monitor on the private bus, watching polkit's Authority interface; its output
        goes to logs/dbus-monitor.log (see monitor_count)."""
        p = self.spawn("dbus-monitor", ["dbus-monitor", "--address", self.bus_address,
                                        "interface='org.freedesktop.PolicyKit1.Authority'"],
                       env=self.env)
        # dbus-monitor announces itself with a NameAcquired/NameLost signal once it monitors
        wait_until(lambda: "member=NameLost" in self.read_log("dbus-monitor")
                   or "member=NameAcquired" in self.read_log("dbus-monitor"), 10,
                   "dbus-monitor to start")
        return p

    def monitor_count(self, member):
        """How many method calls named `member` dbus-monitor has seen so far."""
        return len(re.findall(r"method call .* member=%s\b" % member,
                              self.read_log("dbus-monitor", tail=None)))
