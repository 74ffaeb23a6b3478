/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Inventory: which PCI functions are bound to vfio-pci, and which backend can serve each one.
 *
 * Classification follows kernel-api.md §3.4 and uses explicit markers only; a device is never
 * called noiommu because it "has no IOMMU" (mdev and emulated devices have none either):
 *
 *   cdev-noiommu   .../vfio-dev/ has an entry "noiommu-vfioN" with a "dev" attribute
 *   group-noiommu  iommu_group -> N, /sys/kernel/iommu_groups/N/name is "vfio-noiommu"
 *                  and the group char device noiommu-N is registered (class vfio)
 *   cdev-iommu     .../vfio-dev/vfioN with a "dev" attribute, a real group (type DMA, DMA-FQ or
 *                  identity) and /sys/class/iommu/ not empty
 *
 * C is preferred over B when both exist. Everything under /sys/bus/mdev is ignored. The scan
 * reads sysfs below "root" (the real binary always passes "/"; unit tests pass a fixture tree)
 * and never opens a device node: nodes are opened and verified by the backend.
 */
#pragma once

#include <errno.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum Backend {
        BACKEND_CDEV_NOIOMMU,
        BACKEND_CDEV_IOMMU,
        BACKEND_GROUP_NOIOMMU,
        _BACKEND_MAX,
        _BACKEND_INVALID = -EINVAL,
} Backend;

const char *backend_to_string(Backend b);
Backend backend_from_string(const char *s);

typedef struct InventoryDevice {
        char address[13];            /* "0000:01:00.0" */
        uint16_t vendor_id;
        uint16_t device_id;
        char driver[64];             /* basename of the driver link */
        Backend backend;             /* _BACKEND_INVALID when no backend can serve it */
        int iommu_group;             /* -1 when the device has no iommu_group link */
        int numa_node;               /* -1 when sysfs does not say */
        char node_name[64];          /* "noiommu-vfio0", "vfio0" or "noiommu-7"; "" if none */
        dev_t rdev;                  /* major:minor of that node, from its sysfs "dev" file */
        const char *reason;          /* static string saying why backend is invalid, or NULL */
} InventoryDevice;

/* Scans root/sys/bus/pci/devices. Returns the number of devices (>= 0) and an array the
 * caller frees with free() (NULL when there are none), or a negative errno when sysfs itself
 * cannot be read (a missing root/sys/bus/pci means "no PCI bus": 0 devices). A device whose
 * attributes cannot be read is listed with backend invalid and a reason rather than failing the
 * scan. Devices are sorted by address.
 *
 * Listed are PCI functions whose driver link names "vfio-pci", or whose device directory has a
 * "vfio-dev" subdirectory whatever the driver (only drivers built on vfio-pci-core register a
 * VFIO device under the PCI function, so this admits variant drivers such as mlx5_vfio_pci;
 * on kernels without VFIO_DEVICE_CDEV a variant driver is therefore not listed). */
int inventory_scan(const char *root, InventoryDevice **ret);

/* Whether noiommu mode is enabled at all: root/sys/module/vfio/parameters/
 * enable_unsafe_noiommu_mode reads "Y". A missing file means CONFIG_VFIO_NOIOMMU is not built.
 * Returns 1 if enabled, 0 if not (or not built), -EBADMSG for any other content, or a negative
 * errno if it cannot be read. */
int inventory_noiommu_enabled(const char *root);
