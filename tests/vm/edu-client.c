/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * edu-client: an unprivileged noiommud client that drives QEMU's edu device for real.
 *
 * Runs inside the vm tier's guest (tests/vm/guest-daemon.sh) as "nobody", against the real
 * noiommud, dbus-daemon and polkitd. Everything it touches it got from the daemon:
 *
 *   1. connect to the daemon's socket; AcquireDevice(BDF) -> lease + pre-bound device fd;
 *   2. AllocateMemory(2 MiB, lease) through libnoiommu -> sealed hugetlb memfd, mapped, with the
 *      DMA address table (physical addresses in noiommu mode, IOVAs behind the vIOMMU);
 *   3. through the device fd: BAR0 mmap (region 0), identity check, Bus Master on (config
 *      region 7, PCI_COMMAND), MSI on an eventfd (SET_IRQS, index 1);
 *   4. edu DMA with the dmaAddress the daemon reported: RAM -> edu from one offset, edu -> RAM
 *      to another, with an MSI on completion; the bytes must land and the MSI must fire;
 *   5. teardown (MSI off, Bus Master off, close the device fd), ReleaseDevice, disconnect.
 *
 * It prints the acquire latencies it measured: connect -> device fd received, and connect ->
 * 2 MiB memory received, in microseconds (one "LATENCY" line).
 *
 * Usage: edu-client SOCKET BDF [OPTIONS]
 *   --expect-kind physical|iova  the addressKind the daemon must report
 *   --expect-backend NAME        the backend the daemon must report for the device
 *   --hold                       after a successful DMA print "READY <pid>" and block (until
 *                                killed; the guest script kills it with SIGKILL mid-lease)
 *   --inflight                   with --hold: after READY keep edu -> RAM DMAs into the memory
 *                                running back to back, so the kill lands while one is in flight
 *   --probe-on-usr1              with --hold: on each SIGUSR1 make one more full DMA round trip
 *                                (new pattern, every byte compared) and print "PROBE <n> ok" or
 *                                "PROBE <n> FAIL" (vm-restart: DMA still lands after the daemon
 *                                was killed and restarted); re-arms the alarm after each probe
 *   --no-release                 end the lease by disconnecting instead of ReleaseDevice
 *   (with --hold, SIGUSR2 ends the hold: the DMAs stop, the device is torn down and the lease
 *   ends by ReleaseDevice, or by disconnecting with --no-release; the exit status tells)
 *   --expect-denied              AcquireDevice must fail with io.noiommud.Broker.PermissionDenied
 *                                (exit 0 if it does)
 *   --tag NAME                   prefix of every output line (default "edu-client")
 *
 * Output: one line per check ("ok"/"FAIL"), "LEASE <id>", "LATENCY ...", "READY <pid>" (hold),
 * and a final "N passed, N failed". Exit status 0 only if every check passed, 1 otherwise.
 * Every wait has a deadline and the process arms alarm(): it never hangs the VM run.
 *
 * The device side goes through libnoiommu's lease API (noiommu_acquire_device(),
 * noiommu_release_device(), LIBNOIOMMU_0.2): the device fd is the lease's, borrowed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "noiommu/noiommu.h"
#include "vfio-uapi-min.h"

#define EDU_ID_VALUE            0x010000edU
#define EDU_REG_ID              0x00
#define EDU_REG_LIVENESS        0x04
#define EDU_REG_IRQ_STATUS      0x24
#define EDU_REG_IRQ_ACK         0x64
#define EDU_REG_DMA_SRC         0x80
#define EDU_REG_DMA_DST         0x88
#define EDU_REG_DMA_COUNT       0x90
#define EDU_REG_DMA_CMD         0x98
#define EDU_DMA_START           0x1
#define EDU_DMA_TO_RAM          0x2
#define EDU_DMA_IRQ             0x4
#define EDU_IRQ_DMA             0x100
#define EDU_BUF_ADDR            0x40000
/* QEMU 7.2 aborts if a transfer touches the last byte of edu's buffer: offset + count <= 4095. */
#define DMA_LEN                 4000

