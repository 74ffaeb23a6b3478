#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Boots the vm test tier's guest in QEMU (TCG) and runs one guest script in it.

docs/vm-testing.md describes the platform. In short:

  * QEMU q35 with the edu PCI device behind a PCIe root port (dma_mask = 64 bits);
  * scenario "noiommu": no vIOMMU, vfio.enable_unsafe_noiommu_mode=1 -> legacy group noiommu
    (/dev/vfio/vfio + /dev/vfio/noiommu-N);
  * scenario "viommu": emulated Intel IOMMU with interrupt remapping, intel_iommu=on ->
    cdev + iommufd (/dev/vfio/devices/vfioN + /dev/iommu) and a real group /dev/vfio/N;
  * a busybox initramfs (built here, under a second) whose /init mounts proc/sys/dev, binds edu
    to vfio-pci, mounts the host's root read-only over virtio-9p, lays tmpfs over /run, /tmp and
    /var/tmp, mounts hugetlbfs and the results share at /run/results, and chroots into the host
    root to run the guest script (or, with --busybox-only, runs it in the initramfs);
  * 2 MiB hugepages reserved on the kernel command line.

The guest script runs as root with /bin/sh, in /run/results, with NOIOMMU_VM_SCENARIO,
NOIOMMU_VM_BDF (edu's PCI address, empty if absent) and NOIOMMU_VM_RESULTS=/run/results in the
environment; every --env NAME=VALUE is in results/guest.env for the script to source. Files given with --file are copied into the results share beside it (the guest's
/tmp hides the host's /tmp). Stage one writes the script's exit status to results/rc; QEMU's own
exit status says nothing about the guest.

Exit status: the guest script's, 1 if it did not report one (timeout, QEMU abort, guest panic,
bad QEMU command line), 77 if QEMU or busybox is missing. The serial log (each line prefixed
with host seconds since QEMU started) is printed on failure. QEMU is always killed on timeout,
on SIGINT/SIGTERM and when this script dies (PR_SET_PDEATHSIG).

Standard library only; run with Debian's /usr/bin/python3, as root (QEMU's 9p server must read
root-only files of the host root).
"""

import argparse
import ctypes
import gzip
import io
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time

QEMU = "qemu-system-x86_64"
BUSYBOX = "/bin/busybox"
SCENARIOS = ("noiommu", "viommu")
MARK = "@@noiommu-vm:"          # stage-one markers on the serial console
RESULTS_GUEST = "/run/results"

# Stage one. Runs as PID 1 from the initramfs; /etc/vm.conf (written by this script) sets
# SCENARIO, HOSTROOT (1 = chroot into the host root), GUEST_TIMEOUT (seconds).
INIT = r"""#!/bin/busybox sh
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/sbin:/usr/sbin:/bin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
. /etc/vm.conf
up() { read u _ </proc/uptime; echo "$u"; }
say() { echo "@@noiommu-vm: $*"; }
say "init-start uptime=$(up) scenario=$SCENARIO"

rc_file=
finish() {
        # $1 = exit status to report (or empty: none)
        if [ -n "$1" ] && [ -n "$rc_file" ]; then
                echo "$1" >"$rc_file.tmp" && mv "$rc_file.tmp" "$rc_file"
        fi
        sync
        say "poweroff uptime=$(up) rc=$1"
        poweroff -f
        sleep 5
        echo o >/proc/sysrq-trigger 2>/dev/null
}

# edu: 1234:11e8. Bind it to vfio-pci before anything else touches it (vm-testing.md §7).
BDF=
for d in /sys/bus/pci/devices/*; do
        [ "$(cat $d/vendor)" = 0x1234 ] && [ "$(cat $d/device)" = 0x11e8 ] && BDF=${d##*/}
