/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Self-test of tests/mock/vfio-mock.c, run with it preloaded (tests/mock/meson.build sets
 * LD_PRELOAD and NOIOMMU_MOCK_PROGRAM). It builds a fixture root in a temporary directory
 * (character nodes need mknod, so this runs as root and skips otherwise), then drives the
 * model the way daemon/vfio.c does, and checks the kernel behaviour the daemon's tests rely
 * on: the path trap, fstat() of fake nodes, the group and cdev sequences, the leaked-fd rules,
 * GET_PA against pagemap, the fault switches and the event log.
 *
 * The ioctl numbers are daemon/vfio-uapi.h's (checked against kernel-api.md §11 by
 * abi-check.c, which is built into this program). The argument structs below are what a 7.3
 * caller passes, sized as in 7.3 whatever this host's headers have; their fields are checked
 * against the header's.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include <linux/openat2.h>

#include "../tests.h"
#include "vfio-uapi.h"

/* Paths here are bounded by the fixture root (PATH_MAX) and sysfs names; a truncated one
 * simply does not exist. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

/* IOMMU_GET_HW_INFO: the daemon never issues it (kernel-api.md §10), so vfio-uapi.h does not
 * define it; the self-test sends it to check the mock logs it as a violation (§11.2: 0x3b8a). */
#define GET_HW_INFO              0x3b8aUL

#define CONFIG_OFFSET (UINT64_C(7) << 40)

struct device_info { uint32_t argsz, flags, num_regions, num_irqs, cap_offset, pad; };
struct region_info { uint32_t argsz, flags, index, cap_offset; uint64_t size, offset; };
struct bind { uint32_t argsz, flags; int32_t iommufd; uint32_t out_devid; uint64_t token; };
struct attach { uint32_t argsz, flags, pt_id, pasid; };
struct detach { uint32_t argsz, flags, pasid; };
struct destroy { uint32_t size, id; };
struct ioas_alloc { uint32_t size, flags, out_ioas_id; };
struct iova_range { uint64_t start, last; };
struct iova_ranges { uint32_t size, ioas_id, num_iovas, reserved; uint64_t allowed, align; };
struct ioas_map { uint32_t size, flags, ioas_id, reserved; uint64_t user_va, length, iova; };
struct ioas_unmap { uint32_t size, ioas_id; uint64_t iova, length; };
struct get_pa { uint32_t size, flags, ioas_id, reserved; uint64_t iova, length, out_phys; };
struct hwpt_alloc { uint32_t size, flags, dev_id, pt_id, out_hwpt_id, reserved, data_type, data_len;
                    uint64_t data_uptr; uint32_t fault_id, reserved2; };

#define SAME_AT(t, f, k, kf) \
        static_assert(offsetof(struct t, f) == offsetof(struct k, kf), #t "." #f " is not where the header has it")
SAME_AT(device_info, num_irqs, vfio_device_info, num_irqs);
SAME_AT(region_info, offset, vfio_region_info, offset);
SAME_AT(bind, out_devid, vfio_device_bind_iommufd, out_devid);
SAME_AT(attach, pt_id, vfio_device_attach_iommufd_pt, pt_id);
SAME_AT(destroy, id, iommu_destroy, id);
SAME_AT(ioas_alloc, out_ioas_id, iommu_ioas_alloc, out_ioas_id);
SAME_AT(iova_range, last, iommu_iova_range, last);
SAME_AT(iova_ranges, align, iommu_ioas_iova_ranges, out_iova_alignment);
SAME_AT(ioas_map, iova, iommu_ioas_map, iova);
SAME_AT(ioas_unmap, length, iommu_ioas_unmap, length);
SAME_AT(get_pa, out_phys, iommu_ioas_noiommu_get_pa, out_phys);
SAME_AT(hwpt_alloc, out_hwpt_id, iommu_hwpt_alloc, out_hwpt_id);
static_assert(sizeof(struct region_info) == sizeof(struct vfio_region_info), "region_info");
static_assert(sizeof(struct iova_ranges) == sizeof(struct iommu_ioas_iova_ranges), "iova_ranges");
static_assert(sizeof(struct ioas_map) == sizeof(struct iommu_ioas_map), "ioas_map");
static_assert(sizeof(struct ioas_unmap) == sizeof(struct iommu_ioas_unmap), "ioas_unmap");
static_assert(sizeof(struct get_pa) == sizeof(struct iommu_ioas_noiommu_get_pa), "get_pa");

static char root[256];
static char log_path[300];

/* A libc return value as a negative errno, for ASSERT_OK/ASSERT_ERROR. */
static long sys(long r) {
        return r < 0 ? -errno : r;
}

static void put(const char *rel, const char *content) {
        char path[512], dir[512];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        snprintf(dir, sizeof(dir), "mkdir -p \"$(dirname '%s')\"", path);
        ASSERT_EQ(system(dir), 0);
        f = fopen(path, "we");
        ASSERT_TRUE(f);
        fputs(content, f);
        fclose(f);
}

static void link_(const char *rel, const char *target) {
        char path[512], cmd[1100];

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\" && ln -s '%s' '%s'", path, target, path);
        ASSERT_EQ(system(cmd), 0);
}

