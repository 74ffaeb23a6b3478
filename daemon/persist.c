/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See persist.h. The state is JSON, version 1:
 *
 *   { "version": 1, "generation": G,
 *     "conns":   [ { "id", "uid", "pid", "startTime" } ],
 *     "leases":  [ { "id", "conn" (or null), "state", "createdUsec", "ioasId", "devId", "hwptId",
 *                    "holder": { "uid", "gid", "pid", "startTime", "unit", "cgroup", "containerId" },
 *                    "device": { "address", "vendorId", "deviceId", "driver", "backend",
 *                                "iommuGroup", "numaNode", "node", "rdev" },
 *                    "unrestored": [ memory ids ] (only when some memory could not be restored) } ],
 *     "regions": [ { "id", "conn" (or null), "lease" (or null), "size", "hugepageSize",
 *                    "phys": [..], "kind", "iova", "retired", "adopted" } ] }
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <systemd/sd-id128.h>

#include "record.h"
#include "client.h"
#include "fdstore.h"
#include "hugepage.h"
#include "internal/fd-util.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "lease.h"
#include "persist.h"
#include "vfio.h"

#define STATE_SIZE_MAX (64U << 20)

static int push_region(const Region *r) {
        char name[64];

        /* Only the memfd: io_uring fds cannot travel over SCM_RIGHTS (the kernel refuses them
         * with EINVAL since 6.7), so the pin cannot outlive the daemon. The memfd keeps the
         * pages allocated meanwhile; huge_region_restore() pins them again and checks that no
         * page moved. */
        region_store_name(r, name, sizeof(name));
        return fdstore_push(name, &r->huge->memfd, 1, /* poll= */ false);
}

/* A lease's device fds (device, group, container, iommufd: whichever its backend has) in ONE
 * notification under "lease-<id>": the restore tells them apart by what each fd is
 * (lease_fd_kind()), so they need no name each, and one sendmsg() stores them all. */
static int push_lease(const Lease *l) {
        int fds[4], set[4];
        size_t n = 0;
        char name[64];

        l->registry->backend->device.get_fds(l->vfio, &fds[0], &fds[1], &fds[2], &fds[3]);
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                if (fds[i] >= 0)
                        set[n++] = fds[i];
        (void) snprintf(name, sizeof(name), "lease-%s", l->id);
        return fdstore_push(name, set, n, /* poll= */ false);
}

/* The held connections: their replies wait for the next state write (persist_flush()). */
static int hold_conn(Persist *p, Client *c) {
        for (size_t i = 0; i < p->n_held; i++)
                if (p->held[i] == c)
                        return 0;               /* one hold per connection is enough */
        if (p->n_held == p->n_held_allocated) {
                size_t a = p->n_held_allocated ? p->n_held_allocated * 2 : 16;
                Client **h = realloc(p->held, a * sizeof(Client *));

                if (!h)
                        return -ENOMEM;
                p->held = h;
                p->n_held_allocated = a;
        }
        p->held[p->n_held++] = c;
        conn_hold(c->conn);
        return 0;
}

static void forget_held(Persist *p, Client *c) {
        for (size_t i = 0; i < p->n_held; i++)
                if (p->held[i] == c) {
                        p->held[i] = p->held[--p->n_held];
                        return;
                }
}

int persist_grant(Persist *p, Client *c, const Region *r, const Lease *new_lease) {
        int k;

        if (!fdstore_enabled())
                return 0;

        /* Each step is tried even if an earlier one failed (the failure is logged): the next
         * state must describe whatever did reach the store. */
        int ret = 0;

        if (!c->store_id[0]) {
                char name[64];
                sd_id128_t id;

                k = p->leases->backend->random_id(&id);
                if (k < 0)
                        return k;
                (void) sd_id128_to_string(id, c->store_id);
                (void) snprintf(name, sizeof(name), "conn-%s", c->store_id);
                /* Polled: a client that hangs up while the daemon is down is dropped by the
                 * manager, and its leases are reclaimed at the next start. */
                k = fdstore_push(name, &c->conn->fd, 1, /* poll= */ true);
                if (k < 0) {
                        ret = k;
                        c->store_id[0] = 0;     /* not stored: the next grant tries again */
                }
        }
        if (r) {
                k = push_region(r);
                if (k < 0)
                        ret = k;
        }
        if (new_lease) {
                k = push_lease(new_lease);
                if (k < 0)
                        ret = k;
        }
        if (ret < 0) {
                persist_dirty(p);
                return ret;             /* refused: the error reply carries nothing, no hold */
        }

        /* The state is written once for every grant of this loop iteration (persist_flush());
         * until then the client's reply, queued after this returns, stays in the daemon. */
        k = hold_conn(p, c);
        if (k < 0) {
                /* Cannot even track the hold: write the state now, as before issue 10. */
                log_debug_errno(k, "Cannot hold the reply until the next state write, writing it now: %m");
                k = persist_save(p);
                if (k < 0)
                        /* The connections held earlier in this iteration still wait for a
                         * state that describes their grants: keep it dirty, so that the
                         * deferred write tries again instead of letting them go. */
                        persist_dirty(p);
                return k;
        }
        persist_dirty(p);
        return 0;
}

static const char *const legacy_kinds[] = { "dev", "grp", "ctr", "iommufd" };

/* Removes the store's copies of a lease's device fds: one name, plus the names a store written
 * before issue 10 used, while a lease restored from such a store may be among the leases. */
