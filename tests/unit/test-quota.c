/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Grant accounting without root: the quota's per-uid and total counters, and a Region's charge
 * from its constructor to its destructor (whichever container holds it meanwhile: connection,
 * lease, a quarantined lease's adopted list; none of them touches the counters any more).
 */
#include <sys/mman.h>

#include "fake-backend.h"
#include "internal/macro.h"
#include "quota.h"
#include "region.h"
#include "tests.h"

#define MiB (1024ULL * 1024ULL)

static void assert_usage(const Quota *q, uid_t uid, unsigned n, uint64_t bytes) {
        unsigned got_n;
        uint64_t got_bytes;

        quota_usage(q, uid, &got_n, &got_bytes);
        ASSERT_EQ(got_n, n);
        ASSERT_EQ(got_bytes, bytes);
}

static void test_charge_uncharge(void) {
        Quota q = {};
        QuotaCharge a = {}, b = {}, c = {};

        assert_usage(&q, 1000, 0, 0);
        ASSERT_OK(quota_charge(&q, 1000, 2 * MiB, &a));
        ASSERT_OK(quota_charge(&q, 1000, 4 * MiB, &b));
        ASSERT_OK(quota_charge(&q, 1001, 8 * MiB, &c));
        assert_usage(&q, 1000, 2, 6 * MiB);
        assert_usage(&q, 1001, 1, 8 * MiB);
        assert_usage(&q, 1002, 0, 0);
        ASSERT_EQ(q.n_regions, 3);
        ASSERT_EQ(q.bytes, 14 * MiB);

        quota_uncharge(&a);
        assert_usage(&q, 1000, 1, 4 * MiB);
        ASSERT_EQ(q.n_regions, 2);
        /* a second uncharge of the same charge, and one never made, change nothing */
        quota_uncharge(&a);
        quota_uncharge(&(QuotaCharge) {});
        quota_uncharge(NULL);
        assert_usage(&q, 1000, 1, 4 * MiB);
        ASSERT_EQ(q.bytes, 12 * MiB);

        quota_uncharge(&b);
        quota_uncharge(&c);
        assert_usage(&q, 1000, 0, 0);
        assert_usage(&q, 1001, 0, 0);
        ASSERT_EQ(q.n_regions, 0);
        ASSERT_EQ(q.bytes, 0);
        quota_done(&q);
}

static void test_many_uids_one_bucket(void) {
        Quota q = {};
        QuotaCharge ch[3 * QUOTA_UID_BUCKETS] = {};

        /* More uids than buckets: chains, and removal from the middle of a chain. */
        for (size_t i = 0; i < ELEMENTSOF(ch); i++)
                ASSERT_OK(quota_charge(&q, (uid_t) i, MiB, &ch[i]));
        for (size_t i = 0; i < ELEMENTSOF(ch); i += 2)
                quota_uncharge(&ch[i]);
        for (size_t i = 0; i < ELEMENTSOF(ch); i++)
                assert_usage(&q, (uid_t) i, i % 2, i % 2 ? MiB : 0);
        ASSERT_EQ(q.n_regions, ELEMENTSOF(ch) / 2);
        quota_done(&q);
        ASSERT_EQ(q.n_regions, 0);
        assert_usage(&q, 1, 0, 0);
}

/* A HugeRegion that owns no kernel object: no memfd, no mapping, no pin. */
static HugeRegion *fake_huge(uint64_t size) {
        HugeRegion *h = new0(HugeRegion, 1);

        ASSERT_TRUE(h);
        *h = (HugeRegion) {
                .memfd = -EBADF,
                .pin_fd = -EBADF,
                .addr = MAP_FAILED,
                .size = size,
                .hugepage_size = 2 * MiB,
        };
        memcpy(h->id, "0123456789abcdef0123456789abcdef", sizeof(h->id) - 1);
        return h;
}

static void test_region_charge_lifetime(void) {
        Quota q = {};
        RegionContext ctx = { .backend = &fake_backend, .quota = &q, .pagemap_fd = -EBADF };
        ClientIdentity holder = CLIENT_IDENTITY_INIT;
        Region *a = NULL, *b = NULL;

        holder.uid = 1000;
        ASSERT_OK(region_new(&ctx, fake_huge(2 * MiB), &holder, &a));
        holder.uid = 1001;
        ASSERT_OK(region_new(&ctx, fake_huge(4 * MiB), &holder, &b));
        assert_usage(&q, 1000, 1, 2 * MiB);
        assert_usage(&q, 1001, 1, 4 * MiB);
        ASSERT_EQ(a->holder.pidfd, -EBADF);     /* a copy for records, never an owned fd */
        ASSERT_EQ(a->kind, ADDRESS_PHYSICAL);

        /* Retired (freed by the client while a noiommu device could reach it) or adopted by a
         * quarantined lease: still pinned, so still charged. */
        a->retired = true;
        assert_usage(&q, 1000, 1, 2 * MiB);
        ASSERT_EQ(q.n_regions, 2);

        /* Only the destructor uncharges. */
        a = region_drop(a);
        ASSERT_TRUE(a == NULL);
        assert_usage(&q, 1000, 0, 0);
        assert_usage(&q, 1001, 1, 4 * MiB);
        b = region_drop(b);
        ASSERT_EQ(q.n_regions, 0);
        ASSERT_EQ(q.bytes, 0);
        quota_done(&q);
}

int main(void) {
        TEST(test_charge_uncharge);
        TEST(test_many_uids_one_bucket);
        TEST(test_region_charge_lifetime);
        return 0;
}
