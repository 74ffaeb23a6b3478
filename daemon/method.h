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

#include "inventory.h"
#include "settings.h"

typedef struct Client Client;
typedef struct Manager Manager;

/* polkit actions (policy/io.noiommud.policy). */
#define ACTION_LIST_DEVICES "io.noiommud.list-devices"
#define ACTION_ALLOCATE_MEMORY "io.noiommud.allocate-memory"
#define ACTION_ACQUIRE_DEVICE "io.noiommud.acquire-device"
#define ACTION_ACQUIRE_DEVICE_IOMMU "io.noiommud.acquire-device-iommu"
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
