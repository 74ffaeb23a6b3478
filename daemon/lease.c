/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See lease.h for what a lease owns, the state machine and the teardown order. Every state
 * change goes through lease_set_state() and its table lease_transitions[][]; the teardown is
 * lease_teardown(), reached only through lease_end() and lease_retry_quarantined().
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-id128.h>

#include "record.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "lease.h"

static const char *const lease_state_table[_LEASE_STATE_MAX] = {
        [LEASE_RESERVED] = "reserved",
        [LEASE_AUTHORIZING] = "authorizing",
        [LEASE_ACTIVE] = "active",
        [LEASE_HOLDER_GONE] = "holder-gone",
        [LEASE_QUIESCING] = "quiescing",
        [LEASE_QUARANTINED] = "quarantined",
};

const char *lease_state_to_string(LeaseState s) {
        if (s < 0 || s >= _LEASE_STATE_MAX)
                return NULL;
        return lease_state_table[s];
}

/* The state machine (lease.h), row = from, column = to. Nothing goes back to ACTIVE from
 * QUARANTINED: a revoke re-enters the teardown (QUIESCING) directly. */
static const bool lease_transitions[_LEASE_STATE_MAX][_LEASE_STATE_MAX] = {
        [LEASE_RESERVED]    = { [LEASE_AUTHORIZING] = true, [LEASE_ACTIVE] = true },
        [LEASE_AUTHORIZING] = { [LEASE_ACTIVE] = true },
        [LEASE_ACTIVE]      = { [LEASE_QUIESCING] = true, [LEASE_QUARANTINED] = true },
        [LEASE_HOLDER_GONE] = { [LEASE_ACTIVE] = true, [LEASE_QUIESCING] = true, [LEASE_QUARANTINED] = true },
        [LEASE_QUIESCING]   = { [LEASE_QUARANTINED] = true },
        [LEASE_QUARANTINED] = { [LEASE_QUIESCING] = true },
};

bool lease_state_transition_allowed(LeaseState from, LeaseState to) {
        if (from < 0 || from >= _LEASE_STATE_MAX || to < 0 || to >= _LEASE_STATE_MAX)
                return false;
        return lease_transitions[from][to];
}

/* The only writer of l->state after construction. A refused transition is a bug in the
 * daemon, never something a client can cause: abort rather than continue with a lease whose
 * memory rules no longer hold (house-style: assert what cannot happen). */
