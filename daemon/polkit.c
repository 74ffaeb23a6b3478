/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See polkit.h for the pattern. Facts it relies on (security.md §3):
 *   - polkitd accepts a subject with another uid and details only from uid 0, and trusts a root
 *     caller completely: the daemon alone is responsible for the uid it sends, which is always
 *     SO_PEERCRED's, taken at accept.
 *   - start-time is never 0 (0 makes polkitd read it itself, racily).
 *   - "Action ... is not registered" is polkitd's PolicyKit1.Error.Failed for a missing action
 *     file; ServiceUnknown means no polkitd on the bus. Both deny.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record.h"
#include "internal/list.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "internal/strv.h"
#include "internal/time-util.h"
#include "polkit.h"

typedef enum PolkitVerdict {
        POLKIT_PENDING,
        POLKIT_AUTHORIZED,
        POLKIT_DENIED,
        POLKIT_CHALLENGE,
        POLKIT_FAILED,                 /* could not get an answer: reason says why */
        _POLKIT_VERDICT_MAX,
        _POLKIT_VERDICT_INVALID = -EINVAL,
} PolkitVerdict;

typedef struct DenialWindow {
        uid_t uid;
        usec_t begin;                   /* 0: slot unused */
        unsigned n;                     /* "no" answers in this window */
        unsigned refused;               /* checks refused without asking, for the summary */
} DenialWindow;

struct Polkit {
        sd_event *event;
        sd_bus *bus;
        LIST_HEAD(PolkitQuery, pending); /* queries waiting for polkitd */
        unsigned n_pending;
        uint64_t counter;               /* for cancellation ids */
        DenialWindow denials[NOIOMMU_POLKIT_DENIAL_UIDS];
};

struct PolkitQuery {
        Polkit *polkit;
        LIST_FIELDS(PolkitQuery, pending); /* in polkit->pending while verdict is PENDING */
        sd_bus_slot *slot;
        ClientIdentity id;              /* copy; the pidfd is borrowed from the connection */
        char *action;
        char **details;
        bool interactive;
        PolkitVerdict verdict;
        const char *reason;             /* static POLKIT_REASON_* */
        char *error_name;
        char cancel_id[64];
        usec_t sent_usec;
        polkit_done_t done;
        void *userdata;
};

int polkit_new(sd_event *event, Polkit **ret) {
        Polkit *p;

        p = new0(Polkit, 1);
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(event);
        *ret = p;
        return 0;
}

static void pending_unlink(PolkitQuery *q) {
        Polkit *p = q->polkit;

        if (!p || !LIST_IS_LINKED(pending, p->pending, q))
                return;
        LIST_REMOVE(pending, p->pending, q);
        p->n_pending--;
}

Polkit *polkit_free(Polkit *p) {
        if (!p)
                return NULL;
        /* Queries belong to connections, which are freed first; detach any stragglers. */
        LIST_FOREACH(pending, q, p->pending) {
                pending_unlink(q);
                q->polkit = NULL;
                q->slot = sd_bus_slot_unref(q->slot);
        }
        p->bus = sd_bus_flush_close_unref(p->bus);
        sd_event_unref(p->event);
        free(p);
        return NULL;
}

static void query_set_failed(PolkitQuery *q, const char *reason, const char *error_name);

static void fail_pending_on_bus(Polkit *p, sd_bus *bus) {
        LIST_FOREACH(pending, q, p->pending) {
                if (!q->slot || sd_bus_slot_get_bus(q->slot) != bus)
                        continue;
                pending_unlink(q);
                q->slot = sd_bus_slot_unref(q->slot);
                query_set_failed(q, POLKIT_REASON_UNAVAILABLE, SD_BUS_ERROR_DISCONNECTED);
                if (q->done)
                        q->done(q->userdata);
        }
}

