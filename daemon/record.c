/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See record.h. Grants are never rate-limited here; anomaly records (protocol violations, limits)
 * are, so that a flood from one client cannot push grants out of journald's rate limit window.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>

#include "record.h"
#include "config.h"
#include "internal/log.h"
#include "internal/time-util.h"
#include "linux-audit.h"
#include "msgid.h"

static bool audit_failure_log;
static const LinuxAuditOps *audit_ops;  /* record_setup()'s, until record_shutdown() */

/* At most this many anomaly records per interval; the rest are counted and summarized. */
#define ANOMALY_BURST 50
#define ANOMALY_INTERVAL_USEC (10 * USEC_PER_SEC)

static const char *const audit_result_table[_AUDIT_RESULT_MAX] = {
        [AUDIT_RESULT_AUTHORIZED] = "authorized",
        [AUDIT_RESULT_DENIED] = "denied",
        [AUDIT_RESULT_CHALLENGE] = "challenge",
        [AUDIT_RESULT_ERROR] = "error",
};

static const char *record_result_to_string(AuditResult r) {
        if (r < 0 || r >= _AUDIT_RESULT_MAX)
                return NULL;
        return audit_result_table[r];
}

void record_setup(const LinuxAuditOps *audit, bool failure_log) {
        int r;

        assert(audit);
        audit_ops = audit;
        audit_failure_log = failure_log;
        r = audit_ops->open();
        if (r == -EOPNOTSUPP)
                log_debug("Built without libaudit, writing journal records only.");
        else if (r == -EPROTONOSUPPORT || r == -EAFNOSUPPORT || r == -EINVAL || r == -ECONNREFUSED)
                log_info("Linux audit is not available, writing journal records only.");
        else if (r < 0)
                log_warning_errno(r, "Failed to open the audit socket, writing journal records only: %m");
}

void record_shutdown(void) {
        if (audit_ops)
                audit_ops->close();
        audit_ops = NULL;
}

/* Sends one Linux audit record. Returns 0 when it was written or audit is not available here
 * (no socket, or ECONNREFUSED: a user namespace, which sudo also treats as "not configured"),
 * and the negative errno when audit is available but refused it. */
static int linux_audit_send(LinuxAuditType type, const char *msg, bool ok) {
        int r;

        if (!audit_ops || !audit_ops->is_open())
                return 0;
        r = audit_ops->log(type, msg, ok);
        if (r >= 0)
                return 0;
        if (r == -ECONNREFUSED) {
                log_debug("Audit record refused (user namespace?), ignoring.");
                return 0;
        }
        log_warning_errno(r, "Failed to write audit record%s: %m",
                          !ok || audit_failure_log ? ", ignoring" : ", refusing the grant (auditFailure=deny)");
        return r;
}

/* A grant's record could not be written: under "deny" it is not granted. */
static bool record_refuses(int r, bool ok) {
        return r < 0 && ok && !audit_failure_log;
}

/* The client's containment as Linux audit fields. The cgroup path and unit can carry names the
 * client chose (below a delegation boundary), so they go through linux_audit_encode_field(),
 * which hex-encodes a value with spaces, quotes or control characters, and are left out when it
 * cannot (no libaudit); the rest are numbers and hex digits. */
static void linux_audit_client_fields(const ClientIdentity *c, char *buf, size_t size) {
        size_t o = 0;
        int k;

        buf[0] = 0;
        for (size_t i = 0; i < 2; i++) {
                const char *name = i == 0 ? "cgroup" : "unit";
                const char *value = i == 0 ? c->cgroup : c->unit;
                char *enc;

                if (!value[0])
                        continue;
                enc = linux_audit_encode_field(name, value);
                if (!enc)
                        continue;
                k = snprintf(buf + o, size - o, " %s", enc);
                free(enc);
                if (k < 0 || (size_t) k >= size - o)
                        return;
                o += (size_t) k;
        }
        k = snprintf(buf + o, size - o, " container_id=%s nspid=%i userns=%" PRIu64 " userns_owner=%i capeff=%016" PRIx64,
                     c->container_id[0] ? c->container_id : "none", (int) c->nspid, c->userns_ino,
                     c->userns_owner == (uid_t) -1 ? -1 : (int) c->userns_owner,
                     c->cap_known ? c->cap_effective : 0);
        (void) k;
}

