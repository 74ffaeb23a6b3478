/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See record.h. Grants are never rate-limited here; anomaly records (protocol violations, limits)
 * are, so that a flood from one client cannot push grants out of journald's rate limit window.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
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

/* --- The client's fields, formatted once per identity ---------------------------------------
 *
 * Every record names the client in 13 journal fields and, in Linux audit, in an encoded text
 * (cgroup and unit hex-encoded when they hold spaces, quotes or control characters). They are
 * what a record spends most of its formatting on, and they depend only on the identity as it
 * was at accept, so they are formatted once and kept here for the few identities in use
 * (a grant writes the authorization record and the grant record for the same client; a
 * teardown writes the quiesce, free and release records). An entry is used only for an
 * identity equal in every formatted value (key and strings), so a stale entry cannot name the
 * wrong client: it just stops being used. Not in identity.c or the client: they need not know
 * how records look. */

#define CLIENT_FIELDS_N 13
#define CLIENT_CACHE_SIZE 4

typedef struct ClientKey {
        uid_t uid;
        gid_t gid;
        pid_t pid;
        pid_t nspid;
        uid_t userns_owner;
        bool cgroup_truncated;
        bool cap_known;
        unsigned long long start_time;
        uint64_t pidfd_ino;
        uint64_t userns_ino;
        uint64_t cap_effective;
        const char *container_engine;   /* static strings (identity.h) */
} ClientKey;

typedef struct ClientFields {
        bool valid;
        ClientKey key;
        char cgroup[CLIENT_CGROUP_MAX];
        char unit[CLIENT_UNIT_MAX];
        char container_id[CLIENT_CONTAINER_ID_MAX + 1];

        struct iovec iov[CLIENT_FIELDS_N];      /* into journal[] */
        char journal[CLIENT_CGROUP_MAX + CLIENT_UNIT_MAX + CLIENT_CONTAINER_ID_MAX + 1024];
        char audit[3072];
} ClientFields;

static ClientFields client_cache[CLIENT_CACHE_SIZE];
static unsigned client_cache_next;

