/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The audit trail without root and without a journal: record.c as the daemon links it, its
 * journal records caught at sd_journal_sendv() (the test links with --wrap=sd_journal_sendv, so
 * record.c's calls land in __wrap_sd_journal_sendv() below, byte for byte what journald would
 * get), and its Linux audit records written into a fake LinuxAuditOps whose answer each test
 * chooses (the kernel's EPERM without CAP_AUDIT_WRITE, ENOBUFS, ECONNREFUSED in a user
 * namespace).
 *
 * What is checked: every field of the records a grant writes, with its value; "auditFailure":
 * "deny" refusing an authorization and a device lease whose Linux record the kernel refused,
 * and "log" letting them through; grants and decisions never rate-limited while anomalies are;
 * the per-client field cache never naming the wrong client.
 *
 * `test-record --bench N` instead writes N authorization + memory grant + memory free records
 * through the real sd_journal_sendv() and the fake audit, for callgrind (see the commit that
 * added it for the command and figures).
 */
#include <stdarg.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>

#include <systemd/sd-journal.h>

#include "internal/log.h"
#include "internal/macro.h"
#include "msgid.h"
#include "record.h"
#include "tests.h"

/* --- the journal, caught -------------------------------------------------------------------- */

#define RECORDS_MAX 4096

typedef struct Caught {
        char **fields;  /* "FIELD=value", in the order sent */
        size_t n;
} Caught;

static Caught caught[RECORDS_MAX];
static size_t n_caught;
static bool bench;

int __real_sd_journal_sendv(const struct iovec *iov, int n);
int __wrap_sd_journal_sendv(const struct iovec *iov, int n);

int __wrap_sd_journal_sendv(const struct iovec *iov, int n) {
        Caught *c;

        if (bench)
                return __real_sd_journal_sendv(iov, n);

        ASSERT_TRUE(n_caught < RECORDS_MAX);
        c = &caught[n_caught++];
        c->fields = calloc((size_t) n, sizeof(char *));
        ASSERT_TRUE(c->fields);
        for (int i = 0; i < n; i++) {
                /* what sd_journal_sendv() itself refuses (journal-send.c): no '=' or too short */
                ASSERT_TRUE(iov[i].iov_len > 1 && memchr(iov[i].iov_base, '=', iov[i].iov_len));
                c->fields[i] = strndup(iov[i].iov_base, iov[i].iov_len);
                ASSERT_TRUE(c->fields[i]);
                ASSERT_EQ(strlen(c->fields[i]), iov[i].iov_len);       /* no NUL inside */
        }
        c->n = (size_t) n;
        return 0;
}

static void caught_reset(void) {
        for (size_t i = 0; i < n_caught; i++) {
                for (size_t k = 0; k < caught[i].n; k++)
                        free(caught[i].fields[k]);
                free(caught[i].fields);
        }
        n_caught = 0;
}

/* The value of field in record i, NULL if absent; the field must not appear twice. */
static const char *field(size_t i, const char *name) {
        const char *found = NULL;
        size_t l = strlen(name);

        ASSERT_TRUE(i < n_caught);
        for (size_t k = 0; k < caught[i].n; k++)
                if (strncmp(caught[i].fields[k], name, l) == 0 && caught[i].fields[k][l] == '=') {
                        ASSERT_TRUE(!found);
                        found = caught[i].fields[k] + l + 1;
                }
        return found;
}

/* Record i has exactly these fields (NULL-terminated name, value list), in any order. */
static void assert_record(size_t i, ...) {
        size_t n = 0;
        va_list ap;

        va_start(ap, i);
        for (;;) {
                const char *name = va_arg(ap, const char *), *value;

                if (!name)
                        break;
                value = va_arg(ap, const char *);
                if (!field(i, name))
                        fprintf(stderr, "record %zu lacks %s\n", i, name);
                ASSERT_STREQ(field(i, name), value);
                n++;
        }
        va_end(ap);
        ASSERT_EQ(caught[i].n, n);
}

/* --- Linux audit, faked --------------------------------------------------------------------- */

typedef struct AuditCall {
        LinuxAuditType type;
        char *msg;
        bool success;
} AuditCall;

static AuditCall audit_calls[RECORDS_MAX];
static size_t n_audit_calls;
static int audit_answer;        /* what the "kernel" answers every record */

static int fake_open(void) {
        return 0;
}

static void fake_close(void) {
}

static bool fake_is_open(void) {
        return true;
}

