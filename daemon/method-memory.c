/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Memory (layer 6): AllocateMemory and FreeMemory. AllocateMemory goes
 * parse -> validate -> authorize -> act (allocate, map or own, write-ahead) -> reply. The
 * limits (quota.c, manager.c's per-container usage) are checked on every run of the handler,
 * so again once polkit has answered. The new Region is owned by the handler until
 * allocate_own() gives it to the lease it is mapped for (lease.c) or to the Client; FreeMemory
 * hands it back to its owner's rules (a noiommu lease keeps it pinned until its device is
 * quiesced).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include <systemd/sd-id128.h>

#include "record.h"
#include "client.h"
#include "hugepage.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "lease.h"
#include "manager.h"
#include "method.h"
#include "noiommu/protocol.h"
#include "persist.h"
#include "pool.h"
#include "region.h"

/* Highest NUMA node number a request may name; hugepage.c's set_node_policy() mask has room
 * for 1024 nodes. */
#define NOIOMMU_NUMA_NODE_MAX 1023

typedef struct AllocateParams {
        MemoryRequest memory;
        bool interactive;
        Lease *lease;                   /* the client's active lease to map into, or NULL */
} AllocateParams;

static bool numa_node_exists(int64_t node) {
        char path[64];

        (void) snprintf(path, sizeof(path), "/sys/devices/system/node/node%" PRIi64, node);
        return access(path, F_OK) == 0;
}

/* The limit n new allocations of total bytes would break, or NULL. Checked before polkit is
 * asked and again once it said yes (other connections of the uid may have allocated meanwhile),
 * so that one uid cannot take all allocations or, with "maxMemoryPerUid", all the memory. */
static const char *memory_limit_exceeded(Client *c, unsigned count, uint64_t size) {
        Manager *m = c->manager;
        uint64_t max_bytes = m->settings.max_memory_per_uid, bytes;
        uint64_t max_container = m->settings.max_memory_per_container;
        char buf[CLIENT_CGROUP_MAX + 16];
        const char *key;
        unsigned n;

        if (count > NOIOMMU_REGIONS_MAX || m->quota.n_regions > NOIOMMU_REGIONS_MAX - count)
                return "allocations";
        quota_usage(&m->quota, c->id.uid, &n, &bytes);
        if (count > NOIOMMU_REGIONS_PER_UID_MAX || n > NOIOMMU_REGIONS_PER_UID_MAX - count)
                return "allocations-per-uid";
        if (max_bytes > 0 && (bytes > max_bytes || size > max_bytes - bytes))
                return "memory-per-uid";
        /* Containers of one uid (rootful ones are all uid 0, or share a mapped range) must not
         * take each other's hugepages: the same count per container, next to the per-uid one. */
        key = max_container > 0 ? client_identity_limit_key(&c->id, buf, sizeof(buf)) : NULL;
        if (key) {
                manager_usage_for_key(m, key, &bytes, &n);
                if (bytes > max_container || size > max_container - bytes)
                        return "memory-per-container";
        }
        return NULL;
}

static int reply_limit_exceeded(Client *c, const char *limit) {
        record_limit_exceeded(&c->id, limit);
        return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED, json_pack("{s:s}", "limit", limit));
}

static int reply_not_supported(Client *c, const char *reason) {
        return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED, json_pack("{s:s}", "reason", reason));
}

static int reply_invalid_field(Client *c, const char *prefix, const char *field) {
        char name[64];

        (void) snprintf(name, sizeof(name), "%s%s", prefix, field);
        return reply_invalid_parameter(c, name);
}

int memory_request_parse(Client *c, json_t *obj, const char *prefix, MemoryRequest *m) {
        json_t *v;

        if (json_get_u64(param_get(obj, "size"), &m->size) < 0 || m->size == 0)
                return reply_invalid_field(c, prefix, "size");
        if ((v = param_get(obj, "hugepageSize"))) {
                if (json_get_u64(v, &m->hugepage_size) < 0 || m->hugepage_size == 0 ||
                    (m->hugepage_size & (m->hugepage_size - 1)) != 0)
                        return reply_invalid_field(c, prefix, "hugepageSize");
        }
        if ((v = param_get(obj, "numaNode"))) {
                if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                    json_integer_value(v) > NOIOMMU_NUMA_NODE_MAX)
                        return reply_invalid_field(c, prefix, "numaNode");
                m->numa_node = json_integer_value(v);
        }
        return 1;
}

