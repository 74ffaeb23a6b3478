/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * dma-probe: proves real device DMA through kernel VFIO, without the daemon.
 *
 * Runs as root inside the vm tier's guest (tests/vm/run-vm.py) and drives QEMU's edu device
 * (docs/kernel-api.md §14, docs/vm-testing.md §9):
 *
 *   dma-probe group [BDF]   legacy group noiommu (kernel-api.md §7): /dev/vfio/vfio +
 *                           /dev/vfio/noiommu-N, bus address = PA from /proc/self/pagemap
 *   dma-probe cdev [BDF]    cdev + iommufd behind a (v)IOMMU (kernel-api.md §5):
 *                           /dev/iommu + /dev/vfio/devices/vfioN, bus address = a fixed IOVA
 *
 * Each path: 2 MiB hugetlb memfd, BAR0 mmap, identity check, Bus Master on, MSI on an eventfd,
 * then a DMA round trip RAM -> edu -> RAM (different offset) whose bytes are compared, with the
 * completion signalled by MSI. Negative controls show the bytes come from the device: with Bus
 * Master off nothing lands, and (cdev) a DMA to the untranslated PA lands nowhere.
 *
 * Prints one line per check and a final "N passed, N failed"; exits 0 only if all passed,
 * 77 if there is no edu device, 1 otherwise. Built static, so it also runs without the host
 * userland; the device side and the output are edu.c's (libc and VFIO ioctls only), as in the
 * daemon's clients.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* memfd_create */
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <linux/memfd.h>

#include "edu.h"
#include "vfio-uapi-min.h"

#define EDU_VENDOR              0x1234
#define EDU_DEVICE              0x11e8

#define HUGE_2M                 (UINT64_C(2) << 20)
#define PAGE_4K                 UINT64_C(4096)

#define PROBE_ALARM_S           120

static void safe_close(int *fd) {
        if (*fd >= 0)
                close(*fd);
        *fd = -1;
}

/* ---- sysfs ------------------------------------------------------------------------------- */

static int read_sysfs_hex(const char *dir, const char *attr, unsigned long *ret) {
        char path[512], buf[64];
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, attr);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return -EIO;
        buf[n] = 0;
        *ret = strtoul(buf, NULL, 16);
        return 0;
}

/* Finds the first edu device (1234:11e8); writes its BDF into ret. */
static int find_edu(char *ret, size_t size) {
        DIR *d = opendir("/sys/bus/pci/devices");
        struct dirent *de;
        int r = -ENODEV;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                char dir[512];
                unsigned long vendor, device;

                if (de->d_name[0] == '.')
                        continue;
                snprintf(dir, sizeof(dir), "/sys/bus/pci/devices/%s", de->d_name);
                if (read_sysfs_hex(dir, "vendor", &vendor) < 0 || read_sysfs_hex(dir, "device", &device) < 0)
                        continue;
                if (vendor == EDU_VENDOR && device == EDU_DEVICE) {
                        r = (size_t) snprintf(ret, size, "%s", de->d_name) < size ? 0 : -ENAMETOOLONG;
                        break;
                }
        }
        closedir(d);
        return r;
}

/* ---- DMA memory: one 2 MiB hugetlb page, its PA from pagemap ------------------------------ */

static int pagemap_pa(const void *va, uint64_t *ret) {
        uint64_t e;
        int fd;
        ssize_t n;

        fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        n = pread(fd, &e, sizeof(e), (off_t) ((uintptr_t) va / PAGE_4K * 8));
        close(fd);
        if (n != (ssize_t) sizeof(e))
                return -EIO;
        if (!(e & (1ULL << 63)) || (e & ((1ULL << 55) - 1)) == 0)
                return -ENXIO;  /* not present, or PFNs hidden (no CAP_SYS_ADMIN) */
        *ret = (e & ((1ULL << 55) - 1)) * PAGE_4K + (uintptr_t) va % PAGE_4K;
        return 0;
}

