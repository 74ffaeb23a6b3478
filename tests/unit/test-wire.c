/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client/internal/wire.c: the NUL-framed input buffer and SCM_RIGHTS over a SOCK_STREAM
 * socketpair. The fd tests count the process's open fds before and after, because the failure
 * they guard against (an fd installed in the receiver and never closed) is otherwise silent.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/fd-util.h"
#include "internal/macro.h"
#include "internal/wire.h"
#include "noiommu/protocol.h"
#include "tests.h"

/* Appends bytes to b as a reader would after a recv(). */
static void buffer_feed(WireBuffer *b, const void *p, size_t n) {
        while (n > 0) {
                size_t size, k;
                char *space;

                space = wire_buffer_space(b, n, &size);
                ASSERT_TRUE(space != NULL);
                ASSERT_TRUE(size > 0);
                k = MIN(size, n);
                memcpy(space, p, k);
                b->n += k;
                p = (const char *) p + k;
                n -= k;
        }
}

static void test_buffer_split(void) {
        static const char stream[] = "{\"a\":1}\0{\"bb\":2}\0{\"c\":";
        WireBuffer b;

        wire_buffer_init(&b, 1024);
        ASSERT_EQ(wire_buffer_message(&b), -EAGAIN);

        buffer_feed(&b, stream, sizeof(stream) - 1);  /* without the literal's own NUL */

        /* Two complete messages and the start of a third, all in one buffer. */
        ASSERT_EQ(wire_buffer_message(&b), 7);
        ASSERT_STREQ(b.data, "{\"a\":1}");
        wire_buffer_consume(&b, 7 + 1);

        ASSERT_EQ(wire_buffer_message(&b), 8);
        ASSERT_STREQ(b.data, "{\"bb\":2}");
        wire_buffer_consume(&b, 8 + 1);

        ASSERT_EQ(wire_buffer_message(&b), -EAGAIN);
        ASSERT_EQ(b.n, 5);

        /* The rest arrives one byte at a time. */
        buffer_feed(&b, "3", 1);
        ASSERT_EQ(wire_buffer_message(&b), -EAGAIN);
        buffer_feed(&b, "}", 1);
        ASSERT_EQ(wire_buffer_message(&b), -EAGAIN);
        buffer_feed(&b, "", 1);
        ASSERT_EQ(wire_buffer_message(&b), 7);
        ASSERT_STREQ(b.data, "{\"c\":3}");
        wire_buffer_consume(&b, 8);
        ASSERT_EQ(b.n, 0);
        ASSERT_EQ(wire_buffer_message(&b), -EAGAIN);

        /* An empty message (a lone NUL) is a message of length 0. */
        buffer_feed(&b, "", 1);
        ASSERT_EQ(wire_buffer_message(&b), 0);
        wire_buffer_consume(&b, 1);

        wire_buffer_done(&b);
        ASSERT_TRUE(b.data == NULL);
        ASSERT_EQ(b.n, 0);
        ASSERT_EQ(b.max, 1024);
}

static void test_buffer_cap(void) {
        char fill[16];
        size_t size = 1234;
        WireBuffer b;
        char *p;

        memset(fill, 'x', sizeof(fill));
        wire_buffer_init(&b, sizeof(fill));

        /* Asking for more than the cap gives only what is left under it. */
        p = wire_buffer_space(&b, 1000, &size);
        ASSERT_TRUE(p != NULL);
        ASSERT_EQ(size, sizeof(fill));

        buffer_feed(&b, fill, sizeof(fill));
        ASSERT_EQ(b.n, sizeof(fill));
        ASSERT_EQ(wire_buffer_message(&b), -EAGAIN);

        /* Full without a NUL: the peer went over the cap. NULL with size 0, and not ENOMEM. */
        errno = 0;
        size = 1234;
        p = wire_buffer_space(&b, 1, &size);
        ASSERT_TRUE(p == NULL);
        ASSERT_EQ(size, 0);
        ASSERT_TRUE(errno != ENOMEM);
        ASSERT_TRUE(b.allocated <= b.max);

        /* Consuming makes room again. */
        wire_buffer_consume(&b, 4);
        p = wire_buffer_space(&b, 100, &size);
        ASSERT_TRUE(p != NULL);
        ASSERT_EQ(size, 4);

        wire_buffer_done(&b);
}

static void make_pair(int sv[2]) {
        ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
}

static int open_null(void) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

        ASSERT_OK(fd);
        return fd;
}

static void assert_same_file(int a, int b) {
        struct stat sa, sb;

        ASSERT_OK(fstat(a, &sa));
        ASSERT_OK(fstat(b, &sb));
        ASSERT_EQ(sa.st_dev, sb.st_dev);
        ASSERT_EQ(sa.st_ino, sb.st_ino);
}

