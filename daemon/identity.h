/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who is on the other end of a connection, as the kernel said at accept time (security.md §3.5).
 * Nothing here ever comes from a request. Fields start at invalid sentinels, never 0: an unset
 * uid that stayed 0 is how CVE-2021-3560 happened.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ClientIdentity {
        uid_t uid;                      /* SO_PEERCRED; (uid_t) -1 until known */
        gid_t gid;
        pid_t pid;                      /* SO_PEERCRED, in our pid namespace; 0 = not visible */
        unsigned long long start_time;  /* field 22 of /proc/PID/stat at accept */
        int pidfd;                      /* SO_PEERPIDFD, or pidfd_open() on older kernels */
        bool pidfd_from_peer;           /* true: SO_PEERPIDFD (race-free); false: pidfd_open() */
        uint64_t pidfd_ino;             /* pidfs inode (unique per process), 0 if not pidfs */
        char unit[256];                 /* systemd unit or cgroup path, "" if unknown */
} ClientIdentity;

#define CLIENT_IDENTITY_INIT                                                            \
        (ClientIdentity) {                                                              \
                .uid = (uid_t) -1, .gid = (gid_t) -1, .pid = 0, .pidfd = -EBADF,        \
        }

/* Reads the identity of the peer of a connected AF_UNIX socket. Fails when the peer is not
 * visible (pid 0) or is already gone. */
int client_identity_from_socket(int fd, ClientIdentity *ret);

/* The connecting process is still the same live process: its pidfd has not exited, the pidfd
 * still names the same pid, and the start time is unchanged. 1 if so, 0 if not, <0 on error. */
int client_identity_still_valid(const ClientIdentity *id);

void client_identity_done(ClientIdentity *id);