static void remove_lease_fds(Persist *p, const char *id) {
        char name[96];

        (void) snprintf(name, sizeof(name), "lease-%s", id);
        (void) fdstore_remove(name);
        if (!p->legacy_lease_names)
                return;
        for (size_t i = 0; i < ELEMENTSOF(legacy_kinds); i++) {
                (void) snprintf(name, sizeof(name), "lease-%s-%s", id, legacy_kinds[i]);
                (void) fdstore_remove(name);
        }
}

static void persist_forget_lease(Persist *p, const Lease *l) {
        if (!fdstore_enabled())
                return;
        remove_lease_fds(p, l->id);
        /* Memory that could not be restored, held by the store until now (after the quiesce). */
        for (size_t i = 0; i < l->n_unrestored; i++) {
                char name[64];

                (void) snprintf(name, sizeof(name), "mem-%s", l->unrestored[i]);
                (void) fdstore_remove(name);
        }
        persist_dirty(p);
}

void persist_lease_event(Persist *p, const Lease *l, LeaseEvent ev) {
        switch (ev) {
        case LEASE_EVENT_CLOSING:
                persist_forget_lease(p, l);
                break;
        case LEASE_EVENT_QUARANTINED:
                persist_dirty(p);
                break;
        case LEASE_EVENT_GRANTED:       /* persist_grant() stored it before: the write-ahead */
        case LEASE_EVENT_RELEASED:
        case _LEASE_EVENT_MAX:
        case _LEASE_EVENT_INVALID:
        default:
                break;
        }
}

void persist_forget_conn(Persist *p, Client *c) {
        char name[64];

        forget_held(p, c);
        if (!c->store_id[0] || !fdstore_enabled())
                return;
        /* The stored copy keeps the socket open: without this the client would never see EOF. */
        (void) snprintf(name, sizeof(name), "conn-%s", c->store_id);
        (void) fdstore_remove(name);
        c->store_id[0] = 0;
        /* No state write for this: the state names only connections that hold something
         * (state_json()), and whatever this one held was let go before (client_free()), which
         * marked the state dirty already. A connection that held nothing costs nothing. */
}

static json_t *region_json(const Region *region, const char *conn, const Lease *l, bool adopted) {
        const HugeRegion *r = region->huge;
        json_t *phys = json_array();
        uint64_t iova = 0;

        if (!phys)
                return NULL;
        for (size_t i = 0; i < r->n_pages; i++)
                if (json_array_append_new(phys, json_integer((json_int_t) r->phys[i])) < 0) {
                        json_decref(phys);
                        return NULL;
                }
        if (l && !adopted)
                (void) l->registry->backend->device.get_map(l->vfio, r, &iova);
        return json_pack("{s:s, s:o, s:o, s:I, s:I, s:o, s:s, s:I, s:b, s:b}",
                         "id", r->id,
                         "conn", conn ? json_string(conn) : json_null(),
                         "lease", l ? json_string(l->id) : json_null(),
                         "size", (json_int_t) r->size,
                         "hugepageSize", (json_int_t) r->hugepage_size,
                         "phys", phys,
                         "kind", address_kind_to_string(adopted ? ADDRESS_PHYSICAL : region->kind),
                         "iova", (json_int_t) iova,
                         "retired", adopted || region->retired,
                         "adopted", adopted);
}

static json_t *device_json(const InventoryDevice *d) {
        return json_pack("{s:s, s:i, s:i, s:s, s:s, s:i, s:i, s:s, s:I}",
                         "address", d->address,
                         "vendorId", (int) d->vendor_id,
                         "deviceId", (int) d->device_id,
                         "driver", d->driver,
                         "backend", backend_to_string(d->backend) ?: "",
                         "iommuGroup", d->iommu_group,
                         "numaNode", d->numa_node,
                         "node", d->node_name,
                         "rdev", (json_int_t) d->rdev);
}

static int append(json_t *a, json_t *v) {
        if (!v || json_array_append_new(a, v) < 0)
                return -ENOMEM;
        return 0;
}

/* all: every connection, also those that hold nothing (a re-exec must carry them over); the fd
 * store's state names only the connections that hold a lease or memory: after a crash a
 * connection that holds nothing has nothing to resume, and leaving it out keeps a disconnect
 * that let nothing go from costing a state write. */
