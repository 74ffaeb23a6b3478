/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Link-time stand-ins for the daemon's privileged backends, for tests/fuzz/fuzz-conn only.
 *
 * fuzz-conn links the protocol side of the daemon for real (client.c, conn.c, dispatch.c,
 * method-*.c, manager.c, lease.c, region.c, quota.c, persist.c, fdstore.c, identity.c,
 * settings.c, monitor.c; daemon/meson.build lists them) and this file in place of the modules
 * that need privileges or the outside world: polkit over D-Bus (polkit.c), hugetlb memory and
 * pagemap (hugepage.c), VFIO (vfio.c), sysfs (inventory.c), Linux audit and the journal
 * (record.c). Without $NOTIFY_SOCKET the real fdstore.c is disabled, so persist.c stores
 * nothing. The daemon binary has no switch for any of this (security.md §10): these
 * definitions exist only in the fuzz binary.
 *
 * Every function of those modules' headers is defined here, so that a call the protocol side
 * starts making tomorrow still links; those the fuzzer cannot reach fail with -EOPNOTSUPP.
 * What the reachable ones do, so that requests get past authorization and back again:
 *
 *   polkit     answers through the real asynchronous path: the check is "sent", the verdict
 *              arrives from an sd-event defer source on a later loop iteration and calls
 *              done(userdata), and the handler then runs again from the top. Verdicts follow
 *              verdict_cycle[] from the start for each daemon instance: the first three checks
 *              are allowed, then denied, allowed, challenge, allowed, polkit unavailable, and
 *              again. An interactive check never gets an answer (an agent waiting for a user who
 *              never comes), so the client's hang-up, the connection's deadline or the daemon's
 *              shutdown has to cancel it.
 *   ids        sd_id128_randomize() (libsystemd's, replaced here for this binary only) counts
 *              up from 1 for each daemon instance, so lease and memory ids are predictable:
 *              the first is 00000000000000000000000000000001, and an input can release, free
 *              or revoke what it was granted earlier.
 *   hugepages  2 MiB (the default) and 1 GiB exist. 2 MiB allocations of up to
 *              STUB_HUGEPAGES_FREE pages succeed with an ordinary memfd and made-up physical
 *              addresses in two runs (two segments); larger ones fail with ENOSPC (OutOfMemory).
 *              1 GiB allocations fail the pin with EPERM (the daemon's InternalError path).
 *   inventory  a fixed set of devices, one per path through AcquireDevice (stub_devices[]).
 *   vfio       opening gives a memfd as the device fd; the mapping and quiesce results follow
 *              the device (stub_devices[]).
 *   audit      records nothing; only the grant of one device (stub_devices[]) fails to be
 *              recorded, as under "auditFailure": "deny" with a failing audit subsystem.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sysmacros.h>

#include <systemd/sd-event.h>
#include <systemd/sd-id128.h>

#include "record.h"
#include "fdstore.h"
#include "fuzz-conn-stubs.h"
#include "hugepage.h"
#include "internal/macro.h"
#include "inventory.h"
#include "lease.h"
#include "persist.h"
#include "polkit.h"
#include "vfio.h"

#define STUB_HUGEPAGE_2M (UINT64_C(2) << 20)
#define STUB_HUGEPAGE_1G (UINT64_C(1) << 30)
#define STUB_HUGEPAGES_FREE 64

/* --- state of one daemon instance -------------------------------------------------------- */

static unsigned n_checks;               /* polkit checks sent */
static uint64_t n_ids;                  /* ids handed out */

void stub_reset(void) {
        n_checks = 0;
        n_ids = 0;
}

int sd_id128_randomize(sd_id128_t *ret) {
        sd_id128_t id = {};
        uint64_t n = ++n_ids;

        for (size_t i = 0; i < sizeof(n); i++)
                id.bytes[15 - i] = (uint8_t) (n >> (8 * i));
        *ret = id;
        return 0;
}

/* --- polkit.c ---------------------------------------------------------------------------- */

typedef enum StubVerdict {
        STUB_PENDING,
        STUB_AUTHORIZED,
        STUB_DENIED,
        STUB_CHALLENGE,
        STUB_UNAVAILABLE,
        _STUB_VERDICT_MAX,
        _STUB_VERDICT_INVALID = -EINVAL,
} StubVerdict;

static const StubVerdict verdict_cycle[] = {
        STUB_AUTHORIZED, STUB_AUTHORIZED, STUB_AUTHORIZED, STUB_DENIED,
        STUB_AUTHORIZED, STUB_CHALLENGE, STUB_AUTHORIZED, STUB_UNAVAILABLE,
};

struct Polkit {
        sd_event *event;
        PolkitQuery *pending;           /* queries without a verdict yet */
        unsigned n_pending;
};

struct PolkitQuery {
        Polkit *polkit;
        PolkitQuery *next, *prev;       /* in polkit->pending while STUB_PENDING */
        sd_event_source *reply;         /* "polkitd's reply"; NULL for a check that hangs */
        uid_t uid;
        char *action;
        char **details;
        bool interactive;
        StubVerdict verdict;
        StubVerdict answer;             /* what the reply will say */
        polkit_done_t done;
        void *userdata;
};

static void stub_strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
}

static char **stub_strv_copy(char **l) {
        size_t n = 0;
        char **c;

        while (l && l[n])
                n++;
        c = new0(char *, n + 1);
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(l[i]);
                if (!c[i]) {
                        stub_strv_free(c);
                        return NULL;
                }
        }
        return c;
}

