#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Issue 14, finding 1: root in a rootful container without a user namespace is host uid 0, and
polkitd answers "yes" to uid 0 without running any rule. The daemon decides from the kernel:
a client without the capabilities the operation needs (CAP_SYS_ADMIN in the initial user
namespace for physical addresses) does not get polkit's root shortcut.

  * by default it is refused, with reason root-without-capabilities in the error and in the audit
    record, and polkit is never asked (dbus-monitor counts no CheckAuthorization);
  * host root with its full capability set is still served (the control);
  * with "rootWithoutCapabilities": "polkit" in the daemon's configuration, container root goes
    to polkit like anyone else, and polkit's uid-0 answer lets it through."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import container_harness as C  # noqa: E402
import harness as H  # noqa: E402

REASON = "root-without-capabilities"


def cap_eff(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return None


def body():
    with C.ContainerEnvironment(hugepages=8) as env:
        env.write_cdi_spec()
        container = env.rootful.start()          # the image's default user: root
        info = container.inspect()
        pid0 = info["State"]["Pid"]
        caps = cap_eff(pid0)
        H.log("container root: host uid %d, CapEff %#x (CAP_SYS_ADMIN %s, CAP_SYS_RAWIO %s)"
              % (os.stat("/proc/%d" % pid0).st_uid, caps, bool(caps >> 21 & 1), bool(caps >> 17 & 1)))
        assert os.stat("/proc/%d" % pid0).st_uid == 0, "the container's root is not host uid 0"
        assert not caps >> 21 & 1 and not caps >> 17 & 1, "podman gave CAP_SYS_ADMIN/CAP_SYS_RAWIO"
        env.start_bus_monitor()

        with env.subtest("container root is refused by default, polkit is not asked"):
            before = env.monitor_count("CheckAuthorization")
            r = container.exec(["noiommuctl", "--json", "alloc", "2M"])
            H.log("noiommuctl exit %d, stdout %s, stderr %s" % (r.returncode, r.stdout.strip(), r.stderr.strip()))
            assert r.returncode == 1, "container root was served (exit %d): %s" % (r.returncode, r.stdout)
            assert REASON in r.stdout + r.stderr, "the error does not say %s: %r" % (REASON, r.stdout + r.stderr)
            e = H.wait_until(lambda: [x for x in env.journal.find() if x.get("NOIOMMUD_REASON") == REASON], 10,
                             lambda: "a journal record with NOIOMMUD_REASON=%s:\n%s" % (REASON, env.journal.describe()))
            e = e[0]
            assert e.get("NOIOMMUD_CLIENT_UID") == "0", e
            H.log("audit record: [%s] %s" % (e.get("MESSAGE_ID"), e.get("MESSAGE")))
            assert env.monitor_count("CheckAuthorization") == before, \
                "polkit was asked for a client that is refused before polkit"
            assert not env.find_journal("MEMORY_GRANTED"), "memory was granted"

        with env.subtest("host root with its capabilities is still served"):
            c = env.connect()
            r, fd = H.allocate(c, 2 << 20)
            os.close(fd)
            c.close()

        config = os.path.join(env.tmp, "noiommud-root-polkit.conf")
        with open(config, "w") as f:
            json.dump({"rootWithoutCapabilities": "polkit"}, f)
        env.restart_daemon(extra_args=["--config", config])

        with env.subtest('rootWithoutCapabilities "polkit": container root goes to polkit and is allowed'):
            before = env.monitor_count("CheckAuthorization")
            r = container.exec(["noiommuctl", "--json", "alloc", "2M"])
            assert r.returncode == 0, "refused with rootWithoutCapabilities=polkit (exit %d): %s %s" % (
                r.returncode, r.stdout, r.stderr)
            out = json.loads(r.stdout.splitlines()[0])
            g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=out["memory"])[0]
            assert g.get("NOIOMMUD_CLIENT_UID") == "0", g
            H.wait_until(lambda: env.monitor_count("CheckAuthorization") > before, 5,
                         "a CheckAuthorization call on the bus")


if __name__ == "__main__":
    C.run(body)