static int node(const char *rel, unsigned ma, unsigned mi) {
        char path[512], cmd[600];

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
        ASSERT_EQ(system(cmd), 0);
        return sys(mknod(path, S_IFCHR | 0600, makedev(ma, mi)));
}

/* 0000:00:03.0 in noiommu group 7 (group node 243:0); 0000:00:04.0 with a noiommu cdev
 * (238:1) in group 8; 0000:00:05.0 with a plain cdev (238:2) in DMA group 3. */
static int make_fixture(void) {
        static const char *const devs[] = { "0000:00:03.0", "0000:00:04.0", "0000:00:05.0" };
        static const int groups[] = { 7, 8, 3 };
        char rel[256], target[256];

        put("sys/class/misc/vfio/dev", "10:196\n");
        put("sys/class/misc/iommu/dev", "10:123\n");
        put("sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "Y\n");
        put("sys/class/vfio/noiommu-7/dev", "243:0\n");
        put("sys/class/vfio/noiommu-8/dev", "243:1\n");
        put("sys/bus/pci/drivers/vfio-pci/.keep", "");
        for (size_t i = 0; i < 3; i++) {
                snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/vendor", devs[i]);
                put(rel, "0x1234\n");
                snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/device", devs[i]);
                put(rel, "0x11e8\n");
                snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/iommu_group", devs[i]);
                snprintf(target, sizeof(target), "../../../../kernel/iommu_groups/%d", groups[i]);
                link_(rel, target);
                snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/driver", devs[i]);
                link_(rel, "../../../../bus/pci/drivers/vfio-pci");
                snprintf(rel, sizeof(rel), "sys/kernel/iommu_groups/%d/devices/%s", groups[i], devs[i]);
                snprintf(target, sizeof(target), "../../../../bus/pci/devices/%s", devs[i]);
                link_(rel, target);
        }
        put("sys/bus/pci/devices/0000:00:04.0/vfio-dev/noiommu-vfio1/dev", "238:1\n");
        put("sys/bus/pci/devices/0000:00:05.0/vfio-dev/vfio2/dev", "238:2\n");

        if (node("dev/vfio/vfio", 10, 196) < 0)
                return -1;
        ASSERT_OK(node("dev/iommu", 10, 123));
        ASSERT_OK(node("dev/vfio/noiommu-7", 243, 0));
        ASSERT_OK(node("dev/vfio/noiommu-8", 243, 1));
        ASSERT_OK(node("dev/vfio/devices/noiommu-vfio1", 238, 1));
        ASSERT_OK(node("dev/vfio/devices/vfio2", 238, 2));
        /* planted things */
        ASSERT_OK(node("dev/vfio/wrong-rdev", 1, 3));
        link_("dev/vfio/symlink", "/dev/null");
        link_("sys/class/misc/escape", "/etc/passwd");  /* absolute: must stay inside the root */
        snprintf(rel, sizeof(rel), "%s/dev/vfio/fifo", root);
        ASSERT_OK(sys(mkfifo(rel, 0600)));
        put("dev/vfio/regular", "");
        return 0;
}

static bool log_has(const char *needle) {
        char line[1024];
        bool found = false;
        FILE *f = fopen(log_path, "re");

        if (!f)
                return false;
        while (!found && fgets(line, sizeof(line), f))
                found = strstr(line, needle) != NULL;
        fclose(f);
        return found;
}

/* Sequence number of the first log line containing all of a and b (b may be NULL), after
 * "after"; 0 if none. */
static unsigned long log_seq(const char *a, const char *b, unsigned long after) {
        char line[1024];
        unsigned long seq = 0;
        FILE *f = fopen(log_path, "re");

        if (!f)
                return 0;
        while (fgets(line, sizeof(line), f)) {
                unsigned long s = strtoul(line, NULL, 10);

                if (s > after && strstr(line, a) && (!b || strstr(line, b))) {
                        seq = s;
                        break;
                }
        }
        fclose(f);
        return seq;
}

static void test_path_trap(void) {
        char buf[64];
        struct stat st;
        int fd, rootfd;
        ssize_t n;

        /* absolute */
        fd = open("/sys/class/misc/vfio/dev", O_RDONLY | O_CLOEXEC);
        ASSERT_OK(sys(fd));
        n = read(fd, buf, sizeof(buf) - 1);
        ASSERT_TRUE(n > 0);
        buf[n] = 0;
        ASSERT_STREQ(buf, "10:196\n");
        close(fd);
        ASSERT_TRUE(log_has("open path=/sys/class/misc/vfio/dev trapped=1"));

        /* relative to an fd of "/" (inventory.c's way) */
        rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_OK(sys(rootfd));
        fd = openat(rootfd, "sys/module/vfio/parameters/enable_unsafe_noiommu_mode", O_RDONLY | O_CLOEXEC);
        ASSERT_OK(sys(fd));
        close(fd);
        ASSERT_OK(sys(fstatat(rootfd, "sys/class/vfio/noiommu-7", &st, AT_SYMLINK_NOFOLLOW)));
        ASSERT_TRUE(S_ISDIR(st.st_mode));
        close(rootfd);

        ASSERT_OK(sys(access("/sys/bus/pci/devices/0000:00:03.0/vendor", F_OK)));
        n = readlink("/sys/bus/pci/devices/0000:00:03.0/iommu_group", buf, sizeof(buf) - 1);
        ASSERT_TRUE(n > 0);

        /* hugepage sizes are real memory: not trapped */
        if (access("/sys/kernel/mm/hugepages", F_OK) == 0) {
                DIR *d = opendir("/sys/kernel/mm/hugepages");
                ASSERT_TRUE(d);
                closedir(d);
                ASSERT_TRUE(log_has("opendir path=/sys/kernel/mm/hugepages trapped=0"));
        }

        /* other syscalls go through */
        ASSERT_EQ(syscall(SYS_getpid), getpid());
}

static long openat2_(int dirfd, const char *path, uint64_t flags, uint64_t resolve) {
        struct open_how how = { .flags = flags, .resolve = resolve };

        return sys(syscall(SYS_openat2, dirfd, path, &how, sizeof(how)));
}

/* The daemon's production openat2() calls are trapped, not refused: vfio.c's
 * vfio_open_node() and inventory.c's open_in_root(), with the fixture root as "/". */
static void test_openat2(void) {
        char buf[64], proc[64];
        struct stat st;
        int fd, p, rootfd;
        ssize_t n;

        /* vfio_open_node(): O_PATH without symlinks, check, reopen through /proc/self/fd */
        p = openat2_(AT_FDCWD, "/dev/vfio/noiommu-8", O_PATH | O_NOFOLLOW | O_CLOEXEC,
                     RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        ASSERT_OK(p);
        ASSERT_OK(sys(fstat(p, &st)));
        ASSERT_TRUE(S_ISCHR(st.st_mode));
        ASSERT_EQ(st.st_rdev, makedev(243, 1));
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", p);
        fd = open(proc, O_RDWR | O_CLOEXEC);
        ASSERT_OK(sys(fd));
        ASSERT_OK(sys(ioctl(fd, VFIO_GROUP_GET_STATUS, (uint32_t[2]) { 8, 0 })));
        close(fd);
        close(p);
        ASSERT_TRUE(log_has("open path=/dev/vfio/noiommu-8 trapped=1 via=openat2 "
                            "resolve=no-magiclinks,no-symlinks"));

        /* RESOLVE_NO_SYMLINKS is the kernel's own: a planted symlink as the last component
         * comes back as itself with O_PATH|O_NOFOLLOW, and is refused otherwise (openat2(2)) */
        p = openat2_(AT_FDCWD, "/dev/vfio/symlink", O_PATH | O_NOFOLLOW | O_CLOEXEC,
                     RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS);
        ASSERT_OK(p);
        ASSERT_OK(sys(fstat(p, &st)));
        ASSERT_TRUE(S_ISLNK(st.st_mode));
        close(p);
        ASSERT_ERROR(openat2_(AT_FDCWD, "/dev/vfio/symlink", O_RDWR | O_CLOEXEC, RESOLVE_NO_SYMLINKS), ELOOP);
        ASSERT_ERROR(openat2_(AT_FDCWD, "/dev/vfio/nonexistent", O_PATH | O_CLOEXEC, RESOLVE_NO_SYMLINKS),
                     ENOENT);

        /* a node opened directly is the fixture's object, never the host's device */
        fd = openat2_(AT_FDCWD, "/dev/vfio/vfio", O_RDWR | O_CLOEXEC, RESOLVE_NO_SYMLINKS);
        ASSERT_OK(fd);
        ASSERT_EQ(ioctl(fd, VFIO_GET_API_VERSION), 0);
        close(fd);
        ASSERT_TRUE(log_has("open-node path=/dev/vfio/vfio kind=container"));

        /* open_in_root(): relative to an fd of "/", RESOLVE_IN_ROOT */
        rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        ASSERT_OK(sys(rootfd));
        fd = openat2_(rootfd, "sys/class/misc/vfio/dev", O_RDONLY | O_CLOEXEC,
                      RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        ASSERT_OK(fd);
        n = read(fd, buf, sizeof(buf) - 1);
        ASSERT_TRUE(n > 0);
        buf[n] = 0;
        ASSERT_STREQ(buf, "10:196\n");
        close(fd);
        ASSERT_TRUE(log_has("open path=/sys/class/misc/vfio/dev trapped=1 via=openat2 "
                            "resolve=no-magiclinks,in-root"));
        /* relative symlinks resolve in the fixture... */
        fd = openat2_(rootfd, "sys/bus/pci/devices/0000:00:03.0/iommu_group", O_PATH | O_DIRECTORY | O_CLOEXEC,
                      RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
        ASSERT_OK(fd);
        close(fd);
        /* ...and so does an absolute one: /etc/passwd of the fixture root, which has none */
        ASSERT_ERROR(openat2_(rootfd, "sys/class/misc/escape", O_RDONLY | O_CLOEXEC,
                              RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), ENOENT);
        /* real memory is not trapped, and the call is forwarded as it was made */
        if (access("/sys/kernel/mm/hugepages", F_OK) == 0) {
                fd = openat2_(rootfd, "sys/kernel/mm/hugepages", O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                              RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
                ASSERT_OK(fd);
                close(fd);
                ASSERT_TRUE(log_has("open path=/sys/kernel/mm/hugepages trapped=0 via=openat2"));
        }
        close(rootfd);

        /* what copy_struct_from_user() decides stays the kernel's */
        ASSERT_ERROR(sys(syscall(SYS_openat2, AT_FDCWD, "/dev/vfio/vfio", NULL, 0)), EINVAL);
}

static void test_planted_nodes(void) {
        struct stat st;
        int fd;

        ASSERT_ERROR(sys(open("/dev/vfio/symlink", O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)), ELOOP);

        fd = open("/dev/vfio/fifo", O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        ASSERT_OK(sys(fd));
        ASSERT_OK(sys(fstat(fd, &st)));
        ASSERT_TRUE(S_ISFIFO(st.st_mode));
        close(fd);

        fd = open("/dev/vfio/regular", O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        ASSERT_OK(sys(fd));
        ASSERT_OK(sys(fstat(fd, &st)));
        ASSERT_TRUE(S_ISREG(st.st_mode));
        close(fd);

        /* O_PATH, check, then reopen through /proc/self/fd: the node's object */
        {
                char proc[64];
                int p = open("/dev/vfio/noiommu-8", O_PATH | O_NOFOLLOW | O_CLOEXEC);

                ASSERT_OK(sys(p));
                ASSERT_OK(sys(fstat(p, &st)));
                ASSERT_TRUE(S_ISCHR(st.st_mode));
                ASSERT_EQ(st.st_rdev, makedev(243, 1));
                snprintf(proc, sizeof(proc), "/proc/self/fd/%d", p);
                fd = open(proc, O_RDWR | O_CLOEXEC);
                ASSERT_OK(sys(fd));
                ASSERT_OK(sys(fstat(fd, &st)));
                ASSERT_EQ(st.st_rdev, makedev(243, 1));
                ASSERT_OK(sys(ioctl(fd, VFIO_GROUP_GET_STATUS, (uint32_t[2]) { 8, 0 })));
                close(fd);
                close(p);
        }

        fd = open("/dev/vfio/wrong-rdev", O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        ASSERT_OK(sys(fd));
        ASSERT_OK(sys(fstat(fd, &st)));
        ASSERT_TRUE(S_ISCHR(st.st_mode));
        ASSERT_EQ(st.st_rdev, makedev(1, 3));
        ASSERT_ERROR(sys(ioctl(fd, VFIO_GET_API_VERSION)), ENOTTY);
        close(fd);
}

static uint16_t read_command(int dev) {
        uint16_t cmd = 0;

        ASSERT_EQ(pread(dev, &cmd, 2, (off_t) (CONFIG_OFFSET + 4)), 2);
        return cmd;
}

static void write_command(int dev, uint16_t cmd) {
        ASSERT_EQ(pwrite(dev, &cmd, 2, (off_t) (CONFIG_OFFSET + 4)), 2);
}

static void test_group(void) {
        struct device_info info = { .argsz = sizeof(info) };
        struct region_info reg = { .argsz = sizeof(reg), .index = 7 };
        uint32_t status[2] = { 8, 0 };
        struct stat st;
        int container, group, dev, dev2;
        unsigned long s1, s2, s3;

        container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        ASSERT_OK(sys(container));
        ASSERT_OK(sys(fstat(container, &st)));
        ASSERT_TRUE(S_ISCHR(st.st_mode));
        ASSERT_EQ(st.st_rdev, makedev(10, 196));
        ASSERT_EQ(ioctl(container, VFIO_GET_API_VERSION), 0);
        ASSERT_EQ(ioctl(container, VFIO_CHECK_EXTENSION, 8), 1);
        ASSERT_EQ(ioctl(container, VFIO_CHECK_EXTENSION, 1), 0);
        ASSERT_ERROR(sys(ioctl(container, VFIO_SET_IOMMU, 8)), EINVAL);      /* no group yet */

        group = open("/dev/vfio/noiommu-7", O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        ASSERT_OK(sys(group));
        ASSERT_OK(sys(fstat(group, &st)));
        ASSERT_EQ(st.st_rdev, makedev(243, 0));
        ASSERT_ERROR(sys(open("/dev/vfio/noiommu-7", O_RDWR | O_CLOEXEC)), EBUSY);

        ASSERT_OK(sys(ioctl(group, VFIO_GROUP_GET_STATUS, status)));
        ASSERT_EQ(status[1], 1);
        ASSERT_ERROR(sys(ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:03.0")), EINVAL);   /* no container */
        ASSERT_OK(sys(ioctl(group, VFIO_GROUP_SET_CONTAINER, &container)));
        ASSERT_OK(sys(ioctl(container, VFIO_SET_IOMMU, 8)));
        ASSERT_ERROR(sys(ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:04.0")), ENODEV);  /* other group */

        dev = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:03.0");
        ASSERT_OK(sys(dev));
        dev2 = ioctl(group, VFIO_GROUP_GET_DEVICE_FD, "0000:00:03.0");
        ASSERT_OK(sys(dev2));
        ASSERT_TRUE(fcntl(dev, F_GETFD) & FD_CLOEXEC);

        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_GET_INFO, &info)));
        ASSERT_EQ(info.flags, 3);               /* PCI | RESET */
        ASSERT_EQ(info.num_regions, 9);
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_GET_REGION_INFO, &reg)));
        ASSERT_EQ(reg.offset, CONFIG_OFFSET);
        ASSERT_EQ(reg.flags & 3, 3);

        /* Bus Master starts on; clear it through one fd, see it through the other */
        ASSERT_TRUE(read_command(dev) & 4);
        write_command(dev, read_command(dev) & ~4);
        ASSERT_EQ(read_command(dev2) & 4, 0);
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_RESET)));
        ASSERT_EQ(read_command(dev), 0);

        /* the group stays open while a device fd lives */
        close(group);
        ASSERT_ERROR(sys(open("/dev/vfio/noiommu-7", O_RDWR | O_CLOEXEC)), EBUSY);
        close(dev2);
        ASSERT_ERROR(sys(open("/dev/vfio/noiommu-7", O_RDWR | O_CLOEXEC)), EBUSY);
        close(dev);
        group = open("/dev/vfio/noiommu-7", O_RDWR | O_CLOEXEC);
        ASSERT_OK(sys(group));
        close(group);
        close(container);

        s1 = log_seq("clear_bme dev=0000:00:03.0", NULL, 0);
        s2 = log_seq("reset dev=0000:00:03.0", NULL, 0);
        s3 = log_seq("close-device dev=0000:00:03.0", "still-open=0", 0);
        ASSERT_TRUE(s1 > 0 && s2 > s1 && s3 > s2);
}

static uint64_t pagemap_phys(const void *va) {
        uint64_t e;
        int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

        ASSERT_OK(sys(fd));
        ASSERT_EQ(pread(fd, &e, 8, (off_t) ((uintptr_t) va / 4096 * 8)), 8);
        close(fd);
        ASSERT_TRUE(e >> 63);
        return (e & ((UINT64_C(1) << 55) - 1)) * 4096 + (uintptr_t) va % 4096;
}

/* Opens, binds and attaches like vfio.c's open_cdev(); returns the device fd. */
static int cdev_open(const char *path, int iommufd, uint32_t *ret_ioas) {
        struct bind b = { .argsz = sizeof(b), .iommufd = iommufd };
        struct ioas_alloc a = { .size = sizeof(a) };
        struct attach at = { .argsz = sizeof(at) };
        struct device_info info = { .argsz = sizeof(info) };
        int dev;

        dev = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        ASSERT_OK(sys(dev));
        ASSERT_ERROR(sys(ioctl(dev, VFIO_DEVICE_GET_INFO, &info)), EINVAL);  /* access_granted gate */
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &b)));
        ASSERT_TRUE(b.out_devid > 0);
        ASSERT_ERROR(sys(ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &b)), EINVAL); /* binds once */
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_ALLOC, &a)));
        at.pt_id = a.out_ioas_id;
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at)));
        ASSERT_TRUE(at.pt_id != a.out_ioas_id);         /* the automatic HWPT's id */
        *ret_ioas = a.out_ioas_id;
        return dev;
}