static bool stub_strv_equal(char **a, char **b) {
        size_t i;

        for (i = 0; a && a[i] && b && b[i]; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return (!a || !a[i]) && (!b || !b[i]);
}

static void pending_unlink(PolkitQuery *q) {
        Polkit *p = q->polkit;

        if (!p || (!q->prev && p->pending != q))
                return;
        if (q->prev)
                q->prev->next = q->next;
        else
                p->pending = q->next;
        if (q->next)
                q->next->prev = q->prev;
        q->next = q->prev = NULL;
        p->n_pending--;
}

int polkit_new(sd_event *event, Polkit **ret) {
        Polkit *p = new0(Polkit, 1);

        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(event);
        *ret = p;
        return 0;
}

Polkit *polkit_free(Polkit *p) {
        if (!p)
                return NULL;
        /* As in polkit.c: connections (and with them their queries) are freed first. */
        while (p->pending) {
                PolkitQuery *q = p->pending;

                pending_unlink(q);
                q->polkit = NULL;
                q->reply = sd_event_source_disable_unref(q->reply);
        }
        sd_event_unref(p->event);
        free(p);
        return NULL;
}

void polkit_connect(Polkit *p) {
}

static int on_reply(sd_event_source *s, void *userdata) {
        PolkitQuery *q = userdata;

        pending_unlink(q);
        q->verdict = q->answer;
        if (q->done)
                q->done(q->userdata);
        return 0;
}

int polkit_verify(Polkit *p, PolkitQuery **slot, const ClientIdentity *id, const char *action,
                  char **details, bool interactive, polkit_done_t done, void *userdata,
                  const char **ret_reason) {
        _cleanup_(polkit_query_freep) PolkitQuery *q = NULL;
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
                if ((*slot)->verdict == STUB_PENDING)
                        return 0;
                if (!streq((*slot)->action, action) || !stub_strv_equal((*slot)->details, details) ||
                    (*slot)->interactive != interactive)
                        *slot = polkit_query_free(*slot);
        }
        if (*slot) {
                q = TAKE_PTR(*slot);
                switch (q->verdict) {
                case STUB_AUTHORIZED:
                        /* The real re-check of the connecting process (identity.c). */
                        r = client_identity_still_valid(id);
                        if (r <= 0) {
                                *ret_reason = POLKIT_REASON_SUBJECT_GONE;
                                return -EACCES;
                        }
                        return 1;
                case STUB_DENIED:
                        *ret_reason = POLKIT_REASON_DENIED;
                        return -EACCES;
                case STUB_CHALLENGE:
                        return -EKEYREJECTED;
                case STUB_UNAVAILABLE:
                        *ret_reason = POLKIT_REASON_UNAVAILABLE;
                        return -EACCES;
                case STUB_PENDING:
                case _STUB_VERDICT_MAX:
                case _STUB_VERDICT_INVALID:
                default:
                        assert(false);
                        return -EINVAL;
                }
        }

        for (PolkitQuery *i = p->pending; i; i = i->next)
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
                .verdict = STUB_PENDING,
                .answer = verdict_cycle[n_checks++ % ELEMENTSOF(verdict_cycle)],
                .done = done,
                .userdata = userdata,
        };
        q->action = strdup(action);
        q->details = stub_strv_copy(details);
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
        q->next = p->pending;
        if (p->pending)
                p->pending->prev = q;
        p->pending = q;
        p->n_pending++;

        *slot = TAKE_PTR(q);
        return 0;
}

