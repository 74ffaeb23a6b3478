/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Request dispatch: Varlink message checks, the method table, and the handlers.
 *
 * A request is traced through the daemon by reading, in order: conn.c (bytes to a parsed
 * message), this file (message to handler: parse -> validate -> authorize -> act -> reply),
 * polkit.c (authorize), inventory.c or hugepage.c (act), audit.c (records).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-id128.h>

#include "audit.h"
#include "config.h"
#include "client.h"
#include "dispatch.h"
#include "hugepage.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "inventory.h"
#include "lease.h"
#include "monitor.h"
#include "manager.h"
#include "noiommu/protocol.h"
#include "persist.h"
#include "polkit.h"

extern const char varlink_service_interface[];

#define ACTION_LIST_DEVICES "io.noiommud.list-devices"
#define ACTION_ALLOCATE_MEMORY "io.noiommud.allocate-memory"
#define ACTION_ACQUIRE_DEVICE "io.noiommud.acquire-device"
#define ACTION_ACQUIRE_DEVICE_IOMMU "io.noiommud.acquire-device-iommu"
#define ACTION_MANAGE "io.noiommud.manage"

typedef int (*method_handler_t)(Client *c, json_t *params);

typedef enum MethodFlags {
        METHOD_SENDS_FDS = 1 << 0,      /* the reply carries fds: a oneway call makes no sense */
} MethodFlags;

typedef struct Method {
        const char *name;
        method_handler_t handler;
        MethodFlags flags;
} Method;

static int reply_invalid_parameter(Client *c, const char *parameter) {
        return conn_reply_error(c->conn, VARLINK_ERROR_INVALID_PARAMETER,
                                json_pack("{s:s}", "parameter", parameter));
}

/* Returns the first key of params not in allowed, or NULL. Unknown parameters are an error so
 * that a typo never silently means "default". */
static const char *params_unknown_key(json_t *params, const char *const *allowed) {
        const char *key;
        json_t *v;

        json_object_foreach(params, key, v) {
                bool found = false;

                for (const char *const *a = allowed; *a; a++)
                        if (streq(*a, key))
                                found = true;
                if (!found)
                        return key;
        }
        return NULL;
}

/* A parameter that is absent or null is "not given" (Varlink's optional fields). */
static json_t *param_get(json_t *params, const char *key) {
        json_t *v = json_object_get(params, key);

        return json_is_null(v) ? NULL : v;
}

/* A required memory or lease id (NOIOMMU_ID_LEN lower-case hex digits), or NULL. */
static const char *param_get_id(json_t *params, const char *key) {
        json_t *v = param_get(params, key);

        return json_is_string(v) && noiommu_id_is_valid(json_string_value(v)) ? json_string_value(v) : NULL;
}

/* An optional boolean parameter: absent or null leaves *ret alone. */
static int param_get_bool(json_t *params, const char *key, bool *ret) {
        json_t *v = param_get(params, key);

        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return -EINVAL;
        *ret = json_is_true(v);
        return 0;
}

/* PermissionDenied's reason for a uid-0 client without the capability the action needs. */
#define REASON_ROOT_WITHOUT_CAPABILITIES "root-without-capabilities"

/* No capability needed: polkit alone decides. */
#define CAP_NONE (-1)

static const char *capability_name(int cap) {
        return cap == CLIENT_CAP_SYS_RAWIO ? "CAP_SYS_RAWIO" :
               cap == CLIENT_CAP_SYS_ADMIN ? "CAP_SYS_ADMIN" : "?";
}

/* polkitd answers yes to uid 0 without running a single rule. A uid-0 client is not always
 * root, though: a rootful container without a user namespace is host uid 0 with a reduced
 * capability set, and so is a service with CapabilityBoundingSet= emptied. Asking polkit about
 * such a client would make the daemon a confused deputy: it would hand a process that could not
 * open a noiommu device (CAP_SYS_RAWIO) or read physical addresses (CAP_SYS_ADMIN) itself the
 * means to DMA anywhere. So for uid 0 the daemon decides from the kernel: the client, as it was
 * when it connected, must hold the capability in its effective set and be in the initial user
 * namespace, the same test the kernel would apply to the client's own open(). Checked at accept
 * time (the identity is fixed then, like the uid) and before polkit is asked.
 * "rootWithoutCapabilities": "polkit" turns this off and trusts uid 0 as polkit does.
 * Returns 1 when the client may go on to polkit, 0 when it was refused (reply queued). */
