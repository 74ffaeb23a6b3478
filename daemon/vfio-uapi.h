/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Kernel uapi the build host's headers may lack (kernel-api.md §11, §12; linux-7.3.md "uapi").
 *
 * Debian 12 ships 6.1 headers: <linux/vfio.h> without the cdev ioctls, and no <linux/iommufd.h>
 * at all. Debian's 7.3 linux-libc-dev has all of it. The rule, group by group: when the
 * system header defines the group's ioctl macro, its definitions are used and nothing is
 * defined here (a second definition of a struct would not compile); otherwise the group is
 * defined here, in the 7.3 layouts. Either way the static_asserts below check the header that
 * was actually compiled against, so a wrong number or layout fails the build instead of
 * corrupting an ioctl. Sizes are checked as "at least what the daemon relies on" where
 * older headers have shorter versions of a struct (argsz/size versioning: the kernel accepts a
 * shorter struct, and a longer one as long as the trailing fields are zero,
 * copy_struct_from_user()). scripts/check-uapi-7.3.sh compiles the daemon against the 7.3
 * headers; the normal build compiles it against the host's.
 *
 * IOMMU_IOAS_NOIOMMU_GET_PA is merged in Linux 7.3 ("iommufd: Enable noiommu mode for cdev",
 * merge 85e0d1de369c, command 0x95, unchanged since the v9/v10 postings). The daemon still
 * detects it at run time, never by kernel version: a 7.3 kernel built without
 * IOMMUFD_NOIOMMU has the ioctl but answers EOPNOTSUPP (vfio.c, open_cdev()).
 */
#pragma once

#include <assert.h>
#include <linux/types.h>
#include <linux/vfio.h>
#include <stddef.h>
#include <sys/ioctl.h>

#if defined(__has_include)
#  if __has_include(<linux/iommufd.h>)
#    include <linux/iommufd.h>
#  endif
#endif

/* ---- VFIO device cdev (Linux 6.6+; layouts of 7.3, unchanged since 7.2) ---- */

#ifndef VFIO_DEVICE_BIND_IOMMUFD
struct vfio_device_bind_iommufd {
        __u32 argsz;
        __u32 flags;
        __s32 iommufd;
        __u32 out_devid;
        __aligned_u64 token_uuid_ptr;   /* 7.2+ (VFIO_DEVICE_BIND_FLAG_TOKEN); zero */
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)

struct vfio_device_attach_iommufd_pt {
        __u32 argsz;
        __u32 flags;
        __u32 pt_id;
        __u32 pasid;                    /* 6.12+ (VFIO_DEVICE_ATTACH_PASID); zero, never used */
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)

struct vfio_device_detach_iommufd_pt {
        __u32 argsz;
        __u32 flags;
        __u32 pasid;                    /* 6.12+; zero, never used */
};
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)
#endif

