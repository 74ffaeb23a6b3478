/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Write-ahead to systemd's file descriptor store (security.md §8), so that kill -9 of the daemon
 * loses no lease: every fd that keeps a grant alive (the client's connection, the memfd and its
 * pin, the device's fds) and the serialized state go to the service manager BEFORE any fd is
 * sent to a client; on the next start they come back through $LISTEN_FDS/$LISTEN_FDNAMES.
 *
 * Names: "conn-<id>" (client socket; polled, so the manager drops it when the client hangs
 * up), "mem-<id>" (the memfd; io_uring fds cannot be passed, so the pin is taken again on restore), "lease-<id>-dev|grp|ctr|iommufd", and "state-0" /
 * "state-1" (the state memfd; the newer generation wins, so a crash between storing one and
 * removing the other never leaves no state). Without $NOTIFY_SOCKET everything here is a no-op.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

bool fdstore_enabled(void);

/* Stores fds under name. poll: let the manager drop them on POLLHUP (client sockets). */
int fdstore_push(const char *name, const int *fds, size_t n, bool poll);
int fdstore_remove(const char *name);
