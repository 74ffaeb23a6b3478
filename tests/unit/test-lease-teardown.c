/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The project's safety rule, without root: memory that a noiommu device could reach is released
 * only after the device is quiesced (design.md §3.3). lease.c and region.c run for real against
 * a fake backend (LeaseBackend, RegionBackend) that records every call in order; no VFIO device,
 * no hugepage, no fd is touched.
 */
#include <stdarg.h>
#include <sys/mman.h>

#include "internal/macro.h"
#include "lease.h"
#include "quota.h"
#include "region.h"
#include "tests.h"

#define MiB (1024ULL * 1024ULL)

static char journal[256][48];
static size_t n_journal;
static bool quiesce_fails;

_printf_(1, 2)
static void record(const char *fmt, ...) {
        va_list ap;

        ASSERT_TRUE(n_journal < ELEMENTSOF(journal));
        va_start(ap, fmt);
        (void) vsnprintf(journal[n_journal++], sizeof(journal[0]), fmt, ap);
        va_end(ap);
}

/* The index of the first entry equal to what, or -1. */
static int find(const char *what) {
        for (size_t i = 0; i < n_journal; i++)
                if (streq(journal[i], what))
                        return (int) i;
        return -1;
}

static void reset(void) {
        n_journal = 0;
        quiesce_fails = false;
}

/* A VfioDevice is opaque to lease.c: the fake hands out a token it never dereferences. */
static char device_token;

static int fake_open(const InventoryDevice *d, VfioDevice **ret) {
        record("open %s", d->address);
        *ret = (VfioDevice *) &device_token;
        return 0;
}

static int fake_map(VfioDevice *v, HugeRegion *r, DmaSegment **ret_segments, size_t *ret_n, AddressKind *ret_kind) {
        DmaSegment *s = new0(DmaSegment, 1);

        ASSERT_TRUE(s);
        *s = (DmaSegment) { .offset = 0, .length = r->size, .dma_address = 0x100000000ULL };
        record("map %s", r->id);
        *ret_segments = s;
        *ret_n = 1;
        *ret_kind = r->hugepage_size == 1 ? ADDRESS_IOVA : ADDRESS_PHYSICAL;   /* see fake_huge() */
        return 0;
}

static int fake_unmap(VfioDevice *v, HugeRegion *r) {
        record("unmap %s", r->id);
        return 0;
}

static int fake_restore_map(VfioDevice *v, const HugeRegion *r, uint64_t iova) {
        record("restore-map %s", r->id);
        return 0;
}

static int fake_quiesce(VfioDevice *v, bool *ret_reset) {
        record(quiesce_fails ? "quiesce-failed" : "quiesce");
        *ret_reset = !quiesce_fails;
        return quiesce_fails ? -EIO : 0;
}

static VfioDevice *fake_close(VfioDevice *v) {
        if (v)
                record("close");
        return NULL;
}

static int fake_verify(const HugeRegion *r, int pagemap_fd) {
        return 0;
}

static HugeRegion *fake_free(HugeRegion *r) {
        record("free %s", r->id);
        free(r);
        return NULL;
}

static const LeaseBackend fake_lease_backend = {
        .open = fake_open,
        .map = fake_map,
        .unmap = fake_unmap,
        .restore_map = fake_restore_map,
        .quiesce = fake_quiesce,
        .close = fake_close,
};

static const RegionBackend fake_region_backend = {
        .verify = fake_verify,
        .free = fake_free,
};

static Quota quota;
static const RegionContext region_ctx = { .backend = &fake_region_backend, .quota = &quota, .pagemap_fd = -EBADF };

/* iova: the fake maps it behind an IOMMU (hugepage_size 1 marks it; never a real size). */
static Region *fake_region(const char *id, bool iova) {
        ClientIdentity holder = CLIENT_IDENTITY_INIT;
        HugeRegion *h = new0(HugeRegion, 1);
        Region *r;

        ASSERT_TRUE(h);
        *h = (HugeRegion) { .memfd = -EBADF, .pin_fd = -EBADF, .addr = MAP_FAILED, .size = 2 * MiB,
                            .hugepage_size = iova ? 1 : 2 * MiB };
        (void) snprintf(h->id, sizeof(h->id), "%s", id);
        holder.uid = 1000;
        ASSERT_OK(region_new(&region_ctx, h, &holder, &r));
        return r;
}

