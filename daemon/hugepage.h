/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * DMA memory (a leaf, layer 0): one fresh hugetlb memfd per allocation, preallocated, sealed,
 * mapped by the daemon, held by a long-term pin, with its physical addresses resolved from
 * pagemap. A HugeRegion owns its memfd, the io_uring instance that holds the pin, the daemon's
 * mapping and the table of physical addresses; a Region (region.h) owns the HugeRegion. It
 * trusts the kernel (pagemap, the pin) and its callers' already validated size, hugepage size
 * and NUMA node; it re-reads pagemap at free rather than trusting that pages stayed put.
 *
 * Why each step (security.md §5):
 *   - fallocate() preallocates, so hugepage exhaustion is ENOSPC here and never SIGBUS in the
 *     client; fresh hugetlb pages are zeroed by the kernel, so no client sees another's data.
 *   - F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL: the client cannot truncate pages the device uses.
 *     Punch-hole is not blocked by any usable seal; the pin below keeps a punched page out of
 *     the free pool until the daemon releases it.
 *   - The pin is an io_uring fixed-buffer registration of the daemon's own mapping
 *     (IORING_REGISTER_BUFFERS pins with FOLL_LONGTERM). mlock() is not a pin: mlocked pages can
 *     still migrate. The pin is taken *before* pagemap is read, because a long-term pin may first
 *     migrate pages out of ZONE_MOVABLE/CMA.
 *   - pagemap shows PFNs only to openers with CAP_SYS_ADMIN; the daemon opens /proc/self/pagemap
 *     once at start and never passes that fd on.
 *
 * This module never logs; it returns negative errno. -ENOSPC means the pool cannot satisfy the
 * request (OutOfMemory to the client).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "internal/macro.h"
#include "noiommu/protocol.h"

/* Largest single allocation. Preallocation zeroes every page on the event loop (~50 ms per GiB
 * on a 2-core machine), so this also bounds how long one request can hold the loop: 64 GiB is
 * about 3 s, well inside the unit's 30 s watchdog. */
#define NOIOMMU_ALLOC_SIZE_MAX (UINT64_C(64) << 30)

/* Highest NUMA node a request may name ("numaNode"). 1024 nodes is x86-64's most
 * (CONFIG_NODES_SHIFT <= 10, as with MAXSMP); the nodemask given to set_mempolicy() has one bit
 * for each node up to this. method-memory.c validates requests against it. */
#define NOIOMMU_NUMA_NODE_MAX 1023

/* Most hugepage sizes one kernel offers. Today's maximum is 4 (arm64 with 4 KiB pages: 64 KiB,
 * 2 MiB, 32 MiB, 1 GiB); x86-64 has 2. Arrays for hugepage_sizes() have this many entries. */
#define NOIOMMU_HUGEPAGE_SIZES_MAX 8

typedef struct DmaSegment {
        uint64_t offset;
        uint64_t length;
        uint64_t dma_address;
} DmaSegment;

typedef struct HugeRegion {
        char id[NOIOMMU_ID_LEN + 1];
        int memfd;
        int pin_fd;                   /* io_uring instance holding the FOLL_LONGTERM pin */
        void *addr;                   /* the daemon's own MAP_SHARED mapping */
        uint64_t size;
        uint64_t hugepage_size;
        int numa_node;                /* node of the first page, -1 if unknown */
        size_t n_pages;
        uint64_t *phys;               /* physical address of each hugepage */
        bool pooled;                  /* made ahead of time by pool.c (for the grant's record) */
} HugeRegion;

/* Hugepage sizes the kernel offers (from /sys/kernel/mm/hugepages), ascending; at most max of
 * them (NOIOMMU_HUGEPAGE_SIZES_MAX holds all), further ones are left out. */
int hugepage_sizes(uint64_t *ret_sizes, size_t max, size_t *ret_n);

/* The default hugepage size (Hugepagesize in /proc/meminfo). */
int hugepage_default_size(uint64_t *ret);

/* Whether hugepage_size is offered by the kernel. */
int hugepage_size_supported(uint64_t hugepage_size);

/* Allocates size bytes (already rounded to whole pages of hugepage_size) on numa_node (-1 for
 * any) and resolves physical addresses through pagemap_fd. On success the region owns a memfd,
 * a mapping and a pin. Thread-safe: it touches nothing but what it creates, pread()s pagemap_fd
 * and sets the calling thread's own memory policy, so pool.c's worker calls it too. */
int huge_region_new(const char *id, uint64_t size, uint64_t hugepage_size, int numa_node,
                    int pagemap_fd, HugeRegion **ret);

/* Whether this process may pin at all: sets up (and closes) an io_uring instance. 0, or the
 * negative errno io_uring_setup() gave (-EPERM: kernel.io_uring_disabled; -ENOSYS). */
int huge_pin_probe(void);

/* Unpins, unmaps and closes. Returns NULL. */
HugeRegion *huge_region_free(HugeRegion *r);
DEFINE_TRIVIAL_CLEANUP_FUNC(HugeRegion *, huge_region_free);

/* Re-reads the physical addresses and compares them with those handed out: 0 if unchanged,
 * -ESTALE if any page moved or left the file (a client punched a hole). */
int huge_region_verify(const HugeRegion *r, int pagemap_fd);

/* Merges per-page physical addresses into segments: consecutive pages whose addresses are
 * contiguous form one segment. Returns the number of segments written to *ret (malloc'ed). */
int dma_segments_merge(const uint64_t *phys, size_t n_pages, uint64_t page_size,
                       DmaSegment **ret);

/* Reads the physical address of the 4 KiB page at addr from pagemap_fd and checks that the
 * "len" bytes from addr are physically contiguous. Returns -ENXIO when a page is not present or
 * the PFN is hidden (the opener lacked CAP_SYS_ADMIN), -EFAULT when not contiguous. */
int pagemap_resolve(int pagemap_fd, const void *addr, uint64_t len, uint64_t *ret_phys);

/* Rebuilds a region from a memfd that survived a restart in the fd store or a re-exec
 * (ownership of the fds passes to the region, also on failure): maps it again, adopts pin_fd
 * (the io_uring ring that still pins it, kept open across a re-exec) or pins it again if
 * pin_fd < 0, and checks the pages against phys, the addresses handed out before. Returns 1 if
 * a page moved (the region is still returned, with the new addresses), 0 if all are where they
 * were. */
int huge_region_restore(const char *id, int memfd, int pin_fd, uint64_t size, uint64_t hugepage_size,
                        const uint64_t *phys, size_t n_pages, int pagemap_fd, HugeRegion **ret);