static ClientKey client_key(const ClientIdentity *c) {
        ClientKey k;

        memset(&k, 0, sizeof(k));       /* padding too: keys are compared with memcmp() */
        k.uid = c->uid;
        k.gid = c->gid;
        k.pid = c->pid;
        k.nspid = c->nspid;
        k.userns_owner = c->userns_owner;
        k.cgroup_truncated = c->cgroup_truncated;
        k.cap_known = c->cap_known;
        k.start_time = c->start_time;
        k.pidfd_ino = c->pidfd_ino;
        k.userns_ino = c->userns_ino;
        k.cap_effective = c->cap_known ? c->cap_effective : 0;
        k.container_engine = c->container_engine;
        return k;
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

/* The NOIOMMUD_CLIENT_* journal fields. Unknown values are "", never a made-up number that
 * would be read as a real owner or capability set. */
static void client_fields_format(ClientFields *f, const ClientIdentity *c) {
        size_t o = 0, n = 0;

#define ADD(...)                                                                                \
        do {                                                                                    \
                assert(o < sizeof(f->journal));  /* 13 fields fit: the buffer has room for each */ \
                int _k = snprintf(f->journal + o, sizeof(f->journal) - o, __VA_ARGS__);         \
                size_t _l = _k < 0 ? 0 : MIN((size_t) _k, sizeof(f->journal) - o - 1);         \
                f->iov[n++] = (struct iovec) { f->journal + o, _l };                            \
                o += _l + 1;                                                                    \
        } while (false)

        ADD("NOIOMMUD_CLIENT_UID=%u", (unsigned) c->uid);
        ADD("NOIOMMUD_CLIENT_GID=%u", (unsigned) c->gid);
        ADD("NOIOMMUD_CLIENT_PID=%i", (int) c->pid);
        ADD("NOIOMMUD_CLIENT_START_TIME=%llu", c->start_time);
        ADD("NOIOMMUD_CLIENT_PIDFD_INO=%" PRIu64, c->pidfd_ino);
        ADD("NOIOMMUD_CLIENT_UNIT=%s", c->unit);
        ADD("NOIOMMUD_CLIENT_CGROUP=%s%s", c->cgroup, c->cgroup_truncated ? "..." : "");
        ADD("NOIOMMUD_CLIENT_CONTAINER_ID=%s", c->container_id);
        ADD("NOIOMMUD_CLIENT_CONTAINER_ENGINE=%s", c->container_engine ?: "");
        ADD("NOIOMMUD_CLIENT_NSPID=%i", (int) c->nspid);
        ADD("NOIOMMUD_CLIENT_USERNS=%" PRIu64, c->userns_ino);
        if (c->userns_owner == (uid_t) -1)
                ADD("NOIOMMUD_CLIENT_USERNS_OWNER=");
        else
                ADD("NOIOMMUD_CLIENT_USERNS_OWNER=%u", (unsigned) c->userns_owner);
        if (c->cap_known)
                ADD("NOIOMMUD_CLIENT_CAP_EFFECTIVE=%016" PRIx64, c->cap_effective);
        else
                ADD("NOIOMMUD_CLIENT_CAP_EFFECTIVE=");
#undef ADD
        assert(n == CLIENT_FIELDS_N);

        linux_audit_client_fields(c, f->audit, sizeof(f->audit));
}

static const ClientFields *client_fields(const ClientIdentity *c) {
        ClientKey key = client_key(c);
        ClientFields *f;

        for (size_t i = 0; i < CLIENT_CACHE_SIZE; i++) {
                f = &client_cache[i];
                if (f->valid && memcmp(&f->key, &key, sizeof(key)) == 0 && streq(f->cgroup, c->cgroup) &&
                    streq(f->unit, c->unit) && streq(f->container_id, c->container_id))
                        return f;
        }

        f = &client_cache[client_cache_next++ % CLIENT_CACHE_SIZE];
        f->valid = false;
        memcpy(&f->key, &key, sizeof(key));     /* padding too: an assignment need not copy it */
        (void) snprintf(f->cgroup, sizeof(f->cgroup), "%s", c->cgroup);
        (void) snprintf(f->unit, sizeof(f->unit), "%s", c->unit);
        (void) snprintf(f->container_id, sizeof(f->container_id), "%s", c->container_id);
        client_fields_format(f, c);
        /* Valid only if the strings were copied whole: otherwise every use formats anew. */
        f->valid = streq(f->cgroup, c->cgroup) && streq(f->unit, c->unit) &&
                   streq(f->container_id, c->container_id);
        return f;
}

/* --- Journal records, written with sd_journal_sendv() ---------------------------------------
 *
 * sd_journal_send() formats every field with vasprintf() (one allocation each) before it calls
 * sd_journal_sendv() itself (systemd 252 src/libsystemd/sd-journal/journal-send.c); here the
 * fields are formatted into one buffer on the stack, constant fields are not formatted at all,
 * and the client's fields come from client_fields(). journald receives the same datagram. */

#define RECORD_IOV_MAX 48

typedef struct JournalRecord {
        struct iovec iov[RECORD_IOV_MAX];
        size_t n;
        size_t used;
        char buf[4096];
} JournalRecord;

/* Only the counters: the buffer is written before it is read (zeroing its 4 KiB cost ≈ 600
 * instructions, 4% of a record). */
static void jr_init(JournalRecord *j) {
        j->n = 0;
        j->used = 0;
}

/* A constant "FIELD=value": not copied. */
static void jr_add(JournalRecord *j, const char *field) {
        assert(j->n < RECORD_IOV_MAX);
        j->iov[j->n++] = (struct iovec) { (char *) field, strlen(field) };
}

_printf_(2, 3)
static void jr_addf(JournalRecord *j, const char *format, ...) {
        size_t avail = sizeof(j->buf) - j->used;
        va_list ap;
        int k;

        assert(j->n < RECORD_IOV_MAX);
        if (avail < 2)
                return;         /* cannot happen with the fields below; never a broken field */
        va_start(ap, format);
        k = vsnprintf(j->buf + j->used, avail, format, ap);
        va_end(ap);
        if (k < 0)
                return;
        /* A value longer than the buffer is cut, as the record's own snprintf()s cut MESSAGE */
        j->iov[j->n++] = (struct iovec) { j->buf + j->used, MIN((size_t) k, avail - 1) };
        j->used += MIN((size_t) k, avail - 1) + 1;
}

static void jr_add_priority(JournalRecord *j, int priority) {
        static const char *const table[] = {
                "PRIORITY=0", "PRIORITY=1", "PRIORITY=2", "PRIORITY=3",
                "PRIORITY=4", "PRIORITY=5", "PRIORITY=6", "PRIORITY=7",
        };

        assert(priority >= 0 && priority < (int) ELEMENTSOF(table));
        jr_add(j, table[priority]);
}

/* The iovecs point into the cache entry: the record is sent before client_fields() runs again. */
static void jr_add_client(JournalRecord *j, const ClientIdentity *c) {
        const ClientFields *f = client_fields(c);

        assert(j->n + CLIENT_FIELDS_N <= RECORD_IOV_MAX);
        memcpy(j->iov + j->n, f->iov, sizeof(f->iov));
        j->n += CLIENT_FIELDS_N;
}

static void jr_add_device(JournalRecord *j, const InventoryDevice *d) {
        jr_addf(j, "NOIOMMUD_DEVICE=%s", d->address);
        jr_addf(j, "NOIOMMUD_PCI_ID=%04x:%04x", (unsigned) d->vendor_id, (unsigned) d->device_id);
        jr_addf(j, "NOIOMMUD_BACKEND=%s", backend_to_string(d->backend) ?: "none");
        jr_addf(j, "NOIOMMUD_IOMMU_GROUP=%i", d->iommu_group);
        jr_addf(j, "NOIOMMUD_NODE=%s", d->node_name);
        jr_addf(j, "NOIOMMUD_NODE_RDEV=%u:%u", major(d->rdev), minor(d->rdev));
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

/* Sends the record; its first field is MESSAGE=, mirrored to the log without a journal. */
static void jr_send(JournalRecord *j, int priority) {
        assert(j->n > 0 && j->iov[0].iov_len >= (sizeof("MESSAGE=") - 1));
        (void) sd_journal_sendv(j->iov, (int) j->n);
        mirror(priority, (const char *) j->iov[0].iov_base + (sizeof("MESSAGE=") - 1));
}

typedef struct RateLimit {
        usec_t begin;
        unsigned n;
        unsigned suppressed;
} RateLimit;

/* Returns true if this record may be written; reports suppressed counts when a new interval
 * starts. Only anomaly records call this: never a decision or a grant. */
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

/* "key=value key=value", the details sent to polkit; a pair that does not fit is cut and ends
 * the list. */
static void details_format(char **details, char *buf, size_t size) {
        size_t off = 0;

        buf[0] = 0;
        for (char **d = details; d && d[0] && d[1]; d += 2) {
                int k = snprintf(buf + off, size - off, "%s%s=%s", off ? " " : "", d[0], d[1]);
                if (k < 0 || (size_t) k >= size - off)
                        break;
                off += (size_t) k;
        }
}

static int linux_audit_acct(const ClientIdentity *c, const char *action, bool ok,
                            const char *reason) {
        char msg[4096];

        /* The kernel stamps the record with the daemon's pid/uid/auid; the client is named in
         * the body. action and reason are our own constants, never client text. */
        (void) snprintf(msg, sizeof(msg), "op=authorize action=%s reason=%s spid=%i suid=%u%s",
                        action, reason ?: "none", (int) c->pid, (unsigned) c->uid, client_fields(c)->audit);
        return linux_audit_send(LINUX_AUDIT_USER_ACCT, msg, ok);
}

static int linux_audit_dev(LinuxAuditType type, const ClientIdentity *c, const char *op, const char *lease_id,
                           const InventoryDevice *d, const char *reason, bool ok) {
        char msg[4096];

        /* Every value here is validated (BDF, hex ids) or our own constant; the client's
         * containment fields are encoded. */
        (void) snprintf(msg, sizeof(msg),
                        "op=%s uuid=%s resrc=dev bus=pci device=%s pci_id=%04x:%04x backend=%s reason=%s spid=%i suid=%u%s",
                        op, lease_id, d->address, (unsigned) d->vendor_id, (unsigned) d->device_id,
                        backend_to_string(d->backend) ?: "none", reason, (int) c->pid, (unsigned) c->uid,
                        client_fields(c)->audit);
        return linux_audit_send(type, msg, ok);
}

void record_started(const char *listen_description) {
        JournalRecord j;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=noiommud " PACKAGE_VERSION " started, listening on %s.", listen_description);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_STARTED);
        jr_add_priority(&j, LOG_INFO);
        jr_add(&j, "NOIOMMUD_VERSION=" PACKAGE_VERSION);
        jr_send(&j, LOG_INFO);
}

void record_reloaded(const char *listen_description, unsigned n_connections, unsigned n_leases,
                    unsigned n_regions, uint64_t pause_usec) {
        JournalRecord j;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=noiommud " PACKAGE_VERSION " re-executed in %llu ms, keeping %u connections, "
                "%u device leases and %u allocations; listening on %s.",
                (unsigned long long) (pause_usec / 1000), n_connections, n_leases, n_regions,
                listen_description);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_RELOADED);
        jr_add_priority(&j, LOG_NOTICE);
        jr_add(&j, "NOIOMMUD_VERSION=" PACKAGE_VERSION);
        jr_addf(&j, "NOIOMMUD_RELOAD_USEC=%llu", (unsigned long long) pause_usec);
        jr_send(&j, LOG_NOTICE);
}

