#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Monitor(): a Varlink "more" stream of lease changes (and device hotplug, whose uevent
classification is unit-tested in test-monitor.c; real bind/unbind events need the VM tier).

  * only with "more": true (org.varlink.service.ExpectedMore otherwise), only for
    io.noiommud.manage;
  * the first reply is {"event": "subscribed"}, every reply carries "continues": true;
  * another client's acquire and release appear as lease-granted (uid, pid, backend) and
    lease-released (reason release); a kill -9 of the holder as lease-released reason
    client-exit; a failed quiesce as lease-quarantined;
  * a subscriber that goes away is simply dropped; the daemon stays healthy.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from device_harness import CDEV_IOMMU_DEV, GROUP_DEV, RELEASE, DeviceEnvironment, acquire, run
import harness as H  # noqa: E402

MONITOR = "io.noiommud.Broker.Monitor"


def next_event(m, timeout=10):
    msg, fds = m.recv(timeout)
    assert msg is not None, "the monitor stream ended"
    assert not fds, "a Monitor reply carried fds"
    assert msg.get("continues") is True, "Monitor reply without continues: %r" % msg
    return msg["parameters"]


def main():
    with DeviceEnvironment(hugepages=16) as env:
        with env.subtest("Monitor without more: ExpectedMore; denied uid: PermissionDenied"):
            c = env.connect(uid=H.ALLOWED_UID)
            err, params = c.call_error(MONITOR, {})
            assert err == "org.varlink.service.ExpectedMore" and params == {}, (err, params)
            c.close()
            d = env.connect(uid=H.DENIED_UID)
            d.send(MONITOR, {}, more=True)
            msg, _ = d.recv()
            assert msg.get("error") == H.ERR + "PermissionDenied", msg
            d.close()

        m = env.connect(uid=H.ALLOWED_UID)
        with env.subtest("subscribe: first reply is 'subscribed'"):
            m.send(MONITOR, {}, more=True)
            assert next_event(m) == {"event": "subscribed"}

        with env.subtest("acquire and release of another client: lease-granted, lease-released"):
            c = env.connect(uid=H.ALLOWED_UID)
            lease, dfd = acquire(c, GROUP_DEV)
            e = next_event(m)
            assert e["event"] == "lease-granted" and e["lease"] == lease["lease"], e
            assert e["device"] == GROUP_DEV and e["backend"] == "group-noiommu", e
            assert e["uid"] == H.ALLOWED_UID and e["pid"] == c.pid, e
            os.close(dfd)
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            e = next_event(m)
            assert e == {"event": "lease-released", "lease": lease["lease"], "device": GROUP_DEV,
                         "reason": "release"}, e
            c.close()

        with env.subtest("holder killed: lease-released reason client-exit"):
            c = env.connect(uid=H.ALLOWED_UID)
            lease, dfd = acquire(c, GROUP_DEV)
            os.close(dfd)
            assert next_event(m)["event"] == "lease-granted"
            c.end_process(kill=True)
            c.close()
            e = next_event(m)
            assert e["event"] == "lease-released" and e["reason"] == "client-exit", e

        with env.subtest("failed quiesce: lease-quarantined"):
            with env.fault("bme-stuck"):
                c = env.connect(uid=H.ALLOWED_UID)
                lease, dfd = acquire(c, GROUP_DEV)
                os.close(dfd)
                assert next_event(m)["event"] == "lease-granted"
                err, _ = c.call_error(RELEASE, {"lease": lease["lease"]})
                assert err == H.ERR + "DeviceQuarantined", err
                e = next_event(m)
                assert e["event"] == "lease-quarantined" and e["lease"] == lease["lease"], e
                c.close()

        with env.subtest("noiommuctl --json monitor prints the same events, one line each"):
            p = env.ctl_popen(["--json", "monitor"])
            first = H.readline_timeout(p.stdout, 10)
            assert first.strip() in (b'{"event":"subscribed"}', '{"event":"subscribed"}'), first
            c = env.connect(uid=H.ALLOWED_UID)
            # GROUP_DEV is quarantined by the previous subtest
            lease, dfd = acquire(c, CDEV_IOMMU_DEV)
            os.close(dfd)
            import json
            line = H.readline_timeout(p.stdout, 10)
            e = json.loads(line)
            assert e["event"] == "lease-granted" and e["lease"] == lease["lease"], e
            c.call_ok(RELEASE, {"lease": lease["lease"]})
            e = json.loads(H.readline_timeout(p.stdout, 10))
            assert e["event"] == "lease-released" and e["reason"] == "release", e
            c.close()
            p.terminate()
            p.wait(timeout=10)
            # a user polkit denies: exit status 1, an error, no events
            r = env.ctl(["monitor"], uid=H.DENIED_UID)
            assert r.returncode == 1 and "PermissionDenied" in r.stderr, (r.returncode, r.stderr)

        with env.subtest("the subscriber goes away: the daemon carries on"):
            m.close()
            c = env.connect(uid=H.ALLOWED_UID)
            assert c.call_ok(H.GET_INFO)[0]["product"] == "noiommud"
            c.close()
            env.assert_daemon_alive()


if __name__ == "__main__":
    run(main)