static int fake_log(LinuxAuditType type, const char *msg, bool success) {
        if (bench)
                return audit_answer;
        ASSERT_TRUE(n_audit_calls < RECORDS_MAX);
        audit_calls[n_audit_calls++] = (AuditCall) { type, strdup(msg), success };
        return audit_answer;
}

static const LinuxAuditOps fake_audit = {
        .open = fake_open,
        .close = fake_close,
        .is_open = fake_is_open,
        .log = fake_log,
};

static void reset(bool failure_log, int answer) {
        record_shutdown();
        caught_reset();
        for (size_t i = 0; i < n_audit_calls; i++)
                free(audit_calls[i].msg);
        n_audit_calls = 0;
        audit_answer = answer;
        record_setup(&fake_audit, failure_log);
}

/* --- fixtures ------------------------------------------------------------------------------- */

static ClientIdentity client(void) {
        ClientIdentity c = CLIENT_IDENTITY_INIT;

        c.uid = 1000;
        c.gid = 1001;
        c.pid = 4242;
        c.start_time = 123456789ULL;
        c.pidfd_ino = 77;
        strcpy(c.cgroup, "/system.slice/app.service");
        strcpy(c.unit, "app.service");
        strcpy(c.container_id, "");
        c.container_engine = NULL;
        c.nspid = 4242;
        c.userns_ino = 4026531837ULL;
        c.userns_owner = 0;
        c.userns_initial = 1;
        c.cap_effective = 0x1234;
        c.cap_known = true;
        return c;
}

