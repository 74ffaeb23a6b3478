/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See monitor.h: Monitor() events for administrators, from lease hooks and kernel uevents
 * (layer 4).
 */
#include <errno.h>
#include <linux/netlink.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "lease.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "monitor.h"

#define UEVENT_GROUP_KERNEL 1U

void monitor_emit(Monitor *mon, const char *event, json_t *fields) {
        json_t *base = fields ?: json_object();

        if (!base || json_object_set_new(base, "event", json_string(event)) < 0) {
                json_decref(base);
                return;
        }
        for (Client *c = *mon->clients; c; c = c->next)
                if (c->conn->monitoring)
                        (void) conn_notify(c->conn, json_deep_copy(base));
        json_decref(base);
}

void monitor_lease_event(Monitor *mon, const Lease *l, LeaseEvent ev, const char *reason) {
        switch (ev) {
        case LEASE_EVENT_GRANTED:
                monitor_emit(mon, "lease-granted",
                             json_pack("{s:s, s:s, s:s, s:I, s:I}", "lease", l->id, "device", l->device.address,
                                       "backend", backend_to_string(l->device.backend),
                                       "uid", (json_int_t) l->holder.uid, "pid", (json_int_t) l->holder.pid));
                break;
        case LEASE_EVENT_QUARANTINED:
                monitor_emit(mon, "lease-quarantined",
                             json_pack("{s:s, s:s, s:s}", "lease", l->id, "device", l->device.address,
                                       "reason", reason));
                break;
        case LEASE_EVENT_RELEASED:
                monitor_emit(mon, "lease-released",
                             json_pack("{s:s, s:s, s:s}", "lease", l->id, "device", l->device.address,
                                       "reason", reason));
                break;
        case LEASE_EVENT_CLOSING:
        case _LEASE_EVENT_MAX:
        case _LEASE_EVENT_INVALID:
        default:
                break;
        }
}

/* A uevent is "ACTION@DEVPATH\0KEY=VALUE\0...". */
static const char *uevent_get(const char *buf, size_t n, const char *key) {
        size_t kl = strlen(key);

        for (size_t off = strnlen(buf, n) + 1; off < n; off += strnlen(buf + off, n - off) + 1)
                if (strncmp(buf + off, key, kl) == 0 && buf[off + kl] == '=')
                        return buf + off + kl + 1;
        return NULL;
}

const char *monitor_classify_uevent(const char *buf, size_t n, const char **ret_device,
                                    const char **ret_detail) {
        const char *action, *subsystem, *slot, *driver;

        action = uevent_get(buf, n, "ACTION");
        subsystem = uevent_get(buf, n, "SUBSYSTEM");
        slot = uevent_get(buf, n, "PCI_SLOT_NAME");
        driver = uevent_get(buf, n, "DRIVER");
        if (!action || !subsystem || !streq(subsystem, "pci") || !slot || !pci_address_is_valid(slot))
                return NULL;

        *ret_device = slot;
        if (streq(action, "bind") && driver && strstr(driver, "vfio")) {
                *ret_detail = driver;
                return "device-added";
        }
        if (streq(action, "unbind") || streq(action, "remove")) {
                *ret_detail = action;
                return "device-removed";
        }
        return NULL;
}

static int on_uevent(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Monitor *mon = userdata;
        char buf[8192];
        struct sockaddr_nl sa;
        struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) - 1 };
        struct msghdr mh = { .msg_name = &sa, .msg_namelen = sizeof(sa), .msg_iov = &iov, .msg_iovlen = 1 };
        const char *event, *device, *detail;
        ssize_t n;

        n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n <= 0)
                return 0;
        /* Only the kernel (port id 0) speaks on this group; anything else is ignored. */
        if (mh.msg_namelen != sizeof(sa) || sa.nl_pid != 0)
                return 0;
        buf[n] = 0;

        event = monitor_classify_uevent(buf, (size_t) n, &device, &detail);
        if (!event)
                return 0;
        monitor_emit(mon, event, json_pack("{s:s, s:s}", "device", device,
                                         streq(event, "device-added") ? "driver" : "action", detail));
        return 0;
}

void monitor_setup(Monitor *mon, sd_event *event, Client *const *clients) {
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = UEVENT_GROUP_KERNEL };
        int fd, r;

        fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT);
        if (fd < 0) {
                log_info_errno(errno, "No uevents (%m): Monitor() will report lease changes only.");
                return;
        }
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                log_info_errno(errno, "Cannot listen to uevents (%m): Monitor() will report lease changes only.");
                (void) close(fd);
                return;
        }
        mon->clients = clients;
        r = sd_event_add_io(event, &mon->uevent_source, fd, EPOLLIN, on_uevent, mon);
        if (r < 0) {
                (void) close(fd);
                return;
        }
        (void) sd_event_source_set_io_fd_own(mon->uevent_source, true);
}

void monitor_done(Monitor *mon) {
        mon->uevent_source = sd_event_source_disable_unref(mon->uevent_source);
}