bool polkit_query_answered(const PolkitQuery *q) {
        return q && q->verdict != STUB_PENDING;
}

PolkitQuery *polkit_query_free(PolkitQuery *q) {
        if (!q)
                return NULL;
        pending_unlink(q);
        q->reply = sd_event_source_disable_unref(q->reply);
        free(q->action);
        stub_strv_free(q->details);
        free(q);
        return NULL;
}

/* --- hugepage.c -------------------------------------------------------------------------- */

int hugepage_sizes(uint64_t *ret_sizes, size_t max, size_t *ret_n) {
        size_t n = 0;

        if (n < max)
                ret_sizes[n++] = STUB_HUGEPAGE_2M;
        if (n < max)
                ret_sizes[n++] = STUB_HUGEPAGE_1G;
        *ret_n = n;
        return 0;
}

int hugepage_default_size(uint64_t *ret) {
        *ret = STUB_HUGEPAGE_2M;
        return 0;
}

int hugepage_size_supported(uint64_t hugepage_size) {
        return hugepage_size == STUB_HUGEPAGE_2M || hugepage_size == STUB_HUGEPAGE_1G;
}

int huge_region_new(const char *id, uint64_t size, uint64_t hugepage_size, int numa_node,
                    int pagemap_fd, HugeRegion **ret) {
        _cleanup_(huge_region_freep) HugeRegion *r = NULL;
        size_t n_pages;

        assert(hugepage_size > 0 && size % hugepage_size == 0);

        if (hugepage_size == STUB_HUGEPAGE_1G)
                return -EPERM;                  /* "io_uring disabled": the pin fails */
        if (size / hugepage_size > STUB_HUGEPAGES_FREE)
                return -ENOSPC;
        n_pages = (size_t) (size / hugepage_size);

        r = new0(HugeRegion, 1);
        if (!r)
                return -ENOMEM;
        *r = (HugeRegion) {
                .memfd = -EBADF,
                .pin_fd = -EBADF,
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

        r->memfd = memfd_create("fuzz-conn-region", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (r->memfd < 0)
                return negative_errno();

        *ret = TAKE_PTR(r);
        return 0;
}

HugeRegion *huge_region_free(HugeRegion *r) {
        if (!r)
                return NULL;
        r->memfd = safe_close(r->memfd);
        r->pin_fd = safe_close(r->pin_fd);
        free(r->phys);
        free(r);
        return NULL;
}

int huge_region_verify(const HugeRegion *r, int pagemap_fd) {
        return 0;
}

/* The same merge as hugepage.c's. */
int dma_segments_merge(const uint64_t *phys, size_t n_pages, uint64_t page_size, DmaSegment **ret) {
        _cleanup_free_ DmaSegment *s = NULL;
        size_t n = 0;

        if (n_pages == 0 || page_size == 0)
                return -EINVAL;
        s = new0(DmaSegment, n_pages);
        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < n_pages; i++) {
                if (n > 0 && s[n - 1].dma_address + s[n - 1].length == phys[i]) {
                        s[n - 1].length += page_size;
                        continue;
                }
                s[n++] = (DmaSegment) { .offset = i * page_size, .length = page_size, .dma_address = phys[i] };
        }
        *ret = TAKE_PTR(s);
        return (int) n;
}

int pagemap_resolve(int pagemap_fd, const void *addr, uint64_t len, uint64_t *ret_phys) {
        return -EOPNOTSUPP;
}

int huge_region_restore(const char *id, int memfd, int pin_fd, uint64_t size, uint64_t hugepage_size,
                        const uint64_t *phys, size_t n_pages, int pagemap_fd, HugeRegion **ret) {
        (void) safe_close(memfd);
        (void) safe_close(pin_fd);
        return -EOPNOTSUPP;
}

/* --- inventory.c ------------------------------------------------------------------------- */

typedef enum StubOutcome {
        STUB_WORKS,
        STUB_OPEN_BUSY,                 /* the kernel says the device or group is open elsewhere */
        STUB_OPEN_UNSUPPORTED,          /* the backend is not usable on this kernel */
        STUB_QUIESCE_FAILS,             /* the lease ends quarantined */
        STUB_AUDIT_FAILS,               /* the grant's DEV_ALLOC record cannot be written */
} StubOutcome;

/* One device per path through AcquireDevice. fuzz-conn.c's configuration enables the noiommu
 * ones except 0000:03:00.0; devices behind an IOMMU are enabled by default. */
static const struct {
        const char *address;
        Backend backend;
        const char *reason;
        StubOutcome outcome;
} stub_devices[] = {
        { "0000:01:00.0", BACKEND_CDEV_NOIOMMU,   NULL, STUB_WORKS },
        { "0000:02:00.0", BACKEND_CDEV_IOMMU,     NULL, STUB_WORKS },
        { "0000:03:00.0", BACKEND_GROUP_NOIOMMU,  NULL, STUB_WORKS },  /* not enabled */
        { "0000:04:00.0", _BACKEND_INVALID, "no VFIO device node", STUB_WORKS },
        { "0000:05:00.0", BACKEND_GROUP_NOIOMMU,  NULL, STUB_QUIESCE_FAILS },
        { "0000:06:00.0", BACKEND_CDEV_NOIOMMU,   NULL, STUB_OPEN_BUSY },
        { "0000:07:00.0", BACKEND_CDEV_IOMMU,     NULL, STUB_OPEN_UNSUPPORTED },
        { "0000:08:00.0", BACKEND_CDEV_IOMMU,     NULL, STUB_AUDIT_FAILS },
};

static StubOutcome stub_outcome(const char *address) {
        for (size_t i = 0; i < ELEMENTSOF(stub_devices); i++)
                if (streq(stub_devices[i].address, address))
                        return stub_devices[i].outcome;
        return STUB_OPEN_UNSUPPORTED;
}

static const char *const backend_table[_BACKEND_MAX] = {
        [BACKEND_CDEV_NOIOMMU]  = "cdev-noiommu",
        [BACKEND_CDEV_IOMMU]    = "cdev-iommu",
        [BACKEND_GROUP_NOIOMMU] = "group-noiommu",
};

const char *backend_to_string(Backend b) {
        if (b < 0 || b >= _BACKEND_MAX)
                return NULL;
        return backend_table[b];
}

Backend backend_from_string(const char *s) {
        if (!s)
                return _BACKEND_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(backend_table); i++)
                if (streq(backend_table[i], s))
                        return (Backend) i;
        return _BACKEND_INVALID;
}

