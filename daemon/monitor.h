/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Monitor(): a Varlink "more" stream of device and lease changes for administrators (an
 * observer, layer 4, docs/architecture.md).
 *
 * Lease events come from lease.c through the LeaseHooks the manager wires to
 * monitor_lease_event(); nothing in lease.c names this module. Device events come from the
 * kernel's uevents (NETLINK_KOBJECT_UEVENT, the kernel multicast group): a PCI function bound
 * to or unbound from a vfio-pci driver, or removed. The kernel group is used rather than udev's
 * because the daemon needs no udev processing of these events and must also work where no udev
 * runs (containers, the test VMs); only the event's address is trusted, and the inventory is
 * read again from sysfs by whoever acts on it.
 *
 * Owns the uevent socket (through its event source). The subscribers are the Clients whose
 * connection is a Monitor() stream (method-admin.c); they are written to with conn_notify() and
 * owned by the manager.
 */
#pragma once

#include <jansson.h>
#include <stddef.h>

#include <systemd/sd-event.h>

typedef struct Client Client;
typedef struct Lease Lease;
typedef enum LeaseEvent LeaseEvent;

/* The subscribers are the clients (in *clients, the manager's list) whose current request is a
 * Monitor() stream. */
typedef struct Monitor {
        Client *const *clients;
        sd_event_source *uevent_source;         /* kernel uevents */
} Monitor;

/* Starts listening for uevents. Failure is not fatal (no hotplug events then). */
void monitor_setup(Monitor *mon, sd_event *event, Client *const *clients);
void monitor_done(Monitor *mon);

/* Pure part of the uevent handling (unit-tested): for a kernel uevent buffer of n bytes returns
 * "device-added" (bound to a vfio driver; *ret_detail = the driver), "device-removed"
 * (unbind or remove; *ret_detail = the action), or NULL for anything else. */
const char *monitor_classify_uevent(const char *buf, size_t n, const char **ret_device,
                                    const char **ret_detail);

/* Sends {"event": event, ...fields} to every Monitor() subscriber. fields is consumed. */
void monitor_emit(Monitor *mon, const char *event, json_t *fields);

/* Observer of lease events (lease.h, wired by manager_new()): "lease-granted",
 * "lease-quarantined" and "lease-released" for the subscribers. */
void monitor_lease_event(Monitor *mon, const Lease *l, LeaseEvent ev, const char *reason);