static json_t *state_json(Persist *p, bool all) {
        json_t *conns = json_array(), *leases = json_array(), *regions = json_array();
        int r = 0;

        if (!conns || !leases || !regions)
                r = -ENOMEM;

        for (Client *c = (*p->clients); r >= 0 && c; c = c->next) {
                if (!c->store_id[0] || (!all && c->n_leases == 0 && c->n_regions == 0))
                        continue;
                r = append(conns, json_pack("{s:s, s:I, s:I, s:I}", "id", c->store_id,
                                            "uid", (json_int_t) c->id.uid, "pid", (json_int_t) c->id.pid,
                                            "startTime", (json_int_t) c->id.start_time));
                for (size_t i = 0; r >= 0 && i < c->n_regions; i++)
                        r = append(regions, region_json(c->regions[i], c->store_id, NULL, false));
        }

        for (Lease *l = p->leases->leases; r >= 0 && l; l = l->next) {
                uint32_t ioas = 0, dev = 0, hwpt = 0;
                const char *conn = l->client && l->client->store_id[0] ? l->client->store_id : NULL;

                if (l->state != LEASE_ACTIVE && l->state != LEASE_QUARANTINED)
                        continue;
                l->registry->backend->device.get_ids(l->vfio, &ioas, &dev, &hwpt);
                /* Names a delegate chose can be any bytes; JSON takes UTF-8 only. */
                char unit[4 * CLIENT_UNIT_MAX], cg[4 * CLIENT_CGROUP_MAX + 1];
                cgroup_escape(l->holder.unit, unit, sizeof(unit));
                cgroup_escape(l->holder.cgroup, cg, sizeof(cg));
                json_t *lj = json_pack("{s:s, s:o, s:s, s:I, s:I, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:s, s:s, s:s}, s:o}",
                                             "id", l->id,
                                             "conn", conn ? json_string(conn) : json_null(),
                                             "state", lease_state_to_string(l->state),
                                             "createdUsec", (json_int_t) l->created_usec,
                                             "ioasId", (json_int_t) ioas,
                                             "devId", (json_int_t) dev,
                                             "hwptId", (json_int_t) hwpt,
                                             "holder",
                                             "uid", (json_int_t) l->holder.uid,
                                             "gid", (json_int_t) l->holder.gid,
                                             "pid", (json_int_t) l->holder.pid,
                                             "startTime", (json_int_t) l->holder.start_time,
                                             "unit", unit,
                                             "cgroup", cg,
                                             "containerId", l->holder.container_id,
                                             "device", device_json(&l->device));
                r = append(leases, lj);
                /* The memory only the store still holds for this lease (restore_keep_unrestorable()):
                 * without its ids, a second restart would close those entries as leftovers and
                 * give the pages back before the device is quiesced. */
                if (r >= 0 && l->n_unrestored > 0) {
                        json_t *u = json_array();

                        r = u && json_object_set_new(lj, "unrestored", u) >= 0 ? 0 : -ENOMEM;
                        for (size_t i = 0; r >= 0 && i < l->n_unrestored; i++)
                                r = append(u, json_string(l->unrestored[i]));
                }
                for (size_t i = 0; r >= 0 && i < l->n_regions; i++)
                        r = append(regions, region_json(l->regions[i], NULL, l, false));
                for (size_t i = 0; r >= 0 && i < l->n_adopted; i++)
                        r = append(regions, region_json(l->adopted[i], NULL, l, true));
        }

        if (r < 0) {
                json_decref(conns);
                json_decref(leases);
                json_decref(regions);
                return NULL;
        }
        return json_pack("{s:i, s:I, s:o, s:o, s:o, s:b}", "version", 1, "generation", (json_int_t) p->generation,
                         "conns", conns, "leases", leases, "regions", regions,
                         "legacyLeaseNames", p->legacy_lease_names);
}

