/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The few VFIO cdev and iommufd definitions dma-probe needs that bookworm's 6.1 uapi headers
 * lack (no <linux/iommufd.h>, no VFIO_DEVICE_*_IOMMUFD*). Written from the layouts in
 * docs/kernel-api.md §11 and checked below with static_asserts. Local to tests/vm: the daemon
 * has its own header.
 *
 * The cdev structures use the short 6.12 layouts; the kernel accepts argsz from 6.12 up, and
 * 7.2 (which appended fields) requires the extra bytes to be zero anyway.
 */
#pragma once

#include <assert.h>
#include <stddef.h>
#include <linux/ioctl.h>
#include <linux/types.h>
#include <linux/vfio.h>

#if defined(__has_include)
#  if __has_include(<linux/iommufd.h>)
#    include <linux/iommufd.h>
#  endif
#endif

/* ---- VFIO: base ioctls, present in 6.1; checked so a wrong header shows up at build time -- */

static_assert(VFIO_TYPE == 0x3b && VFIO_BASE == 100, "VFIO ioctl base");
static_assert(VFIO_GET_API_VERSION == 0x3b64, "VFIO_GET_API_VERSION");
static_assert(VFIO_CHECK_EXTENSION == 0x3b65, "VFIO_CHECK_EXTENSION");
static_assert(VFIO_SET_IOMMU == 0x3b66, "VFIO_SET_IOMMU");
static_assert(VFIO_GROUP_GET_STATUS == 0x3b67, "VFIO_GROUP_GET_STATUS");
static_assert(VFIO_GROUP_SET_CONTAINER == 0x3b68, "VFIO_GROUP_SET_CONTAINER");
static_assert(VFIO_GROUP_GET_DEVICE_FD == 0x3b6a, "VFIO_GROUP_GET_DEVICE_FD");
static_assert(VFIO_DEVICE_GET_INFO == 0x3b6b, "VFIO_DEVICE_GET_INFO");
static_assert(VFIO_DEVICE_GET_REGION_INFO == 0x3b6c, "VFIO_DEVICE_GET_REGION_INFO");
static_assert(VFIO_DEVICE_GET_IRQ_INFO == 0x3b6d, "VFIO_DEVICE_GET_IRQ_INFO");
static_assert(VFIO_DEVICE_SET_IRQS == 0x3b6e, "VFIO_DEVICE_SET_IRQS");
static_assert(VFIO_DEVICE_RESET == 0x3b6f, "VFIO_DEVICE_RESET");
static_assert(VFIO_API_VERSION == 0 && VFIO_NOIOMMU_IOMMU == 8, "VFIO constants");
static_assert(VFIO_PCI_CONFIG_REGION_INDEX == 7 && VFIO_PCI_BAR0_REGION_INDEX == 0, "PCI regions");
static_assert(VFIO_PCI_MSI_IRQ_INDEX == 1, "PCI MSI index");

static_assert(sizeof(struct vfio_group_status) == 8, "vfio_group_status");
static_assert(VFIO_GROUP_FLAGS_VIABLE == 1, "VFIO_GROUP_FLAGS_VIABLE");
static_assert(offsetof(struct vfio_device_info, flags) == 4, "vfio_device_info.flags");
static_assert(offsetof(struct vfio_device_info, num_regions) == 8, "vfio_device_info.num_regions");
static_assert(offsetof(struct vfio_device_info, num_irqs) == 12, "vfio_device_info.num_irqs");
static_assert(sizeof(struct vfio_device_info) >= 16, "vfio_device_info: kernel minimum 16");
static_assert(VFIO_DEVICE_FLAGS_RESET == 1 && VFIO_DEVICE_FLAGS_PCI == 2, "vfio_device_info flags");
static_assert(sizeof(struct vfio_region_info) == 32, "vfio_region_info");
static_assert(offsetof(struct vfio_region_info, index) == 8, "vfio_region_info.index");
static_assert(offsetof(struct vfio_region_info, size) == 16, "vfio_region_info.size");
static_assert(offsetof(struct vfio_region_info, offset) == 24, "vfio_region_info.offset");
static_assert(VFIO_REGION_INFO_FLAG_READ == 1 && VFIO_REGION_INFO_FLAG_WRITE == 2 &&
              VFIO_REGION_INFO_FLAG_MMAP == 4, "vfio_region_info flags");