static Lease *active_lease(LeaseRegistry *reg, const char *address, Backend b) {
        ClientIdentity holder = CLIENT_IDENTITY_INIT;
        InventoryDevice d = { .backend = b, .iommu_group = -1 };
        Lease *l;

        holder.uid = 1000;
        (void) snprintf(d.address, sizeof(d.address), "%s", address);
        ASSERT_OK(lease_reserve(reg, NULL, &holder, &d, &l));
        ASSERT_EQ(l->state, LEASE_RESERVED);
        lease_wait_authorization(l);
        ASSERT_EQ(l->state, LEASE_AUTHORIZING);
        ASSERT_OK(lease_activate(l));
        ASSERT_EQ(l->state, LEASE_ACTIVE);
        return l;
}

static void add(Lease *l, Region *r) {
        _cleanup_free_ DmaSegment *segs = NULL;
        AddressKind kind;
        size_t n;

        ASSERT_OK(lease_add_region(l, r, &segs, &n, &kind));
}

static void assert_before(const char *a, const char *b) {
        int i = find(a), j = find(b);

        if (i < 0 || j < 0 || i >= j) {
                for (size_t k = 0; k < n_journal; k++)
                        fprintf(stderr, "  %zu: %s\n", k, journal[k]);
                fprintf(stderr, "expected \"%s\" before \"%s\"\n", a, b);
        }
        ASSERT_TRUE(i >= 0 && j >= 0 && i < j);
}

static void test_noiommu_release_order(void) {
        LeaseRegistry reg = { .backend = &fake_lease_backend };
        Lease *l;
        Region *mapped, *retired, *adopted;
        size_t index;

        reset();
        l = active_lease(&reg, "0000:00:03.0", BACKEND_GROUP_NOIOMMU);
        mapped = fake_region("mapped", false);
        retired = fake_region("retired", false);
        adopted = fake_region("adopted", false);
        add(l, mapped);
        add(l, retired);
        ASSERT_OK(lease_adopt_region(l, adopted));      /* memory without a lease, freed while held */
        ASSERT_EQ(quota.n_regions, 3);

        /* The client frees one: without an IOMMU the device may still write there. */
        ASSERT_TRUE(lease_find_region(l, "retired", &index) == retired);
        lease_free_region(l, index);
        ASSERT_TRUE(lease_find_region(l, "retired", &index) == NULL);
        ASSERT_EQ(find("unmap retired"), -1);
        ASSERT_EQ(find("free retired"), -1);
        ASSERT_EQ(quota.n_regions, 3);                  /* still pinned, still charged */

        ASSERT_OK(lease_end(&l, "release"));
        ASSERT_TRUE(l == NULL);                         /* lease_end() always clears */
        ASSERT_TRUE(reg.leases == NULL);

        /* quiesce strictly before any unmap or free, the device closed last */
        assert_before("quiesce", "unmap mapped");
        assert_before("quiesce", "unmap retired");
        assert_before("quiesce", "free mapped");
        assert_before("quiesce", "free retired");
        assert_before("quiesce", "free adopted");
        assert_before("unmap mapped", "free mapped");
        assert_before("unmap retired", "free retired");
        assert_before("free mapped", "close");
        assert_before("free adopted", "close");
        ASSERT_EQ(quota.n_regions, 0);
        ASSERT_EQ(quota.bytes, 0);
}

static void test_quiesce_failure_quarantines(void) {
        LeaseRegistry reg = { .backend = &fake_lease_backend };
        Lease *l, *q;
        Region *mapped;

        reset();
        l = active_lease(&reg, "0000:00:04.0", BACKEND_CDEV_NOIOMMU);
        mapped = fake_region("kept", false);
        add(l, mapped);

        quiesce_fails = true;
        ASSERT_ERROR(lease_end(&l, "client-exit"), EIO);
        ASSERT_TRUE(l == NULL);
        /* Nothing released: the device may still DMA. It lives on in the registry. */
        ASSERT_EQ(find("unmap kept"), -1);
        ASSERT_EQ(find("free kept"), -1);
        ASSERT_EQ(find("close"), -1);
        q = lease_find_by_address(&reg, "0000:00:04.0");
        ASSERT_TRUE(q != NULL);
        ASSERT_EQ(q->state, LEASE_QUARANTINED);
        ASSERT_EQ(quota.n_regions, 1);

        /* A second lease_end() of a quarantined lease does not retry: only an administrator. */
        l = q;
        ASSERT_ERROR(lease_end(&l, "client-exit"), EIO);
        ASSERT_EQ(find("quiesce"), -1);

        /* The administrator's revoke: quiesce again, and only then release. */
        quiesce_fails = false;
        ASSERT_OK(lease_retry_quarantined(&q, "revoke"));
        ASSERT_TRUE(q == NULL);
        assert_before("quiesce", "unmap kept");
        assert_before("unmap kept", "free kept");
        assert_before("free kept", "close");
        ASSERT_TRUE(reg.leases == NULL);
        ASSERT_EQ(quota.n_regions, 0);
}

