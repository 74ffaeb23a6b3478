/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Request dispatch (layer 6): the Varlink envelope checks, the parameter helpers, the
 * authorization step (the uid-0 capability check, then polkit) and the method table with its
 * polkit action column. The handlers live with their group: method-service.c,
 * method-device.c, method-memory.c, method-admin.c (method.h). Owns nothing past a request:
 * what a request reserves belongs to the Client (client.h) and is dropped by
 * client_request_done() when the request ends. Trusts nothing in the message: the envelope,
 * the method name and every parameter are checked before a handler acts; who asks comes from
 * the Client's identity, fixed by the kernel at accept.
 *
 * A request is traced through the daemon by reading, in order (docs/architecture.md, "One
 * request, file by file"): manager.c (accept) -> client.c and identity.c (the session and who
 * it is) -> conn.c (bytes to a parsed message) -> client.c (ConnOps.dispatch) -> this file
 * (message to handler) -> method-*.c (parse -> validate -> authorize -> act -> reply) ->
 * polkit.c (authorize; its answer re-runs the handler through conn.c) -> lease.c / region.c
 * with vfio.c / hugepage.c (act) -> persist.c and fdstore.c (write-ahead) -> record.c
 * (records) -> lease events through the manager to persist.c and monitor.c -> conn.c (reply).
 * On disconnect: client.c's client_free(), the ordered teardown (lease.c's lease_teardown()).
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "record.h"
#include "client.h"
#include "dispatch.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "lease.h"
#include "manager.h"
#include "method.h"
#include "noiommu/protocol.h"
#include "polkit.h"

typedef int (*method_handler_t)(Client *c, json_t *params);

typedef enum MethodFlags {
        METHOD_SENDS_FDS = 1 << 0,      /* the reply carries fds: a oneway call makes no sense */
} MethodFlags;

/* The action column of a method whose handler picks its action from what the inventory found
 * (AcquireDevice: noiommu or IOMMU backend), never from the request, and from whether the
 * request carries memory (the -with-memory pair: one check for the device and its memory). */
#define METHOD_ACTION_BY_BACKEND "(by backend)"

typedef struct Method {
        const char *name;
        method_handler_t handler;
        const char *action;             /* the polkit action authorize() must be asked; NULL: none */
        MethodFlags flags;
} Method;

/* The method being run, for authorize()'s check against the table. */
static const Method *current_method;

int reply_invalid_parameter(Client *c, const char *parameter) {
        return conn_reply_error(c->conn, VARLINK_ERROR_INVALID_PARAMETER,
                                json_pack("{s:s}", "parameter", parameter));
}

/* Returns the first key of params not in allowed, or NULL. Unknown parameters are an error so
 * that a typo never silently means "default". */
const char *params_unknown_key(json_t *params, const char *const *allowed) {
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
json_t *param_get(json_t *params, const char *key) {
        json_t *v = json_object_get(params, key);

        return json_is_null(v) ? NULL : v;
}

/* A required memory or lease id (NOIOMMU_ID_LEN lower-case hex digits), or NULL. */
const char *param_get_id(json_t *params, const char *key) {
        json_t *v = param_get(params, key);

        return json_is_string(v) && noiommu_id_is_valid(json_string_value(v)) ? json_string_value(v) : NULL;
}

/* An optional boolean parameter: absent or null leaves *ret alone. */
int param_get_bool(json_t *params, const char *key, bool *ret) {
        json_t *v = param_get(params, key);

        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return -EINVAL;
        *ret = json_is_true(v);
        return 0;
}

int params_get_only_id(Client *c, json_t *params, const char *const *allowed, const char *key,
                       const char **ret) {
        const char *k = params_unknown_key(params, allowed);

        if (k)
                return reply_invalid_parameter(c, k);
        *ret = param_get_id(params, key);
        if (!*ret)
                return reply_invalid_parameter(c, key);
        return 1;
}

/* PermissionDenied's reason for a uid-0 client without the capability the action needs. */
#define REASON_ROOT_WITHOUT_CAPABILITIES "root-without-capabilities"

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

        record_capability_refused(&c->id, action, details, interactive, capability_name(cap), r < 0);
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

/* Authorization step shared by all handlers (method.h). cap is the capability a uid-0 client must hold
 * itself (see check_root_capability()), or CAP_NONE. Returns 1 to go on and act, 0 when the
 * handler must return 0 now (the check is pending, or a denial was already answered),
 * negative errno on our own failure. */
int authorize(Client *c, const char *action, char **details, bool interactive, int cap) {
        const char *reason = NULL;
        int r;

        /* The table's polkit column is the contract: a handler asks for its method's action. */
        assert(current_method);
        assert(streq(current_method->action, METHOD_ACTION_BY_BACKEND)
               ? streq(action, ACTION_ACQUIRE_DEVICE) || streq(action, ACTION_ACQUIRE_DEVICE_IOMMU) ||
                 streq(action, ACTION_ACQUIRE_DEVICE_WITH_MEMORY) ||
                 streq(action, ACTION_ACQUIRE_DEVICE_IOMMU_WITH_MEMORY)
               : current_method->action && streq(action, current_method->action));

        r = check_root_capability(c, action, details, interactive, cap);
        if (r <= 0)
                return r;

        r = c->manager->backend->polkit.verify(c->manager->polkit, &c->polkit, &c->id, action, details,
                                               interactive, conn_redispatch, c->conn, &reason);
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
                record_limit_exceeded(&c->id, reason);
                r = conn_reply_error(c->conn, NOIOMMU_ERROR_LIMIT_EXCEEDED,
                                     json_pack("{s:s}", "limit", reason));
        } else
                return r;
        return r < 0 ? r : 0;
}

