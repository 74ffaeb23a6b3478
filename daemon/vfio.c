/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See vfio.h. Sequences follow kernel-api.md: §5 (cdev + iommufd), §6 (noiommu cdev, merged in
 * Linux 7.3: linux-7.3.md), §7 (legacy group noiommu), §8 (teardown order).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal/fd-util.h"
#include "internal/macro.h"
#include "vfio-uapi.h"
#include "vfio.h"

/* Mappings of one device: one per region of its lease, so this must not be below lease.h's
 * NOIOMMU_REGIONS_PER_LEASE_MAX (64). lease.h includes vfio.h, not the other way round, so the
 * value is repeated here; the lease refuses the 65th region before vfio_device_map() would. */
#define VFIO_MAPS_MAX 64

typedef struct VfioMap {
        const HugeRegion *region;
        uint64_t iova;
        uint64_t length;
} VfioMap;

struct VfioDevice {
        Backend backend;
        char address[NOIOMMU_PCI_ADDRESS_LEN + 1];

        int container_fd;               /* group-noiommu */
        int group_fd;                   /* group-noiommu */
        int iommufd;                    /* cdev backends: one per lease, never handed out */
        uint32_t ioas_id;
        uint32_t dev_id;
        uint32_t hwpt_id;               /* the daemon's explicit HWPT; 0: attached to the IOAS id */
        bool attached;

        int device_fd;                  /* the daemon's own handle: quiesce goes through it */
        int client_fd;                  /* what the client gets, until sent */

        uint64_t config_offset;         /* VFIO_PCI_CONFIG_REGION_INDEX */
        bool can_reset;

        struct iommu_iova_range *ranges;
        size_t n_ranges;
        uint64_t iova_next;

        VfioMap maps[VFIO_MAPS_MAX];
        size_t n_maps;
};

static const char *const address_kind_table[_ADDRESS_KIND_MAX] = {
        [ADDRESS_PHYSICAL] = "physical",
        [ADDRESS_IOVA] = "iova",
};

const char *address_kind_to_string(AddressKind k) {
        if (k < 0 || k >= _ADDRESS_KIND_MAX)
                return NULL;
        return address_kind_table[k];
}

