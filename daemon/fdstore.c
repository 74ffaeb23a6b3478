/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See fdstore.h: FDSTORE=1 / FDSTOREREMOVE=1 notifications to the service manager (layer 0).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <systemd/sd-daemon.h>

#include "fdstore.h"
#include "internal/log.h"

bool fdstore_enabled(void) {
        const char *e = getenv("NOTIFY_SOCKET");

        return e && *e;
}

int fdstore_push(const char *name, const int *fds, size_t n, bool poll) {
        char msg[512];
        int r;

        if (!fdstore_enabled() || n == 0)
                return 0;
        (void) snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s%s", name, poll ? "" : "\nFDPOLL=0");
        r = sd_pid_notify_with_fds(0, /* unset_environment= */ false, msg, fds, (unsigned) n);
        if (r < 0)
                return log_warning_errno(r, "Failed to store %s in the service manager's fd store: %m", name);
        return 0;
}

int fdstore_remove(const char *name) {
        char msg[512];
        int r;

        if (!fdstore_enabled())
                return 0;
        (void) snprintf(msg, sizeof(msg), "FDSTOREREMOVE=1\nFDNAME=%s", name);
        r = sd_notify(/* unset_environment= */ false, msg);
        if (r < 0)
                return log_warning_errno(r, "Failed to remove %s from the fd store: %m", name);
        return 0;
}
