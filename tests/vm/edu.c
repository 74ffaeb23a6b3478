/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * edu: QEMU's edu device through a VFIO device fd, and the check/info output (edu.h): shared by
 * dma-probe and the daemon's clients, so every vm tier program drives the device the same way.
 * libc and VFIO ioctls only: dma-probe is linked statically, without libnoiommu.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "edu.h"
#include "vfio-uapi-min.h"

#define PCI_COMMAND_OFF         4
#define PCI_CMD_MEMORY          0x2
#define PCI_CMD_MASTER          0x4

const char *tag = "edu";
unsigned n_pass, n_fail;

__attribute__((format(printf, 2, 3)))
bool check(bool ok, const char *fmt, ...) {
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
void info(const char *fmt, ...) {
        va_list ap;

        printf("%s: ", tag);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        putchar('\n');
}

uint64_t now_usec(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000U + (uint64_t) ts.tv_nsec / 1000U;
}

void sleep_ms(unsigned ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

const char *errstr(int r) {
        return strerror(r < 0 ? -r : r);
}

/* ---- the device, through the fd the daemon sent -------------------------------------------- */

static uint64_t rd64(Edu *e, unsigned reg) {
        return *(volatile uint64_t *) (e->bar + reg);
}

static void wr64(Edu *e, unsigned reg, uint64_t v) {
        *(volatile uint64_t *) (e->bar + reg) = v;
}

int set_bus_master(Edu *e, bool on) {
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

int edu_setup(Edu *e) {
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
                   "VFIO_DEVICE_GET_INFO on the device fd: flags 0x%x, %u regions, %u irqs%s%s", di.flags,
                   di.num_regions, di.num_irqs, r ? ": " : "", r ? errstr(r) : ""))
                return -1;
        e->flags = di.flags;

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

        id = edu_rd32(e, EDU_REG_ID);
        if (!check(id == EDU_ID_VALUE, "edu identification register reads 0x%08x (want 0x%08x)", id, EDU_ID_VALUE))
                return -1;
        edu_wr32(e, EDU_REG_LIVENESS, 0x5a5a1234);
        check(edu_rd32(e, EDU_REG_LIVENESS) == ~0x5a5a1234U, "edu liveness register returns the bitwise NOT");

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
void edu_teardown(Edu *e) {
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

int dma_wait(Edu *e) {
        uint64_t start = now_usec();

        while (rd64(e, EDU_REG_DMA_CMD) & EDU_DMA_START) {
                if (now_usec() - start > DMA_TIMEOUT_MS * 1000U)
                        return -ETIMEDOUT;
                sleep_ms(2);
        }
        return (int) ((now_usec() - start) / 1000U);
}

void dma_start(Edu *e, uint64_t src, uint64_t dst, uint64_t count, uint64_t cmd) {
        wr64(e, EDU_REG_DMA_SRC, src);
        wr64(e, EDU_REG_DMA_DST, dst);
        wr64(e, EDU_REG_DMA_COUNT, count);
        wr64(e, EDU_REG_DMA_CMD, cmd | EDU_DMA_START);
}

int irq_wait(Edu *e) {
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

/* ---- memory contents -------------------------------------------------------------------------- */

uint8_t pattern(size_t i, uint8_t seed) {
        return (uint8_t) ((i * 131 + (i >> 8) * 7 + seed) ^ 0xa5);
}

long first_nonzero(const volatile uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != 0)
                        return (long) i;
        return -1;
}