int vfio_open_node(const char *path, dev_t rdev, int flags) {
        struct open_how how = {
                .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
                .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
        };
        _cleanup_close_ int pfd = -EBADF;
        char proc[64];
        struct stat st;
        int fd;

        /* First an O_PATH handle, without following a symlink in any component (openat2
         * RESOLVE_NO_SYMLINKS; a symlink as the last component comes back as itself and fails
         * the type check). Nothing is opened for real yet, so a FIFO, a socket or a regular
         * file planted at the path never blocks or affects the daemon. */
        pfd = (int) syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
        if (pfd < 0 && (errno == ENOSYS || errno == EPERM))     /* EPERM: seccomp without openat2 */
                pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (pfd < 0)
                return negative_errno();

        if (fstat(pfd, &st) < 0)
                return negative_errno();
        if (!S_ISCHR(st.st_mode) || st.st_rdev != rdev)
                return -ENODEV;

        /* Then the real open of exactly that inode, through our own fd: no second path lookup
         * that a swap could redirect. */
        (void) snprintf(proc, sizeof(proc), "/proc/self/fd/%i", pfd);
        fd = open(proc, (flags & ~O_CREAT) | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
                return negative_errno();
        return fd;
}

/* major:minor of a misc device (vfio, iommu) from /sys/class/misc/NAME/dev. */
static int misc_rdev(const char *name, dev_t *ret) {
        _cleanup_free_ char *s = NULL;
        char path[128];
        unsigned ma, mi;
        int r;

        (void) snprintf(path, sizeof(path), "/sys/class/misc/%s/dev", name);
        r = read_small_file_at(AT_FDCWD, path, &s);
        if (r < 0)
                return r;
        if (sscanf(s, "%u:%u", &ma, &mi) != 2)
                return -EBADMSG;
        *ret = makedev(ma, mi);
        return 0;
}

static int open_misc(const char *name, const char *path) {
        dev_t rdev;
        int r;

        r = misc_rdev(name, &rdev);
        if (r < 0)
                return r == -ENOENT ? -EOPNOTSUPP : r;
        return vfio_open_node(path, rdev, O_RDWR);
}

static int device_probe_regions(VfioDevice *v) {
        struct vfio_device_info info = { .argsz = sizeof(info) };
        struct vfio_region_info reg = { .argsz = sizeof(reg), .index = VFIO_PCI_CONFIG_REGION_INDEX };

        if (ioctl(v->device_fd, VFIO_DEVICE_GET_INFO, &info) < 0)
                return negative_errno();
        if (!(info.flags & VFIO_DEVICE_FLAGS_PCI) || info.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX)
                return -ENODEV;
        v->can_reset = info.flags & VFIO_DEVICE_FLAGS_RESET;

        if (ioctl(v->device_fd, VFIO_DEVICE_GET_REGION_INFO, &reg) < 0)
                return negative_errno();
        if (!(reg.flags & VFIO_REGION_INFO_FLAG_READ) || !(reg.flags & VFIO_REGION_INFO_FLAG_WRITE))
                return -ENODEV;
        v->config_offset = reg.offset;
        return 0;
}

static int open_group_noiommu(VfioDevice *v, const InventoryDevice *d) {
        struct vfio_group_status status = { .argsz = sizeof(status) };
        char path[128];
        int r;

        v->container_fd = open_misc("vfio", "/dev/vfio/vfio");
        if (v->container_fd < 0)
                return v->container_fd;
        if (ioctl(v->container_fd, VFIO_GET_API_VERSION) != VFIO_API_VERSION)
                return -EOPNOTSUPP;
        /* By value. VFIO's own container answers 1 only while vfio.enable_unsafe_noiommu_mode
         * is on; iommufd's (IOMMUFD_VFIO_CONTAINER) answers whether VFIO_NOIOMMU is built, not
         * the parameter (linux-7.3.md). Either way the parameter itself was checked by the
         * inventory, and the group is named noiommu only if it was set at bind time. */
        if (ioctl(v->container_fd, VFIO_CHECK_EXTENSION, VFIO_NOIOMMU_IOMMU) != 1)
                return -EOPNOTSUPP;

        (void) snprintf(path, sizeof(path), "/dev/vfio/%s", d->node_name);
        r = vfio_open_node(path, d->rdev, O_RDWR);
        if (r < 0)
                return r;                       /* EBUSY: the group is open elsewhere */
        v->group_fd = r;

        if (ioctl(v->group_fd, VFIO_GROUP_GET_STATUS, &status) < 0)
                return negative_errno();
        if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE))
                return -EBUSY;                  /* another group member bound to a host driver */
        if (ioctl(v->group_fd, VFIO_GROUP_SET_CONTAINER, &v->container_fd) < 0)
                return negative_errno();
        if (ioctl(v->container_fd, VFIO_SET_IOMMU, VFIO_NOIOMMU_IOMMU) < 0)
                return negative_errno();

        /* The group path lets the same device be opened several times: the daemon keeps one
         * device fd for itself (quiesce) and gives the client another. */
        v->device_fd = ioctl(v->group_fd, VFIO_GROUP_GET_DEVICE_FD, d->address);
        if (v->device_fd < 0)
                return negative_errno();
        v->client_fd = ioctl(v->group_fd, VFIO_GROUP_GET_DEVICE_FD, d->address);
        if (v->client_fd < 0)
                return negative_errno();
        return 0;
}

static int iova_ranges_load(VfioDevice *v) {
        struct iommu_ioas_iova_ranges q = { .size = sizeof(q), .ioas_id = v->ioas_id };

        /* The first call reports how many ranges there are (EMSGSIZE when num_iovas is too
         * small). Ask after attaching: attaching narrows the ranges (e.g. the MSI window). */
        if (ioctl(v->iommufd, IOMMU_IOAS_IOVA_RANGES, &q) < 0 && errno != EMSGSIZE)
                return negative_errno();
        if (q.num_iovas == 0)
                return -ENOSPC;
        free(v->ranges);
        v->ranges = new0(struct iommu_iova_range, q.num_iovas);
        if (!v->ranges)
                return -ENOMEM;
        q.allowed_iovas = (uintptr_t) v->ranges;
        if (ioctl(v->iommufd, IOMMU_IOAS_IOVA_RANGES, &q) < 0)
                return negative_errno();
        v->n_ranges = q.num_iovas;
        return 0;
}