done
if [ -n "$BDF" ]; then
        if [ -e /sys/module/vfio/parameters/enable_unsafe_noiommu_mode ]; then
                say "enable_unsafe_noiommu_mode=$(cat /sys/module/vfio/parameters/enable_unsafe_noiommu_mode)"
        fi
        echo vfio-pci >/sys/bus/pci/devices/$BDF/driver_override
        echo $BDF >/sys/bus/pci/drivers_probe
        drv=$(readlink /sys/bus/pci/devices/$BDF/driver)
        grp=$(readlink /sys/bus/pci/devices/$BDF/iommu_group)
        say "edu $BDF driver=${drv##*/} iommu_group=${grp##*/} dev-vfio=$(ls /dev/vfio 2>/dev/null | tr '\n' ' ')devices=$(ls /dev/vfio/devices 2>/dev/null | tr '\n' ' ')"
else
        say "edu not found"
fi

R=/newroot
mkdir -p $R
if [ "$INIT_SYSTEM" = systemd ]; then
        # systemd as PID 1 on an overlay: the host root (9p, read-only) below, the installed
        # project (9p share "layer", read-only) above it, a tmpfs on top, so /etc, /var and /usr
        # are writable (systemctl enable, /etc/noiommud, journald) while the host stays untouched.
        mkdir -p /lower /layer /ovl
        mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose hostroot /lower ||
                { say "cannot mount the host root"; finish ""; }
        lower=/lower
        if [ "$LAYER" = 1 ]; then
                mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose layer /layer ||
                        { say "cannot mount the install layer"; finish ""; }
                lower=/layer:/lower
        fi
        mount -t tmpfs -o mode=755 tmpfs /ovl
        mkdir -p /ovl/upper /ovl/work
        mount -t overlay -o lowerdir=$lower,upperdir=/ovl/upper,workdir=/ovl/work overlay $R ||
                { say "cannot mount the overlay root (CONFIG_OVERLAY_FS?)"; finish ""; }
        mount -t tmpfs -o mode=755,nosuid,nodev tmpfs $R/run
        mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $R/tmp
        mount -t proc proc $R/proc
        mount -t sysfs sys $R/sys
        mount -t devtmpfs dev $R/dev
        mkdir -p $R/dev/shm $R/dev/hugepages
        mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $R/dev/shm
        mount -t hugetlbfs -o pagesize=2M none $R/dev/hugepages
        mkdir -p $R/run/results
        mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results $R/run/results || finish ""
        rc_file=$R/run/results/rc
        # The units of the test (noiommu-vm.target, noiommu-vm-test.service, runner), and only
        # what that target needs: what the host enabled in /etc is dropped (whiteouts in the
        # overlay), every vendor unit the early targets want is masked except journald, D-Bus
        # and tmpfiles, and the host's generators are masked (each costs an exec over 9p).
        E=$R/etc/systemd/system
        for w in $E/*.wants $E/*.requires; do [ -e "$w" ] && rm -rf "$w"; done
        for f in /etc/vm-systemd/*; do cp "$f" $E/; done
        mkdir -p $R/etc/noiommu-vm $R/run/noiommu-vm $R/etc/systemd/system-generators
        mv $E/runner.sh $R/etc/noiommu-vm/runner.sh
        chmod 755 $R/etc/noiommu-vm/runner.sh
        for t in sysinit sockets timers paths local-fs basic; do
                for u in $R/lib/systemd/system/$t.target.wants/*; do
                        u=${u##*/}
                        case " $KEEP_UNITS " in *" $u "*) continue ;; esac
                        [ "$u" = "*" ] || ln -sf /dev/null $E/$u
                done
        done
        for g in $R/lib/systemd/system-generators/*; do
                [ -e "$g" ] && ln -sf /dev/null $R/etc/systemd/system-generators/${g##*/}
        done
        printf 'NOIOMMU_VM_SCENARIO=%s\nNOIOMMU_VM_BDF=%s\nNOIOMMU_VM_RESULTS=/run/results\nNOIOMMU_VM_INIT=systemd\nNOIOMMU_VM_TIMEOUT=%s\n' \
                "$SCENARIO" "$BDF" "$GUEST_TIMEOUT" >$R/run/noiommu-vm/env
        # The host root may carry a container's marker (/.dockerenv): systemd would then take
        # itself for a container's init and ignore the kernel command line. An empty "container"
        # in PID 1's environment says authoritatively: not a container.
        rm -f $R/.dockerenv
        export container=
        say "switch-root uptime=$(up)"
        exec switch_root $R /lib/systemd/systemd
        say "switch_root failed"
        finish ""