/* parse. Returns 1 to go on, 0 when an error reply was queued. */
static int allocate_parse(Client *c, json_t *params, AllocateParams *p) {
        static const char *const allowed[] = { "size", "lease", "hugepageSize", "numaNode", "interactive", NULL };
        const char *k;
        json_t *v;
        int r;

        k = params_unknown_key(params, allowed);
        if (k)
                return reply_invalid_parameter(c, k);
        r = memory_request_parse(c, params, "", &p->memory);
        if (r <= 0)
                return r;
        if (param_get_bool(params, "interactive", &p->interactive) < 0)
                return reply_invalid_parameter(c, "interactive");
        if ((v = param_get(params, "lease"))) {
                size_t li;

                if (!json_is_string(v) || !noiommu_id_is_valid(json_string_value(v)))
                        return reply_invalid_parameter(c, "lease");
                p->lease = client_find_lease(c, json_string_value(v), &li);
                if (!p->lease || p->lease->state != LEASE_ACTIVE)
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_NO_SUCH_LEASE,
                                                json_pack("{s:s}", "lease", json_string_value(v)));
                if (p->lease->n_regions >= NOIOMMU_REGIONS_PER_LEASE_MAX)
                        return reply_limit_exceeded(c, "allocations-per-lease");
        }
        return 1;
}

int memory_request_validate(Client *c, MemoryRequest *m) {
        if (m->hugepage_size == 0)
                return reply_not_supported(c, "the kernel offers no hugepages");
        if (c->manager->backend->memory.size_supported(m->hugepage_size) <= 0)
                return reply_not_supported(c, "hugepage size not offered by the kernel");
        if (m->numa_node >= 0 && !numa_node_exists(m->numa_node))
                return reply_not_supported(c, "no such NUMA node");
        if (m->size > NOIOMMU_ALLOC_SIZE_MAX)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED,
                                        json_pack("{s:s}", "limit", "allocation-size"));
        m->size = (m->size + m->hugepage_size - 1) / m->hugepage_size * m->hugepage_size;
        return 1;
}

int memory_limits_check(Client *c, unsigned n, uint64_t total) {
        const char *k = memory_limit_exceeded(c, n, total);

        return k ? reply_limit_exceeded(c, k) : 1;
}

/* validate against what the kernel offers and the limits. Returns 1, or 0 (answered). */
static int allocate_validate(Client *c, AllocateParams *p) {
        int r;

        r = memory_request_validate(c, &p->memory);
        if (r <= 0)
                return r;
        if (!p->lease && c->n_regions >= NOIOMMU_REGIONS_PER_CONN_MAX)
                return reply_limit_exceeded(c, "allocations-per-connection");
        return memory_limits_check(c, 1, p->memory.size);
}

/* authorize: details carry validated numbers only, never client text. Physical addresses
 * without a lease are what pagemap shows only to CAP_SYS_ADMIN; with a lease the client needs
 * what the lease's device needed. The limits are checked again once polkit said yes: other
 * connections of the uid may have allocated meanwhile. Returns 1, 0 or < 0. */
static int allocate_authorize(Client *c, const AllocateParams *p) {
        char s_size[32], s_hp[32], s_node[32];
        int r;

        (void) snprintf(s_size, sizeof(s_size), "%" PRIu64, p->memory.size);
        (void) snprintf(s_hp, sizeof(s_hp), "%" PRIu64, p->memory.hugepage_size);
        if (p->memory.numa_node >= 0)
                (void) snprintf(s_node, sizeof(s_node), "%" PRIi64, p->memory.numa_node);
        else
                (void) snprintf(s_node, sizeof(s_node), "any");
        char *details[] = { (char *) "size", s_size, (char *) "hugepage_size", s_hp,
                            (char *) "numa_node", s_node,
                            p->lease ? (char *) "device" : NULL, p->lease ? p->lease->device.address : NULL,
                            NULL };
        r = authorize(c, ACTION_ALLOCATE_MEMORY, details, p->interactive,
                      !p->lease ? CLIENT_CAP_SYS_ADMIN :
                      lease_is_noiommu(p->lease) ? CLIENT_CAP_SYS_RAWIO : CLIENT_CAP_SYS_ADMIN);
        if (r <= 0)
                return r;
        return memory_limits_check(c, 1, p->memory.size);
}

/* act, 1: the pinned memory, charged to the client. The one place memory is taken from the
 * host. Returns 1 with *ret, 0 (answered, the host cannot do it now) or < 0. */