static int linux_audit_acct(const ClientIdentity *c, const char *action, bool ok,
                            const char *reason) {
        char msg[4096], fields[3072];

        /* The kernel stamps the record with the daemon's pid/uid/auid; the client is named in
         * the body. action and reason are our own constants, never client text. */
        linux_audit_client_fields(c, fields, sizeof(fields));
        (void) snprintf(msg, sizeof(msg), "op=authorize action=%s reason=%s spid=%i suid=%u%s",
                        action, reason ?: "none", (int) c->pid, (unsigned) c->uid, fields);
        return linux_audit_send(LINUX_AUDIT_USER_ACCT, msg, ok);
}

/* Without a journal (a machine or container without journald), the records would be lost:
 * write their text to the log as well. With a journal they are only in the journal. */
static void mirror(int priority, const char *msg) {
        static int journal = -1;

        if (journal < 0)
                journal = access("/run/systemd/journal/socket", W_OK) == 0;
        if (!journal)
                (void) log_full_errno(priority, 0, "%s", msg);
}

typedef struct RateLimit {
        usec_t begin;
        unsigned n;
        unsigned suppressed;
} RateLimit;

/* Returns true if this record may be written; reports suppressed counts when a new interval
 * starts. */
static bool ratelimit_test(RateLimit *rl, const char *what) {
        usec_t t = now_usec(CLOCK_MONOTONIC);

        if (rl->begin == 0 || t - rl->begin > ANOMALY_INTERVAL_USEC) {
                if (rl->suppressed > 0)
                        log_warning("Suppressed %u %s records in the last %llu s.", rl->suppressed,
                                    what, (unsigned long long) (ANOMALY_INTERVAL_USEC / USEC_PER_SEC));
                rl->begin = t;
                rl->n = 0;
                rl->suppressed = 0;
        }
        if (rl->n >= ANOMALY_BURST) {
                rl->suppressed++;
                return false;
        }
        rl->n++;
        return true;
}

/* "" when unknown: a made-up number would be read as a real owner or capability set. */
static const char *client_userns_owner(const ClientIdentity *c, char buf[static 16]) {
        if (c->userns_owner == (uid_t) -1)
                return "";
        (void) snprintf(buf, 16, "%u", (unsigned) c->userns_owner);
        return buf;
}

static const char *client_cap_effective(const ClientIdentity *c, char buf[static 20]) {
        if (!c->cap_known)
                return "";
        (void) snprintf(buf, 20, "%016" PRIx64, c->cap_effective);
        return buf;
}

#define CLIENT_FIELDS(c)                                                                \
        "NOIOMMUD_CLIENT_UID=%u", (unsigned) (c)->uid,                                  \
        "NOIOMMUD_CLIENT_GID=%u", (unsigned) (c)->gid,                                  \
        "NOIOMMUD_CLIENT_PID=%i", (int) (c)->pid,                                       \
        "NOIOMMUD_CLIENT_START_TIME=%llu", (c)->start_time,                             \
        "NOIOMMUD_CLIENT_PIDFD_INO=%" PRIu64, (c)->pidfd_ino,                           \
        "NOIOMMUD_CLIENT_UNIT=%s", (c)->unit,                                           \
        "NOIOMMUD_CLIENT_CGROUP=%s%s", (c)->cgroup, (c)->cgroup_truncated ? "..." : "", \
        "NOIOMMUD_CLIENT_CONTAINER_ID=%s", (c)->container_id,                           \
        "NOIOMMUD_CLIENT_CONTAINER_ENGINE=%s", (c)->container_engine ?: "",             \
        "NOIOMMUD_CLIENT_NSPID=%i", (int) (c)->nspid,                                   \
        "NOIOMMUD_CLIENT_USERNS=%" PRIu64, (c)->userns_ino,                             \
        "NOIOMMUD_CLIENT_USERNS_OWNER=%s", client_userns_owner(c, (char[16]) {}),      \
        "NOIOMMUD_CLIENT_CAP_EFFECTIVE=%s", client_cap_effective(c, (char[20]) {})

void record_started(const char *listen_description) {
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "noiommud " PACKAGE_VERSION " started, listening on %s.",
                        listen_description);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_STARTED,
                               "PRIORITY=%i", LOG_INFO,
                               "NOIOMMUD_VERSION=%s", PACKAGE_VERSION,
                               NULL);
        mirror(LOG_INFO, msg);
}