void record_stopping(unsigned n_connections, unsigned n_regions) {
        JournalRecord j;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=noiommud stopping, closing %u connections and freeing %u allocations.",
                n_connections, n_regions);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_STOPPING);
        jr_add_priority(&j, LOG_INFO);
        jr_send(&j, LOG_INFO);
}

int record_authorization(const ClientIdentity *c, const char *action, char **details,
                        bool interactive, AuditResult result, const char *reason,
                        const char *polkit_error) {
        bool ok = result == AUDIT_RESULT_AUTHORIZED, asked_ok = ok;
        JournalRecord j;
        char dstr[512];
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

        details_format(details, dstr, sizeof(dstr));

        /* "denied: denied" says nothing twice: show the reason only when it adds something */
        bool show_reason = reason && !streq(reason, record_result_to_string(result));
        jr_init(&j);
        jr_addf(&j, "MESSAGE=%s %s for UID %u (PID %i)%s%s",
                action, ok ? "authorized" : "denied", (unsigned) c->uid, (int) c->pid,
                show_reason ? ": " : "", show_reason ? reason : "");
        jr_add(&j, ok ? "MESSAGE_ID=" NOIOMMU_MSGID_AUTHZ_GRANTED : "MESSAGE_ID=" NOIOMMU_MSGID_AUTHZ_DENIED);
        jr_add_priority(&j, ok ? LOG_NOTICE : LOG_WARNING);
        jr_add_client(&j, c);
        jr_addf(&j, "NOIOMMUD_POLKIT_ACTION=%s", action);
        jr_addf(&j, "NOIOMMUD_POLKIT_RESULT=%s", record_result_to_string(result));
        jr_addf(&j, "NOIOMMUD_POLKIT_DETAILS=%s", dstr);
        jr_addf(&j, "NOIOMMUD_POLKIT_ERROR=%s", polkit_error ?: "");
        jr_add(&j, interactive ? "NOIOMMUD_INTERACTIVE=1" : "NOIOMMUD_INTERACTIVE=0");
        jr_addf(&j, "NOIOMMUD_REASON=%s", reason ?: (ok ? "authorized" : "denied"));
        jr_addf(&j, "ERRNO=%i", r < 0 ? -r : 0);
        jr_send(&j, ok ? LOG_NOTICE : LOG_WARNING);
        return record_refuses(r, asked_ok) ? -EIO : 0;
}

