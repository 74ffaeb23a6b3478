/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * fd_count(): how many fds a process has open, for tests that prove nothing leaks. It lived in
 * client/internal/fd-util.c, which ships inside libnoiommu and the daemon, where nothing used it.
 */
#pragma once

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/types.h>

/* Number of fds open in pid (0: this process), from /proc/PID/fd. -errno on error. */
static inline int fd_count(pid_t pid) {
        char path[64];
        struct dirent *de;
        DIR *d;
        int n = 0;

        if (pid == 0)
                (void) snprintf(path, sizeof(path), "/proc/self/fd");
        else
                (void) snprintf(path, sizeof(path), "/proc/%i/fd", (int) pid);
        d = opendir(path);
        if (!d)
                return errno > 0 ? -errno : -EIO;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        (void) closedir(d);
        return pid == 0 ? n - 1 : n;         /* the DIR's own fd */
}
