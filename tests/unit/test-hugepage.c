/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Pure parts of the DMA memory module: merging per-page physical addresses into segments, and
 * the input checks of huge_region_new() and pagemap_resolve().
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hugepage.h"
#include "tests.h"

#define HP (UINT64_C(2) << 20)

static void test_merge_contiguous(void) {
        uint64_t phys[] = { 0x40000000, 0x40200000, 0x40400000 };
        DmaSegment *s = NULL;
        int n = dma_segments_merge(phys, 3, HP, &s);

        ASSERT_EQ(n, 1);
        ASSERT_EQ(s[0].offset, 0);
        ASSERT_EQ(s[0].length, 3 * HP);
        ASSERT_EQ(s[0].dma_address, 0x40000000);
        free(s);
}

static void test_merge_scattered(void) {
        /* descending (not contiguous), then a contiguous pair, then a gap */
        uint64_t phys[] = { 0x80000000, 0x7fe00000, 0x10000000, 0x10200000, 0x20000000 };
        DmaSegment *s = NULL;
        int n = dma_segments_merge(phys, 5, HP, &s);

        ASSERT_EQ(n, 4);
        ASSERT_EQ(s[0].offset, 0);
        ASSERT_EQ(s[0].length, HP);
        ASSERT_EQ(s[0].dma_address, 0x80000000);
        ASSERT_EQ(s[1].offset, HP);
        ASSERT_EQ(s[1].dma_address, 0x7fe00000);
        ASSERT_EQ(s[2].offset, 2 * HP);
        ASSERT_EQ(s[2].length, 2 * HP);
        ASSERT_EQ(s[2].dma_address, 0x10000000);
        ASSERT_EQ(s[3].offset, 4 * HP);
        ASSERT_EQ(s[3].length, HP);
        /* the segments tile the buffer */
        ASSERT_EQ(s[3].offset + s[3].length, 5 * HP);
        free(s);
}

static void test_merge_invalid(void) {
        uint64_t phys[] = { 0 };
        DmaSegment *s = NULL;

        ASSERT_ERROR(dma_segments_merge(phys, 0, HP, &s), EINVAL);
        ASSERT_ERROR(dma_segments_merge(phys, 1, 0, &s), EINVAL);
        ASSERT_TRUE(s == NULL);
}

static void test_region_new_rejects(void) {
        HugeRegion *r = NULL;
        const char *id = "0123456789abcdef0123456789abcdef";

        ASSERT_ERROR(huge_region_new(id, 0, HP, -1, -1, &r), EINVAL);
        ASSERT_ERROR(huge_region_new(id, HP + 1, HP, -1, -1, &r), EINVAL);        /* not whole pages */
        ASSERT_ERROR(huge_region_new(id, 3 * HP, 3 * HP / 2 * 2 + 1, -1, -1, &r), EINVAL); /* not a power of two */
        ASSERT_ERROR(huge_region_new(id, NOIOMMU_ALLOC_SIZE_MAX + HP, HP, -1, -1, &r), EINVAL);
        ASSERT_ERROR(huge_region_new("../../etc", HP, HP, -1, -1, &r), EINVAL);   /* id is a name part */
        ASSERT_TRUE(r == NULL);
}

static void test_pagemap_resolve_args(void) {
        long ps = sysconf(_SC_PAGESIZE);
        void *p = mmap(NULL, (size_t) ps * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        uint64_t phys;

        ASSERT_TRUE(p != MAP_FAILED);
        ASSERT_OK(fd);
        ASSERT_ERROR(pagemap_resolve(fd, (char *) p + 1, (uint64_t) ps, &phys), EINVAL);   /* unaligned */
        ASSERT_ERROR(pagemap_resolve(fd, p, 0, &phys), EINVAL);
        ASSERT_ERROR(pagemap_resolve(fd, p, (uint64_t) ps + 1, &phys), EINVAL);
        /* never touched: not present */
        ASSERT_ERROR(pagemap_resolve(fd, p, (uint64_t) ps, &phys), ENXIO);
        close(fd);
        munmap(p, (size_t) ps * 2);
}

int main(void) {
        TEST(test_merge_contiguous);
        TEST(test_merge_scattered);
        TEST(test_merge_invalid);
        TEST(test_region_new_rejects);
        TEST(test_pagemap_resolve_args);
        return 0;
}