static_assert(VFIO_DEVICE_BIND_IOMMUFD == 0x3b76, "VFIO_DEVICE_BIND_IOMMUFD");
static_assert(VFIO_DEVICE_ATTACH_IOMMUFD_PT == 0x3b77, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
static_assert(VFIO_DEVICE_DETACH_IOMMUFD_PT == 0x3b78, "VFIO_DEVICE_DETACH_IOMMUFD_PT");
static_assert(sizeof(struct vfio_device_bind_iommufd) >= 16, "bind layout");
static_assert(offsetof(struct vfio_device_bind_iommufd, iommufd) == 8, "bind layout");
static_assert(offsetof(struct vfio_device_bind_iommufd, out_devid) == 12, "bind layout");
static_assert(sizeof(struct vfio_device_attach_iommufd_pt) >= 12, "attach layout");
static_assert(offsetof(struct vfio_device_attach_iommufd_pt, pt_id) == 8, "attach layout");
static_assert(sizeof(struct vfio_device_detach_iommufd_pt) >= 8, "detach layout");

/* ---- Legacy VFIO (present in 6.1; pinned here so a header change cannot go unnoticed) ---- */

static_assert(VFIO_GET_API_VERSION == 0x3b64, "VFIO_GET_API_VERSION");
static_assert(VFIO_CHECK_EXTENSION == 0x3b65, "VFIO_CHECK_EXTENSION");
static_assert(VFIO_SET_IOMMU == 0x3b66, "VFIO_SET_IOMMU");
static_assert(VFIO_GROUP_GET_STATUS == 0x3b67, "VFIO_GROUP_GET_STATUS");
static_assert(VFIO_GROUP_SET_CONTAINER == 0x3b68, "VFIO_GROUP_SET_CONTAINER");
static_assert(VFIO_GROUP_GET_DEVICE_FD == 0x3b6a, "VFIO_GROUP_GET_DEVICE_FD");
static_assert(VFIO_DEVICE_GET_INFO == 0x3b6b, "VFIO_DEVICE_GET_INFO");
static_assert(VFIO_DEVICE_GET_REGION_INFO == 0x3b6c, "VFIO_DEVICE_GET_REGION_INFO");
static_assert(VFIO_DEVICE_RESET == 0x3b6f, "VFIO_DEVICE_RESET");
static_assert(VFIO_NOIOMMU_IOMMU == 8, "VFIO_NOIOMMU_IOMMU");
static_assert(sizeof(struct vfio_group_status) == 8, "vfio_group_status");
static_assert(offsetof(struct vfio_device_info, num_regions) == 8, "vfio_device_info");
static_assert(offsetof(struct vfio_device_info, num_irqs) == 12, "vfio_device_info");
static_assert(sizeof(struct vfio_region_info) == 32, "vfio_region_info");
static_assert(offsetof(struct vfio_region_info, size) == 16, "vfio_region_info");
static_assert(offsetof(struct vfio_region_info, offset) == 24, "vfio_region_info");

/* ---- iommufd base (Linux 6.2+; absent from bookworm's headers) ---- */

#ifndef IOMMUFD_TYPE
#define IOMMUFD_TYPE (';')

enum {
        IOMMUFD_CMD_BASE = 0x80,
        IOMMUFD_CMD_DESTROY = IOMMUFD_CMD_BASE,
        IOMMUFD_CMD_IOAS_ALLOC = 0x81,
        IOMMUFD_CMD_IOAS_ALLOW_IOVAS = 0x82,
        IOMMUFD_CMD_IOAS_COPY = 0x83,
        IOMMUFD_CMD_IOAS_IOVA_RANGES = 0x84,
        IOMMUFD_CMD_IOAS_MAP = 0x85,
        IOMMUFD_CMD_IOAS_UNMAP = 0x86,
        IOMMUFD_CMD_OPTION = 0x87,
};

struct iommu_destroy {
        __u32 size;
        __u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, IOMMUFD_CMD_DESTROY)

struct iommu_ioas_alloc {
        __u32 size;
        __u32 flags;
        __u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_ALLOC)

struct iommu_iova_range {
        __aligned_u64 start;
        __aligned_u64 last;             /* inclusive */
};

struct iommu_ioas_iova_ranges {
        __u32 size;
        __u32 ioas_id;
        __u32 num_iovas;
        __u32 __reserved;
        __aligned_u64 allowed_iovas;
        __aligned_u64 out_iova_alignment;
};
#define IOMMU_IOAS_IOVA_RANGES _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_IOVA_RANGES)

enum iommufd_ioas_map_flags {
        IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
        IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
        IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

struct iommu_ioas_map {
        __u32 size;
        __u32 flags;
        __u32 ioas_id;
        __u32 __reserved;
        __aligned_u64 user_va;
        __aligned_u64 length;
        __aligned_u64 iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_MAP)

struct iommu_ioas_unmap {
        __u32 size;
        __u32 ioas_id;
        __aligned_u64 iova;
        __aligned_u64 length;           /* out: bytes unmapped */
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_UNMAP)
#endif

static_assert(IOMMU_DESTROY == 0x3b80, "IOMMU_DESTROY");
static_assert(IOMMU_IOAS_ALLOC == 0x3b81, "IOMMU_IOAS_ALLOC");
static_assert(IOMMU_IOAS_IOVA_RANGES == 0x3b84, "IOMMU_IOAS_IOVA_RANGES");
static_assert(IOMMU_IOAS_MAP == 0x3b85, "IOMMU_IOAS_MAP");
static_assert(IOMMU_IOAS_UNMAP == 0x3b86, "IOMMU_IOAS_UNMAP");
static_assert(sizeof(struct iommu_destroy) == 8, "iommu_destroy");
static_assert(sizeof(struct iommu_ioas_alloc) == 12, "iommu_ioas_alloc");
static_assert(sizeof(struct iommu_iova_range) == 16, "iommu_iova_range");
static_assert(sizeof(struct iommu_ioas_iova_ranges) == 32, "iommu_ioas_iova_ranges");
static_assert(offsetof(struct iommu_ioas_iova_ranges, num_iovas) == 8, "iova_ranges layout");
static_assert(offsetof(struct iommu_ioas_iova_ranges, allowed_iovas) == 16, "iova_ranges layout");
static_assert(offsetof(struct iommu_ioas_iova_ranges, out_iova_alignment) == 24, "iova_ranges layout");
static_assert(sizeof(struct iommu_ioas_map) == 40, "iommu_ioas_map");
static_assert(offsetof(struct iommu_ioas_map, user_va) == 16, "ioas_map layout");
static_assert(offsetof(struct iommu_ioas_map, length) == 24, "ioas_map layout");
static_assert(offsetof(struct iommu_ioas_map, iova) == 32, "ioas_map layout");
static_assert(sizeof(struct iommu_ioas_unmap) == 24, "iommu_ioas_unmap");
static_assert(offsetof(struct iommu_ioas_unmap, iova) == 8, "ioas_unmap layout");
static_assert(offsetof(struct iommu_ioas_unmap, length) == 16, "ioas_unmap layout");

/* ---- Explicit HWPT (Linux 6.6+; 48-byte layout since 6.11) ---- */

#ifndef IOMMU_HWPT_ALLOC
#define IOMMUFD_CMD_HWPT_ALLOC 0x89

/* The daemon passes only flags 0 and IOMMU_HWPT_DATA_NONE: for a noiommu device that is the
 * one form 7.3 accepts (any flag or driver data: EOPNOTSUPP); for a real IOMMU it is a plain
 * paging domain. */
enum iommu_hwpt_data_type {
        IOMMU_HWPT_DATA_NONE = 0,
};

struct iommu_hwpt_alloc {
        __u32 size;
        __u32 flags;
        __u32 dev_id;
        __u32 pt_id;
        __u32 out_hwpt_id;
        __u32 __reserved;
        __u32 data_type;                /* 6.7+ */
        __u32 data_len;                 /* 6.7+ */
        __aligned_u64 data_uptr;        /* 6.7+ */
        __u32 fault_id;                 /* 6.11+ */
        __u32 __reserved2;              /* 6.11+ */
};
#define IOMMU_HWPT_ALLOC _IO(IOMMUFD_TYPE, IOMMUFD_CMD_HWPT_ALLOC)
#endif

static_assert(IOMMU_HWPT_ALLOC == 0x3b89, "IOMMU_HWPT_ALLOC");
/* 24 bytes in 6.6, 40 in 6.7 (data_type/len/uptr), 48 since 6.11 (fault_id). The daemon uses
 * the first 24 and leaves the rest zero, which is IOMMU_HWPT_DATA_NONE with no data. */
static_assert(sizeof(struct iommu_hwpt_alloc) == 24 || sizeof(struct iommu_hwpt_alloc) == 40 ||
              sizeof(struct iommu_hwpt_alloc) == 48, "iommu_hwpt_alloc");
static_assert(offsetof(struct iommu_hwpt_alloc, flags) == 4, "hwpt_alloc layout");
static_assert(offsetof(struct iommu_hwpt_alloc, dev_id) == 8, "hwpt_alloc layout");
static_assert(offsetof(struct iommu_hwpt_alloc, pt_id) == 12, "hwpt_alloc layout");
static_assert(offsetof(struct iommu_hwpt_alloc, out_hwpt_id) == 16, "hwpt_alloc layout");

/* ---- noiommu GET_PA (merged in Linux 7.3) ---- */

#ifndef IOMMU_IOAS_NOIOMMU_GET_PA
#define IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA 0x95

/* Returns the physical address behind iova and, in length, how many bytes from there are
 * physically contiguous (at most the length passed in, which must not be 0). Requires
 * CAP_SYS_RAWIO on every call; flags and __reserved must be 0. Only the starting IOVA must be
 * mapped. Errors in the order 7.3 checks them: linux-7.3.md, "GET_PA errors". */
struct iommu_ioas_noiommu_get_pa {
        __u32 size;
        __u32 flags;
        __u32 ioas_id;
        __u32 __reserved;
        __aligned_u64 iova;
        __aligned_u64 length;
        __aligned_u64 out_phys;
};
#define IOMMU_IOAS_NOIOMMU_GET_PA _IO(IOMMUFD_TYPE, IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA)
#endif

static_assert(IOMMU_IOAS_NOIOMMU_GET_PA == 0x3b95, "IOMMU_IOAS_NOIOMMU_GET_PA");
static_assert(sizeof(struct iommu_ioas_noiommu_get_pa) == 40, "GET_PA layout");
static_assert(offsetof(struct iommu_ioas_noiommu_get_pa, ioas_id) == 8, "GET_PA layout");
static_assert(offsetof(struct iommu_ioas_noiommu_get_pa, iova) == 16, "GET_PA layout");
static_assert(offsetof(struct iommu_ioas_noiommu_get_pa, length) == 24, "GET_PA layout");
static_assert(offsetof(struct iommu_ioas_noiommu_get_pa, out_phys) == 32, "GET_PA layout");

/* PCI config space */
#ifndef PCI_COMMAND
#define PCI_COMMAND 0x04
#endif
#ifndef PCI_COMMAND_MASTER
#define PCI_COMMAND_MASTER 0x4
#endif
