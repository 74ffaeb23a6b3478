/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The outside world as the core sees it: every privileged or system-facing operation the core
 * (client, dispatch, method-*, lease, region, persist, manager) performs, as one table of
 * function pointers.
 *
 * The daemon fills it with the real modules in backend.c (backend_ops_system: VFIO, hugetlb
 * memory, sysfs, polkit over D-Bus, the kernel's random ids); main.c hands that table to
 * manager_new(), which passes it on to the lease registry, the regions, the clients and
 * persistence. Tests fill it with a fake (tests/fake-backend.c) and run the real core against
 * it without root: the lease state machine and teardown order (tests/unit/test-lease-*) and
 * the whole connection path (tests/fuzz/fuzz-conn). The daemon binary itself has no test
 * switch (security.md §10): the fake exists only in the test binaries.
 *
 * Not in the table: what runs unprivileged anyway and has no outside effect worth faking —
 * pure helpers (backend_to_string(), dma_segments_merge(), inventory_device_force(),
 * linux_audit_encode_field()), the records themselves (record.c decides what is written and
 * what a failure means; only its Linux audit socket is in the table, because a test running as
 * root must not write to the machine's audit log), the journal (without journald's socket
 * record.c writes to the log instead), the fd store (fdstore.c: disabled without
 * $NOTIFY_SOCKET), settings and identity.
 *
 * Each member has the contract of the function backend.c puts there; see that header.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>

#include "hugepage.h"
#include "identity.h"
#include "inventory.h"
#include "linux-audit.h"
#include "polkit.h"
#include "vfio.h"

typedef struct BackendOps {
        /* Lease and memory ids (sd_id128_randomize()). */
        int (*random_id)(sd_id128_t *ret);

        /* sysfs (inventory.h). */
        struct {
                int (*scan)(const char *root, InventoryDevice **ret);
                int (*noiommu_status)(const char *root, const char **ret_reason);
        } inventory;

        /* hugetlb memory and its pin (hugepage.h). */
        struct {
                int (*default_size)(uint64_t *ret);
                int (*size_supported)(uint64_t hugepage_size);
                int (*new)(const char *id, uint64_t size, uint64_t hugepage_size, int numa_node,
                           int pagemap_fd, HugeRegion **ret);
                int (*restore)(const char *id, int memfd, int pin_fd, uint64_t size,
                               uint64_t hugepage_size, const uint64_t *phys, size_t n_pages,
                               int pagemap_fd, HugeRegion **ret);
                int (*verify)(const HugeRegion *r, int pagemap_fd);
                HugeRegion *(*free)(HugeRegion *r);
        } memory;

        /* VFIO devices (vfio.h). */
        struct {
                int (*open)(const InventoryDevice *d, VfioDevice **ret);
                int (*restore)(const InventoryDevice *d, int dev_fd, int grp_fd, int ctr_fd,
                               int iommufd, uint32_t ioas_id, uint32_t dev_id, uint32_t hwpt_id,
                               VfioDevice **ret);
                int (*client_fd)(const VfioDevice *v);
                void (*client_fd_sent)(VfioDevice *v);
                int (*map)(VfioDevice *v, HugeRegion *r, DmaSegment **ret_segments, size_t *ret_n,
                           AddressKind *ret_kind);
                int (*unmap)(VfioDevice *v, HugeRegion *r);
                int (*restore_map)(VfioDevice *v, const HugeRegion *r, uint64_t iova);
                int (*check_map)(VfioDevice *v, const HugeRegion *r, const uint64_t *granted);
                int (*get_map)(const VfioDevice *v, const HugeRegion *r, uint64_t *ret_iova);
                void (*get_fds)(const VfioDevice *v, int *ret_dev, int *ret_grp, int *ret_ctr,
                                int *ret_iommufd);
                void (*get_ids)(const VfioDevice *v, uint32_t *ret_ioas_id, uint32_t *ret_dev_id,
                                uint32_t *ret_hwpt_id);
                int (*quiesce)(VfioDevice *v, bool *ret_reset);
                VfioDevice *(*close)(VfioDevice *v);
        } device;

        /* The Linux audit socket record.c writes through (linux-audit.h). */
        LinuxAuditOps audit;

        /* Authorization (polkit.h). */
        struct {
                int (*new)(sd_event *event, Polkit **ret);
                Polkit *(*free)(Polkit *p);
                void (*connect)(Polkit *p);
                int (*verify)(Polkit *p, PolkitQuery **slot, const ClientIdentity *id,
                              const char *action, char **details, bool interactive,
                              polkit_done_t done, void *userdata, const char **ret_reason);
                bool (*query_answered)(const PolkitQuery *q);
                PolkitQuery *(*query_free)(PolkitQuery *q);
        } polkit;
} BackendOps;

/* The real modules (backend.c): what noiommud runs with. */
extern const BackendOps backend_ops_system;
