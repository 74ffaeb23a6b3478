/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The daemon process (layer 5, docs/architecture.md): event loop, the listening socket,
 * connection bookkeeping and limits, and the resources every request shares (the polkit client,
 * the pagemap fd). It owns every Client, the LeaseRegistry, the Quota, Persist and Monitor, and
 * fills in, once in manager_new(), the tables through which lower layers call up:
 * ClientContext (client.c -> dispatch and the manager's lists), LeaseHooks (lease.c -> persist
 * and monitor) and RegionContext (region.c -> persist). It trusts its socket from the service
 * manager ($LISTEN_FDS), its configuration file (root's, validated key by key by settings.c)
 * and what the fd store hands back only after persist.c has checked it.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "internal/macro.h"
#include "client.h"
#include "lease.h"
#include "monitor.h"
#include "persist.h"
#include "pool.h"
#include "quota.h"
#include "region.h"
#include "settings.h"

typedef struct Client Client;
typedef struct Polkit Polkit;
typedef struct Lease Lease;

/* Connections in total and per uid (security.md §7.1). max_completed / per_uid is the number of
 * uids that can together deny service to everyone else. */
#define NOIOMMU_CONNS_MAX 16384
#define NOIOMMU_CONNS_PER_UID_MAX 4096
/* DMA allocations held at once, in total and per uid (over all its connections). Each one is a
 * memfd in PID 1's fd store (FileDescriptorStoreMax=4096 in the unit, shared with connections
 * and device fds), so the total stays well below that. Bytes per uid: "maxMemoryPerUid". */
#define NOIOMMU_REGIONS_MAX 1536
#define NOIOMMU_REGIONS_PER_UID_MAX 256
/* Connections accepted per wake-up of the listening socket, and per interval. The listening
 * socket and new connections' first requests are served ahead of established connections
 * (NOIOMMU_PRIORITY_NEW, conn.h); the budget keeps that from starving them under a connect
 * flood: 64 connections cost ~4.5 ms (accept, identity, first request), so new connections
 * take at most ~75% of the daemon and established ones keep the rest. Once the budget of an
 * interval is spent the listening socket is not watched until the interval ends. */
#define NOIOMMU_ACCEPT_BATCH 64
#define NOIOMMU_ACCEPT_INTERVAL_USEC 6000ULL
/* Out of fds (EMFILE), accepting resumes this long after the first connection closes. */
#define NOIOMMU_ACCEPT_RESUME_USEC 10000ULL
/* Connections torn down per loop iteration after they closed. A hang-up only queues the
 * connection (its sources off, its request cancelled); the teardown (closing the socket and the
 * pidfd, freeing what it held) runs in batches of this many from a defer source, so that
 * another client's request is served between batches instead of after the whole burst. */
#define NOIOMMU_CLOSE_BATCH 32
/* After connections close, the heap is trimmed (malloc_trim()) once this long after the first
 * of them: at most once per period however many close, and never on a close's own path. */
#define NOIOMMU_TRIM_DELAY_USEC (1ULL * 1000000ULL)

typedef struct UidCount UidCount;

typedef struct Manager {
        sd_event *event;
        sd_event_source *listen_source;
        int listen_fd;
        char *listen_path;              /* set when we bound the socket ourselves */
        dev_t listen_dev;               /* ... and the inode we bound: only that one is unlinked */
        ino_t listen_ino;
        char listen_description[256];

        const BackendOps *backend;      /* the outside world (backend.h): main.c's or a test's */
        Polkit *polkit;
        int pagemap_fd;                 /* /proc/self/pagemap, opened with CAP_SYS_ADMIN */
        uint64_t default_hugepage_size;

        Client *clients;
        unsigned n_conns;
        UidCount *uid_counts[256];

        Settings settings;
        ClientContext client_ctx;       /* what every Client needs (manager_new()) */
        LeaseRegistry lease_registry;   /* every lease; persist and monitor observe them (manager_new()) */

        Quota quota;                    /* every Region's charge: memory held, per uid and in total */
        RegionContext region_ctx;       /* what every Region needs (quota, pagemap, persist) */

        bool accept_paused;             /* out of fds: until a connection closes */
        bool accept_limited;            /* budget of this interval spent: until accept_timer */
        sd_event_source *accept_timer;
        sd_event_source *resume_source; /* ends accept_paused (manager_client_removed()) */
        uint64_t accept_window_start;
        unsigned accept_window_n;
        sd_event_source *trim_source;   /* gives freed heap back after connections close */
        sd_event_source *close_source;  /* tears down the closing queue, a batch at a time */
        Client *closing_head, *closing_tail;

        Pool *pool;                     /* "hugepagePool": ready regions, NULL without one */

        Persist persist;                /* the fd store's state and write-ahead */
        Monitor monitor;                /* Monitor() subscribers and kernel uevents */

        uint64_t reload_start_usec;     /* this image was re-executed (reexec.c): when it began */
        unsigned n_reloads;
} Manager;

/* Loads the configuration from config_path (NULL: the default path); every request of every
 * client is run by dispatch (dispatch_current(), given by main.c: the manager owns the
 * clients, dispatch.c and the handlers sit above it). Every privileged operation goes through
 * backend (backend_ops_system in the daemon, a fake in the tests), which must outlive m. */
int manager_new(const char *config_path, const BackendOps *backend, int (*dispatch)(Client *c),
                Manager **ret);
Manager *manager_free(Manager *m);

/* Takes the listening socket from socket activation ($LISTEN_FDS), or binds path. */
int manager_listen(Manager *m, const char *path);

/* Watches m->listen_fd (set by manager_listen() or a re-exec). */
int manager_watch_listen(Manager *m);

int manager_run(Manager *m);

/* Tears down every connection waiting in the closing queue now (before a stop or a re-exec,
 * which must not see them as live). */
void manager_flush_closing(Manager *m);
/* Sets up and fills the hugepage pool the settings ask for (none: m->pool stays NULL). Called
 * by manager_new() and again by reexec.c when an execve() failed after it freed the pool. */
int manager_start_pool(Manager *m);

/* Clients per uid (the accept limits). */
unsigned manager_conns_for_uid(Manager *m, uid_t uid);
/* DMA memory and device leases (reservations included) held by all connections whose
 * client_identity_limit_key() is key: what per-container limits count. */
void manager_usage_for_key(Manager *m, const char *key, uint64_t *ret_bytes, unsigned *ret_leases);

DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);
