/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client/internal/macro.h: the cleanup and ownership helpers. Hand-copied versions of these
 * often close fd 0, close twice, or leave a stale value behind; each of those is checked here,
 * including that a number closed by a cleanup handler really is free again (the kernel hands
 * out the lowest free number, so the next open() must get it back).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal/fd-util.h"
#include "internal/macro.h"
#include "tests.h"

static bool fd_is_open(int fd) {
        return fcntl(fd, F_GETFD) >= 0;
}

static int open_null(void) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);

        ASSERT_OK(fd);
        return fd;
}

static void test_closep_closes(void) {
        int fd, n;

        fd = open_null();
        {
                _cleanup_close_ int f = fd;

                ASSERT_TRUE(fd_is_open(f));
        }
        ASSERT_FALSE(fd_is_open(fd));

        /* The number is free again: the lowest free number is handed out next. */
        n = open_null();
        ASSERT_EQ(n, fd);
        ASSERT_EQ(safe_close(n), -EBADF);
}

static void test_closep_reuse_in_loop(void) {
        int first = -EBADF;

        /* A cleanup in a loop body runs once per iteration: every iteration sees the same number,
         * and nothing accumulates. */
        for (int i = 0; i < 16; i++) {
                _cleanup_close_ int fd = open_null();

                if (first < 0)
                        first = fd;
                ASSERT_EQ(fd, first);
        }
        ASSERT_FALSE(fd_is_open(first));
}

static void test_closep_ignores_negative(void) {
        int fds, sentinel;

        fds = fd_count(0);
        ASSERT_OK(fds);
        sentinel = open_null();

        {
                _unused_ _cleanup_close_ int a = -EBADF;
                _unused_ _cleanup_close_ int b = -1;
                _unused_ _cleanup_close_ int c = -EMFILE;
        }
        ASSERT_TRUE(fd_is_open(sentinel));
        ASSERT_EQ(fd_count(0), fds + 1);

        /* closep() leaves -EBADF behind. */
        {
                int x = sentinel;

                closep(&x);
                ASSERT_EQ(x, -EBADF);
                closep(&x);             /* second call is a no-op */
                ASSERT_EQ(x, -EBADF);
        }
        ASSERT_FALSE(fd_is_open(sentinel));
        ASSERT_EQ(fd_count(0), fds);
}

static void test_closep_fd_zero(void) {
        int saved, fd;

        /* 0 is a valid fd and must be closed like any other. Park stdin elsewhere, put a
         * /dev/null on 0, let a cleanup close it, and check that 0 is free again. */
        saved = fcntl(0, F_DUPFD_CLOEXEC, 3);  /* -1 if stdin is closed */
        fd = open_null();
        if (fd != 0) {
                ASSERT_OK(dup2(fd, 0));
                ASSERT_EQ(safe_close(fd), -EBADF);
        }
        {
                _unused_ _cleanup_close_ int z = 0;
        }
        ASSERT_FALSE(fd_is_open(0));
        fd = open_null();
        ASSERT_EQ(fd, 0);

        if (saved >= 0) {
                ASSERT_OK(dup2(saved, 0));
                (void) safe_close(saved);
        } else
                (void) safe_close(0);
}

static void test_take_fd(void) {
        int fd, taken;

        fd = open_null();
        {
                _cleanup_close_ int f = fd;

                taken = TAKE_FD(f);
                ASSERT_EQ(f, -EBADF);
                ASSERT_EQ(taken, fd);
        }
        /* The cleanup saw -EBADF, so ownership really moved. */
        ASSERT_TRUE(fd_is_open(taken));
        ASSERT_EQ(safe_close(taken), -EBADF);
        ASSERT_FALSE(fd_is_open(fd));
}

static void test_safe_close_keeps_errno(void) {
        int fd = open_null();

        errno = ENOSPC;
        ASSERT_EQ(safe_close(fd), -EBADF);
        ASSERT_EQ(errno, ENOSPC);

        errno = ENOSPC;
        ASSERT_EQ(safe_close(-EBADF), -EBADF);
        ASSERT_EQ(errno, ENOSPC);
}