static int polkit_get_bus(Polkit *p, sd_bus **ret) {
        _cleanup_(sd_bus_unrefp) sd_bus *bus = NULL;
        int r;

        if (p->bus && sd_bus_is_open(p->bus) > 0) {
                *ret = p->bus;
                return 0;
        }
        /* The bus went away (or was never there). sd-bus would deliver a "disconnected" error
         * to each check in flight, but closing the old connection here would drop those
         * callbacks; fail them ourselves, closed, before a new connection replaces it. */
        if (p->bus)
                fail_pending_on_bus(p, p->bus);
        p->bus = sd_bus_flush_close_unref(p->bus);

        r = sd_bus_open_system(&bus);
        if (r < 0)
                return r;
        r = sd_bus_attach_event(bus, p->event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        p->bus = TAKE_PTR(bus);
        *ret = p->bus;
        return 0;
}

void polkit_connect(Polkit *p) {
        sd_bus *bus;
        int r;

        r = polkit_get_bus(p, &bus);
        if (r < 0)
                log_warning_errno(r, "Cannot connect to the system bus yet, requests that need polkit will be denied until it is reachable: %m");
}

static void query_set_failed(PolkitQuery *q, const char *reason, const char *error_name) {
        q->verdict = POLKIT_FAILED;
        q->reason = reason;
        free(q->error_name);
        q->error_name = error_name ? strdup(error_name) : NULL;
}

/* The denial reason for an error reply to CheckAuthorization. The bus's own errors have names.
 * polkitd's do not say more than org.freedesktop.PolicyKit1.Error.Failed (or a GLib error
 * quark), so the cause is read from the message, and only in the exact shapes polkit writes
 * them, each naming this query's action or pid (strings of polkitd 122, Debian 12):
 *   "Action %s is not registered"            polkitd, no .policy file for the action;
 *   "process with PID %d has been replaced"  libpolkit-gobject, the pid's start-time differs;
 *   "... /proc/%d/status ..."                GLib's "Failed to open file" while polkit reads
 *                                            the subject's owner: the process is gone.
 * Anything else is a plain error. Every reason denies; the reason only tells the client and the
 * audit record why. */
static const char *check_error_reason(const PolkitQuery *q, const sd_bus_error *e) {
        char needle[256];               /* action ids are our io.noiommud.* constants */
        const char *msg = e->message ?: "";

        if (sd_bus_error_has_names(e, SD_BUS_ERROR_SERVICE_UNKNOWN,
                                   SD_BUS_ERROR_NAME_HAS_NO_OWNER,
                                   SD_BUS_ERROR_NO_REPLY,
                                   SD_BUS_ERROR_TIMEOUT,
                                   SD_BUS_ERROR_DISCONNECTED,
                                   SD_BUS_ERROR_NO_SERVER))
                return POLKIT_REASON_UNAVAILABLE;

        (void) snprintf(needle, sizeof(needle), "Action %s is not registered", q->action);
        if (strstr(msg, needle))
                return POLKIT_REASON_NOT_REGISTERED;

        (void) snprintf(needle, sizeof(needle), "PID %u has been replaced", (unsigned) q->id.pid);
        if (strstr(msg, needle))
                return POLKIT_REASON_SUBJECT_GONE;
        (void) snprintf(needle, sizeof(needle), "/proc/%u/", (unsigned) q->id.pid);
        if (strstr(msg, needle))
                return POLKIT_REASON_SUBJECT_GONE;

        return POLKIT_REASON_ERROR;
}

static int on_check_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        PolkitQuery *q = userdata;
        const sd_bus_error *e;
        int authorized = 0, challenge = 0, r;

        pending_unlink(q);
        q->slot = sd_bus_slot_unref(q->slot);
        log_debug("polkit answered %s in %llu us.", q->action, (unsigned long long) (now_usec(CLOCK_MONOTONIC) - q->sent_usec));

        e = sd_bus_message_get_error(reply);
        if (e) {
                query_set_failed(q, check_error_reason(q, e), e->name);
                log_debug("polkit CheckAuthorization(%s) failed: %s: %s", q->action, e->name, e->message ?: "");
        } else {
                r = sd_bus_message_enter_container(reply, 'r', "bba{ss}");
                if (r >= 0)
                        r = sd_bus_message_read(reply, "bb", &authorized, &challenge);
                if (r < 0)
                        query_set_failed(q, POLKIT_REASON_ERROR, "reply-parse");
                else if (authorized)
                        q->verdict = POLKIT_AUTHORIZED;
                else if (challenge)
                        q->verdict = POLKIT_CHALLENGE;
                else {
                        q->verdict = POLKIT_DENIED;
                        q->reason = POLKIT_REASON_DENIED;
                }
        }

        if (q->done)
                q->done(q->userdata);
        return 0;
}