#define MEM_SIZE                (UINT64_C(2) << 20)
#define SRC_OFFSET              UINT64_C(0x1000)        /* RAM -> edu reads here */
#define DST_OFFSET              UINT64_C(0x100000)      /* edu -> RAM writes here (1 MiB in) */
#define INFLIGHT_OFFSET         UINT64_C(0x180000)      /* the --inflight transfer's target */

#define PCI_COMMAND_OFF         4
#define PCI_CMD_MEMORY          0x2
#define PCI_CMD_MASTER          0x4

#define DMA_TIMEOUT_MS          5000
#define IRQ_TIMEOUT_MS          5000
#define CLIENT_ALARM_S          90      /* also bounds --hold */

static const char *tag = "edu-client";
static unsigned n_pass, n_fail;

__attribute__((format(printf, 2, 3)))
static bool check(bool ok, const char *fmt, ...) {
        va_list ap;

        printf("%s: %s: ", tag, ok ? "ok" : "FAIL");
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
        if (ok)
                n_pass++;
        else
                n_fail++;
        return ok;
}

__attribute__((format(printf, 1, 2)))
static void info(const char *fmt, ...) {
        va_list ap;

        printf("%s: ", tag);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
}

static uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

static void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static const char *errstr(int r) {
        return strerror(r < 0 ? -r : r);
}

/* ---- the device, through the fd the daemon sent -------------------------------------------- */

typedef struct Edu {
        int dev_fd;             /* borrowed from the lease: never closed here */
        int irq_fd;
        volatile uint8_t *bar;
        size_t bar_size;
        uint64_t cfg_offset;
        bool msi_on;
} Edu;

static uint32_t rd32(Edu *e, unsigned reg) {
        return *(volatile uint32_t *) (e->bar + reg);
}

static void wr32(Edu *e, unsigned reg, uint32_t v) {
        *(volatile uint32_t *) (e->bar + reg) = v;
}

static uint64_t rd64(Edu *e, unsigned reg) {
        return *(volatile uint64_t *) (e->bar + reg);
}

static void wr64(Edu *e, unsigned reg, uint64_t v) {
        *(volatile uint64_t *) (e->bar + reg) = v;
}

static int set_bus_master(Edu *e, bool on) {
        off_t off = (off_t) (e->cfg_offset + PCI_COMMAND_OFF);
        uint16_t cmd, back;

        if (pread(e->dev_fd, &cmd, sizeof(cmd), off) != (ssize_t) sizeof(cmd))
                return -EIO;
        if (on)
                cmd |= PCI_CMD_MEMORY | PCI_CMD_MASTER;
        else
                cmd &= (uint16_t) ~PCI_CMD_MASTER;
        if (pwrite(e->dev_fd, &cmd, sizeof(cmd), off) != (ssize_t) sizeof(cmd) ||
            pread(e->dev_fd, &back, sizeof(back), off) != (ssize_t) sizeof(back))
                return -EIO;
        return !!(back & PCI_CMD_MASTER) == on ? 0 : -EIO;
}

