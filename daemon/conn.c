/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See conn.h: the transport (layer 2). The only calls up are through c->ops (ConnOps).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "record.h"
#include "conn.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "noiommu/protocol.h"
#include "polkit.h"                     /* NOIOMMU_POLKIT_INTERACTIVE_TIMEOUT_USEC only */

struct OutMsg {
        OutMsg *next;
        size_t size;
        size_t off;
        int fds[NOIOMMU_FDS_PER_REPLY_MAX];
        size_t n_fds;
        bool close_after;               /* the connection ends once this is written */
        char data[];
};

static int conn_process(Conn *c);
static void conn_abort(Conn *c, int error);

/* The connection must end: the owner tears down what it holds, then frees the transport, at
 * once or in a later batch (manager.c). Until then nothing of it runs: its sources are off
 * (the io source's epoll_ctl(DEL) happens here rather than in conn_free()). */
static void conn_close(Conn *c, const char *reason) {
        if (c->closed)
                return;
        c->closed = true;
        (void) sd_event_source_set_enabled(c->io_source, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->timer_source, SD_EVENT_OFF);
        (void) sd_event_source_set_enabled(c->defer_source, SD_EVENT_OFF);
        c->ops->closed(c, reason, c->userdata);
}

static uint64_t now(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static uint64_t conn_now(Conn *c) {
        uint64_t t;

        if (sd_event_now(c->event, CLOCK_MONOTONIC, &t) < 0)
                return now();
        return t;
}

static OutMsg *out_msg_free(OutMsg *o) {
        if (!o)
                return NULL;
        close_many(o->fds, o->n_fds);
        free(o);
        return NULL;
}

static void conn_update_timer(Conn *c) {
        uint64_t deadline = 0;

        if (c->closed)
                return;

        if (c->state == CONN_CLOSING)
                deadline = c->out_since + NOIOMMU_REQUEST_TIMEOUT_USEC;
        else if (c->out_head)
                deadline = c->out_since + NOIOMMU_WRITE_TIMEOUT_USEC;
        else if (c->state == CONN_RUNNING)
                /* polkit has its own timeout; this is only a backstop so that a check that
                 * never completes (it cannot, but if it did) does not hang the client forever */
                deadline = c->monitoring ? 0 :
                           c->current_since + NOIOMMU_POLKIT_INTERACTIVE_TIMEOUT_USEC + NOIOMMU_IDLE_TIMEOUT_USEC;
        else if (c->in.n > 0)
                deadline = c->in_since + NOIOMMU_REQUEST_TIMEOUT_USEC;
        else if (!c->ops->holds_resources(c, c->userdata))
                /* a connection holding memory or a device is never idle: the lease lives as long
                 * as the connection, however quiet the client is */
                deadline = c->last_activity +
                           (c->had_request ? NOIOMMU_IDLE_TIMEOUT_USEC : NOIOMMU_REQUEST_TIMEOUT_USEC);

        if (c->receipt_since != 0 && c->state != CONN_CLOSING) {
                uint64_t d = c->receipt_since + NOIOMMU_RECEIPT_TIMEOUT_USEC;

                if (deadline == 0 || d < deadline)
                        deadline = d;
        }

        /* Lazily: a deadline later than the one the timer is armed for waits for that one to
         * fire, and on_timer() moves on to it. Every move of the earliest deadline costs
         * sd-event a timerfd_settime() (and more); a request moves its connection's deadline
         * four or five times (request, polkit, reply, idle), almost always later. */
        c->deadline = deadline;
        if (deadline == 0 || (c->armed != 0 && c->armed <= deadline))
                return;
        c->armed = deadline;
        (void) sd_event_source_set_time(c->timer_source, deadline);
        (void) sd_event_source_set_enabled(c->timer_source, SD_EVENT_ONESHOT);
}

/* Connections are watched edge-triggered (EPOLLET). Level-triggered, every socket that is
 * ready and not yet handled is reported again by every epoll_wait(), and sd-event dispatches
 * one source per loop iteration: n connections hanging up (or sending their request) at once
 * cost n iterations of O(n) each. perf showed 80% of the daemon's time in epoll_wait()
 * (ep_send_events -> sock_poll) for a burst of 4,000 closes (1.1 s; 0.03 s for 1,000).
 * Edge-triggered, each readiness is reported once, so an edge must never be lost:
 *   - new data, a hang-up, or write space always fire a new edge (the socket's wake-up runs
 *     ep_poll_callback()); EPOLLHUP and EPOLLERR are reported even when not asked for;
 *   - changing the events is an EPOLL_CTL_MOD, which polls the socket again and reports it if
 *     it is ready (ep_modify()), so data that arrived while EPOLLIN was off is seen once it is
 *     back on;
 *   - what a read may have left in the socket (conn_read() reads once, for fairness) is not
 *     announced again: conn->maybe_readable remembers it and conn_process() reads again from
 *     the defer source on the next iteration.
 * sd-event never skips an EPOLLET update (sd_event_source_set_io_events(): "edge-triggered
 * updates are never skipped, so we can reset edges"), so it is called only when the events
 * change: an unchanged EPOLLIN costs no epoll_ctl(). */
static void conn_update_io(Conn *c) {
        uint32_t events = EPOLLET, current;

        if (c->closed)
                return;

        if (c->out_head && c->held == 0)
                events |= EPOLLOUT;
        /* Read only when idle and nothing is waiting to be written: one request at a time. */
        if (c->state == CONN_IDLE && !c->out_head)
                events |= EPOLLIN;
        if (sd_event_source_get_io_events(c->io_source, &current) < 0 || current != events)
                (void) sd_event_source_set_io_events(c->io_source, events);
        conn_update_timer(c);
}

static void conn_schedule(Conn *c) {
        if (c->closed)
                return;
        (void) sd_event_source_set_enabled(c->defer_source, SD_EVENT_ONESHOT);
}

void conn_redispatch(void *userdata) {
        conn_schedule(userdata);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Conn *c = userdata;
        int r;

        /* epoll reports a hang-up even while we are not asking for EPOLLIN (a request is
         * pending in polkit): the client is gone, so whatever it asked for is moot. Freeing
         * here cancels a pending polkit check and releases its memory at once, and keeps a
         * level-triggered HUP from spinning the loop. */
        if (revents & (EPOLLHUP | EPOLLERR)) {
                conn_close(c, "client-exit");
                return 0;
        }

        if (revents & EPOLLIN)
                c->maybe_readable = true;
        r = conn_process(c);
        if (r < 0)
                conn_close(c, "client-exit");
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata) {
        Conn *c = userdata;
        int r;

        r = conn_process(c);
        if (r < 0)
                conn_close(c, "client-exit");
        return 0;
}

/* Whether the client has read everything written to it, fds included. SIOCOUTQ on a unix
 * stream socket counts the memory of messages the peer has not consumed yet (unix_outq_len():
 * the sender's sk_wmem_alloc, released as the reader consumes each skb), so 0 means every reply
 * and the fds riding on it were received. While the client has unread output, a new request can
 * only come from a client that writes without reading. */
static void conn_check_receipt(Conn *c) {
        int outq = 0;

        if (c->receipt_since == 0)
                return;
        if (ioctl(c->fd, SIOCOUTQ, &outq) < 0 || outq == 0)
                c->receipt_since = 0;
}

/* The first request is taken: from now on the connection's events wait their turn with every
 * other established connection's (NOIOMMU_PRIORITY_NEW). */
static void conn_established(Conn *c) {
        if (c->had_request)
                return;
        c->had_request = true;
        (void) sd_event_source_set_priority(c->io_source, SD_EVENT_PRIORITY_NORMAL);
        (void) sd_event_source_set_priority(c->defer_source, SD_EVENT_PRIORITY_NORMAL);
}

void conn_restored(Conn *c) {
        conn_established(c);
        c->last_activity = conn_now(c);
        conn_update_timer(c);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Conn *c = userdata;

        /* Armed for an earlier deadline than the one that holds now (conn_update_timer()). */
        c->armed = 0;
        if (c->deadline == 0)
                return 0;
        if (usec < c->deadline) {
                c->armed = c->deadline;
                (void) sd_event_source_set_time(c->timer_source, c->deadline);
                (void) sd_event_source_set_enabled(c->timer_source, SD_EVENT_ONESHOT);
                return 0;
        }

        if (c->receipt_since != 0 && c->state != CONN_CLOSING &&
            usec >= c->receipt_since + NOIOMMU_RECEIPT_TIMEOUT_USEC) {
                conn_check_receipt(c);
                if (c->receipt_since != 0) {
                        /* The reply holding the fds still sits in the socket: the client does
                         * not read, or cannot. What it was granted goes back, quiesced first. */
                        record_protocol_violation(c->id, "a reply carrying file descriptors was not read in time");
                        conn_close(c, "not-received");
                        return 0;
                }
                conn_update_timer(c);           /* fires at once if another deadline passed */
                return 0;
        }

        log_debug("Closing connection of UID %u (PID %i): %s.", (unsigned) c->id->uid, (int) c->id->pid,
                  c->state == CONN_CLOSING ? "final reply not read" :
                  c->out_head ? "reply not read" :
                  c->in.n > 0 ? "request not completed in time" : "idle");
        conn_close(c, "client-exit");
        return 0;
}

int conn_new(sd_event *event, int fd, const ClientIdentity *id, const ConnOps *ops, void *userdata,
             Conn **ret) {
        _cleanup_(conn_freep) Conn *c = NULL;
        int r;

        assert(event);
        assert(fd >= 0);
        assert(id);
        assert(ops);
        assert(ret);

        c = new0(Conn, 1);
        if (!c)
                return -ENOMEM;
        *c = (Conn) {
                .event = event,
                .ops = ops,
                .userdata = userdata,
                .id = id,
                .fd = -EBADF,
                .state = CONN_IDLE,
        };
        wire_buffer_init(&c->in, NOIOMMU_REQUEST_SIZE_MAX);
        c->last_activity = conn_now(c);

        r = sd_event_add_io(event, &c->io_source, fd, EPOLLIN | EPOLLET, on_io, c);
        if (r < 0)
                return r;
        r = sd_event_add_time(event, &c->timer_source, CLOCK_MONOTONIC, 0, 0, on_timer, c);
        if (r < 0)
                return r;
        r = sd_event_add_defer(event, &c->defer_source, on_defer, c);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(c->defer_source, SD_EVENT_OFF);
        if (r < 0)
                return r;
        /* Until its first request (conn_established()). */
        r = sd_event_source_set_priority(c->io_source, NOIOMMU_PRIORITY_NEW);
        if (r >= 0)
                r = sd_event_source_set_priority(c->defer_source, NOIOMMU_PRIORITY_NEW);
        if (r < 0)
                return r;

        c->fd = fd;                     /* ours only on success; the caller then forgets it */
        conn_update_io(c);
        *ret = TAKE_PTR(c);
        return 0;
}

Conn *conn_free(Conn *c) {
        if (!c)
                return NULL;

        c->io_source = sd_event_source_disable_unref(c->io_source);
        c->timer_source = sd_event_source_disable_unref(c->timer_source);
        c->defer_source = sd_event_source_disable_unref(c->defer_source);
        while (c->out_head) {
                OutMsg *o = c->out_head;
                c->out_head = o->next;
                out_msg_free(o);
        }
        json_decref(c->current);
        wire_buffer_done(&c->in);
        c->fd = safe_close(c->fd);
        free(c);
        return NULL;
}

/* Writes queued output. Returns 0 when everything is written or the socket is full, 1 when a
 * final message was written and the connection should end, negative errno on a dead peer. */
static int conn_write(Conn *c) {
        while (c->out_head && c->held == 0) {
                OutMsg *o = c->out_head;
                ssize_t n;

                n = wire_send(c->fd, o->data + o->off, o->size - o->off,
                              o->off == 0 ? o->fds : NULL, o->off == 0 ? o->n_fds : 0);
                if (n == -EAGAIN || n == -EINTR)
                        return 0;
                if (n < 0)
                        return (int) n;             /* EPIPE, ECONNRESET, ETOOMANYREFS, ... */

                c->out_since = conn_now(c);
                if (o->n_fds > 0)
                        c->receipt_since = c->out_since;
                /* The kernel duplicated the fds into the message on the first sendmsg();
                 * our copies can go now. */
                close_many(o->fds, o->n_fds);
                o->n_fds = 0;
                o->off += (size_t) n;
                c->out_bytes -= (size_t) n;
                if (o->off < o->size)
                        continue;

                c->out_head = o->next;
                if (!c->out_head)
                        c->out_tail = NULL;
                if (o->close_after) {
                        out_msg_free(o);
                        return 1;
                }
                out_msg_free(o);
        }
        return 0;
}

void conn_hold(Conn *c) {
        c->held++;
}

void conn_unhold(Conn *c) {
        int r;

        assert(c->held > 0);
        if (--c->held > 0)
                return;
        /* Written here rather than on a wake-up of its own: that would cost a loop iteration
         * and a read that finds nothing. The caller may be going through many connections, so
         * none is closed here: a dead peer is found again by conn_process() on the next
         * iteration, a final message written ends the connection through the hang-up
         * (conn_abort()'s way), and a request the client already sent is taken then too. */
        r = conn_write(c);
        if (r > 0)
                (void) shutdown(c->fd, SHUT_RDWR);
        if (r != 0 || (c->state == CONN_IDLE && !c->out_head && wire_buffer_message(&c->in) >= 0))
                conn_schedule(c);
        conn_update_io(c);
}

static int conn_queue(Conn *c, json_t *msg, const int *fds, size_t n_fds, bool close_after) {
        _cleanup_free_ char *s = NULL;
        OutMsg *o;
        size_t n;

        s = json_dumps(msg, JSON_COMPACT);
        json_decref(msg);
        if (!s)
                return -ENOMEM;
        n = strlen(s) + 1;                      /* the NUL terminates the message */
        if (n > NOIOMMU_REPLY_SIZE_MAX)
                return -E2BIG;

        o = malloc(sizeof(OutMsg) + n);
        if (!o)
                return -ENOMEM;
        *o = (OutMsg) { .size = n, .close_after = close_after };
        memcpy(o->data, s, n);
        for (size_t i = 0; i < n_fds; i++) {
                o->fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
                if (o->fds[i] < 0) {
                        int e = negative_errno();
                        close_many(o->fds, i);
                        free(o);
                        return e;
                }
                o->n_fds = i + 1;
        }

        if (!c->out_head)
                c->out_since = conn_now(c);
        if (c->out_tail)
                c->out_tail->next = o;
        else
                c->out_head = o;
        c->out_tail = o;
        c->out_bytes += n;
        return 0;
}

/* The current request is answered: forget it and let the next one in. */
static void conn_request_done(Conn *c) {
        if (c->current)
                log_debug("%s answered in %llu us.",
                          json_string_value(json_object_get(c->current, "method")) ?: "(none)",
                          (unsigned long long) (now() - c->current_since));
        json_decref(c->current);
        c->current = NULL;
        c->current_oneway = false;
        c->ops->request_done(c, c->userdata);
        if (c->state == CONN_RUNNING)
                c->state = CONN_IDLE;
        c->last_activity = conn_now(c);
}

int conn_notify(Conn *c, json_t *params) {
        json_t *msg;
        int r;

        if (c->state == CONN_CLOSING) {
                json_decref(params);
                return 0;
        }
        if (c->out_bytes > NOIOMMU_MONITOR_BACKLOG_MAX) {
                json_decref(params);
                log_info("Monitor client UID %u (PID %i) does not read its events, disconnecting.",
                         (unsigned) c->id->uid, (int) c->id->pid);
                (void) shutdown(c->fd, SHUT_RDWR);
                return 0;
        }
        msg = json_pack("{s:o, s:b}", "parameters", params ?: json_object(), "continues", true);
        r = msg ? conn_queue(c, msg, NULL, 0, false) : -ENOMEM;
        if (r < 0) {
                conn_abort(c, r);
                return 0;
        }
        conn_schedule(c);                       /* write it out on the next iteration */
        return 0;
}

/* A reply could not even be queued (out of memory or fds): the client would wait forever for
 * it while holding whatever the request granted. End the connection instead: the hang-up
 * path then releases everything in the proper order. */
static void conn_abort(Conn *c, int error) {
        log_error_errno(error, "Cannot queue a reply to UID %u (PID %i), closing the connection: %m",
                        (unsigned) c->id->uid, (int) c->id->pid);
        (void) shutdown(c->fd, SHUT_RDWR);
}

int conn_reply(Conn *c, json_t *params, const int *fds, size_t n_fds) {
        json_t *msg;
        int r;

        assert(c->current);

        if (c->current_oneway) {
                json_decref(params);
                conn_request_done(c);
                return 0;
        }

        msg = json_pack("{s:o}", "parameters", params ?: json_object());
        r = msg ? conn_queue(c, msg, fds, n_fds, false) : -ENOMEM;
        conn_request_done(c);
        if (r < 0)
                conn_abort(c, r);
        return 0;
}

int conn_reply_error(Conn *c, const char *error, json_t *params) {
        json_t *msg;
        int r;

        if (c->current_oneway) {
                json_decref(params);
                conn_request_done(c);
                return 0;
        }

        msg = json_pack("{s:s, s:o}", "error", error, "parameters", params ?: json_object());
        r = msg ? conn_queue(c, msg, NULL, 0, false) : -ENOMEM;
        conn_request_done(c);
        if (r < 0)
                conn_abort(c, r);
        return 0;
}

void conn_protocol_violation(Conn *c, const char *reason) {
        json_t *msg;

        record_protocol_violation(c->id, reason);

        c->ops->request_done(c, c->userdata);
        json_decref(c->current);
        c->current = NULL;
        c->state = CONN_CLOSING;
        /* Never try to resync: drop whatever else the client sent. */
        c->in.n = 0;

        msg = json_pack("{s:s, s:{s:s}}", "error", NOIOMMU_ERROR_PROTOCOL_VIOLATION,
                        "parameters", "reason", reason);
        if (!msg || conn_queue(c, msg, NULL, 0, /* close_after= */ true) < 0) {
                /* Could not even queue the error: close at the next wake-up. */
                if (!c->out_head) {
                        (void) shutdown(c->fd, SHUT_RDWR);
                }
        }
        conn_schedule(c);
}

/* Reads once. Returns 1 if bytes arrived, 0 if nothing to read, negative errno if the
 * connection must end (EOF, error, protocol violation already handled). */
static int conn_read(Conn *c) {
        size_t space;
        char *p;
        ssize_t n;

        p = wire_buffer_space(&c->in, 4096, &space);
        if (!p) {
                if (space == 0 && errno != ENOMEM) {
                        conn_protocol_violation(c, "request too large");
                        return 0;
                }
                return -ENOMEM;
        }

        n = wire_recv_nofds(c->fd, p, space);
        if (n == -EAGAIN) {
                c->maybe_readable = false;
                return 0;
        }
        if (n == -EINTR)
                return 0;
        if (n == -EBADMSG) {
                /* The kernel already dropped the fds (we offered no room for them). */
                conn_protocol_violation(c, "file descriptors sent to the daemon");
                return 0;
        }
        if (n < 0)
                return (int) n;
        if (n == 0)
                return -ECONNRESET;             /* EOF: the client is gone */

        /* A unix stream read returns less than asked only when the socket is empty
         * (unix_stream_read_generic() with MSG_DONTWAIT), or at a message carrying fds (a
         * protocol violation, handled above) or, with SO_PASSCRED set, at a change of writer
         * (the daemon never sets it): anything else may have left more. */
        c->maybe_readable = (size_t) n == space;
        if (c->in.n == 0)
                c->in_since = conn_now(c);
        c->in.n += (size_t) n;
        c->last_activity = conn_now(c);
        return 1;
}

/* Runs the current request through the owner's handler. */
static void conn_dispatch(Conn *c) {
        int r;

        r = c->ops->dispatch(c, c->userdata);
        if (r < 0) {
                log_error_errno(r, "Failed to handle request of UID %u (PID %i): %m",
                                (unsigned) c->id->uid, (int) c->id->pid);
                if (c->current)
                        (void) conn_reply_error(c, NOIOMMU_ERROR_INTERNAL, NULL);
        }
}

/* Takes one complete request off the input buffer and dispatches it. Returns 1 if a request
 * was dispatched, 0 if none is complete. */
static int conn_parse_and_dispatch(Conn *c) {
        json_t *msg = NULL;
        ssize_t len;
        int r;

        len = wire_buffer_message(&c->in);
        if (len < 0)
                return 0;

        r = json_parse_message(c->in.data, (size_t) len, &msg);
        wire_buffer_consume(&c->in, (size_t) len + 1);
        if (c->in.n > 0)
                c->in_since = conn_now(c);
        else
                /* Nothing more buffered: give the buffer back. An idle connection then costs no
                 * input buffer at all (conn_read() allocates one again for the next request);
                 * 10,000 idle connections would otherwise keep 40 MiB (security.md §4.3). */
                wire_buffer_done(&c->in);
        if (r < 0) {
                conn_protocol_violation(c, "malformed message");
                return 1;
        }

        conn_check_receipt(c);
        conn_established(c);
        c->current = msg;
        c->current_since = now();
        c->state = CONN_RUNNING;
        conn_dispatch(c);
        return 1;
}

static int conn_process(Conn *c) {
        int r;

        /* 1. write */
        r = conn_write(c);
        if (r != 0)
                return r < 0 ? r : -ECONNRESET;
        if (c->state == CONN_CLOSING) {
                conn_update_io(c);
                return 0;
        }

        /* 2. dispatch again: an asynchronous step of the current request has finished */
        if (c->state == CONN_RUNNING) {
                /* (the owner's handler returns at once while its asynchronous step is pending) */
                if (c->current && !c->monitoring)
                        conn_dispatch(c);
        } else if (!c->out_head) {
                /* 3. parse a buffered request; 4. read once if there is none */
                r = conn_parse_and_dispatch(c);
                if (r == 0) {
                        r = conn_read(c);
                        if (r < 0)
                                return r;
                        if (r > 0 && c->state == CONN_IDLE)
                                (void) conn_parse_and_dispatch(c);
                }
        }

        /* Write what the dispatch produced right away; most replies fit the socket buffer. */
        r = conn_write(c);
        if (r != 0)
                return r < 0 ? r : -ECONNRESET;

        /* More complete requests buffered and nothing pending: continue on the next loop
         * iteration, after other connections had their turn. */
        if (c->state == CONN_IDLE && !c->out_head && wire_buffer_message(&c->in) >= 0)
                conn_schedule(c);
        if (c->state == CONN_CLOSING)
                conn_schedule(c);
        /* Edge-triggered: bytes possibly left in the socket are not announced again. */
        if (c->state == CONN_IDLE && !c->out_head && c->maybe_readable)
                conn_schedule(c);

        conn_update_io(c);
        return 0;
}

static json_t *hex_json(const char *p, size_t n) {
        static const char digits[] = "0123456789abcdef";
        _cleanup_free_ char *h = malloc(n * 2 + 1);

        if (!h)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                h[2 * i] = digits[(uint8_t) p[i] >> 4];
                h[2 * i + 1] = digits[(uint8_t) p[i] & 15];
        }
        h[2 * n] = 0;
        return json_string(h);
}