void record_capability_refused(const ClientIdentity *c, const char *action, char **details,
                              bool interactive, const char *capability, bool unverifiable) {
        JournalRecord j;
        char dstr[512], why[64];

        details_format(details, dstr, sizeof(dstr));
        /* A refusal: a failure to write the Linux record only logs. */
        (void) snprintf(why, sizeof(why), "root-without-capabilities cap=%s", capability);
        (void) linux_audit_acct(c, action, false, why);

        jr_init(&j);
        jr_addf(&j, "MESSAGE=%s denied for UID 0 (PID %i) without asking polkit: the client %s %s in the initial user namespace%s%s",
                action, (int) c->pid, unverifiable ? "could not be shown to hold" : "does not hold",
                capability, c->container_id[0] ? ", container " : "", c->container_id);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_AUTHZ_DENIED);
        jr_add_priority(&j, LOG_WARNING);
        jr_add_client(&j, c);
        jr_addf(&j, "NOIOMMUD_POLKIT_ACTION=%s", action);
        jr_add(&j, "NOIOMMUD_POLKIT_RESULT=not-asked");
        jr_addf(&j, "NOIOMMUD_POLKIT_DETAILS=%s", dstr);
        jr_add(&j, interactive ? "NOIOMMUD_INTERACTIVE=1" : "NOIOMMUD_INTERACTIVE=0");
        jr_add(&j, "NOIOMMUD_REASON=root-without-capabilities");
        jr_addf(&j, "NOIOMMUD_REQUIRED_CAPABILITY=%s", capability);
        jr_addf(&j, "NOIOMMUD_CLIENT_USERNS_INITIAL=%i", c->userns_initial);
        jr_send(&j, LOG_WARNING);
}