static int hugebuf_new(uint8_t **ret_buf, uint64_t *ret_pa) {
        uint64_t pa, pa_last;
        uint8_t *buf;
        int fd, r;

        fd = memfd_create("dma-probe", MFD_CLOEXEC | MFD_HUGETLB | MFD_HUGE_2MB);
        if (!check(fd >= 0, "memfd_create(MFD_HUGETLB|MFD_HUGE_2MB): %s", fd >= 0 ? "fd" : strerror(errno)))
                return -1;
        r = ftruncate(fd, (off_t) HUGE_2M) < 0 ? -errno : 0;
        if (!check(r == 0, "ftruncate(2 MiB) of the hugetlb memfd%s%s", r ? ": " : "", r ? strerror(-r) : "")) {
                close(fd);
                return -1;
        }
        buf = mmap(NULL, HUGE_2M, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
        r = errno;
        close(fd);      /* the mapping keeps the memory */
        if (!check(buf != MAP_FAILED, "mmap of the hugetlb memfd: %s", buf != MAP_FAILED ? "mapped" : strerror(r)))
                return -1;
        memset(buf, 0, HUGE_2M);
        r = pagemap_pa(buf, &pa);
        if (!check(r == 0, "PA from /proc/self/pagemap: %s", r == 0 ? "found" : strerror(-r)))
                return -1;
        r = pagemap_pa(buf + HUGE_2M - PAGE_4K, &pa_last);
        if (!check(r == 0 && pa % HUGE_2M == 0 && pa_last == pa + HUGE_2M - PAGE_4K,
                   "buffer va %p pa 0x%" PRIx64 " is one 2 MiB-aligned contiguous page (last 4K at 0x%" PRIx64 ")",
                   (void *) buf, pa, r == 0 ? pa_last : 0))
                return -1;
        *ret_buf = buf;
        *ret_pa = pa;
        return 0;
}

/* ---- edu (the device itself is edu.c's) -------------------------------------------------- */

/* A bare interrupt, right after edu_setup(): raise, wait, check status, acknowledge. */
static void edu_irq_raise_check(Edu *e) {
        int r;

        edu_wr32(e, EDU_REG_IRQ_RAISE, 0x1);
        r = irq_wait(e);
        check(r >= 0, "MSI from a raised interrupt (0x60) arrived on the eventfd (%d ms)", r);
        check(edu_rd32(e, EDU_REG_IRQ_STATUS) & 0x1, "interrupt status holds the raised bit");
        edu_wr32(e, EDU_REG_IRQ_ACK, 0x1);
        check(edu_rd32(e, EDU_REG_IRQ_STATUS) == 0, "interrupt status clear after acknowledging at 0x64");
}

/* edu_teardown(), then the device fd, which here is ours. */
static void probe_teardown(Edu *e) {
        int fd = e->dev_fd;

        edu_teardown(e);
        safe_close(&fd);
}

/* Compares n bytes; returns the first differing offset or -1. */
static long first_diff_pattern(const uint8_t *p, size_t n, uint8_t seed) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != pattern(i, seed))
                        return (long) i;
        return -1;
}

static long first_diff_byte(const uint8_t *p, size_t n, uint8_t v) {
        for (size_t i = 0; i < n; i++)
                if (p[i] != v)
                        return (long) i;
        return -1;
}

/*
 * The round trip: the pattern at buf[0, DMA_LEN) goes RAM -> edu's buffer; buf is cleared;
 * edu -> RAM writes it to buf + 4096 with an interrupt on completion. dma is the bus address of
 * buf (PA or IOVA).
 */
