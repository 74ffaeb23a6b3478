/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the method handlers (method-*.c) share with dispatch.c (layer 6): the parameter
 * helpers, the authorization step, the polkit actions, and the handlers themselves for
 * dispatch.c's table.
 *
 * Every handler runs parse -> validate -> authorize -> act -> reply, and may run more than
 * once for one request (after an asynchronous polkit reply the whole handler runs again from
 * the top), so nothing before the authorization step may change state. Handlers own nothing
 * after they return: what they create is handed to a Client or a Lease (which then own it) or
 * freed. They trust no parameter until they have checked it.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>

#include <systemd/sd-id128.h>

#include "inventory.h"
#include "region.h"
#include "settings.h"

typedef struct Client Client;
typedef struct Lease Lease;
typedef struct Manager Manager;

/* polkit actions (policy/io.noiommud.policy). */
#define ACTION_LIST_DEVICES "io.noiommud.list-devices"
#define ACTION_ALLOCATE_MEMORY "io.noiommud.allocate-memory"
#define ACTION_ACQUIRE_DEVICE "io.noiommud.acquire-device"
#define ACTION_ACQUIRE_DEVICE_IOMMU "io.noiommud.acquire-device-iommu"
/* AcquireDevice with "memory": one check for the device and its memory together. New ids, so
 * that no rule written for the two separate actions grants the combination (admin.md). */
#define ACTION_ACQUIRE_DEVICE_WITH_MEMORY "io.noiommud.acquire-device-with-memory"
#define ACTION_ACQUIRE_DEVICE_IOMMU_WITH_MEMORY "io.noiommud.acquire-device-iommu-with-memory"
#define ACTION_MANAGE "io.noiommud.manage"

/* No capability needed: polkit alone decides. */
#define CAP_NONE (-1)

/* Replies InvalidParameter naming parameter. */
int reply_invalid_parameter(Client *c, const char *parameter);
/* Returns the first key of params not in allowed, or NULL. */
const char *params_unknown_key(json_t *params, const char *const *allowed);
/* A parameter; Varlink's null means absent. */
json_t *param_get(json_t *params, const char *key);
/* A required memory or lease id, or NULL. */
const char *param_get_id(json_t *params, const char *key);
/* An optional boolean parameter: absent or null leaves *ret alone. */
int param_get_bool(json_t *params, const char *key, bool *ret);
/* The first step of the methods that act on one id (key): no unknown parameter, a valid id.
 * Returns 1 with *ret, or 0 when InvalidParameter was answered. */
int params_get_only_id(Client *c, json_t *params, const char *const *allowed, const char *key,
                       const char **ret);

/* Authorization step shared by all handlers (dispatch.c). action must be the method table's
 * polkit action for the current method (checked). Returns 1 to go on and act, 0 when the
 * handler must return 0 now (pending, or a denial was already answered), negative errno on
 * the daemon's own failure. */
int authorize(Client *c, const char *action, char **details, bool interactive, int cap);

/* A device as ListDevices, AcquireDevice and ListLeases show it (method-device.c). settings:
 * NULL for a device the daemon serves already. */
json_t *device_to_json(const InventoryDevice *d, const Settings *settings);

/* One region of memory a request asks for: AllocateMemory's parameters, or one item of
 * AcquireDevice's "memory" (method-memory.c). */
typedef struct MemoryRequest {
        uint64_t size;                  /* rounded up to whole pages by memory_request_validate() */
        uint64_t hugepage_size;         /* 0 until parsed: the daemon's default */
        int64_t numa_node;              /* -1: any */
} MemoryRequest;

#define MEMORY_REQUEST_INIT(m) ((MemoryRequest) { .hugepage_size = (m)->default_hugepage_size, .numa_node = -1 })

/* The fields of one memory request, read from obj. prefix is put before a field's name in the
 * InvalidParameter reply ("" for AllocateMemory, "memory[1]." for an item). Only size,
 * hugepageSize and numaNode are read: the caller checks for unknown keys. Returns 1, or 0 when
 * InvalidParameter was answered. */
int memory_request_parse(Client *c, json_t *obj, const char *prefix, MemoryRequest *m);
/* Checks m against what the kernel offers and the size cap, and rounds its size up to whole
 * pages. Returns 1, or 0 (answered). */
int memory_request_validate(Client *c, MemoryRequest *m);
/* The per-uid, per-container and global limits for n new regions of total bytes: checked
 * before polkit is asked and again after it said yes. Returns 1, or 0 (LimitExceeded
 * answered). */
int memory_limits_check(Client *c, unsigned n, uint64_t total);

/* One region granted by a request: allocated, charged and owned by lease (mapped into its DMA
 * context) or by the client, not yet stored, recorded or sent. */
typedef struct MemoryGrant {
        char id[SD_ID128_STRING_MAX];
        Region *region;                 /* owned by the lease or the client */
        DmaSegment *segments;
        size_t n_segments;
        AddressKind kind;
} MemoryGrant;

void memory_grant_done(MemoryGrant *g);
/* act: allocates m's memory (allocate_region()) and gives it to lease, or to the client when
 * lease is NULL. Returns 1 with *g filled, 0 (answered: OutOfMemory, NotSupported, ...) or < 0;
 * on anything but 1 nothing was allocated. */
int memory_grant_new(Client *c, const MemoryRequest *m, Lease *lease, MemoryGrant *g);
/* Takes back a grant that never reached the client (its write-ahead failed): freed at once,
 * audited with reason. */
void memory_grant_withdraw(Client *c, Lease *lease, MemoryGrant *g, const char *reason);
/* The audit record of a grant about to be sent. */
void memory_grant_record(Client *c, const MemoryGrant *g, const Lease *lease);
/* The grant as AllocateMemory's reply shows it; fd_index is its memfd's index among the
 * reply's fds. */
json_t *memory_grant_to_json(const MemoryGrant *g, int fd_index);

/* The handlers, by group. */
int method_get_info(Client *c, json_t *params);                         /* method-service.c */
int method_get_interface_description(Client *c, json_t *params);
int method_list_devices(Client *c, json_t *params);                     /* method-device.c */
int method_acquire_device(Client *c, json_t *params);
int method_release_device(Client *c, json_t *params);
int method_allocate_memory(Client *c, json_t *params);                  /* method-memory.c */
int method_free_memory(Client *c, json_t *params);
int method_list_leases(Client *c, json_t *params);                      /* method-admin.c */
int method_revoke_lease(Client *c, json_t *params);
int method_monitor(Client *c, json_t *params);
