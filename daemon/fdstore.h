/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Write-ahead to systemd's file descriptor store (security.md §8), so that kill -9 of the daemon
 * loses no lease: every fd that keeps a grant alive (the client's connection, the memfd, the
 * device's fds) and the serialized state go to the service manager BEFORE any fd is sent to a
 * client; on the next start they come back through $LISTEN_FDS/$LISTEN_FDNAMES. The io_uring
 * pin is not among them: the kernel refuses io_uring fds in SCM_RIGHTS, so the memfd holds the
 * pages across a restart and the restore pins them again (persist.h).
 *
 * Names: "conn-<id>" (client socket; polled, so the manager drops it when the client hangs
 * up), "mem-<id>" (the memfd), "lease-<id>" (the lease's device fds, up to four in one message:
 * the restore tells them apart by what each one is, persist.c), and "state-0" / "state-1" (the
 * state memfd; the newer generation wins, so a crash between storing one and removing the other
 * never leaves no state). Stores written before issue 10 named a lease's fds
 * "lease-<id>-dev|grp|ctr|iommufd"; the restore still reads them. Without $NOTIFY_SOCKET
 * everything here is a no-op.
 *
 * A leaf (layer 0): one notification is one sendmsg() on one socket kept open (fdstore.c says
 * why not sd_notify). Owns nothing but that socket: the fds it pushes stay their callers'; the
 * store holds copies. Decides nothing: persist.c and region.c decide what is stored and when it
 * is removed.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

bool fdstore_enabled(void);

/* Stores fds (at most FDSTORE_FDS_MAX) under name, in one notification. poll: let the manager
 * drop them on POLLHUP (client sockets). */
#define FDSTORE_FDS_MAX 4U
int fdstore_push(const char *name, const int *fds, size_t n, bool poll);
int fdstore_remove(const char *name);
