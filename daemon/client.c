/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See client.h: the session (layer 3) that owns what the daemon holds for one client, and
 * client_free(), the ordered teardown. The ConnOps table below is how conn.c calls up into it.
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "backend.h"
#include "client.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "lease.h"
#include "polkit.h"

static int client_dispatch(Conn *conn, void *userdata) {
        Client *c = userdata;

        /* Re-dispatched while its polkit check is still out: nothing to do yet. */
        if (c->polkit && !c->ctx->backend->polkit.query_answered(c->polkit))
                return 0;
        return c->ctx->dispatch(c);
}

static void client_request_done_op(Conn *conn, void *userdata) {
        client_request_done(userdata);
}

static bool client_holds_resources(Conn *conn, void *userdata) {
        Client *c = userdata;

        return c->n_regions > 0 || c->n_leases > 0;
}

static void client_closed(Conn *conn, const char *reason, void *userdata) {
        Client *c = userdata;

        if (!c->ctx->closing) {
                (void) client_free(c, reason);
                return;
        }
        /* The teardown waits for its batch, but the request in flight ends now: a polkit
         * answer arriving meanwhile must not grant anything to a client that is gone (the
         * query is cancelled, a device reservation dropped), as when it was freed at once. */
        client_request_done(c);
        c->ctx->closing(c, reason, c->ctx->userdata);
}

static const ConnOps client_conn_ops = {
        .dispatch = client_dispatch,
        .request_done = client_request_done_op,
        .holds_resources = client_holds_resources,
        .closed = client_closed,
};

void client_request_done(Client *c) {
        c->polkit = c->ctx->backend->polkit.query_free(c->polkit);
        c->pending_lease = lease_unreserve(c->pending_lease);
}

int client_new(const ClientContext *ctx, int fd, Client **ret) {
        _cleanup_(client_identity_done) ClientIdentity id = CLIENT_IDENTITY_INIT;
        Client *c;
        int r;

        assert(ctx);
        assert(fd >= 0);
        assert(ret);

        r = client_identity_from_socket(fd, &id);     /* identity is fixed at accept time */
        if (r < 0)
                return r;

        c = new0(Client, 1);
        if (!c)
                return -ENOMEM;
        c->ctx = ctx;
        c->manager = ctx->manager;
        c->id = id;
        id.pidfd = -EBADF;                      /* moved: the client is the pidfd's one owner */

        r = conn_new(ctx->event, fd, &c->id, &client_conn_ops, c, &c->conn);
        if (r >= 0)
                r = ctx->added(c, ctx->userdata);
        if (r < 0) {
                /* The caller keeps fd: the transport is freed without it. */
                if (c->conn)
                        c->conn->fd = -EBADF;
                c->conn = conn_free(c->conn);
                client_identity_done(&c->id);
                free(c);
                return r;
        }
        *ret = c;
        return 0;
}

static int client_end_lease_keeping(Client *c, size_t index, const char *reason, Lease *keeper);

Client *client_free(Client *c, const char *reason) {
        Lease *quarantined = NULL;

        if (!c)
                return NULL;

        /* 1. The request in flight: a pending polkit check is cancelled (its answer, if any,
         *    is ignored) and its reservation dropped. */
        client_request_done(c);

        /* 2. Devices first: each is quiesced before its memory is let go. A noiommu device
         *    that could not be quiesced can still write anywhere this client's memory is: that
         *    memory stays pinned with the quarantined lease. */
        while (c->n_leases > 0) {
                Lease *l = c->leases[c->n_leases - 1];
                bool noiommu = lease_is_noiommu(l);

                if (client_end_lease_keeping(c, c->n_leases - 1, reason, quarantined) == -EIO && noiommu)
                        quarantined = l;        /* still in the manager's list */
        }

        /* 3. Memory without a lease, now that no device of this client can reach it (or left
         *    to the quarantined one that still could). */
        while (c->n_regions > 0) {
                Region *r = c->regions[c->n_regions - 1];

                if (quarantined) {
                        lease_adopt_region(quarantined, r);
                        c->n_regions--;
                        continue;
                }
                client_free_region(c, c->n_regions - 1, reason);
        }

        /* 4. The store's copy of the socket would keep the client's connection open. */
        c->ctx->forget_stored(c, c->ctx->userdata);

        /* 5. The transport, then the identity (the pidfd's one owner). */
        c->conn = conn_free(c->conn);
        c->ctx->removed(c, c->ctx->userdata);
        client_identity_done(&c->id);
        free(c);
        return NULL;
}