static_assert(sizeof(struct vfio_irq_info) == 16, "vfio_irq_info");
static_assert(offsetof(struct vfio_irq_info, count) == 12, "vfio_irq_info.count");
static_assert(VFIO_IRQ_INFO_EVENTFD == 1, "VFIO_IRQ_INFO_EVENTFD");
static_assert(sizeof(struct vfio_irq_set) == 20, "vfio_irq_set");
static_assert(offsetof(struct vfio_irq_set, data) == 20, "vfio_irq_set.data");
static_assert(VFIO_IRQ_SET_DATA_NONE == 1 && VFIO_IRQ_SET_DATA_EVENTFD == 4 &&
              VFIO_IRQ_SET_ACTION_TRIGGER == 0x20, "vfio_irq_set flags");

/* ---- VFIO device cdev (6.6+; absent from the 6.1 headers) ---------------------------------- */

#ifndef VFIO_DEVICE_BIND_IOMMUFD
struct vfio_device_bind_iommufd {
        __u32 argsz;
        __u32 flags;
        __s32 iommufd;
        __u32 out_devid;
};
#define VFIO_DEVICE_BIND_IOMMUFD _IO(VFIO_TYPE, VFIO_BASE + 18)

struct vfio_device_attach_iommufd_pt {
        __u32 argsz;
        __u32 flags;
        __u32 pt_id;
};
#define VFIO_DEVICE_ATTACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 19)

struct vfio_device_detach_iommufd_pt {
        __u32 argsz;
        __u32 flags;
};
#define VFIO_DEVICE_DETACH_IOMMUFD_PT _IO(VFIO_TYPE, VFIO_BASE + 20)

static_assert(sizeof(struct vfio_device_bind_iommufd) == 16, "vfio_device_bind_iommufd (6.12)");
static_assert(sizeof(struct vfio_device_attach_iommufd_pt) == 12, "vfio_device_attach_iommufd_pt (6.12)");
static_assert(sizeof(struct vfio_device_detach_iommufd_pt) == 8, "vfio_device_detach_iommufd_pt (6.12)");
#endif

static_assert(VFIO_DEVICE_BIND_IOMMUFD == 0x3b76, "VFIO_DEVICE_BIND_IOMMUFD");
static_assert(VFIO_DEVICE_ATTACH_IOMMUFD_PT == 0x3b77, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
static_assert(VFIO_DEVICE_DETACH_IOMMUFD_PT == 0x3b78, "VFIO_DEVICE_DETACH_IOMMUFD_PT");
static_assert(offsetof(struct vfio_device_bind_iommufd, iommufd) == 8, "bind.iommufd");
static_assert(offsetof(struct vfio_device_bind_iommufd, out_devid) == 12, "bind.out_devid");
static_assert(sizeof(struct vfio_device_bind_iommufd) >= 16, "bind: kernel minimum 16");
static_assert(offsetof(struct vfio_device_attach_iommufd_pt, pt_id) == 8, "attach.pt_id");
static_assert(sizeof(struct vfio_device_attach_iommufd_pt) >= 12, "attach: kernel minimum 12");

/* ---- iommufd (6.2+; <linux/iommufd.h> is absent from the 6.1 headers) ---------------------- */

#ifndef IOMMUFD_TYPE
#define IOMMUFD_TYPE (';')

struct iommu_destroy {
        __u32 size;
        __u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, 0x80)

struct iommu_ioas_alloc {
        __u32 size;
        __u32 flags;
        __u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, 0x81)

struct iommu_iova_range {
        __aligned_u64 start;
        __aligned_u64 last;     /* inclusive */
};

struct iommu_ioas_iova_ranges {
        __u32 size;
        __u32 ioas_id;
        __u32 num_iovas;
        __u32 __reserved;
        __aligned_u64 allowed_iovas;    /* user pointer to struct iommu_iova_range[] */
        __aligned_u64 out_iova_alignment;
};
#define IOMMU_IOAS_IOVA_RANGES _IO(IOMMUFD_TYPE, 0x84)

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
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, 0x85)