static int check_root_capability(Client *c, const char *action, char **details, bool interactive, int cap) {
        char msg[512];
        int r;

        if (cap == CAP_NONE || c->id.uid != 0 || c->manager->settings.root_without_capabilities_polkit)
                return 1;
        r = client_identity_has_capability(&c->id, cap);
        if (r > 0)
                return 1;

        audit_capability_refused(&c->id, action, details, interactive, capability_name(cap), r < 0);
        (void) snprintf(msg, sizeof(msg),
                        "The client runs as root (uid 0) but %s %s in the host's initial user namespace "
                        "(a container's root, or a service with a reduced capability set). polkit would "
                        "allow uid 0 without asking any rule, so noiommud refuses; an administrator can "
                        "set \"rootWithoutCapabilities\": \"polkit\" in the daemon's configuration to "
                        "ask polkit anyway.",
                        r < 0 ? "it could not be verified that it holds" : "it does not hold",
                        capability_name(cap));
        r = conn_reply_error(c->conn, NOIOMMU_ERROR_PERMISSION_DENIED,
                             json_pack("{s:s, s:s, s:s}", "reason", REASON_ROOT_WITHOUT_CAPABILITIES,
                                       "capability", capability_name(cap), "message", msg));
        return r < 0 ? r : 0;
}

/* Authorization step shared by all handlers. cap is the capability a uid-0 client must hold
 * itself (see check_root_capability()), or CAP_NONE. Returns 1 to go on and act, 0 when the
 * handler must return 0 now (the check is pending, or a denial was already answered),
 * negative errno on our own failure. */
static int authorize(Client *c, const char *action, char **details, bool interactive, int cap) {
        const char *reason = NULL;
        int r;

        r = check_root_capability(c, action, details, interactive, cap);
        if (r <= 0)
                return r;

        r = polkit_verify(c->manager->polkit, &c->polkit, &c->id, action, details, interactive,
                          conn_redispatch, c->conn, &reason);
        if (r > 0)
                return 1;
        if (r == 0)
                return 0;               /* pending: the whole handler runs again later */
        if (r == -EACCES && reason && streq(reason, POLKIT_REASON_UID_OUT_OF_RANGE)) {
                char msg[256];

                (void) snprintf(msg, sizeof(msg),
                                "The client's uid %u is above 2147483647: polkit takes uids as signed "
                                "32-bit numbers, so it cannot be asked about this client. Run it with "
                                "a uid below 2^31 (allocate user namespace ranges lower).",
                                (unsigned) c->id.uid);
                r = conn_reply_error(c->conn, NOIOMMU_ERROR_PERMISSION_DENIED,
                                     json_pack("{s:s, s:s}", "reason", reason, "message", msg));
        } else if (r == -EACCES)
                r = conn_reply_error(c->conn, NOIOMMU_ERROR_PERMISSION_DENIED,
                                     json_pack("{s:s}", "reason", reason ?: POLKIT_REASON_DENIED));
        else if (r == -EKEYREJECTED)
                r = conn_reply_error(c->conn, NOIOMMU_ERROR_INTERACTIVE_AUTH_REQUIRED, NULL);
        else if (r == -EUSERS) {
                audit_limit_exceeded(&c->id, reason);
                r = conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED,
                                     json_pack("{s:s}", "limit", reason));
        } else
                return r;
        return r < 0 ? r : 0;
}

/* Why each method may be called by anyone who reaches the socket:
 *   GetInfo, GetInterfaceDescription: static introspection data, no state, no polkit.
 *   ListDevices:     read-only inventory of sysfs; polkit io.noiommud.list-devices (default yes).
 *   AllocateMemory:  takes pinned memory from the shared hugepage pool and reveals physical
 *                    addresses; per-connection cap, then polkit io.noiommud.allocate-memory
 *                    (auth_admin by default). Sizes are integers only, rounded to whole pages.
 *   FreeMemory:      acts only on memory this very connection allocated; no polkit needed.
 *   AcquireDevice:   hands out a device fd; noiommu devices are root-equivalent. The device name
 *                    is validated before any filesystem access, must be in the inventory, must be
 *                    enabled in the configuration for noiommu use, and is reserved before polkit
 *                    io.noiommud.acquire-device (noiommu) / -iommu (cdev-iommu) decides, chosen
 *                    from the backend the inventory found, never from the request.
 *   ReleaseDevice:   acts only on a lease of this very connection.
 *   ListLeases:      reveals who holds which device; polkit io.noiommud.manage (auth_admin).
 *   Monitor:         a stream of device and lease changes; polkit io.noiommud.manage.
 *   RevokeLease:     ends anyone's lease (and retries the quiesce of a quarantined one);
 *                    polkit io.noiommud.manage, with the validated lease id as detail. */

static int method_get_info(Client *c, json_t *params) {
        static const char *const allowed[] = { NULL };
        const char *k = params_unknown_key(params, allowed);

        if (k)
                return reply_invalid_parameter(c, k);

        return conn_reply(c->conn, json_pack("{s:s, s:s, s:s, s:s, s:[s, s]}",
                                       "vendor", "noiommud project",
                                       "product", "noiommud",
                                       "version", PACKAGE_VERSION,
                                       "url", "urn:noiommud",
                                       "interfaces", VARLINK_SERVICE_INTERFACE, NOIOMMU_INTERFACE),
                          NULL, 0);
}