static int open_cdev(VfioDevice *v, const InventoryDevice *d) {
        struct vfio_device_bind_iommufd bind = { .argsz = sizeof(bind) };
        struct vfio_device_attach_iommufd_pt attach = { .argsz = sizeof(attach) };
        struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
        struct iommu_hwpt_alloc hwpt = { .size = sizeof(hwpt), .flags = 0 };
        char path[128];
        int r;

        v->iommufd = open_misc("iommu", "/dev/iommu");
        if (v->iommufd < 0)
                return v->iommufd;

        (void) snprintf(path, sizeof(path), "/dev/vfio/devices/%s", d->node_name);
        r = vfio_open_node(path, d->rdev, O_RDWR);
        if (r < 0)
                return r;
        v->device_fd = r;

        /* A cdev binds once: if a previous holder kept a copy of its device fd, the device is
         * still bound and this fails. That is how a leaked fd is detected at the next grant. */
        bind.iommufd = v->iommufd;
        if (ioctl(v->device_fd, VFIO_DEVICE_BIND_IOMMUFD, &bind) < 0)
                return errno == EINVAL || errno == EBUSY ? -EBUSY : negative_errno();
        v->dev_id = bind.out_devid;

        if (ioctl(v->iommufd, IOMMU_IOAS_ALLOC, &alloc) < 0)
                return negative_errno();
        v->ioas_id = alloc.out_ioas_id;

        /* An explicit HWPT, owned by the daemon, for both cdev backends. Why:
         *
         * IOMMU_IOAS_MAP pins pages only while at least one HWPT sits in the IOAS. Attaching
         * the device to the IOAS id makes an *automatic* HWPT, which lives only as long as
         * that attachment — and the client holds the device fd, so it can call
         * VFIO_DEVICE_DETACH_IOMMUFD_PT at any time. For noiommu that destroys the software
         * page table and unpins every mapping: GET_PA then answers EOPNOTSUPP, and a
         * re-ATTACH may pin other pages, while the device is still programmed with the old
         * physical addresses (linux-7.3.md, "Hazard: DETACH by the client"). A HWPT made with
         * IOMMU_HWPT_ALLOC stays in the IOAS until the daemon's IOMMU_DESTROY, whatever the
         * client attaches or detaches; automatic selection never reuses it; a client that
         * re-attaches to the IOAS id gets a new automatic HWPT beside it. So the kernel's pin
         * and GET_PA's answers depend only on the daemon. Independently of that, hugepage.c
         * keeps its own io_uring FOLL_LONGTERM pin on every allocation, on every backend: the
         * pages cannot move or be freed even if an iommufd pin went away. The two together
         * make the addresses the daemon hands out independent of anything the client can do
         * with its fd.
         *
         * flags 0 and IOMMU_HWPT_DATA_NONE (the zeroed tail): for a noiommu device the one
         * HWPT_ALLOC form 7.3 accepts (any flag or driver data is EOPNOTSUPP), and the only
         * call besides BIND/ATTACH/DETACH/IOAS_*, GET_PA and DESTROY that a noiommu dev_id is
         * ever passed to; for a real IOMMU (cdev-iommu) it is a normal paging domain for that
         * device's IOMMU, the same thing the automatic attach would have made. One code path
         * for both backends: with a real IOMMU a client's DETACH only blocks its own DMA, but
         * the daemon's domain then also outlives it, and teardown is the same sequence. */
        hwpt.dev_id = v->dev_id;
        hwpt.pt_id = v->ioas_id;
        if (ioctl(v->iommufd, IOMMU_HWPT_ALLOC, &hwpt) < 0) {
                /* No HWPT_ALLOC (ENOTTY) or not for this device (EOPNOTSUPP): a kernel
                 * without the merged noiommu cdev code cannot serve this backend. */
                if (d->backend == BACKEND_CDEV_NOIOMMU && (errno == ENOTTY || errno == EOPNOTSUPP))
                        return -EPROTONOSUPPORT;
                return negative_errno();
        }
        v->hwpt_id = hwpt.out_hwpt_id;

        /* The attach returns pt_id unchanged for an explicit HWPT. */
        attach.pt_id = v->hwpt_id;
        if (ioctl(v->device_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach) < 0)
                return negative_errno();
        v->attached = true;

        r = iova_ranges_load(v);
        if (r < 0)
                return r;

        if (d->backend == BACKEND_CDEV_NOIOMMU) {
                /* Without IOMMU_IOAS_NOIOMMU_GET_PA the daemon cannot say where memory is, so
                 * refuse the device now rather than after handing it out. The IOAS is empty,
                 * so a kernel that has the command answers ENOENT ("nothing mapped at iova",
                 * checked after everything about the ABI). ENOTTY: no such command (before
                 * 7.3, or no iommufd); E2BIG: a shorter struct than ours; EOPNOTSUPP: 7.3
                 * built with IOMMUFD but without IOMMUFD_NOIOMMU (the body is a stub).
                 * Anything else (EPERM without CAP_SYS_RAWIO, EINVAL) is an error of its
                 * own, never "unsupported". */
                struct iommu_ioas_noiommu_get_pa q = {
                        .size = sizeof(q), .ioas_id = v->ioas_id, .iova = 0, .length = 1,
                };

                if (ioctl(v->iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &q) >= 0)
                        return -EIO;            /* an empty IOAS cannot translate anything */
                if (errno == ENOTTY || errno == E2BIG || errno == EOPNOTSUPP)
                        return -EPROTONOSUPPORT;
                if (errno != ENOENT)
                        return negative_errno();
        }

        v->client_fd = fcntl(v->device_fd, F_DUPFD_CLOEXEC, 3);
        if (v->client_fd < 0)
                return negative_errno();
        return 0;
}