static int edu_setup(Edu *e) {
        struct vfio_device_info di = { .argsz = sizeof(di) };
        struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR0_REGION_INDEX };
        struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
        struct vfio_irq_info ii = { .argsz = sizeof(ii), .index = VFIO_PCI_MSI_IRQ_INDEX };
        char setbuf[sizeof(struct vfio_irq_set) + sizeof(int32_t)];
        struct vfio_irq_set *set = (struct vfio_irq_set *) setbuf;
        uint32_t id;
        void *p;
        int r;

        r = ioctl(e->dev_fd, VFIO_DEVICE_GET_INFO, &di) < 0 ? -errno : 0;
        if (!check(r == 0 && (di.flags & VFIO_DEVICE_FLAGS_PCI) && di.num_regions > VFIO_PCI_CONFIG_REGION_INDEX,
                   "VFIO_DEVICE_GET_INFO on the received fd: flags 0x%x, %u regions, %u irqs%s%s", di.flags,
                   di.num_regions, di.num_irqs, r ? ": " : "", r ? errstr(r) : ""))
                return -1;

        r = ioctl(e->dev_fd, VFIO_DEVICE_GET_REGION_INFO, &bar) < 0 ? -errno : 0;
        if (!check(r == 0 && bar.size >= 0x100 && (bar.flags & VFIO_REGION_INFO_FLAG_MMAP),
                   "BAR0 region info: flags 0x%x, size 0x%llx%s%s", bar.flags, (unsigned long long) bar.size,
                   r ? ": " : "", r ? errstr(r) : ""))
                return -1;
        r = ioctl(e->dev_fd, VFIO_DEVICE_GET_REGION_INFO, &cfg) < 0 ? -errno : 0;
        if (!check(r == 0 && cfg.size >= 64, "config region info: size 0x%llx%s%s", (unsigned long long) cfg.size,
                   r ? ": " : "", r ? errstr(r) : ""))
                return -1;
        e->cfg_offset = cfg.offset;

        p = mmap(NULL, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, e->dev_fd, (off_t) bar.offset);
        r = p == MAP_FAILED ? -errno : 0;
        if (!check(r == 0, "mmap BAR0 through the device fd%s%s", r ? ": " : "", r ? errstr(r) : ""))
                return -1;
        e->bar = p;
        e->bar_size = bar.size;

        id = rd32(e, EDU_REG_ID);
        if (!check(id == EDU_ID_VALUE, "edu identification register reads 0x%08x (want 0x%08x)", id, EDU_ID_VALUE))
                return -1;
        wr32(e, EDU_REG_LIVENESS, 0x5a5a1234);
        check(rd32(e, EDU_REG_LIVENESS) == ~0x5a5a1234U, "edu liveness register returns the bitwise NOT");

        if (!check(set_bus_master(e, true) == 0, "Bus Master on (PCI_COMMAND through config region 7)"))
                return -1;

        r = ioctl(e->dev_fd, VFIO_DEVICE_GET_IRQ_INFO, &ii) < 0 ? -errno : 0;
        if (!check(r == 0 && ii.count >= 1 && (ii.flags & VFIO_IRQ_INFO_EVENTFD),
                   "MSI irq info: count %u, flags 0x%x%s%s", ii.count, ii.flags, r ? ": " : "", r ? errstr(r) : ""))
                return -1;
        e->irq_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (!check(e->irq_fd >= 0, "eventfd for MSI vector 0"))
                return -1;
        memset(setbuf, 0, sizeof(setbuf));
        set->argsz = sizeof(setbuf);
        set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
        set->index = VFIO_PCI_MSI_IRQ_INDEX;
        set->start = 0;
        set->count = 1;
        memcpy(set->data, &e->irq_fd, sizeof(int32_t));
        r = ioctl(e->dev_fd, VFIO_DEVICE_SET_IRQS, set) < 0 ? -errno : 0;
        if (!check(r == 0, "VFIO_DEVICE_SET_IRQS: MSI vector 0 -> eventfd%s%s", r ? ": " : "", r ? errstr(r) : ""))
                return -1;
        e->msi_on = true;
        return 0;
}

/* Stops everything the client started: MSI off, Bus Master off, BAR unmapped, eventfd closed.
 * The device fd belongs to the lease (noiommu_release_device() closes it). */