/* Why each method may be called by anyone who reaches the socket (the action column is what
 * authorize() is asked; a handler asking for another action aborts):
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
 *                    from the backend the inventory found, never from the request. With
 *                    "memory" (up to NOIOMMU_ACQUIRE_MEMORY_MAX regions, each validated and
 *                    limited as AllocateMemory's) the one check is of
 *                    io.noiommud.acquire-device[-iommu]-with-memory instead, which no rule for
 *                    the separate actions grants.
 *   ReleaseDevice:   acts only on a lease of this very connection.
 *   ListLeases:      reveals who holds which device; polkit io.noiommud.manage (auth_admin).
 *   RevokeLease:     ends anyone's lease (and retries the quiesce of a quarantined one);
 *                    polkit io.noiommud.manage, with the validated lease id as detail.
 *   Monitor:         a stream of device and lease changes; polkit io.noiommud.manage. */
static const Method methods[] = {
        { VARLINK_METHOD_GET_INFO,                  method_get_info,                  NULL,                     0 },
        { VARLINK_METHOD_GET_INTERFACE_DESCRIPTION, method_get_interface_description, NULL,                     0 },
        { NOIOMMU_METHOD_LIST_DEVICES,              method_list_devices,              ACTION_LIST_DEVICES,      0 },
        { NOIOMMU_METHOD_ALLOCATE_MEMORY,           method_allocate_memory,           ACTION_ALLOCATE_MEMORY,   METHOD_SENDS_FDS },
        { NOIOMMU_METHOD_FREE_MEMORY,               method_free_memory,               NULL,                     0 },
        { NOIOMMU_METHOD_ACQUIRE_DEVICE,            method_acquire_device,            METHOD_ACTION_BY_BACKEND, METHOD_SENDS_FDS },
        { NOIOMMU_METHOD_RELEASE_DEVICE,            method_release_device,            NULL,                     0 },
        { NOIOMMU_METHOD_LIST_LEASES,               method_list_leases,               ACTION_MANAGE,            0 },
        { NOIOMMU_METHOD_REVOKE_LEASE,              method_revoke_lease,              ACTION_MANAGE,            0 },
        { NOIOMMU_METHOD_MONITOR,                   method_monitor,                   ACTION_MANAGE,            0 },
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
        for (const char *const *flag = (const char *const[]) { "oneway", "more", NULL }; *flag; flag++) {
                v = json_object_get(msg, *flag);
                if (v && !json_is_boolean(v)) {
                        conn_protocol_violation(c->conn, "oneway or more is not a boolean");
                        return 0;
                }
        }
        /* Varlink: with "oneway" the server "must adhere to the instruction" to suppress its
         * reply, so that the client can pair the next reply with its next call
         * (https://varlink.org/Method-Call). So it is set before anything below can answer:
         * every reply and error of this request, unknown method or interface and refused
         * upgrade included, is then dropped by conn_reply*(). */
        c->conn->current_oneway = json_is_true(json_object_get(msg, "oneway"));
        c->conn->current_more = json_is_true(json_object_get(msg, "more"));

        v = json_object_get(msg, "upgrade");
        if (v && !json_is_false(v))
                return conn_reply_error(c->conn, VARLINK_ERROR_INVALID_PARAMETER,
                                        json_pack("{s:s}", "parameter", "upgrade"));

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

        /* A grant nobody reads back would be pinned memory or a device fd the client can never
         * name: a oneway AllocateMemory or AcquireDevice does nothing at all, and (oneway)
         * says nothing. */
        if (c->conn->current_oneway && (method->flags & METHOD_SENDS_FDS)) {
                log_debug("Ignoring oneway %s from UID %u: its reply would carry fds.", name,
                          (unsigned) c->id.uid);
                return reply_invalid_parameter(c, "oneway");
        }

        current_method = method;
        if (!params || json_is_null(params)) {
                _cleanup_(json_decrefp) json_t *empty = json_object();

                r = empty ? method->handler(c, empty) : -ENOMEM;
        } else
                r = method->handler(c, params);
        current_method = NULL;

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