static int allocate_region(Client *c, const MemoryRequest *p, char *id, Region **ret) {
        HugeRegion *huge = NULL;        /* set only on success */
        Manager *m = c->manager;
        int r;

        /* A ready region from the pool (its id, the memfd's name, replaces id), else a new one;
         * the pool gives its pages back if they are what this request lacks (pool.h). */
        r = pool_allocate(m->pool, m->backend, id, p->size, p->hugepage_size, (int) p->numa_node, m->pagemap_fd, &huge);
        if (r == -ENOSPC || r == -ENOMEM) {
                log_info("Not enough free %" PRIu64 "-byte hugepages for %" PRIu64 " bytes for UID %u (PID %i).",
                         p->hugepage_size, p->size, (unsigned) c->id.uid, (int) c->id.pid);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_OUT_OF_MEMORY,
                                        json_pack("{s:I, s:I}", "requested", (json_int_t) p->size,
                                                  "hugepageSize", (json_int_t) p->hugepage_size));
        }
        /* Not the client's doing, and not an internal error either: the host cannot do this
         * now (the start-up check said so too, main.c). Say why instead of InternalError. */
        if (r == -EPERM || r == -EOPNOTSUPP || r == -ENOSYS) {
                log_error_errno(r, "Cannot pin DMA memory with io_uring (is kernel.io_uring_disabled set?): %m");
                return reply_not_supported(c, "the kernel refuses io_uring to the daemon "
                                           "(kernel.io_uring_disabled), so it cannot pin DMA memory");
        }
        if (r == -ENXIO) {
                log_error_errno(r, "pagemap shows no physical addresses: the daemon needs CAP_SYS_ADMIN when it starts.");
                return reply_not_supported(c, "the daemon cannot read physical addresses "
                                           "(it started without CAP_SYS_ADMIN)");
        }
        if (r < 0)
                return log_error_errno(r, "Failed to allocate %" PRIu64 " bytes of DMA memory: %m", p->size);

        /* The grant: charged to the client's uid from now until the region's destructor. */
        r = region_new(&m->region_ctx, huge, &c->id, ret);
        if (r < 0) {
                /* Never reached a device or the client: freed at once. */
                (void) m->backend->memory.free(huge);
                return r;
        }
        return 1;                       /* the region's now */
}

/* act, 2: the region becomes the lease's (mapped into its DMA context: physical addresses
 * for noiommu backends, IOVAs behind an IOMMU) or the client's. On 1 it is owned there, so
 * that the teardown order (quiesce before free) covers it whatever happens next; otherwise
 * *region is still the caller's. Returns 1, 0 (answered) or < 0. */
static int allocate_own(Client *c, const MemoryRequest *p, Lease *lease, Region **region,
                        DmaSegment **ret_segments, size_t *ret_n, AddressKind *ret_kind) {
        int r, n;

        if (!lease) {
                const HugeRegion *h = (*region)->huge;

                n = dma_segments_merge(h->phys, h->n_pages, h->hugepage_size, ret_segments);
                if (n < 0)
                        return n;
                *ret_n = (size_t) n;
                *ret_kind = ADDRESS_PHYSICAL;
                r = client_add_region(c, *region);
                if (r < 0)
                        return r;
                *region = NULL;
                return 1;
        }

        r = lease_add_region(lease, *region, ret_segments, ret_n, ret_kind);
        if (r == -EOPNOTSUPP)
                return reply_not_supported(c, "the kernel cannot map memory for this device");
        if (r == -ENOSPC)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_OUT_OF_MEMORY,
                                        json_pack("{s:I, s:I}", "requested", (json_int_t) p->size,
                                                  "hugepageSize", (json_int_t) p->hugepage_size));
        if (r == -ENOLINK || r == -ESTALE)
                /* The lease's addresses cannot be vouched for: lease_add_region() logged,
                 * audited and quarantined it; this allocation is freed unseen. */
                return conn_reply_error(c->conn, NOIOMMU_ERROR_DEVICE_QUARANTINED,
                                        json_pack("{s:s}", "device", lease->device.address));
        if (r < 0)
                return log_error_errno(r, "Failed to map %s into the DMA context of %s: %m",
                                       region_id(*region), lease->device.address);
        *region = NULL;
        return 1;
}

void memory_grant_done(MemoryGrant *g) {
        free(g->segments);
        g->segments = NULL;
        g->n_segments = 0;
        g->region = NULL;
}