int inventory_scan(const char *root, InventoryDevice **ret) {
        InventoryDevice *d;
        size_t n = ELEMENTSOF(stub_devices);

        d = new0(InventoryDevice, n);
        if (!d)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                Backend b = stub_devices[i].backend;

                d[i] = (InventoryDevice) {
                        .vendor_id = 0x1234,
                        .device_id = 0x11e8,
                        .backend = b,
                        .iommu_group = b == BACKEND_CDEV_NOIOMMU ? -1 : (int) i,
                        .numa_node = -1,
                        .rdev = makedev(511, (unsigned) i),
                        .reason = stub_devices[i].reason,
                };
                (void) snprintf(d[i].address, sizeof(d[i].address), "%s", stub_devices[i].address);
                (void) snprintf(d[i].driver, sizeof(d[i].driver), "vfio-pci");
                (void) snprintf(d[i].node_name, sizeof(d[i].node_name), "%s%zu",
                                b == BACKEND_CDEV_NOIOMMU ? "noiommu-vfio" :
                                b == BACKEND_GROUP_NOIOMMU ? "noiommu-" : "vfio", i);
        }
        *ret = d;
        return (int) n;
}

int inventory_noiommu_status(const char *root, const char **ret_reason) {
        *ret_reason = NULL;
        return 1;
}

