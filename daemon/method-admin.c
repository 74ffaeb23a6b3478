/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Administration (layer 6): ListLeases, RevokeLease and Monitor, all behind polkit
 * io.noiommud.manage. RevokeLease ends another client's lease through client_end_lease() ->
 * lease_end() (or lease_retry_quarantined() for a quarantined one), so a revoke follows the
 * same teardown order as a release. Monitor marks the connection as a stream; monitor.c
 * writes to it. Owns nothing.
 */
#include <string.h>

#include "client.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "lease.h"
#include "manager.h"
#include "method.h"
#include "noiommu/protocol.h"
#include "pool.h"

int method_list_leases(Client *c, json_t *params) {
        static const char *const allowed[] = { "interactive", NULL };
        const char *k = params_unknown_key(params, allowed);
        bool interactive = false;
        json_t *list, *pool;
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
        for (Lease *l = c->manager->lease_registry.leases; l; l = l->next) {
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
        /* The pool's regions are nobody's lease, but they are hugepages the host does not have
         * free: shown next to the leases so that an administrator sees where they went. */
        pool = pool_to_json(c->manager->pool);
        if (!pool) {
                json_decref(list);
                return -ENOMEM;
        }
        return conn_reply(c->conn, json_pack("{s:o, s:o}", "leases", list, "pool", pool), NULL, 0);
}

int method_revoke_lease(Client *c, json_t *params) {
        static const char *const allowed[] = { "lease", "interactive", NULL };
        char address[NOIOMMU_PCI_ADDRESS_LEN + 1];
        bool interactive = false;
        const char *id;
        size_t index;
        Lease *l;
        int r;

        r = params_get_only_id(c, params, allowed, "lease", &id);
        if (r <= 0)
                return r;
        if (param_get_bool(params, "interactive", &interactive) < 0)
                return reply_invalid_parameter(c, "interactive");

        char *details[] = { (char *) "lease", (char *) id, NULL };
        r = authorize(c, ACTION_MANAGE, details, interactive, CLIENT_CAP_SYS_ADMIN);
        if (r <= 0)
                return r;

        l = lease_find_by_id(&c->manager->lease_registry, id);
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

int method_monitor(Client *c, json_t *params) {
        static const char *const allowed[] = { "interactive", NULL };
        const char *k = params_unknown_key(params, allowed);
        bool interactive = false;
        int r;

        if (k)
                return reply_invalid_parameter(c, k);
        if (param_get_bool(params, "interactive", &interactive) < 0)
                return reply_invalid_parameter(c, "interactive");
        /* A stream needs a caller that expects more than one reply (a oneway caller expects
         * none): Varlink's org.varlink.service.ExpectedMore. */
        if (!c->conn->current_more || c->conn->current_oneway)
                return conn_reply_error(c->conn, VARLINK_ERROR_EXPECTED_MORE, NULL);

        r = authorize(c, ACTION_MANAGE, NULL, interactive, CLIENT_CAP_SYS_ADMIN);
        if (r <= 0)
                return r;

        /* The request stays current for the life of the connection; every event is one more
         * reply with "continues": true. The first one says the subscription is in place. */
        c->conn->monitoring = true;
        return conn_notify(c->conn, json_pack("{s:s}", "event", "subscribed"));
}
