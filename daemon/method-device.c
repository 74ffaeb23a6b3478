/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Devices (layer 6): ListDevices, AcquireDevice and ReleaseDevice. AcquireDevice goes
 * parse -> find -> reserve -> authorize -> open -> grant, one function each. The device is
 * found by a fresh sysfs scan (inventory.c) on every run of the handler and allowed by the
 * settings, never by what the request claims about it; it is reserved (lease.c) before polkit
 * is asked, so a racing second request gets DeviceBusy. The grant writes the lease to the fd
 * store (persist_grant()) and records it before the fd is sent; from client_add_lease() on the
 * Client owns the lease.
 *
 * With "memory", AcquireDevice also allocates the regions listed there and maps them into the
 * new lease, through the same steps as AllocateMemory with a lease (method-memory.c's
 * memory_request_*() and memory_grant_*()), under one polkit check of an action of its own
 * (ACTION_*_WITH_MEMORY). All or nothing: if one region cannot be had, the lease is ended the
 * usual way (quiesce, then free what was mapped) before the error is answered.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "record.h"
#include "client.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "inventory.h"
#include "lease.h"
#include "manager.h"
#include "method.h"
#include "noiommu/protocol.h"
#include "persist.h"
#include "polkit.h"
#include "vfio.h"

/* inventory_scan() of the real sysfs with the administrator's "deviceBackends" applied: what
 * ListDevices shows is exactly what AcquireDevice serves. */
static int scan_devices(Manager *m, InventoryDevice **ret) {
        InventoryDevice *devices = NULL;
        int n;

        n = m->backend->inventory.scan("/", &devices);
        if (n < 0)
                return n;
        for (int i = 0; i < n; i++) {
                Backend b = settings_device_backend(&m->settings, devices[i].address);

                if (b >= 0)
                        inventory_device_force(&devices[i], b);
        }
        *ret = devices;
        return n;
}

/* Why the device is not served, in buf when the configuration forced a backend it cannot use
 * (the inventory's reason alone would not say that the configuration asked for it). */
static const char *device_reason(const InventoryDevice *d, char *buf, size_t size) {
        if (d->backend >= 0)
                return NULL;
        if (d->forced && d->reason) {
                (void) snprintf(buf, size, "deviceBackends in the daemon's configuration asks for %s, "
                                "which this device cannot use: %s",
                                backend_to_string(d->forced_backend), d->reason);
                return buf;
        }
        return d->reason ?: "no backend can serve this device";
}

/* Why the configuration does not let the daemon serve d (a static string), or NULL. The same
 * words in ListDevices and in AcquireDevice's refusal. */
static const char *device_disabled_reason(const Settings *settings, const InventoryDevice *d) {
        if (d->backend < 0)
                return NULL;
        if (d->backend != BACKEND_CDEV_IOMMU)
                return settings_allows_noiommu(settings, d->address) ? NULL :
                        "noiommu use of this device is not enabled in the daemon's configuration (\"noiommuDevices\")";
        return settings_allows_iommu(settings, d->address) ? NULL :
                "this device is not enabled in the daemon's configuration (\"iommuDevices\")";
}

/* settings: NULL for a device the daemon serves already (a lease's), else what ListDevices
 * reports is also what the configuration allows: a device it would refuse is "disabled". */