void record_reloaded(const char *listen_description, unsigned n_connections, unsigned n_leases,
                    unsigned n_regions, uint64_t pause_usec) {
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "noiommud " PACKAGE_VERSION " re-executed in %llu ms, keeping %u connections, "
                        "%u device leases and %u allocations; listening on %s.",
                        (unsigned long long) (pause_usec / 1000), n_connections, n_leases, n_regions,
                        listen_description);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_RELOADED,
                               "PRIORITY=%i", LOG_NOTICE,
                               "NOIOMMUD_VERSION=%s", PACKAGE_VERSION,
                               "NOIOMMUD_RELOAD_USEC=%llu", (unsigned long long) pause_usec,
                               NULL);
        mirror(LOG_NOTICE, msg);
}

void record_stopping(unsigned n_connections, unsigned n_regions) {
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "noiommud stopping, closing %u connections and freeing %u allocations.",
                        n_connections, n_regions);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_STOPPING,
                               "PRIORITY=%i", LOG_INFO,
                               NULL);
        mirror(LOG_INFO, msg);
}

int record_authorization(const ClientIdentity *c, const char *action, char **details,
                        bool interactive, AuditResult result, const char *reason,
                        const char *polkit_error) {
        char dstr[512] = "";
        size_t off = 0;
        bool ok = result == AUDIT_RESULT_AUTHORIZED;
        int r;

        /* Linux audit first: a grant that cannot be recorded there is, under "deny", a denial,
         * and the journal must say so rather than "authorized". */
        r = linux_audit_acct(c, action, ok, reason);
        if (record_refuses(r, ok)) {
                ok = false;
                result = AUDIT_RESULT_ERROR;
                reason = AUDIT_REASON_FAILED;
                (void) linux_audit_acct(c, action, false, reason);
        }

        for (char **d = details; d && d[0] && d[1]; d += 2) {
                int k = snprintf(dstr + off, sizeof(dstr) - off, "%s%s=%s", off ? " " : "", d[0], d[1]);
                if (k < 0 || (size_t) k >= sizeof(dstr) - off)
                        break;
                off += (size_t) k;
        }

        char msg[512];

        /* "denied: denied" says nothing twice: show the reason only when it adds something */
        (void) snprintf(msg, sizeof(msg), "%s %s for UID %u (PID %i)%s%s",
                        action, ok ? "authorized" : "denied", (unsigned) c->uid, (int) c->pid,
                        reason && !streq(reason, record_result_to_string(result)) ? ": " : "",
                        reason && !streq(reason, record_result_to_string(result)) ? reason : "");
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=%s", ok ? NOIOMMU_MSGID_AUTHZ_GRANTED : NOIOMMU_MSGID_AUTHZ_DENIED,
                               "PRIORITY=%i", ok ? LOG_NOTICE : LOG_WARNING,
                               CLIENT_FIELDS(c),
                               "NOIOMMUD_POLKIT_ACTION=%s", action,
                               "NOIOMMUD_POLKIT_RESULT=%s", record_result_to_string(result),
                               "NOIOMMUD_POLKIT_DETAILS=%s", dstr,
                               "NOIOMMUD_POLKIT_ERROR=%s", polkit_error ?: "",
                               "NOIOMMUD_INTERACTIVE=%i", (int) interactive,
                               "NOIOMMUD_REASON=%s", reason ?: (ok ? "authorized" : "denied"),
                               "ERRNO=%i", r < 0 ? -r : 0,
                               NULL);
        mirror(ok ? LOG_NOTICE : LOG_WARNING, msg);
        return record_refuses(r, true) ? -EIO : 0;
}

void record_capability_refused(const ClientIdentity *c, const char *action, char **details,
                              bool interactive, const char *capability, bool unverifiable) {
        char msg[512], dstr[512] = "", why[64];
        size_t off = 0;

        for (char **d = details; d && d[0] && d[1]; d += 2) {
                int k = snprintf(dstr + off, sizeof(dstr) - off, "%s%s=%s", off ? " " : "", d[0], d[1]);
                if (k < 0 || (size_t) k >= sizeof(dstr) - off)
                        break;
                off += (size_t) k;
        }
        /* A refusal: a failure to write the Linux record only logs. */
        (void) snprintf(why, sizeof(why), "root-without-capabilities cap=%s", capability);
        (void) linux_audit_acct(c, action, false, why);

        (void) snprintf(msg, sizeof(msg),
                        "%s denied for UID 0 (PID %i) without asking polkit: the client %s %s in the initial user namespace%s%s",
                        action, (int) c->pid, unverifiable ? "could not be shown to hold" : "does not hold",
                        capability, c->container_id[0] ? ", container " : "", c->container_id);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_AUTHZ_DENIED,
                               "PRIORITY=%i", LOG_WARNING,
                               CLIENT_FIELDS(c),
                               "NOIOMMUD_POLKIT_ACTION=%s", action,
                               "NOIOMMUD_POLKIT_RESULT=%s", "not-asked",
                               "NOIOMMUD_POLKIT_DETAILS=%s", dstr,
                               "NOIOMMUD_INTERACTIVE=%i", (int) interactive,
                               "NOIOMMUD_REASON=%s", "root-without-capabilities",
                               "NOIOMMUD_REQUIRED_CAPABILITY=%s", capability,
                               "NOIOMMUD_CLIENT_USERNS_INITIAL=%i", c->userns_initial,
                               NULL);
        mirror(LOG_WARNING, msg);
}