static void lease_set_state(Lease *l, LeaseState s) {
        assert(lease_state_transition_allowed(l->state, s));
        log_debug("Lease %s on %s: %s -> %s.", l->id, l->device.address,
                  lease_state_to_string(l->state), lease_state_to_string(s));
        l->state = s;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

uint64_t lease_now_usec(void) {
        return now_usec();
}

Lease *lease_find_by_address(LeaseRegistry *reg, const char *address) {
        for (Lease *l = reg->leases; l; l = l->next)
                if (streq(l->device.address, address))
                        return l;
        return NULL;
}

Lease *lease_find_by_id(LeaseRegistry *reg, const char *id) {
        for (Lease *l = reg->leases; l; l = l->next)
                if (streq(l->id, id))
                        return l;
        return NULL;
}

uint64_t lease_bytes_pinned(const Lease *l) {
        uint64_t bytes = 0;

        for (size_t i = 0; i < l->n_regions; i++)
                bytes += region_size(l->regions[i]);
        for (size_t i = 0; i < l->n_adopted; i++)
                bytes += region_size(l->adopted[i]);
        return bytes;
}

static int lease_teardown(Lease *l, const char *reason, Lease *heir);

static const BackendOps *ops(const LeaseRegistry *reg) {
        assert(reg->backend);
        return reg->backend;
}

static void lease_emit(const Lease *l, LeaseEvent ev, const char *reason) {
        const LeaseHooks *h = &l->registry->hooks;

        if (h->event)
                h->event(l, ev, reason, h->userdata);
}

void lease_announce_granted(const Lease *l) {
        lease_emit(l, LEASE_EVENT_GRANTED, NULL);
}

int lease_retry_quarantined(Lease **lp, const char *reason) {
        Lease *l = TAKE_PTR(*lp);

        assert(l->state == LEASE_QUARANTINED);
        return lease_teardown(l, reason, NULL);
}

static void lease_link(LeaseRegistry *reg, Lease *l) {
        l->next = reg->leases;
        if (reg->leases)
                reg->leases->prev = l;
        reg->leases = l;
}

static void lease_unlink(Lease *l) {
        LeaseRegistry *reg = l->registry;

        if (l->prev)
                l->prev->next = l->next;
        else if (reg->leases == l)
                reg->leases = l->next;
        if (l->next)
                l->next->prev = l->prev;
        l->next = l->prev = NULL;
}

int lease_reserve(LeaseRegistry *reg, Client *client, const ClientIdentity *holder,
                  const InventoryDevice *d, Lease **ret) {
        Lease *l, *existing;
        sd_id128_t id;
        int r;

        existing = lease_find_by_address(reg, d->address);
        if (existing)
                return existing->state == LEASE_QUARANTINED ? -EIO : -EBUSY;

        r = ops(reg)->random_id(&id);
        if (r < 0)
                return r;

        l = new0(Lease, 1);
        if (!l)
                return -ENOMEM;
        *l = (Lease) {
                .registry = reg,
                .state = LEASE_RESERVED,
                .client = client,
                .holder = *holder,
                .device = *d,
                .created_usec = now_usec(),
        };
        l->holder.pidfd = -EBADF;               /* a copy for records; the client owns the fd */
        (void) sd_id128_to_string(id, l->id);
        lease_link(reg, l);
        *ret = l;
        return 0;
}

void lease_wait_authorization(Lease *l) {
        if (l->state != LEASE_AUTHORIZING)
                lease_set_state(l, LEASE_AUTHORIZING);
}

int lease_restore(LeaseRegistry *reg, const char *id, bool quarantined, const InventoryDevice *d,
                  const ClientIdentity *holder, uint64_t created_usec, const char *conn_id,
                  VfioDevice *vfio, Lease **ret) {
        Lease *l;

        assert(noiommu_id_is_valid(id));

        l = new0(Lease, 1);
        if (!l) {
                /* The device is closed, which the kernel answers by clearing Bus Master (the
                 * last close of a VFIO device disables it): no worse than a crash. */
                ops(reg)->device.close(vfio);
                return -ENOMEM;
        }
        *l = (Lease) {
                .registry = reg,
                .state = quarantined ? LEASE_QUARANTINED : LEASE_HOLDER_GONE,
                .holder = *holder,
                .device = *d,
                .vfio = vfio,
                .created_usec = created_usec,
        };
        l->holder.pidfd = -EBADF;               /* a copy for records */
        memcpy(l->id, id, NOIOMMU_ID_LEN + 1);
        if (conn_id && noiommu_id_is_valid(conn_id))
                memcpy(l->restored_conn, conn_id, NOIOMMU_ID_LEN + 1);
        lease_link(reg, l);
        *ret = l;
        return 0;
}

void lease_attach(Lease *l, Client *c, const ClientIdentity *holder) {
        assert(l->state == LEASE_HOLDER_GONE);

        l->client = c;
        l->holder = *holder;
        l->holder.pidfd = -EBADF;               /* a copy for records; the client owns the fd */
        l->restored_conn[0] = 0;
        lease_set_state(l, LEASE_ACTIVE);
}

bool lease_restore_region(Lease *l, Region *r, AddressKind kind, bool retired, bool adopted,
                          uint64_t iova) {
        if (adopted) {
                lease_adopt_region(l, r);
                return false;
        }
        if (l->n_regions >= NOIOMMU_REGIONS_PER_LEASE_MAX) {
                /* Only a state this daemon did not write can have more; whatever it is, the
                 * device may have been given its addresses. */
                log_warning("Lease %s on %s: more mapped memory in the stored state than a lease may have; "
                            "keeping %s pinned until the device is quiesced.", l->id, l->device.address, region_id(r));
                lease_adopt_region(l, r);
                return false;
        }
        /* Every backend keeps a record of what it mapped (the group backend with IOVA 0), so
         * that the unmap at release finds it. */
        (void) ops(l->registry)->device.restore_map(l->vfio, r->huge, iova);
        r->kind = kind;
        r->retired = retired;
        l->regions[l->n_regions++] = r;
        return true;
}

bool lease_is_noiommu(const Lease *l) {
        return l->device.backend != BACKEND_CDEV_IOMMU;
}

void lease_adopt_region(Lease *l, Region *r) {
        Region **a;

        a = realloc(l->adopted, sizeof(Region *) * (l->n_adopted + 1));
        if (!a) {
                /* Memory the device could reach is never freed without its quiesce: if even the
                 * bookkeeping fails, the region stays pinned for the life of the process. */
                log_error("Out of memory tracking %s of lease %s on %s: keeping it pinned until the daemon exits.",
                          region_id(r), l->id, l->device.address);
                return;
        }
        l->adopted = a;
        l->adopted[l->n_adopted++] = r;
        region_changed(r);
}

void lease_keep_unrestored(Lease *l, const char *region_id) {
        char (*a)[NOIOMMU_ID_LEN + 1];

        assert(noiommu_id_is_valid(region_id));

        a = realloc(l->unrestored, sizeof(*a) * (l->n_unrestored + 1));
        if (!a) {
                /* Untracked, the entry is never removed: the store keeps the pages until the
                 * daemon stops, which is safe, only wasteful. */
                log_error("Out of memory tracking %s of lease %s: its fd store entry stays until the daemon stops.",
                          region_id, l->id);
                return;
        }
        l->unrestored = a;
        memcpy(l->unrestored[l->n_unrestored++], region_id, NOIOMMU_ID_LEN + 1);
}

void lease_hand_over_adopted(Lease *from, Lease *to) {
        assert(from != to);
        for (size_t i = 0; i < from->n_adopted; i++)
                lease_adopt_region(to, from->adopted[i]);
        from->n_adopted = 0;
}

static void lease_free_adopted(Lease *l, const char *reason) {
        for (size_t i = 0; i < l->n_adopted; i++)
                region_free(l->adopted[i], reason);
        l->n_adopted = 0;
}

static Lease *lease_free(Lease *l) {
        if (!l)
                return NULL;
        lease_unlink(l);
        /* Only left at process exit (quarantined leases, lease_free_all()): everything else
         * was freed by lease_teardown() in order. */
        for (size_t i = 0; i < l->n_regions; i++)
                region_drop(l->regions[i]);
        for (size_t i = 0; i < l->n_adopted; i++)
                region_drop(l->adopted[i]);
        free(l->adopted);
        free(l->unrestored);
        ops(l->registry)->device.close(l->vfio);
        free(l);
        return NULL;
}

Lease *lease_unreserve(Lease *l) {
        if (!l)
                return NULL;
        assert(l->state == LEASE_RESERVED || l->state == LEASE_AUTHORIZING);
        return lease_free(l);
}

int lease_activate(Lease *l) {
        int r;

        assert(l->state == LEASE_RESERVED || l->state == LEASE_AUTHORIZING);

        r = ops(l->registry)->device.open(&l->device, &l->vfio);
        if (r == -EPROTONOSUPPORT) {
                /* GET_PA answered ENOTTY (no such command: a kernel before 7.3, or without
                 * iommufd), E2BIG (another struct revision) or EOPNOTSUPP (7.3 built with
                 * IOMMUFD but without IOMMUFD_NOIOMMU), or HWPT_ALLOC was refused: the
                 * daemon could not say where memory is. The caller answers NotSupported. */
                log_warning("Cannot serve %s as cdev-noiommu: the kernel lacks the noiommu cdev "
                            "services (IOMMU_IOAS_NOIOMMU_GET_PA and HWPT_ALLOC for noiommu, Linux 7.3+ "
                            "built with CONFIG_IOMMUFD_NOIOMMU, which CONFIG_VFIO_NOIOMMU selects with "
                            "VFIO_DEVICE_CDEV).", l->device.address);
                return -EOPNOTSUPP;
        }
        if (r < 0)
                return r;
        lease_set_state(l, LEASE_ACTIVE);
        l->created_usec = now_usec();
        return 0;
}

int lease_add_region(Lease *l, Region *r, DmaSegment **ret_segments, size_t *ret_n,
                     AddressKind *ret_kind) {
        int k;

        if (l->state != LEASE_ACTIVE)
                return -ESTALE;
        if (l->n_regions >= NOIOMMU_REGIONS_PER_LEASE_MAX)
                return -EUSERS;

        k = ops(l->registry)->device.map(l->vfio, r->huge, ret_segments, ret_n, ret_kind);
        if (k == -ENOLINK || k == -ESTALE) {
                /* GET_PA in the middle of the lease: EOPNOTSUPP means no noiommu page table
                 * is behind the new mapping any more (not "unsupported": the command was
                 * probed at acquire time); -ESTALE means GET_PA and pagemap disagree. The
                 * daemon's explicit HWPT should make both impossible. Whatever the device was
                 * told before can no longer be vouched for: hand out nothing more. */
                log_error_errno(k, "Lease %s on %s: %s; quarantining the lease.", l->id, l->device.address,
                                k == -ENOLINK ? "the kernel reports no noiommu page table behind a new mapping (GET_PA: EOPNOTSUPP)"
                                              : "GET_PA and pagemap disagree about a new mapping");
                lease_quarantine(l, k, k == -ENOLINK ? "no-noiommu-page-table" : "addresses-disagree");
                return k;
        }
        if (k < 0)
                return k;
        r->kind = *ret_kind;
        r->retired = false;
        l->regions[l->n_regions++] = r;
        return 0;
}

Region *lease_find_region(Lease *l, const char *id, size_t *ret_index) {
        for (size_t i = 0; i < l->n_regions; i++)
                if (!l->regions[i]->retired && streq(region_id(l->regions[i]), id)) {
                        *ret_index = i;
                        return l->regions[i];
                }
        return NULL;
}

/* Unmaps region number index from the device and frees it, or, if heir is given and the client
 * was told the region's physical addresses, leaves it pinned with heir (another noiommu device
 * of the same client could have been given them). */
static void lease_drop_region(Lease *l, size_t index, const char *reason, Lease *heir) {
        Region *r = l->regions[index];
        int k;

        l->regions[index] = l->regions[--l->n_regions];

        k = ops(l->registry)->device.unmap(l->vfio, r->huge);
        if (k < 0)
                log_warning_errno(k, "Failed to unmap %s from the device's DMA context, ignoring: %m", region_id(r));
        if (heir && r->kind == ADDRESS_PHYSICAL)
                lease_adopt_region(heir, r);
        else
                region_free(r, reason);
}

void lease_withdraw_region(Lease *l, Region *r, const char *reason) {
        for (size_t i = 0; i < l->n_regions; i++)
                if (l->regions[i] == r) {
                        lease_drop_region(l, i, reason, NULL);
                        return;
                }
        abort();                        /* only ever called with the region just added */
}

void lease_free_region(Lease *l, size_t index) {
        assert(index < l->n_regions);

        /* Behind a real IOMMU, unmapping blocks the device's access at once: free now. Without
         * one, the device may still be writing there; keep the pages pinned (and out of the
         * client's view) until the lease ends with a quiesce. */
        if (l->regions[index]->kind == ADDRESS_IOVA)
                lease_drop_region(l, index, "free", NULL);
        else {
                l->regions[index]->retired = true;
                region_changed(l->regions[index]);
        }
}

void lease_quarantine(Lease *l, int error, const char *why) {
        Client *c = l->client;

        assert(l->state == LEASE_ACTIVE || l->state == LEASE_HOLDER_GONE);

        /* Like a failed quiesce: out of the holder's hands (its requests about the lease get
         * NoSuchLease/DeviceQuarantined), everything pinned, never handed out again until an
         * administrator revokes it — which quiesces before any memory is released. */
        if (c && l->registry->hooks.detached)
                l->registry->hooks.detached(l, c, l->registry->hooks.userdata);
        l->client = NULL;
        lease_set_state(l, LEASE_QUARANTINED);
        record_lease_broken(&l->holder, l->id, &l->device, error, why, lease_bytes_pinned(l));
        lease_emit(l, LEASE_EVENT_QUARANTINED, why);
}

/* THE teardown, the project's most important safety rule in one place (design.md §3.3):
 * memory that the device could reach is released only after the device is quiesced. From
 * ACTIVE, HOLDER_GONE (reclaim after a restart) or QUARANTINED (an administrator's retry). */
static int lease_teardown(Lease *l, const char *reason, Lease *heir) {
        uint64_t bytes;
        bool reset = false;
        int r;

        lease_set_state(l, LEASE_QUIESCING);    /* nobody can be granted the device meanwhile */
        bytes = lease_bytes_pinned(l);

        /* 1. Stop the device: Bus Master off (read back), then reset if it can. */
        r = ops(l->registry)->device.quiesce(l->vfio, &reset);
        if (r < 0) {
                /* The device may still be able to DMA: keep everything pinned and never hand
                 * the device out again until an administrator acts. */
                lease_set_state(l, LEASE_QUARANTINED);
                l->client = NULL;
                record_quiesce_failed(&l->holder, l->id, &l->device, r, bytes);
                lease_emit(l, LEASE_EVENT_QUARANTINED, reason);
                return -EIO;
        }
        record_lease_quiesced(&l->holder, l->id, &l->device, reset, reason);

        /* 2. Only now: unmap, unpin and free the memory, last allocation first, and the
         * connection's own memory the device could have reached. What the client knows the
         * physical addresses of, and another of its noiommu devices (heir) could therefore
         * reach, stays pinned with heir instead. */
        while (l->n_regions > 0)
                lease_drop_region(l, l->n_regions - 1, reason, heir);
        if (heir)
                lease_hand_over_adopted(l, heir);
        else
                lease_free_adopted(l, reason);

        /* 3. Close the device; it is free for the next client. */
        lease_emit(l, LEASE_EVENT_CLOSING, reason);
        l->vfio = ops(l->registry)->device.close(l->vfio);
        record_lease_released(&l->holder, l->id, &l->device, reason, bytes, now_usec() - l->created_usec);
        lease_emit(l, LEASE_EVENT_RELEASED, reason);
        lease_free(l);
        return 0;
}

int lease_end(Lease **lp, const char *reason) {
        return lease_end_to(lp, reason, NULL);
}

int lease_end_to(Lease **lp, const char *reason, Lease *heir) {
        Lease *l = TAKE_PTR(*lp);

        if (!l)
                return 0;
        switch (l->state) {
        case LEASE_RESERVED:
        case LEASE_AUTHORIZING:
                lease_unreserve(l);
                return 0;
        case LEASE_QUARANTINED:
                return -EIO;    /* only an administrator's lease_retry_quarantined() */
        case LEASE_ACTIVE:
        case LEASE_HOLDER_GONE:
                assert(heir != l);
                return lease_teardown(l, reason, heir);
        case LEASE_QUIESCING:           /* ending already: the teardown is not re-entrant */
        case _LEASE_STATE_MAX:
        case _LEASE_STATE_INVALID:
        default:
                abort();
        }
}

void lease_free_all(LeaseRegistry *reg) {
        while (reg->leases)
                lease_free(reg->leases);
}