static int method_get_interface_description(Client *c, json_t *params) {
        static const char *const allowed[] = { "interface", NULL };
        const char *k = params_unknown_key(params, allowed), *name;
        json_t *v;

        if (k)
                return reply_invalid_parameter(c, k);
        v = param_get(params, "interface");
        if (!json_is_string(v))
                return reply_invalid_parameter(c, "interface");
        name = json_string_value(v);

        if (streq(name, NOIOMMU_INTERFACE))
                return conn_reply(c->conn, json_pack("{s:s}", "description", noiommu_broker_interface), NULL, 0);
        if (streq(name, VARLINK_SERVICE_INTERFACE))
                return conn_reply(c->conn, json_pack("{s:s}", "description", varlink_service_interface), NULL, 0);
        return conn_reply_error(c->conn, VARLINK_ERROR_INTERFACE_NOT_FOUND, json_pack("{s:s}", "interface", name));
}

/* inventory_scan() of the real sysfs with the administrator's "deviceBackends" applied: what
 * ListDevices shows is exactly what AcquireDevice serves. */
static int scan_devices(Manager *m, InventoryDevice **ret) {
        InventoryDevice *devices = NULL;
        int n;

        n = inventory_scan("/", &devices);
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
static json_t *device_to_json(const InventoryDevice *d, const Settings *settings) {
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

static int method_list_devices(Client *c, json_t *params) {
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

static bool numa_node_exists(int64_t node) {
        char path[64];

        (void) snprintf(path, sizeof(path), "/sys/devices/system/node/node%" PRIi64, node);
        return access(path, F_OK) == 0;
}

/* The limit a new allocation of size bytes would break, or NULL. Checked before polkit is asked
 * and again once it said yes (other connections of the uid may have allocated meanwhile), so
 * that one uid cannot take all allocations or, with "maxMemoryPerUid", all the memory. */
static const char *memory_limit_exceeded(Client *c, uint64_t size) {
        Manager *m = c->manager;
        uint64_t max_bytes = m->settings.max_memory_per_uid, bytes;
        uint64_t max_container = m->settings.max_memory_per_container;
        char buf[CLIENT_CGROUP_MAX + 16];
        const char *key;
        unsigned n;

        if (m->quota.n_regions >= NOIOMMU_REGIONS_MAX)
                return "allocations";
        quota_usage(&m->quota, c->id.uid, &n, &bytes);
        if (n >= NOIOMMU_REGIONS_PER_UID_MAX)
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

static int method_allocate_memory(Client *c, json_t *params) {
        static const char *const allowed[] = { "size", "lease", "hugepageSize", "numaNode", "interactive", NULL };
        _cleanup_(region_dropp) Region *region = NULL;
        _cleanup_free_ DmaSegment *segments = NULL;
        _cleanup_(huge_region_freep) HugeRegion *huge = NULL;
        Region *owned;
        Manager *m = c->manager;
        uint64_t size, hugepage_size = m->default_hugepage_size, pages;
        AddressKind kind = ADDRESS_PHYSICAL;
        Lease *lease = NULL;
        size_t n_segments = 0;
        int64_t numa_node = -1;
        bool interactive = false;
        char id[SD_ID128_STRING_MAX], s_size[32], s_hp[32], s_node[32];
        const char *k;
        json_t *v, *segs;
        sd_id128_t rid;
        int n, r;

        /* parse + validate */
        k = params_unknown_key(params, allowed);
        if (k)
                return reply_invalid_parameter(c, k);
        if (json_get_u64(param_get(params, "size"), &size) < 0 || size == 0)
                return reply_invalid_parameter(c, "size");
        if ((v = param_get(params, "hugepageSize"))) {
                if (json_get_u64(v, &hugepage_size) < 0 || hugepage_size == 0 ||
                    (hugepage_size & (hugepage_size - 1)) != 0)
                        return reply_invalid_parameter(c, "hugepageSize");
        }
        if ((v = param_get(params, "numaNode"))) {
                if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 1023)
                        return reply_invalid_parameter(c, "numaNode");
                numa_node = json_integer_value(v);
        }
        if (param_get_bool(params, "interactive", &interactive) < 0)
                return reply_invalid_parameter(c, "interactive");
        if ((v = param_get(params, "lease"))) {
                size_t li;

                if (!json_is_string(v) || !noiommu_id_is_valid(json_string_value(v)))
                        return reply_invalid_parameter(c, "lease");
                lease = client_find_lease(c, json_string_value(v), &li);
                if (!lease || lease->state != LEASE_ACTIVE)
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_NO_SUCH_LEASE,
                                                json_pack("{s:s}", "lease", json_string_value(v)));
                if (lease->n_regions >= NOIOMMU_REGIONS_PER_LEASE_MAX) {
                        audit_limit_exceeded(&c->id, "allocations-per-lease");
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED,
                                                json_pack("{s:s}", "limit", "allocations-per-lease"));
                }
        }

        if (hugepage_size == 0)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED,
                                        json_pack("{s:s}", "reason", "the kernel offers no hugepages"));
        if (hugepage_size_supported(hugepage_size) <= 0)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED,
                                        json_pack("{s:s}", "reason", "hugepage size not offered by the kernel"));
        if (numa_node >= 0 && !numa_node_exists(numa_node))
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED,
                                        json_pack("{s:s}", "reason", "no such NUMA node"));
        if (size > NOIOMMU_ALLOC_SIZE_MAX)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED,
                                        json_pack("{s:s}", "limit", "allocation-size"));
        pages = (size + hugepage_size - 1) / hugepage_size;
        size = pages * hugepage_size;
        if (!lease && c->n_regions >= NOIOMMU_REGIONS_PER_CONN_MAX) {
                audit_limit_exceeded(&c->id, "allocations-per-connection");
                return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED,
                                        json_pack("{s:s}", "limit", "allocations-per-connection"));
        }
        k = memory_limit_exceeded(c, size);
        if (k) {
                audit_limit_exceeded(&c->id, k);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED, json_pack("{s:s}", "limit", k));
        }

        /* authorize: details carry validated numbers only, never client text */
        (void) snprintf(s_size, sizeof(s_size), "%" PRIu64, size);
        (void) snprintf(s_hp, sizeof(s_hp), "%" PRIu64, hugepage_size);
        if (numa_node >= 0)
                (void) snprintf(s_node, sizeof(s_node), "%" PRIi64, numa_node);
        else
                (void) snprintf(s_node, sizeof(s_node), "any");
        char *details[] = { (char *) "size", s_size, (char *) "hugepage_size", s_hp,
                            (char *) "numa_node", s_node,
                            lease ? (char *) "device" : NULL, lease ? lease->device.address : NULL,
                            NULL };
        /* Physical addresses without a lease are what pagemap shows only to CAP_SYS_ADMIN; with
         * a lease the client needs what the lease's device needed. */
        r = authorize(c, ACTION_ALLOCATE_MEMORY, details, interactive,
                      !lease ? CLIENT_CAP_SYS_ADMIN :
                      lease_is_noiommu(lease) ? CLIENT_CAP_SYS_RAWIO : CLIENT_CAP_SYS_ADMIN);
        if (r <= 0)
                return r;
        k = memory_limit_exceeded(c, size);
        if (k) {
                audit_limit_exceeded(&c->id, k);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED, json_pack("{s:s}", "limit", k));
        }

        /* act */
        r = sd_id128_randomize(&rid);
        if (r < 0)
                return r;
        (void) sd_id128_to_string(rid, id);

        r = huge_region_new(id, size, hugepage_size, (int) numa_node, m->pagemap_fd, &huge);
        if (r == -ENOSPC || r == -ENOMEM) {
                log_info("Not enough free %" PRIu64 "-byte hugepages for %" PRIu64 " bytes for UID %u (PID %i).",
                         hugepage_size, size, (unsigned) c->id.uid, (int) c->id.pid);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_OUT_OF_MEMORY,
                                        json_pack("{s:I, s:I}", "requested", (json_int_t) size,
                                                  "hugepageSize", (json_int_t) hugepage_size));
        }
        /* Not the client's doing, and not an internal error either: the host cannot do this
         * now (the start-up check said so too, main.c). Say why instead of InternalError. */
        if (r == -EPERM || r == -EOPNOTSUPP || r == -ENOSYS) {
                log_error_errno(r, "Cannot pin DMA memory with io_uring (is kernel.io_uring_disabled set?): %m");
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED,
                                        json_pack("{s:s}", "reason", "the kernel refuses io_uring to the daemon "
                                                  "(kernel.io_uring_disabled), so it cannot pin DMA memory"));
        }
        if (r == -ENXIO) {
                log_error_errno(r, "pagemap shows no physical addresses: the daemon needs CAP_SYS_ADMIN when it starts.");
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED,
                                        json_pack("{s:s}", "reason", "the daemon cannot read physical addresses "
                                                  "(it started without CAP_SYS_ADMIN)"));
        }
        if (r < 0)
                return log_error_errno(r, "Failed to allocate %" PRIu64 " bytes of DMA memory: %m", size);
        /* The grant: charged to the client's uid from now until the region's destructor. */
        r = region_new(&m->region_ctx, huge, &c->id, &region);
        if (r < 0)
                return r;
        huge = NULL;                    /* the region's now */

        /* From here on the region is owned by the lease or the connection, so that the
         * teardown order (quiesce before free) covers it whatever happens next. */
        if (lease) {
                /* Into the lease's DMA context: physical addresses (noiommu backends) or IOVAs. */
                r = lease_add_region(lease, region, &segments, &n_segments, &kind);
                if (r == -EOPNOTSUPP)
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED,
                                                json_pack("{s:s}", "reason", "the kernel cannot map memory for this device"));
                if (r == -ENOSPC)
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_OUT_OF_MEMORY,
                                                json_pack("{s:I, s:I}", "requested", (json_int_t) size,
                                                          "hugepageSize", (json_int_t) hugepage_size));
                if (r == -ENOLINK || r == -ESTALE)
                        /* The lease's addresses cannot be vouched for: lease_add_region() logged,
                         * audited and quarantined it; this allocation is freed unseen. */
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_DEVICE_QUARANTINED,
                                                json_pack("{s:s}", "device", lease->device.address));
                if (r < 0)
                        return log_error_errno(r, "Failed to map %s into the DMA context of %s: %m",
                                               region_id(region), lease->device.address);
        } else {
                n = dma_segments_merge(region->huge->phys, region->huge->n_pages, region->huge->hugepage_size,
                                       &segments);
                if (n < 0)
                        return n;
                n_segments = (size_t) n;
                r = client_add_region(c, region);
                if (r < 0)
                        return r;
        }
        owned = TAKE_PTR(region);

        /* Write-ahead (security.md §8): the fd store holds the memory (and the connection)
         * before the client does, so that a daemon crash after the send cannot orphan it. If
         * the store cannot be written the grant is refused: nothing reaches the client. The
         * memory was never handed out, so no device was told its addresses either. */
        r = persist_grant(c, owned, NULL);
        if (r < 0) {
                log_error_errno(r, "Cannot store %s in the fd store, refusing the allocation: %m", id);
                if (lease)
                        lease_withdraw_region(lease, owned, PERSIST_REASON_NOT_STORED);
                else
                        client_withdraw_region(c, owned, PERSIST_REASON_NOT_STORED);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_INTERNAL, NULL);
        }
        audit_memory_granted(&c->id, owned->huge, n_segments, address_kind_to_string(kind),
                             segments[0].dma_address, lease ? lease->id : NULL);

        segs = json_array();
        if (!segs)
                return -ENOMEM;
        for (size_t i = 0; i < n_segments; i++)
                if (json_array_append_new(segs, json_pack("{s:I, s:I, s:I}",
                                                          "offset", (json_int_t) segments[i].offset,
                                                          "length", (json_int_t) segments[i].length,
                                                          "dmaAddress", (json_int_t) segments[i].dma_address)) < 0) {
                        json_decref(segs);
                        return -ENOMEM;
                }

        /* reply: the memfd rides on the first byte; "fd" is its index among the reply's fds */
        return conn_reply(c->conn, json_pack("{s:s, s:I, s:I, s:i, s:s, s:o, s:i}",
                                       "memory", id,
                                       "size", (json_int_t) size,
                                       "hugepageSize", (json_int_t) hugepage_size,
                                       "numaNode", owned->huge->numa_node,
                                       "addressKind", address_kind_to_string(kind),
                                       "segments", segs,
                                       "fd", 0),
                          &owned->huge->memfd, 1);
}


