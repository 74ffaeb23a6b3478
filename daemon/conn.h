/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One client connection: identity fixed at accept, Varlink framing, limits, deadlines, and the
 * DMA memory it owns. A connection handles one request at a time: while a request is being
 * answered (for example while polkit decides) nothing more is read from the socket, and the next
 * request is taken only once the previous reply has been written out. That gives backpressure by
 * construction and bounds what one client can make the daemon queue (house-style.md §5).
 *
 * Each wake-up does the socket work in the order write, dispatch, parse, read, and reads at most
 * once, so one busy client cannot starve the others.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include <systemd/sd-event.h>

#include "hugepage.h"
#include "identity.h"
#include "internal/wire.h"

typedef struct Manager Manager;
typedef struct PolkitQuery PolkitQuery;
typedef struct Lease Lease;
typedef struct OutMsg OutMsg;

/* Time from accept to a complete first request, and from the first byte of any request to its
 * terminating NUL (slowloris). */
#define NOIOMMU_REQUEST_TIMEOUT_USEC (5ULL * 1000000ULL)
/* A connection that holds nothing and sends nothing is closed after this long. */
#define NOIOMMU_IDLE_TIMEOUT_USEC (60ULL * 1000000ULL)
/* A client that does not read its reply for this long is disconnected. */
#define NOIOMMU_WRITE_TIMEOUT_USEC (30ULL * 1000000ULL)
/* A reply that carries fds (memory, a device) must be read by the client within this long of
 * being written, or the connection ends and what it granted is reclaimed with reason
 * "not-received". The kernel tells whether it was read: SIOCOUTQ on a unix stream socket is
 * what the peer has not consumed yet (security.md §10 row 11). */
#define NOIOMMU_RECEIPT_TIMEOUT_USEC (10ULL * 1000000ULL)
/* Allocations one connection may hold at once. */
#define NOIOMMU_REGIONS_PER_CONN_MAX 64

typedef enum ConnState {
        CONN_IDLE,              /* waiting for (or parsing) the next request */
        CONN_RUNNING,           /* a request is being answered asynchronously (polkit) */
        CONN_CLOSING,           /* flushing a final error reply, then closing */
        _CONN_STATE_MAX,
        _CONN_STATE_INVALID = -EINVAL,
} ConnState;

typedef struct Conn {
        Manager *manager;
        struct Conn *next, *prev;       /* in manager->conns */
        struct Conn *uid_next, *uid_prev; /* among the connections of the same uid */

        int fd;
        ClientIdentity id;
        ConnState state;

        sd_event_source *io_source;
        sd_event_source *timer_source;
        sd_event_source *defer_source;  /* re-dispatch after polkit, or the next buffered request */

        WireBuffer in;
        uint64_t in_since;              /* when the first byte of a partial request arrived */
        uint64_t last_activity;
        bool had_request;

        OutMsg *out_head, *out_tail;
        size_t out_bytes;
        uint64_t out_since;             /* last write progress while output is queued */
        uint64_t receipt_since;         /* a reply with fds written, not yet seen read; 0: none */

        json_t *current;                /* the request being answered */
        uint64_t current_since;         /* when it was parsed (debug timing) */
        bool current_oneway;
        bool current_more;              /* the current request asked for a stream ("more") */
        bool monitoring;                /* the current request is a Monitor() stream */
        PolkitQuery *polkit;

        HugeRegion *regions[NOIOMMU_REGIONS_PER_CONN_MAX];     /* memory without a lease */
        size_t n_regions;

        char store_id[NOIOMMU_ID_LEN + 1]; /* "conn-<id>" in the fd store, "" if not stored */

        Lease *pending_lease;           /* reserved while polkit decides an AcquireDevice */
        Lease *leases[8];               /* NOIOMMU_LEASES_PER_CONN_MAX */
        size_t n_leases;
} Conn;

/* Takes ownership of fd (an accepted, non-blocking, close-on-exec socket) on success only. */
int conn_new(Manager *m, int fd, Conn **ret);

/* A connection restored from the fd store, once its memory and leases are attached again: it
 * made requests before the restart, and what it holds now decides its deadline (a connection
 * holding memory or a lease is never idle). Without this the deadline set by conn_new(), for
 * a fresh connection that has sent nothing yet, would cut a quiet lease holder off 5 s after
 * every restart. */
void conn_restored(Conn *c);

/* Frees everything the connection owns; its memory is freed and audited with "reason"
 * ("client-exit" or "shutdown"). Returns NULL. */
Conn *conn_free(Conn *c, const char *reason);

/* Queues a reply to the current request. params is consumed (may be NULL for {}). fds are
 * borrowed: they are duplicated for the send, so the caller keeps its own. */
int conn_reply(Conn *c, json_t *params, const int *fds, size_t n_fds);

/* Queues an error reply. params is consumed (may be NULL). */
int conn_reply_error(Conn *c, const char *error, json_t *params);

/* Queues one more reply of a streaming ("more") request, marked "continues": the request stays
 * current. A client that lets NOIOMMU_MONITOR_BACKLOG_MAX bytes pile up is disconnected. */
#define NOIOMMU_MONITOR_BACKLOG_MAX (1024U * 1024U)
int conn_notify(Conn *c, json_t *params);

/* Replies with ProtocolViolation and closes the connection once that is written. */
void conn_protocol_violation(Conn *c, const char *reason);

/* Called when an asynchronous step of the current request finished: runs its handler again. */
void conn_redispatch(void *userdata);

/* Adopts a region into the connection's list. */
int conn_add_region(Conn *c, HugeRegion *r);
HugeRegion *conn_find_region(Conn *c, const char *id, size_t *ret_index);
void conn_free_region(Conn *c, size_t index, const char *reason);
/* Takes back a region conn_add_region() just adopted, before its addresses reached the client
 * (the grant was refused): freed at once, audited with reason. */
void conn_withdraw_region(Conn *c, HugeRegion *r, const char *reason);

Lease *conn_find_lease(Conn *c, const char *id, size_t *ret_index);
/* Ends lease number index (see lease_end()) and forgets it. Returns lease_end()'s result. */
int conn_end_lease(Conn *c, size_t index, const char *reason);

/* Re-exec (reexec.c). conn_reexec_save() describes what lives only in this process: buffered
 * input, queued output (its fds are passed through keep(), which must keep them open across
 * execve()), and the current request. A request waiting for polkit has its check cancelled and
 * its reservation dropped: it is re-run from the start after the re-exec, as the polkit callback
 * would re-run it (nothing is touched before authorisation). Returns NULL on ENOMEM. */
json_t *conn_reexec_save(Conn *c, int (*keep)(int fd, void *userdata), void *userdata);
/* The old image continues after a failed execve(): re-runs what conn_reexec_save() cancelled. */
void conn_reexec_resume(Conn *c);
/* The new image: applies what conn_reexec_save() described to a restored connection, and takes
 * ownership of the output's fds. */
int conn_reexec_load(Conn *c, json_t *j);