static void edu_teardown(Edu *e) {
        if (e->msi_on) {
                struct vfio_irq_set off = {
                        .argsz = sizeof(off),
                        .flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
                        .index = VFIO_PCI_MSI_IRQ_INDEX,
                };

                check(ioctl(e->dev_fd, VFIO_DEVICE_SET_IRQS, &off) == 0, "MSI disabled");
                e->msi_on = false;
        }
        if (e->bar) {
                check(set_bus_master(e, false) == 0, "Bus Master off before releasing");
                munmap((void *) e->bar, e->bar_size);
                e->bar = NULL;
        }
        if (e->irq_fd >= 0)
                close(e->irq_fd);
        e->irq_fd = -1;
        e->dev_fd = -1;
}

static int dma_wait(Edu *e) {
        uint64_t start = now_usec();

        while (rd64(e, EDU_REG_DMA_CMD) & EDU_DMA_START) {
                if (now_usec() - start > DMA_TIMEOUT_MS * 1000U)
                        return -ETIMEDOUT;
                sleep_ms(2);
        }
        return (int) ((now_usec() - start) / 1000U);
}

static void dma_start(Edu *e, uint64_t src, uint64_t dst, uint64_t count, uint64_t cmd) {
        wr64(e, EDU_REG_DMA_SRC, src);
        wr64(e, EDU_REG_DMA_DST, dst);
        wr64(e, EDU_REG_DMA_COUNT, count);
        wr64(e, EDU_REG_DMA_CMD, cmd | EDU_DMA_START);
}

static int irq_wait(Edu *e) {
        struct pollfd p = { .fd = e->irq_fd, .events = POLLIN };
        uint64_t start = now_usec(), cnt;
        int r;

        r = poll(&p, 1, IRQ_TIMEOUT_MS);
        if (r < 0)
                return -errno;
        if (r == 0)
                return -ETIMEDOUT;
        if (read(e->irq_fd, &cnt, sizeof(cnt)) != (ssize_t) sizeof(cnt))
                return -EIO;
        return (int) ((now_usec() - start) / 1000U);
}

/* ---- memory ---------------------------------------------------------------------------------- */

/* The DMA address of [offset, offset + len) if one segment covers it whole. */
static bool dma_address_of(const noiommu_memory *m, uint64_t offset, uint64_t len, uint64_t *ret) {
        const noiommu_segment *s;
        size_t n;

        s = noiommu_memory_get_segments(m, &n);
        for (size_t i = 0; i < n; i++)
                if (offset >= s[i].offset && offset - s[i].offset <= s[i].length &&
                    len <= s[i].length - (offset - s[i].offset)) {
                        *ret = s[i].dma_address + (offset - s[i].offset);
                        return true;
                }
        return false;
}

static uint8_t pattern(size_t i, uint8_t seed) {
        return (uint8_t) ((i * 131 + (i >> 8) * 7 + seed) ^ 0xa5);
}

static long first_nonzero(const volatile uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != 0)
                        return (long) i;
        return -1;
}

