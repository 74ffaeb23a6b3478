/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * One client connection, the transport only (layer 2, docs/architecture.md): Varlink framing,
 * the reply queue, limits and deadlines, and the SIOCOUTQ receipt of replies carrying fds. It
 * knows nothing of leases, memory or polkit: it calls up only through the ConnOps table its
 * owner (client.c) gives it, as dbus-broker's connection_init_server() takes a DispatchFn.
 *
 * Owns the socket (given by client_new(), on success only), the input buffer, the queued
 * replies and the fds they carry until the sendmsg() that sends them, and its event sources.
 * The identity it logs with is the Client's, borrowed. Trusts nothing the peer sends: requests
 * are size-limited and NUL-framed, checked as JSON by json-util.c, and no fds are accepted
 * (received with no room for them; MSG_CTRUNC is a protocol violation).
 *
 * A connection handles one request at a time: while a request is being answered (for example
 * while polkit decides) nothing more is read from the socket, and the next request is taken
 * only once the previous reply has been written out. That gives backpressure by construction
 * and bounds what one client can make the daemon queue (house-style.md §5).
 *
 * Each wake-up does the socket work in the order write, dispatch, parse, read, and reads at most
 * once, so one busy client cannot starve the others.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include <systemd/sd-event.h>

#include "identity.h"
#include "internal/macro.h"
#include "internal/wire.h"
#include "region.h"

typedef struct OutMsg OutMsg;
typedef struct Conn Conn;

/* How the transport calls its owner. Every callback gets the owner's userdata. */
typedef struct ConnOps {
        /* Runs the current request (c->current): for a new one, and again when the owner called
         * conn_redispatch() (an asynchronous step finished). Returns 0 or negative errno (the
         * request is then answered with InternalError). */
        int (*dispatch)(Conn *c, void *userdata);
        /* The current request is answered (or abandoned): release what belonged to it. */
        void (*request_done)(Conn *c, void *userdata);
        /* Whether the owner holds something for the client (memory, a device): such a
         * connection is never closed for being idle. */
        bool (*holds_resources)(Conn *c, void *userdata);
        /* The connection must end (hang-up, error, a deadline): the owner tears down what it
         * holds, in its order, and then calls conn_free(), now or later (a burst of hang-ups is
         * torn down in batches, manager.c): until then the connection is inert, its event
         * sources off. Called once. reason: "client-exit" or "not-received". */
        void (*closed)(Conn *c, const char *reason, void *userdata);
} ConnOps;

/* A connection's first request is served ahead of the events of established connections
 * (conn.c, conn_established()): sd-event dispatches sources of one priority oldest-pending
 * first, so without this a client connecting during a burst of 10,000 hang-ups or requests
 * waits for all of them. The listening socket has the same priority, rate-limited (manager.c),
 * which bounds what new connections can take from established ones. */
#define NOIOMMU_PRIORITY_NEW (SD_EVENT_PRIORITY_NORMAL - 1)

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

typedef enum ConnState {
        CONN_IDLE,              /* waiting for (or parsing) the next request */
        CONN_RUNNING,           /* a request is being answered asynchronously (polkit) */
        CONN_CLOSING,           /* flushing a final error reply, then closing */
        _CONN_STATE_MAX,
        _CONN_STATE_INVALID = -EINVAL,
} ConnState;

struct Conn {
        sd_event *event;
        const ConnOps *ops;
        void *userdata;
        const ClientIdentity *id;       /* the owner's, for logs and records; never owned here */

        int fd;
        ConnState state;

        sd_event_source *io_source;
        sd_event_source *timer_source;
        uint64_t deadline;              /* CLOCK_MONOTONIC µs of the earliest timeout, 0: none */
        uint64_t armed;                 /* what timer_source is armed for, 0: off; <= deadline */
        sd_event_source *defer_source;  /* re-dispatch after polkit, or the next buffered request */