elif [ "$HOSTROOT" = 1 ]; then
        if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose hostroot $R; then
                say "cannot mount the host root"
                finish ""
        fi
        for m in run tmp var/tmp; do mount -t tmpfs -o mode=1777 tmpfs $R/$m; done
        chmod 755 $R/run
        mount -t proc proc $R/proc
        mount -t sysfs sys $R/sys
        mount -t devtmpfs dev $R/dev
        mkdir -p $R/dev/shm $R/dev/hugepages
        mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
        mount -t hugetlbfs -o pagesize=2M none $R/dev/hugepages
        mkdir -p $R/run/results
        mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results $R/run/results || finish ""
        rc_file=$R/run/results/rc
        say "guest-script-start uptime=$(up)"
        env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb \
                NOIOMMU_VM_SCENARIO="$SCENARIO" NOIOMMU_VM_BDF="$BDF" NOIOMMU_VM_RESULTS=/run/results \
                timeout -s KILL "$GUEST_TIMEOUT" chroot $R /bin/sh -c 'cd /run/results && exec /bin/sh ./guest.sh'
        rc=$?
else
        mkdir -p /run/results /tmp /dev/hugepages /dev/shm
        mount -t tmpfs -o mode=1777 tmpfs /tmp
        mount -t tmpfs -o mode=1777 tmpfs /dev/shm
        mount -t hugetlbfs -o pagesize=2M none /dev/hugepages
        mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results /run/results || finish ""
        rc_file=/run/results/rc
        say "guest-script-start uptime=$(up)"
        ( cd /run/results && export NOIOMMU_VM_SCENARIO="$SCENARIO" NOIOMMU_VM_BDF="$BDF" \
                NOIOMMU_VM_RESULTS=/run/results && exec timeout -s KILL "$GUEST_TIMEOUT" sh ./guest.sh )
        rc=$?
fi
say "guest-script-exit uptime=$(up) rc=$rc"
finish $rc
"""


# --init systemd: the units stage one copies into the guest's /etc/systemd/system. The guest
# boots into noiommu-vm.target (systemd.unit= on the kernel command line): basic.target (so
# sysinit with journald, sockets with dbus.socket and whatever the guest script enables) and the
# test runner, which runs the guest script with its output on the console, writes its status to
# results/rc and powers the machine off (SuccessAction=/FailureAction=).
SYSTEMD_UNITS = {
    "noiommu-vm.target": """[Unit]
Description=noiommud vm test
Requires=basic.target
Wants=noiommu-vm-test.service
After=basic.target
AllowIsolate=yes
""",
    "noiommu-vm-test.service": """[Unit]
Description=noiommud vm test: the guest script
After=basic.target dbus.socket
# The runner reports its status itself; either way the machine goes down when it ends.
SuccessAction=poweroff-force
FailureAction=poweroff-force

[Service]
Type=exec
EnvironmentFile=/run/noiommu-vm/env
ExecStart=/etc/noiommu-vm/runner.sh
StandardInput=null
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
RuntimeMaxSec=%(timeout)d
""",
    "runner.sh": """#!/bin/sh
