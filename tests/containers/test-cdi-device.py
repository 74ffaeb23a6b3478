#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""A device through CDI (issue 14): with the vfio fixture backend preloaded into the daemon
(tests/mock/vfio-mock.c, as in the integration tier's device tests), `noiommuctl cdi generate`
names one CDI device per PCI device the daemon would serve; a rootful container started with
`--device noiommud.io/vfio=<address>` alone gets the socket directory and NOIOMMUD_DEVICE, and
`noiommuctl acquire` with no argument leases that device. The lease record names the container;
the mock's event log shows the device fd handed out, and the release when the holder ends."""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import container_harness as C  # noqa: E402
import harness as H  # noqa: E402
from device_harness import BACKENDS, DEFAULT_CONFIG, GROUP_DEV, UNLISTED_DEV  # noqa: E402


def body():
    with C.device_environment(hugepages=8) as env:
        uid = env.ctest_pw.pw_uid

        with env.subtest("cdi generate names a device per served PCI device"):
            spec = env.write_cdi_spec()
            names = sorted(d["name"] for d in spec["devices"])
            H.log("CDI devices: %s" % names)
            for address in DEFAULT_CONFIG["noiommuDevices"]:
                assert address in names, "no CDI device %s in %r" % (address, names)
            if UNLISTED_DEV in names:
                # ListDevices does not say which noiommu devices the configuration lists, so
                # the client cannot leave them out; AcquireDevice refuses them in the container
                # as anywhere else
                H.log("NOTE: %s (noiommu, not in noiommuDevices) is named too: ListDevices "
                      "reports it available" % UNLISTED_DEV)
            dev = [d for d in spec["devices"] if d["name"] == GROUP_DEV][0]
            envs = dev["containerEdits"].get("env", [])
            assert "NOIOMMUD_DEVICE=%s" % GROUP_DEV in envs, envs
            assert not dev["containerEdits"].get("deviceNodes"), "CDI cannot pass fds: no device nodes"

        container = env.rootful.start(user="%d:%d" % (uid, env.ctest_pw.pw_gid), devices=(GROUP_DEV,))
        cid = container.inspect()["Id"]

        with env.subtest("noiommuctl acquire with no argument leases the CDI-selected device"):
            e = container.init_environ()
            assert e.get("NOIOMMUD_DEVICE") == GROUP_DEV, "NOIOMMUD_DEVICE in the container: %r" % e
            assert e.get("NOIOMMUD_SOCKET"), e
            mark = env.mock_log.mark()
            p = container.exec_popen(["noiommuctl", "--json", "acquire", "--hold"])
            try:
                line = H.readline_timeout(p.stdout, 30)
            except AssertionError:
                p.kill()
                raise AssertionError("noiommuctl acquire printed nothing; stderr: %r"
                                     % p.stderr.read().decode(errors="replace"))
            out = json.loads(line)
            H.log("acquire in the container: %s" % line.strip()[:300])
            dev = out.get("device", {})
            assert dev.get("address") == GROUP_DEV and dev.get("backend") == BACKENDS[GROUP_DEV], out
            lease = out["lease"]
            g = env.wait_journal("LEASE_GRANTED", NOIOMMUD_LEASE_ID=lease)[0]
            assert g.get("NOIOMMUD_CLIENT_UID") == str(uid), g
            assert g.get("NOIOMMUD_CLIENT_CONTAINER_ID") == cid, \
                "LEASE_GRANTED names container %r, podman says %s" % (g.get("NOIOMMUD_CLIENT_CONTAINER_ID"), cid)
            env.mock_log.wait("send-fd", since=mark, kind="device")

        with env.subtest("the lease ends with the holder"):
            p.stdin.close()
            rc = p.wait(20)
            assert rc == 0, "noiommuctl acquire --hold exited %d: %s" % (rc, p.stderr.read().decode(errors="replace"))
            env.wait_journal("LEASE_RELEASED", NOIOMMUD_LEASE_ID=lease)
            env.mock_log.wait("close-device", since=mark, dev=GROUP_DEV)


if __name__ == "__main__":
    C.run(body)