        bool closed;                    /* ConnOps.closed was called: the owner frees it soon */

        WireBuffer in;
        bool maybe_readable;            /* the socket may hold unread bytes (EPOLLET, conn.c) */
        uint64_t in_since;              /* when the first byte of a partial request arrived */
        uint64_t last_activity;
        bool had_request;

        OutMsg *out_head, *out_tail;
        size_t out_bytes;
        unsigned held;                  /* conn_hold() count: nothing is written while > 0 */
        uint64_t out_since;             /* last write progress while output is queued */
        uint64_t receipt_since;         /* a reply with fds written, not yet seen read; 0: none */

        json_t *current;                /* the request being answered */
        uint64_t current_since;         /* when it was parsed (debug timing) */
        bool current_oneway;
        bool current_more;              /* the current request asked for a stream ("more") */
        bool monitoring;                /* the current request is a Monitor() stream */
};

/* Sets up the transport for fd (an accepted, non-blocking, close-on-exec socket), which it owns
 * on success only. id is borrowed and must outlive the connection. */
int conn_new(sd_event *event, int fd, const ClientIdentity *id, const ConnOps *ops, void *userdata,
             Conn **ret);

/* A connection restored from the fd store, once its memory and leases are attached again: it
 * made requests before the restart, and what it holds now decides its deadline (a connection
 * holding memory or a lease is never idle). Without this the deadline set by conn_new(), for
 * a fresh connection that has sent nothing yet, would cut a quiet lease holder off 5 s after
 * every restart. */
void conn_restored(Conn *c);

/* Closes the socket, drops queued output and the current request. Returns NULL. */
Conn *conn_free(Conn *c);
DEFINE_TRIVIAL_CLEANUP_FUNC(Conn *, conn_free);

/* Queues a reply to the current request. params is consumed (may be NULL for {}). fds are
 * borrowed: they are duplicated for the send, so the caller keeps its own. */
int conn_reply(Conn *c, json_t *params, const int *fds, size_t n_fds);

/* Queues an error reply. params is consumed (may be NULL). */
int conn_reply_error(Conn *c, const char *error, json_t *params);

/* Queues one more reply of a streaming ("more") request, marked "continues": the request stays
 * current. A client that lets NOIOMMU_MONITOR_BACKLOG_MAX bytes pile up is disconnected. */
#define NOIOMMU_MONITOR_BACKLOG_MAX (1024U * 1024U)
int conn_notify(Conn *c, json_t *params);

/* Holds the queued output: while held, nothing is written to the socket (and no EPOLLOUT is
 * asked for), so a reply carrying fds waits until its owner says it may go (persist.c: the
 * write-ahead state is in the fd store). Holds count; conn_unhold() of the last one schedules
 * the write for this loop iteration. Nothing is read meanwhile either, since a connection with
 * queued output takes no new request. */
void conn_hold(Conn *c);
void conn_unhold(Conn *c);

/* Replies with ProtocolViolation and closes the connection once that is written. */
void conn_protocol_violation(Conn *c, const char *reason);

/* Called when an asynchronous step of the current request finished: runs its handler again. */
void conn_redispatch(void *userdata);

/* Re-exec (reexec.c). conn_reexec_save() describes what lives only in this process: buffered
 * input, queued output (its fds are passed through keep(), which must keep them open across
 * execve()), and the current request (client_reexec_save() first cancels a polkit check, so
 * that the request is re-run from the start after the re-exec). Returns NULL on ENOMEM. */
json_t *conn_reexec_save(Conn *c, int (*keep)(int fd, void *userdata), void *userdata);
/* The old image continues after a failed execve(): re-runs what conn_reexec_save() cancelled. */
void conn_reexec_resume(Conn *c);
/* The new image: applies what conn_reexec_save() described to a restored connection, and takes
 * ownership of the output's fds. */
int conn_reexec_load(Conn *c, json_t *j);