static void test_iommu_frees_at_once(void) {
        LeaseRegistry reg = { .backend = &fake_lease_backend };
        Lease *l;
        size_t index;

        reset();
        l = active_lease(&reg, "0000:00:05.0", BACKEND_CDEV_IOMMU);
        add(l, fake_region("iova", true));
        /* Behind an IOMMU the unmap blocks the device at once: freed before any quiesce. */
        ASSERT_TRUE(lease_find_region(l, "iova", &index) != NULL);
        lease_free_region(l, index);
        assert_before("unmap iova", "free iova");
        ASSERT_EQ(find("quiesce"), -1);
        ASSERT_EQ(quota.n_regions, 0);
        ASSERT_OK(lease_end(&l, "release"));
        assert_before("free iova", "quiesce");
        assert_before("quiesce", "close");
}

static void test_reservation_never_opens(void) {
        LeaseRegistry reg = { .backend = &fake_lease_backend };
        ClientIdentity holder = CLIENT_IDENTITY_INIT;
        InventoryDevice d = { .backend = BACKEND_GROUP_NOIOMMU, .iommu_group = -1 };
        Lease *l, *other;

        reset();
        (void) snprintf(d.address, sizeof(d.address), "0000:00:06.0");
        ASSERT_OK(lease_reserve(&reg, NULL, &holder, &d, &l));
        /* A second reservation of the same device: busy, even before polkit answered. */
        ASSERT_ERROR(lease_reserve(&reg, NULL, &holder, &d, &other), EBUSY);
        lease_wait_authorization(l);
        /* Denied: dropped without ever opening, quiescing or closing anything. */
        ASSERT_OK(lease_end(&l, "client-exit"));
        ASSERT_EQ(n_journal, 0);
        ASSERT_TRUE(reg.leases == NULL);
}

static void test_restored_region_over_the_limit_is_kept(void) {
        LeaseRegistry reg = { .backend = &fake_lease_backend };
        Lease *l;
        char id[32];

        reset();
        l = active_lease(&reg, "0000:00:07.0", BACKEND_GROUP_NOIOMMU);
        /* More regions than a lease may have, as a foreign state could list: the extra one is
         * adopted (kept until the quiesce), never freed at restore. */
        for (size_t i = 0; i <= NOIOMMU_REGIONS_PER_LEASE_MAX; i++) {
                (void) snprintf(id, sizeof(id), "r%zu", i);
                ASSERT_EQ(lease_restore_region(l, fake_region(id, false), ADDRESS_PHYSICAL, false, false, 0),
                          i < NOIOMMU_REGIONS_PER_LEASE_MAX);
        }
        ASSERT_EQ(l->n_regions, NOIOMMU_REGIONS_PER_LEASE_MAX);
        ASSERT_EQ(l->n_adopted, 1);
        (void) snprintf(id, sizeof(id), "free r%d", NOIOMMU_REGIONS_PER_LEASE_MAX);
        ASSERT_EQ(find(id), -1);
        ASSERT_OK(lease_end(&l, "release"));
        assert_before("quiesce", id);
        ASSERT_EQ(quota.n_regions, 0);
}

int main(void) {
        TEST(test_noiommu_release_order);
        TEST(test_quiesce_failure_quarantines);
        TEST(test_iommu_frees_at_once);
        TEST(test_reservation_never_opens);
        TEST(test_restored_region_over_the_limit_is_kept);
        quota_done(&quota);
        return 0;
}