void record_policy_unavailable(const ClientIdentity *c, const char *action, const char *why) {
        static RateLimit rl;
        JournalRecord j;

        if (!ratelimit_test(&rl, "policy-unavailable"))
                return;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=Cannot ask polkit about %s for UID %u: %s. Denying.",
                action, (unsigned) c->uid, why);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_POLICY_UNAVAILABLE);
        jr_add_priority(&j, LOG_ERR);
        jr_add_client(&j, c);
        jr_addf(&j, "NOIOMMUD_POLKIT_ACTION=%s", action);
        jr_addf(&j, "NOIOMMUD_REASON=%s", why);
        jr_send(&j, LOG_ERR);
}

void record_memory_granted(const ClientIdentity *c, const HugeRegion *r, size_t n_segments,
                          const char *kind, uint64_t first_dma_address, const char *lease_id) {
        JournalRecord j;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=Granted %" PRIu64 " bytes of pinned DMA memory (%zu x %" PRIu64 " byte pages) to UID %u (PID %i)",
                r->size, r->n_pages, r->hugepage_size, (unsigned) c->uid, (int) c->pid);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_MEMORY_GRANTED);
        jr_add_priority(&j, LOG_NOTICE);
        jr_add_client(&j, c);
        jr_addf(&j, "NOIOMMUD_MEMORY_ID=%s", r->id);
        jr_addf(&j, "NOIOMMUD_MEM_BYTES=%" PRIu64, r->size);
        jr_addf(&j, "NOIOMMUD_HUGEPAGE_SIZE=%" PRIu64, r->hugepage_size);
        jr_addf(&j, "NOIOMMUD_PAGES=%zu", r->n_pages);
        jr_addf(&j, "NOIOMMUD_SEGMENTS=%zu", n_segments);
        jr_addf(&j, "NOIOMMUD_NUMA_NODE=%i", r->numa_node);
        jr_addf(&j, "NOIOMMUD_ADDRESS_KIND=%s", kind);
        jr_addf(&j, "NOIOMMUD_FIRST_DMA_ADDRESS=0x%" PRIx64, first_dma_address);
        jr_addf(&j, "NOIOMMUD_FIRST_PHYSICAL_ADDRESS=0x%" PRIx64, r->n_pages ? r->phys[0] : 0);
        jr_addf(&j, "NOIOMMUD_LEASE_ID=%s", lease_id ?: "");
        jr_add(&j, "NOIOMMUD_PIN=io_uring");
        jr_addf(&j, "NOIOMMUD_POOL=%i", (int) r->pooled);
        jr_send(&j, LOG_NOTICE);
}

