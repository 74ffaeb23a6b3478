/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/pool.c's bookkeeping, without root: the shared fake outside world (fake-backend.c) with
 * its memory replaced by a counted one — a machine with a fixed number of free hugepages of
 * each size, which the pool's worker thread and the test's "requests" take from — so that the
 * promises of pool.h can be checked exactly: filled at start, a take is a hand-over with the
 * region's own id, refilled after, a request that needs the pool's pages gets them (the pool
 * gives back, waiting for the region in the making), non-matching or node-mismatched requests
 * are not served from it, and pool_free() joins the worker and frees everything.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fake-backend.h"
#include "internal/macro.h"
#include "pool.h"
#include "tests.h"

#define MiB (UINT64_C(1) << 20)
#define HP_2M (2 * MiB)
#define HP_1G (UINT64_C(1) << 30)

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t free_2m, free_1g;       /* free hugepages of each size, like HugePages_Free */
static unsigned live;                   /* regions not freed yet */
static unsigned made_off_main;          /* regions made by a thread other than main's */
static useconds_t slow_usec;            /* each new region takes this long ("zeroing") */
static pthread_t main_thread;

static uint64_t *free_of(uint64_t hp) {
        return hp == HP_1G ? &free_1g : &free_2m;
}

static int counted_size_supported(uint64_t hp) {
        return hp == HP_2M || hp == HP_1G;
}

static int counted_new(const char *id, uint64_t size, uint64_t hp, int numa_node, int pagemap_fd,
                       HugeRegion **ret) {
        HugeRegion *r;
        uint64_t n = size / hp;

        (void) pthread_mutex_lock(&lock);
        if (*free_of(hp) < n) {
                (void) pthread_mutex_unlock(&lock);
                return -ENOSPC;
        }
        *free_of(hp) -= n;
        live++;
        if (!pthread_equal(pthread_self(), main_thread))
                made_off_main++;
        (void) pthread_mutex_unlock(&lock);
        /* The pages are taken; zeroing them takes a while. */
        if (slow_usec > 0)
                (void) usleep(slow_usec);

        r = calloc(1, sizeof(*r));
        ASSERT_TRUE(r != NULL);
        *r = (HugeRegion) {
                .memfd = -EBADF,
                .pin_fd = -EBADF,
                .addr = MAP_FAILED,
                .size = size,
                .hugepage_size = hp,
                .numa_node = numa_node >= 0 ? numa_node : 0,
                .n_pages = (size_t) n,
        };
        memcpy(r->id, id, NOIOMMU_ID_LEN);
        *ret = r;
        return 0;
}

static HugeRegion *counted_free(HugeRegion *r) {
        if (!r)
                return NULL;
        (void) pthread_mutex_lock(&lock);
        *free_of(r->hugepage_size) += r->size / r->hugepage_size;
        ASSERT_TRUE(live > 0);
        live--;
        (void) pthread_mutex_unlock(&lock);
        free(r);
        return NULL;
}

static BackendOps ops;

static uint64_t get_free(uint64_t hp) {
        uint64_t v;

        (void) pthread_mutex_lock(&lock);
        v = *free_of(hp);
        (void) pthread_mutex_unlock(&lock);
        return v;
}

static unsigned ready(Pool *p) {
        unsigned n;
        uint64_t b;

        pool_usage(p, &n, &b);
        return n;
}

/* Runs the loop until the pool holds want regions (bounded: 10 s). */
static void wait_ready(sd_event *e, Pool *p, unsigned want) {
        for (unsigned i = 0; i < 10000 && ready(p) != want; i++)
                ASSERT_TRUE(sd_event_run(e, 1000) >= 0);
        ASSERT_EQ(ready(p), want);
}

/* Runs the loop for a while: nothing more may arrive. */
static void settle(sd_event *e) {
        for (unsigned i = 0; i < 50; i++)
                ASSERT_TRUE(sd_event_run(e, 1000) >= 0);
}

static void setup(uint64_t f2m, uint64_t f1g) {
        fake_backend_reset();
        ops = fake_backend;
        ops.memory.size_supported = counted_size_supported;
        ops.memory.new = counted_new;
        ops.memory.free = counted_free;
        free_2m = f2m;
        free_1g = f1g;
        live = made_off_main = 0;
        slow_usec = 0;
        main_thread = pthread_self();
}

