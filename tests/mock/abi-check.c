/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one test-side statement of the kernel ABI the daemon and the vfio mock use: every ioctl
 * number, constant and struct layout of daemon/vfio-uapi.h (as compiled against this build
 * host's <linux/vfio.h> and <linux/iommufd.h>, or the header's own definitions where those lack
 * them) is compared with the literal numbers written down in
 *
 *   docs/kernel-api.md §11.1 (VFIO) and §11.2 (iommufd), and
 *   docs/linux-7.3.md "uapi" (IOMMU_IOAS_NOIOMMU_GET_PA, iommu_hwpt_alloc; where the two disagree,
 *   linux-7.3.md wins).
 *
 * The numbers below are typed from those tables, not from any header, so a wrong number or
 * layout in vfio-uapi.h (or a host header that disagrees with the documented kernel) fails the
 * build of the mock's self-test. The mock (vfio-mock.c) and its self-test then use the header's
 * names, so a change of the uapi (the provisional GET_PA number was the example) is made in
 * vfio-uapi.h and here, nowhere else. Sizes that grew over kernel versions are checked as
 * "one of the documented sizes", offsets exactly.
 *
 * Built into test-vfio-mock (tests/mock/meson.build); it has no code, only static_asserts.
 */
#include "vfio-uapi.h"

#include <linux/pci_regs.h>

#define ABI_EQ(expr, literal) static_assert((expr) == (literal), #expr " is not " #literal)

/* ---- kernel-api.md §11.1: VFIO, type ';' = 0x3b, base 100 = 0x64 ---- */