static int append_identity_details(sd_bus_message *m, const ClientIdentity *id) {
        char cg[4 * CLIENT_CGROUP_MAX + 1], owner[16];
        int r = 0;

        if (id->container_id[0] && id->container_engine) {
                r = sd_bus_message_append(m, "{ss}", "container_id", id->container_id);
                if (r >= 0)
                        r = sd_bus_message_append(m, "{ss}", "container_engine", id->container_engine);
        }
        if (r >= 0 && id->unit[0])
                r = sd_bus_message_append(m, "{ss}", "unit", id->unit);   /* a unit name: safe chars */
        if (r >= 0 && id->cgroup[0]) {
                cgroup_escape(id->cgroup, cg, sizeof(cg));
                r = sd_bus_message_append(m, "{ss}", "cgroup", cg);
        }
        if (r >= 0 && id->userns_owner != (uid_t) -1) {
                (void) snprintf(owner, sizeof(owner), "%u", (unsigned) id->userns_owner);
                r = sd_bus_message_append(m, "{ss}", "userns_owner", owner);
        }
        return r;
}

static int query_send(Polkit *p, PolkitQuery *q) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *m = NULL;
        sd_bus *bus;
        bool with_pidfd;
        int r;

        r = polkit_get_bus(p, &bus);
        if (r < 0)
                return r;

        r = sd_bus_message_new_method_call(bus, &m, "org.freedesktop.PolicyKit1",
                                           "/org/freedesktop/PolicyKit1/Authority",
                                           "org.freedesktop.PolicyKit1.Authority",
                                           "CheckAuthorization");
        if (r < 0)
                return r;

        /* sd_bus_can_send() would block until the bus is authenticated; ask it only once the
         * connection is ready. Every bus daemon on a unix socket passes fds anyway. */
        with_pidfd = q->id.pidfd >= 0 && (sd_bus_is_ready(bus) <= 0 || sd_bus_can_send(bus, 'h') > 0);

        /* Subject: unix-process {pid:u, start-time:t, uid:i[, pidfd:h]}. uid MUST be 'i'. */
        r = sd_bus_message_open_container(m, 'r', "sa{sv}");
        if (r >= 0)
                r = sd_bus_message_append(m, "s", "unix-process");
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{sv}");
        if (r >= 0)
                r = sd_bus_message_append(m, "{sv}{sv}{sv}",
                                          "pid", "u", (uint32_t) q->id.pid,
                                          "start-time", "t", (uint64_t) q->id.start_time,
                                          "uid", "i", (int32_t) q->id.uid);
        if (r >= 0 && with_pidfd)
                r = sd_bus_message_append(m, "{sv}", "pidfd", "h", q->id.pidfd);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "s", q->action);
        if (r >= 0)
                r = sd_bus_message_open_container(m, 'a', "{ss}");
        for (char **d = q->details; r >= 0 && d && d[0] && d[1]; d += 2)
                r = sd_bus_message_append(m, "{ss}", d[0], d[1]);
        if (r >= 0)
                r = append_identity_details(m, &q->id);
        if (r >= 0)
                r = sd_bus_message_close_container(m);
        if (r >= 0)
                r = sd_bus_message_append(m, "us", (uint32_t) (q->interactive ? 1 : 0), q->cancel_id);
        if (r < 0)
                return r;

        q->sent_usec = now_usec(CLOCK_MONOTONIC);
        return sd_bus_call_async(bus, &q->slot, m, on_check_reply, q,
                                 q->interactive ? NOIOMMU_POLKIT_INTERACTIVE_TIMEOUT_USEC
                                                : NOIOMMU_POLKIT_TIMEOUT_USEC);
}

static unsigned pending_for_uid(Polkit *p, uid_t uid) {
        unsigned n = 0;

        LIST_FOREACH(pending, q, p->pending)
                if (q->id.uid == uid)
                        n++;
        return n;
}

/* The window of uid, starting a new one when its interval is over; NULL if untracked and
 * create is false. A full table reuses the oldest slot: a flood over many uids only makes
 * the throttle forget, never refuse someone it should not. */