json_t *device_to_json(const InventoryDevice *d, const Settings *settings) {
        /* In the order the daemon prefers them (inventory.c, "Why the cdev wins"). */
        static const Backend order[] = { BACKEND_CDEV_NOIOMMU, BACKEND_GROUP_NOIOMMU, BACKEND_CDEV_IOMMU };
        char vendor[8], device[8], why[512];
        const char *backend = backend_to_string(d->backend), *reason = device_reason(d, why, sizeof(why));
        const char *disabled = settings ? device_disabled_reason(settings, d) : NULL;
        unsigned available = d->available | (d->backend >= 0 ? 1U << d->backend : 0);
        json_t *backends;

        backends = json_array();
        if (!backends)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(order); i++)
                if (available & (1U << order[i]) &&
                    json_array_append_new(backends, json_string(backend_to_string(order[i]))) < 0) {
                        json_decref(backends);
                        return NULL;
                }

        (void) snprintf(vendor, sizeof(vendor), "%04x", d->vendor_id);
        (void) snprintf(device, sizeof(device), "%04x", d->device_id);
        return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:i, s:s, s:o, s:o, s:o}",
                         "address", d->address,
                         "vendorId", vendor,
                         "deviceId", device,
                         "driver", d->driver,
                         "backend", backend ? json_string(backend) : json_null(),
                         "iommuGroup", d->iommu_group >= 0 ? json_integer(d->iommu_group) : json_null(),
                         "numaNode", d->numa_node,
                         "state", !backend ? "unsupported" : disabled ? "disabled" : "available",
                         "reason", disabled ? json_string(disabled) : reason ? json_string(reason) : json_null(),
                         "backendReason", backend && d->backend_reason ? json_string(d->backend_reason) : json_null(),
                         "availableBackends", backends);
}

int method_list_devices(Client *c, json_t *params) {
        static const char *const allowed[] = { NULL };
        _cleanup_free_ InventoryDevice *devices = NULL;
        const char *k = params_unknown_key(params, allowed);
        json_t *list;
        int n, r;

        if (k)
                return reply_invalid_parameter(c, k);

        r = authorize(c, ACTION_LIST_DEVICES, NULL, false, CAP_NONE);
        if (r <= 0)
                return r;

        n = scan_devices(c->manager, &devices);
        if (n < 0)
                return log_error_errno(n, "Failed to scan PCI devices: %m");

        list = json_array();
        if (!list)
                return -ENOMEM;
        for (int i = 0; i < n; i++)
                if (json_array_append_new(list, device_to_json(&devices[i], &c->manager->settings)) < 0) {
                        json_decref(list);
                        return -ENOMEM;
                }
        return conn_reply(c->conn, json_pack("{s:o}", "devices", list), NULL, 0);
}

typedef struct AcquireParams {
        const char *address;
        bool interactive;
        MemoryRequest memory[NOIOMMU_ACQUIRE_MEMORY_MAX];
        size_t n_memory;                /* 0: the device alone */
        uint64_t memory_total;          /* bytes, once validated */
} AcquireParams;

/* "memory": 1..NOIOMMU_ACQUIRE_MEMORY_MAX objects, each read like AllocateMemory's parameters
 * (memory_request_parse()); an error names the item's field, e.g. "memory[1].size". */
static int acquire_parse_memory(Client *c, json_t *list, AcquireParams *p) {
        static const char *const allowed[] = { "size", "hugepageSize", "numaNode", NULL };
        json_t *item;
        size_t i;
        int r;

        if (!json_is_array(list) || json_array_size(list) == 0 ||
            json_array_size(list) > NOIOMMU_ACQUIRE_MEMORY_MAX)
                return reply_invalid_parameter(c, "memory");
        json_array_foreach(list, i, item) {
                char prefix[32], name[64];
                const char *k;

                (void) snprintf(prefix, sizeof(prefix), "memory[%zu].", i);
                if (!json_is_object(item)) {
                        (void) snprintf(name, sizeof(name), "memory[%zu]", i);
                        return reply_invalid_parameter(c, name);
                }
                k = params_unknown_key(item, allowed);
                if (k) {
                        /* Only a known prefix and a key the client sent, cut to fit. */
                        (void) snprintf(name, sizeof(name), "%s%s", prefix, k);
                        return reply_invalid_parameter(c, name);
                }
                p->memory[i] = MEMORY_REQUEST_INIT(c->manager);
                r = memory_request_parse(c, item, prefix, &p->memory[i]);
                if (r <= 0)
                        return r;
        }
        p->n_memory = json_array_size(list);
        return 1;
}

/* parse: the name is checked before any filesystem access. Returns 1 to go on, 0 when an error
 * reply was queued. */
