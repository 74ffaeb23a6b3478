/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See fdstore.h: FDSTORE=1 / FDSTOREREMOVE=1 notifications to the service manager (layer 0).
 *
 * Not sd_pid_notify_with_fds(): in libsystemd 252 every call parses $NOTIFY_SOCKET, opens a new
 * socket, raises its send buffer, sends and closes it (pid_notify_with_fds_internal() in
 * src/libsystemd/sd-daemon/sd-daemon.c): about 11 syscalls per notification, and a grant used
 * to make up to 9 of them on the critical path (issue 10). Here one datagram socket is opened
 * the first time it is needed and every notification is one sendmsg() to the address.
 *
 * What PID 1 needs from the datagram is what sd_notify sends: the text (no trailing NUL), the
 * fds in one SCM_RIGHTS, and the sender's credentials, which the kernel attaches by itself
 * because PID 1's notify socket has SO_PASSCRED set (manager_setup_notify()). sd_notify adds an
 * explicit SCM_CREDENTIALS only when it speaks for another pid or when uid != euid or gid !=
 * egid (send_ucred in the same function); the daemon always speaks for itself and is not
 * set-id, so the kernel's credentials are the right ones. The socket is blocking, as
 * sd_notify's is: a full receive queue waits rather than losing a write-ahead.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "fdstore.h"
#include "internal/fd-util.h"
#include "internal/log.h"
#include "internal/macro.h"

/* sd_notify's send buffer (SNDBUF_SIZE in systemd's socket-util.h). */
#define FDSTORE_SNDBUF (8U * 1024U * 1024U)

static int notify_fd = -EBADF;

bool fdstore_enabled(void) {
        const char *e = getenv("NOTIFY_SOCKET");

        return e && *e;
}

/* $NOTIFY_SOCKET as socket_address_parse_unix() reads it in systemd 252: an absolute path, or
 * "@name" for the abstract namespace (the '@' becomes the leading NUL; the length counts only
 * the name, no terminator). Parsed on every call: no syscall, and a changed environment is
 * seen as sd_notify would see it. */
static int notify_address(struct sockaddr_un *ret, socklen_t *ret_len) {
        const char *e = getenv("NOTIFY_SOCKET");
        size_t l;

        if (!e || !*e)
                return -ENOENT;
        l = strlen(e);
        if ((e[0] != '/' && e[0] != '@') || l >= sizeof(ret->sun_path) || (e[0] == '@' && l < 2))
                return -EINVAL;         /* vsock and relative paths: not in 252's sd_notify either */
        *ret = (struct sockaddr_un) { .sun_family = AF_UNIX };
        memcpy(ret->sun_path, e, l);
        if (e[0] == '@') {
                ret->sun_path[0] = 0;
                *ret_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l);
        } else
                *ret_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l + 1);
        return 0;
}

static int notify_socket(void) {
        int fd, sndbuf = (int) FDSTORE_SNDBUF;

        if (notify_fd >= 0)
                return notify_fd;
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return negative_errno();
        /* As sd_notify does (fd_inc_sndbuf()): a message with fds needs room for them. */
        (void) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
        notify_fd = fd;
        return fd;
}

static int notify_send(const char *text, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr cmsghdr;
                uint8_t buf[CMSG_SPACE(sizeof(int) * FDSTORE_FDS_MAX)];
        } control = {};
        struct iovec iov = { .iov_base = (char *) text, .iov_len = strlen(text) };
        struct sockaddr_un sa;
        struct msghdr mh = {
                .msg_name = &sa,
                .msg_iov = &iov,
                .msg_iovlen = 1,
        };
        socklen_t sa_len;
        ssize_t n;
        int fd, r;

        if (n_fds > FDSTORE_FDS_MAX)
                return -E2BIG;
        r = notify_address(&sa, &sa_len);
        if (r < 0)
                return r;
        mh.msg_namelen = sa_len;
        fd = notify_socket();
        if (fd < 0)
                return fd;
        if (n_fds > 0) {
                struct cmsghdr *cmsg;

                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                cmsg = CMSG_FIRSTHDR(&mh);
                cmsg->cmsg_level = SOL_SOCKET;
                cmsg->cmsg_type = SCM_RIGHTS;
                cmsg->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * n_fds);
        }
        do
                n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        if ((size_t) n != iov.iov_len)
                return -EIO;            /* a datagram goes whole or not at all; be explicit */
        return 0;
}

int fdstore_push(const char *name, const int *fds, size_t n, bool poll) {
        char msg[512];
        int r;

        if (!fdstore_enabled() || n == 0)
                return 0;
        (void) snprintf(msg, sizeof(msg), "FDSTORE=1\nFDNAME=%s%s", name, poll ? "" : "\nFDPOLL=0");
        r = notify_send(msg, fds, n);
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
        r = notify_send(msg, NULL, 0);
        if (r < 0)
                return log_warning_errno(r, "Failed to remove %s from the fd store: %m", name);
        return 0;
}