static ClientIdentity container_client(void) {
        ClientIdentity c = client();

        c.uid = 100999;
        c.pid = 5151;
        c.nspid = 7;
        strcpy(c.cgroup, "/machine.slice/libpod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope/container");
        strcpy(c.unit, "libpod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope");
        strcpy(c.container_id, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
        c.container_engine = "podman";
        c.userns_owner = (uid_t) -1;
        c.userns_initial = -1;
        c.cap_known = false;
        return c;
}

static HugeRegion region(void) {
        static uint64_t phys[2] = { 0x40000000, 0x40200000 };
        HugeRegion r = {
                .memfd = -EBADF,
                .pin_fd = -EBADF,
                .size = 4 << 20,
                .hugepage_size = 2 << 20,
                .numa_node = 0,
                .n_pages = 2,
                .phys = phys,
        };

        strcpy(r.id, "0123456789abcdef0123456789abcdef");
        return r;
}

static InventoryDevice device(void) {
        InventoryDevice d = {
                .vendor_id = 0x1234,
                .device_id = 0x11e8,
                .backend = BACKEND_CDEV_NOIOMMU,
                .iommu_group = 3,
                .numa_node = -1,
                .rdev = makedev(511, 0),
        };

        strcpy(d.address, "0000:00:04.0");
        strcpy(d.node_name, "noiommu-vfio0");
        return d;
}

static char *details[] = { (char *) "size", (char *) "4194304", (char *) "hugepage_size", (char *) "2097152", NULL };

#define CLIENT_RECORD_FIELDS                                            \
        "NOIOMMUD_CLIENT_UID", "1000",                                  \
        "NOIOMMUD_CLIENT_GID", "1001",                                  \
        "NOIOMMUD_CLIENT_PID", "4242",                                  \
        "NOIOMMUD_CLIENT_START_TIME", "123456789",                      \
        "NOIOMMUD_CLIENT_PIDFD_INO", "77",                              \
        "NOIOMMUD_CLIENT_UNIT", "app.service",                          \
        "NOIOMMUD_CLIENT_CGROUP", "/system.slice/app.service",          \
        "NOIOMMUD_CLIENT_CONTAINER_ID", "",                             \
        "NOIOMMUD_CLIENT_CONTAINER_ENGINE", "",                         \
        "NOIOMMUD_CLIENT_NSPID", "4242",                                \
        "NOIOMMUD_CLIENT_USERNS", "4026531837",                         \
        "NOIOMMUD_CLIENT_USERNS_OWNER", "0",                            \
        "NOIOMMUD_CLIENT_CAP_EFFECTIVE", "0000000000001234"

/* --- tests ---------------------------------------------------------------------------------- */

/* The two records of AllocateMemory, every field and value. */
static void test_grant_records_carry_every_field(void) {
        ClientIdentity c = client();
        HugeRegion r = region();

        reset(/* failure_log= */ false, 0);
        ASSERT_OK(record_authorization(&c, "io.noiommud.allocate-memory", details, false,
                                       AUDIT_RESULT_AUTHORIZED, NULL, NULL));
        record_memory_granted(&c, &r, 1, "physical", 0x40000000, NULL);
        ASSERT_EQ(n_caught, 2);
        assert_record(0,
                      "MESSAGE", "io.noiommud.allocate-memory authorized for UID 1000 (PID 4242)",
                      "MESSAGE_ID", NOIOMMU_MSGID_AUTHZ_GRANTED,
                      "PRIORITY", "5",
                      CLIENT_RECORD_FIELDS,
                      "NOIOMMUD_POLKIT_ACTION", "io.noiommud.allocate-memory",
                      "NOIOMMUD_POLKIT_RESULT", "authorized",
                      "NOIOMMUD_POLKIT_DETAILS", "size=4194304 hugepage_size=2097152",
                      "NOIOMMUD_POLKIT_ERROR", "",
                      "NOIOMMUD_INTERACTIVE", "0",
                      "NOIOMMUD_REASON", "authorized",
                      "ERRNO", "0",
                      NULL);
        assert_record(1,
                      "MESSAGE", "Granted 4194304 bytes of pinned DMA memory (2 x 2097152 byte pages) to UID 1000 (PID 4242)",
                      "MESSAGE_ID", NOIOMMU_MSGID_MEMORY_GRANTED,
                      "PRIORITY", "5",
                      CLIENT_RECORD_FIELDS,
                      "NOIOMMUD_MEMORY_ID", "0123456789abcdef0123456789abcdef",
                      "NOIOMMUD_MEM_BYTES", "4194304",
                      "NOIOMMUD_HUGEPAGE_SIZE", "2097152",
                      "NOIOMMUD_PAGES", "2",
                      "NOIOMMUD_SEGMENTS", "1",
                      "NOIOMMUD_NUMA_NODE", "0",
                      "NOIOMMUD_ADDRESS_KIND", "physical",
                      "NOIOMMUD_FIRST_DMA_ADDRESS", "0x40000000",
                      "NOIOMMUD_FIRST_PHYSICAL_ADDRESS", "0x40000000",
                      "NOIOMMUD_LEASE_ID", "",
                      "NOIOMMUD_PIN", "io_uring",
                      "NOIOMMUD_POOL", "0",
                      NULL);

        /* One Linux record: the decision, the client named in the body. */
        ASSERT_EQ(n_audit_calls, 1);
        ASSERT_EQ(audit_calls[0].type, LINUX_AUDIT_USER_ACCT);
        ASSERT_TRUE(audit_calls[0].success);
        ASSERT_STREQ(audit_calls[0].msg,
                     "op=authorize action=io.noiommud.allocate-memory reason=none spid=4242 suid=1000 "
                     "cgroup=\"/system.slice/app.service\" unit=\"app.service\" container_id=none "
                     "nspid=4242 userns=4026531837 userns_owner=0 capeff=0000000000001234");
}

static void test_lease_records_carry_every_field(void) {
        ClientIdentity c = container_client();
        InventoryDevice d = device();

        reset(false, 0);
        ASSERT_OK(record_lease_granted(&c, "fedcba9876543210fedcba9876543210", &d));
        ASSERT_EQ(n_caught, 1);
        assert_record(0,
                      "MESSAGE", "Granted device 0000:00:04.0 (1234:11e8, cdev-noiommu) to UID 100999 (PID 5151), lease fedcba9876543210fedcba9876543210",
                      "MESSAGE_ID", NOIOMMU_MSGID_LEASE_GRANTED,
                      "PRIORITY", "5",
                      "NOIOMMUD_CLIENT_UID", "100999",
                      "NOIOMMUD_CLIENT_GID", "1001",
                      "NOIOMMUD_CLIENT_PID", "5151",
                      "NOIOMMUD_CLIENT_START_TIME", "123456789",
                      "NOIOMMUD_CLIENT_PIDFD_INO", "77",
                      "NOIOMMUD_CLIENT_UNIT", c.unit,
                      "NOIOMMUD_CLIENT_CGROUP", c.cgroup,
                      "NOIOMMUD_CLIENT_CONTAINER_ID", c.container_id,
                      "NOIOMMUD_CLIENT_CONTAINER_ENGINE", "podman",
                      "NOIOMMUD_CLIENT_NSPID", "7",
                      "NOIOMMUD_CLIENT_USERNS", "4026531837",
                      "NOIOMMUD_CLIENT_USERNS_OWNER", "",      /* unknown: empty, not -1 */
                      "NOIOMMUD_CLIENT_CAP_EFFECTIVE", "",     /* unknown: empty, not 0 */
                      "NOIOMMUD_DEVICE", "0000:00:04.0",
                      "NOIOMMUD_PCI_ID", "1234:11e8",
                      "NOIOMMUD_BACKEND", "cdev-noiommu",
                      "NOIOMMUD_IOMMU_GROUP", "3",
                      "NOIOMMUD_NODE", "noiommu-vfio0",
                      "NOIOMMUD_NODE_RDEV", "511:0",
                      "NOIOMMUD_LEASE_ID", "fedcba9876543210fedcba9876543210",
                      NULL);
        ASSERT_EQ(n_audit_calls, 1);
        ASSERT_EQ(audit_calls[0].type, LINUX_AUDIT_DEV_ALLOC);
        ASSERT_TRUE(strstr(audit_calls[0].msg, "op=lease-grant uuid=fedcba9876543210fedcba9876543210 resrc=dev bus=pci device=0000:00:04.0 pci_id=1234:11e8 backend=cdev-noiommu reason=grant spid=5151 suid=100999 "));
        ASSERT_TRUE(strstr(audit_calls[0].msg, " container_id=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef nspid=7 "));
        ASSERT_TRUE(strstr(audit_calls[0].msg, " userns_owner=-1 capeff=0000000000000000"));
}

/* auditFailure=deny: the kernel refused the decision's record, so it is not a grant. */
static void test_deny_refuses_authorization(void) {
        ClientIdentity c = client();

        reset(/* failure_log= */ false, -EPERM);
        ASSERT_ERROR(record_authorization(&c, "io.noiommud.allocate-memory", details, false,
                                          AUDIT_RESULT_AUTHORIZED, NULL, NULL), EIO);
        ASSERT_EQ(n_caught, 1);
        ASSERT_STREQ(field(0, "MESSAGE_ID"), NOIOMMU_MSGID_AUTHZ_DENIED);
        ASSERT_STREQ(field(0, "NOIOMMUD_REASON"), AUDIT_REASON_FAILED);
        ASSERT_STREQ(field(0, "NOIOMMUD_POLKIT_RESULT"), "error");
        ASSERT_STREQ(field(0, "ERRNO"), "1");
        ASSERT_STREQ(field(0, "PRIORITY"), "4");
        /* the success that failed, then the refusal it became */
        ASSERT_EQ(n_audit_calls, 2);
        ASSERT_TRUE(audit_calls[0].success);
        ASSERT_FALSE(audit_calls[1].success);
        ASSERT_TRUE(strstr(audit_calls[1].msg, "reason=" AUDIT_REASON_FAILED " "));

        /* a denial stays a denial and is not an error of its own */
        reset(false, -ENOBUFS);
        ASSERT_OK(record_authorization(&c, "io.noiommud.allocate-memory", details, false,
                                       AUDIT_RESULT_DENIED, "denied", NULL));
        ASSERT_STREQ(field(0, "MESSAGE_ID"), NOIOMMU_MSGID_AUTHZ_DENIED);
        ASSERT_STREQ(field(0, "NOIOMMUD_REASON"), "denied");
}

/* auditFailure=log: granted, the failure in the record. */
static void test_log_grants_and_says_so(void) {
        ClientIdentity c = client();
        InventoryDevice d = device();

        reset(/* failure_log= */ true, -EPERM);
        ASSERT_OK(record_authorization(&c, "io.noiommud.allocate-memory", details, false,
                                       AUDIT_RESULT_AUTHORIZED, NULL, NULL));
        ASSERT_STREQ(field(0, "MESSAGE_ID"), NOIOMMU_MSGID_AUTHZ_GRANTED);
        ASSERT_STREQ(field(0, "ERRNO"), "1");
        ASSERT_OK(record_lease_granted(&c, "fedcba9876543210fedcba9876543210", &d));
        ASSERT_STREQ(field(1, "MESSAGE_ID"), NOIOMMU_MSGID_LEASE_GRANTED);
}

/* ECONNREFUSED (a user namespace): no audit here, not a failure. */
static void test_user_namespace_is_no_audit(void) {
        ClientIdentity c = client();
        InventoryDevice d = device();

        reset(false, -ECONNREFUSED);
        ASSERT_OK(record_authorization(&c, "io.noiommud.allocate-memory", details, false,
                                       AUDIT_RESULT_AUTHORIZED, NULL, NULL));
        ASSERT_STREQ(field(0, "MESSAGE_ID"), NOIOMMU_MSGID_AUTHZ_GRANTED);
        ASSERT_STREQ(field(0, "ERRNO"), "0");
        ASSERT_OK(record_lease_granted(&c, "fedcba9876543210fedcba9876543210", &d));
        ASSERT_EQ(n_caught, 2);
}

/* A device lease whose DEV_ALLOC the kernel refused is not granted under deny, and no grant
 * record claims it was. */
static void test_deny_refuses_lease(void) {
        ClientIdentity c = client();
        InventoryDevice d = device();

        reset(false, -EPERM);
        ASSERT_ERROR(record_lease_granted(&c, "fedcba9876543210fedcba9876543210", &d), EIO);
        ASSERT_EQ(n_caught, 0);
        ASSERT_EQ(n_audit_calls, 1);
        ASSERT_EQ(audit_calls[0].type, LINUX_AUDIT_DEV_ALLOC);

        /* its end is recorded whatever audit says (and refuses nothing) */
        record_lease_released(&c, "fedcba9876543210fedcba9876543210", &d, "release", 0, 5);
        ASSERT_EQ(n_caught, 1);
        ASSERT_STREQ(field(0, "MESSAGE_ID"), NOIOMMU_MSGID_LEASE_RELEASED);
        ASSERT_EQ(n_audit_calls, 2);
        ASSERT_EQ(audit_calls[1].type, LINUX_AUDIT_DEV_DEALLOC);
}

/* A burst of grants and decisions is written in full; anomalies are limited to 50 a window. */
static void test_grants_never_rate_limited(void) {
        ClientIdentity c = client();
        InventoryDevice d = device();
        HugeRegion r = region();
        size_t n;

        reset(false, 0);
        for (unsigned i = 0; i < 400; i++) {
                ASSERT_OK(record_authorization(&c, "io.noiommud.allocate-memory", details, false,
                                               AUDIT_RESULT_AUTHORIZED, NULL, NULL));
                record_memory_granted(&c, &r, 1, "physical", 0x40000000, NULL);
                ASSERT_OK(record_lease_granted(&c, "fedcba9876543210fedcba9876543210", &d));
                record_memory_freed(&c, &r, "free", false);
                (void) record_authorization(&c, "io.noiommud.allocate-memory", details, false,
                                            AUDIT_RESULT_DENIED, "denied", NULL);
        }
        ASSERT_EQ(n_caught, 5 * 400);
        ASSERT_EQ(n_audit_calls, 3 * 400);

        reset(false, 0);
        for (unsigned i = 0; i < 400; i++)
                record_protocol_violation(&c, "malformed JSON");
        n = n_caught;
        ASSERT_EQ(n, 50);                       /* ANOMALY_BURST */
        ASSERT_OK(record_authorization(&c, "io.noiommud.allocate-memory", details, false,
                                       AUDIT_RESULT_AUTHORIZED, NULL, NULL));
        ASSERT_EQ(n_caught, n + 1);             /* the anomalies' limit is not the grants' */
}

static void assert_client_fields(size_t i, const ClientIdentity *c) {
        char buf[64];

        (void) snprintf(buf, sizeof(buf), "%u", (unsigned) c->uid);
        ASSERT_STREQ(field(i, "NOIOMMUD_CLIENT_UID"), buf);
        (void) snprintf(buf, sizeof(buf), "%i", (int) c->pid);
        ASSERT_STREQ(field(i, "NOIOMMUD_CLIENT_PID"), buf);
        ASSERT_TRUE(strncmp(field(i, "NOIOMMUD_CLIENT_CGROUP"), c->cgroup, strlen(c->cgroup)) == 0);
        ASSERT_STREQ(field(i, "NOIOMMUD_CLIENT_CGROUP") + strlen(c->cgroup), c->cgroup_truncated ? "..." : "");
        ASSERT_STREQ(field(i, "NOIOMMUD_CLIENT_UNIT"), c->unit);
        ASSERT_STREQ(field(i, "NOIOMMUD_CLIENT_CONTAINER_ID"), c->container_id);
        if (c->cap_known)
                (void) snprintf(buf, sizeof(buf), "%016llx", (unsigned long long) c->cap_effective);
        else
                buf[0] = 0;
        ASSERT_STREQ(field(i, "NOIOMMUD_CLIENT_CAP_EFFECTIVE"), buf);
}

/* The client's fields are formatted once per identity: never another client's, never stale. */
static void test_client_fields_follow_the_identity(void) {
        ClientIdentity ids[7];
        HugeRegion r = region();
        size_t k = 0;

        reset(false, 0);
        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                ids[i] = i % 2 ? container_client() : client();
                ids[i].pid += (pid_t) i;
                (void) snprintf(ids[i].cgroup, sizeof(ids[i].cgroup), "/user.slice/u%zu.slice/s.scope", i);
        }
        /* more identities than cached, interleaved */
        for (unsigned round = 0; round < 3; round++)
                for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                        record_memory_granted(&ids[i], &r, 1, "physical", 0, NULL);
                        assert_client_fields(k++, &ids[i]);
                }

        /* the same object changed in place: a field no key member covers */
        strcpy(ids[0].cgroup, "/system.slice/other.service");
        record_memory_granted(&ids[0], &r, 1, "physical", 0, NULL);
        assert_client_fields(k++, &ids[0]);
        ids[0].cap_known = false;
        record_memory_granted(&ids[0], &r, 1, "physical", 0, NULL);
        assert_client_fields(k++, &ids[0]);

        /* a copy of the identity elsewhere (a lease's holder, a polkit query's copy) */
        ClientIdentity copy = ids[3];
        record_memory_granted(&copy, &r, 1, "physical", 0, NULL);
        assert_client_fields(k++, &ids[3]);

        /* a cgroup path at the limit, cut, and one a client named with a newline and quote */
        memset(ids[1].cgroup, 'a', sizeof(ids[1].cgroup) - 1);
        ids[1].cgroup[0] = '/';
        ids[1].cgroup[sizeof(ids[1].cgroup) - 1] = 0;
        ids[1].cgroup_truncated = true;
        record_memory_granted(&ids[1], &r, 1, "physical", 0, NULL);
        assert_client_fields(k++, &ids[1]);
        strcpy(ids[2].cgroup, "/user.slice/evil\nMESSAGE_ID=forged \"x\".scope");
        n_audit_calls = 0;
        ASSERT_OK(record_authorization(&ids[2], "io.noiommud.allocate-memory", details, false,
                                       AUDIT_RESULT_AUTHORIZED, NULL, NULL));
        assert_client_fields(k, &ids[2]);
        ASSERT_STREQ(field(k, "MESSAGE_ID"), NOIOMMU_MSGID_AUTHZ_GRANTED);
        /* hex-encoded in the Linux record: no quote, no newline reaches it */
        ASSERT_TRUE(strstr(audit_calls[0].msg, " cgroup=2F757365722E736C6963652F6576696C0A"));
        ASSERT_FALSE(strchr(audit_calls[0].msg, '\n'));
        k++;
        ASSERT_EQ(n_caught, k);
}