static int acquire_parse(Client *c, json_t *params, AcquireParams *p) {
        static const char *const allowed[] = { "device", "memory", "interactive", NULL };
        const char *k;
        json_t *v;
        int r;

        k = params_unknown_key(params, allowed);
        if (k)
                return reply_invalid_parameter(c, k);
        v = param_get(params, "device");
        if (!json_is_string(v) || !pci_address_is_valid(json_string_value(v)))
                return reply_invalid_parameter(c, "device");
        if ((v = param_get(params, "memory"))) {
                r = acquire_parse_memory(c, v, p);
                if (r <= 0)
                        return r;
        }
        if (param_get_bool(params, "interactive", &p->interactive) < 0)
                return reply_invalid_parameter(c, "interactive");
        p->address = json_string_value(param_get(params, "device"));
        return 1;
}

/* validate the memory as AllocateMemory does, item by item, then the limits for all of it at
 * once (the per-lease count cannot be reached: the lease is new and the list is short).
 * Returns 1, or 0 (answered). */
static int acquire_validate_memory(Client *c, AcquireParams *p) {
        int r;

        _Static_assert(NOIOMMU_ACQUIRE_MEMORY_MAX <= NOIOMMU_REGIONS_PER_LEASE_MAX, "");
        p->memory_total = 0;
        for (size_t i = 0; i < p->n_memory; i++) {
                r = memory_request_validate(c, &p->memory[i]);
                if (r <= 0)
                        return r;
                /* Each is at most NOIOMMU_ALLOC_SIZE_MAX (checked above): no overflow. */
                p->memory_total += p->memory[i].size;
        }
        if (p->n_memory == 0)
                return 1;
        return memory_limits_check(c, (unsigned) p->n_memory, p->memory_total);
}

/* The device as the inventory sees it now, which the configuration lets the daemon serve.
 * *ret points into *ret_devices (the caller frees that). Returns 1, 0 (answered) or < 0. */
static int acquire_find(Client *c, const char *address, InventoryDevice **ret_devices,
                        const InventoryDevice **ret) {
        char reason[512];
        const char *disabled;
        int n;

        n = scan_devices(c->manager, ret_devices);
        if (n < 0)
                return log_error_errno(n, "Failed to scan PCI devices: %m");
        for (int i = 0; i < n; i++)
                if (streq((*ret_devices)[i].address, address))
                        *ret = &(*ret_devices)[i];
        if (!*ret)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NO_SUCH_DEVICE, json_pack("{s:s}", "device", address));
        if ((*ret)->backend < 0)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED,
                                        json_pack("{s:s}", "reason", device_reason(*ret, reason, sizeof(reason))));
        disabled = device_disabled_reason(&c->manager->settings, *ret);
        if (disabled)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED, json_pack("{s:s}", "reason", disabled));
        return 1;
}

static int reply_limit_exceeded(Client *c, const char *limit) {
        record_limit_exceeded(&c->id, limit);
        return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED, json_pack("{s:s}", "limit", limit));
}

/* Reserves d before polkit is asked, so that a racing second request gets DeviceBusy; the
 * reservation is kept across the handler's runs while polkit decides. Returns 1, 0 or < 0. */
static int acquire_reserve(Client *c, const InventoryDevice *d) {
        Manager *m = c->manager;
        int r;

        if (c->pending_lease && !streq(c->pending_lease->device.address, d->address))
                c->pending_lease = lease_unreserve(c->pending_lease);
        if (c->pending_lease)
                return 1;

        if (c->n_leases >= NOIOMMU_LEASES_PER_CONN_MAX)
                return reply_limit_exceeded(c, "leases-per-connection");
        /* Reservations count: two racing acquires of one container cannot both pass. */
        if (m->settings.max_leases_per_container > 0) {
                char buf[CLIENT_CGROUP_MAX + 16];
                const char *key = client_identity_limit_key(&c->id, buf, sizeof(buf));
                uint64_t bytes;
                unsigned n_leases;

                if (key) {
                        manager_usage_for_key(m, key, &bytes, &n_leases);
                        if (n_leases >= m->settings.max_leases_per_container)
                                return reply_limit_exceeded(c, "leases-per-container");
                }
        }
        r = lease_reserve(&m->lease_registry, c, &c->id, d, &c->pending_lease);
        if (r == -EBUSY)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_DEVICE_BUSY, json_pack("{s:s}", "device", d->address));
        if (r == -EIO)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_DEVICE_QUARANTINED, json_pack("{s:s}", "device", d->address));
        if (r < 0)
                return r;
        return 1;
}

