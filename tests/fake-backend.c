/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The fake outside world (fake-backend.h). The core under test is real; only the operations of
 * daemon/backend.h are answered here, so that requests get past authorization and back again:
 *
 *   polkit     answers through the real asynchronous path: the check is "sent", the verdict
 *              arrives from an sd-event defer source on a later loop iteration and calls
 *              done(userdata), and the handler then runs again from the top. Verdicts follow
 *              verdict_cycle[] from the start after each fake_backend_reset(): the first three
 *              checks are allowed, then denied, allowed, challenge, allowed, polkit unavailable,
 *              and again. An interactive check never gets an answer (an agent waiting for a user
 *              who never comes), so the client's hang-up, the connection's deadline or the
 *              daemon's shutdown has to cancel it.
 *   ids        count up from 1 after each fake_backend_reset(), so lease and memory ids are
 *              predictable: the first is 00000000000000000000000000000001, and an input can
 *              release, free or revoke what it was granted earlier.
 *   hugepages  2 MiB (the default) and 1 GiB exist. 2 MiB allocations of up to FAKE_HUGEPAGES_FREE
 *              pages succeed with an ordinary memfd and made-up physical addresses in two runs
 *              (two segments); larger ones fail with ENOSPC (OutOfMemory). 1 GiB allocations fail
 *              the pin with EPERM (the daemon's "io_uring disabled" path). Nothing is pinned,
 *              nothing moves: verify finds the addresses unchanged; a restore is not possible.
 *   inventory  a fixed set of devices, one per path through AcquireDevice (fake_devices[]).
 *   vfio       opening gives a memfd as the device fd; the mapping and quiesce results follow
 *              the device (fake_devices[]; a device not in it works). Restoring fails.
 *   audit      the Linux audit "socket" opens and takes every record, except the DEV_ALLOC
 *              record of one device (fake_devices[]): the real record.c then refuses the grant,
 *              as under "auditFailure": "deny" with a failing audit subsystem. Nothing reaches
 *              the kernel, even when the test runs as root.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>

#include "fake-backend.h"
#include "internal/list.h"
#include "internal/macro.h"
#include "internal/strv.h"

#define FAKE_HUGEPAGE_2M (UINT64_C(2) << 20)
#define FAKE_HUGEPAGE_1G (UINT64_C(1) << 30)
#define FAKE_HUGEPAGES_FREE 64

void (*fake_backend_trace)(const char *what);
bool fake_backend_quiesce_fails;

static unsigned n_checks;               /* polkit checks sent */
static uint64_t n_ids;                  /* ids handed out */

void fake_backend_reset(void) {
        n_checks = 0;
        n_ids = 0;
        fake_backend_trace = NULL;
        fake_backend_quiesce_fails = false;
}

_printf_(1, 2)
static void trace(const char *fmt, ...) {
        char buf[128];
        va_list ap;

        if (!fake_backend_trace)
                return;
        va_start(ap, fmt);
        (void) vsnprintf(buf, sizeof(buf), fmt, ap);
        va_end(ap);
        fake_backend_trace(buf);
}

static int fake_random_id(sd_id128_t *ret) {
        sd_id128_t id = {};
        uint64_t n = ++n_ids;

        for (size_t i = 0; i < sizeof(n); i++)
                id.bytes[15 - i] = (uint8_t) (n >> (8 * i));
        *ret = id;
        return 0;
}

/* --- polkit ------------------------------------------------------------------------------ */

typedef enum FakeVerdict {
        FAKE_PENDING,
        FAKE_AUTHORIZED,
        FAKE_DENIED,
        FAKE_CHALLENGE,
        FAKE_UNAVAILABLE,
} FakeVerdict;

static const FakeVerdict verdict_cycle[] = {
        FAKE_AUTHORIZED, FAKE_AUTHORIZED, FAKE_AUTHORIZED, FAKE_DENIED,
        FAKE_AUTHORIZED, FAKE_CHALLENGE, FAKE_AUTHORIZED, FAKE_UNAVAILABLE,
};

/* The fake's own definitions of polkit.h's opaque types: only this file looks inside. */
struct Polkit {
        sd_event *event;
        LIST_HEAD(PolkitQuery, pending);        /* queries without a verdict yet */
        unsigned n_pending;
};

struct PolkitQuery {
        Polkit *polkit;                 /* set while in polkit->pending */
        LIST_FIELDS(PolkitQuery, pending);
        sd_event_source *reply;         /* "polkitd's reply"; NULL for a check that hangs */
        uid_t uid;
        char *action;
        char **details;
        bool interactive;
        FakeVerdict verdict;
        FakeVerdict answer;             /* what the reply will say */
        polkit_done_t done;
        void *userdata;
};

static void pending_unlink(PolkitQuery *q) {
        if (!q->polkit)
                return;
        LIST_REMOVE(pending, q->polkit->pending, q);
        q->polkit->n_pending--;
        q->polkit = NULL;
}

static int fake_polkit_new(sd_event *event, Polkit **ret) {
        Polkit *p = new0(Polkit, 1);

        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(event);
        *ret = p;
        return 0;
}

static Polkit *fake_polkit_free(Polkit *p) {
        if (!p)
                return NULL;
        /* As in polkit.c: connections (and with them their queries) are freed first. */
        while (p->pending) {
                PolkitQuery *q = p->pending;

                pending_unlink(q);
                q->reply = sd_event_source_disable_unref(q->reply);
        }
        sd_event_unref(p->event);
        free(p);
        return NULL;
}

static void fake_polkit_connect(Polkit *p) {
}

static int on_reply(sd_event_source *s, void *userdata) {
        PolkitQuery *q = userdata;

        pending_unlink(q);
        q->verdict = q->answer;
        if (q->done)
                q->done(q->userdata);
        return 0;
}

static PolkitQuery *fake_polkit_query_free(PolkitQuery *q) {
        if (!q)
                return NULL;
        pending_unlink(q);
        q->reply = sd_event_source_disable_unref(q->reply);
        free(q->action);
        strv_free(q->details);
        free(q);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(PolkitQuery *, fake_polkit_query_free);

/* The verdict of an answered query, as polkit.c gives it. */
static int verdict_result(PolkitQuery *q, const ClientIdentity *id, const char **ret_reason) {
        switch (q->verdict) {
        case FAKE_AUTHORIZED:
                /* The real re-check of the connecting process (identity.c). */
                if (client_identity_still_valid(id) <= 0) {
                        *ret_reason = POLKIT_REASON_SUBJECT_GONE;
                        return -EACCES;
                }
                return 1;
        case FAKE_DENIED:
                *ret_reason = POLKIT_REASON_DENIED;
                return -EACCES;
        case FAKE_CHALLENGE:
                return -EKEYREJECTED;
        case FAKE_UNAVAILABLE:
                *ret_reason = POLKIT_REASON_UNAVAILABLE;
                return -EACCES;
        case FAKE_PENDING:
        default:
                assert(false);
                return -EINVAL;
        }
}

static int fake_polkit_verify(Polkit *p, PolkitQuery **slot, const ClientIdentity *id, const char *action,
                              char **details, bool interactive, polkit_done_t done, void *userdata,
                              const char **ret_reason) {
        _cleanup_(fake_polkit_query_freep) PolkitQuery *q = NULL;
        unsigned n_uid = 0;
        int r;

        assert(p);
        assert(slot);
        assert(id);
        assert(action);

        *ret_reason = NULL;

        /* The same protocol as polkit.c: a pending query says "pending"; an answered one is
         * consumed if it answers exactly this question, and dropped otherwise. */
        if (*slot) {
                if ((*slot)->verdict == FAKE_PENDING)
                        return 0;
                if (!streq((*slot)->action, action) || !strv_equal((*slot)->details, details) ||
                    (*slot)->interactive != interactive)
                        *slot = fake_polkit_query_free(*slot);
        }
        if (*slot) {
                q = TAKE_PTR(*slot);
                return verdict_result(q, id, ret_reason);
        }

        LIST_FOREACH(pending, i, p->pending)
                if (i->uid == id->uid)
                        n_uid++;
        if (p->n_pending >= NOIOMMU_POLKIT_PENDING_MAX) {
                *ret_reason = "polkit-checks";
                return -EUSERS;
        }
        if (n_uid >= NOIOMMU_POLKIT_PENDING_PER_UID_MAX) {
                *ret_reason = "polkit-checks-per-uid";
                return -EUSERS;
        }

        q = new0(PolkitQuery, 1);
        if (!q)
                return -ENOMEM;
        *q = (PolkitQuery) {
                .uid = id->uid,
                .interactive = interactive,
                .verdict = FAKE_PENDING,
                .answer = verdict_cycle[n_checks++ % ELEMENTSOF(verdict_cycle)],
                .done = done,
                .userdata = userdata,
        };
        q->action = strdup(action);
        q->details = strv_copy(details);
        if (!q->action || (details && !q->details))
                return -ENOMEM;

        if (!interactive) {
                r = sd_event_add_defer(p->event, &q->reply, on_reply, q);
                if (r < 0)
                        return r;
                r = sd_event_source_set_enabled(q->reply, SD_EVENT_ONESHOT);
                if (r < 0)
                        return r;
        }

        q->polkit = p;
        LIST_PREPEND(pending, p->pending, q);
        p->n_pending++;

        *slot = TAKE_PTR(q);
        return 0;
}

static bool fake_polkit_query_answered(const PolkitQuery *q) {
        return q && q->verdict != FAKE_PENDING;
}

/* --- hugepage memory --------------------------------------------------------------------- */

static int fake_default_size(uint64_t *ret) {
        *ret = FAKE_HUGEPAGE_2M;
        return 0;
}

static int fake_size_supported(uint64_t hugepage_size) {
        return hugepage_size == FAKE_HUGEPAGE_2M || hugepage_size == FAKE_HUGEPAGE_1G;
}

static HugeRegion *fake_region_free(HugeRegion *r) {
        if (!r)
                return NULL;
        trace("free %s", r->id);
        r->memfd = safe_close(r->memfd);
        r->pin_fd = safe_close(r->pin_fd);
        free(r->phys);
        free(r);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(HugeRegion *, fake_region_free);

static int fake_region_new(const char *id, uint64_t size, uint64_t hugepage_size, int numa_node,
                           int pagemap_fd, HugeRegion **ret) {
        _cleanup_(fake_region_freep) HugeRegion *r = NULL;
        size_t n_pages;

        assert(hugepage_size > 0 && size % hugepage_size == 0);

        if (hugepage_size == FAKE_HUGEPAGE_1G)
                return -EPERM;                  /* "io_uring disabled": the pin fails */
        if (size / hugepage_size > FAKE_HUGEPAGES_FREE)
                return -ENOSPC;
        n_pages = (size_t) (size / hugepage_size);

        r = new0(HugeRegion, 1);
        if (!r)
                return -ENOMEM;
        *r = (HugeRegion) {
                .memfd = -EBADF,
                .pin_fd = -EBADF,
                .addr = MAP_FAILED,
                .size = size,
                .hugepage_size = hugepage_size,
                .numa_node = numa_node >= 0 ? numa_node : 0,
                .n_pages = n_pages,
        };
        (void) snprintf(r->id, sizeof(r->id), "%s", id);

        r->phys = new0(uint64_t, n_pages);
        if (!r->phys)
                return -ENOMEM;
        /* Two physically contiguous runs, so that replies carry two segments. */
        for (size_t i = 0; i < n_pages; i++)
                r->phys[i] = UINT64_C(0x100000000) + (i + (i >= n_pages / 2)) * hugepage_size;

        r->memfd = memfd_create("fake-backend-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (r->memfd < 0)
                return negative_errno();

        *ret = TAKE_PTR(r);
        return 0;
}

static int fake_region_restore(const char *id, int memfd, int pin_fd, uint64_t size, uint64_t hugepage_size,
                               const uint64_t *phys, size_t n_pages, int pagemap_fd, HugeRegion **ret) {
        (void) safe_close(memfd);
        (void) safe_close(pin_fd);
        return -EOPNOTSUPP;
}

static int fake_region_verify(const HugeRegion *r, int pagemap_fd) {
        return 0;
}

/* --- inventory --------------------------------------------------------------------------- */

typedef enum FakeOutcome {
        FAKE_WORKS,
        FAKE_OPEN_BUSY,                 /* the kernel says the device or group is open elsewhere */
        FAKE_OPEN_UNSUPPORTED,          /* the backend is not usable on this kernel */
        FAKE_QUIESCE_FAILS,             /* the lease ends quarantined */
        FAKE_AUDIT_FAILS,               /* the grant's DEV_ALLOC record cannot be written */
} FakeOutcome;

/* One device per path through AcquireDevice. fuzz-conn.c's configuration enables the noiommu
 * ones except 0000:03:00.0; devices behind an IOMMU are enabled by default. */
static const struct {
        const char *address;
        Backend backend;
        const char *reason;
        FakeOutcome outcome;
} fake_devices[] = {
        { "0000:01:00.0", BACKEND_CDEV_NOIOMMU,   NULL, FAKE_WORKS },
        { "0000:02:00.0", BACKEND_CDEV_IOMMU,     NULL, FAKE_WORKS },
        { "0000:03:00.0", BACKEND_GROUP_NOIOMMU,  NULL, FAKE_WORKS },  /* not enabled */
        { "0000:04:00.0", _BACKEND_INVALID, "no VFIO device node", FAKE_WORKS },
        { "0000:05:00.0", BACKEND_GROUP_NOIOMMU,  NULL, FAKE_QUIESCE_FAILS },
        { "0000:06:00.0", BACKEND_CDEV_NOIOMMU,   NULL, FAKE_OPEN_BUSY },
        { "0000:07:00.0", BACKEND_CDEV_IOMMU,     NULL, FAKE_OPEN_UNSUPPORTED },
        { "0000:08:00.0", BACKEND_CDEV_IOMMU,     NULL, FAKE_AUDIT_FAILS },
};

static FakeOutcome fake_outcome(const char *address) {
        for (size_t i = 0; i < ELEMENTSOF(fake_devices); i++)
                if (streq(fake_devices[i].address, address))
                        return fake_devices[i].outcome;
        return FAKE_WORKS;
}

static int fake_inventory_scan(const char *root, InventoryDevice **ret) {
        InventoryDevice *d;
        size_t n = ELEMENTSOF(fake_devices);

        d = new0(InventoryDevice, n);
        if (!d)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                Backend b = fake_devices[i].backend;

                d[i] = (InventoryDevice) {
                        .vendor_id = 0x1234,
                        .device_id = 0x11e8,
                        .backend = b,
                        .iommu_group = b == BACKEND_CDEV_NOIOMMU ? -1 : (int) i,
                        .numa_node = -1,
                        .rdev = makedev(511, (unsigned) i),
                        .reason = fake_devices[i].reason,
                };
                (void) snprintf(d[i].address, sizeof(d[i].address), "%s", fake_devices[i].address);
                (void) snprintf(d[i].driver, sizeof(d[i].driver), "vfio-pci");
                (void) snprintf(d[i].node_name, sizeof(d[i].node_name), "%s%zu",
                                b == BACKEND_CDEV_NOIOMMU ? "noiommu-vfio" :
                                b == BACKEND_GROUP_NOIOMMU ? "noiommu-" : "vfio", i);
        }
        *ret = d;
        return (int) n;
}

static int fake_inventory_noiommu_status(const char *root, const char **ret_reason) {
        *ret_reason = NULL;
        return 1;
}

/* --- vfio -------------------------------------------------------------------------------- */

/* The fake's own definition of vfio.h's opaque type. */
struct VfioDevice {
        Backend backend;
        FakeOutcome outcome;
        int fd;                         /* the daemon's own handle */
        int client_fd;                  /* until it was sent */
        unsigned n_maps;
        uint64_t iova_next;
};

static VfioDevice *fake_device_close(VfioDevice *v) {
        if (!v)
                return NULL;
        trace("close");
        v->client_fd = safe_close(v->client_fd);
        v->fd = safe_close(v->fd);
        free(v);
        return NULL;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(VfioDevice *, fake_device_close);

static int fake_device_open(const InventoryDevice *d, VfioDevice **ret) {
        _cleanup_(fake_device_closep) VfioDevice *v = NULL;
        FakeOutcome o = fake_outcome(d->address);

        trace("open %s", d->address);
        if (o == FAKE_OPEN_BUSY)
                return -EBUSY;
        if (o == FAKE_OPEN_UNSUPPORTED)
                return -EOPNOTSUPP;

        v = new0(VfioDevice, 1);
        if (!v)
                return -ENOMEM;
        *v = (VfioDevice) {
                .backend = d->backend,
                .outcome = o,
                .fd = -EBADF,
                .client_fd = -EBADF,
                .iova_next = UINT64_C(1) << 32,
        };
        v->fd = memfd_create("fake-backend-device", MFD_CLOEXEC);
        if (v->fd < 0)
                return negative_errno();
        v->client_fd = fcntl(v->fd, F_DUPFD_CLOEXEC, 3);
        if (v->client_fd < 0)
                return negative_errno();

        *ret = TAKE_PTR(v);
        return 0;
}

static int fake_device_restore(const InventoryDevice *d, int dev_fd, int grp_fd, int ctr_fd, int iommufd,
                               uint32_t ioas_id, uint32_t dev_id, uint32_t hwpt_id, VfioDevice **ret) {
        (void) safe_close(dev_fd);
        (void) safe_close(grp_fd);
        (void) safe_close(ctr_fd);
        (void) safe_close(iommufd);
        return -EOPNOTSUPP;
}

static int fake_device_client_fd(const VfioDevice *v) {
        return v->client_fd;
}

static void fake_device_client_fd_sent(VfioDevice *v) {
        v->client_fd = safe_close(v->client_fd);
}

static int fake_device_map(VfioDevice *v, HugeRegion *r, DmaSegment **ret_segments, size_t *ret_n,
                           AddressKind *ret_kind) {
        DmaSegment *s;
        int k;

        trace("map %s", r->id);
        if (v->backend != BACKEND_CDEV_IOMMU) {
                /* The real merge of physical addresses into segments (hugepage.c). */
                k = dma_segments_merge(r->phys, r->n_pages, r->hugepage_size, ret_segments);
                if (k < 0)
                        return k;
                v->n_maps++;
                *ret_n = (size_t) k;
                *ret_kind = ADDRESS_PHYSICAL;
                return 0;
        }

        s = new0(DmaSegment, 1);
        if (!s)
                return -ENOMEM;
        *s = (DmaSegment) { .offset = 0, .length = r->size, .dma_address = v->iova_next };
        v->iova_next += r->size;
        v->n_maps++;
        *ret_segments = s;
        *ret_n = 1;
        *ret_kind = ADDRESS_IOVA;
        return 0;
}

static int fake_device_unmap(VfioDevice *v, HugeRegion *r) {
        trace("unmap %s", r->id);
        if (v->n_maps == 0)
                return -ENOENT;
        v->n_maps--;
        return 0;
}

static int fake_device_restore_map(VfioDevice *v, const HugeRegion *r, uint64_t iova) {
        trace("restore-map %s", r->id);
        v->n_maps++;
        return 0;
}

static int fake_device_check_map(VfioDevice *v, const HugeRegion *r, const uint64_t *granted) {
        return 0;
}

static int fake_device_get_map(const VfioDevice *v, const HugeRegion *r, uint64_t *ret_iova) {
        return -EOPNOTSUPP;
}

static void fake_device_get_fds(const VfioDevice *v, int *ret_dev, int *ret_grp, int *ret_ctr, int *ret_iommufd) {
        *ret_dev = v->fd;
        *ret_grp = *ret_ctr = *ret_iommufd = -EBADF;
}

static void fake_device_get_ids(const VfioDevice *v, uint32_t *ret_ioas_id, uint32_t *ret_dev_id,
                                uint32_t *ret_hwpt_id) {
        *ret_ioas_id = *ret_dev_id = *ret_hwpt_id = 0;
}

static int fake_device_quiesce(VfioDevice *v, bool *ret_reset) {
        if (fake_backend_quiesce_fails || v->outcome == FAKE_QUIESCE_FAILS) {
                trace("quiesce-failed");
                return -EIO;                    /* Bus Master did not read back as off */
        }
        trace("quiesce");
        *ret_reset = v->backend != BACKEND_GROUP_NOIOMMU;
        return 0;
}

/* --- Linux audit ------------------------------------------------------------------------- */

static bool audit_open;

static int fake_audit_open(void) {
        audit_open = true;
        return 0;
}

static void fake_audit_close(void) {
        audit_open = false;
}

static bool fake_audit_is_open(void) {
        return audit_open;
}

static int fake_audit_log(LinuxAuditType type, const char *msg, bool success) {
        if (!audit_open)
                return -EBADF;
        /* record.c's DEV_ALLOC text names the device as " device=<address> ". */
        for (size_t i = 0; type == LINUX_AUDIT_DEV_ALLOC && i < ELEMENTSOF(fake_devices); i++) {
                char needle[64];

                (void) snprintf(needle, sizeof(needle), " device=%s ", fake_devices[i].address);
                if (fake_devices[i].outcome == FAKE_AUDIT_FAILS && strstr(msg, needle))
                        return -EIO;
        }
        return 0;
}

const BackendOps fake_backend = {
        .random_id = fake_random_id,
        .inventory = {
                .scan = fake_inventory_scan,
                .noiommu_status = fake_inventory_noiommu_status,
        },
        .memory = {
                .default_size = fake_default_size,
                .size_supported = fake_size_supported,
                .new = fake_region_new,
                .restore = fake_region_restore,
                .verify = fake_region_verify,
                .free = fake_region_free,
        },
        .device = {
                .open = fake_device_open,
                .restore = fake_device_restore,
                .client_fd = fake_device_client_fd,
                .client_fd_sent = fake_device_client_fd_sent,
                .map = fake_device_map,
                .unmap = fake_device_unmap,
                .restore_map = fake_device_restore_map,
                .check_map = fake_device_check_map,
                .get_map = fake_device_get_map,
                .get_fds = fake_device_get_fds,
                .get_ids = fake_device_get_ids,
                .quiesce = fake_device_quiesce,
                .close = fake_device_close,
        },
        .audit = {
                .open = fake_audit_open,
                .close = fake_audit_close,
                .is_open = fake_audit_is_open,
                .log = fake_audit_log,
        },
        .polkit = {
                .new = fake_polkit_new,
                .free = fake_polkit_free,
                .connect = fake_polkit_connect,
                .verify = fake_polkit_verify,
                .query_answered = fake_polkit_query_answered,
                .query_free = fake_polkit_query_free,
        },
};