void record_policy_unavailable(const ClientIdentity *c, const char *action, const char *why) {
        static RateLimit rl;

        if (!ratelimit_test(&rl, "policy-unavailable"))
                return;
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "Cannot ask polkit about %s for UID %u: %s. Denying.",
                        action, (unsigned) c->uid, why);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_POLICY_UNAVAILABLE,
                               "PRIORITY=%i", LOG_ERR,
                               CLIENT_FIELDS(c),
                               "NOIOMMUD_POLKIT_ACTION=%s", action,
                               "NOIOMMUD_REASON=%s", why,
                               NULL);
        mirror(LOG_ERR, msg);
}

void record_memory_granted(const ClientIdentity *c, const HugeRegion *r, size_t n_segments,
                          const char *kind, uint64_t first_dma_address, const char *lease_id) {
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "Granted %" PRIu64 " bytes of pinned DMA memory (%zu x %" PRIu64 " byte pages) to UID %u (PID %i)",
                        r->size, r->n_pages, r->hugepage_size, (unsigned) c->uid, (int) c->pid);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_MEMORY_GRANTED,
                               "PRIORITY=%i", LOG_NOTICE,
                               CLIENT_FIELDS(c),
                               "NOIOMMUD_MEMORY_ID=%s", r->id,
                               "NOIOMMUD_MEM_BYTES=%" PRIu64, r->size,
                               "NOIOMMUD_HUGEPAGE_SIZE=%" PRIu64, r->hugepage_size,
                               "NOIOMMUD_PAGES=%zu", r->n_pages,
                               "NOIOMMUD_SEGMENTS=%zu", n_segments,
                               "NOIOMMUD_NUMA_NODE=%i", r->numa_node,
                               "NOIOMMUD_ADDRESS_KIND=%s", kind,
                               "NOIOMMUD_FIRST_DMA_ADDRESS=0x%" PRIx64, first_dma_address,
                               "NOIOMMUD_FIRST_PHYSICAL_ADDRESS=0x%" PRIx64, r->n_pages ? r->phys[0] : 0,
                               "NOIOMMUD_LEASE_ID=%s", lease_id ?: "",
                               "NOIOMMUD_PIN=io_uring",
                               "NOIOMMUD_POOL=%i", (int) r->pooled,
                               NULL);
        mirror(LOG_NOTICE, msg);
}

void record_memory_freed(const ClientIdentity *c, const HugeRegion *r, const char *reason,
                        bool pfn_changed) {
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "Freed %" PRIu64 " bytes of DMA memory of UID %u (PID %i): %s%s",
                        r->size, (unsigned) c->uid, (int) c->pid, reason,
                        pfn_changed ? "; pages moved or were punched out while allocated" : "");
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_MEMORY_FREED,
                               "PRIORITY=%i", pfn_changed ? LOG_WARNING : LOG_INFO,
                               CLIENT_FIELDS(c),
                               "NOIOMMUD_MEMORY_ID=%s", r->id,
                               "NOIOMMUD_MEM_BYTES=%" PRIu64, r->size,
                               "NOIOMMUD_HUGEPAGE_SIZE=%" PRIu64, r->hugepage_size,
                               "NOIOMMUD_REASON=%s", reason,
                               "NOIOMMUD_PFN_CHANGED=%i", (int) pfn_changed,
                               NULL);
        mirror(pfn_changed ? LOG_WARNING : LOG_INFO, msg);
}