/* A detail that is one value when every region agrees, and the distinct values in request
 * order, comma-separated, when they do not ("2097152,1073741824"). */
static void memory_detail(char *buf, size_t size, const AcquireParams *p, bool node) {
        size_t n = 0;

        buf[0] = 0;
        for (size_t i = 0; i < p->n_memory; i++) {
                char v[32];
                bool seen = false;

                if (!node)
                        (void) snprintf(v, sizeof(v), "%" PRIu64, p->memory[i].hugepage_size);
                else if (p->memory[i].numa_node < 0)
                        (void) snprintf(v, sizeof(v), "any");
                else
                        (void) snprintf(v, sizeof(v), "%" PRIi64, p->memory[i].numa_node);
                for (size_t j = 0; j < i; j++)
                        if (node ? p->memory[j].numa_node == p->memory[i].numa_node
                                 : p->memory[j].hugepage_size == p->memory[i].hugepage_size)
                                seen = true;
                if (seen)
                        continue;
                (void) snprintf(buf + n, size - n, "%s%s", n > 0 ? "," : "", v);
                n = strlen(buf);
        }
}

/* The action follows from the backend the inventory found; details carry validated values
 * only. The kernel wants CAP_SYS_RAWIO for a noiommu device. Behind an IOMMU it wants only
 * file access to the node, which a container's root lacks through its device cgroup and
 * mount namespace: getting past those takes CAP_SYS_ADMIN.
 *
 * With memory, one check of an action of its own, whose details are the union of what the two
 * separate checks would carry (the device's, and AllocateMemory's with size = the total,
 * hugepage_size and numa_node as memory_detail() writes them, and regions = the count): a rule
 * sees everything it decides on today, and no rule written for the separate actions grants
 * the combination by accident. The capability is the stricter of the two separate checks':
 * AllocateMemory with a lease asks what the lease's device asked, so it is the device's. */
static int acquire_authorize(Client *c, const InventoryDevice *d, const AcquireParams *p) {
        bool noiommu = d->backend != BACKEND_CDEV_IOMMU;
        char vendor[8], device[8], group[16], s_size[32], s_hp[32 * NOIOMMU_ACQUIRE_MEMORY_MAX],
                s_node[32 * NOIOMMU_ACQUIRE_MEMORY_MAX], s_regions[16];
        const char *action;
        int r;

        (void) snprintf(vendor, sizeof(vendor), "%04x", d->vendor_id);
        (void) snprintf(device, sizeof(device), "%04x", d->device_id);
        (void) snprintf(group, sizeof(group), "%i", d->iommu_group);
        (void) snprintf(s_size, sizeof(s_size), "%" PRIu64, p->memory_total);
        memory_detail(s_hp, sizeof(s_hp), p, /* node= */ false);
        memory_detail(s_node, sizeof(s_node), p, /* node= */ true);
        (void) snprintf(s_regions, sizeof(s_regions), "%zu", p->n_memory);
        char *details[] = { (char *) "device", (char *) d->address,
                            (char *) "vendor_id", vendor,
                            (char *) "device_id", device,
                            (char *) "backend", (char *) backend_to_string(d->backend),
                            (char *) "iommu_group", group,
                            p->n_memory > 0 ? (char *) "size" : NULL, s_size,
                            (char *) "hugepage_size", s_hp,
                            (char *) "numa_node", s_node,
                            (char *) "regions", s_regions,
                            NULL };
        if (p->n_memory > 0)
                action = noiommu ? ACTION_ACQUIRE_DEVICE_WITH_MEMORY : ACTION_ACQUIRE_DEVICE_IOMMU_WITH_MEMORY;
        else
                action = noiommu ? ACTION_ACQUIRE_DEVICE : ACTION_ACQUIRE_DEVICE_IOMMU;
        r = authorize(c, action, details, p->interactive, noiommu ? CLIENT_CAP_SYS_RAWIO : CLIENT_CAP_SYS_ADMIN);
        if (r == 0 && c->polkit)
                lease_wait_authorization(c->pending_lease);
        if (r <= 0 || p->n_memory == 0)
                return r;       /* 0: pending, or denied (dispatch_current() drops the reservation) */
        /* Again now: other connections of the uid may have allocated while polkit decided. */
        return memory_limits_check(c, (unsigned) p->n_memory, p->memory_total);
}