static void edu_roundtrip(Edu *e, uint8_t *buf, uint64_t dma, uint8_t seed) {
        volatile uint8_t *vbuf = buf;
        uint64_t t0 = now_usec();
        long diff;
        int r;

        for (size_t i = 0; i < DMA_LEN; i++)
                buf[i] = pattern(i, seed);
        memset(buf + PAGE_4K, 0x5a, PAGE_4K);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);

        dma_start(e, dma, EDU_BUF_ADDR, DMA_LEN, 0);
        r = dma_wait(e);
        if (!check(r >= 0, "DMA RAM 0x%" PRIx64 " -> edu 0x%x, %u bytes: done in %d ms", dma, EDU_BUF_ADDR, DMA_LEN, r))
                return;

        memset(buf, 0, PAGE_4K);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);

        dma_start(e, EDU_BUF_ADDR, dma + PAGE_4K, DMA_LEN, EDU_DMA_TO_RAM | EDU_DMA_IRQ);
        r = irq_wait(e);
        check(r >= 0, "MSI for the edu -> RAM DMA completion arrived on the eventfd (%d ms)", r);
        r = dma_wait(e);
        if (!check(r >= 0, "DMA edu 0x%x -> RAM 0x%" PRIx64 ", %u bytes: done", EDU_BUF_ADDR, dma + PAGE_4K, DMA_LEN))
                return;
        check(edu_rd32(e, EDU_REG_IRQ_STATUS) & EDU_IRQ_DMA, "interrupt status holds 0x%x (DMA done)", EDU_IRQ_DMA);
        edu_wr32(e, EDU_REG_IRQ_ACK, EDU_IRQ_DMA);
        check(edu_rd32(e, EDU_REG_IRQ_STATUS) == 0, "interrupt status clear after acknowledging 0x%x", EDU_IRQ_DMA);

        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        diff = first_diff_pattern((const uint8_t *) vbuf + PAGE_4K, DMA_LEN, seed);
        if (diff < 0)
                check(true, "the %u pattern bytes landed at buffer offset 0x1000", DMA_LEN);
        else
                check(false, "the %u pattern bytes landed at buffer offset 0x1000: first mismatch at +%ld: 0x%02x, want 0x%02x",
                      DMA_LEN, diff, vbuf[PAGE_4K + (size_t) diff], pattern((size_t) diff, seed));
        diff = first_diff_byte((const uint8_t *) vbuf + PAGE_4K + DMA_LEN, PAGE_4K - DMA_LEN, 0x5a);
        check(diff < 0, "the bytes after the transfer are untouched%s", diff < 0 ? "" : ": CHANGED");
        diff = first_diff_byte((const uint8_t *) vbuf, PAGE_4K, 0);
        check(diff < 0, "the cleared source area stayed clear%s", diff < 0 ? "" : ": CHANGED");
        info("round trip took %" PRIu64 " ms", (now_usec() - t0) / 1000U);
}

/*
 * Negative control: an edu -> RAM transfer to dma that must NOT land (Bus Master off, or an
 * address the IOMMU does not translate). area is the CPU view of the destination.
 */
static void edu_dma_must_not_land(Edu *e, uint8_t *area, uint64_t dma, const char *why) {
        volatile uint8_t *varea = area;
        long diff;
        int r;

        memset(area, 0x33, DMA_LEN);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        dma_start(e, EDU_BUF_ADDR, dma, DMA_LEN, EDU_DMA_TO_RAM);
        r = dma_wait(e);
        check(r >= 0, "control DMA edu -> 0x%" PRIx64 " (%s): engine finished", dma, why);
        sleep_ms(50);
        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        diff = first_diff_byte((const uint8_t *) varea, DMA_LEN, 0x33);
        check(diff < 0, "control DMA (%s) did not land%s", why, diff < 0 ? "" : ": IT LANDED");
}

static void edu_reset_check(Edu *e) {
        uint32_t id;
        int r;

        if (!(e->flags & VFIO_DEVICE_FLAGS_RESET)) {
                info("device has no reset method (VFIO_DEVICE_FLAGS_RESET not set); reset not tested");
                return;
        }
        r = ioctl(e->dev_fd, VFIO_DEVICE_RESET);
        check(r == 0, "VFIO_DEVICE_RESET%s%s", r ? ": " : "", r ? strerror(errno) : "");
        id = edu_rd32(e, EDU_REG_ID);
        check(id == EDU_ID_VALUE, "edu answers after the reset (id 0x%08x)", id);
}

/* ---- backend B: legacy group noiommu ------------------------------------------------------ */