static int unhex(const char *h, char *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int hi = h[2 * i], lo = h[2 * i + 1];

                hi = hi >= 'a' && hi <= 'f' ? hi - 'a' + 10 : hi >= '0' && hi <= '9' ? hi - '0' : -1;
                lo = lo >= 'a' && lo <= 'f' ? lo - 'a' + 10 : lo >= '0' && lo <= '9' ? lo - '0' : -1;
                if (hi < 0 || lo < 0)
                        return -EBADMSG;
                p[i] = (char) (hi << 4 | lo);
        }
        return 0;
}

json_t *conn_reexec_save(Conn *c, int (*keep)(int fd, void *userdata), void *userdata) {
        json_t *out = json_array(), *j;

        if (!out)
                return NULL;
        for (OutMsg *o = c->out_head; o; o = o->next) {
                json_t *fds = json_array();

                for (size_t i = 0; fds && i < o->n_fds; i++)
                        if (keep(o->fds[i], userdata) < 0 ||
                            json_array_append_new(fds, json_integer(o->fds[i])) < 0) {
                                json_decref(fds);
                                fds = NULL;
                        }
                if (!fds || json_array_append_new(out, json_pack("{s:o, s:o, s:b}",
                                "data", hex_json(o->data + o->off, o->size - o->off) ?: json_null(),
                                "fds", fds, "closeAfter", o->close_after)) < 0) {
                        json_decref(out);
                        return NULL;
                }
        }

        j = json_pack("{s:o, s:o, s:O?, s:b, s:b, s:b, s:s, s:b}",
                      "in", hex_json(c->in.data ?: "", c->in.n) ?: json_null(),
                      "out", out,
                      "current", c->current,
                      "oneway", c->current_oneway,
                      "more", c->current_more,
                      "monitoring", c->monitoring,
                      "state", c->state == CONN_RUNNING ? "running" : c->state == CONN_CLOSING ? "closing" : "idle",
                      "receipt", c->receipt_since != 0);
        return j;
}

