/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The project's safety rule, without root: memory that a noiommu device could reach is released
 * only after the device is quiesced (design.md §3.3). lease.c and region.c run for real against
 * the shared fake backend (tests/fake-backend.c, the one fuzz-conn uses too), which reports every
 * device and memory operation in order; no VFIO device and no hugepage is touched (the fake's
 * "device" and "memory" are ordinary memfds).
 */
#include <stdarg.h>
#include <sys/mman.h>

#include "fake-backend.h"
#include "internal/macro.h"
#include "lease.h"
#include "quota.h"
#include "region.h"
#include "tests.h"

#define MiB (1024ULL * 1024ULL)

static char journal[256][48];
static size_t n_journal;

/* The shared fake reports every device and memory operation here, in order. */
static void trace(const char *what) {
        ASSERT_TRUE(n_journal < ELEMENTSOF(journal));
        (void) snprintf(journal[n_journal++], sizeof(journal[0]), "%s", what);
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
        fake_backend_reset();
        fake_backend_trace = trace;
}

static Quota quota;
static const RegionContext region_ctx = { .backend = &fake_backend, .quota = &quota, .pagemap_fd = -EBADF };

/* Memory from the shared fake (2 MiB, an ordinary memfd, made-up physical addresses). Whether
 * it is addressed by IOVA follows the device it is mapped for (behind an IOMMU: cdev-iommu). */
static Region *fake_region(const char *id) {
        ClientIdentity holder = CLIENT_IDENTITY_INIT;
        HugeRegion *h = NULL;
        Region *r;

        ASSERT_OK(fake_backend.memory.new(id, 2 * MiB, 2 * MiB, -1, -EBADF, &h));
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
        LeaseRegistry reg = { .backend = &fake_backend };
        Lease *l;
        Region *mapped, *retired, *adopted;
        size_t index;

        reset();
        l = active_lease(&reg, "0000:00:03.0", BACKEND_GROUP_NOIOMMU);
        mapped = fake_region("mapped");
        retired = fake_region("retired");
        adopted = fake_region("adopted");
        add(l, mapped);
        add(l, retired);
        lease_adopt_region(l, adopted);                 /* memory without a lease, freed while held */
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
        LeaseRegistry reg = { .backend = &fake_backend };
        Lease *l, *q;
        Region *mapped;

        reset();
        l = active_lease(&reg, "0000:00:04.0", BACKEND_CDEV_NOIOMMU);
        mapped = fake_region("kept");
        add(l, mapped);

        fake_backend_quiesce_fails = true;
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
        fake_backend_quiesce_fails = false;
        ASSERT_OK(lease_retry_quarantined(&q, "revoke"));
        ASSERT_TRUE(q == NULL);
        assert_before("quiesce", "unmap kept");
        assert_before("unmap kept", "free kept");
        assert_before("free kept", "close");
        ASSERT_TRUE(reg.leases == NULL);
        ASSERT_EQ(quota.n_regions, 0);
}

static void test_iommu_frees_at_once(void) {
        LeaseRegistry reg = { .backend = &fake_backend };
        Lease *l;
        size_t index;

        reset();
        l = active_lease(&reg, "0000:00:05.0", BACKEND_CDEV_IOMMU);
        add(l, fake_region("iova"));
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
        LeaseRegistry reg = { .backend = &fake_backend };
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
        LeaseRegistry reg = { .backend = &fake_backend };
        Lease *l;
        char id[32];

        reset();
        l = active_lease(&reg, "0000:00:07.0", BACKEND_GROUP_NOIOMMU);
        /* More regions than a lease may have, as a foreign state could list: the extra one is
         * adopted (kept until the quiesce), never freed at restore. */
        for (size_t i = 0; i <= NOIOMMU_REGIONS_PER_LEASE_MAX; i++) {
                (void) snprintf(id, sizeof(id), "r%zu", i);
                ASSERT_EQ(lease_restore_region(l, fake_region(id), ADDRESS_PHYSICAL, false, false, 0),
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