void record_protocol_violation(const ClientIdentity *c, const char *reason) {
        static RateLimit rl;

        if (!ratelimit_test(&rl, "protocol-violation"))
                return;
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "Protocol violation by UID %u (PID %i): %s. Disconnecting.",
                        (unsigned) c->uid, (int) c->pid, reason);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_PROTOCOL_VIOLATION,
                               "PRIORITY=%i", LOG_WARNING,
                               CLIENT_FIELDS(c),
                               "NOIOMMUD_REASON=%s", reason,
                               NULL);
        mirror(LOG_WARNING, msg);
}

void record_limit_exceeded(const ClientIdentity *c, const char *limit) {
        static RateLimit rl;

        if (!ratelimit_test(&rl, "limit-exceeded"))
                return;
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "UID %u (PID %i) hit the limit %s.",
                        (unsigned) c->uid, (int) c->pid, limit);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_LIMIT_EXCEEDED,
                               "PRIORITY=%i", LOG_WARNING,
                               CLIENT_FIELDS(c),
                               "NOIOMMUD_LIMIT=%s", limit,
                               NULL);
        mirror(LOG_WARNING, msg);
}

#define DEVICE_FIELDS(d)                                                                \
        "NOIOMMUD_DEVICE=%s", (d)->address,                                             \
        "NOIOMMUD_PCI_ID=%04x:%04x", (unsigned) (d)->vendor_id, (unsigned) (d)->device_id, \
        "NOIOMMUD_BACKEND=%s", backend_to_string((d)->backend) ?: "none",               \
        "NOIOMMUD_IOMMU_GROUP=%i", (d)->iommu_group,                                    \
        "NOIOMMUD_NODE=%s", (d)->node_name,                                             \
        "NOIOMMUD_NODE_RDEV=%u:%u", major((d)->rdev), minor((d)->rdev)

static int linux_audit_dev(LinuxAuditType type, const ClientIdentity *c, const char *op, const char *lease_id,
                           const InventoryDevice *d, const char *reason, bool ok) {
        char msg[4096], fields[3072];

        /* Every value here is validated (BDF, hex ids) or our own constant; the client's
         * containment fields are encoded. */
        linux_audit_client_fields(c, fields, sizeof(fields));
        (void) snprintf(msg, sizeof(msg),
                        "op=%s uuid=%s resrc=dev bus=pci device=%s pci_id=%04x:%04x backend=%s reason=%s spid=%i suid=%u%s",
                        op, lease_id, d->address, (unsigned) d->vendor_id, (unsigned) d->device_id,
                        backend_to_string(d->backend) ?: "none", reason, (int) c->pid, (unsigned) c->uid, fields);
        return linux_audit_send(type, msg, ok);
}

int record_lease_granted(const ClientIdentity *c, const char *lease_id, const InventoryDevice *d) {
        char msg[512];
        int r;

        r = linux_audit_dev(LINUX_AUDIT_DEV_ALLOC, c, "lease-grant", lease_id, d, "grant", true);
        if (record_refuses(r, true))
                return -EIO;    /* the caller ends the lease; its release is recorded instead */

        (void) snprintf(msg, sizeof(msg), "Granted device %s (%04x:%04x, %s) to UID %u (PID %i), lease %s",
                        d->address, (unsigned) d->vendor_id, (unsigned) d->device_id,
                        backend_to_string(d->backend) ?: "none", (unsigned) c->uid, (int) c->pid, lease_id);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_LEASE_GRANTED,
                               "PRIORITY=%i", LOG_NOTICE,
                               CLIENT_FIELDS(c),
                               DEVICE_FIELDS(d),
                               "NOIOMMUD_LEASE_ID=%s", lease_id,
                               NULL);
        mirror(LOG_NOTICE, msg);
        return 0;
}

void record_lease_quiesced(const ClientIdentity *c, const char *lease_id, const InventoryDevice *d,
                          bool reset, const char *reason) {
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "Quiesced device %s of lease %s (%s): Bus Master cleared%s",
                        d->address, lease_id, reason, reset ? ", device reset" : ", no reset available");
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_LEASE_QUIESCED,
                               "PRIORITY=%i", reset ? LOG_INFO : LOG_WARNING,
                               CLIENT_FIELDS(c),
                               DEVICE_FIELDS(d),
                               "NOIOMMUD_LEASE_ID=%s", lease_id,
                               "NOIOMMUD_BUS_MASTER_CLEARED=1",
                               "NOIOMMUD_RESET=%i", (int) reset,
                               "NOIOMMUD_REASON=%s", reason,
                               NULL);
        mirror(reset ? LOG_INFO : LOG_WARNING, msg);
}

