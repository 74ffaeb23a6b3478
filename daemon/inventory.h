/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Inventory (a leaf, layer 0): which PCI functions are bound to vfio-pci, and which backend can
 * serve each one. The scan returns an array of InventoryDevice that the caller owns; nothing is
 * kept here between scans.
 *
 * Classification follows kernel-api.md §3.4 and linux-7.3.md and uses explicit markers only; a
 * device is never called noiommu because it "has no IOMMU" (mdev and emulated devices have
 * none either):
 *
 *   cdev-noiommu   .../vfio-dev/ has an entry "noiommu-vfioN" with a "dev" attribute (Linux
 *                  7.3+ with VFIO_DEVICE_CDEV and IOMMUFD_NOIOMMU)
 *   group-noiommu  iommu_group -> N, /sys/kernel/iommu_groups/N/name is "vfio-noiommu", the
 *                  group char device noiommu-N is registered (class vfio), and a container
 *                  backend registered /dev/vfio/vfio (class misc "vfio": VFIO_CONTAINER or
 *                  IOMMUFD_VFIO_CONTAINER, the two look the same from userspace)
 *   cdev-iommu     .../vfio-dev/vfioN with a "dev" attribute, a real group (type DMA, DMA-FQ or
 *                  identity) and /sys/class/iommu/ not empty
 *
 * The noiommu backends also need vfio.enable_unsafe_noiommu_mode to read "Y" now; the kernel
 * looked at it when vfio-pci bound the device, so a device bound before it was set has no
 * noiommu markers until it is unbound and bound again.
 *
 * A device may be able to use more than one backend (matrix case 3 of linux-7.3.md: a noiommu
 * group and a noiommu cdev). Every usable one is recorded in "candidates"; the scan picks
 * cdev-noiommu over group-noiommu (see inventory.c, "Why the cdev wins"), and
 * inventory_device_force() applies an administrator's choice instead. Everything under
 * /sys/bus/mdev is ignored. The scan reads sysfs below "root" (the real binary always passes
 * "/"; unit tests pass a fixture tree) and never opens a device node: nodes are opened and
 * verified by the backend. What it trusts of sysfs: inventory.c.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "noiommu/protocol.h"

typedef enum Backend {
        BACKEND_CDEV_NOIOMMU,
        BACKEND_CDEV_IOMMU,
        BACKEND_GROUP_NOIOMMU,
        _BACKEND_MAX,
        _BACKEND_INVALID = -EINVAL,
} Backend;

const char *backend_to_string(Backend b);
Backend backend_from_string(const char *s);

/* One backend for one device: its node, or why the device cannot use that backend. */
typedef struct InventoryCandidate {
        char node_name[64];          /* "" when unusable */
        dev_t rdev;
        const char *reason;          /* static string; NULL when usable */
} InventoryCandidate;

typedef struct InventoryDevice {
        char address[NOIOMMU_PCI_ADDRESS_LEN + 1];      /* "0000:01:00.0" */
        uint16_t vendor_id;
        uint16_t device_id;
        char driver[64];             /* basename of the driver link */
        Backend backend;             /* _BACKEND_INVALID when no backend can serve it */
        int iommu_group;             /* -1 when the device has no iommu_group link */
        int numa_node;               /* -1 when sysfs does not say */
        char node_name[64];          /* "noiommu-vfio0", "vfio0" or "noiommu-7"; "" if none */
        dev_t rdev;                  /* major:minor of that node, from its sysfs "dev" file */
        const char *reason;          /* static string saying why backend is invalid, or NULL */
        const char *backend_reason;  /* static string saying why this backend, or NULL */
        unsigned available;          /* bit 1U << b for every backend b the device can use now */
        InventoryCandidate candidates[_BACKEND_MAX];
        bool forced;                 /* inventory_device_force() was applied ... */
        Backend forced_backend;      /* ... asking for this backend */
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

/* Whether the kernel below root can serve noiommu devices now, from the kernel-wide markers only
 * (module parameter, /dev/vfio/vfio's misc device, class vfio). Returns 1, or 0 with
 * *ret_reason set to a static string saying what the administrator must change (rebuild with
 * VFIO_NOIOMMU, add a container backend, set the parameter), or a negative errno. */
int inventory_noiommu_status(const char *root, const char **ret_reason);

/* Makes d use backend b, as an administrator's "deviceBackends" setting asks: if b is among the
 * device's candidates it becomes the backend (with backend_reason saying it was forced), else the
 * device is not served and its reason is why it cannot use b (the caller tells the user that the
 * configuration asked for b: forced/forced_backend say so). A device that is not served anyway
 * (unreadable attributes, noiommu mode off) keeps its reason. */
void inventory_device_force(InventoryDevice *d, Backend b);