void record_memory_freed(const ClientIdentity *c, const HugeRegion *r, const char *reason,
                        bool pfn_changed) {
        int priority = pfn_changed ? LOG_WARNING : LOG_INFO;
        JournalRecord j;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=Freed %" PRIu64 " bytes of DMA memory of UID %u (PID %i): %s%s",
                r->size, (unsigned) c->uid, (int) c->pid, reason,
                pfn_changed ? "; pages moved or were punched out while allocated" : "");
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_MEMORY_FREED);
        jr_add_priority(&j, priority);
        jr_add_client(&j, c);
        jr_addf(&j, "NOIOMMUD_MEMORY_ID=%s", r->id);
        jr_addf(&j, "NOIOMMUD_MEM_BYTES=%" PRIu64, r->size);
        jr_addf(&j, "NOIOMMUD_HUGEPAGE_SIZE=%" PRIu64, r->hugepage_size);
        jr_addf(&j, "NOIOMMUD_REASON=%s", reason);
        jr_add(&j, pfn_changed ? "NOIOMMUD_PFN_CHANGED=1" : "NOIOMMUD_PFN_CHANGED=0");
        jr_send(&j, priority);
}

void record_protocol_violation(const ClientIdentity *c, const char *reason) {
        static RateLimit rl;
        JournalRecord j;

        if (!ratelimit_test(&rl, "protocol-violation"))
                return;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=Protocol violation by UID %u (PID %i): %s. Disconnecting.",
                (unsigned) c->uid, (int) c->pid, reason);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_PROTOCOL_VIOLATION);
        jr_add_priority(&j, LOG_WARNING);
        jr_add_client(&j, c);
        jr_addf(&j, "NOIOMMUD_REASON=%s", reason);
        jr_send(&j, LOG_WARNING);
}

void record_limit_exceeded(const ClientIdentity *c, const char *limit) {
        static RateLimit rl;
        JournalRecord j;

        if (!ratelimit_test(&rl, "limit-exceeded"))
                return;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=UID %u (PID %i) hit the limit %s.", (unsigned) c->uid, (int) c->pid, limit);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_LIMIT_EXCEEDED);
        jr_add_priority(&j, LOG_WARNING);
        jr_add_client(&j, c);
        jr_addf(&j, "NOIOMMUD_LIMIT=%s", limit);
        jr_send(&j, LOG_WARNING);
}

int record_lease_granted(const ClientIdentity *c, const char *lease_id, const InventoryDevice *d) {
        JournalRecord j;
        int r;

        r = linux_audit_dev(LINUX_AUDIT_DEV_ALLOC, c, "lease-grant", lease_id, d, "grant", true);
        if (record_refuses(r, true))
                return -EIO;    /* the caller ends the lease; its release is recorded instead */

        jr_init(&j);
        jr_addf(&j, "MESSAGE=Granted device %s (%04x:%04x, %s) to UID %u (PID %i), lease %s",
                d->address, (unsigned) d->vendor_id, (unsigned) d->device_id,
                backend_to_string(d->backend) ?: "none", (unsigned) c->uid, (int) c->pid, lease_id);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_LEASE_GRANTED);
        jr_add_priority(&j, LOG_NOTICE);
        jr_add_client(&j, c);
        jr_add_device(&j, d);
        jr_addf(&j, "NOIOMMUD_LEASE_ID=%s", lease_id);
        jr_send(&j, LOG_NOTICE);
        return 0;
}

void record_lease_quiesced(const ClientIdentity *c, const char *lease_id, const InventoryDevice *d,
                          bool reset, const char *reason) {
        int priority = reset ? LOG_INFO : LOG_WARNING;
        JournalRecord j;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=Quiesced device %s of lease %s (%s): Bus Master cleared%s",
                d->address, lease_id, reason, reset ? ", device reset" : ", no reset available");
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_LEASE_QUIESCED);
        jr_add_priority(&j, priority);
        jr_add_client(&j, c);
        jr_add_device(&j, d);
        jr_addf(&j, "NOIOMMUD_LEASE_ID=%s", lease_id);
        jr_add(&j, "NOIOMMUD_BUS_MASTER_CLEARED=1");
        jr_add(&j, reset ? "NOIOMMUD_RESET=1" : "NOIOMMUD_RESET=0");
        jr_addf(&j, "NOIOMMUD_REASON=%s", reason);
        jr_send(&j, priority);
}