static void test_fill_take_refill(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        const PoolSetting s[] = {
                { .hugepage_size = HP_2M, .size = 4 * MiB, .count = 2, .numa_node = -1 },
                { .hugepage_size = HP_1G, .size = HP_1G, .count = 1, .numa_node = -1 },
        };
        char id[NOIOMMU_ID_LEN + 1] = "ffffffffffffffffffffffffffffffff";
        Pool *p = NULL;
        HugeRegion *h = NULL;
        json_t *j;

        setup(16, 2);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(pool_new(e, &ops, -EBADF, s, ELEMENTSOF(s), &p));
        ASSERT_TRUE(p != NULL);
        wait_ready(e, p, 3);
        ASSERT_EQ(get_free(HP_2M), 12);
        ASSERT_EQ(get_free(HP_1G), 1);
        ASSERT_EQ(made_off_main, 3);    /* never on the loop */

        j = pool_to_json(p);
        ASSERT_TRUE(j != NULL);
        ASSERT_EQ(json_array_size(j), 2);
        ASSERT_EQ(json_integer_value(json_object_get(json_array_get(j, 0), "size")), 4 * MiB);
        ASSERT_EQ(json_integer_value(json_object_get(json_array_get(j, 0), "ready")), 2);
        ASSERT_EQ(json_integer_value(json_object_get(json_array_get(j, 0), "target")), 2);
        ASSERT_TRUE(json_is_null(json_object_get(json_array_get(j, 0), "numaNode")));
        ASSERT_EQ(json_integer_value(json_object_get(json_array_get(j, 1), "hugepageSize")), HP_1G);
        json_decref(j);

        /* A matching request: from the pool, with the region's own id; no page taken now. */
        ASSERT_OK(pool_allocate(p, &ops, id, 4 * MiB, HP_2M, -1, -EBADF, &h));
        ASSERT_TRUE(h->pooled);
        ASSERT_STREQ(id, h->id);
        ASSERT_TRUE(strcmp(id, "ffffffffffffffffffffffffffffffff") != 0);
        ASSERT_EQ(get_free(HP_2M), 12);
        ASSERT_EQ(ready(p), 2);
        /* ... refilled only from the next loop iteration on */
        wait_ready(e, p, 3);
        ASSERT_EQ(get_free(HP_2M), 10);
        counted_free(h);                /* the client's memory goes back to the system */
        ASSERT_EQ(get_free(HP_2M), 12);
        settle(e);
        ASSERT_EQ(ready(p), 3);         /* ... never to the pool */
        ASSERT_EQ(live, 3);

        /* Not matching in size: made fresh, the pool untouched. */
        ASSERT_OK(pool_allocate(p, &ops, id, 2 * MiB, HP_2M, -1, -EBADF, &h));
        ASSERT_FALSE(h->pooled);
        counted_free(h);
        ASSERT_EQ(ready(p), 3);

        p = pool_free(p);
        ASSERT_EQ(live, 0);
        ASSERT_EQ(get_free(HP_2M), 16);
        ASSERT_EQ(get_free(HP_1G), 2);
}

static void test_give_back(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        const PoolSetting s[] = {
                { .hugepage_size = HP_2M, .size = 4 * MiB, .count = 2, .numa_node = -1 },
                { .hugepage_size = HP_1G, .size = HP_1G, .count = 1, .numa_node = -1 },
        };
        char id[NOIOMMU_ID_LEN + 1] = "00000000000000000000000000000abc";
        Pool *p = NULL;
        HugeRegion *h = NULL, *h2 = NULL;

        /* The pool holds every free 2 MiB page. */
        setup(4, 1);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(pool_new(e, &ops, -EBADF, s, ELEMENTSOF(s), &p));
        wait_ready(e, p, 3);
        ASSERT_EQ(get_free(HP_2M), 0);

        /* A request the pool's pages are needed for still succeeds; only that size goes back. */
        ASSERT_OK(pool_allocate(p, &ops, id, 6 * MiB, HP_2M, -1, -EBADF, &h));
        ASSERT_FALSE(h->pooled);
        ASSERT_STREQ(id, "00000000000000000000000000000abc");
        ASSERT_EQ(ready(p), 1);         /* the 1 GiB region stays */
        ASSERT_EQ(get_free(HP_2M), 1);
        /* Refilled from what is left: nothing fits (1 page, 2 needed); the pool waits. */
        settle(e);
        ASSERT_EQ(ready(p), 1);
        ASSERT_EQ(get_free(HP_2M), 1);

        /* More than the machine has: the pool gives back nothing of 2 MiB, ENOSPC once. */
        ASSERT_ERROR(pool_allocate(p, &ops, id, 4 * MiB, HP_2M, -1, -EBADF, &h2), ENOSPC);
        ASSERT_EQ(ready(p), 1);

        /* Pages come back: the retry timer (10 s) refills; not waited for here. */
        counted_free(h);
        ASSERT_EQ(get_free(HP_2M), 4);

        p = pool_free(p);
        ASSERT_EQ(live, 0);

        /* The region in the making (its pages taken, "zeroing" for 200 ms) is waited for: its
         * pages are free when the request is tried again. */
        setup(4, 0);
        slow_usec = 200 * 1000;
        {
                const PoolSetting one[] = {
                        { .hugepage_size = HP_2M, .size = 4 * MiB, .count = 2, .numa_node = -1 },
                };

                ASSERT_OK(pool_new(e, &ops, -EBADF, one, ELEMENTSOF(one), &p));
                /* Let the worker take the first region's pages, then ask for every page. */
                (void) usleep(50 * 1000);
                ASSERT_OK(pool_allocate(p, &ops, id, 8 * MiB, HP_2M, -1, -EBADF, &h));
                ASSERT_FALSE(h->pooled);
                ASSERT_EQ(get_free(HP_2M), 0);
                ASSERT_EQ(live, 1);
                counted_free(h);
                p = pool_free(p);
                ASSERT_EQ(live, 0);
                ASSERT_EQ(get_free(HP_2M), 4);
        }
}