static int method_acquire_device(Client *c, json_t *params) {
        static const char *const allowed[] = { "device", "interactive", NULL };
        _cleanup_free_ InventoryDevice *devices = NULL;
        const InventoryDevice *d = NULL;
        Manager *m = c->manager;
        const char *k, *address, *action, *disabled;
        char vendor[8], device[8], group[16], reason[512];
        bool interactive = false, noiommu;
        Lease *l;
        json_t *v;
        int n, r;

        /* parse + validate: the name is checked before any filesystem access */
        k = params_unknown_key(params, allowed);
        if (k)
                return reply_invalid_parameter(c, k);
        v = param_get(params, "device");
        if (!json_is_string(v) || !pci_address_is_valid(json_string_value(v)))
                return reply_invalid_parameter(c, "device");
        address = json_string_value(v);
        if (param_get_bool(params, "interactive", &interactive) < 0)
                return reply_invalid_parameter(c, "interactive");

        n = scan_devices(m, &devices);
        if (n < 0)
                return log_error_errno(n, "Failed to scan PCI devices: %m");
        for (int i = 0; i < n; i++)
                if (streq(devices[i].address, address))
                        d = &devices[i];
        if (!d)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NO_SUCH_DEVICE, json_pack("{s:s}", "device", address));
        if (d->backend < 0)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED,
                                        json_pack("{s:s}", "reason", device_reason(d, reason, sizeof(reason))));

        noiommu = d->backend != BACKEND_CDEV_IOMMU;
        disabled = device_disabled_reason(&m->settings, d);
        if (disabled)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED, json_pack("{s:s}", "reason", disabled));

        /* reserve before asking polkit, so that a racing second request gets DeviceBusy */
        if (c->pending_lease && !streq(c->pending_lease->device.address, address))
                c->pending_lease = lease_unreserve(c->pending_lease);
        if (!c->pending_lease) {
                if (c->n_leases >= NOIOMMU_LEASES_PER_CONN_MAX) {
                        audit_limit_exceeded(&c->id, "leases-per-connection");
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED,
                                                json_pack("{s:s}", "limit", "leases-per-connection"));
                }
                /* Reservations count: two racing acquires of one container cannot both pass. */
                if (m->settings.max_leases_per_container > 0) {
                        char buf[CLIENT_CGROUP_MAX + 16];
                        const char *key = client_identity_limit_key(&c->id, buf, sizeof(buf));
                        uint64_t bytes;
                        unsigned n_leases;

                        if (key) {
                                manager_usage_for_key(m, key, &bytes, &n_leases);
                                if (n_leases >= m->settings.max_leases_per_container) {
                                        audit_limit_exceeded(&c->id, "leases-per-container");
                                        return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED,
                                                                json_pack("{s:s}", "limit", "leases-per-container"));
                                }
                        }
                }
                r = lease_reserve(m, c, d, &c->pending_lease);
                if (r == -EBUSY)
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_DEVICE_BUSY, json_pack("{s:s}", "device", address));
                if (r == -EIO)
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_DEVICE_QUARANTINED, json_pack("{s:s}", "device", address));
                if (r < 0)
                        return r;
        }

        /* authorize: the action follows from the backend the inventory found; details carry
         * validated values only */
        action = noiommu ? ACTION_ACQUIRE_DEVICE : ACTION_ACQUIRE_DEVICE_IOMMU;
        (void) snprintf(vendor, sizeof(vendor), "%04x", d->vendor_id);
        (void) snprintf(device, sizeof(device), "%04x", d->device_id);
        (void) snprintf(group, sizeof(group), "%i", d->iommu_group);
        char *details[] = { (char *) "device", (char *) address,
                            (char *) "vendor_id", vendor,
                            (char *) "device_id", device,
                            (char *) "backend", (char *) backend_to_string(d->backend),
                            (char *) "iommu_group", group,
                            NULL };
        /* The kernel wants CAP_SYS_RAWIO for a noiommu device. Behind an IOMMU it wants only
         * file access to the node, which a container's root lacks through its device cgroup
         * and mount namespace: getting past those takes CAP_SYS_ADMIN. */
        r = authorize(c, action, details, interactive, noiommu ? CLIENT_CAP_SYS_RAWIO : CLIENT_CAP_SYS_ADMIN);
        if (r == 0 && c->polkit)
                lease_wait_authorization(c->pending_lease);
        if (r <= 0)
                return r;       /* pending, or denied (dispatch_current() drops the reservation) */

        /* act */
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

                audit_lease_refused(&c->id, d, r, why);
                lease_unreserve(l);
                if (r == -ENOMEM)
                        return r;
                if (r == -EBUSY)
                        return conn_reply_error(c->conn, NOIOMMU_ERROR_DEVICE_BUSY, json_pack("{s:s}", "device", address));
                /* Whatever the kernel said (a swapped node, a missing driver, a backend this
                 * kernel lacks), this device cannot be served now: say why, keep running. */
                log_warning_errno(r, "Cannot open %s: %s: %m", address, why);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NOT_SUPPORTED, json_pack("{s:s}", "reason", why));
        }
        r = client_add_lease(c, l);
        if (r < 0) {
                /* Bounded when the reservation was made; ended unseen, quiesce first. */
                (void) lease_end(&l, "release");
                return conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED,
                                        json_pack("{s:s}", "limit", "leases-per-connection"));
        }
        /* Write-ahead, as for memory: the device's fds are in the store before the client has
         * one, or the grant is refused (the lease ends the usual way, quiesce first). */
        r = persist_grant(c, NULL, l);
        if (r < 0) {
                log_error_errno(r, "Cannot store lease %s in the fd store, refusing the device: %m", l->id);
                (void) client_end_lease(c, c->n_leases - 1, PERSIST_REASON_NOT_STORED);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_INTERNAL, NULL);
        }
        if (audit_lease_granted(&c->id, l->id, &l->device) < 0) {
                /* Not recorded, so not granted (auditFailure=deny): the device was opened but
                 * never handed out; end it the usual way, quiesce first. */
                (void) client_end_lease(c, c->n_leases - 1, AUDIT_REASON_FAILED);
                return conn_reply_error(c->conn, NOIOMMU_ERROR_PERMISSION_DENIED,
                                        json_pack("{s:s}", "reason", AUDIT_REASON_FAILED));
        }
        lease_announce_granted(l);

        r = conn_reply(c->conn, json_pack("{s:s, s:o, s:i}",
                                    "lease", l->id,
                                    "device", device_to_json(&l->device, NULL),
                                    "fd", 0),
                       (const int[]) { vfio_device_client_fd(l->vfio) }, 1);
        /* The reply holds its own duplicate for the send; the daemon keeps only its handle. */
        vfio_device_client_fd_sent(l->vfio);
        return r;
}