void inventory_device_force(InventoryDevice *d, Backend b) {
        d->forced = true;
        d->forced_backend = b;
        if (d->backend != b) {
                d->backend = _BACKEND_INVALID;
                d->node_name[0] = 0;
                d->rdev = 0;
                d->reason = "forced backend unavailable (stub)";
        }
}

/* --- vfio.c ------------------------------------------------------------------------------ */

struct VfioDevice {
        Backend backend;
        StubOutcome outcome;
        int fd;                         /* the daemon's own handle */
        int client_fd;                  /* until it was sent */
        unsigned n_maps;
        uint64_t iova_next;
};

static const char *const address_kind_table[_ADDRESS_KIND_MAX] = {
        [ADDRESS_PHYSICAL] = "physical",
        [ADDRESS_IOVA] = "iova",
};

const char *address_kind_to_string(AddressKind k) {
        if (k < 0 || k >= _ADDRESS_KIND_MAX)
                return NULL;
        return address_kind_table[k];
}

int vfio_open_node(const char *path, dev_t rdev, int flags) {
        return -EOPNOTSUPP;
}

int vfio_device_open(const InventoryDevice *d, VfioDevice **ret) {
        _cleanup_(vfio_device_closep) VfioDevice *v = NULL;
        StubOutcome o = stub_outcome(d->address);

        if (o == STUB_OPEN_BUSY)
                return -EBUSY;
        if (o == STUB_OPEN_UNSUPPORTED)
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
        v->fd = memfd_create("fuzz-conn-device", MFD_CLOEXEC);
        if (v->fd < 0)
                return negative_errno();
        v->client_fd = fcntl(v->fd, F_DUPFD_CLOEXEC, 3);
        if (v->client_fd < 0)
                return negative_errno();

        *ret = TAKE_PTR(v);
        return 0;
}

VfioDevice *vfio_device_close(VfioDevice *v) {
        if (!v)
                return NULL;
        v->client_fd = safe_close(v->client_fd);
        v->fd = safe_close(v->fd);
        free(v);
        return NULL;
}

int vfio_device_client_fd(const VfioDevice *v) {
        return v->client_fd;
}

void vfio_device_client_fd_sent(VfioDevice *v) {
        v->client_fd = safe_close(v->client_fd);
}

