/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Audit trail: one structured journal record per authorization decision, per memory grant and
 * free and per device lease event, each with its own MESSAGE_ID (msgid.h, explained in
 * policy/noiommud.catalog), and a Linux audit record when libaudit is built in and the kernel
 * accepts it (linux-audit.h): AUDIT_USER_ACCT per authorization decision, AUDIT_DEV_ALLOC per
 * device lease granted, AUDIT_DEV_DEALLOC per lease ended or quarantined.
 *
 * journald adds _PID/_UID/... itself, but those describe the daemon. The client is always named
 * explicitly in NOIOMMUD_CLIENT_* fields (security.md §9).
 *
 * The prefix is record_, not audit_: libaudit owns the audit_* namespace (audit_open(),
 * audit_log_user_message(), ...), and only linux-audit.c talks to it.
 *
 * A record is one sd_journal_sendv() (the client's fields formatted once per identity) and, for
 * a decision or a device lease, one Linux audit record (a sendto() and a non-blocking read of
 * the kernel's verdict, linux-audit.c): security.md §9.2 and §9.3 give the costs, and why a
 * decision and the grant it leads to stay two records.
 *
 * Layer 1 (docs/architecture.md): called by every layer above, calls only down (linux-audit.c,
 * the journal). Owns the Linux audit connection (through linux-audit.c) and the rate limits of
 * anomaly records (never of decisions or grants). It decides what a failure to record means: with auditFailure=deny a grant
 * whose record cannot be written is refused (the record_*() functions that can refuse return
 * an error). Values the client chose (unit and cgroup names below a delegation boundary) are
 * encoded before they reach a Linux audit record.
 */
#pragma once

#include "hugepage.h"
#include "identity.h"
#include "inventory.h"
#include "linux-audit.h"

typedef enum AuditResult {
        AUDIT_RESULT_AUTHORIZED,
        AUDIT_RESULT_DENIED,
        AUDIT_RESULT_CHALLENGE,
        AUDIT_RESULT_ERROR,
        _AUDIT_RESULT_MAX,
        _AUDIT_RESULT_INVALID = -EINVAL,
} AuditResult;

/* Opens the Linux audit netlink socket through audit (the manager's backend table, backend.h:
 * linux-audit.c's functions in the daemon, a fake in the tests), and writes every Linux record
 * through it until record_shutdown(). Failure is not fatal:
 * ECONNREFUSED (user namespace) or EPROTONOSUPPORT (no CONFIG_AUDIT) mean "no audit here", and
 * then grants are recorded in the journal only (security.md §9.3, as sudo does). failure_log is
 * the "auditFailure" setting: when audit IS available but a grant's record cannot be written
 * (EPERM without CAP_AUDIT_WRITE, ENOBUFS, ...), false refuses the grant, true only logs. */
void record_setup(const LinuxAuditOps *audit, bool failure_log);
void record_shutdown(void);

void record_started(const char *listen_description);
void record_stopping(unsigned n_connections, unsigned n_regions);
/* A re-exec (reload) finished: what was carried over, and how long serving paused. */
void record_reloaded(const char *listen_description, unsigned n_connections, unsigned n_leases,
                    unsigned n_regions, uint64_t pause_usec);

/* The PermissionDenied reason of a grant refused because its audit record could not be written. */
#define AUDIT_REASON_FAILED "audit-failed"

/* One authorization decision. details is a NULL-terminated key, value, ... list (the validated
 * values sent to polkit); reason is NULL or the PermissionDenied reason. Returns -EIO when an
 * AUTHORIZED decision could not be written to Linux audit and the policy is "deny": the journal
 * then records a denial with reason AUDIT_REASON_FAILED and the caller must not grant. */
int record_authorization(const ClientIdentity *c, const char *action, char **details,
                         bool interactive, AuditResult result, const char *reason,
                         const char *polkit_error);

/* A uid-0 client was refused without asking polkit because it does not hold capability (e.g.
 * "CAP_SYS_RAWIO") in the initial user namespace, or it could not be verified that it does
 * (unverifiable). Journal: AUTHZ_DENIED with NOIOMMUD_REASON=root-without-capabilities and
 * NOIOMMUD_REQUIRED_CAPABILITY; Linux audit: USER_ACCT res=failed. */
void record_capability_refused(const ClientIdentity *c, const char *action, char **details,
                              bool interactive, const char *capability, bool unverifiable);

/* polkit could not be asked at all (bus or polkitd missing, action not registered). */
void record_policy_unavailable(const ClientIdentity *c, const char *action, const char *why);

/* kind: "physical" or "iova"; first_dma_address: what the client programs for offset 0;
 * lease_id: the lease whose DMA context the memory is mapped into, or NULL. */
void record_memory_granted(const ClientIdentity *c, const HugeRegion *r, size_t n_segments,
                          const char *kind, uint64_t first_dma_address, const char *lease_id);

/* reason: "free", "client-exit" or "shutdown". pfn_changed: a page moved or was punched. */
void record_memory_freed(const ClientIdentity *c, const HugeRegion *r, const char *reason,
                        bool pfn_changed);

/* A client broke the protocol or hit a limit; rate-limited per call site. */
void record_protocol_violation(const ClientIdentity *c, const char *reason);
void record_limit_exceeded(const ClientIdentity *c, const char *limit);

/* Device leases. dev is the device as classified at acquire time. record_lease_granted() returns
 * -EIO like record_authorization() when the DEV_ALLOC record cannot be written under "deny"; the
 * caller then ends the lease instead of handing it out. */
int record_lease_granted(const ClientIdentity *c, const char *lease_id, const InventoryDevice *dev);
void record_lease_quiesced(const ClientIdentity *c, const char *lease_id, const InventoryDevice *dev,
                          bool reset, const char *reason);
void record_lease_released(const ClientIdentity *c, const char *lease_id, const InventoryDevice *dev,
                          const char *reason, uint64_t bytes_freed, uint64_t duration_usec);
void record_quiesce_failed(const ClientIdentity *c, const char *lease_id, const InventoryDevice *dev,
                          int error, uint64_t bytes_kept);
/* The lease's DMA addresses cannot be vouched for any more (no noiommu page table behind a
 * mapping, or addresses that moved across a restart): it is quarantined. */
void record_lease_broken(const ClientIdentity *c, const char *lease_id, const InventoryDevice *dev,
                        int error, const char *why, uint64_t bytes_kept);
/* A grant the kernel refused although polkit allowed it (device busy elsewhere, node swapped). */
void record_lease_refused(const ClientIdentity *c, const InventoryDevice *dev, int error,
                         const char *why);