static void test_cdev_noiommu(void) {
        struct iova_ranges q = { .size = sizeof(q) };
        struct iova_range r[4];
        struct get_pa pa = { .size = sizeof(pa) };
        struct ioas_map m = { .size = sizeof(m), .flags = 7 };
        struct ioas_unmap u = { .size = sizeof(u) };
        struct destroy d = { .size = sizeof(d) };
        struct detach dt = { .argsz = sizeof(dt) };
        size_t len = 16 * 4096;
        uint32_t ioas;
        uint8_t *mem;
        int iommufd, dev, keep, dev2;

        iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        ASSERT_OK(sys(iommufd));
        dev = cdev_open("/dev/vfio/devices/noiommu-vfio1", iommufd, &ioas);

        /* IOVA_RANGES: EMSGSIZE first, then the ranges: no MSI hole for noiommu (7.3) */
        q.ioas_id = ioas;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &q)), EMSGSIZE);
        ASSERT_EQ(q.num_iovas, 1);
        q.allowed = (uintptr_t) r;
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_IOVA_RANGES, &q)));
        ASSERT_EQ(r[0].start, 0);
        ASSERT_EQ(r[0].last, UINT64_MAX);

        mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        ASSERT_TRUE(mem != MAP_FAILED);
        memset(mem, 1, len);

        m.ioas_id = ioas;
        m.user_va = (uintptr_t) mem;
        m.length = len;
        m.iova = 0x200000;
        m.flags = 6;                                    /* no FIXED_IOVA */
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_MAP, &m)), EINVAL);
        ASSERT_TRUE(log_has("violation what=ioas-map-without-fixed-iova"));
        m.flags = 7;
        m.iova = 0x200000;
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_MAP, &m)));
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_MAP, &m)), EEXIST);

        /* GET_PA: every page agrees with pagemap; the v9 rules */
        for (size_t off = 0; off < len;) {
                pa = (struct get_pa) { .size = sizeof(pa), .ioas_id = ioas, .iova = 0x200000 + off,
                                       .length = len - off };
                ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)));
                ASSERT_EQ(pa.out_phys, pagemap_phys(mem + off));
                ASSERT_TRUE(pa.length >= 4096 && pa.length <= len - off);
                for (size_t p = 0; p < pa.length; p += 4096)
                        ASSERT_EQ(pagemap_phys(mem + off + p), pa.out_phys + p);
                off += pa.length;
        }
        pa = (struct get_pa) { .size = sizeof(pa), .ioas_id = ioas, .iova = 0x200000, .length = 4096 };
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)));
        ASSERT_EQ(pa.length, 4096);                     /* capped by the input */
        pa.length = 0;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), EINVAL);
        pa.length = 4096;
        pa.flags = 1;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), EOPNOTSUPP);
        pa.flags = 0;
        pa.reserved = 1;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), EOPNOTSUPP);
        pa.reserved = 0;
        pa.ioas_id = 999;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), ENOENT);
        pa.ioas_id = ioas;
        pa.iova = 0x10000000;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), ENOENT);
        pa.size = 32;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), EINVAL);
        pa.size = sizeof(pa);
        ASSERT_OK(setenv("NOIOMMU_MOCK_NO_GET_PA", "1", 1));
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), ENOTTY);
        ASSERT_OK(unsetenv("NOIOMMU_MOCK_NO_GET_PA"));
        ASSERT_OK(setenv("NOIOMMU_MOCK_GET_PA_STUB", "1", 1));
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), EOPNOTSUPP);
        ASSERT_OK(unsetenv("NOIOMMU_MOCK_GET_PA_STUB"));

        /* The hazard: a DETACH of the automatic HWPT unpins, GET_PA says EOPNOTSUPP; a
         * re-attach by IOAS id pins again. */
        pa = (struct get_pa) { .size = sizeof(pa), .ioas_id = ioas, .iova = 0x200000, .length = 4096 };
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt)));
        ASSERT_TRUE(log_has("unpin-ioas"));
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), EOPNOTSUPP);
        ASSERT_TRUE(log_has("errno=EOPNOTSUPP reason=no-hwpt"));
        {
                struct attach at = { .argsz = sizeof(at), .pt_id = ioas };
                ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at)));
        }
        ASSERT_TRUE(log_has("pin-ioas"));
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)));
        ASSERT_EQ(pa.out_phys, pagemap_phys(mem));

        /* anything else on iommufd is a violation */
        ASSERT_ERROR(sys(ioctl(iommufd, GET_HW_INFO, &pa)), ENOTTY);
        ASSERT_TRUE(log_has("violation what=unexpected-iommufd-ioctl req=0x3b8a"));

        /* a leaked copy keeps the device bound: a fresh open cannot bind */
        keep = fcntl(dev, F_DUPFD_CLOEXEC, 3);
        ASSERT_OK(sys(keep));
        u = (struct ioas_unmap) { .size = sizeof(u), .ioas_id = ioas, .iova = 0x200000, .length = len };
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_UNMAP, &u)));
        ASSERT_EQ(u.length, len);
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_UNMAP, &u)), ENOENT);
        d = (struct destroy) { .size = sizeof(d), .id = ioas };
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_DESTROY, &d)), EBUSY);     /* still attached */
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt)));
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_DESTROY, &d)));
        close(dev);
        ASSERT_TRUE(log_has("still-open=1"));

        dev2 = open("/dev/vfio/devices/noiommu-vfio1", O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        ASSERT_OK(sys(dev2));
        {
                struct bind b = { .argsz = sizeof(b), .iommufd = iommufd };
                ASSERT_ERROR(sys(ioctl(dev2, VFIO_DEVICE_BIND_IOMMUFD, &b)), EINVAL);
                ASSERT_TRUE(log_has("reason=still-bound-elsewhere"));
                close(keep);
                ASSERT_OK(sys(ioctl(dev2, VFIO_DEVICE_BIND_IOMMUFD, &b)));
        }
        close(dev2);
        close(iommufd);
        munmap(mem, len);
}