static int run_group(const char *bdf) {
        struct vfio_group_status st = { .argsz = sizeof(st) };
        char path[512], link[512], gpath[64];
        const char *gnum;
        int container = -1, group = -1, r;
        Edu e = { .dev_fd = -1, .irq_fd = -1 };
        uint8_t *buf = NULL;
        uint64_t pa = 0;
        ssize_t n;

        container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
        if (!check(container >= 0, "open /dev/vfio/vfio%s%s", container < 0 ? ": " : "", container < 0 ? strerror(errno) : ""))
                goto out;
        r = ioctl(container, VFIO_GET_API_VERSION);
        if (!check(r == VFIO_API_VERSION, "VFIO_GET_API_VERSION = %d", r))
                goto out;
        r = ioctl(container, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU);
        if (!check(r == 1, "VFIO_CHECK_EXTENSION(VFIO_NOIOMMU_IOMMU) = %d%s", r,
                   r == 1 ? "" : " (is vfio.enable_unsafe_noiommu_mode=1?)"))
                goto out;

        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/iommu_group", bdf);
        n = readlink(path, link, sizeof(link) - 1);
        if (!check(n > 0, "%s -> %s", path, n > 0 ? (link[n] = 0, link) : strerror(errno)))
                goto out;
        gnum = strrchr(link, '/');
        gnum = gnum ? gnum + 1 : link;
        if (!check((size_t) snprintf(gpath, sizeof(gpath), "/dev/vfio/noiommu-%s", gnum) < sizeof(gpath),
                   "group number '%s' from sysfs", gnum))
                goto out;
        group = open(gpath, O_RDWR | O_CLOEXEC);
        if (!check(group >= 0, "open %s%s%s", gpath, group < 0 ? ": " : "", group < 0 ? strerror(errno) : ""))
                goto out;
        r = ioctl(group, VFIO_GROUP_GET_STATUS, &st);
        if (!check(r == 0 && (st.flags & VFIO_GROUP_FLAGS_VIABLE), "VFIO_GROUP_GET_STATUS: flags 0x%x (viable)", st.flags))
                goto out;
        r = ioctl(group, VFIO_GROUP_SET_CONTAINER, &container);
        if (!check(r == 0, "VFIO_GROUP_SET_CONTAINER%s%s", r ? ": " : "", r ? strerror(errno) : ""))
                goto out;
        r = ioctl(container, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU);
        if (!check(r == 0, "VFIO_SET_IOMMU(VFIO_NOIOMMU_IOMMU)%s%s", r ? ": " : "", r ? strerror(errno) : ""))
                goto out;
        e.dev_fd = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, bdf);
        if (!check(e.dev_fd >= 0, "VFIO_GROUP_GET_DEVICE_FD(%s)%s%s", bdf, e.dev_fd < 0 ? ": " : "",
                   e.dev_fd < 0 ? strerror(errno) : "")) {
                e.dev_fd = -1;
                goto out;
        }

        if (hugebuf_new(&buf, &pa) < 0)
                goto out;
        if (edu_setup(&e) < 0)
                goto out;
        edu_irq_raise_check(&e);

        info("bus address = physical address 0x%" PRIx64, pa);
        edu_roundtrip(&e, buf, pa, 0x11);

        if (check(set_bus_master(&e, false) == 0, "Bus Master off (read back clear)")) {
                edu_dma_must_not_land(&e, buf + 2 * PAGE_4K, pa + 2 * PAGE_4K, "Bus Master off");
                check(set_bus_master(&e, true) == 0, "Bus Master on again");
                edu_roundtrip(&e, buf, pa, 0x22);
        }
        edu_reset_check(&e);

out:
        probe_teardown(&e);
        if (buf)
                munmap(buf, HUGE_2M);
        safe_close(&group);
        safe_close(&container);
        return 0;
}

/* ---- backend A: cdev + iommufd ------------------------------------------------------------ */

static int find_cdev(const char *bdf, char *ret, size_t size) {
        char path[512];
        struct dirent *de;
        DIR *d;
        int r = -ENOENT;

        snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vfio-dev", bdf);
        d = opendir(path);
        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (strncmp(de->d_name, "vfio", 4) == 0) {
                        r = (size_t) snprintf(ret, size, "/dev/vfio/devices/%s", de->d_name) < size ? 0 : -ENAMETOOLONG;
                        break;
                }
        closedir(d);
        return r;
}

/* Picks a 2 MiB-aligned IOVA for a 2 MiB mapping inside the allowed ranges, preferring one at
 * or above 64 GiB so that it can never be mistaken for a guest physical address. */