static int method_release_device(Client *c, json_t *params) {
        static const char *const allowed[] = { "lease", NULL };
        const char *k = params_unknown_key(params, allowed), *id;
        size_t index;
        Lease *l;
        int r;

        if (k)
                return reply_invalid_parameter(c, k);
        id = param_get_id(params, "lease");
        if (!id)
                return reply_invalid_parameter(c, "lease");

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

static int method_list_leases(Client *c, json_t *params) {
        static const char *const allowed[] = { "interactive", NULL };
        const char *k = params_unknown_key(params, allowed);
        bool interactive = false;
        json_t *list;
        uint64_t now;
        int r;

        if (k)
                return reply_invalid_parameter(c, k);
        if (param_get_bool(params, "interactive", &interactive) < 0)
                return reply_invalid_parameter(c, "interactive");

        r = authorize(c, ACTION_MANAGE, NULL, interactive, CLIENT_CAP_SYS_ADMIN);
        if (r <= 0)
                return r;

        now = lease_now_usec();
        list = json_array();
        if (!list)
                return -ENOMEM;
        for (Lease *l = c->manager->leases; l; l = l->next) {
                char cg[4 * CLIENT_CGROUP_MAX + 1];

                cgroup_escape(l->holder.cgroup, cg, sizeof(cg));     /* JSON takes UTF-8 only */
                json_t *holder = l->state == LEASE_QUARANTINED ? json_null() :
                        json_pack("{s:I, s:I, s:I, s:s, s:o, s:o}",
                                  "uid", (json_int_t) l->holder.uid,
                                  "gid", (json_int_t) l->holder.gid,
                                  "pid", (json_int_t) l->holder.pid,
                                  "unit", l->holder.unit,
                                  "cgroup", cg[0] ? json_string(cg) : json_null(),
                                  "containerId", l->holder.container_id[0] ? json_string(l->holder.container_id)
                                                                           : json_null());

                if (json_array_append_new(list, json_pack("{s:s, s:o, s:s, s:o, s:{s:I, s:I}, s:I, s:I}",
                                                          "lease", l->id,
                                                          "device", device_to_json(&l->device, NULL),
                                                          "state", lease_state_to_string(l->state),
                                                          "holder", holder,
                                                          "lastHolder", "uid", (json_int_t) l->holder.uid,
                                                          "pid", (json_int_t) l->holder.pid,
                                                          "bytesPinned", (json_int_t) lease_bytes_pinned(l),
                                                          "ageUsec", (json_int_t) (now - l->created_usec))) < 0) {
                        json_decref(list);
                        return -ENOMEM;
                }
        }
        return conn_reply(c->conn, json_pack("{s:o}", "leases", list), NULL, 0);
}

static int method_revoke_lease(Client *c, json_t *params) {
        static const char *const allowed[] = { "lease", "interactive", NULL };
        const char *k = params_unknown_key(params, allowed), *id;
        char address[NOIOMMU_PCI_ADDRESS_LEN + 1];
        bool interactive = false;
        size_t index;
        Lease *l;
        int r;

        if (k)
                return reply_invalid_parameter(c, k);
        id = param_get_id(params, "lease");
        if (!id)
                return reply_invalid_parameter(c, "lease");
        if (param_get_bool(params, "interactive", &interactive) < 0)
                return reply_invalid_parameter(c, "interactive");

        char *details[] = { (char *) "lease", (char *) id, NULL };
        r = authorize(c, ACTION_MANAGE, details, interactive, CLIENT_CAP_SYS_ADMIN);
        if (r <= 0)
                return r;

        l = lease_find_by_id(c->manager, id);
        if (!l || (l->state != LEASE_ACTIVE && l->state != LEASE_QUARANTINED))
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NO_SUCH_LEASE, json_pack("{s:s}", "lease", id));
        memcpy(address, l->device.address, sizeof(address));

        log_notice("UID %u (PID %i) revokes lease %s on %s.", (unsigned) c->id.uid, (int) c->id.pid,
                   l->id, address);
        if (l->state == LEASE_QUARANTINED)
                r = lease_retry_quarantined(&l, "revoke");
        else if (l->client && client_find_lease(l->client, id, &index))
                /* The holder's connection stays open; its next use of the lease gets
                 * NoSuchLease, and the lease's records say "revoke". */
                r = client_end_lease(l->client, index, "revoke");
        else
                return conn_reply_error(c->conn, NOIOMMU_ERROR_NO_SUCH_LEASE, json_pack("{s:s}", "lease", id));

        if (r == -EIO)
                return conn_reply_error(c->conn, NOIOMMU_ERROR_DEVICE_QUARANTINED, json_pack("{s:s}", "device", address));
        return conn_reply(c->conn, NULL, NULL, 0);
}

