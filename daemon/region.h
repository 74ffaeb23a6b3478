/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One grant of pinned DMA memory (layer 2, docs/architecture.md), owning its life: the
 * HugeRegion (memfd, pin, physical addresses), how the client was told to address it, whether
 * the client freed it while a device could still reach it, and its quota charge.
 *
 *   region_new()/region_restore(): charge the quota (quota.h) and take the HugeRegion over;
 *   region_free(): THE destructor: uncharges, removes its own "mem-<id>" fd-store entry, reads
 *       the physical addresses again (a difference means a page moved or was punched out while
 *       pinned), writes the MEMORY_FREED record for its holder, unpins and frees.
 *
 * Whoever holds the Region (a Client, a Lease, a lease's adopted list) decides *when* it is
 * freed: memory a noiommu device could reach only after that device is quiesced (lease.c). The
 * Region decides *how*, so that no path can free memory and forget the record, the store entry
 * or the charge (as persist.c's restore used to). It calls up only through RegionContext's
 * changed() (the manager: the persisted state must be written again) and down through the
 * BackendOps table (backend.h: hugepage.c in the daemon, tests/fake-backend.c in the tests).
 * It trusts pagemap, not the addresses it handed out.
 */
#pragma once

#include <stdbool.h>

#include "backend.h"
#include "hugepage.h"
#include "identity.h"
#include "internal/macro.h"
#include "quota.h"
#include "vfio.h"

/* What a Region needs from the daemon, wired once by the manager. */
typedef struct RegionContext {
        const BackendOps *backend;      /* the outside world (backend.h), given by the manager */
        Quota *quota;
        int pagemap_fd;                 /* to re-read physical addresses at free */
        /* The persistent state changed (a region is gone); NULL: nobody listens. */
        void (*changed)(void *userdata);
        void *userdata;
} RegionContext;

typedef struct Region {
        const RegionContext *ctx;
        HugeRegion *huge;
        AddressKind kind;               /* as the client was told: physical address or IOVA */
        bool retired;                   /* freed by the client, kept until its device is quiesced */
        ClientIdentity holder;          /* for the records; a copy, the pidfd is never owned */
        QuotaCharge charge;
} Region;

/* Takes over huge on success only (a caller holding memory a device may reach must not have
 * it freed by a failed bookkeeping allocation), and charges it to holder's uid. */
int region_new(const RegionContext *ctx, HugeRegion *huge, const ClientIdentity *holder, Region **ret);

/* The restore constructor (persist.c): the HugeRegion comes back from its stored memfd (and,
 * after a re-exec, its pin), see huge_region_restore(), and is charged to holder's uid.
 * Returns 1 if its physical addresses differ from phys (moved while unpinned), 0 if not,
 * negative errno if the memory could not be taken back. */
int region_restore(const RegionContext *ctx, const char *id, int memfd, int pin_fd, uint64_t size,
                   uint64_t hugepage_size, const uint64_t *phys, size_t n_pages,
                   const ClientIdentity *holder, Region **ret);

/* The destructor (see above); reason is the record's NOIOMMUD_REASON. Returns NULL. */
Region *region_free(Region *r, const char *reason);

/* At process exit only: frees without records or store changes (the memory goes with the
 * process anyway, and a stopped daemon's store is flushed by the service manager). */
Region *region_drop(Region *r);

/* Something persisted about r changed (retired, adopted by a lease): tells ctx->changed. */
void region_changed(const Region *r);

/* "mem-<id>": the region's name in the fd store. */
void region_store_name(const Region *r, char *buf, size_t size);

DEFINE_TRIVIAL_CLEANUP_FUNC(Region *, region_drop);

static inline const char *region_id(const Region *r) {
        return r->huge->id;
}

static inline uint64_t region_size(const Region *r) {
        return r->huge->size;
}