static bool pick_iova(const struct iommu_iova_range *rg, unsigned n, uint64_t align, uint64_t *ret) {
        static const uint64_t prefer[] = { 64ULL << 30, 4ULL << 30, 0 };

        if (align < HUGE_2M)
                align = HUGE_2M;
        for (size_t p = 0; p < sizeof(prefer) / sizeof(prefer[0]); p++)
                for (unsigned i = 0; i < n; i++) {
                        uint64_t lo = rg[i].start > prefer[p] ? rg[i].start : prefer[p];
                        uint64_t iova = (lo + align - 1) / align * align;

                        if (iova < lo || iova > rg[i].last || rg[i].last - iova < HUGE_2M - 1)
                                continue;
                        *ret = iova;
                        return true;
                }
        return false;
}

static int run_cdev(const char *bdf) {
        struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
        struct iommu_ioas_iova_ranges rq = { .size = sizeof(rq) };
        struct iommu_iova_range *ranges = NULL;
        char cdev[256];
        int iommufd = -1, r;
        bool ioas = false, mapped = false;
        Edu e = { .dev_fd = -1, .irq_fd = -1 };
        uint8_t *buf = NULL;
        uint64_t pa = 0, iova = 0;
        struct stat sb;

        iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
        if (!check(iommufd >= 0, "open /dev/iommu%s%s", iommufd < 0 ? ": " : "", iommufd < 0 ? strerror(errno) : ""))
                goto out;
        r = ioctl(iommufd, IOMMU_IOAS_ALLOC, &alloc);
        if (!check(r == 0, "IOMMU_IOAS_ALLOC: ioas %u%s%s", alloc.out_ioas_id, r ? ": " : "", r ? strerror(errno) : ""))
                goto out;
        ioas = true;

        r = find_cdev(bdf, cdev, sizeof(cdev));
        if (!check(r == 0 && stat(cdev, &sb) == 0 && S_ISCHR(sb.st_mode), "device cdev from sysfs vfio-dev: %s",
                   r == 0 ? cdev : strerror(-r)))
                goto out;
        e.dev_fd = open(cdev, O_RDWR | O_CLOEXEC);
        if (!check(e.dev_fd >= 0, "open %s%s%s", cdev, e.dev_fd < 0 ? ": " : "", e.dev_fd < 0 ? strerror(errno) : ""))
                goto out;

        struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind), .iommufd = iommufd };
        r = ioctl(e.dev_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind);
        if (!check(r == 0, "VFIO_DEVICE_BIND_IOMMUFD: devid %u%s%s", bind.out_devid, r ? ": " : "", r ? strerror(errno) : ""))
                goto out;
        struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach), .pt_id = alloc.out_ioas_id };
        r = ioctl(e.dev_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach);
        if (!check(r == 0, "VFIO_DEVICE_ATTACH_IOMMUFD_PT(ioas %u): pt_id now %u%s%s", alloc.out_ioas_id, attach.pt_id,
                   r ? ": " : "", r ? strerror(errno) : ""))
                goto out;

        /* Ranges after attaching: attaching narrows them (the x86 MSI window). */
        rq.ioas_id = alloc.out_ioas_id;
        r = ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &rq);
        if (!check((r < 0 && errno == EMSGSIZE) || r == 0, "IOMMU_IOAS_IOVA_RANGES (count): %u ranges%s%s",
                   rq.num_iovas, r < 0 ? ", " : "", r < 0 ? strerror(errno) : ""))
                goto out;
        ranges = calloc(rq.num_iovas ? rq.num_iovas : 1, sizeof(*ranges));
        if (!ranges)
                goto out;
        rq.allowed_iovas = (uintptr_t) ranges;
        r = ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &rq);
        if (!check(r == 0 && rq.num_iovas > 0, "IOMMU_IOAS_IOVA_RANGES: %u ranges, alignment 0x%llx", rq.num_iovas,
                   (unsigned long long) rq.out_iova_alignment))
                goto out;
        for (unsigned i = 0; i < rq.num_iovas; i++)
                info("  allowed IOVA range 0x%llx-0x%llx", (unsigned long long) ranges[i].start,
                     (unsigned long long) ranges[i].last);
        if (!check(pick_iova(ranges, rq.num_iovas, rq.out_iova_alignment, &iova),
                   "picked IOVA 0x%" PRIx64 " for a 2 MiB mapping inside the allowed ranges", iova))
                goto out;

        if (hugebuf_new(&buf, &pa) < 0)
                goto out;

        struct iommu_ioas_map map = {
                .size = sizeof(map),
                .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
                .ioas_id = alloc.out_ioas_id,
                .user_va = (uintptr_t) buf,
                .length = HUGE_2M,
                .iova = iova,
        };
        r = ioctl(iommufd, IOMMU_IOAS_MAP, &map);
        if (!check(r == 0 && map.iova == iova, "IOMMU_IOAS_MAP(FIXED_IOVA|R|W) 2 MiB at IOVA 0x%llx%s%s",
                   (unsigned long long) map.iova, r ? ": " : "", r ? strerror(errno) : ""))
                goto out;
        mapped = true;

        if (edu_setup(&e) < 0)
                goto out;
        edu_irq_raise_check(&e);

        info("bus address = IOVA 0x%" PRIx64 " (PA 0x%" PRIx64 ")", iova, pa);
        edu_roundtrip(&e, buf, iova, 0x33);
        /* The untranslated PA is not mapped in the IOAS: through the IOMMU it must go nowhere. */
        edu_dma_must_not_land(&e, buf + 2 * PAGE_4K, pa + 2 * PAGE_4K, "untranslated PA, not an IOVA");
        if (check(set_bus_master(&e, false) == 0, "Bus Master off (read back clear)")) {
                edu_dma_must_not_land(&e, buf + 2 * PAGE_4K, iova + 2 * PAGE_4K, "Bus Master off");
                check(set_bus_master(&e, true) == 0, "Bus Master on again");
                edu_roundtrip(&e, buf, iova, 0x44);
        }
        edu_reset_check(&e);

