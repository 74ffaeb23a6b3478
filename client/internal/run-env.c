/* SPDX-License-Identifier: LGPL-2.1-or-later */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "macro.h"
#include "noiommu/noiommu.h"
#include "run-env.h"

bool run_env_is_protocol_variable(const char *name, size_t n) {
        static const char *const fixed[] = {
                NOIOMMU_ENV_PID, NOIOMMU_ENV_FDS, NOIOMMU_ENV_FD_NAMES, NOIOMMU_ENV_LEASE,
        };
        static const char *const prefixes[] = {
                NOIOMMU_ENV_DEVICE_PREFIX, NOIOMMU_ENV_MEMORY_PREFIX,
        };

        for (size_t i = 0; i < ELEMENTSOF(fixed); i++)
                if (strlen(fixed[i]) == n && strncmp(name, fixed[i], n) == 0)
                        return true;
        for (size_t i = 0; i < ELEMENTSOF(prefixes); i++)
                if (n > strlen(prefixes[i]) && strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
                        return true;
        return false;
}

/* environ changes under us, so start over after each. */
void run_env_unset_all(void) {
        bool again = true;

        while (again) {
                again = false;
                for (char **e = environ; e && *e; e++) {
                        const char *eq = strchr(*e, '=');
                        char name[128];
                        size_t n;

                        if (!eq)
                                continue;
                        n = (size_t) (eq - *e);
                        if (n >= sizeof(name) || !run_env_is_protocol_variable(*e, n))
                                continue;
                        memcpy(name, *e, n);
                        name[n] = 0;
                        if (unsetenv(name) == 0)
                                again = true;
                        break;
                }
        }
}