static DenialWindow *denial_window(Polkit *p, uid_t uid, bool create) {
        DenialWindow *w = NULL, *oldest = &p->denials[0];
        usec_t t = now_usec(CLOCK_MONOTONIC);

        for (size_t i = 0; i < ELEMENTSOF(p->denials); i++) {
                DenialWindow *d = &p->denials[i];

                if (d->begin != 0 && d->uid == uid)
                        w = d;
                if (d->begin < oldest->begin)
                        oldest = d;
        }
        if (w && t - w->begin > NOIOMMU_POLKIT_DENIALS_INTERVAL_USEC) {
                if (w->refused > 0)
                        log_warning("Refused %u authorization checks of UID %u without asking polkit after %u denials in %llu s.",
                                    w->refused, (unsigned) uid, w->n,
                                    (unsigned long long) (NOIOMMU_POLKIT_DENIALS_INTERVAL_USEC / USEC_PER_SEC));
                *w = (DenialWindow) {};
                w = NULL;
        }
        if (!w && create) {
                w = oldest;
                *w = (DenialWindow) { .uid = uid, .begin = t };
        }
        return w;
}

static void denial_count(Polkit *p, uid_t uid) {
        DenialWindow *w = denial_window(p, uid, true);

        w->n++;
}

static bool denial_throttled(Polkit *p, uid_t uid) {
        DenialWindow *w = denial_window(p, uid, false);

        if (!w || w->n < NOIOMMU_POLKIT_DENIALS_BURST)
                return false;
        w->refused++;
        return true;
}

static bool query_matches(const PolkitQuery *q, const char *action, char **details, bool interactive) {
        return streq(q->action, action) && strv_equal(q->details, details) &&
               q->interactive == interactive;
}

/* The answer to exactly this question has arrived: audits it and turns it into polkit_verify()'s
 * result. id is the caller's identity now, which is re-checked before a yes counts. */
static int query_consume(Polkit *p, const PolkitQuery *q, const ClientIdentity *id, const char *action,
                         char **details, bool interactive, const char **ret_reason) {
        int r;

        switch (q->verdict) {
        case POLKIT_AUTHORIZED:
                /* Re-validate after the asynchronous reply, before committing anything: the
                 * connector must still be the same live process. */
                r = client_identity_still_valid(id);
                if (r <= 0) {
                        (void) record_authorization(id, action, details, interactive, AUDIT_RESULT_DENIED,
                                                   POLKIT_REASON_SUBJECT_GONE, NULL);
                        *ret_reason = POLKIT_REASON_SUBJECT_GONE;
                        return -EACCES;
                }
                /* If it cannot be recorded, it is not granted (auditFailure=deny). */
                if (record_authorization(id, action, details, interactive, AUDIT_RESULT_AUTHORIZED,
                                        NULL, NULL) < 0) {
                        *ret_reason = AUDIT_REASON_FAILED;
                        return -EACCES;
                }
                return 1;
        case POLKIT_CHALLENGE:
                denial_count(p, id->uid);
                (void) record_authorization(id, action, details, interactive, AUDIT_RESULT_CHALLENGE,
                                           "interactive-authentication-required", NULL);
                return -EKEYREJECTED;
        case POLKIT_DENIED:
                denial_count(p, id->uid);
                (void) record_authorization(id, action, details, interactive, AUDIT_RESULT_DENIED,
                                           POLKIT_REASON_DENIED, NULL);
                *ret_reason = POLKIT_REASON_DENIED;
                return -EACCES;
        case POLKIT_FAILED:
                if (streq(q->reason, POLKIT_REASON_UNAVAILABLE) ||
                    streq(q->reason, POLKIT_REASON_NOT_REGISTERED))
                        record_policy_unavailable(id, action, q->reason);
                (void) record_authorization(id, action, details, interactive, AUDIT_RESULT_ERROR, q->reason,
                                           q->error_name);
                *ret_reason = q->reason;
                return -EACCES;
        case POLKIT_PENDING:
        case _POLKIT_VERDICT_MAX:
        case _POLKIT_VERDICT_INVALID:
        default:
                assert(false);
                return -EINVAL;
        }
}

/* No answer yet and none asked for: refuses what polkit cannot be asked truthfully or what is
 * over a limit, and otherwise sends the question and stores the pending query in *slot. */