static void test_close_many(void) {
        int fds[3], copy[3], before;

        before = fd_count(0);
        ASSERT_OK(before);
        for (size_t i = 0; i < ELEMENTSOF(fds); i++)
                copy[i] = fds[i] = open_null();
        fds[1] = -EBADF;                /* holes are skipped */
        (void) safe_close(copy[1]);

        close_many(fds, ELEMENTSOF(fds));
        for (size_t i = 0; i < ELEMENTSOF(fds); i++) {
                ASSERT_EQ(fds[i], -EBADF);
                ASSERT_FALSE(fd_is_open(copy[i]));
        }
        ASSERT_EQ(fd_count(0), before);
}

static void test_freep(void) {
        char *p = strdup("hello");

        ASSERT_TRUE(p != NULL);
        freep(&p);
        ASSERT_TRUE(p == NULL);
        freep(&p);                      /* free(NULL): harmless */
        ASSERT_TRUE(p == NULL);

        {
                _cleanup_free_ char *q = strdup("scope");

                ASSERT_TRUE(q != NULL);
        }                               /* freed here: valgrind/ASan would report a leak */
}

static void test_take_ptr(void) {
        char *kept;

        {
                _cleanup_free_ char *p = strdup("moved");

                kept = TAKE_PTR(p);
                ASSERT_TRUE(p == NULL);
        }
        ASSERT_STREQ(kept, "moved");   /* not freed by the cleanup */
        free(kept);
}

static unsigned destroyed;

typedef struct Thing {
        int value;
} Thing;

static Thing *thing_free(Thing *t) {
        destroyed++;
        free(t);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(Thing *, thing_free);

static void thing_destroy(Thing *t) {
        destroyed++;
        free(t);
}
DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(Thing *, thing_destroy);

static void test_trivial_cleanup(void) {
        Thing *t;

        destroyed = 0;
        {
                _cleanup_(thing_freep) Thing *a = new0(Thing, 1);
                _unused_ _cleanup_(thing_freep) Thing *b = NULL;/* NULL: destructor not called */

                ASSERT_TRUE(a != NULL);
                ASSERT_EQ(a->value, 0);
        }
        ASSERT_EQ(destroyed, 1);

        destroyed = 0;
        {
                _cleanup_(thing_destroyp) Thing *a = new0(Thing, 1);
                _unused_ _cleanup_(thing_destroyp) Thing *b = NULL;

                ASSERT_TRUE(a != NULL);
        }
        ASSERT_EQ(destroyed, 1);

        /* The pointer is cleared, so a second call does nothing. */
        destroyed = 0;
        t = new0(Thing, 1);
        thing_freep(&t);
        ASSERT_TRUE(t == NULL);
        thing_freep(&t);
        ASSERT_EQ(destroyed, 1);

        t = new0(Thing, 1);
        thing_destroyp(&t);
        ASSERT_TRUE(t == NULL);
        thing_destroyp(&t);
        ASSERT_EQ(destroyed, 2);
}

static void test_new0(void) {
        _cleanup_free_ Thing *a = NULL, *z = NULL;

        a = new0(Thing, 4);
        ASSERT_TRUE(a != NULL);
        for (size_t i = 0; i < 4; i++)
                ASSERT_EQ(a[i].value, 0);

        z = new0(Thing, 0);            /* never NULL for zero elements */
        ASSERT_TRUE(z != NULL);
}

static void test_misc(void) {
        int arr[7];

        ASSERT_EQ(ELEMENTSOF(arr), 7);
        ASSERT_EQ(MIN(3, -2), -2);
        ASSERT_EQ(MAX(3, -2), 3);
        ASSERT_TRUE(streq("a", "a"));
        ASSERT_FALSE(streq("a", "ab"));

        errno = EACCES;
        ASSERT_EQ(negative_errno(), -EACCES);
        errno = 0;
        ASSERT_EQ(negative_errno(), -EIO);
}

int main(void) {
        TEST(test_closep_closes);
        TEST(test_closep_reuse_in_loop);
        TEST(test_closep_ignores_negative);
        TEST(test_closep_fd_zero);
        TEST(test_take_fd);
        TEST(test_safe_close_keeps_errno);
        TEST(test_close_many);
        TEST(test_freep);
        TEST(test_take_ptr);
        TEST(test_trivial_cleanup);
        TEST(test_new0);
        TEST(test_misc);
        return 0;
}
