/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See wire.h. Nothing here logs; callers decide what an error means.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "macro.h"
#include "wire.h"
#include "noiommu/protocol.h"

void wire_buffer_init(WireBuffer *b, size_t max) {
        *b = (WireBuffer) { .max = max };
}

void wire_buffer_done(WireBuffer *b) {
        free(b->data);
        *b = (WireBuffer) { .max = b->max };
}

char *wire_buffer_space(WireBuffer *b, size_t want, size_t *ret_size) {
        size_t need;

        *ret_size = 0;
        if (b->n >= b->max)
                return NULL;

        need = MIN(b->n + want, b->max);
        if (need > b->allocated) {
                size_t a = MAX(b->allocated * 2, need);
                char *p;

                a = MIN(a, b->max);
                p = realloc(b->data, a);
                if (!p) {
                        errno = ENOMEM;
                        return NULL;
                }
                b->data = p;
                b->allocated = a;
        }

        *ret_size = b->allocated - b->n;
        return b->data + b->n;
}

ssize_t wire_buffer_message(const WireBuffer *b) {
        const char *e;

        if (b->n == 0)
                return -EAGAIN;
        e = memchr(b->data, 0, b->n);
        if (!e)
                return -EAGAIN;
        return e - b->data;
}

void wire_buffer_consume(WireBuffer *b, size_t n) {
        if (n >= b->n) {
                b->n = 0;
                return;
        }
        memmove(b->data, b->data + n, b->n - n);
        b->n -= n;
}

ssize_t wire_recv_nofds(int fd, void *buf, size_t size) {
        struct iovec iov = { .iov_base = buf, .iov_len = size };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        /* No control buffer at all: fds a client attaches are never installed in the daemon;
         * the kernel drops them (fput only, so no ->flush of a hostile file runs here) and sets
         * MSG_CTRUNC, which we turn into a protocol violation (security.md §4.1, dbus-broker's
         * socket.c: an LSM may also drop fds this way, so the stream cannot be trusted). */
        n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return negative_errno();
        if (mh.msg_flags & MSG_CTRUNC)
                return -EBADMSG;
        return n;
}

ssize_t wire_recv_fds(int fd, void *buf, size_t size, int *ret_fds, size_t max_fds,
                      size_t *ret_n_fds) {
        union {
                struct cmsghdr cmsghdr;
                char buf[CMSG_SPACE(sizeof(int) * NOIOMMU_FDS_PER_REPLY_MAX)];
        } control;
        struct iovec iov = { .iov_base = buf, .iov_len = size };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                .msg_controllen = CMSG_SPACE(sizeof(int) * MIN(max_fds, (size_t) NOIOMMU_FDS_PER_REPLY_MAX)),
        };
        size_t n_fds = 0;
        bool too_many = false;
        ssize_t n;

        if (max_fds == 0)
                mh.msg_control = NULL, mh.msg_controllen = 0;

        n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0)
                return negative_errno();

        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                size_t k;

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                /* Count from cmsg_len: alignment padding lets the kernel install more fds than
                 * asked for (two with CMSG_SPACE(sizeof(int))). */
                k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < k; i++) {
                        int f;

                        memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (n_fds < max_fds)
                                ret_fds[n_fds++] = f;
                        else {
                                (void) safe_close(f);
                                too_many = true;
                        }
                }
        }

        /* More fds than asked for fit into the padding of the control buffer: the reply was
         * not the one the caller expected, so treat it exactly like a truncated one. */
        if ((mh.msg_flags & MSG_CTRUNC) || too_many) {
                close_many(ret_fds, n_fds);
                *ret_n_fds = 0;
                return -EXFULL;
        }

        *ret_n_fds = n_fds;
        return n;
}

ssize_t wire_send(int fd, const void *buf, size_t size, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr cmsghdr;
                char buf[CMSG_SPACE(sizeof(int) * NOIOMMU_FDS_PER_REPLY_MAX)];
        } control;
        struct iovec iov = { .iov_base = (void *) buf, .iov_len = size };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        if (n_fds > NOIOMMU_FDS_PER_REPLY_MAX)
                return -E2BIG;

        if (n_fds > 0) {
                struct cmsghdr *c;

                memset(&control, 0, sizeof(control));
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(c), fds, sizeof(int) * n_fds);
        }

        n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0)
                return negative_errno();
        return n;
}