int vfio_device_open(const InventoryDevice *d, VfioDevice **ret) {
        _cleanup_(vfio_device_closep) VfioDevice *v = NULL;
        int r;

        if (d->backend < 0 || d->backend >= _BACKEND_MAX || d->rdev == 0 || !d->node_name[0])
                return -EOPNOTSUPP;

        v = new0(VfioDevice, 1);
        if (!v)
                return -ENOMEM;
        *v = (VfioDevice) {
                .backend = d->backend,
                .container_fd = -EBADF,
                .group_fd = -EBADF,
                .iommufd = -EBADF,
                .device_fd = -EBADF,
                .client_fd = -EBADF,
        };
        memcpy(v->address, d->address, sizeof(v->address));

        switch (d->backend) {
        case BACKEND_GROUP_NOIOMMU:
                r = open_group_noiommu(v, d);
                break;
        case BACKEND_CDEV_IOMMU:
        case BACKEND_CDEV_NOIOMMU:
                r = open_cdev(v, d);
                break;
        case _BACKEND_MAX:
        case _BACKEND_INVALID:
        default:
                r = -EOPNOTSUPP;
        }
        if (r < 0)
                return r;

        r = device_probe_regions(v);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(v);
        return 0;
}

int vfio_device_client_fd(const VfioDevice *v) {
        return v->client_fd;
}

void vfio_device_client_fd_sent(VfioDevice *v) {
        v->client_fd = safe_close(v->client_fd);
}

/* First IOVA in the allowed ranges at or above iova_next, aligned to align, with room for len.
 * IOVA 0 is never used. */
static int iova_alloc(VfioDevice *v, uint64_t len, uint64_t align, uint64_t *ret) {
        for (size_t i = 0; i < v->n_ranges; i++) {
                uint64_t start = MAX(MAX(v->ranges[i].start, v->iova_next), align);

                start = (start + align - 1) & ~(align - 1);
                if (start < v->ranges[i].start || start > v->ranges[i].last ||
                    len - 1 > v->ranges[i].last - start)
                        continue;
                v->iova_next = start + len;
                *ret = start;
                return 0;
        }
        return -ENOSPC;
}

static int ioas_map(VfioDevice *v, HugeRegion *r, uint64_t *ret_iova) {
        struct iommu_ioas_map map = {
                .size = sizeof(map),
                .flags = IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
                .ioas_id = v->ioas_id,
                .user_va = (uintptr_t) r->addr,   /* the daemon's mapping stays for the lease */
                .length = r->size,
        };
        uint64_t iova;
        int k;

        k = iova_alloc(v, r->size, r->hugepage_size, &iova);
        if (k < 0)
                return k;
        map.iova = iova;
        /* IOMMU_IOAS_MAP pins (pin_user_pages) while a HWPT is attached, which it is. */
        if (ioctl(v->iommufd, IOMMU_IOAS_MAP, &map) < 0)
                return negative_errno();
        *ret_iova = map.iova;
        return 0;
}

