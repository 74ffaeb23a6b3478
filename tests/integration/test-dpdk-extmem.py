#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""DPDK as a real client (issue 13, docs/dpdk.md): examples/dpdk-extmem, DPDK 22.11's own EAL,
malloc heap and mempool, against the real daemon and the real polkitd.

  * as the allowed (unprivileged, no capabilities) user: the EAL starts without hugepages or
    PCI of its own, takes 128 MiB from noiommud as external memory and builds an mbuf pool on it;
    the example checks every mbuf's buf_iova against the daemon's segment table. Here, as root,
    the example's own /proc/PID/pagemap is the oracle: every page of its mapping of the memfd is
    where the segment table says, and a spread of mbufs (first and last byte of each buffer) is
    at the physical address DPDK put in buf_iova. It holds no hugetlb memory but the memfd, has
    no capabilities, and frees the memory itself at shutdown (MEMORY_FREED reason "free", not
    "client-exit"); the hugepages come back;
  * the same through "noiommuctl run --memory 64M -- noiommu-dpdk-extmem" (adopted with
    noiommu_from_environment());
  * a user polkit denies: exit status 3 and PermissionDenied on stderr, before DPDK starts (no
    EAL output, no signal).

With --container (meson test dpdk-container, suite containers): the same program in a rootful
podman container as a non-root user with only the CDI socket device (no /dev/hugepages, no
/dev/vfio, no capabilities), started by "noiommuctl run --memory 64M -- noiommu-dpdk-extmem";
from the host, the daemon's record names the example's host pid, whose pagemap is checked as
above. Uses tests/containers/container_harness.py (a rootfs of busybox plus the ldd closure of
the example: DPDK's libraries, without its driver plugin directory).

Skips (77) only when the example was not built (no libdpdk-dev when meson was configured), and
with --container when podman cannot run here (container_harness says why).
"""

import glob
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as H  # noqa: E402

MiB = 1 << 20
EXAMPLE = os.environ.get("NOIOMMU_DPDK_EXTMEM", "")
SIZE = 128 * MiB


def example_argv(env, args, uid, socket=True):
    argv = ["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid, "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all"]
    return argv + [EXAMPLE] + (["--socket", env.socket_path] if socket else []) + list(args)


def start(env, argv):
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env.env, cwd="/", start_new_session=True, preexec_fn=H._pdeathsig)
    env.procs["dpdk-extmem-%d" % p.pid] = p
    return p


def read_json(p, what):
    try:
        line = H.readline_timeout(p.stdout, 60)
    except AssertionError:
        p.kill()
        raise AssertionError("%s: no output; stderr: %s" % (what, p.stderr.read().decode(errors="replace")))
    if not line:
        p.wait(10)
        raise AssertionError("%s printed nothing, %s; stderr: %s" % (
            what, H.describe_status(p.returncode), p.stderr.read().decode(errors="replace")))
    return json.loads(line)


def stop(env, p, base):
    """After a failed check: end the example and let the daemon reclaim its memory, so that the
    next block starts from the baseline (best effort: the block has failed already)."""
    if p.poll() is None:
        p.kill()
        p.wait(10)
        try:
            env.wait_baseline(base, what="after killing the example")
        except AssertionError as e:
            H.log(str(e))


def finish(p, what):
    p.stdin.close()
    rc = p.wait(30)
    err = p.stderr.read().decode(errors="replace")
    assert rc == 0, "%s: %s; stderr:\n%s" % (what, H.describe_status(rc), err)
    return err


def check_result(res, pid, uid):
    assert res.get("error") is None, res
    assert res["uid"] == uid, res
    assert res["iovaMode"] == "VA", "EAL IOVA mode %r (the example asks for VA)" % res["iovaMode"]
    assert res["version"].startswith("DPDK "), res["version"]
    assert res["socket"] >= 0, res
    assert res["mbufs"] > 0 and res["checked"] == res["mbufs"] and res["bad"] == 0, \
        "checked %d of %d mbufs, %d with a wrong buf_iova" % (res["checked"], res["mbufs"], res["bad"])
    assert res["memzone"]["iova"] == res["memzone"]["expected"], res["memzone"]
    assert res["malloc"]["iova"] == res["malloc"]["expected"], res["malloc"]
    assert len(res["sample"]) >= 32, "sample of %d mbufs" % len(res["sample"])


def check_pagemap(pid, res, size):
    """As root: the example's memfd mapping is where the segment table says, and the sampled
    mbufs' buffers (first and last byte) are at the physical address in their buf_iova."""
    area = res["area"]
    vmas = [v for v in H.proc_maps(pid) if v["start"] <= area["va"] < v["end"]]
    assert len(vmas) == 1 and vmas[0]["path"].startswith("/memfd:noiommud-"), \
        "the heap's memory at %#x is not the noiommud memfd: %r" % (area["va"], vmas)
    vma = vmas[0]
    assert vma["end"] - vma["start"] == size == area["size"], (vma, area)
    # the table the example handed DPDK (rte_malloc_heap_memory_add) is the truth, page by page
    H.check_segments({"segments": res["segments"], "hugepageSize": area["pageSize"]}, size)
    n = H.check_physical_addresses(pid, vma, res["segments"], size)
    assert n == size // 4096, "checked %d pages of %d" % (n, size // 4096)
    # hugetlb mappings of the example: the memfd only (no hugetlbfs of its own)
    huge = [v for v in H.proc_maps(pid) if "hugepages" in v["path"] or "rtemap" in v["path"]]
    assert not huge, "the example maps hugetlbfs files of its own: %r" % huge
    with open("/proc/%d/status" % pid) as f:
        caps = {k: v.strip() for k, v in (line.split(":", 1) for line in f) if k.startswith("Cap")}
    assert caps["CapEff"] == "0000000000000000" and caps["CapPrm"] == "0000000000000000", caps
    return vma


def sample_pagemap(pid, res):
    n = 0
    for mb in res["sample"]:
        for off in (0, mb["len"] - 1):
            va = mb["va"] + off
            pa = H.pagemap(pid, va & ~4095, 4096)[0]
            assert pa is not None, "mbuf buffer page at %#x not present" % va
            assert pa + (va & 4095) == mb["iova"] + off, \
                "mbuf buffer byte at %#x: pagemap says %#x, buf_iova + %d = %#x" % (
                    va, pa + (va & 4095), off, mb["iova"] + off)
            n += 1
    return n


def main():
    if not EXAMPLE or not os.access(EXAMPLE, os.X_OK):
        raise H.Skip("examples/dpdk-extmem was not built: DPDK (libdpdk-dev 22.11, "
                     "scripts/install-deps.sh) was not found when meson was configured, or -Ddpdk=disabled")
    with H.Environment(hugepages=SIZE // H.HUGEPAGE_2M + 8) as env:
        base = env.settled_baseline(H.hugepages_free())

        with env.subtest("allowed user, no capabilities: mbuf pool on noiommud memory, every buf_iova"):
            p = start(env, example_argv(env, ["--json", "--hold", "--memory", "%dM" % (SIZE // MiB),
                                              "--sample", "256"], H.ALLOWED_UID))
            try:
                ready = read_json(p, "noiommu-dpdk-extmem")
                assert ready.get("ready") is True and ready["pid"] == p.pid, ready
                res = read_json(p, "noiommu-dpdk-extmem")
                check_result(res, p.pid, H.ALLOWED_UID)
                # the pool fills the memory: at least 85% of what fits if nothing else were there
                assert res["mbufs"] >= 0.85 * SIZE / 2432, "only %d mbufs in %d bytes" % (res["mbufs"], SIZE)

                vma = check_pagemap(p.pid, res, SIZE)
                memory_id = vma["path"][len("/memfd:noiommud-"):].split()[0]
                g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=memory_id)
                assert len(g) == 1 and g[0].get("NOIOMMUD_CLIENT_PID") == str(p.pid), g
                assert g[0].get("NOIOMMUD_CLIENT_UID") == str(H.ALLOWED_UID), g
                assert H.hugepages_free() == base[1] - SIZE // H.HUGEPAGE_2M, H.hugepages_free()
                checked = sample_pagemap(p.pid, res)
                H.log("pagemap: %d buffer bytes of %d sampled mbufs at their buf_iova; pool %d mbufs"
                      % (checked, len(res["sample"]), res["mbufs"]))

                err = finish(p, "noiommu-dpdk-extmem")
                assert "EAL: Selected IOVA mode 'VA'" in err, err
                f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=memory_id)
                # "free": the example removed the memory from DPDK's heap and then freed it itself,
                # it did not leave it to the daemon's clean-up at disconnect
                assert f[0].get("NOIOMMUD_REASON") == "free", f
                env.wait_baseline(base, what="after the example exited")
            finally:
                stop(env, p, base)

        with env.subtest("noiommuctl run --memory 64M -- noiommu-dpdk-extmem: adopted memory"):
            argv = ["setpriv", "--reuid=%d" % H.ALLOWED_UID, "--regid=%d" % H.ALLOWED_UID, "--clear-groups",
                    env.ctl_bin, "--socket", env.socket_path, "run", "--memory", "64M", "--",
                    EXAMPLE, "--json", "--hold"]
            p = start(env, argv)
            try:
                ready = read_json(p, "noiommuctl run noiommu-dpdk-extmem")
                assert ready["pid"] == p.pid, "exec keeps the pid: %r vs %d" % (ready, p.pid)
                res = read_json(p, "noiommuctl run noiommu-dpdk-extmem")
                check_result(res, p.pid, H.ALLOWED_UID)
                check_pagemap(p.pid, res, 64 * MiB)
                sample_pagemap(p.pid, res)
                finish(p, "noiommuctl run noiommu-dpdk-extmem")
                env.wait_baseline(base, what="after noiommuctl run exited")
            finally:
                stop(env, p, base)

        with env.subtest("denied user: exit status 3 and polkit's answer, DPDK never started"):
            r = subprocess.run(example_argv(env, ["--memory", "16M"], H.DENIED_UID), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env.env, cwd="/", timeout=60,
                               universal_newlines=True)
            assert r.returncode == 3, "exit %s, expected 3; stderr: %s" % (H.describe_status(r.returncode),
                                                                        r.stderr)
            assert "noiommud refused the DMA memory: io.noiommud.Broker.PermissionDenied" in r.stderr, r.stderr
            assert "EAL:" not in r.stderr and r.stdout == "", (r.stdout, r.stderr)
            d = env.wait_journal("AUTHZ_DENIED", NOIOMMUD_CLIENT_UID=str(H.DENIED_UID))
            assert d, "no AUTHZ_DENIED record for uid %d" % H.DENIED_UID
            env.wait_baseline(base, what="after the denied example")

        with env.subtest("no daemon at the socket: exit status 3, not a crash"):
            r = subprocess.run(example_argv(env, ["--memory", "16M"], H.ALLOWED_UID, socket=False)
                               + ["--socket", os.path.join(env.tmp, "nothing-here")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env.env, cwd="/",
                               timeout=60, universal_newlines=True)
            assert r.returncode == 3 and "cannot connect to noiommud" in r.stderr, (r.returncode, r.stderr)

        if env.failures:
            raise AssertionError("failed: %s" % ", ".join(env.failures))


def add_mempool_driver(rootfs):
    """The rootfs has the example's ldd closure, but DPDK's default mempool ops ("ring_mp_mc")
    are a driver plugin, librte_mempool_ring, which a shared-library EAL loads from its driver
    directory at start (rte_pktmbuf_pool_create() fails with EINVAL without it). An image
    installs that one driver (Debian: librte-mempool-ring23) in the same directory."""
    found = glob.glob("/usr/lib/*/dpdk/pmds-*/librte_mempool_ring.so.*")
    assert found, "librte_mempool_ring not found in DPDK's driver directory (librte-mempool-ring23)"
    for path in found:
        dest = os.path.join(rootfs, path.lstrip("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        if os.path.islink(path):
            os.symlink(os.readlink(path), dest)
        else:
            shutil.copy2(path, dest)
    out = subprocess.run(["ldd", found[0]], stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    for lib in (w for line in out.splitlines() for w in line.split() if w.startswith("/")):
        assert os.path.exists(os.path.join(rootfs, lib.lstrip("/"))), \
            "%s needs %s, which is not in the rootfs" % (found[0], lib)


def container_main():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "containers"))
    import container_harness as C

    if not EXAMPLE or not os.access(EXAMPLE, os.X_OK):
        raise H.Skip("examples/dpdk-extmem was not built: DPDK (libdpdk-dev 22.11, "
                     "scripts/install-deps.sh) was not found when meson was configured, or -Ddpdk=disabled")
    with C.ContainerEnvironment(hugepages=40, programs=[EXAMPLE]) as env:
        add_mempool_driver(env.rootfs)
        env.write_cdi_spec()
        uid = env.ctest_pw.pw_uid
        container = env.rootful.start(user="%d:%d" % (uid, env.ctest_pw.pw_gid))
        base = env.settled_baseline(H.hugepages_free())

        with env.subtest("rootful container, CDI socket device only: noiommuctl run -- noiommu-dpdk-extmem"):
            p = container.exec_popen(["noiommuctl", "run", "--memory", "64M", "--",
                                      "noiommu-dpdk-extmem", "--json", "--hold"])
            try:
                ready = read_json(p, "noiommu-dpdk-extmem in the container")
                assert ready.get("ready") is True, ready
                res = read_json(p, "noiommu-dpdk-extmem in the container")
                check_result(res, None, uid)
                g = env.wait_journal("MEMORY_GRANTED", NOIOMMUD_MEMORY_ID=res["memory"])[0]
                hpid = int(g["NOIOMMUD_CLIENT_PID"])
                exe = os.readlink("/proc/%d/exe" % hpid)
                assert os.path.basename(exe) == "noiommu-dpdk-extmem", \
                    "the memory's client (host pid %d) is %s, not the example noiommuctl exec'd" % (hpid, exe)
                assert g.get("NOIOMMUD_CLIENT_CONTAINER_ID") == container.id, \
                    "MEMORY_GRANTED names container %r, expected %r" % (g.get("NOIOMMUD_CLIENT_CONTAINER_ID"),
                                                                       container.id)
                check_pagemap(hpid, res, 64 * MiB)
                n = sample_pagemap(hpid, res)
                H.log("container %s, host pid %d (pid %d inside): %d mbufs, %d sampled buffer bytes at their "
                      "buf_iova; ms to ready: %r" % (container.id[:12], hpid, ready["pid"], res["mbufs"], n,
                                                     ready["ms"]))
                finish(p, "noiommu-dpdk-extmem in the container")
                f = env.wait_journal("MEMORY_FREED", NOIOMMUD_MEMORY_ID=res["memory"])
                assert f[0].get("NOIOMMUD_REASON") == "free", f
                env.wait_baseline(base, what="after the container's example exited")
            finally:
                stop(env, p, base)

        if env.failures:
            raise AssertionError("failed: %s" % ", ".join(env.failures))


if __name__ == "__main__":
    H.run(container_main if sys.argv[1:] == ["--container"] else main)