/* act: opens the device for the authorized reservation. Returns 1 with *ret, 0 or < 0. */
static int acquire_open(Client *c, const InventoryDevice *d, Lease **ret) {
        Lease *l;
        int r;

        l = TAKE_PTR(c->pending_lease);
        l->device = *d;                         /* as scanned now, after the authorization */
        r = lease_activate(l);
        if (r < 0) {
                const char *why =
                        r == -EBUSY ? "the device or its group is still open elsewhere (a previous holder may have kept a copy of its fd)" :
                        r == -ENODEV || r == -ELOOP ? "the device node does not match sysfs" :
                        r == -ENOENT ? "the device node is missing" :
                        r == -EOPNOTSUPP ? "the backend is not usable on this kernel" :
                        "the kernel refused to open the device";

                record_lease_refused(&c->id, d, r, why);
                (void) lease_unreserve(l);
                if (r == -ENOMEM)
                        return r;
                if (r == -EBUSY)
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_DEVICE_BUSY, json_pack("{s:s}", "device", d->address));
                /* Whatever the kernel said (a swapped node, a missing driver, a backend this
                 * kernel lacks), this device cannot be served now: say why, keep running. */
                log_warning_errno(r, "Cannot open %s: %s: %m", d->address, why);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED, json_pack("{s:s}", "reason", why));
        }
        *ret = l;
        return 1;
}

/* The reason in the records of a lease and memory ended because not all of the memory asked
 * with it could be had: never granted, never seen by the client. */
#define ACQUIRE_REASON_MEMORY_REFUSED "memory-refused"

/* Undoes a grant that never reached the client, in the usual order: the device is quiesced,
 * then the memory mapped for it is freed (none of it goes to another lease of the client: the
 * client never learned its addresses), then the device is closed. */
static void acquire_undo(Client *c, Lease *l, const char *reason) {
        client_forget_lease(c, l);
        /* -EIO: quarantined (the quiesce failed, or a mapping could not be vouched for); the
         * manager keeps it, memory pinned, until an administrator revokes it. */
        (void) lease_end(&l, reason);
}

static void memory_grants_done(MemoryGrant (*g)[NOIOMMU_ACQUIRE_MEMORY_MAX]) {
        for (size_t i = 0; i < NOIOMMU_ACQUIRE_MEMORY_MAX; i++)
                memory_grant_done(&(*g)[i]);
}

/* The open lease becomes the client's: write-ahead, memory, record, observers, reply with its
 * fds (the device's first, then one memfd per region, in the order asked). */