static void run_bench(unsigned n) {
        ClientIdentity c = client();
        HugeRegion r = region();

        bench = true;
        log_set_max_level(LOG_CRIT);    /* no journal socket here: mirror() must not dominate */
        record_setup(&fake_audit, false);
        for (unsigned i = 0; i < n; i++) {
                (void) record_authorization(&c, "io.noiommud.allocate-memory", details, false,
                                            AUDIT_RESULT_AUTHORIZED, NULL, NULL);
                record_memory_granted(&c, &r, 1, "physical", 0x40000000, NULL);
                record_memory_freed(&c, &r, "free", false);
        }
        record_shutdown();
}

int main(int argc, char *argv[]) {
        if (argc == 3 && streq(argv[1], "--bench")) {
                run_bench((unsigned) strtoul(argv[2], NULL, 10));
                return 0;
        }

        log_set_max_level(LOG_ERR);     /* mirror() writes every record to the log without journald */
        TEST(test_grant_records_carry_every_field);
        TEST(test_lease_records_carry_every_field);
        TEST(test_deny_refuses_authorization);
        TEST(test_log_grants_and_says_so);
        TEST(test_user_namespace_is_no_audit);
        TEST(test_deny_refuses_lease);
        TEST(test_grants_never_rate_limited);
        TEST(test_client_fields_follow_the_identity);
        reset(false, 0);
        record_shutdown();
        caught_reset();
        return 0;
}