int persist_json_memfd(json_t *j, const char *name) {
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -EBADF;
        size_t len;

        text = json_dumps(j, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        len = strlen(text);

        fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return negative_errno();
        for (size_t off = 0; off < len;) {
                ssize_t n = write(fd, text + off, len - off);
                if (n < 0)
                        return negative_errno();
                off += (size_t) n;
        }
        (void) fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
        return TAKE_FD(fd);
}

static int state_memfd(Persist *p, bool all) {
        json_t *state;
        int fd;

        state = state_json(p, all);
        if (!state)
                return -ENOMEM;
        fd = persist_json_memfd(state, "noiommud_state");
        json_decref(state);
        return fd;
}

int persist_state_memfd(Persist *p) {
        return state_memfd(p, /* all= */ true);
}

int persist_save(Persist *p) {
        _cleanup_close_ int fd = -EBADF;
        char name[16];
        int r;

        if (!fdstore_enabled())
                return 0;
        if (!p->leases->leases)
                /* No lease restored from a store written before issue 10 is left. */
                p->legacy_lease_names = false;

        /* The generation is advanced only once the push worked (below): a failed sendmsg()
         * delivered nothing, so the name of the next write must stay the one NOT holding the
         * last good state; otherwise a second failure would first remove that state (the
         * stale removal) and leave the store with none, and the restore would drop every
         * stored fd. dirty is cleared only on success too: a failed write leaves the state
         * changed, and the next persist_flush() must try again, not take it as written. */
        p->generation++;
        fd = state_memfd(p, /* all= */ false);
        if (fd < 0) {
                p->generation--;
                return log_error_errno(fd, "Cannot write the lease state to a memfd: %m");
        }

        /* Two names used in turn. The new state goes in under the name the previous one does
         * not use, and only then is the previous one removed: a crash at any point leaves at
         * least one complete state (restore takes the newest generation). A leftover of the
         * same name can exist only after a start (a crash between the two steps) or after a
         * removal that failed: only then is it removed first, so that a state write is two
         * notifications, not three. */
        (void) snprintf(name, sizeof(name), "state-%u", (unsigned) (p->generation % 2));
        if (p->stale_state_possible && fdstore_remove(name) >= 0)
                p->stale_state_possible = false;
        r = fdstore_push(name, &fd, 1, /* poll= */ false);
        if (r < 0) {
                /* Nothing was stored (one sendmsg(), all or nothing): the same name is written
                 * again next time, and nothing stale was left by this attempt. */
                p->generation--;
                return log_error_errno(r, "Cannot store the lease state in the fd store: %m");
        }
        p->dirty = false;
        (void) snprintf(name, sizeof(name), "state-%u", (unsigned) ((p->generation + 1) % 2));
        r = fdstore_remove(name);
        if (r < 0)
                p->stale_state_possible = true;
        /* The new state is in the store: a leftover older one is harmless (the restore takes
         * the newest generation) and is removed before that name is written again. */
        return 0;
}

void persist_flush(Persist *p) {
        _cleanup_free_ Client **held = NULL;
        size_t n_held;
        int r = 0;

        if (p->dirty)
                r = persist_save(p);

        /* Taken first: client_free() below comes back through persist_forget_conn(). */
        held = TAKE_PTR(p->held);
        n_held = p->n_held;
        p->n_held = p->n_held_allocated = 0;
        if (r < 0 && n_held > 0)
                log_error_errno(r, "Cannot store the lease state in the fd store: ending %zu connection(s) whose "
                                "replies depend on it, before anything reaches them: %m", n_held);
        for (size_t i = 0; i < n_held; i++) {
                if (r >= 0) {
                        conn_unhold(held[i]->conn);
                        continue;
                }
                /* The write-ahead failed after the grant's fds were stored: nothing may reach
                 * this client. Its grants end the usual way (quiesce before free) and are
                 * recorded with this reason. */
                (void) client_free(held[i], PERSIST_REASON_NOT_STORED);
        }
}

static int on_persist(sd_event_source *s, void *userdata) {
        persist_flush(userdata);
        return 0;
}

int persist_init(Persist *p, sd_event *event, Client *const *clients, LeaseRegistry *leases,
                 const ClientContext *client_ctx, const RegionContext *region_ctx) {
        int r;

        *p = (Persist) {
                .event = event,
                .clients = clients,
                .leases = leases,
                .client_ctx = client_ctx,
                .region_ctx = region_ctx,
                .stale_state_possible = true,
        };
        /* Created here, not on first use: persist_dirty() runs inside handlers (persist_grant()
         * after a hold), where writing synchronously could end (client_free()) the very client
         * whose handler is still running. Without the source, start-up fails instead. Made
         * even without an fd store: fdstore_enabled() reads the environment on every call. */
        r = sd_event_add_defer(event, &p->source, on_persist, p);
        if (r < 0)
                return log_error_errno(r, "Cannot create the deferred state write: %m");
        r = sd_event_source_set_enabled(p->source, SD_EVENT_OFF);
        if (r < 0) {
                p->source = sd_event_source_unref(p->source);
                return log_error_errno(r, "Cannot disable the deferred state write: %m");
        }
        return 0;
}

void persist_done(Persist *p) {
        p->source = sd_event_source_disable_unref(p->source);
        free(p->held);
        p->held = NULL;
        p->n_held = p->n_held_allocated = 0;
}

void persist_dirty(Persist *p) {
        if (!fdstore_enabled())
                return;
        p->dirty = true;
        /* Never written synchronously from here (persist_init() says why, and made the
         * source). */
        assert(p->source);
        /* Only a state change (a disconnect, a free): idle priority, after everything else
         * pending, so that a burst of them costs one write. Replies held for it: normal
         * priority. sd-event dispatches the oldest pending source of the best priority
         * first (pending_prioq_compare()), so the write comes after the events already
         * pending when the grant was made (the batch) and is never starved by a stream of
         * newer ones, as an idle source would be under load. */
        (void) sd_event_source_set_priority(p->source, p->n_held > 0 ? SD_EVENT_PRIORITY_NORMAL
                                                                     : SD_EVENT_PRIORITY_IDLE);
        (void) sd_event_source_set_enabled(p->source, SD_EVENT_ONESHOT);
}

/* ---------------------------------------------------------------------------------------- */
/* restore */

typedef struct StoredFd {
        int fd;
        char *name;
        bool consumed;
} StoredFd;

typedef struct Stored {
        StoredFd *fds;
        size_t n;
} Stored;

/* Takes the first fd stored under name (and with a matching predicate, if given). */
static int stored_take(Stored *s, const char *name, bool (*pred)(int fd)) {
        for (size_t i = 0; i < s->n; i++)
                if (s->fds[i].fd >= 0 && streq(s->fds[i].name, name) && (!pred || pred(s->fds[i].fd))) {
                        s->fds[i].consumed = true;
                        return TAKE_FD(s->fds[i].fd);
                }
        return -EBADF;
}

static bool fd_link_has_prefix(int fd, const char *prefix) {
        char path[64], target[256];
        ssize_t n;

        (void) snprintf(path, sizeof(path), "/proc/self/fd/%i", fd);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return false;
        target[n] = 0;
        return strncmp(target, prefix, strlen(prefix)) == 0;
}

static bool is_memfd(int fd) {
        return fd_link_has_prefix(fd, "/memfd:noiommud-");
}

static bool is_io_uring(int fd) {
        return fd_link_has_prefix(fd, "anon_inode:[io_uring]");
}

/* Which of a lease's device fds fd is (the index in get_fds()' order: device, group, container,
 * iommufd), from what the kernel says it is: a device is "anon_inode:[vfio-device]" (from
 * VFIO_GROUP_GET_DEVICE_FD, drivers/vfio/group.c) or a cdev below /dev/vfio/devices/; the
 * container is /dev/vfio/vfio, iommufd /dev/iommu, and any other node in /dev/vfio/ is a
 * group ("N" or "noiommu-N"). -1: none of those. */
int persist_lease_fd_kind_of(const char *link) {
        /* A node unlinked since it was opened reads back as "<path> (deleted)" (d_path(),
         * fs/d_path.c): without this, "/dev/vfio/vfio (deleted)" would pass for a group. */
        static const char deleted[] = " (deleted)";
        char target[256];
        size_t l;

        (void) snprintf(target, sizeof(target), "%s", link);
        l = strlen(target);
        const char *t = target;

        if (l > sizeof(deleted) - 1 && streq(target + l - (sizeof(deleted) - 1), deleted))
                target[l - (sizeof(deleted) - 1)] = 0;
        if (streq(t, "anon_inode:[vfio-device]"))
                return 0;
        /* Opened by an earlier run of the daemon in a mount namespace that is gone (the unit's
         * PrivateMounts=; the fds came back from the fd store): d_path() stops at the root of
         * that namespace's detached /dev mount (fs/d_path.c: __prepend_path() reaches a mount
         * that is its own parent and is in no namespace), so the link reads
         * "/vfio/devices/vfio0" or "/iommu", without "/dev". Both forms are the same nodes. */
        if (strncmp(t, "/dev/", 5) == 0)
                t += 4;
        if (strncmp(t, "/vfio/devices/", 14) == 0)
                return 0;
        if (streq(t, "/vfio/vfio"))
                return 2;
        if (streq(t, "/iommu"))
                return 3;
        if (strncmp(t, "/vfio/", 6) == 0 && t[6] && !strchr(t + 6, '/'))
                return 1;
        return -1;
}

static int lease_fd_kind(int fd) {
        char path[64], target[256];
        ssize_t n;

        (void) snprintf(path, sizeof(path), "/proc/self/fd/%i", fd);
        n = readlink(path, target, sizeof(target) - 1);
        if (n < 0)
                return -1;
        target[n] = 0;
        return persist_lease_fd_kind_of(target);
}

/* A lease's device fds: every fd stored under "lease-<id>", sorted by kind; or, from a store
 * written before issue 10 (or a re-exec from such a binary), one fd per "lease-<id>-<kind>". An
 * fd that is none of the kinds, or a second one of a kind, is closed. */
static void stored_take_lease(Persist *p, Stored *s, const char *id, int fds[static 4]) {
        char name[96];

        for (size_t k = 0; k < 4; k++)
                fds[k] = -EBADF;
        (void) snprintf(name, sizeof(name), "lease-%s", id);
        for (int fd; (fd = stored_take(s, name, NULL)) >= 0; ) {
                int k = lease_fd_kind(fd);

                if (k < 0 || fds[k] >= 0) {
                        log_warning("Lease %s: a stored fd is not one of its device's (or a second of its kind), closing it.", id);
                        (void) safe_close(fd);
                        continue;
                }
                fds[k] = fd;
        }
        for (size_t k = 0; k < ELEMENTSOF(legacy_kinds); k++) {
                int fd;

                (void) snprintf(name, sizeof(name), "lease-%s-%s", id, legacy_kinds[k]);
                fd = stored_take(s, name, NULL);
                if (fd < 0)
                        continue;
                p->legacy_lease_names = true;
                if (fds[k] >= 0)
                        (void) safe_close(fd);
                else
                        fds[k] = fd;
        }
}

static json_t *read_state(int fd) {
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        json_error_t err;

        if (fstat(fd, &st) < 0 || st.st_size <= 0 || (size_t) st.st_size > STATE_SIZE_MAX)
                return NULL;
        buf = malloc((size_t) st.st_size);
        if (!buf || pread(fd, buf, (size_t) st.st_size, 0) != st.st_size)
                return NULL;
        return json_loadb(buf, (size_t) st.st_size, JSON_REJECT_DUPLICATES, &err);
}

static Client *find_conn(Persist *p, const char *id) {
        for (Client *c = (*p->clients); c && id; c = c->next)
                if (streq(c->store_id, id))
                        return c;
        return NULL;
}

static int device_from_json(json_t *j, InventoryDevice *ret) {
        const char *address, *driver, *backend, *node;
        int vendor, device, group, numa;
        json_int_t rdev;

        if (json_unpack(j, "{s:s, s:i, s:i, s:s, s:s, s:i, s:i, s:s, s:I}", "address", &address,
                        "vendorId", &vendor, "deviceId", &device, "driver", &driver, "backend", &backend,
                        "iommuGroup", &group, "numaNode", &numa, "node", &node, "rdev", &rdev) < 0 ||
            !pci_address_is_valid(address))
                return -EBADMSG;
        *ret = (InventoryDevice) {
                .vendor_id = (uint16_t) vendor,
                .device_id = (uint16_t) device,
                .backend = backend_from_string(backend),
                .iommu_group = group,
                .numa_node = numa,
                .rdev = (dev_t) rdev,
        };
        (void) snprintf(ret->address, sizeof(ret->address), "%s", address);
        (void) snprintf(ret->driver, sizeof(ret->driver), "%s", driver);
        (void) snprintf(ret->node_name, sizeof(ret->node_name), "%s", node);
        return ret->backend < 0 ? -EBADMSG : 0;
}

static void restore_conns(Persist *p, json_t *state, Stored *s) {
        json_t *e;
        size_t i;

        json_array_foreach(json_object_get(state, "conns"), i, e) {
                const char *id = json_string_value(json_object_get(e, "id"));
                json_int_t uid = json_integer_value(json_object_get(e, "uid"));
                char name[64];
                Client *c;
                int fd, r;

                if (!id || !noiommu_id_is_valid(id))
                        continue;
                (void) snprintf(name, sizeof(name), "conn-%s", id);
                fd = stored_take(s, name, NULL);
                if (fd < 0) {
                        log_info("Client connection %s did not survive the restart (the client hung up).", id);
                        continue;
                }
                (void) fd_nonblock(fd, true);
                /* The kernel still knows who connected: identity as at accept. */
                r = client_new(p->client_ctx, fd, &c);
                if (r < 0) {
                        log_info_errno(r, "Client of connection %s is gone: %m", id);
                        (void) safe_close(fd);
                        (void) fdstore_remove(name);
                        continue;
                }
                if ((json_int_t) c->id.uid != uid) {
                        log_warning("Stored connection %s now reports UID %u, not %" PRIi64 "; dropping it.",
                                    id, (unsigned) c->id.uid, (int64_t) uid);
                        (void) fdstore_remove(name);
                        (void) client_free(c, "reclaim-after-restart");
                        continue;
                }
                memcpy(c->store_id, id, NOIOMMU_ID_LEN + 1);
                log_info("Restored the connection of UID %u (PID %i).", (unsigned) c->id.uid, (int) c->id.pid);
        }
}

/* Memory an earlier restore could not restore for this lease stays in the store until the
 * lease's quiesce: its entries are claimed here so that they are not closed as leftovers. The
 * daemon needs no copy of its own (the store's keeps the pages), so the one taken is closed.
 * An id is kept even when no fd came with it: a re-exec passes only the fds the daemon holds,
 * while PID 1's store still has the entry, and the next state must name it again. */
static void restore_unrestored(Lease *l, json_t *ids, Stored *s) {
        json_t *v;
        size_t i;

        json_array_foreach(ids, i, v) {
                const char *id = json_string_value(v);
                char name[64];

                if (!id || !noiommu_id_is_valid(id))
                        continue;
                (void) snprintf(name, sizeof(name), "mem-%s", id);
                (void) safe_close(stored_take(s, name, NULL));
                lease_keep_unrestored(l, id);
        }
}

static void restore_leases(Persist *p, json_t *state, Stored *s) {
        json_t *e;
        size_t i;

        json_array_foreach(json_object_get(state, "leases"), i, e) {
                const char *id = json_string_value(json_object_get(e, "id"));
                const char *conn_id = json_string_value(json_object_get(e, "conn"));
                const char *st = json_string_value(json_object_get(e, "state"));
                json_t *h = json_object_get(e, "holder");
                int fds[4];
                InventoryDevice d;
                Lease *l;
                int r;

                if (!id || !noiommu_id_is_valid(id) || !st || device_from_json(json_object_get(e, "device"), &d) < 0) {
                        log_error("Unusable lease entry in the stored state, ignoring it.");
                        continue;
                }
                stored_take_lease(p, s, id, fds);

                ClientIdentity holder = CLIENT_IDENTITY_INIT;
                VfioDevice *vfio;

                holder.uid = (uid_t) json_integer_value(json_object_get(h, "uid"));
                holder.gid = (gid_t) json_integer_value(json_object_get(h, "gid"));
                holder.pid = (pid_t) json_integer_value(json_object_get(h, "pid"));
                holder.start_time = (unsigned long long) json_integer_value(json_object_get(h, "startTime"));
                (void) snprintf(holder.unit, sizeof(holder.unit), "%s",
                                json_string_value(json_object_get(h, "unit")) ?: "");
                /* As recorded (escaped); absent in states written before they were kept. */
                (void) snprintf(holder.cgroup, sizeof(holder.cgroup), "%s",
                                json_string_value(json_object_get(h, "cgroup")) ?: "");
                const char *ctr = json_string_value(json_object_get(h, "containerId"));
                if (ctr && strlen(ctr) == CLIENT_CONTAINER_ID_MAX && strspn(ctr, "0123456789abcdef") == CLIENT_CONTAINER_ID_MAX)
                        memcpy(holder.container_id, ctr, CLIENT_CONTAINER_ID_MAX + 1);

                r = p->leases->backend->device.restore(
                                &d, fds[0], fds[1], fds[2], fds[3],
                                (uint32_t) json_integer_value(json_object_get(e, "ioasId")),
                                (uint32_t) json_integer_value(json_object_get(e, "devId")),
                                /* absent in states written before the explicit HWPT: 0 */
                                (uint32_t) json_integer_value(json_object_get(e, "hwptId")), &vfio);
                if (r < 0) {
                        /* Without the daemon's own handle the device cannot be quiesced: its
                         * fds are closed (the kernel clears Bus Master on the last close). */
                        log_error_errno(r, "Cannot restore the device %s of lease %s: %m", d.address, id);
                        remove_lease_fds(p, id);
                        continue;
                }

                /* The same constructor and state machine as every lease: HOLDER_GONE (or
                 * QUARANTINED) until its client's connection is found again. */
                r = lease_restore(p->leases, id, streq(st, "quarantined"), &d, &holder,
                                  (uint64_t) json_integer_value(json_object_get(e, "createdUsec")),
                                  conn_id, vfio, &l);
                if (r < 0) {
                        log_error_errno(r, "Cannot restore lease %s on %s: %m", id, d.address);
                        continue;
                }
                restore_unrestored(l, json_object_get(e, "unrestored"), s);
                if (l->state == LEASE_HOLDER_GONE) {
                        Client *c = find_conn(p, conn_id);

                        /* A client at its maximum of leases has this one reclaimed. */
                        if (c && client_add_lease(c, l) >= 0)
                                lease_attach(l, c, &c->id);
                }
                log_info("Restored lease %s on %s (%s).", id, d.address, lease_state_to_string(l->state));
        }
}

/* The identity a stored connection had, for the records of what is reclaimed after its client
 * went away: never uid 0 for "unknown" (identity.h: an unset uid that stayed 0 is how
 * CVE-2021-3560 happened); fields the state does not have keep their invalid sentinels. */
static ClientIdentity stored_holder(json_t *state, const char *conn_id) {
        ClientIdentity id = CLIENT_IDENTITY_INIT;
        json_t *e;
        size_t i;

        json_array_foreach(json_object_get(state, "conns"), i, e) {
                json_t *uid = json_object_get(e, "uid"), *pid = json_object_get(e, "pid");

                if (!conn_id || !streq(json_string_value(json_object_get(e, "id")) ?: "", conn_id))
                        continue;
                if (json_is_integer(uid) && json_integer_value(uid) >= 0 &&
                    json_integer_value(uid) < (json_int_t) UINT32_MAX)
                        id.uid = (uid_t) json_integer_value(uid);
                if (json_is_integer(pid) && json_integer_value(pid) > 0 && json_integer_value(pid) <= INT32_MAX)
                        id.pid = (pid_t) json_integer_value(pid);
                id.start_time = (unsigned long long) json_integer_value(json_object_get(e, "startTime"));
                break;
        }
        return id;
}

/* A restored noiommu lease's mapping: the device may be programmed with the physical addresses
 * handed out at grant time (phys). Ask the kernel where the mapping is now (GET_PA,
 * cdev-noiommu) besides pagemap (moved): if anything moved, or no page table is behind it,
 * nothing the daemon says about this lease can be trusted any more. */
static void restore_check_mapping(Lease *l, const Region *region, const uint64_t *phys, bool moved) {
        const HugeRegion *r = region->huge;
        int v;

        if ((l->state != LEASE_ACTIVE && l->state != LEASE_HOLDER_GONE) || !lease_is_noiommu(l))
                return;
        v = moved ? -ESTALE : l->registry->backend->device.check_map(l->vfio, r, phys);
        if (v < 0) {
                log_error_errno(v, "Lease %s on %s: memory %s %s after the restart; quarantining the lease.",
                                l->id, l->device.address, r->id,
                                v == -ESTALE ? "is at other physical addresses than granted" :
                                v == -ENOLINK ? "has no noiommu page table behind it" :
                                "cannot be looked up with GET_PA");
                lease_quarantine(l, v, v == -ESTALE ? "addresses-moved-across-restart" :
                                       v == -ENOLINK ? "no-noiommu-page-table" :
                                       "addresses-unverifiable");
        } else
                log_debug("Lease %s on %s: memory %s is at the granted physical addresses after the restart (%s).",
                          l->id, l->device.address, r->id,
                          l->device.backend == BACKEND_CDEV_NOIOMMU ? "GET_PA and pagemap" : "pagemap");
}

/* Memory mapped for a noiommu lease that could not be restored (its memfd is not what the
 * state says, or cannot be pinned again): nothing the daemon says about the lease can be
 * vouched for, so it is quarantined, and the store keeps the memfd until an administrator's
 * revoke has quiesced the device (persist_forget_lease()). */
static void restore_keep_unrestorable(Lease *l, const char *id, int error) {
        lease_keep_unrestored(l, id);
        if (l->state == LEASE_ACTIVE || l->state == LEASE_HOLDER_GONE) {
                log_error_errno(error, "Lease %s on %s: memory %s cannot be restored (%m); quarantining the lease.",
                                l->id, l->device.address, id);
                lease_quarantine(l, error, "memory-unrestorable");
        }
}

/* Memory the client allocated without a lease. If its connection is back, it is the
 * connection's again. If not, a noiommu device of the same client (restored, not yet
 * reclaimed) may still write there: the memory goes with that lease and is freed only after
 * its quiesce, as client_free() does for a live client. Otherwise it is reclaimed now, in the
 * records as its client's (stored_holder()). */
static void restore_conn_region(Persist *p, const char *conn_id, Region *r) {
        Client *c;

        c = find_conn(p, conn_id);
        if (c && client_add_region(c, r) >= 0)
                return;

        for (Lease *l = p->leases->leases; l; l = l->next) {
                bool held = c ? l->client == c : l->state == LEASE_HOLDER_GONE && conn_id &&
                                                streq(l->restored_conn, conn_id);

                if (held && (l->state == LEASE_ACTIVE || l->state == LEASE_HOLDER_GONE) && lease_is_noiommu(l)) {
                        log_debug("Keeping %s pinned until %s is quiesced.", region_id(r), l->device.address);
                        lease_restore_region(l, r, ADDRESS_PHYSICAL, true, /* adopted= */ true, 0);
                        return;
                }
        }

        region_free(r, "reclaim-after-restart");
}

static void restore_regions(Persist *p, json_t *state, Stored *s) {
        json_t *e;
        size_t i;

        json_array_foreach(json_object_get(state, "regions"), i, e) {
                const char *id = json_string_value(json_object_get(e, "id"));
                const char *lease_id = json_string_value(json_object_get(e, "lease"));
                json_t *phys_j = json_object_get(e, "phys"), *pj;
                uint64_t size = (uint64_t) json_integer_value(json_object_get(e, "size"));
                uint64_t hp = (uint64_t) json_integer_value(json_object_get(e, "hugepageSize"));
                _cleanup_free_ uint64_t *phys = NULL;
                size_t n = json_array_size(phys_j), k;
                const char *conn_id = json_string_value(json_object_get(e, "conn"));
                ClientIdentity holder;
                char name[64];
                int memfd, pin;
                Region *r;
                Client *c;
                Lease *l;
                int q;

                if (!id || !noiommu_id_is_valid(id) || n == 0)
                        continue;
                phys = new0(uint64_t, n);
                if (!phys)
                        continue;
                json_array_foreach(phys_j, k, pj)
                        phys[k] = (uint64_t) json_integer_value(pj);

                (void) snprintf(name, sizeof(name), "pin-%s", id);
                pin = stored_take(s, name, is_io_uring);      /* only a re-exec passes one */
                (void) snprintf(name, sizeof(name), "mem-%s", id);
                memfd = stored_take(s, name, is_memfd);
                /* Whose it is decides whose charge and records it carries: the lease's holder,
                 * the connection's client, or the client that is gone (stored_holder()). */
                l = lease_id ? lease_find_by_id(p->leases, lease_id) : NULL;
                c = l ? NULL : find_conn(p, conn_id);
                holder = l ? l->holder : c ? c->id : stored_holder(state, conn_id);
                holder.pidfd = -EBADF;
                q = region_restore(p->region_ctx, id, memfd, pin, size, hp, phys, n, &holder, &r);
                if (q < 0) {
                        log_error_errno(q, "Cannot restore memory %s: %m", id);
                        /* A noiommu device may have been told this memory's addresses: the
                         * store's copy keeps its pages out of the pool until the quiesce. */
                        if (l && lease_is_noiommu(l))
                                restore_keep_unrestorable(l, id, q);
                        else
                                (void) fdstore_remove(name);
                        continue;
                }
                if (q > 0)
                        /* Unpinned while the daemon was down and moved meanwhile: a device
                         * programmed with the old addresses writes elsewhere. Nothing can undo
                         * that; say so loudly. */
                        log_error("Memory %s moved while the daemon was down; its physical addresses changed.", id);

                if (!l) {
                        restore_conn_region(p, conn_id, r);
                        continue;
                }
                /* The lease's from here on, whatever the state says: never freed here. A
                 * mapping is checked once it is the lease's, so that the record counts it. */
                if (lease_restore_region(l, r,
                                         streq(json_string_value(json_object_get(e, "kind")) ?: "", "iova")
                                         ? ADDRESS_IOVA : ADDRESS_PHYSICAL,
                                         json_is_true(json_object_get(e, "retired")),
                                         json_is_true(json_object_get(e, "adopted")),
                                         (uint64_t) json_integer_value(json_object_get(e, "iova"))))
                        restore_check_mapping(l, r, phys, q > 0);
        }
}

int persist_restore(Persist *p, int *fds, char **names, size_t n) {
        persist_restore_nosave(p, fds, names, n);
        return persist_save(p);
}

void persist_restore_nosave(Persist *p, int *fds, char **names, size_t n) {
        Stored s = { .n = n };
        json_t *state = NULL;
        json_int_t best = -1;

        s.fds = new0(StoredFd, n ?: 1);
        if (!s.fds) {
                log_error("Out of memory restoring the lease state; closing %zu stored fds.", n);
                close_many(fds, n);
                return;
        }
        for (size_t i = 0; i < n; i++)
                s.fds[i] = (StoredFd) { .fd = fds[i], .name = names[i] };

        /* The newest complete state wins. */
        for (size_t i = 0; i < n; i++) {
                json_t *j;
                json_int_t g;

                if (strncmp(s.fds[i].name, "state-", 6) != 0)
                        continue;
                j = read_state(s.fds[i].fd);
                g = j ? json_integer_value(json_object_get(j, "generation")) : -1;
                if (j && json_integer_value(json_object_get(j, "version")) == 1 && g > best) {
                        json_decref(state);
                        state = j;
                        best = g;
                } else
                        json_decref(j);
                s.fds[i].fd = safe_close(s.fds[i].fd);
                s.fds[i].consumed = true;       /* the next save replaces the older one */
        }

        if (state) {
                p->generation = (uint64_t) best;
                if (json_is_true(json_object_get(state, "legacyLeaseNames")))
                        p->legacy_lease_names = true;
                restore_conns(p, state, &s);
                restore_leases(p, state, &s);
                restore_regions(p, state, &s);
                for (Client *c = (*p->clients); c; c = c->next)
                        conn_restored(c->conn);

                /* Leases whose client did not come back: quiesce, then free (the usual order). */
                for (Lease *l = p->leases->leases, *next; l; l = next) {
                        next = l->next;
                        if (l->state == LEASE_HOLDER_GONE) {
                                log_notice("Reclaiming lease %s on %s: its client is gone.", l->id, l->device.address);
                                (void) lease_end(&l, "reclaim-after-restart");
                        }
                }
                json_decref(state);
        }

        /* Whatever nobody claimed is not ours: close it and tell the manager to forget it
         * (unless another fd of the same name was taken: removal goes by name). */
        for (size_t i = 0; i < n; i++) {
                bool sibling_taken = false;

                if (s.fds[i].consumed)
                        continue;
                for (size_t j = 0; j < n; j++)
                        if (s.fds[j].consumed && streq(s.fds[j].name, s.fds[i].name))
                                sibling_taken = true;
                log_warning("Dropping unrecognised fd '%s' from the fd store.", s.fds[i].name);
                s.fds[i].fd = safe_close(s.fds[i].fd);
                /* Names only a re-exec uses ("pin-") were never in the store. */
                if (!sibling_taken && strncmp(s.fds[i].name, "pin-", 4) != 0)
                        (void) fdstore_remove(s.fds[i].name);
        }
        free(s.fds);
}