# The guest script under systemd: as stage one runs it in the chroot, plus the status to rc.
read up _ </proc/uptime
echo "@@noiommu-vm: guest-script-start uptime=$up init=systemd"
cd /run/results || exit 1
timeout -s KILL "$NOIOMMU_VM_TIMEOUT" /bin/sh ./guest.sh </dev/null
rc=$?
read up _ </proc/uptime
echo "@@noiommu-vm: guest-script-exit uptime=$up rc=$rc"
echo "$rc" >/run/results/rc.tmp && mv /run/results/rc.tmp /run/results/rc
sync
echo "@@noiommu-vm: poweroff uptime=$up rc=$rc"
""",
}
# Vendor units the early targets want that the systemd guest keeps (everything else they want
# is masked): journald with its sockets (the audit one included), the system bus, tmpfiles.
SYSTEMD_KEEP = ("systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket "
                "systemd-journald-audit.socket dbus.socket systemd-tmpfiles-setup.service")


def merge_usr(root):
    """The guest's root is the host's: where the host has /lib -> usr/lib (merged /usr), an
    install tree's lib/ must go to usr/lib/, or the overlay's layer would hide the host's /lib."""
    for name in sorted(os.listdir(root)):
        src = os.path.join(root, name)
        host = os.path.join("/", name)
        if os.path.isdir(src) and not os.path.islink(src) and os.path.islink(host):
            target = os.path.join(root, os.path.relpath(os.path.realpath(host), "/"))
            for dirpath, _dirs, files in os.walk(src):
                rel = os.path.relpath(dirpath, src)
                os.makedirs(os.path.join(target, rel), exist_ok=True)
                for f in files:
                    os.replace(os.path.join(dirpath, f), os.path.join(target, rel, f))
            shutil.rmtree(src)


def log(msg):
    print("run-vm: " + msg, file=sys.stderr, flush=True)


# ---- initramfs (cpio "newc", gzip) -----------------------------------------------------------

class Cpio:
    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        name_b = name.encode() + b"\0"
        hdr = "070701" + "".join("%08x" % v for v in (
            self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(name_b), 0))
        self.ino += 1
        self.buf.write(hdr.encode() + name_b)
        self.buf.write(b"\0" * ((4 - (110 + len(name_b)) % 4) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * ((4 - len(data) % 4) % 4))

    def dir(self, name, perm=0o755):
        self._entry(name, stat.S_IFDIR | perm, nlink=2)

    def file(self, name, data, perm=0o644):
        self._entry(name, stat.S_IFREG | perm, data)

    def chardev(self, name, major, minor, perm=0o600):
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0)
        return self.buf.getvalue()