struct iommu_ioas_unmap {
        __u32 size;
        __u32 ioas_id;
        __aligned_u64 iova;
        __aligned_u64 length;   /* out: bytes unmapped */
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, 0x86)
#endif

static_assert(IOMMU_DESTROY == 0x3b80, "IOMMU_DESTROY");
static_assert(IOMMU_IOAS_ALLOC == 0x3b81, "IOMMU_IOAS_ALLOC");
static_assert(IOMMU_IOAS_IOVA_RANGES == 0x3b84, "IOMMU_IOAS_IOVA_RANGES");
static_assert(IOMMU_IOAS_MAP == 0x3b85, "IOMMU_IOAS_MAP");
static_assert(IOMMU_IOAS_UNMAP == 0x3b86, "IOMMU_IOAS_UNMAP");
static_assert(sizeof(struct iommu_destroy) == 8, "iommu_destroy");
static_assert(sizeof(struct iommu_ioas_alloc) == 12, "iommu_ioas_alloc");
static_assert(offsetof(struct iommu_ioas_alloc, out_ioas_id) == 8, "iommu_ioas_alloc.out_ioas_id");
static_assert(sizeof(struct iommu_iova_range) == 16, "iommu_iova_range");
static_assert(sizeof(struct iommu_ioas_iova_ranges) == 32, "iommu_ioas_iova_ranges");
static_assert(offsetof(struct iommu_ioas_iova_ranges, num_iovas) == 8, "iova_ranges.num_iovas");
static_assert(offsetof(struct iommu_ioas_iova_ranges, allowed_iovas) == 16, "iova_ranges.allowed_iovas");
static_assert(offsetof(struct iommu_ioas_iova_ranges, out_iova_alignment) == 24, "iova_ranges.alignment");
static_assert(sizeof(struct iommu_ioas_map) == 40, "iommu_ioas_map");
static_assert(offsetof(struct iommu_ioas_map, flags) == 4, "iommu_ioas_map.flags");
static_assert(offsetof(struct iommu_ioas_map, ioas_id) == 8, "iommu_ioas_map.ioas_id");
static_assert(offsetof(struct iommu_ioas_map, user_va) == 16, "iommu_ioas_map.user_va");
static_assert(offsetof(struct iommu_ioas_map, length) == 24, "iommu_ioas_map.length");
static_assert(offsetof(struct iommu_ioas_map, iova) == 32, "iommu_ioas_map.iova");
static_assert(IOMMU_IOAS_MAP_FIXED_IOVA == 1 && IOMMU_IOAS_MAP_WRITEABLE == 2 &&
              IOMMU_IOAS_MAP_READABLE == 4, "iommu_ioas_map flags");
static_assert(sizeof(struct iommu_ioas_unmap) == 24, "iommu_ioas_unmap");
static_assert(offsetof(struct iommu_ioas_unmap, iova) == 8, "iommu_ioas_unmap.iova");
static_assert(offsetof(struct iommu_ioas_unmap, length) == 16, "iommu_ioas_unmap.length");

/* ---- What hostile-client.c calls (7.3 layouts, linux-7.3.md; the 7.3 linux-libc-dev agrees) --
 *
 * The attach/detach PASID flags and the 7.3 layouts of BIND (24 bytes), ATTACH (16) and DETACH
 * (12), under names of their own: the header above may be 6.1's (no cdev ioctls at all, then
 * the short 6.12 layouts are defined above for dma-probe) or a newer one. The kernel reads
 * argsz/size and copies what it knows (copy_struct_from_user()). */

