/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * noiommud: hands unprivileged clients pinned DMA memory (and, later, pre-bound VFIO devices)
 * after a polkit check on their kernel-verified identity. See README.md and design.md.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "config.h"
#include "internal/log.h"
#include "manager.h"
#include "settings.h"
#include "noiommu/protocol.h"

static void help(void) {
        printf("Usage: noiommud [OPTIONS]\n\n"
               "Broker for VFIO devices and pinned hugepage DMA memory.\n\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "     --listen PATH      Bind the Varlink socket at PATH unless the service manager\n"
               "                        passed one (default: $" NOIOMMU_SOCKET_ENV " or\n"
               "                        " NOIOMMU_SOCKET_PATH_DEFAULT ")\n"
               "     --config PATH      Configuration file (default: " NOIOMMU_SETTINGS_PATH ",\n"
               "                        plus PATH.d/NAME.conf drop-ins)\n"
               "     --log-level LEVEL  debug, info, notice, warning or err\n\n"
               "polkit is reached on the system bus ($DBUS_SYSTEM_BUS_ADDRESS honoured).\n");
}

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_LISTEN, ARG_LOG_LEVEL, ARG_CONFIG };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "config", required_argument, NULL, ARG_CONFIG },
                {}
        };
        _cleanup_(manager_freep) Manager *m = NULL;
        const char *listen_path = NULL, *config_path = NULL;
        int c, r;

        log_setup("noiommud", LOG_TARGET_AUTO);

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("noiommud %s\n", PACKAGE_VERSION);
                        return EXIT_SUCCESS;
                case ARG_LISTEN:
                        listen_path = optarg;
                        break;
                case ARG_CONFIG:
                        config_path = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        if (streq(optarg, "debug"))
                                log_set_max_level(LOG_DEBUG);
                        else if (streq(optarg, "info"))
                                log_set_max_level(LOG_INFO);
                        else if (streq(optarg, "notice"))
                                log_set_max_level(LOG_NOTICE);
                        else if (streq(optarg, "warning"))
                                log_set_max_level(LOG_WARNING);
                        else if (streq(optarg, "err"))
                                log_set_max_level(LOG_ERR);
                        else {
                                log_error("Unknown log level '%s'.", optarg);
                                return EXIT_FAILURE;
                        }
                        break;
                case '?':
                        return EXIT_FAILURE;
                default:
                        return EXIT_FAILURE;
                }
        if (optind < argc) {
                log_error("Unexpected argument '%s'.", argv[optind]);
                return EXIT_FAILURE;
        }

        r = manager_new(config_path, &m);
        if (r < 0) {
                log_error_errno(r, "Failed to set up: %m");
                return EXIT_FAILURE;
        }
        r = manager_listen(m, listen_path);
        if (r < 0)
                return EXIT_FAILURE;
        r = manager_run(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