void record_lease_released(const ClientIdentity *c, const char *lease_id, const InventoryDevice *d,
                          const char *reason, uint64_t bytes_freed, uint64_t duration_usec) {
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "Released device %s of UID %u (PID %i), lease %s: %s",
                        d->address, (unsigned) c->uid, (int) c->pid, lease_id, reason);
        /* A lease ended by the daemon because its client vanished while the daemon was down
         * has a record type of its own. */
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=%s", streq(reason, "reclaim-after-restart")
                                                ? NOIOMMU_MSGID_LEASE_RECLAIMED : NOIOMMU_MSGID_LEASE_RELEASED,
                               "PRIORITY=%i", LOG_INFO,
                               CLIENT_FIELDS(c),
                               DEVICE_FIELDS(d),
                               "NOIOMMUD_LEASE_ID=%s", lease_id,
                               "NOIOMMUD_REASON=%s", reason,
                               "NOIOMMUD_MEM_BYTES=%" PRIu64, bytes_freed,
                               "NOIOMMUD_DURATION_USEC=%" PRIu64, duration_usec,
                               NULL);
        mirror(LOG_INFO, msg);
        (void) linux_audit_dev(LINUX_AUDIT_DEV_DEALLOC, c, "lease-release", lease_id, d, reason, true);
}

void record_quiesce_failed(const ClientIdentity *c, const char *lease_id, const InventoryDevice *d,
                          int error, uint64_t bytes_kept) {
        char msg[512];

        (void) snprintf(msg, sizeof(msg),
                        "Failed to quiesce device %s of lease %s: %s. Device quarantined, %" PRIu64 " bytes stay pinned.",
                        d->address, lease_id, strerror(abs(error)), bytes_kept);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_QUIESCE_FAILED,
                               "PRIORITY=%i", LOG_CRIT,
                               "ERRNO=%i", abs(error),
                               CLIENT_FIELDS(c),
                               DEVICE_FIELDS(d),
                               "NOIOMMUD_LEASE_ID=%s", lease_id,
                               "NOIOMMUD_MEM_BYTES=%" PRIu64, bytes_kept,
                               NULL);
        mirror(LOG_CRIT, msg);
        (void) linux_audit_dev(LINUX_AUDIT_DEV_DEALLOC, c, "lease-quarantine", lease_id, d, "quiesce-failed", false);
}

void record_lease_broken(const ClientIdentity *c, const char *lease_id, const InventoryDevice *d,
                        int error, const char *why, uint64_t bytes_kept) {
        char msg[512];

        (void) snprintf(msg, sizeof(msg),
                        "DMA addresses of lease %s on device %s cannot be trusted: %s. Lease quarantined, %" PRIu64 " bytes stay pinned.",
                        lease_id, d->address, why, bytes_kept);
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_LEASE_BROKEN,
                               "PRIORITY=%i", LOG_CRIT,
                               "ERRNO=%i", abs(error),
                               CLIENT_FIELDS(c),
                               DEVICE_FIELDS(d),
                               "NOIOMMUD_LEASE_ID=%s", lease_id,
                               "NOIOMMUD_REASON=%s", why,
                               "NOIOMMUD_MEM_BYTES=%" PRIu64, bytes_kept,
                               NULL);
        mirror(LOG_CRIT, msg);
        (void) linux_audit_dev(LINUX_AUDIT_DEV_DEALLOC, c, "lease-quarantine", lease_id, d, "addresses-untrusted", false);
}

void record_lease_refused(const ClientIdentity *c, const InventoryDevice *d, int error, const char *why) {
        char msg[512];

        (void) snprintf(msg, sizeof(msg), "Could not open device %s for UID %u (PID %i): %s (%s)",
                        d->address, (unsigned) c->uid, (int) c->pid, why, strerror(abs(error)));
        (void) sd_journal_send("MESSAGE=%s", msg,
                               "MESSAGE_ID=" NOIOMMU_MSGID_AUTHZ_DENIED,
                               "PRIORITY=%i", LOG_WARNING,
                               "ERRNO=%i", abs(error),
                               CLIENT_FIELDS(c),
                               DEVICE_FIELDS(d),
                               "NOIOMMUD_POLKIT_RESULT=authorized",
                               "NOIOMMUD_REASON=%s", why,
                               NULL);
        mirror(LOG_WARNING, msg);
}