/* Undoes one ioas_map(), with its iova and length. The uapi (struct iommu_ioas_unmap in
 * <linux/iommufd.h>) wants "a superset of a previously mapped range" and allows no splitting, so
 * exactly one earlier map is the one safe shape. It drops iommufd's own pin of those pages; the
 * daemon's io_uring pin is separate and stays. */
static int ioas_unmap(VfioDevice *v, uint64_t iova, uint64_t length) {
        struct iommu_ioas_unmap u = {
                .size = sizeof(u),
                .ioas_id = v->ioas_id,
                .iova = iova,
                .length = length,
        };

        if (ioctl(v->iommufd, IOMMU_IOAS_UNMAP, &u) < 0)
                return negative_errno();
        return 0;
}

/* Backend C: physical addresses from IOMMU_IOAS_NOIOMMU_GET_PA, walking contiguous runs, each
 * page checked against expected[] (one entry per hugepage of r). ret may be NULL (check only).
 *
 * Errors (linux-7.3.md, "GET_PA errors"): the command was probed when the device was opened,
 * so here EOPNOTSUPP can only mean "no noiommu page table behind this IOVA any more" — the
 * HWPT that pinned the area is gone. With the daemon's explicit HWPT that should be
 * impossible; it is reported as -ENOLINK so that the lease is treated as broken, never as
 * "unsupported". A page that differs from expected[] is -ESTALE. Every other errno (ENOENT:
 * the area is not mapped; EINVAL; EPERM) is returned as it is. */
static int noiommu_get_pa(VfioDevice *v, const HugeRegion *r, uint64_t iova, const uint64_t *expected,
                          DmaSegment **ret, size_t *ret_n) {
        _cleanup_free_ DmaSegment *s = NULL;
        size_t n = 0;

        s = new0(DmaSegment, r->n_pages);
        if (!s)
                return -ENOMEM;

        for (uint64_t off = 0; off < r->size;) {
                struct iommu_ioas_noiommu_get_pa q = {
                        .size = sizeof(q),
                        .ioas_id = v->ioas_id,
                        .iova = iova + off,
                        .length = r->size - off,        /* an upper bound; 0 is rejected (v9) */
                };
                uint64_t len;

                if (ioctl(v->iommufd, IOMMU_IOAS_NOIOMMU_GET_PA, &q) < 0)
                        return errno == EOPNOTSUPP ? -ENOLINK : negative_errno();
                len = MIN(q.length, r->size - off);
                if (len == 0 || len % r->hugepage_size != 0)
                        return -EIO;

                /* Cross-check with what pagemap said for the daemon's own mapping (or, after
                 * a restart, with what was handed out): both name the pages the pins hold. A
                 * difference means the pages moved, or one of the two is wrong. */
                for (uint64_t p = 0; p < len; p += r->hugepage_size)
                        if (expected[(off + p) / r->hugepage_size] != q.out_phys + p)
                                return -ESTALE;

                if (n > 0 && s[n - 1].dma_address + s[n - 1].length == q.out_phys)
                        s[n - 1].length += len;
                else {
                        if (n >= r->n_pages)
                                return -EIO;
                        s[n++] = (DmaSegment) { .offset = off, .length = len, .dma_address = q.out_phys };
                }
                off += len;
        }
        if (ret) {
                *ret = TAKE_PTR(s);
                *ret_n = n;
        }
        return 0;
}

