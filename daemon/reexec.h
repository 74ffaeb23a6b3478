/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Live restart (layer 7, next to main.c; docs/architecture.md): SIGHUP (ExecReload= in the
 * unit) re-executes the daemon in the same process, the way `systemctl daemon-reexec`
 * re-executes PID 1, and every lease, allocation and client connection carries on. Unlike the
 * restore after kill -9 (persist.c), nothing is ever unpinned:
 *
 *   - Every fd a grant or a client depends on stays open across execve(): the listening socket,
 *     each connection, each memfd *and its io_uring pin* (which the fd store cannot take), the
 *     device's fds, and the fds of replies still queued. Exactly those lose FD_CLOEXEC; the rest
 *     (polkit's bus, journald, audit, pagemap, epoll) close and are opened again.
 *   - The state goes in a sealed memfd whose number is in $NOIOMMUD_REEXEC_FD: the very JSON
 *     persist.c stores, each fd's store name with its number (fd numbers survive execve()), and
 *     what only a live process has (buffered input, queued output, the current request).
 *   - The new image restores through persist_restore_nosave(), the fd-store path, which adopts
 *     the pins ("pin-<id>") instead of pinning again, and re-reads pagemap to check.
 *   - A request waiting for polkit is re-run from the start in the new image (polkit asked
 *     again); replies already queued are written by the new image. Nothing is refused.
 *   - If execve() fails, the old image keeps serving and says why.
 *
 * Owns the state memfd between the two images. The image executed is the path this binary had
 * when the daemon started (resolved once then): after a package upgrade that is the new binary,
 * which is the point of reloading. /proc/self/exe would re-execute the old, deleted inode.
 */
#pragma once

#include <systemd/sd-event.h>

typedef struct Manager Manager;

/* Environment variable carrying the state memfd's number into the new image. */
#define NOIOMMUD_REEXEC_FD_ENV "NOIOMMUD_REEXEC_FD"

/* Resolves the binary's path (call before anything can replace it) and handles SIGHUP. */
int reexec_setup(Manager *m, char **argv);

/* In a new image: 1 and the state fd if this start is a re-exec (the variable is removed from the
 * environment), 0 if not. */
int reexec_pending(int *ret_fd);

/* Restores everything the previous image described in state_fd (consumed). Listens on its
 * socket. */
int reexec_restore(Manager *m, int state_fd);