ABI_EQ(VFIO_TYPE, 0x3b);
ABI_EQ(VFIO_BASE, 100);
ABI_EQ(VFIO_GET_API_VERSION, 0x3b64);
ABI_EQ(VFIO_CHECK_EXTENSION, 0x3b65);
ABI_EQ(VFIO_SET_IOMMU, 0x3b66);
ABI_EQ(VFIO_GROUP_GET_STATUS, 0x3b67);
ABI_EQ(VFIO_GROUP_SET_CONTAINER, 0x3b68);
ABI_EQ(VFIO_GROUP_UNSET_CONTAINER, 0x3b69);
ABI_EQ(VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
ABI_EQ(VFIO_DEVICE_GET_INFO, 0x3b6b);
ABI_EQ(VFIO_DEVICE_GET_REGION_INFO, 0x3b6c);
ABI_EQ(VFIO_DEVICE_GET_IRQ_INFO, 0x3b6d);
ABI_EQ(VFIO_DEVICE_SET_IRQS, 0x3b6e);
ABI_EQ(VFIO_DEVICE_RESET, 0x3b6f);
ABI_EQ(VFIO_DEVICE_BIND_IOMMUFD, 0x3b76);
ABI_EQ(VFIO_DEVICE_ATTACH_IOMMUFD_PT, 0x3b77);
ABI_EQ(VFIO_DEVICE_DETACH_IOMMUFD_PT, 0x3b78);

ABI_EQ(VFIO_API_VERSION, 0);
ABI_EQ(VFIO_TYPE1_IOMMU, 1);
ABI_EQ(VFIO_TYPE1v2_IOMMU, 3);
ABI_EQ(VFIO_NOIOMMU_IOMMU, 8);

/* vfio_group_status (8): argsz 0:4, flags 4:4 (VIABLE = 1, CONTAINER_SET = 2) */
ABI_EQ(sizeof(struct vfio_group_status), 8);
ABI_EQ(offsetof(struct vfio_group_status, flags), 4);
ABI_EQ(VFIO_GROUP_FLAGS_VIABLE, 1);
ABI_EQ(VFIO_GROUP_FLAGS_CONTAINER_SET, 2);

/* vfio_device_info: argsz 0, flags 4, num_regions 8, num_irqs 12, cap_offset 16; sizeof 20
 * (6.1 headers) or 24 (6.12/7.2, pad at 20); the kernel's minimum is 16 */
ABI_EQ(offsetof(struct vfio_device_info, flags), 4);
ABI_EQ(offsetof(struct vfio_device_info, num_regions), 8);
ABI_EQ(offsetof(struct vfio_device_info, num_irqs), 12);
ABI_EQ(offsetof(struct vfio_device_info, cap_offset), 16);
static_assert(sizeof(struct vfio_device_info) == 20 || sizeof(struct vfio_device_info) == 24,
              "vfio_device_info is 20 or 24 bytes");
ABI_EQ(VFIO_DEVICE_FLAGS_RESET, 1);
ABI_EQ(VFIO_DEVICE_FLAGS_PCI, 2);

/* vfio_region_info (32): argsz 0, flags 4 (READ = 1, WRITE = 2, MMAP = 4, CAPS = 8), index 8,
 * cap_offset 12, size 16:8, offset 24:8; CONFIG = 7, NUM_REGIONS = 9 */
ABI_EQ(sizeof(struct vfio_region_info), 32);
ABI_EQ(offsetof(struct vfio_region_info, flags), 4);
ABI_EQ(offsetof(struct vfio_region_info, index), 8);
ABI_EQ(offsetof(struct vfio_region_info, cap_offset), 12);
ABI_EQ(offsetof(struct vfio_region_info, size), 16);
ABI_EQ(offsetof(struct vfio_region_info, offset), 24);
ABI_EQ(VFIO_REGION_INFO_FLAG_READ, 1);
ABI_EQ(VFIO_REGION_INFO_FLAG_WRITE, 2);
ABI_EQ(VFIO_REGION_INFO_FLAG_MMAP, 4);
ABI_EQ(VFIO_REGION_INFO_FLAG_CAPS, 8);
ABI_EQ(VFIO_PCI_CONFIG_REGION_INDEX, 7);
ABI_EQ(VFIO_PCI_NUM_REGIONS, 9);

/* vfio_irq_info (16): argsz, flags, index, count; PCI IRQ indices INTX 0 .. REQ 4 */
ABI_EQ(sizeof(struct vfio_irq_info), 16);
ABI_EQ(offsetof(struct vfio_irq_info, index), 8);
ABI_EQ(offsetof(struct vfio_irq_info, count), 12);
ABI_EQ(VFIO_PCI_REQ_IRQ_INDEX, 4);
ABI_EQ(VFIO_PCI_NUM_IRQS, 5);

/* vfio_device_bind_iommufd: argsz 0:4, flags 4:4, iommufd (s32) 8:4, out_devid 12:4, then
 * token_uuid_ptr 16:8 in 7.2+; sizeof 16 (6.12) or 24 (7.2, 7.3) */
ABI_EQ(offsetof(struct vfio_device_bind_iommufd, flags), 4);
ABI_EQ(offsetof(struct vfio_device_bind_iommufd, iommufd), 8);
ABI_EQ(offsetof(struct vfio_device_bind_iommufd, out_devid), 12);
static_assert(sizeof(struct vfio_device_bind_iommufd) == 16 || sizeof(struct vfio_device_bind_iommufd) == 24,
              "vfio_device_bind_iommufd is 16 or 24 bytes");

/* vfio_device_attach_iommufd_pt: argsz 0, flags 4, pt_id 8, then pasid 12 in 7.2+; 12 or 16 */
ABI_EQ(offsetof(struct vfio_device_attach_iommufd_pt, flags), 4);
ABI_EQ(offsetof(struct vfio_device_attach_iommufd_pt, pt_id), 8);
static_assert(sizeof(struct vfio_device_attach_iommufd_pt) == 12 ||
              sizeof(struct vfio_device_attach_iommufd_pt) == 16,
              "vfio_device_attach_iommufd_pt is 12 or 16 bytes");

/* vfio_device_detach_iommufd_pt: argsz, flags, then pasid in 7.2+; 8 or 12 */
ABI_EQ(offsetof(struct vfio_device_detach_iommufd_pt, flags), 4);
static_assert(sizeof(struct vfio_device_detach_iommufd_pt) == 8 ||
              sizeof(struct vfio_device_detach_iommufd_pt) == 12,
              "vfio_device_detach_iommufd_pt is 8 or 12 bytes");

/* ---- kernel-api.md §11.2: iommufd, type ';', command base 0x80 ---- */

ABI_EQ(IOMMUFD_TYPE, 0x3b);
ABI_EQ(IOMMU_DESTROY, 0x3b80);
ABI_EQ(IOMMU_IOAS_ALLOC, 0x3b81);
ABI_EQ(IOMMU_IOAS_IOVA_RANGES, 0x3b84);
ABI_EQ(IOMMU_IOAS_MAP, 0x3b85);
ABI_EQ(IOMMU_IOAS_UNMAP, 0x3b86);

/* iommu_destroy (8): size, id */
ABI_EQ(sizeof(struct iommu_destroy), 8);
ABI_EQ(offsetof(struct iommu_destroy, id), 4);

/* iommu_ioas_alloc (12): size, flags = 0, out_ioas_id */
ABI_EQ(sizeof(struct iommu_ioas_alloc), 12);
ABI_EQ(offsetof(struct iommu_ioas_alloc, out_ioas_id), 8);

/* iommu_ioas_iova_ranges (32): size 0, ioas_id 4, num_iovas 8, __reserved 12, allowed_iovas 16,
 * out_iova_alignment 24; element iommu_iova_range (16): start, last */
ABI_EQ(sizeof(struct iommu_ioas_iova_ranges), 32);
ABI_EQ(offsetof(struct iommu_ioas_iova_ranges, ioas_id), 4);
ABI_EQ(offsetof(struct iommu_ioas_iova_ranges, num_iovas), 8);
ABI_EQ(offsetof(struct iommu_ioas_iova_ranges, __reserved), 12);
ABI_EQ(offsetof(struct iommu_ioas_iova_ranges, allowed_iovas), 16);
ABI_EQ(offsetof(struct iommu_ioas_iova_ranges, out_iova_alignment), 24);
ABI_EQ(sizeof(struct iommu_iova_range), 16);
ABI_EQ(offsetof(struct iommu_iova_range, last), 8);

/* iommu_ioas_map (40): size 0, flags 4, ioas_id 8, __reserved 12, user_va 16, length 24,
 * iova 32; flags FIXED_IOVA = 1, WRITEABLE = 2, READABLE = 4 */
ABI_EQ(sizeof(struct iommu_ioas_map), 40);
ABI_EQ(offsetof(struct iommu_ioas_map, flags), 4);
ABI_EQ(offsetof(struct iommu_ioas_map, ioas_id), 8);
ABI_EQ(offsetof(struct iommu_ioas_map, __reserved), 12);
ABI_EQ(offsetof(struct iommu_ioas_map, user_va), 16);
ABI_EQ(offsetof(struct iommu_ioas_map, length), 24);
ABI_EQ(offsetof(struct iommu_ioas_map, iova), 32);
ABI_EQ(IOMMU_IOAS_MAP_FIXED_IOVA, 1);
ABI_EQ(IOMMU_IOAS_MAP_WRITEABLE, 2);
ABI_EQ(IOMMU_IOAS_MAP_READABLE, 4);

/* iommu_ioas_unmap (24): size 0, ioas_id 4, iova 8, length 16 */
ABI_EQ(sizeof(struct iommu_ioas_unmap), 24);
ABI_EQ(offsetof(struct iommu_ioas_unmap, ioas_id), 4);
ABI_EQ(offsetof(struct iommu_ioas_unmap, iova), 8);
ABI_EQ(offsetof(struct iommu_ioas_unmap, length), 16);

/* ---- linux-7.3.md "uapi" ---- */

/* IOMMU_HWPT_ALLOC = 0x3b89; iommu_hwpt_alloc 48 bytes (size, flags, dev_id, pt_id,
 * out_hwpt_id, __reserved, data_type, data_len, data_uptr @32, fault_id @40, __reserved2);
 * 24 bytes in 6.6 and 40 in 6.7 headers; IOMMU_HWPT_DATA_NONE = 0 */
ABI_EQ(IOMMU_HWPT_ALLOC, 0x3b89);
ABI_EQ(offsetof(struct iommu_hwpt_alloc, flags), 4);
ABI_EQ(offsetof(struct iommu_hwpt_alloc, dev_id), 8);
ABI_EQ(offsetof(struct iommu_hwpt_alloc, pt_id), 12);
ABI_EQ(offsetof(struct iommu_hwpt_alloc, out_hwpt_id), 16);
static_assert(sizeof(struct iommu_hwpt_alloc) == 24 || sizeof(struct iommu_hwpt_alloc) == 40 ||
              sizeof(struct iommu_hwpt_alloc) == 48, "iommu_hwpt_alloc is 24, 40 or 48 bytes");
ABI_EQ(IOMMU_HWPT_DATA_NONE, 0);

/* IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA = 0x95 -> IOMMU_IOAS_NOIOMMU_GET_PA = 0x3b95;
 * iommu_ioas_noiommu_get_pa, 40 bytes: size u32 @0, flags u32 @4, ioas_id u32 @8,
 * __reserved u32 @12, iova u64 @16, length u64 @24, out_phys u64 @32 */
ABI_EQ(IOMMU_IOAS_NOIOMMU_GET_PA, 0x3b95);
ABI_EQ(sizeof(struct iommu_ioas_noiommu_get_pa), 40);
ABI_EQ(offsetof(struct iommu_ioas_noiommu_get_pa, flags), 4);
ABI_EQ(offsetof(struct iommu_ioas_noiommu_get_pa, ioas_id), 8);
ABI_EQ(offsetof(struct iommu_ioas_noiommu_get_pa, __reserved), 12);
ABI_EQ(offsetof(struct iommu_ioas_noiommu_get_pa, iova), 16);
ABI_EQ(offsetof(struct iommu_ioas_noiommu_get_pa, length), 24);
ABI_EQ(offsetof(struct iommu_ioas_noiommu_get_pa, out_phys), 32);

/* ---- PCI config space (PCI Local Bus spec; the daemon's quiesce) ---- */

ABI_EQ(PCI_COMMAND, 0x04);
ABI_EQ(PCI_COMMAND_MEMORY, 0x2);
ABI_EQ(PCI_COMMAND_MASTER, 0x4);