void conn_reexec_resume(Conn *c) {
        conn_schedule(c);
}

int conn_reexec_load(Conn *c, json_t *j) {
        const char *in = json_string_value(json_object_get(j, "in"));
        const char *state = json_string_value(json_object_get(j, "state")) ?: "idle";
        json_t *o, *current = json_object_get(j, "current");
        size_t i;
        int r;

        json_array_foreach(json_object_get(j, "out"), i, o) {
                const char *data = json_string_value(json_object_get(o, "data"));
                json_t *fds = json_object_get(o, "fds"), *f;
                size_t n = data ? strlen(data) / 2 : 0, k;
                OutMsg *m;

                if (n == 0 || json_array_size(fds) > NOIOMMU_FDS_PER_REPLY_MAX)
                        return -EBADMSG;
                m = malloc(sizeof(OutMsg) + n);
                if (!m)
                        return -ENOMEM;
                *m = (OutMsg) { .size = n, .close_after = json_is_true(json_object_get(o, "closeAfter")) };
                json_array_foreach(fds, k, f) {
                        int fd = (int) json_integer_value(f);

                        /* Close-on-exec again, as every fd of ours is. */
                        if (fd < 3 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
                                break;
                        m->fds[m->n_fds++] = fd;
                }
                if (unhex(data, m->data, n) < 0 || m->n_fds != json_array_size(fds)) {
                        out_msg_free(m);
                        return -EBADMSG;
                }
                if (!c->out_head)
                        c->out_since = conn_now(c);
                if (c->out_tail)
                        c->out_tail->next = m;
                else
                        c->out_head = m;
                c->out_tail = m;
                c->out_bytes += n;
        }

        if (in && *in) {
                size_t n = strlen(in) / 2, space;
                char *p = wire_buffer_space(&c->in, n, &space);

                if (!p || space < n)
                        return -ENOMEM;
                r = unhex(in, p, n);
                if (r < 0)
                        return r;
                c->in.n = n;
                c->in_since = conn_now(c);
        }

        if (json_is_object(current)) {
                c->current = json_incref(current);
                c->current_since = now();
                c->current_oneway = json_is_true(json_object_get(j, "oneway"));
                c->current_more = json_is_true(json_object_get(j, "more"));
                c->monitoring = json_is_true(json_object_get(j, "monitoring"));
                c->state = CONN_RUNNING;
                conn_established(c);
        }
        if (streq(state, "closing"))
                c->state = CONN_CLOSING;
        if (json_is_true(json_object_get(j, "receipt")))
                c->receipt_since = conn_now(c);

        /* Write what is queued, re-run a request that waited for polkit, or parse what was
         * buffered: conn_process() does whichever applies. */
        conn_schedule(c);
        conn_update_io(c);
        return 0;
}