int memory_grant_new(Client *c, const MemoryRequest *m, Lease *lease, MemoryGrant *g) {
        _cleanup_(region_dropp) Region *region = NULL;
        sd_id128_t rid;
        Region *owned;
        int r;

        *g = (MemoryGrant) { .kind = ADDRESS_PHYSICAL };
        r = c->manager->backend->random_id(&rid);
        if (r < 0)
                return r;
        (void) sd_id128_to_string(rid, g->id);
        r = allocate_region(c, m, g->id, &region);
        if (r <= 0)
                return r;
        owned = region;
        r = allocate_own(c, m, lease, &region, &g->segments, &g->n_segments, &g->kind);
        if (r <= 0) {
                memory_grant_done(g);
                return r;
        }
        g->region = owned;
        return 1;
}

void memory_grant_withdraw(Client *c, Lease *lease, MemoryGrant *g, const char *reason) {
        if (lease)
                lease_withdraw_region(lease, g->region, reason);
        else
                client_withdraw_region(c, g->region, reason);
        memory_grant_done(g);
}

void memory_grant_record(Client *c, const MemoryGrant *g, const Lease *lease) {
        record_memory_granted(&c->id, g->region->huge, g->n_segments, address_kind_to_string(g->kind),
                              g->segments[0].dma_address, lease ? lease->id : NULL);
}

static json_t *segments_to_json(const DmaSegment *segments, size_t n) {
        json_t *segs = json_array();

        if (!segs)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (json_array_append_new(segs, json_pack("{s:I, s:I, s:I}",
                                                          "offset", (json_int_t) segments[i].offset,
                                                          "length", (json_int_t) segments[i].length,
                                                          "dmaAddress", (json_int_t) segments[i].dma_address)) < 0) {
                        json_decref(segs);
                        return NULL;
                }
        return segs;
}

json_t *memory_grant_to_json(const MemoryGrant *g, int fd_index) {
        const HugeRegion *h = g->region->huge;
        json_t *segs;

        segs = segments_to_json(g->segments, g->n_segments);
        if (!segs)
                return NULL;
        return json_pack("{s:s, s:I, s:I, s:i, s:s, s:o, s:i}",
                         "memory", g->id,
                         "size", (json_int_t) h->size,
                         "hugepageSize", (json_int_t) h->hugepage_size,
                         "numaNode", h->numa_node,
                         "addressKind", address_kind_to_string(g->kind),
                         "segments", segs,
                         "fd", fd_index);
}

int method_allocate_memory(Client *c, json_t *params) {
        AllocateParams p = { .memory = MEMORY_REQUEST_INIT(c->manager) };
        _cleanup_(memory_grant_done) MemoryGrant g = {};
        json_t *reply;
        int r;

        r = allocate_parse(c, params, &p);
        if (r <= 0)
                return r;
        r = allocate_validate(c, &p);
        if (r <= 0)
                return r;
        r = allocate_authorize(c, &p);
        if (r <= 0)
                return r;

        r = memory_grant_new(c, &p.memory, p.lease, &g);
        if (r <= 0)
                return r;

        /* Write-ahead (security.md §8): the fd store holds the memory (and the connection)
         * before the client does, so that a daemon crash after the send cannot orphan it. If
         * the store cannot be written the grant is refused: nothing reaches the client. The
         * memory was never handed out, so no device was told its addresses either. */
        r = persist_grant(&c->manager->persist, c, g.region, NULL);
        if (r < 0) {
                log_error_errno(r, "Cannot store %s in the fd store, refusing the allocation: %m", g.id);
                memory_grant_withdraw(c, p.lease, &g, PERSIST_REASON_NOT_STORED);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_INTERNAL, NULL);
        }
        memory_grant_record(c, &g, p.lease);

        /* reply: the memfd rides on the first byte; "fd" is its index among the reply's fds */
        reply = memory_grant_to_json(&g, 0);
        if (!reply)
                return -ENOMEM;
        return conn_reply(c->conn, reply, &g.region->huge->memfd, 1);
}

int method_free_memory(Client *c, json_t *params) {
        static const char *const allowed[] = { "memory", NULL };
        const char *id;
        size_t index;
        int r;

        r = params_get_only_id(c, params, allowed, "memory", &id);
        if (r <= 0)
                return r;

        if (client_find_region(c, id, &index)) {
                client_free_region(c, index, "free");
                return conn_reply(c->conn, NULL, NULL, 0);
        }
        for (size_t i = 0; i < c->n_leases; i++)
                if (lease_find_region(c->leases[i], id, &index)) {
                        lease_free_region(c->leases[i], index);
                        return conn_reply(c->conn, NULL, NULL, 0);
                }
        return conn_reply_error(c->conn, NOIOMMU_ERROR_NO_SUCH_MEMORY, json_pack("{s:s}", "memory", id));
}
