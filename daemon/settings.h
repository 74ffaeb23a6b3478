/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Daemon settings (configuration): /etc/noiommud/noiommud.conf plus drop-ins in
 * /etc/noiommud/noiommud.conf.d/NAME.conf, read in lexical order, all JSON objects:
 *
 *   {
 *     "noiommuDevices": ["0000:01:00.0"],   devices that may be handed out WITHOUT an IOMMU;
 *                                           lists from drop-ins are added together
 *     "iommuDevices": "all" | ["0000:02:00.0"]   devices behind a real IOMMU (default: all)
 *     "auditFailure": "deny" | "log"       a grant whose Linux audit record cannot be written
 *                                           is refused (default "deny") or only logged; a
 *                                           kernel or namespace without audit is never a failure
 *     "maxMemoryPerUid": 1073741824         bytes of DMA memory one uid may hold at once over
 *                                           all its connections (default: no limit but the pool)
 *     "deviceBackends": {"0000:00:03.0": "group-noiommu"}   the backend a device must use
 *                                           instead of the one the daemon would pick (for a
 *                                           device with both a noiommu group and a noiommu cdev);
 *                                           "cdev-noiommu", "group-noiommu" or "cdev-iommu". A
 *                                           device that cannot use it is not served. Drop-ins
 *                                           override per device.
 *     "maxMemoryPerContainer": 1073741824   bytes of DMA memory one container may hold at once
 *     "maxLeasesPerContainer": 2            device leases one container may hold at once
 *                                           (a container: the container id its cgroup path
 *                                           shows, else the cgroup of its outermost unit;
 *                                           clients with neither count per uid only)
 *     "rootWithoutCapabilities": "deny" | "polkit"
 *                                           a uid-0 client that does not itself hold the
 *                                           capability an action needs in the initial user
 *                                           namespace (a rootful container without a user
 *                                           namespace, a service with an empty capability
 *                                           set) is refused without asking polkit ("deny",
 *                                           the default), because polkitd answers yes to uid
 *                                           0 without running any rule; "polkit" asks polkit
 *                                           anyway, i.e. trusts uid 0
 *     "hugepagePool": [{"hugepageSize": 2097152, "size": 4194304, "count": 8, "numaNode": 0}]
 *                                           regions of exactly "size" bytes kept ready
 *                                           (faulted, zeroed, pinned) per entry (pool.h);
 *                                           a later file's list replaces an earlier one
 *   }
 *
 * A noiommu device is root-equivalent in the client's hands, so it is served only if named
 * here (kernel-api.md §10, hazard 5); polkit then decides who gets it. Unknown keys and
 * malformed addresses are errors: a typo must never widen access.
 *
 * A leaf (layer 0): the Manager owns the one Settings, loaded at start. The files are trusted
 * as the administrator's (root-owned, in /etc), but not their syntax: everything is validated.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "inventory.h"

#define NOIOMMU_SETTINGS_PATH "/etc/noiommud/noiommud.conf"

typedef struct DeviceBackendSetting {
        char address[NOIOMMU_PCI_ADDRESS_LEN + 1];
        Backend backend;
} DeviceBackendSetting;

/* One "hugepagePool" entry: count regions of exactly size bytes of hugepage_size pages. */
typedef struct PoolSetting {
        uint64_t hugepage_size;
        uint64_t size;
        unsigned count;
        int numa_node;                  /* -1: any */
} PoolSetting;

/* At most this many regions in the whole pool (the sum of the counts). Each ready region holds
 * two fds (memfd, pin ring) and a mapping, none of them in the fd store; 64 regions are 128 fds,
 * nothing next to LimitNOFILE=65536, and few enough that pool.c may walk them on every take. */
#define NOIOMMU_POOL_REGIONS_MAX 64
/* At most this many bytes in the whole pool: the pool's worker zeroes every page once (about
 * 50 ms per GiB on a 2-core machine, hugepage.h), so a full refill of 64 GiB takes about 3 s of
 * one core, as long as the largest single allocation (NOIOMMU_ALLOC_SIZE_MAX) holds the loop. */
#define NOIOMMU_POOL_BYTES_MAX (UINT64_C(64) << 30)

typedef struct Settings {
        char **noiommu_devices;         /* NULL-terminated */
        bool iommu_devices_all;
        char **iommu_devices;           /* when !iommu_devices_all */
        bool audit_failure_log;         /* "auditFailure": "log" */
        uint64_t max_memory_per_uid;    /* 0: no limit */
        DeviceBackendSetting *device_backends;  /* "deviceBackends", one entry per address */
        size_t n_device_backends;
        uint64_t max_memory_per_container;      /* 0: no limit */
        uint64_t max_leases_per_container;      /* 0: no limit */
        bool root_without_capabilities_polkit;  /* "rootWithoutCapabilities": "polkit" */
        PoolSetting *pool;                      /* "hugepagePool" */
        size_t n_pool;
} Settings;

/* Loads path and path.d/ (a missing file is an empty configuration). */
int settings_load(const char *path, Settings *ret);
void settings_done(Settings *c);

bool settings_allows_noiommu(const Settings *c, const char *address);
bool settings_allows_iommu(const Settings *c, const char *address);
/* The backend "deviceBackends" forces for address, or _BACKEND_INVALID. */
Backend settings_device_backend(const Settings *c, const char *address);
