/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Daemon settings (configuration): /etc/noiommud/noiommud.conf plus drop-ins in
 * /etc/noiommud/noiommud.conf.d/NAME.conf, read in lexical order, all JSON objects:
 *
 *   {
 *     "noiommuDevices": ["0000:01:00.0"],   devices that may be handed out WITHOUT an IOMMU;
 *                                           lists from drop-ins are added together
 *     "iommuDevices": "all" | ["0000:02:00.0"]   devices behind a real IOMMU (default: all)
 *   }
 *
 * A noiommu device is root-equivalent in the client's hands, so it is served only if named
 * here (kernel-api.md §10, hazard 5); polkit then decides who gets it. Unknown keys and
 * malformed addresses are errors: a typo must never widen access.
 */
#pragma once

#include <stdbool.h>

#define NOIOMMU_SETTINGS_PATH "/etc/noiommud/noiommud.conf"

typedef struct Settings {
        char **noiommu_devices;         /* NULL-terminated */
        bool iommu_devices_all;
        char **iommu_devices;           /* when !iommu_devices_all */
} Settings;

/* Loads path and path.d/ (a missing file is an empty configuration). */
int settings_load(const char *path, Settings *ret);
void settings_done(Settings *c);

bool settings_allows_noiommu(const Settings *c, const char *address);
bool settings_allows_iommu(const Settings *c, const char *address);
