/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The pre-zeroed hugepage pool (layer 1, docs/architecture.md): per "hugepagePool" entry of the
 * configuration (settings.h), a few HugeRegions of one exact size kept ready, so that a grant
 * of that size is a hand-over instead of a fault-and-zero of every page on the event loop.
 *
 * One worker thread makes them, with the very function the synchronous path uses
 * (BackendOps.memory.new, huge_region_new() in the daemon): memfd, fallocate (the kernel zeroes
 * every hugepage it faults in, mm/hugetlb.c folio_zero_user()), seals, the io_uring long-term pin
 * and the pagemap address table. That function touches no daemon state (its own fds, its own
 * mapping, pread() on the shared pagemap fd, and set_mempolicy(), which is per thread), so it
 * is safe off the loop. Finished regions come back to the loop through a mutex-protected list
 * and an eventfd; everything else in this module runs on the loop, and the worker never sees a
 * Client, a Region or the Quota.
 *
 * What the pool promises:
 *   - A region handed out was never handed out before: memory that comes back (FreeMemory, a
 *     client's exit) is freed by region_free() as always, never returned here.
 *   - A configured pool never makes a request fail that would have succeeded without it:
 *     pool_allocate() gives back the pool's regions of the hugepage size a failed allocation
 *     needed (waiting for the worker's region in progress of that size) and tries once more.
 *   - Pool regions are nobody's: not charged to a uid, never in the fd store or the re-exec
 *     state. A crash loses them with the process; a stop or re-exec frees them (the worker is
 *     joined first), and the new process fills its own pool.
 *   - Once taken, a pooled region is like any other: its id is its memfd's name
 *     ("noiommud-<id>", hugepage.c), chosen when it was made, and persist.c stores and restores
 *     it as any other. Only the MEMORY_GRANTED record says NOIOMMUD_POOL=1.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <systemd/sd-event.h>

#include "backend.h"
#include "hugepage.h"
#include "internal/macro.h"
#include "settings.h"

typedef struct Pool Pool;

/* Sets up a pool of the n entries in settings and starts its worker, which begins to fill it.
 * Entries whose hugepage size the kernel does not offer are left out with a warning. n == 0:
 * *ret = NULL (no pool; every function here takes NULL). backend and the pagemap fd must
 * outlive the pool. */
int pool_new(sd_event *event, const BackendOps *backend, int pagemap_fd, const PoolSetting *settings,
             size_t n, Pool **ret);

/* Stops and joins the worker, then frees every region the pool holds. Returns NULL. */
Pool *pool_free(Pool *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Pool *, pool_free);

/* What AllocateMemory calls instead of backend->memory.new(), with the same arguments and
 * results: a ready region of exactly size, hugepage_size and numa_node (-1: any entry) from the
 * pool, with its id copied to id (NOIOMMU_ID_LEN + 1 bytes: the memfd is already named) and
 * ->pooled set, and a refill queued for after this loop iteration; else a new region through
 * backend (p may be NULL). When that fails with -ENOSPC or -ENOMEM (no free hugepages of the
 * size, or RLIMIT_MEMLOCK) while the pool held pages of that hugepage size, the pool gives
 * them back and the allocation is tried once more. */
int pool_allocate(Pool *p, const BackendOps *backend, char *id, uint64_t size, uint64_t hugepage_size,
                  int numa_node, int pagemap_fd, HugeRegion **ret);

/* Gives back every region of hugepage_size the pool holds or is making, and refills those
 * entries only from the next loop iteration on. Returns how many regions were freed. */
unsigned pool_give_back(Pool *p, uint64_t hugepage_size);

/* ListLeases' "pool": per entry hugepageSize, size, numaNode (null: any), ready, target. An
 * empty list without a pool; NULL on ENOMEM. */
json_t *pool_to_json(const Pool *p);

/* Regions and bytes ready in the pool (for the status line and the tests). */
void pool_usage(const Pool *p, unsigned *ret_regions, uint64_t *ret_bytes);