static int query_start(Polkit *p, PolkitQuery **slot, const ClientIdentity *id, const char *action,
                       char **details, bool interactive, polkit_done_t done, void *userdata,
                       const char **ret_reason) {
        _cleanup_(polkit_query_freep) PolkitQuery *q = NULL;
        int r;

        /* polkit's uid is an int32. A larger uid cannot be said to polkit truthfully: as 'i' it
         * turns negative (another identity), as 'u' polkit ignores it and reads /proc itself.
         * No mapping is correct, so such a client is refused, and told why. */
        if (id->uid > (uid_t) INT32_MAX) {
                (void) record_authorization(id, action, details, interactive, AUDIT_RESULT_DENIED,
                                           POLKIT_REASON_UID_OUT_OF_RANGE, NULL);
                *ret_reason = POLKIT_REASON_UID_OUT_OF_RANGE;
                return -EACCES;
        }

        if (p->n_pending >= NOIOMMU_POLKIT_PENDING_MAX) {
                *ret_reason = "polkit-checks";
                return -EUSERS;
        }
        if (pending_for_uid(p, id->uid) >= NOIOMMU_POLKIT_PENDING_PER_UID_MAX) {
                *ret_reason = "polkit-checks-per-uid";
                return -EUSERS;
        }
        if (denial_throttled(p, id->uid)) {
                *ret_reason = "denials-per-uid";
                return -EUSERS;
        }

        q = new0(PolkitQuery, 1);
        if (!q)
                return -ENOMEM;
        *q = (PolkitQuery) {
                .id = *id,
                .interactive = interactive,
                .verdict = POLKIT_PENDING,
                .done = done,
                .userdata = userdata,
        };
        q->action = strdup(action);
        q->details = strv_copy(details);
        if (!q->action || !q->details)
                return -ENOMEM;
        (void) snprintf(q->cancel_id, sizeof(q->cancel_id), "noiommud-%" PRIu64, ++p->counter);

        r = query_send(p, q);
        if (r < 0) {
                /* No bus, or the message could not be sent: deny, loudly. */
                log_debug_errno(r, "Cannot send CheckAuthorization: %m");
                record_policy_unavailable(id, action, "system bus unreachable");
                (void) record_authorization(id, action, details, interactive, AUDIT_RESULT_ERROR,
                                           POLKIT_REASON_UNAVAILABLE, "bus-unreachable");
                *ret_reason = POLKIT_REASON_UNAVAILABLE;
                return -EACCES;
        }

        q->polkit = p;
        LIST_PREPEND(pending, p->pending, q);
        p->n_pending++;

        *slot = TAKE_PTR(q);
        return 0;
}

int polkit_verify(Polkit *p, PolkitQuery **slot, const ClientIdentity *id, const char *action,
                  char **details, bool interactive, polkit_done_t done, void *userdata,
                  const char **ret_reason) {
        _cleanup_(polkit_query_freep) PolkitQuery *q = NULL;

        assert(p);
        assert(slot);
        assert(id);
        assert(action);

        *ret_reason = NULL;

        if (*slot) {
                if ((*slot)->verdict == POLKIT_PENDING)
                        return 0;
                if (query_matches(*slot, action, details, interactive)) {
                        q = TAKE_PTR(*slot);    /* answered: consumed once, then freed */
                        return query_consume(p, q, id, action, details, interactive, ret_reason);
                }
                *slot = polkit_query_free(*slot);       /* a different question: ask anew */
        }

        return query_start(p, slot, id, action, details, interactive, done, userdata, ret_reason);
}

bool polkit_query_answered(const PolkitQuery *q) {
        return q && q->verdict != POLKIT_PENDING;
}

PolkitQuery *polkit_query_free(PolkitQuery *q) {
        if (!q)
                return NULL;

        if (q->slot && q->polkit) {
                /* The client went away while polkit was deciding: tell polkitd, and drop our
                 * interest in the reply (unref'ing the slot cancels the callback). */
                sd_bus *bus = sd_bus_slot_get_bus(q->slot);

                (void) sd_bus_call_method_async(bus, NULL, "org.freedesktop.PolicyKit1",
                                                "/org/freedesktop/PolicyKit1/Authority",
                                                "org.freedesktop.PolicyKit1.Authority",
                                                "CancelCheckAuthorization", NULL, NULL,
                                                "s", q->cancel_id);
                (void) record_authorization(&q->id, q->action, q->details, q->interactive,
                                           AUDIT_RESULT_DENIED, "client-disconnected", NULL);
        }
        pending_unlink(q);
        q->slot = sd_bus_slot_unref(q->slot);
        free(q->action);
        strv_free(q->details);
        free(q->error_name);
        free(q);
        return NULL;
}