static int acquire_grant(Client *c, Lease *l, const AcquireParams *p) {
        _cleanup_(memory_grants_done) MemoryGrant grants[NOIOMMU_ACQUIRE_MEMORY_MAX] = {};
        int fds[1 + NOIOMMU_ACQUIRE_MEMORY_MAX];
        json_t *reply, *memory = NULL;
        int r;

        _Static_assert(1 + NOIOMMU_ACQUIRE_MEMORY_MAX <= NOIOMMU_FDS_PER_REPLY_MAX, "");

        r = client_add_lease(c, l);
        if (r < 0) {
                /* Bounded when the reservation was made; ended unseen, quiesce first. */
                (void) lease_end(&l, "release");
                return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED,
                                        json_pack("{s:s}", "limit", "leases-per-connection"));
        }
        /* Write-ahead, as for memory: the device's fds are in the store before the client has
         * one, or the grant is refused (the lease ends the usual way, quiesce first). */
        r = persist_grant(&c->manager->persist, c, NULL, l);
        if (r < 0) {
                log_error_errno(r, "Cannot store lease %s in the fd store, refusing the device: %m", l->id);
                acquire_undo(c, l, PERSIST_REASON_NOT_STORED);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_INTERNAL, NULL);
        }

        /* The memory, region by region exactly as AllocateMemory with this lease: allocated,
         * mapped, stored. On any failure the error is answered (or, r < 0, will be) after
         * everything is undone: the lease ends, quiesce first, and takes what was mapped. */
        for (size_t i = 0; i < p->n_memory; i++) {
                r = memory_grant_new(c, &p->memory[i], l, &grants[i]);
                if (r <= 0) {
                        acquire_undo(c, l, ACQUIRE_REASON_MEMORY_REFUSED);
                        return r;
                }
                r = persist_grant(&c->manager->persist, c, grants[i].region, NULL);
                if (r < 0) {
                        log_error_errno(r, "Cannot store %s in the fd store, refusing the device and its memory: %m",
                                        grants[i].id);
                        acquire_undo(c, l, PERSIST_REASON_NOT_STORED);
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_INTERNAL, NULL);
                }
        }

        if (record_lease_granted(&c->id, l->id, &l->device) < 0) {
                /* Not recorded, so not granted (auditFailure=deny): the device was opened but
                 * never handed out; end it the usual way, quiesce first. */
                acquire_undo(c, l, AUDIT_REASON_FAILED);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_PERMISSION_DENIED,
                                        json_pack("{s:s}", "reason", AUDIT_REASON_FAILED));
        }
        for (size_t i = 0; i < p->n_memory; i++)
                memory_grant_record(c, &grants[i], l);
        lease_announce_granted(l);

        fds[0] = c->manager->backend->device.client_fd(l->vfio);
        if (p->n_memory > 0) {
                memory = json_array();
                if (!memory)
                        return -ENOMEM;
                for (size_t i = 0; i < p->n_memory; i++) {
                        if (json_array_append_new(memory, memory_grant_to_json(&grants[i], (int) i + 1)) < 0) {
                                json_decref(memory);
                                return -ENOMEM;
                        }
                        fds[i + 1] = grants[i].region->huge->memfd;
                }
        }
        reply = json_pack("{s:s, s:o, s:i}",
                          "lease", l->id,
                          "device", device_to_json(&l->device, NULL),
                          "fd", 0);
        if (reply && memory && json_object_set_new(reply, "memory", memory) < 0) {
                json_decref(reply);
                reply = NULL;
        } else if (!reply)
                json_decref(memory);
        if (!reply)
                return -ENOMEM;
        r = conn_reply(c->conn, reply, fds, 1 + p->n_memory);
        /* The reply holds its own duplicate for the send; the daemon keeps only its handle. */
        c->manager->backend->device.client_fd_sent(l->vfio);
        return r;
}

int method_acquire_device(Client *c, json_t *params) {
        _cleanup_free_ InventoryDevice *devices = NULL;
        const InventoryDevice *d = NULL;
        AcquireParams p = {};
        Lease *l;
        int r;

        r = acquire_parse(c, params, &p);
        if (r <= 0)
                return r;
        r = acquire_find(c, p.address, &devices, &d);
        if (r <= 0)
                return r;
        r = acquire_validate_memory(c, &p);
        if (r <= 0)
                return r;
        r = acquire_reserve(c, d);
        if (r <= 0)
                return r;
        r = acquire_authorize(c, d, &p);
        if (r <= 0)
                return r;
        r = acquire_open(c, d, &l);
        if (r <= 0)
                return r;
        return acquire_grant(c, l, &p);
}

int method_release_device(Client *c, json_t *params) {
        static const char *const allowed[] = { "lease", NULL };
        const char *id;
        size_t index;
        Lease *l;
        int r;

        r = params_get_only_id(c, params, allowed, "lease", &id);
        if (r <= 0)
                return r;

        l = client_find_lease(c, id, &index);
        if (!l)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NO_SUCH_LEASE, json_pack("{s:s}", "lease", id));

        char address[sizeof(l->device.address)];
        memcpy(address, l->device.address, sizeof(address));
        r = client_end_lease(c, index, "release");
        if (r == -EIO)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_DEVICE_QUARANTINED, json_pack("{s:s}", "device", address));
        return conn_reply(c->conn, NULL, NULL, 0);
}
