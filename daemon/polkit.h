/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Asynchronous polkit checks, the systemd bus-polkit.c way (security.md §3.7):
 *
 *   A method handler calls polkit_verify() before it touches any state. The first call sends
 *   CheckAuthorization asynchronously, stores a query in the caller's slot and returns 0
 *   ("pending"); the handler returns without replying and the connection stops reading. When
 *   the reply arrives the verdict is stored in the query and done(userdata) is called, which
 *   makes the connection run the *whole* handler again from the top. The second
 *   polkit_verify() with the same action, details and interactive flag finds the verdict,
 *   re-checks that the connecting process is still the same live process, writes the audit
 *   record, frees the query and returns the verdict. Nothing is cached across requests.
 *
 * Fail closed: a D-Bus error, timeout, disconnect, unparsable reply, a challenge without
 * interaction, or a subject that is gone all deny. The subject is unix-process{pid:u,
 * start-time:t, uid:i, pidfd:h}: polkitd 122 (Debian 12) requires pid and start-time and
 * ignores the pidfd, polkit >= 124 uses it; uid must be typed int32 or polkit silently ignores it.
 *
 * Layer 1 (docs/architecture.md): below conn and the handlers. It calls up only through the
 * polkit_done_t callback its caller passes (dispatch.c passes conn_redispatch()). The Manager
 * owns the Polkit (the system bus connection); a query lives in its caller's slot
 * (Client.polkit) until client_request_done() frees it, which also cancels it in flight. It
 * trusts polkitd's reply only as the verdict on exactly the question it asked, and only once the
 * process is re-checked to be the one that connected.
 */
#pragma once

#include <stdbool.h>

#include <systemd/sd-bus.h>
#include <systemd/sd-event.h>

#include "identity.h"
#include "internal/macro.h"

/* Checks in flight at once, in total and per uid. The system bus allows 128 pending calls per
 * connection; stay well below and answer the rest with LimitExceeded rather than queueing. */
#define NOIOMMU_POLKIT_PENDING_MAX 64
#define NOIOMMU_POLKIT_PENDING_PER_UID_MAX 4

/* Denials per uid (security.md §7.2): after this many "no" answers for one uid within the
 * interval, its further checks are refused with LimitExceeded ("denials-per-uid") without asking
 * polkitd until the interval ends. A denied flood then costs polkitd, the bus and the journal a
 * bounded amount, and grants stay visible in the journal (security.md §10 row 27). */
#define NOIOMMU_POLKIT_DENIALS_BURST 32
#define NOIOMMU_POLKIT_DENIALS_INTERVAL_USEC (10ULL * 1000000ULL)
/* uids whose denials are tracked at once; the oldest window is reused beyond that. */
#define NOIOMMU_POLKIT_DENIAL_UIDS 64

/* Spelled as literals: tests/integration/test-polkit-faults.py reads these values from here. */
#define NOIOMMU_POLKIT_TIMEOUT_USEC (25ULL * 1000000ULL)
#define NOIOMMU_POLKIT_INTERACTIVE_TIMEOUT_USEC (300ULL * 1000000ULL)

typedef struct Polkit Polkit;
typedef struct PolkitQuery PolkitQuery;
typedef void (*polkit_done_t)(void *userdata);

int polkit_new(sd_event *event, Polkit **ret);
Polkit *polkit_free(Polkit *p);

/* Connects to the system bus now (honouring $DBUS_SYSTEM_BUS_ADDRESS), so that the first
 * request does not pay for it. Failure is not fatal: checks reconnect and deny meanwhile. */
void polkit_connect(Polkit *p);

/* Denial reasons handed to the client as PermissionDenied's "reason". */
#define POLKIT_REASON_DENIED "denied"
#define POLKIT_REASON_UNAVAILABLE "polkit-unavailable"
#define POLKIT_REASON_NOT_REGISTERED "action-not-registered"
#define POLKIT_REASON_SUBJECT_GONE "subject-gone"
#define POLKIT_REASON_ERROR "error"
/* The client's uid does not fit polkit's int32 "uid" key (user namespaces allocated above
 * INT32_MAX): sent as it is it would reach polkit as a negative number, and sent as uint32
 * polkit ignores it and looks the process up itself (security.md §3.3). Refused, unasked. */
#define POLKIT_REASON_UID_OUT_OF_RANGE "uid-out-of-range"

/* Returns 1: authorized; 0: pending (done(userdata) will be called; call again then);
 * -EACCES: denied, *ret_reason is one of the POLKIT_REASON_* strings or AUDIT_REASON_FAILED (the
 * grant could not be audited); -EKEYREJECTED: polkit wants interactive authentication the
 * request did not allow; -EUSERS: too many checks in flight, or too many denials of this uid
 * (limit name in *ret_reason); other negative errno: our own failure.
 * details: NULL-terminated key, value, ... list of validated values only. polkit also gets the
 * client's containment from id as details, for rules to match: "container_id",
 * "container_engine", "unit", "cgroup" (escaped to printable ASCII) and "userns_owner", each
 * only when known. */
int polkit_verify(Polkit *p, PolkitQuery **slot, const ClientIdentity *id, const char *action,
                  char **details, bool interactive, polkit_done_t done, void *userdata,
                  const char **ret_reason);

/* Whether polkitd's answer (or a failure) has arrived for this query. */
bool polkit_query_answered(const PolkitQuery *q);

/* Frees a query; a pending one is cancelled (CancelCheckAuthorization, reply ignored) and
 * audited as a denial for a vanished client. */
PolkitQuery *polkit_query_free(PolkitQuery *q);

DEFINE_TRIVIAL_CLEANUP_FUNC(PolkitQuery *, polkit_query_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(Polkit *, polkit_free);