/* RAM (SRC_OFFSET) -> edu -> RAM (DST_OFFSET), completion by MSI; every byte compared. */
static bool roundtrip(Edu *e, noiommu_memory *m, uint8_t seed) {
        volatile uint8_t *buf = noiommu_memory_get_address(m);
        uint64_t src, dst, t0 = now_usec();
        int r;

        if (!check(dma_address_of(m, SRC_OFFSET, DMA_LEN, &src) && dma_address_of(m, DST_OFFSET, 0x1000, &dst),
                   "the segment table covers both DMA windows"))
                return false;

        for (size_t i = 0; i < DMA_LEN; i++)
                buf[SRC_OFFSET + i] = pattern(i, seed);
        for (size_t i = 0; i < 0x1000; i++)
                buf[DST_OFFSET + i] = 0x5a;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);

        dma_start(e, src, EDU_BUF_ADDR, DMA_LEN, 0);
        r = dma_wait(e);
        if (!check(r >= 0, "DMA RAM (dmaAddress 0x%" PRIx64 ", offset 0x%" PRIx64 ") -> edu, %u bytes: done in %d ms",
                   src, SRC_OFFSET, DMA_LEN, r))
                return false;

        dma_start(e, EDU_BUF_ADDR, dst, DMA_LEN, EDU_DMA_TO_RAM | EDU_DMA_IRQ);
        r = irq_wait(e);
        check(r >= 0, "MSI for the edu -> RAM completion arrived on the eventfd (%d ms)", r);
        r = dma_wait(e);
        if (!check(r >= 0, "DMA edu -> RAM (dmaAddress 0x%" PRIx64 ", offset 0x%" PRIx64 "), %u bytes: done",
                   dst, DST_OFFSET, DMA_LEN))
                return false;
        check(rd32(e, EDU_REG_IRQ_STATUS) & EDU_IRQ_DMA, "interrupt status holds 0x%x (DMA done)", EDU_IRQ_DMA);
        wr32(e, EDU_REG_IRQ_ACK, EDU_IRQ_DMA);

        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        for (size_t i = 0; i < DMA_LEN; i++)
                if (buf[DST_OFFSET + i] != pattern(i, seed))
                        return check(false, "the %u bytes landed at offset 0x%" PRIx64 ": first mismatch at +%zu: 0x%02x, want 0x%02x",
                                     DMA_LEN, DST_OFFSET, i, buf[DST_OFFSET + i], pattern(i, seed));
        for (size_t i = DMA_LEN; i < 0x1000; i++)
                if (buf[DST_OFFSET + i] != 0x5a)
                        return check(false, "the bytes after the transfer are untouched: +%zu changed", i);
        check(true, "the %u bytes landed at offset 0x%" PRIx64 ", nothing beyond them changed (round trip %" PRIu64 " ms)",
              DMA_LEN, DST_OFFSET, (now_usec() - t0) / 1000U);
        return true;
}

static volatile sig_atomic_t probe_requested;
static volatile sig_atomic_t release_requested;

static void on_usr1(int sig) {
        (void) sig;
        probe_requested = 1;
}

static void on_usr2(int sig) {
        (void) sig;
        release_requested = 1;
}

/* ---- main -------------------------------------------------------------------------------------- */

typedef struct Options {
        const char *socket;
        const char *bdf;
        const char *expect_kind;
        const char *expect_backend;
        bool hold;
        bool inflight;
        bool probe_on_usr1;
        bool release;
        bool expect_denied;
} Options;

static int parse_options(int argc, char **argv, Options *o) {
        *o = (Options) { .release = true };

        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];

                if (!strcmp(a, "--hold"))
                        o->hold = true;
                else if (!strcmp(a, "--inflight"))
                        o->inflight = true;
                else if (!strcmp(a, "--probe-on-usr1"))
                        o->probe_on_usr1 = true;
                else if (!strcmp(a, "--no-release"))
                        o->release = false;
                else if (!strcmp(a, "--expect-denied"))
                        o->expect_denied = true;
                else if (!strcmp(a, "--expect-kind") && i + 1 < argc)
                        o->expect_kind = argv[++i];
                else if (!strcmp(a, "--expect-backend") && i + 1 < argc)
                        o->expect_backend = argv[++i];
                else if (!strcmp(a, "--tag") && i + 1 < argc)
                        tag = argv[++i];
                else if (a[0] != '-' && !o->socket)
                        o->socket = a;
                else if (a[0] != '-' && !o->bdf)
                        o->bdf = a;
                else
                        return -EINVAL;
        }
        return o->socket && o->bdf ? 0 : -EINVAL;
}