void record_lease_released(const ClientIdentity *c, const char *lease_id, const InventoryDevice *d,
                          const char *reason, uint64_t bytes_freed, uint64_t duration_usec) {
        JournalRecord j;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=Released device %s of UID %u (PID %i), lease %s: %s",
                d->address, (unsigned) c->uid, (int) c->pid, lease_id, reason);
        /* A lease ended by the daemon because its client vanished while the daemon was down
         * has a record type of its own. */
        jr_add(&j, streq(reason, "reclaim-after-restart") ? "MESSAGE_ID=" NOIOMMU_MSGID_LEASE_RECLAIMED
                                                          : "MESSAGE_ID=" NOIOMMU_MSGID_LEASE_RELEASED);
        jr_add_priority(&j, LOG_INFO);
        jr_add_client(&j, c);
        jr_add_device(&j, d);
        jr_addf(&j, "NOIOMMUD_LEASE_ID=%s", lease_id);
        jr_addf(&j, "NOIOMMUD_REASON=%s", reason);
        jr_addf(&j, "NOIOMMUD_MEM_BYTES=%" PRIu64, bytes_freed);
        jr_addf(&j, "NOIOMMUD_DURATION_USEC=%" PRIu64, duration_usec);
        jr_send(&j, LOG_INFO);
        (void) linux_audit_dev(LINUX_AUDIT_DEV_DEALLOC, c, "lease-release", lease_id, d, reason, true);
}

void record_quiesce_failed(const ClientIdentity *c, const char *lease_id, const InventoryDevice *d,
                          int error, uint64_t bytes_kept) {
        JournalRecord j;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=Failed to quiesce device %s of lease %s: %s. Device quarantined, %" PRIu64 " bytes stay pinned.",
                d->address, lease_id, strerror(abs(error)), bytes_kept);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_QUIESCE_FAILED);
        jr_add_priority(&j, LOG_CRIT);
        jr_addf(&j, "ERRNO=%i", abs(error));
        jr_add_client(&j, c);
        jr_add_device(&j, d);
        jr_addf(&j, "NOIOMMUD_LEASE_ID=%s", lease_id);
        jr_addf(&j, "NOIOMMUD_MEM_BYTES=%" PRIu64, bytes_kept);
        jr_send(&j, LOG_CRIT);
        (void) linux_audit_dev(LINUX_AUDIT_DEV_DEALLOC, c, "lease-quarantine", lease_id, d, "quiesce-failed", false);
}

void record_lease_broken(const ClientIdentity *c, const char *lease_id, const InventoryDevice *d,
                        int error, const char *why, uint64_t bytes_kept) {
        JournalRecord j;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=DMA addresses of lease %s on device %s cannot be trusted: %s. Lease quarantined, %" PRIu64 " bytes stay pinned.",
                lease_id, d->address, why, bytes_kept);
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_LEASE_BROKEN);
        jr_add_priority(&j, LOG_CRIT);
        jr_addf(&j, "ERRNO=%i", abs(error));
        jr_add_client(&j, c);
        jr_add_device(&j, d);
        jr_addf(&j, "NOIOMMUD_LEASE_ID=%s", lease_id);
        jr_addf(&j, "NOIOMMUD_REASON=%s", why);
        jr_addf(&j, "NOIOMMUD_MEM_BYTES=%" PRIu64, bytes_kept);
        jr_send(&j, LOG_CRIT);
        (void) linux_audit_dev(LINUX_AUDIT_DEV_DEALLOC, c, "lease-quarantine", lease_id, d, "addresses-untrusted", false);
}

void record_lease_refused(const ClientIdentity *c, const InventoryDevice *d, int error, const char *why) {
        JournalRecord j;

        jr_init(&j);
        jr_addf(&j, "MESSAGE=Could not open device %s for UID %u (PID %i): %s (%s)",
                d->address, (unsigned) c->uid, (int) c->pid, why, strerror(abs(error)));
        jr_add(&j, "MESSAGE_ID=" NOIOMMU_MSGID_AUTHZ_DENIED);
        jr_add_priority(&j, LOG_WARNING);
        jr_addf(&j, "ERRNO=%i", abs(error));
        jr_add_client(&j, c);
        jr_add_device(&j, d);
        jr_add(&j, "NOIOMMUD_POLKIT_RESULT=authorized");
        jr_addf(&j, "NOIOMMUD_REASON=%s", why);
        jr_send(&j, LOG_WARNING);
}
