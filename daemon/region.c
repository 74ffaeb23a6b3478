/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See region.h: one grant of pinned memory and its destructor region_free() (layer 2).
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "record.h"
#include "fdstore.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "region.h"

static const BackendOps *ops(const RegionContext *ctx) {
        assert(ctx->backend);
        return ctx->backend;
}

int region_new(const RegionContext *ctx, HugeRegion *huge, const ClientIdentity *holder, Region **ret) {
        Region *r;
        int k;

        assert(ctx);
        assert(huge);
        assert(holder);

        r = new0(Region, 1);
        if (!r)
                return -ENOMEM;
        *r = (Region) {
                .ctx = ctx,
                .huge = huge,
                .kind = ADDRESS_PHYSICAL,
                .holder = *holder,
        };
        r->holder.pidfd = -EBADF;               /* a copy for records; never owned here */

        k = quota_charge(ctx->quota, holder->uid, huge->size, &r->charge);
        if (k < 0) {
                free(r);
                return k;
        }
        *ret = r;
        return 0;
}

int region_restore(const RegionContext *ctx, const char *id, int memfd, int pin_fd, uint64_t size,
                   uint64_t hugepage_size, const uint64_t *phys, size_t n_pages,
                   const ClientIdentity *holder, Region **ret) {
        HugeRegion *huge;
        int q, k;

        q = ops(ctx)->memory.restore(id, memfd, pin_fd, size, hugepage_size, phys, n_pages, ctx->pagemap_fd, &huge);
        if (q < 0)
                return q;
        k = region_new(ctx, huge, holder, ret);
        if (k < 0) {
                /* A device may have been told these addresses, and who holds the memory is
                 * not known yet: never free it without the quiesce. Pinned until exit. */
                log_error_errno(k, "Cannot track restored memory %s (%m); keeping it pinned until the daemon exits.", id);
                return k;
        }
        return q;
}

void region_changed(const Region *r) {
        if (r->ctx->changed)
                r->ctx->changed(r->ctx->userdata);
}

void region_store_name(const Region *r, char *buf, size_t size) {
        (void) snprintf(buf, size, "mem-%s", r->huge->id);
}

Region *region_free(Region *r, const char *reason) {
        char name[64];
        int k;

        if (!r)
                return NULL;

        quota_uncharge(&r->charge);

        /* Like logind's session_device_free(): whoever stored the fd removes it. Without
         * this the store's copy would keep the pages allocated after the free. */
        if (fdstore_enabled()) {
                region_store_name(r, name, sizeof(name));
                (void) fdstore_remove(name);
                if (r->ctx->changed)
                        r->ctx->changed(r->ctx->userdata);
        }

        /* Compare the PFNs with those handed out: a difference means a page moved while
         * pinned, or the client punched a hole (the pinned page stayed ours either way). */
        k = ops(r->ctx)->memory.verify(r->huge, r->ctx->pagemap_fd);
        if (k < 0 && k != -ESTALE)
                log_warning_errno(k, "Failed to re-read physical addresses of %s, ignoring: %m", r->huge->id);
        record_memory_freed(&r->holder, r->huge, reason, k == -ESTALE);
        ops(r->ctx)->memory.free(r->huge);
        free(r);
        return NULL;
}

Region *region_drop(Region *r) {
        if (!r)
                return NULL;
        quota_uncharge(&r->charge);
        ops(r->ctx)->memory.free(r->huge);
        free(r);
        return NULL;
}