#ifdef VFIO_DEVICE_ATTACH_PASID
static_assert(VFIO_DEVICE_ATTACH_PASID == 1 && VFIO_DEVICE_DETACH_PASID == 1, "PASID flags");
static_assert(sizeof(struct vfio_device_attach_iommufd_pt) == 16, "vfio_device_attach_iommufd_pt (7.3)");
static_assert(sizeof(struct vfio_device_detach_iommufd_pt) == 12, "vfio_device_detach_iommufd_pt (7.3)");
#else
#define VFIO_DEVICE_ATTACH_PASID (1 << 0)
#define VFIO_DEVICE_DETACH_PASID (1 << 0)
#endif

struct vfio_min_bind_iommufd_73 {
        __u32 argsz;
        __u32 flags;
        __s32 iommufd;
        __u32 out_devid;
        __aligned_u64 token_uuid_ptr;   /* VFIO_DEVICE_BIND_FLAG_TOKEN only */
};

struct vfio_min_attach_pt_73 {
        __u32 argsz;
        __u32 flags;                    /* VFIO_DEVICE_ATTACH_PASID */
        __u32 pt_id;                    /* in: IOAS or HWPT id; out: the HWPT attached */
        __u32 pasid;
};

struct vfio_min_detach_pt_73 {
        __u32 argsz;
        __u32 flags;                    /* VFIO_DEVICE_DETACH_PASID */
        __u32 pasid;
};

static_assert(sizeof(struct vfio_min_bind_iommufd_73) == 24, "bind (7.3): 24 bytes");
static_assert(offsetof(struct vfio_min_bind_iommufd_73, iommufd) == 8, "bind (7.3).iommufd");
static_assert(offsetof(struct vfio_min_bind_iommufd_73, out_devid) == 12, "bind (7.3).out_devid");
static_assert(offsetof(struct vfio_min_bind_iommufd_73, token_uuid_ptr) == 16, "bind (7.3).token_uuid_ptr");
static_assert(sizeof(struct vfio_min_attach_pt_73) == 16, "attach (7.3): 16 bytes");
static_assert(offsetof(struct vfio_min_attach_pt_73, pt_id) == 8, "attach (7.3).pt_id");
static_assert(offsetof(struct vfio_min_attach_pt_73, pasid) == 12, "attach (7.3).pasid");
static_assert(sizeof(struct vfio_min_detach_pt_73) == 12, "detach (7.3): 12 bytes");
static_assert(offsetof(struct vfio_min_detach_pt_73, pasid) == 8, "detach (7.3).pasid");

/* IOMMU_GET_HW_INFO (6.6+). In 7.3 out_data_type shares its place with in_data_type (a union);
 * only the fields every version has are used. */
#ifndef IOMMU_GET_HW_INFO
struct iommu_hw_info {
        __u32 size;
        __u32 flags;
        __u32 dev_id;
        __u32 data_len;
        __aligned_u64 data_uptr;
        __u32 out_data_type;
        __u8 out_max_pasid_log2;
        __u8 __reserved[3];
        __aligned_u64 out_capabilities;
};
#define IOMMU_GET_HW_INFO _IO(IOMMUFD_TYPE, 0x8a)
#endif

static_assert(IOMMU_GET_HW_INFO == 0x3b8a, "IOMMU_GET_HW_INFO");
static_assert(sizeof(struct iommu_hw_info) == 40, "iommu_hw_info");
static_assert(offsetof(struct iommu_hw_info, dev_id) == 8, "iommu_hw_info.dev_id");
static_assert(offsetof(struct iommu_hw_info, data_len) == 12, "iommu_hw_info.data_len");
static_assert(offsetof(struct iommu_hw_info, data_uptr) == 16, "iommu_hw_info.data_uptr");
static_assert(offsetof(struct iommu_hw_info, out_max_pasid_log2) == 28, "iommu_hw_info.out_max_pasid_log2");
static_assert(offsetof(struct iommu_hw_info, out_capabilities) == 32, "iommu_hw_info.out_capabilities");