def build_initramfs(path, conf):
    c = Cpio()
    for d in ("bin", "dev", "etc", "proc", "sys", "run", "tmp", "newroot"):
        c.dir(d)
    # The kernel opens /dev/console for init before devtmpfs is mounted.
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3, 0o666)
    with open(BUSYBOX, "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    c.file("init", INIT.encode(), 0o755)
    if conf.get("INIT_SYSTEM") == "systemd":
        c.dir("etc/vm-systemd")
        for name, text in SYSTEMD_UNITS.items():
            c.file("etc/vm-systemd/" + name, (text % {"timeout": int(conf["GUEST_TIMEOUT"]) + 10}
                                              if "%(" in text else text).encode(),
                   0o755 if name.endswith(".sh") else 0o644)
    c.file("etc/vm.conf", "".join("%s='%s'\n" % kv for kv in conf.items()).encode())
    with open(path, "wb") as f:
        f.write(gzip.compress(c.finish(), compresslevel=1))


# ---- QEMU ----------------------------------------------------------------------------------

def qemu_command(args, initrd, results):
    cmdline = ["console=ttyS0", "panic=-1", "hugepages=%d" % args.hugepages]
    machine = "q35"
    iommu = []
    if args.scenario == "noiommu":
        cmdline.append("vfio.enable_unsafe_noiommu_mode=1")
    else:
        cmdline.append("intel_iommu=on")
        # kernel-irqchip=split matters only under KVM (intremap needs it there); harmless in TCG.
        machine += ",kernel-irqchip=split"
        # intel-iommu must come before the devices it translates.
        iommu = ["-device", "intel-iommu,intremap=on"]
    if args.init == "systemd":
        # the test's own target; systemd's status lines on the console show what it starts
        cmdline += ["systemd.unit=noiommu-vm.target", "systemd.show_status=1"]
    cmdline += args.append
    cmd = [QEMU, "-machine", machine, "-accel", "tcg", "-cpu", "max",
           "-m", args.memory, "-smp", str(args.smp),
           "-no-user-config", "-nodefaults", "-no-reboot", "-nographic", "-serial", "stdio",
           "-kernel", args.kernel, "-initrd", initrd, "-append", " ".join(cmdline)]
    if not args.busybox_only:
        cmd += ["-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"]
    cmd += ["-virtfs", "local,path=%s,mount_tag=results,security_model=none" % results]
    if args.install_root:
        cmd += ["-virtfs", "local,path=%s,mount_tag=layer,security_model=none,readonly=on,multidevs=remap"
                % os.path.abspath(args.install_root)]
    cmd += iommu
    cmd += ["-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1",
            "-device", "edu,bus=rp1,dma_mask=0xffffffffffffffff"]
    cmd += args.qemu_arg
    return cmd


def _pdeathsig():
    # Child side, before exec: die with the parent, in a process group of our own.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)   # PR_SET_PDEATHSIG
    except OSError:
        pass
    os.setpgid(0, 0)


class Serial(threading.Thread):
    """Copies QEMU's stdout (the guest's serial console) to the log with host timestamps."""

    def __init__(self, pipe, logf, t0, echo):
        super().__init__(daemon=True)
        self.pipe, self.logf, self.t0, self.echo = pipe, logf, t0, echo
        self.marks = {}

    def run(self):
        for raw in iter(self.pipe.readline, b""):
            t = time.monotonic() - self.t0
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            out = "[%7.3f] %s\n" % (t, line)
            self.logf.write(out)
            self.logf.flush()
            if self.echo:
                sys.stderr.write(out)
            if MARK in line:
                word = line.split(MARK, 1)[1].split()
                if word and word[0] not in self.marks:
                    self.marks[word[0]] = t


def kill_group(proc):
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
            return
        except subprocess.TimeoutExpired:
            continue


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario", choices=SCENARIOS)
    ap.add_argument("guest_script", help="shell script run as root in the guest (as results/guest.sh)")
    ap.add_argument("--kernel", required=True, help="bzImage (tests/vm/build-kernel.sh prints it)")
    ap.add_argument("--file", action="append", default=[], metavar="SRC[:NAME]",
                    help="copy SRC into the results share (as NAME); repeatable")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="a variable for the guest script, written to results/guest.env (which it sources)")
    ap.add_argument("--timeout", type=float, default=180, help="seconds before QEMU is killed (default 180)")
    ap.add_argument("--memory", default="1G")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--hugepages", type=int, default=16, help="2 MiB pages reserved at boot (default 16)")
    ap.add_argument("--append", action="append", default=[], help="extra kernel command line word")
    ap.add_argument("--qemu-arg", action="append", default=[], help="extra QEMU argument")
    ap.add_argument("--busybox-only", action="store_true",
                    help="do not export the host root; run the script in the initramfs (static binaries only)")
    ap.add_argument("--init", choices=("busybox", "systemd"), default="busybox",
                    help="what runs the guest script: busybox stage one in a chroot (default), or "
                         "systemd 252 as PID 1 on an overlay of the host root (noiommu-vm.target)")
    ap.add_argument("--install-root", metavar="DIR",
                    help="with --init systemd: a DESTDIR tree (meson install) laid over the host root")
    ap.add_argument("--workdir", help="directory for results/, serial.log, initramfs (default: a new temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the temp workdir even on success")
    ap.add_argument("--verbose", "-v", action="store_true", help="echo the serial console while it runs")
    args = ap.parse_args()

    if shutil.which(QEMU) is None:
        log("SKIP: %s is missing: run scripts/install-vm-deps.sh (package qemu-system-x86)" % QEMU)
        return 77
    if not os.access(BUSYBOX, os.X_OK):
        log("SKIP: %s is missing: run scripts/install-vm-deps.sh (package busybox-static)" % BUSYBOX)
        return 77
    if not os.path.isfile(args.kernel):
        log("ERROR: no kernel at %s" % args.kernel)
        return 1
    if os.geteuid() != 0 and not args.busybox_only:
        log("WARNING: not root: QEMU's 9p server cannot read root-only files of the host root")

    tmp_owned = args.workdir is None
    work = args.workdir or tempfile.mkdtemp(prefix="noiommu-vm-%s-" % args.scenario)
    work = os.path.abspath(work)
    results = os.path.join(work, "results")
    os.makedirs(results, exist_ok=True)
    for name in ("rc", "rc.tmp"):
        try:
            os.unlink(os.path.join(results, name))
        except FileNotFoundError:
            pass
    shutil.copyfile(args.guest_script, os.path.join(results, "guest.sh"))
    os.chmod(os.path.join(results, "guest.sh"), 0o755)
    for spec in args.file:
        src, _, name = spec.partition(":")
        dst = os.path.join(results, name or os.path.basename(src))
        shutil.copyfile(src, dst)
        shutil.copymode(src, dst)
    # What the host test expects of this boot (kernel series, backend): plain NAME=VALUE lines
    # the guest script sources, shell-quoted.
    with open(os.path.join(results, "guest.env"), "w") as f:
        for spec in args.env:
            name, sep, value = spec.partition("=")
            if not sep or not name.isidentifier():
                log("ERROR: --env wants NAME=VALUE, not %r" % spec)
                return 1
            f.write("%s='%s'\n" % (name, value.replace("'", "'\\''")))

    initrd = os.path.join(work, "initramfs.cpio.gz")
    guest_timeout = max(10, int(args.timeout) - 15)
    if args.init == "systemd" and args.busybox_only:
        log("ERROR: --init systemd needs the host root (not --busybox-only)")
        return 1
    if args.install_root:
        if args.init != "systemd" or not os.path.isdir(args.install_root):
            log("ERROR: --install-root wants --init systemd and a directory")
            return 1
        merge_usr(args.install_root)
    build_initramfs(initrd, {"SCENARIO": args.scenario, "HOSTROOT": 0 if args.busybox_only else 1,
                             "GUEST_TIMEOUT": guest_timeout, "INIT_SYSTEM": args.init,
                             "LAYER": 1 if args.install_root else 0, "KEEP_UNITS": SYSTEMD_KEEP})
    cmd = qemu_command(args, initrd, results)
    serial_path = os.path.join(work, "serial.log")

    # SIGTERM (meson's timeout) and SIGHUP become exceptions, so "finally" kills QEMU.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    log("scenario %s, kernel %s, workdir %s" % (args.scenario, args.kernel, work))
    log("qemu: " + " ".join(cmd))
    timed_out = False
    with open(serial_path, "w") as logf:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, preexec_fn=_pdeathsig)
        reader = Serial(proc.stdout, logf, t0, args.verbose)
        reader.start()
        try:
            proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            kill_group(proc)
            reader.join(timeout=5)
        elapsed = time.monotonic() - t0

    rc = None
    try:
        with open(os.path.join(results, "rc")) as f:
            rc = int(f.read().strip())
    except (OSError, ValueError):
        pass

    m = reader.marks
    def at(k):
        return "%.2f s" % m[k] if k in m else "never"
    log("%s: QEMU exit %s after %.2f s; /init at %s,%s guest script start (boot time) at %s, script exit at %s"
        % (args.scenario, "TIMEOUT (killed)" if timed_out else proc.returncode, elapsed,
           at("init-start"), (" switch_root to systemd at %s," % at("switch-root")) if args.init == "systemd" else "",
           at("guest-script-start"), at("guest-script-exit")))
    if "guest-script-start" in m:
        print("boot-time %s %.3f" % (args.scenario, m["guest-script-start"]))
        if "switch-root" in m:
            print("boot-time-systemd %s %.3f" % (args.scenario, m["guest-script-start"] - m["switch-root"]))

    if rc is None:
        why = ("timed out after %g s" % args.timeout) if timed_out else \
              "QEMU ended without a result (QEMU abort, guest panic or bad command line)"
        log("FAIL: the guest script reported no exit status: " + why)
        status = 1
    else:
        log("guest script exit status %d" % rc)
        status = rc
    if status != 0 and status != 77:
        log("---- serial log %s ----" % serial_path)
        with open(serial_path, errors="replace") as f:
            sys.stderr.write(f.read())
        log("---- end of serial log ----")
        log("kept %s" % work)
    elif tmp_owned and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        log("kept %s" % work)
    return status


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        log("interrupted (%s); QEMU killed" % e)
        sys.exit(130)