static void test_numa(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        const PoolSetting s[] = {
                { .hugepage_size = HP_2M, .size = 2 * MiB, .count = 1, .numa_node = 1 },
                { .hugepage_size = HP_2M, .size = 4 * MiB, .count = 1, .numa_node = -1 },
        };
        char id[NOIOMMU_ID_LEN + 1] = "00000000000000000000000000000abc";
        Pool *p = NULL;
        HugeRegion *h = NULL;

        setup(16, 0);
        ASSERT_OK(sd_event_new(&e));
        ASSERT_OK(pool_new(e, &ops, -EBADF, s, ELEMENTSOF(s), &p));
        wait_ready(e, p, 2);

        /* node 0 asked: neither the node-1 entry nor the any-node one serves it */
        ASSERT_OK(pool_allocate(p, &ops, id, 2 * MiB, HP_2M, 0, -EBADF, &h));
        ASSERT_FALSE(h->pooled);
        counted_free(h);
        ASSERT_OK(pool_allocate(p, &ops, id, 4 * MiB, HP_2M, 0, -EBADF, &h));
        ASSERT_FALSE(h->pooled);
        counted_free(h);
        /* node 1 asked, or no node: the node-1 entry serves it */
        ASSERT_OK(pool_allocate(p, &ops, id, 2 * MiB, HP_2M, 1, -EBADF, &h));
        ASSERT_TRUE(h->pooled);
        counted_free(h);
        wait_ready(e, p, 2);
        ASSERT_OK(pool_allocate(p, &ops, id, 2 * MiB, HP_2M, -1, -EBADF, &h));
        ASSERT_TRUE(h->pooled);
        counted_free(h);

        p = pool_free(p);
        ASSERT_EQ(live, 0);
}

static void test_none(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        const PoolSetting s[] = {
                { .hugepage_size = 64 * 1024, .size = 64 * 1024, .count = 1, .numa_node = -1 },
        };
        char id[NOIOMMU_ID_LEN + 1] = "00000000000000000000000000000abc";
        Pool *p = (Pool *) 1;
        HugeRegion *h = NULL;
        json_t *j;

        setup(1, 0);
        ASSERT_OK(sd_event_new(&e));
        /* No entries, or only sizes the kernel lacks: no pool, and every call takes NULL. */
        ASSERT_OK(pool_new(e, &ops, -EBADF, s, 0, &p));
        ASSERT_TRUE(p == NULL);
        ASSERT_OK(pool_new(e, &ops, -EBADF, s, ELEMENTSOF(s), &p));
        ASSERT_TRUE(p == NULL);
        ASSERT_OK(pool_allocate(NULL, &ops, id, 2 * MiB, HP_2M, -1, -EBADF, &h));
        ASSERT_FALSE(h->pooled);
        ASSERT_ERROR(pool_allocate(NULL, &ops, id, 2 * MiB, HP_2M, -1, -EBADF, &h), ENOSPC);
        counted_free(h);
        ASSERT_EQ(pool_give_back(NULL, HP_2M), 0);
        j = pool_to_json(NULL);
        ASSERT_TRUE(json_is_array(j) && json_array_size(j) == 0);
        json_decref(j);
        ASSERT_EQ(live, 0);
}

int main(void) {
        TEST(test_fill_take_refill);
        TEST(test_give_back);
        TEST(test_numa);
        TEST(test_none);
        return 0;
}