int client_add_region(Client *c, Region *r) {
        if (c->n_regions >= NOIOMMU_REGIONS_PER_CONN_MAX)
                return -EUSERS;
        c->regions[c->n_regions++] = r;
        return 0;
}

Region *client_find_region(Client *c, const char *id, size_t *ret_index) {
        for (size_t i = 0; i < c->n_regions; i++)
                if (streq(region_id(c->regions[i]), id)) {
                        *ret_index = i;
                        return c->regions[i];
                }
        return NULL;
}

void client_free_region(Client *c, size_t index, const char *reason) {
        Region *r;

        assert(index < c->n_regions);
        r = c->regions[index];
        c->regions[index] = c->regions[--c->n_regions];

        /* The client learned this memory's physical addresses; if it also holds a device
         * without an IOMMU, that device can still write there until it is quiesced. Keep the
         * pages pinned with the lease until then (design.md §3.2). */
        for (size_t i = 0; i < c->n_leases; i++)
                if (c->leases[i]->state == LEASE_ACTIVE && lease_is_noiommu(c->leases[i])) {
                        lease_adopt_region(c->leases[i], r);
                        log_debug("Keeping %s pinned until %s is quiesced.", region_id(r),
                                  c->leases[i]->device.address);
                        return;
                }

        region_free(r, reason);
}

void client_withdraw_region(Client *c, Region *r, const char *reason) {
        for (size_t i = 0; i < c->n_regions; i++)
                if (c->regions[i] == r) {
                        c->regions[i] = c->regions[--c->n_regions];
                        region_free(r, reason);
                        return;
                }
        abort();                        /* only ever called with the region just added */
}

int client_add_lease(Client *c, Lease *l) {
        if (c->n_leases >= NOIOMMU_LEASES_PER_CONN_MAX)
                return -EUSERS;
        c->leases[c->n_leases++] = l;
        return 0;
}

Lease *client_find_lease(Client *c, const char *id, size_t *ret_index) {
        for (size_t i = 0; i < c->n_leases; i++)
                if (streq(c->leases[i]->id, id)) {
                        *ret_index = i;
                        return c->leases[i];
                }
        return NULL;
}

void client_forget_lease(Client *c, Lease *l) {
        for (size_t i = 0; i < c->n_leases; i++)
                if (c->leases[i] == l) {
                        c->leases[i] = c->leases[--c->n_leases];
                        return;
                }
}

/* Ends lease number index. Memory whose physical addresses the client knows is reachable by
 * every noiommu device of the client, not only by this one: once this device is quiesced, that
 * memory goes to another active noiommu lease of the client, or else to keeper (a lease of this
 * client quarantined earlier in the same teardown), instead of being freed. */
static int client_end_lease_keeping(Client *c, size_t index, const char *reason, Lease *keeper) {
        Lease *l, *heir = keeper;

        assert(index < c->n_leases);
        l = c->leases[index];
        c->leases[index] = c->leases[--c->n_leases];

        for (size_t i = 0; i < c->n_leases; i++)
                if (c->leases[i]->state == LEASE_ACTIVE && lease_is_noiommu(c->leases[i])) {
                        heir = c->leases[i];
                        break;
                }
        return lease_end_to(&l, reason, heir);
}

int client_end_lease(Client *c, size_t index, const char *reason) {
        return client_end_lease_keeping(c, index, reason, NULL);
}

json_t *client_reexec_save(Client *c, int (*keep)(int fd, void *userdata), void *userdata) {
        /* Re-run after the re-exec; polkit is asked again there (its bus connection does not
         * survive execve()). */
        if (c->polkit && !c->conn->monitoring)
                client_request_done(c);
        return conn_reexec_save(c->conn, keep, userdata);
}