int vfio_device_map(VfioDevice *v, HugeRegion *r, DmaSegment **ret_segments, size_t *ret_n,
                    AddressKind *ret_kind) {
        DmaSegment *s;
        int k;

        if (v->backend != BACKEND_CDEV_IOMMU) {
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

int vfio_device_unmap(VfioDevice *v, HugeRegion *r) {
        if (v->n_maps == 0)
                return -ENOENT;
        v->n_maps--;
        return 0;
}

int vfio_device_quiesce(VfioDevice *v, bool *ret_reset) {
        if (v->outcome == STUB_QUIESCE_FAILS)
                return -EIO;                    /* Bus Master did not read back as off */
        *ret_reset = v->backend != BACKEND_GROUP_NOIOMMU;
        return 0;
}

void vfio_device_get_fds(const VfioDevice *v, int *ret_dev, int *ret_grp, int *ret_ctr, int *ret_iommufd) {
        *ret_dev = v->fd;
        *ret_grp = *ret_ctr = *ret_iommufd = -EBADF;
}

void vfio_device_get_ids(const VfioDevice *v, uint32_t *ret_ioas_id, uint32_t *ret_dev_id,
                         uint32_t *ret_hwpt_id) {
        *ret_ioas_id = *ret_dev_id = *ret_hwpt_id = 0;
}

int vfio_device_get_map(const VfioDevice *v, const HugeRegion *r, uint64_t *ret_iova) {
        return -EOPNOTSUPP;
}

int vfio_device_restore(const InventoryDevice *d, int dev_fd, int grp_fd, int ctr_fd, int iommufd,
                        uint32_t ioas_id, uint32_t dev_id, uint32_t hwpt_id, VfioDevice **ret) {
        (void) safe_close(dev_fd);
        (void) safe_close(grp_fd);
        (void) safe_close(ctr_fd);
        (void) safe_close(iommufd);
        return -EOPNOTSUPP;
}

int vfio_device_restore_map(VfioDevice *v, const HugeRegion *r, uint64_t iova) {
        return -EOPNOTSUPP;
}

int vfio_device_check_map(VfioDevice *v, const HugeRegion *r, const uint64_t *granted) {
        return 0;
}

/* --- record.c ----------------------------------------------------------------------------- */

void record_setup(bool failure_log) {
}

void record_shutdown(void) {
}

void record_reloaded(const char *listen_description, unsigned n_connections, unsigned n_leases,
                    unsigned n_regions, uint64_t pause_usec) {
}

void record_started(const char *listen_description) {
}

void record_stopping(unsigned n_connections, unsigned n_regions) {
}

int record_authorization(const ClientIdentity *c, const char *action, char **details,
                        bool interactive, AuditResult result, const char *reason,
                        const char *polkit_error) {
        return 0;
}

void record_policy_unavailable(const ClientIdentity *c, const char *action, const char *why) {
}

void record_capability_refused(const ClientIdentity *c, const char *action, char **details,
                              bool interactive, const char *capability, bool unverifiable) {
}

void record_memory_granted(const ClientIdentity *c, const HugeRegion *r, size_t n_segments,
                          const char *kind, uint64_t first_dma_address, const char *lease_id) {
}

void record_memory_freed(const ClientIdentity *c, const HugeRegion *r, const char *reason,
                        bool pfn_changed) {
}

void record_protocol_violation(const ClientIdentity *c, const char *reason) {
}

void record_limit_exceeded(const ClientIdentity *c, const char *limit) {
}

int record_lease_granted(const ClientIdentity *c, const char *lease_id, const InventoryDevice *dev) {
        return stub_outcome(dev->address) == STUB_AUDIT_FAILS ? -EIO : 0;
}

void record_lease_quiesced(const ClientIdentity *c, const char *lease_id, const InventoryDevice *dev,
                          bool reset, const char *reason) {
}

void record_lease_released(const ClientIdentity *c, const char *lease_id, const InventoryDevice *dev,
                          const char *reason, uint64_t bytes_freed, uint64_t duration_usec) {
}

void record_quiesce_failed(const ClientIdentity *c, const char *lease_id, const InventoryDevice *dev,
                          int error, uint64_t bytes_kept) {
}

void record_lease_broken(const ClientIdentity *c, const char *lease_id, const InventoryDevice *dev,
                        int error, const char *why, uint64_t bytes_kept) {
}

void record_lease_refused(const ClientIdentity *c, const InventoryDevice *dev, int error,
                         const char *why) {
}

