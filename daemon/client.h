/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One client: the session behind a connection, dbus-broker's Peer. Layer 3
 * (docs/architecture.md): above conn, lease, region and polkit, which it owns or uses; below
 * persist, monitor, the manager and dispatch, which it reaches only through the ClientContext
 * table the manager fills in. It owns, and is the only owner of, everything the daemon holds
 * for that client:
 *
 *   the identity fixed at accept time (identity.h), including its pidfd: everything else
 *       (leases, regions, polkit queries) keeps a plain-data copy with pidfd = -EBADF;
 *   the transport (conn.h), which calls back up only through the ConnOps table given here;
 *   its memory without a lease (Region), its device leases, the reservation of an
 *       AcquireDevice waiting for polkit, and the polkit query itself;
 *   its "conn-<id>" entry in the fd store.
 *
 * It trusts nothing the client sends (the handlers above check requests); who the client is
 * comes from the kernel at accept.
 *
 * client_free() is THE ordered teardown, top to bottom: cancel the pending request, end the
 * leases (each quiesced before any memory it could reach is released), then free the memory
 * without a lease (or leave it to a quarantined noiommu lease that could still reach it),
 * forget the store entry, close the transport.
 */
#pragma once

#include <stdbool.h>

#include "conn.h"
#include "identity.h"
#include "region.h"

typedef struct Manager Manager;
typedef struct Lease Lease;
typedef struct PolkitQuery PolkitQuery;

/* Leases one client may hold, and allocations without a lease. */
#define NOIOMMU_LEASES_PER_CONN_MAX 8
#define NOIOMMU_REGIONS_PER_CONN_MAX 64

typedef struct BackendOps BackendOps;
typedef struct Client Client;

/* What a client needs from the daemon around it, wired once by the manager (manager_new()):
 * the event loop, the request handler, and the bookkeeping that sees clients come and go. */
typedef struct ClientContext {
        sd_event *event;
        Manager *manager;               /* for the handlers (c->manager); opaque here */
        const BackendOps *backend;      /* the polkit query a client owns is freed through it */
        int (*dispatch)(Client *c);     /* runs c->conn->current (dispatch_current()) */
        int (*added)(Client *c, void *userdata);        /* -errno refuses the client */
        void (*removed)(Client *c, void *userdata);
        void (*forget_stored)(Client *c, void *userdata);       /* drop its conn- store entry */
        /* The connection ended (ConnOps.closed): the request in flight is already cancelled;
         * the callee calls client_free(c, reason) later, in a batch. NULL: freed at once. */
        void (*closing)(Client *c, const char *reason, void *userdata);
        void *userdata;
} ClientContext;

struct Client {
        const ClientContext *ctx;
        Manager *manager;
        struct Client *next, *prev;             /* in manager->clients */
        struct Client *uid_next, *uid_prev;     /* among the clients of the same uid */

        ClientIdentity id;
        Conn *conn;

        PolkitQuery *polkit;                    /* the current request's check */
        Lease *pending_lease;                   /* reserved while polkit decides an AcquireDevice */
        Lease *leases[NOIOMMU_LEASES_PER_CONN_MAX];
        size_t n_leases;
        Region *regions[NOIOMMU_REGIONS_PER_CONN_MAX];  /* memory without a lease */
        size_t n_regions;

        char store_id[NOIOMMU_ID_LEN + 1];      /* "conn-<id>" in the fd store, "" if not stored */

        /* Waiting for its teardown (ClientContext.closing): in the manager's closing queue. */
        bool close_queued;
        const char *close_reason;
        struct Client *close_next, *close_prev;
};

/* Takes ownership of fd (an accepted, non-blocking, close-on-exec socket) on success only. */
int client_new(const ClientContext *ctx, int fd, Client **ret);

/* The ordered teardown (see above); memory is freed and audited with reason ("client-exit",
 * "shutdown", "not-received", ...). Returns NULL. */
Client *client_free(Client *c, const char *reason);

/* The current request is answered or abandoned: nothing about it survives, not a polkit
 * verdict (no caching across requests) nor a device reservation. */
void client_request_done(Client *c);

/* Memory without a lease. */
int client_add_region(Client *c, Region *r);
Region *client_find_region(Client *c, const char *id, size_t *ret_index);
/* The client frees it: a noiommu lease of the client keeps it pinned until its quiesce. */
void client_free_region(Client *c, size_t index, const char *reason);
/* Takes back a region client_add_region() just adopted, before its addresses reached the
 * client (the grant was refused): freed at once, audited with reason. */
void client_withdraw_region(Client *c, Region *r, const char *reason);

/* Leases. */
int client_add_lease(Client *c, Lease *l);
Lease *client_find_lease(Client *c, const char *id, size_t *ret_index);
/* Ends lease number index (lease_end()) and forgets it. Returns lease_end()'s result. */
int client_end_lease(Client *c, size_t index, const char *reason);
/* Forgets l without ending it (it was quarantined and lives on in the manager's list). */
void client_forget_lease(Client *c, Lease *l);

/* Re-exec (reexec.c): what conn_reexec_save() saves, after cancelling a request that waits for
 * polkit (it is re-run from the start in the new image, as the polkit callback would). */
json_t *client_reexec_save(Client *c, int (*keep)(int fd, void *userdata), void *userdata);