/* 7.3's explicit HWPT: pins with no device attached, survives the device's DETACH and a client's
 * re-attach by IOAS id, EBUSY to DESTROY while attached; only flags 0 and no data for noiommu. */
static void test_cdev_noiommu_explicit_hwpt(void) {
        struct bind b = { .argsz = sizeof(b) };
        struct ioas_alloc a = { .size = sizeof(a) };
        struct hwpt_alloc h = { .size = sizeof(h) };
        struct attach at = { .argsz = sizeof(at) };
        struct detach dt = { .argsz = sizeof(dt) };
        struct destroy d = { .size = sizeof(d) };
        struct ioas_map m = { .size = sizeof(m), .flags = 7, .iova = 0x400000 };
        struct get_pa pa = { .size = sizeof(pa), .iova = 0x400000, .length = 4096 };
        size_t len = 4 * 4096;
        uint64_t phys;
        uint8_t *mem;
        int iommufd, dev;

        iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
        ASSERT_OK(sys(iommufd));
        dev = open("/dev/vfio/devices/noiommu-vfio1", O_RDWR | O_CLOEXEC | O_NOFOLLOW);
        ASSERT_OK(sys(dev));
        b.iommufd = iommufd;
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_BIND_IOMMUFD, &b)));
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_ALLOC, &a)));

        h.dev_id = b.out_devid;
        h.pt_id = a.out_ioas_id;
        h.flags = 1;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_HWPT_ALLOC, &h)), EOPNOTSUPP);
        h.flags = 0;
        h.data_type = 1;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_HWPT_ALLOC, &h)), EOPNOTSUPP);
        h.data_type = 0;
        h.dev_id = 999;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_HWPT_ALLOC, &h)), ENOENT);
        h.dev_id = b.out_devid;
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_HWPT_ALLOC, &h)));
        ASSERT_TRUE(h.out_hwpt_id != 0 && h.out_hwpt_id != a.out_ioas_id);

        /* pinned and translatable before any device is attached */
        mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        ASSERT_TRUE(mem != MAP_FAILED);
        memset(mem, 2, len);
        m.ioas_id = a.out_ioas_id;
        m.user_va = (uintptr_t) mem;
        m.length = len;
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_MAP, &m)));
        ASSERT_TRUE(log_has("pinned=1"));
        pa.ioas_id = a.out_ioas_id;
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)));
        phys = pa.out_phys;
        ASSERT_EQ(phys, pagemap_phys(mem));

        at.pt_id = h.out_hwpt_id;
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at)));
        ASSERT_EQ(at.pt_id, h.out_hwpt_id);             /* explicit: unchanged */
        d.id = h.out_hwpt_id;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_DESTROY, &d)), EBUSY);
        d.id = a.out_ioas_id;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_DESTROY, &d)), EBUSY);

        /* the client's DETACH: the explicit HWPT stays, so does the pin */
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt)));
        pa.length = 4096;
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)));
        ASSERT_EQ(pa.out_phys, phys);
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt)));       /* nothing attached: 0 */

        /* a re-attach by IOAS id makes a new automatic HWPT beside the explicit one */
        at.pt_id = a.out_ioas_id;
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &at)));
        ASSERT_TRUE(at.pt_id != h.out_hwpt_id && at.pt_id != a.out_ioas_id);
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_DETACH_IOMMUFD_PT, &dt)));
        pa.length = 4096;
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)));
        ASSERT_EQ(pa.out_phys, phys);

        /* the daemon's teardown: UNMAP -> DETACH -> DESTROY hwpt -> DESTROY ioas; without the
         * unmap, destroying the HWPT unpins and GET_PA answers EOPNOTSUPP */
        d.id = h.out_hwpt_id;
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_DESTROY, &d)));
        ASSERT_TRUE(log_has("kind=hwpt"));
        pa.length = 4096;
        ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), EOPNOTSUPP);
        d.id = a.out_ioas_id;
        ASSERT_OK(sys(ioctl(iommufd, IOMMU_DESTROY, &d)));
        close(dev);
        close(iommufd);
        munmap(mem, len);
}