static int method_monitor(Client *c, json_t *params) {
        static const char *const allowed[] = { "interactive", NULL };
        const char *k = params_unknown_key(params, allowed);
        bool interactive = false;
        int r;

        if (k)
                return reply_invalid_parameter(c, k);
        if (param_get_bool(params, "interactive", &interactive) < 0)
                return reply_invalid_parameter(c, "interactive");
        /* A stream needs a caller that expects more than one reply. */
        if (!c->conn->current_more)
                return reply_invalid_parameter(c, "more");

        r = authorize(c, ACTION_MANAGE, NULL, interactive, CLIENT_CAP_SYS_ADMIN);
        if (r <= 0)
                return r;

        /* The request stays current for the life of the connection; every event is one more
         * reply with "continues": true. The first one says the subscription is in place. */
        c->conn->monitoring = true;
        return conn_notify(c->conn, json_pack("{s:s}", "event", "subscribed"));
}

static int method_free_memory(Client *c, json_t *params) {
        static const char *const allowed[] = { "memory", NULL };
        const char *k = params_unknown_key(params, allowed), *id;
        size_t index;

        if (k)
                return reply_invalid_parameter(c, k);
        id = param_get_id(params, "memory");
        if (!id)
                return reply_invalid_parameter(c, "memory");

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

static const Method methods[] = {
        { VARLINK_METHOD_GET_INFO, method_get_info, 0 },
        { VARLINK_METHOD_GET_INTERFACE_DESCRIPTION, method_get_interface_description, 0 },
        { NOIOMMU_METHOD_LIST_DEVICES, method_list_devices, 0 },
        { NOIOMMU_METHOD_ALLOCATE_MEMORY, method_allocate_memory, METHOD_SENDS_FDS },
        { NOIOMMU_METHOD_FREE_MEMORY, method_free_memory, 0 },
        { NOIOMMU_METHOD_ACQUIRE_DEVICE, method_acquire_device, METHOD_SENDS_FDS },
        { NOIOMMU_METHOD_RELEASE_DEVICE, method_release_device, 0 },
        { NOIOMMU_METHOD_LIST_LEASES, method_list_leases, 0 },
        { NOIOMMU_METHOD_REVOKE_LEASE, method_revoke_lease, 0 },
        { NOIOMMU_METHOD_MONITOR, method_monitor, 0 },
        {}
};

static const Method *method_find(const char *name) {
        for (const Method *m = methods; m->name; m++)
                if (streq(m->name, name))
                        return m;
        return NULL;
}

static bool interface_known(const char *method) {
        const char *dot = strrchr(method, '.');
        size_t n;

        if (!dot)
                return false;
        n = (size_t) (dot - method);
        return (n == strlen(NOIOMMU_INTERFACE) && strncmp(method, NOIOMMU_INTERFACE, n) == 0) ||
               (n == strlen(VARLINK_SERVICE_INTERFACE) && strncmp(method, VARLINK_SERVICE_INTERFACE, n) == 0);
}

int dispatch_current(Client *c) {
        static const char *const allowed[] = { "method", "parameters", "oneway", "more", "upgrade", NULL };
        json_t *msg = c->conn->current, *params, *v;
        const Method *method;
        const char *name, *k;
        int r;

        assert(msg);

        k = params_unknown_key(msg, allowed);
        if (k) {
                conn_protocol_violation(c->conn, "unknown field in message");
                return 0;
        }
        v = json_object_get(msg, "method");
        if (!json_is_string(v)) {
                conn_protocol_violation(c->conn, "message without a method");
                return 0;
        }
        name = json_string_value(v);

        params = json_object_get(msg, "parameters");
        if (params && !json_is_object(params) && !json_is_null(params)) {
                conn_protocol_violation(c->conn, "parameters is not an object");
                return 0;
        }
        v = json_object_get(msg, "upgrade");
        if (v && !json_is_false(v))
                return conn_reply_error(c->conn, VARLINK_ERROR_INVALID_PARAMETER,
                                        json_pack("{s:s}", "parameter", "upgrade"));
        for (const char *const *flag = (const char *const[]) { "oneway", "more", NULL }; *flag; flag++) {
                v = json_object_get(msg, *flag);
                if (v && !json_is_boolean(v)) {
                        conn_protocol_violation(c->conn, "oneway or more is not a boolean");
                        return 0;
                }
        }

        method = method_find(name);
        if (!method) {
                if (interface_known(name))
                        return conn_reply_error(c->conn, VARLINK_ERROR_METHOD_NOT_FOUND,
                                                json_pack("{s:s}", "method", name));
                return conn_reply_error(c->conn, VARLINK_ERROR_INTERFACE_NOT_FOUND,
                                        json_pack("{s:s%}", "interface", name,
                                                  strrchr(name, '.') ? (size_t) (strrchr(name, '.') - name)
                                                                     : strlen(name)));
        }

        c->conn->current_more = json_is_true(json_object_get(msg, "more"));
        if (json_is_true(json_object_get(msg, "oneway"))) {
                if (method->flags & METHOD_SENDS_FDS)
                        return reply_invalid_parameter(c, "oneway");
                c->conn->current_oneway = true;
        }

        if (!params || json_is_null(params)) {
                _cleanup_(json_decrefp) json_t *empty = json_object();

                if (!empty)
                        return -ENOMEM;
                r = method->handler(c, empty);
        } else
                r = method->handler(c, params);

        /* A device reservation lives only while polkit decides: whatever path the handler
         * took (denied, device gone meanwhile, error), none may outlive the request. */
        if (c->pending_lease && !c->polkit)
                c->pending_lease = lease_unreserve(c->pending_lease);

        if (r < 0)
                return r;

        /* A handler either answered or left a polkit check pending; anything else is our bug. */
        if (c->conn->current && !c->polkit && !c->conn->monitoring && c->conn->state == CONN_RUNNING) {
                log_error("Handler for %s neither replied nor waits for polkit.", name);
                return -EPROTO;
        }
        return 0;
}
