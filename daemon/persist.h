/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What survives kill -9 (an observer, layer 4, docs/architecture.md): the lease table
 * serialized into a state memfd, and every fd a grant depends on, kept in systemd's fd store
 * (fdstore.h for the names). It learns of leases through the LeaseHooks and of regions through
 * RegionContext's changed(), both wired by the manager, and is called by name only for the
 * write-ahead (persist_grant(), from the handlers) and the restore (the manager, reexec.c). It
 * owns the state memfds and the idle event that writes them; the store's copies of the other fds
 * are removed by whoever owns the original (region_free(), the lease's CLOSING event,
 * client_free()). Rules (security.md §8):
 *
 *   - Write-ahead: nothing reaches a client before the grant's fds AND a state that describes
 *     them are in the store. persist_grant() pushes the grant's fds at once (one notification
 *     per object: the connection once, the memfd, or all of a lease's device fds under one
 *     name) and holds the connection's reply (conn_hold()); the state is written once per loop
 *     iteration for every grant made in it (persist_flush(), from a defer source), and only
 *     then are the held replies let go. If that write fails, the held connections are closed
 *     ("not-stored": their grants end, quiesce before free) and nothing reaches them. A crash
 *     before the write means the client never got anything; a crash after it loses nothing.
 *   - The state names only connections that hold a lease or memory, and is written only when
 *     something in it changed: a disconnect that lets nothing go costs no write, and any
 *     number of changes in one iteration cost one.
 *   - Restore: fds are validated (memfds by type, seals and size; device fds by re-probing the
 *     config region) before they are trusted. The io_uring pin itself cannot be stored (the
 *     kernel refuses io_uring fds in SCM_RIGHTS), so between kill -9 and restart the pages are
 *     held by the memfd but not pinned; the restore pins them again and compares every
 *     physical address with the one handed out (a difference is logged as critical). For a
 *     noiommu lease the kernel is asked too (GET_PA for every cdev-noiommu mapping, through
 *     the restored iommufd and the persisted ioas/hwpt ids): a lease whose addresses moved, or
 *     that has no page table behind a mapping any more, is quarantined (LEASE_BROKEN audit
 *     record; nothing handed out, nothing released until an administrator revokes it, which
 *     quiesces first). A lease whose client connection is gone (the manager dropped the
 *     hung-up socket, or the peer cannot be identified any more) is reclaimed with the full
 *     quiesce-before-free order. Anything not recognised is closed and removed from the store.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "client.h"
#include "lease.h"
#include "region.h"

typedef struct Client Client;
typedef struct Lease Lease;
typedef struct Region Region;
typedef enum LeaseEvent LeaseEvent;

/* What persistence needs, embedded in the manager and wired once by manager_new(): the lists
 * it serializes and restores into, and the contexts new clients and regions are made with. */
typedef struct Persist {
        sd_event *event;
        sd_event_source *source;        /* the deferred state write (persist_flush()) */
        bool dirty;
        bool stale_state_possible;      /* a "state-N" of the next write's name may be left over */
        bool legacy_lease_names;        /* a restored lease's fds are named "lease-<id>-<kind>" */
        uint64_t generation;            /* of the last state written to the fd store */
        Client **held;                  /* connections whose replies wait for the next write */
        size_t n_held, n_held_allocated;
        Client *const *clients;
        LeaseRegistry *leases;
        const ClientContext *client_ctx;
        const RegionContext *region_ctx;
} Persist;

void persist_init(Persist *p, sd_event *event, Client *const *clients, LeaseRegistry *leases,
                  const ClientContext *client_ctx, const RegionContext *region_ctx);
void persist_done(Persist *p);

/* The reason in the records of a grant withdrawn because its write-ahead failed. */
#define PERSIST_REASON_NOT_STORED "not-stored"

/* Write-ahead for a grant: the connection (once), then the new region or the new lease's
 * device fds (a lease's fds are stored once, when it is granted, not with every allocation
 * mapped into it). Each step is tried; the first failure is returned, and the caller must then
 * refuse the grant: nothing may reach a client before its fds are stored. On success the
 * connection is held: the reply the caller queues next is written only after the next state
 * write (persist_flush()), and never if that write fails. */
int persist_grant(Persist *p, Client *c, const Region *r, const Lease *new_lease);

/* Writes the state if it changed, then lets the held replies go, or, if the write failed,
 * closes their connections (PERSIST_REASON_NOT_STORED). Runs from the deferred event; a
 * re-exec calls it first, so that no held reply crosses execve(). */
void persist_flush(Persist *p);

/* Observer of lease events (lease.h, wired by manager_new()): a lease's device fds leave the
 * store when it closes the device; a quarantine changes the persisted state. */
void persist_lease_event(Persist *p, const Lease *l, LeaseEvent ev);

/* Drops a connection's socket from the store, and its hold: called for every connection that
 * ends (client_free()), after what it held was let go. Writes no state by itself. */
void persist_forget_conn(Persist *p, Client *c);

/* Writes the state now (no-op without an fd store). */
int persist_save(Persist *p);

/* Marks the state as changed; it is written once, at the end of this loop iteration. */
void persist_dirty(Persist *p);

/* Takes the fds the service manager passed back (all but the listening socket), rebuilds what
 * they describe, reclaims what lost its client, drops the rest. Consumes every fd. */
int persist_restore(Persist *p, int *fds, char **names, size_t n);

/* The same, without writing the state afterwards (a re-exec first restores what the fd store
 * does not hold, then saves). The fds may also include "pin-<id>" (a region's io_uring pin,
 * which only a re-exec can pass). */
void persist_restore_nosave(Persist *p, int *fds, char **names, size_t n);

/* Writes j into a new sealed memfd called name; returns the fd (close-on-exec). */
int persist_json_memfd(json_t *j, const char *name);

/* The state as persist_save() would store it (generation unchanged), in a sealed memfd. */
int persist_state_memfd(Persist *p);