static void test_cdev_iommu_and_faults(void) {
        struct device_info info = { .argsz = sizeof(info) };
        struct get_pa pa = { .size = sizeof(pa), .length = 4096 };
        uint32_t ioas;
        int iommufd, dev;

        iommufd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
        ASSERT_OK(sys(iommufd));
        dev = cdev_open("/dev/vfio/devices/vfio2", iommufd, &ioas);

        /* GET_PA is for noiommu devices only: an IOAS behind a real IOMMU has no noiommu
         * page table (7.3: EOPNOTSUPP) */
        {
                struct ioas_map m = { .size = sizeof(m), .flags = 7, .ioas_id = ioas, .length = 4096 };
                void *mem = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);

                ASSERT_TRUE(mem != MAP_FAILED);
                m.user_va = (uintptr_t) mem;
                m.iova = 0xfee00000;                    /* the MSI window: reserved with an IOMMU */
                ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_MAP, &m)), EINVAL);
                m.iova = 0x100000;
                ASSERT_OK(sys(ioctl(iommufd, IOMMU_IOAS_MAP, &m)));
                pa.ioas_id = ioas;
                pa.iova = 0x100000;
                ASSERT_ERROR(sys(ioctl(iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &pa)), EOPNOTSUPP);
                ASSERT_TRUE(log_has("violation what=get-pa-on-iommu-device dev=0000:00:05.0"));
                munmap(mem, 4096);
        }

        ASSERT_OK(setenv("NOIOMMU_MOCK_NO_RESET", "0000:00:05.0", 1));
        ASSERT_OK(sys(ioctl(dev, VFIO_DEVICE_GET_INFO, &info)));
        ASSERT_EQ(info.flags, 2);
        ASSERT_ERROR(sys(ioctl(dev, VFIO_DEVICE_RESET)), EINVAL);
        ASSERT_OK(unsetenv("NOIOMMU_MOCK_NO_RESET"));

        ASSERT_OK(setenv("NOIOMMU_MOCK_BME_STUCK", "0000:00:05.0", 1));
        ASSERT_TRUE(read_command(dev) & 4);
        write_command(dev, 0);
        ASSERT_TRUE(read_command(dev) & 4);
        ASSERT_TRUE(log_has("bme-stuck dev=0000:00:05.0"));
        ASSERT_OK(unsetenv("NOIOMMU_MOCK_BME_STUCK"));
        write_command(dev, 0);
        ASSERT_EQ(read_command(dev), 0);

        close(dev);
        close(iommufd);
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path) < 0 ? -1 : 0;
}