int main(int argc, char **argv) {
        noiommu_alloc_options ao;
        noiommu_memory *m = NULL;
        noiommu_lease *l = NULL;
        noiommu_conn *c = NULL;
        Edu e = { .dev_fd = -1, .irq_fd = -1 };
        const char *backend = NULL, *kind;
        uint64_t t0, t_dev, t_mem;
        size_t n_segs;
        Options o;
        long nz;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (parse_options(argc, argv, &o) < 0) {
                fprintf(stderr, "usage: %s SOCKET BDF [--expect-kind physical|iova] [--expect-backend NAME] "
                        "[--hold [--inflight] [--probe-on-usr1]] [--no-release] [--expect-denied] [--tag NAME]\n", argv[0]);
                return 1;
        }
        alarm(CLIENT_ALARM_S);
        info("uid %u, pid %i, device %s, socket %s", (unsigned) getuid(), (int) getpid(), o.bdf, o.socket);

        /* ---- acquire: connect -> device fd -> 2 MiB memory, timed ---- */
        t0 = now_usec();
        r = noiommu_connect(o.socket, &c);
        if (!check(r == 0, "connected to noiommud%s%s", r ? ": " : "", r ? errstr(r) : ""))
                goto finish;

        r = noiommu_acquire_device(c, o.bdf, 0, &l);
        t_dev = now_usec();
        if (o.expect_denied) {
                const char *err = r < 0 ? noiommu_last_error(c) : NULL;

                check(r == -EACCES && err && strcmp(err, NOIOMMU_ERROR_PERMISSION_DENIED) == 0,
                      "AcquireDevice as uid %u is refused with PermissionDenied: %s %s (%s)", (unsigned) getuid(),
                      r < 0 ? errstr(r) : "GRANTED", err ?: "-", r < 0 ? (noiommu_last_error_parameters(c) ?: "-") : "-");
                goto finish;
        }
        if (!check(r == 0, "AcquireDevice(%s): %s%s%s%s%s", o.bdf, r == 0 ? "granted" : errstr(r),
                   r < 0 && noiommu_last_error(c) ? " " : "", r < 0 ? (noiommu_last_error(c) ?: "") : "",
                   r < 0 && noiommu_last_error(c) ? " " : "", r < 0 ? (noiommu_last_error_parameters(c) ?: "") : ""))
                goto finish;
        e.dev_fd = noiommu_lease_get_fd(l);
        backend = noiommu_lease_get_backend(l);
        info("LEASE %s", noiommu_lease_get_id(l));
        check(e.dev_fd >= 0 && strcmp(noiommu_lease_get_address(l), o.bdf) == 0 &&
              noiommu_lease_get_vendor_id(l) == 0x1234 && noiommu_lease_get_device_id(l) == 0x11e8,
              "lease: device fd %i, %s %04x:%04x, driver %s, backend %s, iommu group %i", e.dev_fd,
              noiommu_lease_get_address(l), (unsigned) noiommu_lease_get_vendor_id(l),
              (unsigned) noiommu_lease_get_device_id(l), noiommu_lease_get_driver(l) ?: "?", backend ?: "?",
              noiommu_lease_get_iommu_group(l));
        if (o.expect_backend)
                check(backend && strcmp(backend, o.expect_backend) == 0, "backend is %s (want %s)",
                      backend ?: "(none)", o.expect_backend);

        noiommu_alloc_options_init(&ao);
        ao.lease = noiommu_lease_get_id(l);
        r = noiommu_allocate(c, MEM_SIZE, &ao, &m);
        t_mem = now_usec();
        if (!check(r == 0, "AllocateMemory(2 MiB, lease): %s%s%s", r == 0 ? "granted" : errstr(r),
                   r < 0 && noiommu_last_error(c) ? " " : "", r < 0 ? (noiommu_last_error(c) ?: "") : ""))
                goto finish;

        printf("%s: LATENCY backend=%s device_fd_us=%" PRIu64 " memory_us=%" PRIu64 "\n", tag, backend ?: "?",
               t_dev - t0, t_mem - t0);

        kind = noiommu_address_kind_to_string(noiommu_memory_get_address_kind(m));
        (void) noiommu_memory_get_segments(m, &n_segs);
        info("memory %s: %" PRIu64 " bytes, %zu segment(s), addressKind %s, first dmaAddress 0x%" PRIx64,
             noiommu_memory_get_id(m), noiommu_memory_get_size(m), n_segs, kind ?: "?",
             noiommu_memory_get_segments(m, NULL)[0].dma_address);
        if (o.expect_kind)
                check(kind && strcmp(kind, o.expect_kind) == 0, "addressKind is %s (want %s)", kind ?: "?", o.expect_kind);
        /* Fresh hugetlb pages are zeroed: whatever an earlier client's DMA wrote is gone. */
        nz = first_nonzero(noiommu_memory_get_address(m), MEM_SIZE);
        check(nz < 0, "the 2 MiB granted are all zero%s", nz < 0 ? "" : ": NOT ZERO");

        /* ---- the device ---- */
        if (edu_setup(&e) < 0)
                goto finish;
        if (!roundtrip(&e, m, (uint8_t) getpid()))
                goto finish;

        if (o.hold) {
                uint64_t dst = 0;

                printf("%s: %u passed, %u failed\n", tag, n_pass, n_fail);
                if (o.inflight && !dma_address_of(m, INFLIGHT_OFFSET, DMA_LEN, &dst))
                        o.inflight = false;
                if (o.inflight)
                        info("from now on edu -> RAM DMAs to dmaAddress 0x%" PRIx64 " back to back (~100 ms each), "
                             "so a kill lands while one is in flight", dst);
                if (o.probe_on_usr1) {
                        /* No SA_RESTART: pause() returns, and the loop below runs the probe. */
                        struct sigaction sa = { .sa_handler = on_usr1 };

                        sigemptyset(&sa.sa_mask);
                        if (!check(sigaction(SIGUSR1, &sa, NULL) == 0, "SIGUSR1 handler installed"))
                                goto finish;
                }
                {
                        /* SIGUSR2: stop holding and release (vm-systemd: the client outlives a
                         * daemon restart and ends its lease itself). No SA_RESTART either. */
                        struct sigaction sa = { .sa_handler = on_usr2 };

                        sigemptyset(&sa.sa_mask);
                        if (!check(sigaction(SIGUSR2, &sa, NULL) == 0, "SIGUSR2 handler installed"))
                                goto finish;
                }
                printf("READY %i\n", (int) getpid());
                fflush(stdout);
                /* Until SIGKILL (or SIGALRM as a backstop). With --inflight the engine is kept
                 * busy: a new transfer starts as soon as the previous one ends. */
                for (unsigned probes = 0;;) {
                        if (release_requested) {
                                if (o.inflight)
                                        (void) dma_wait(&e);
                                info("SIGUSR2: ending the hold after %u probe(s)", probes);
                                break;
                        }
                        if (probe_requested) {
                                bool ok;

                                probe_requested = 0;
                                probes++;
                                ok = roundtrip(&e, m, (uint8_t) (getpid() + 17 * probes));
                                printf("%s: PROBE %u %s\n", tag, probes, ok ? "ok" : "FAIL");
                                fflush(stdout);
                                alarm(CLIENT_ALARM_S);
                                continue;
                        }
                        if (!o.inflight) {
                                pause();
                                continue;
                        }
                        dma_start(&e, EDU_BUF_ADDR, dst, DMA_LEN, EDU_DMA_TO_RAM);
                        (void) dma_wait(&e);
                }
        }

        /* ---- release ---- */
finish:
        edu_teardown(&e);
        if (l && o.release) {
                r = noiommu_release_device(c, l);
                check(r == 0, "ReleaseDevice (noiommu_release_device)%s%s", r ? ": " : "", r ? errstr(r) : "");
        } else if (l) {
                info("ending the lease by disconnecting");
                l = noiommu_lease_unref(l);
        }
        m = noiommu_memory_unref(m);
        c = noiommu_disconnect(c);

        printf("%s: %u passed, %u failed\n", tag, n_pass, n_fail);
        return n_fail == 0 && n_pass > 0 ? 0 : 1;
}