int vfio_device_map(VfioDevice *v, HugeRegion *r, DmaSegment **ret_segments, size_t *ret_n,
                    AddressKind *ret_kind) {
        _cleanup_free_ DmaSegment *s = NULL;
        uint64_t iova = 0;
        size_t n = 0;
        int k;

        if (v->n_maps >= VFIO_MAPS_MAX)
                return -EUSERS;

        switch (v->backend) {
        case BACKEND_GROUP_NOIOMMU:
                /* No mapping API: the device uses physical addresses, from pagemap, of pages the
                 * daemon's io_uring pin holds. */
                k = dma_segments_merge(r->phys, r->n_pages, r->hugepage_size, &s);
                if (k < 0)
                        return k;
                n = (size_t) k;
                *ret_kind = ADDRESS_PHYSICAL;
                break;

        case BACKEND_CDEV_IOMMU:
                k = ioas_map(v, r, &iova);
                if (k < 0)
                        return k;
                s = new0(DmaSegment, 1);
                if (!s) {
                        (void) ioas_unmap(v, iova, r->size);
                        return -ENOMEM;
                }
                s[0] = (DmaSegment) { .offset = 0, .length = r->size, .dma_address = iova };
                n = 1;
                *ret_kind = ADDRESS_IOVA;
                break;

        case BACKEND_CDEV_NOIOMMU:
                /* The IOVA is only a lookup key into the software page table, never a bus
                 * address; the device is programmed with the physical addresses. */
                k = ioas_map(v, r, &iova);
                if (k < 0)
                        return k;
                k = noiommu_get_pa(v, r, iova, r->phys, &s, &n);
                if (k < 0) {
                        (void) ioas_unmap(v, iova, r->size);
                        return k;
                }
                *ret_kind = ADDRESS_PHYSICAL;
                break;

        case _BACKEND_MAX:
        case _BACKEND_INVALID:
        default:
                return -EOPNOTSUPP;
        }

        v->maps[v->n_maps++] = (VfioMap) { .region = r, .iova = iova, .length = r->size };
        *ret_segments = TAKE_PTR(s);
        *ret_n = n;
        return 0;
}

int vfio_device_unmap(VfioDevice *v, HugeRegion *r) {
        for (size_t i = 0; i < v->n_maps; i++) {
                VfioMap m = v->maps[i];

                if (m.region != r)
                        continue;
                v->maps[i] = v->maps[--v->n_maps];
                if (v->n_maps == 0)
                        v->iova_next = 0;       /* nothing mapped: the whole space is free again */
                if (v->backend == BACKEND_GROUP_NOIOMMU)
                        return 0;

                return ioas_unmap(v, m.iova, m.length);
        }
        return -ENOENT;
}

int vfio_device_quiesce(VfioDevice *v, bool *ret_reset) {
        off_t off = (off_t) (v->config_offset + PCI_COMMAND);
        uint16_t cmd;

        *ret_reset = false;

        /* Through the daemon's own handle: the client's copy may be gone (a dying process loses
         * its mm before its fds) or still in use by a process that kept it. */
        if (pread(v->device_fd, &cmd, sizeof(cmd), off) != (ssize_t) sizeof(cmd))
                return -EIO;
        if (cmd & PCI_COMMAND_MASTER) {
                cmd &= (uint16_t) ~PCI_COMMAND_MASTER;
                if (pwrite(v->device_fd, &cmd, sizeof(cmd), off) != (ssize_t) sizeof(cmd))
                        return -EIO;
        }
        if (pread(v->device_fd, &cmd, sizeof(cmd), off) != (ssize_t) sizeof(cmd))
                return -EIO;
        if (cmd & PCI_COMMAND_MASTER)
                return -EIO;                    /* still bus master: do not free anything */

        if (v->can_reset) {
                if (ioctl(v->device_fd, VFIO_DEVICE_RESET) < 0)
                        return negative_errno();
                *ret_reset = true;
        }
        return 0;
}