static void test_send_recv_fds(void) {
        static const char msg[] = "{\"parameters\":{\"fd\":0}}";
        _cleanup_close_ int a = -EBADF, b = -EBADF, p0 = -EBADF, p1 = -EBADF;
        int sv[2], send_fds[2], fds[NOIOMMU_FDS_PER_REPLY_MAX];
        char buf[256];
        size_t n_fds = 99;
        ssize_t n;

        make_pair(sv);
        a = sv[0];
        b = sv[1];
        {
                int pp[2];

                ASSERT_OK(pipe2(pp, O_CLOEXEC));
                p0 = pp[0];
                p1 = pp[1];
        }
        send_fds[0] = p0;
        send_fds[1] = p1;

        ASSERT_EQ(wire_send(a, msg, sizeof(msg), send_fds, 2), (ssize_t) sizeof(msg));

        /* A one-byte read gets the first byte and, with it, the fds. */
        n = wire_recv_fds(b, buf, 1, fds, ELEMENTSOF(fds), &n_fds);
        ASSERT_EQ(n, 1);
        ASSERT_EQ(buf[0], '{');
        ASSERT_EQ(n_fds, 2);
        for (size_t i = 0; i < n_fds; i++) {
                ASSERT_TRUE(fds[i] >= 0);
                ASSERT_TRUE(fds[i] != p0 && fds[i] != p1);
                ASSERT_TRUE(fcntl(fds[i], F_GETFD) & FD_CLOEXEC);
        }
        assert_same_file(fds[0], p0);
        assert_same_file(fds[1], p1);

        /* The rest of the message comes without fds. */
        n_fds = 99;
        n = wire_recv_fds(b, buf + 1, sizeof(buf) - 1, fds + 2, 2, &n_fds);
        ASSERT_EQ(n, (ssize_t) sizeof(msg) - 1);
        ASSERT_EQ(n_fds, 0);
        ASSERT_EQ(memcmp(buf, msg, sizeof(msg)), 0);

        /* The received fds work: what goes into the sender's pipe comes out of the received
         * read end. */
        ASSERT_EQ(write(fds[1], "z", 1), 1);
        ASSERT_EQ(read(p0, buf, 1), 1);
        ASSERT_EQ(buf[0], 'z');

        close_many(fds, 2);

        /* Nothing pending: -EAGAIN, not a block. */
        ASSERT_ERROR(wire_recv_fds(b, buf, sizeof(buf), fds, ELEMENTSOF(fds), &n_fds), EAGAIN);

        /* EOF. */
        a = safe_close(a);
        ASSERT_EQ(wire_recv_fds(b, buf, sizeof(buf), fds, ELEMENTSOF(fds), &n_fds), 0);
        ASSERT_EQ(n_fds, 0);
}

static void test_send_limits(void) {
        _cleanup_close_ int a = -EBADF, b = -EBADF, fd = -EBADF;
        int sv[2], fds[NOIOMMU_FDS_PER_REPLY_MAX + 1];

        make_pair(sv);
        a = sv[0];
        b = sv[1];
        fd = open_null();
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                fds[i] = fd;

        ASSERT_ERROR(wire_send(a, "x", 1, fds, ELEMENTSOF(fds)), E2BIG);

        /* A closed peer is -EPIPE, not SIGPIPE. */
        b = safe_close(b);
        ASSERT_ERROR(wire_send(a, "x", 1, NULL, 0), EPIPE);
}

static void test_recv_nofds_rejects_fds(void) {
        _cleanup_close_ int a = -EBADF, b = -EBADF, f0 = -EBADF, f1 = -EBADF;
        int sv[2], send_fds[2], before;
        char buf[64];

        make_pair(sv);
        a = sv[0];
        b = sv[1];
        f0 = open_null();
        f1 = open_null();
        send_fds[0] = f0;
        send_fds[1] = f1;

        /* A plain message first: accepted. */
        ASSERT_EQ(wire_send(a, "{}", 3, NULL, 0), 3);
        ASSERT_EQ(wire_recv_nofds(b, buf, sizeof(buf)), 3);
        ASSERT_STREQ(buf, "{}");

        before = fd_count(0);
        ASSERT_OK(before);

        ASSERT_EQ(wire_send(a, "{}", 3, send_fds, 2), 3);
        ASSERT_ERROR(wire_recv_nofds(b, buf, sizeof(buf)), EBADMSG);

        /* The kernel dropped the fds: none were installed in this process. */
        ASSERT_EQ(fd_count(0), before);

        ASSERT_ERROR(wire_recv_nofds(b, buf, sizeof(buf)), EAGAIN);
}

static void check_too_many(size_t n_send, size_t max_fds) {
        _cleanup_close_ int a = -EBADF, b = -EBADF, fd = -EBADF;
        int sv[2], send_fds[NOIOMMU_FDS_PER_REPLY_MAX], fds[NOIOMMU_FDS_PER_REPLY_MAX];
        size_t n_fds = 99;
        char buf[64];
        int before;

        ASSERT_TRUE(n_send <= ELEMENTSOF(send_fds));
        make_pair(sv);
        a = sv[0];
        b = sv[1];
        fd = open_null();
        for (size_t i = 0; i < n_send; i++)
                send_fds[i] = fd;

        before = fd_count(0);
        ASSERT_OK(before);

        ASSERT_EQ(wire_send(a, "{}", 3, send_fds, n_send), 3);
        ASSERT_ERROR(wire_recv_fds(b, buf, sizeof(buf), fds, max_fds, &n_fds), EXFULL);
        ASSERT_EQ(n_fds, 0);

        /* Every fd that did arrive was closed again. */
        ASSERT_EQ(fd_count(0), before);
}

static void test_recv_too_many_fds(void) {
        /* The control buffer for one fd has room for two (CMSG_SPACE alignment on 64-bit), so
         * both the truncating and the padded case are covered. */
        check_too_many(3, 1);
        check_too_many(4, 2);
        check_too_many(2, 1);
        check_too_many(1, 0);
}

int main(void) {
        TEST(test_buffer_split);
        TEST(test_buffer_cap);
        TEST(test_send_recv_fds);
        TEST(test_send_limits);
        TEST(test_recv_nofds_rejects_fds);
        TEST(test_recv_too_many_fds);
        return 0;
}
