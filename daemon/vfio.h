/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The three kernel VFIO backends (kernel-api.md §5–§8), behind one small interface:
 *
 *   vfio_device_open()   open and bind the device the way its backend needs, keep the daemon's
 *                        own handle (for quiesce), and prepare the fd the client gets
 *   vfio_device_map()    make a region of pinned memory reachable by the device, and say at
 *                        which DMA addresses (physical for the noiommu backends, IOVAs with an
 *                        IOMMU)
 *   vfio_device_quiesce()  Bus Master off through the daemon's handle (read back), then
 *                        VFIO_DEVICE_RESET where the device supports it
 *   vfio_device_unmap()  undo a map (only after quiesce for the noiommu backends)
 *   vfio_device_close()
 *
 * Rules from the review of the noiommu cdev series that this module keeps (kernel-api.md §10,
 * linux-7.3.md): a noiommu device id is only ever passed to BIND, ATTACH/DETACH_PT,
 * IOAS_ALLOC/MAP/UNMAP/IOVA_RANGES, NOIOMMU_GET_PA, DESTROY and IOMMU_HWPT_ALLOC with flags 0
 * and no driver data (the daemon's explicit HWPT, which 7.3 explicitly accepts for noiommu) —
 * never to hw-info, nested/vIOMMU HWPTs, viommu, dirty tracking or PASID calls; the backend comes from inventory.c's explicit markers; every node is opened by
 * path and then verified by fstat() against the major:minor sysfs reported, so no symlink, FIFO
 * or node swap can redirect the daemon. One iommufd per device lease, never handed out.
 *
 * A leaf (layer 0, docs/architecture.md): a VfioDevice owns every fd of one device lease
 * (container, group, iommufd, the daemon's device fd, and the client's fd until it is sent);
 * the Lease that holds it (lease.h) decides when each call happens, through the BackendOps
 * table (backend.h). It trusts the kernel, and sysfs' major:minor only once fstat() agrees.
 *
 * Nothing here logs; errors are negative errno.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hugepage.h"
#include "internal/macro.h"
#include "inventory.h"

typedef enum AddressKind {
        ADDRESS_PHYSICAL,
        ADDRESS_IOVA,
        _ADDRESS_KIND_MAX,
        _ADDRESS_KIND_INVALID = -EINVAL,
} AddressKind;

const char *address_kind_to_string(AddressKind k);

typedef struct VfioDevice VfioDevice;

/* Opens "path" only if it is the character device rdev: resolved without following symlinks in
 * any component, checked through an O_PATH handle before anything is opened for real (so a
 * FIFO, socket or file planted there is never opened), then reopened through that handle.
 * Returns the fd (O_CLOEXEC) or -ENODEV (not the expected device: wrong type or major:minor,
 * or a symlink as last component), -ELOOP (a symlink in an earlier component), -ENOENT, or the
 * error of the final open. */
int vfio_open_node(const char *path, dev_t rdev, int flags);

/* Opens and binds d; for the cdev backends also allocates the IOAS and the daemon's own explicit
 * HWPT and attaches the device to it. Returns -EBUSY when the kernel refuses because someone (a
 * previous holder that kept a copy of its fd, or another program) still has the device or group
 * open, -EPROTONOSUPPORT when the kernel lacks the noiommu cdev services (GET_PA answers ENOTTY,
 * E2BIG or EOPNOTSUPP on an empty IOAS, or HWPT_ALLOC is refused), -EOPNOTSUPP when the backend
 * is not usable on this kernel for another reason. */
int vfio_device_open(const InventoryDevice *d, VfioDevice **ret);

VfioDevice *vfio_device_close(VfioDevice *v);
DEFINE_TRIVIAL_CLEANUP_FUNC(VfioDevice *, vfio_device_close);

/* The fd to hand to the client (borrowed; valid until vfio_device_close()). */
int vfio_device_client_fd(const VfioDevice *v);
/* Drops the daemon's reference to the client's fd once it was sent. */
void vfio_device_client_fd_sent(VfioDevice *v);

/* Maps region r for DMA by the device. On success *ret_segments (malloc'ed, *ret_n entries)
 * and *ret_kind say where the device sees it. -ENOLINK (cdev-noiommu): GET_PA found no noiommu
 * page table behind the new mapping — the lease's DMA context is broken (should be impossible
 * with the daemon's explicit HWPT); -ESTALE: GET_PA and pagemap disagree. */
int vfio_device_map(VfioDevice *v, HugeRegion *r, DmaSegment **ret_segments, size_t *ret_n,
                    AddressKind *ret_kind);
int vfio_device_unmap(VfioDevice *v, HugeRegion *r);

/* Bus Master off (read back to confirm), then reset if supported. Returns 0 when the device can
 * no longer DMA as far as the kernel lets us know; ret_reset says whether a reset was done.
 * A failure means the device must be quarantined. */
int vfio_device_quiesce(VfioDevice *v, bool *ret_reset);

/* --- fd store (persist.c) --- */

/* The daemon-side fds of an open device, for the fd store: names are "dev", "grp", "ctr",
 * "iommufd"; absent ones are -EBADF. */
void vfio_device_get_fds(const VfioDevice *v, int *ret_dev, int *ret_grp, int *ret_ctr, int *ret_iommufd);
void vfio_device_get_ids(const VfioDevice *v, uint32_t *ret_ioas_id, uint32_t *ret_dev_id,
                         uint32_t *ret_hwpt_id);
/* The IOVA r is mapped at (0 for the group backend, which has no mapping API). */
int vfio_device_get_map(const VfioDevice *v, const HugeRegion *r, uint64_t *ret_iova);

/* Rebuilds an open device from fds that survived a restart in the fd store (ownership of the
 * fds passes to the new object, also on failure). The device stays bound and attached.
 * hwpt_id 0: state written before the explicit HWPT (the device is attached to the IOAS). */
int vfio_device_restore(const InventoryDevice *d, int dev_fd, int grp_fd, int ctr_fd, int iommufd,
                        uint32_t ioas_id, uint32_t dev_id, uint32_t hwpt_id, VfioDevice **ret);
/* Records that r was mapped at iova before the restart. */
int vfio_device_restore_map(VfioDevice *v, const HugeRegion *r, uint64_t iova);
/* After a restart: asks the kernel (GET_PA) where the restored mapping of r is now and compares
 * with granted[] (one physical address per hugepage, as handed out at grant time). 0: same
 * addresses (or a backend without GET_PA); -ESTALE: they moved; -ENOLINK: no noiommu page
 * table behind it; -ENOENT: r is not mapped; other negative errno from the kernel. */
int vfio_device_check_map(VfioDevice *v, const HugeRegion *r, const uint64_t *granted);
