/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The one place the daemon binds the core to the real outside world (backend.h): main.c passes
 * backend_ops_system to manager_new(). Nothing else in daemon/ names these functions' users.
 */
#include "backend.h"

const BackendOps backend_ops_system = {
        .random_id = sd_id128_randomize,
        .inventory = {
                .scan = inventory_scan,
                .noiommu_status = inventory_noiommu_status,
        },
        .memory = {
                .default_size = hugepage_default_size,
                .size_supported = hugepage_size_supported,
                .new = huge_region_new,
                .restore = huge_region_restore,
                .verify = huge_region_verify,
                .free = huge_region_free,
        },
        .device = {
                .open = vfio_device_open,
                .restore = vfio_device_restore,
                .client_fd = vfio_device_client_fd,
                .client_fd_sent = vfio_device_client_fd_sent,
                .map = vfio_device_map,
                .unmap = vfio_device_unmap,
                .restore_map = vfio_device_restore_map,
                .check_map = vfio_device_check_map,
                .get_map = vfio_device_get_map,
                .get_fds = vfio_device_get_fds,
                .get_ids = vfio_device_get_ids,
                .quiesce = vfio_device_quiesce,
                .close = vfio_device_close,
        },
        .audit = {
                .open = linux_audit_open,
                .close = linux_audit_close,
                .is_open = linux_audit_is_open,
                .log = linux_audit_log,
        },
        .polkit = {
                .new = polkit_new,
                .free = polkit_free,
                .connect = polkit_connect,
                .verify = polkit_verify,
                .query_answered = polkit_query_answered,
                .query_free = polkit_query_free,
        },
};
