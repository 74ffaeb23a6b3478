/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * org.varlink.service (layer 6): GetInfo and GetInterfaceDescription. Static introspection
 * data, no state, no polkit.
 */
#include "client.h"
#include "config.h"
#include "dispatch.h"
#include "internal/macro.h"
#include "method.h"
#include "noiommu/protocol.h"

extern const char varlink_service_interface[];

int method_get_info(Client *c, json_t *params) {
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

int method_get_interface_description(Client *c, json_t *params) {
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
