/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fd-util.h"
#include "macro.h"

int fd_nonblock(int fd, bool nonblock) {
        int flags, nflags;

        flags = fcntl(fd, F_GETFL);
        if (flags < 0)
                return negative_errno();
        nflags = nonblock ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
        if (nflags != flags && fcntl(fd, F_SETFL, nflags) < 0)
                return negative_errno();
        return 0;
}

static int read_small_file_internal(int dirfd, const char *path, bool virtual_file, char **ret) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, allocated = 4096;
        ssize_t k;

        fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return negative_errno();

        buf = malloc(allocated);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (n + 1 >= allocated) {
                        char *p;

                        if (allocated >= 64 * 1024)
                                return -EFBIG;
                        p = realloc(buf, allocated * 2);
                        if (!p)
                                return -ENOMEM;
                        buf = p;
                        allocated *= 2;
                }
                k = read(fd, buf + n, allocated - n - 1);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (k == 0)
                        break;
                n += (size_t) k;
                /* A file of /proc made with seq_file's single_open() (stat, status, cgroup,
                 * fdinfo) is generated whole on the first read() and handed out as far as the
                 * buffer allows (fs/seq_file.c, seq_read_iter()): a read that did not fill the
                 * buffer returned all of it, and the read() that would return 0 can be saved.
                 * systemd's read_virtual_file() relies on the same. */
                if (virtual_file && n + 1 < allocated)
                        break;
        }
        while (n > 0 && buf[n - 1] == '\n')
                n--;
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

int read_small_file_at(int dirfd, const char *path, char **ret) {
        return read_small_file_internal(dirfd, path, /* virtual_file= */ false, ret);
}

int read_virtual_file_at(int dirfd, const char *path, char **ret) {
        return read_small_file_internal(dirfd, path, /* virtual_file= */ true, ret);
}

int proc_get_starttime(pid_t pid, unsigned long long *ret) {
        return proc_get_stat(pid, ret, NULL);
}

int proc_get_stat(pid_t pid, unsigned long long *ret_starttime, char *ret_state) {
        _cleanup_free_ char *s = NULL;
        char path[64];
        const char *p;
        int r;

        if (pid <= 0)
                return -EINVAL;
        (void) snprintf(path, sizeof(path), "/proc/%i/stat", (int) pid);
        r = read_virtual_file_at(AT_FDCWD, path, &s);
        if (r < 0)
                return r;

        /* comm (field 2) is in parentheses and may itself contain ") ": the fields after it
         * start after the *last* ')'. */
        p = strrchr(s, ')');
        if (!p || p[1] != ' ' || !p[2])
                return -EBADMSG;
        p += 2;
        if (ret_state)
                *ret_state = *p;

        /* p is at field 3 (state); starttime is field 22, so skip 19 fields. */
        for (int i = 0; i < 19; i++) {
                p = strchr(p, ' ');
                if (!p)
                        return -EBADMSG;
                p++;
        }
        {
                char *end;
                unsigned long long v;

                errno = 0;
                v = strtoull(p, &end, 10);
                if (errno != 0 || end == p || (*end != ' ' && *end != 0))
                        return -EBADMSG;
                *ret_starttime = v;
        }
        return 0;
}