VfioDevice *vfio_device_close(VfioDevice *v) {
        if (!v)
                return NULL;

        v->client_fd = safe_close(v->client_fd);

        if (v->iommufd >= 0) {
                for (size_t i = 0; i < v->n_maps; i++)
                        (void) ioas_unmap(v, v->maps[i].iova, v->maps[i].length);
                /* Detach through our handle: a client that kept a copy of the (shared) device
                 * file is left without any page table — with a real IOMMU its DMA faults. This
                 * detaches whatever the device is attached to now (the daemon's HWPT, or an
                 * automatic one a client attached it to); either way the explicit HWPT is
                 * then unattached and can go. Order: UNMAP (above) -> DETACH -> DESTROY hwpt
                 * -> DESTROY ioas; DESTROY of an attached HWPT would be EBUSY. */
                if (v->attached && v->device_fd >= 0) {
                        struct vfio_device_detach_iommufd_pt detach = { .argsz = sizeof(detach) };
                        (void) ioctl(v->device_fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &detach);
                }
                if (v->hwpt_id != 0) {
                        struct iommu_destroy d = { .size = sizeof(d), .id = v->hwpt_id };
                        (void) ioctl(v->iommufd, IOMMU_DESTROY, &d);
                }
                if (v->ioas_id != 0) {
                        struct iommu_destroy d = { .size = sizeof(d), .id = v->ioas_id };
                        (void) ioctl(v->iommufd, IOMMU_DESTROY, &d);
                }
        }
        v->device_fd = safe_close(v->device_fd);
        v->group_fd = safe_close(v->group_fd);
        v->container_fd = safe_close(v->container_fd);
        v->iommufd = safe_close(v->iommufd);
        free(v->ranges);
        free(v);
        return NULL;
}

void vfio_device_get_fds(const VfioDevice *v, int *ret_dev, int *ret_grp, int *ret_ctr, int *ret_iommufd) {
        *ret_dev = v->device_fd;
        *ret_grp = v->group_fd;
        *ret_ctr = v->container_fd;
        *ret_iommufd = v->iommufd;
}

void vfio_device_get_ids(const VfioDevice *v, uint32_t *ret_ioas_id, uint32_t *ret_dev_id,
                         uint32_t *ret_hwpt_id) {
        *ret_ioas_id = v->ioas_id;
        *ret_dev_id = v->dev_id;
        *ret_hwpt_id = v->hwpt_id;
}

int vfio_device_get_map(const VfioDevice *v, const HugeRegion *r, uint64_t *ret_iova) {
        for (size_t i = 0; i < v->n_maps; i++)
                if (v->maps[i].region == r) {
                        *ret_iova = v->maps[i].iova;
                        return 0;
                }
        return -ENOENT;
}

int vfio_device_restore(const InventoryDevice *d, int dev_fd, int grp_fd, int ctr_fd, int iommufd,
                        uint32_t ioas_id, uint32_t dev_id, uint32_t hwpt_id, VfioDevice **ret) {
        _cleanup_(vfio_device_closep) VfioDevice *v = NULL;
        int r;

        v = new0(VfioDevice, 1);
        if (!v) {
                (void) safe_close(dev_fd);
                (void) safe_close(grp_fd);
                (void) safe_close(ctr_fd);
                (void) safe_close(iommufd);
                return -ENOMEM;
        }
        *v = (VfioDevice) {
                .backend = d->backend,
                .container_fd = ctr_fd,
                .group_fd = grp_fd,
                .iommufd = iommufd,
                .ioas_id = ioas_id,
                .dev_id = dev_id,
                .hwpt_id = hwpt_id,
                .attached = iommufd >= 0,
                .device_fd = dev_fd,
                .client_fd = -EBADF,
        };
        memcpy(v->address, d->address, sizeof(v->address));

        if (v->device_fd < 0)
                return -EBADF;
        if (d->backend == BACKEND_GROUP_NOIOMMU ? (v->group_fd < 0 || v->container_fd < 0) : v->iommufd < 0)
                return -EBADF;

        r = device_probe_regions(v);
        if (r < 0)
                return r;
        if (v->iommufd >= 0) {
                r = iova_ranges_load(v);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(v);
        return 0;
}

int vfio_device_restore_map(VfioDevice *v, const HugeRegion *r, uint64_t iova) {
        if (v->n_maps >= VFIO_MAPS_MAX)
                return -EUSERS;
        v->maps[v->n_maps++] = (VfioMap) { .region = r, .iova = iova, .length = r->size };
        v->iova_next = MAX(v->iova_next, iova + r->size);
        return 0;
}

int vfio_device_check_map(VfioDevice *v, const HugeRegion *r, const uint64_t *granted) {
        for (size_t i = 0; i < v->n_maps; i++)
                if (v->maps[i].region == r)
                        return v->backend == BACKEND_CDEV_NOIOMMU ?
                                noiommu_get_pa(v, r, v->maps[i].iova, granted, NULL, NULL) : 0;
        return -ENOENT;
}