out:
        /* Quiesces (MSI and Bus Master off) before the memory goes away (kernel-api.md §8). */
        probe_teardown(&e);
        if (mapped) {
                struct iommu_ioas_unmap um = { .size = sizeof(um), .ioas_id = alloc.out_ioas_id, .iova = iova,
                                               .length = HUGE_2M };
                r = ioctl(iommufd, IOMMU_IOAS_UNMAP, &um);
                check(r == 0 && um.length == HUGE_2M, "IOMMU_IOAS_UNMAP: %llu bytes", (unsigned long long) um.length);
        }
        if (ioas) {
                struct iommu_destroy d = { .size = sizeof(d), .id = alloc.out_ioas_id };
                r = ioctl(iommufd, IOMMU_DESTROY, &d);
                check(r == 0, "IOMMU_DESTROY(ioas %u)%s%s", alloc.out_ioas_id, r ? ": " : "", r ? strerror(errno) : "");
        }
        if (buf)
                munmap(buf, HUGE_2M);
        free(ranges);
        safe_close(&iommufd);
        return 0;
}

int main(int argc, char **argv) {
        char bdf[64], tagbuf[32];
        const char *mode;
        int r;

        if (argc < 2 || argc > 3 || (strcmp(argv[1], "group") != 0 && strcmp(argv[1], "cdev") != 0)) {
                fprintf(stderr, "usage: %s group|cdev [BDF]\n", argv[0]);
                return 2;
        }
        mode = argv[1];
        (void) snprintf(tagbuf, sizeof(tagbuf), "dma-probe: %s", mode);
        tag = tagbuf;
        setvbuf(stdout, NULL, _IOLBF, 0);
        alarm(PROBE_ALARM_S);   /* never hang the VM run */

        if (argc == 3) {
                if ((size_t) snprintf(bdf, sizeof(bdf), "%s", argv[2]) >= sizeof(bdf)) {
                        fprintf(stderr, "dma-probe: BDF too long\n");
                        return 2;
                }
        } else if ((r = find_edu(bdf, sizeof(bdf))) < 0) {
                printf("%s: SKIP: no edu device (1234:11e8): %s\n", tag, strerror(-r));
                return 77;
        }
        info("edu at %s", bdf);

        if (strcmp(mode, "group") == 0)
                run_group(bdf);
        else
                run_cdev(bdf);

        printf("%s: %u passed, %u failed\n", tag, n_pass, n_fail);
        return n_fail == 0 && n_pass > 0 ? 0 : 1;
}