int main(int argc, char *argv[]) {
        char tmpl[] = "/tmp/test-vfio-mock-XXXXXX";

        if (geteuid() != 0) {
                fprintf(stderr, "skip: needs root (mknod)\n");
                return 77;
        }
        if (!mkdtemp(tmpl))
                return EXIT_FAILURE;
        snprintf(root, sizeof(root), "%s", tmpl);
        snprintf(log_path, sizeof(log_path), "%s/mock.log", root);
        if (make_fixture() < 0) {
                fprintf(stderr, "skip: cannot mknod in %s\n", root);
                nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
                return 77;
        }

        /* Only now: the mock picks the root up on its next call. */
        ASSERT_OK(setenv("NOIOMMU_MOCK_LOG", log_path, 1));
        ASSERT_OK(setenv("NOIOMMU_MOCK_ROOT", root, 1));

        TEST(test_path_trap);
        TEST(test_openat2);
        TEST(test_planted_nodes);
        TEST(test_group);
        TEST(test_cdev_noiommu);
        TEST(test_cdev_noiommu_explicit_hwpt);
        TEST(test_cdev_iommu_and_faults);

        if (!getenv("NOIOMMU_TEST_KEEP"))
                nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        else
                fprintf(stderr, "kept %s\n", root);
        return EXIT_SUCCESS;
}
