/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfio_open_node(): a device node is used only if it is the character device sysfs named.
 * Symlinks (in the last or any earlier component), FIFOs, regular files and character devices
 * with another major:minor are refused, and none of them can block the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests.h"
#include "vfio.h"

static char dir[] = "/tmp/test-vfio-node-XXXXXX";

static char *path(const char *name) {
        static char buf[256];

        (void) snprintf(buf, sizeof(buf), "%s/%s", dir, name);
        return buf;
}

static dev_t devnull(void) {
        struct stat st;

        ASSERT_OK(stat("/dev/null", &st));
        ASSERT_TRUE(S_ISCHR(st.st_mode));
        return st.st_rdev;
}

static void test_right_node(void) {
        int fd = vfio_open_node("/dev/null", devnull(), O_RDWR);

        ASSERT_OK(fd);
        ASSERT_FALSE(fcntl(fd, F_GETFL) & O_NONBLOCK);
        ASSERT_TRUE((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR);
        ASSERT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        close(fd);
}

static void test_wrong_rdev(void) {
        /* The right type but another device: a bind-mounted or swapped node. */
        ASSERT_ERROR(vfio_open_node("/dev/null", makedev(major(devnull()), minor(devnull()) + 1), O_RDWR), ENODEV);
        ASSERT_ERROR(vfio_open_node("/dev/zero", devnull(), O_RDWR), ENODEV);
}

static void test_symlink_last(void) {
        /* The O_PATH handle names the symlink itself, which is not the character device. */
        ASSERT_OK(symlink("/dev/null", path("link")));
        ASSERT_ERROR(vfio_open_node(path("link"), devnull(), O_RDWR), ENODEV);
}

static void test_symlink_parent(void) {
        /* dir/parent -> /dev: "parent/null" resolves through a symlinked directory */
        ASSERT_OK(symlink("/dev", path("parent")));
        ASSERT_ERROR(vfio_open_node(path("parent/null"), devnull(), O_RDWR), ELOOP);
}

static void test_fifo(void) {
        /* A plain open of a FIFO for reading would block until a writer came. */
        ASSERT_OK(mkfifo(path("fifo"), 0600));
        ASSERT_ERROR(vfio_open_node(path("fifo"), devnull(), O_RDONLY), ENODEV);
}

static void test_socket(void) {
        /* A socket node: never opened (a plain open would fail with ENXIO). */
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };

        ASSERT_OK(s);
        (void) snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path("sock"));
        ASSERT_OK(bind(s, (struct sockaddr *) &sa, sizeof(sa)));
        ASSERT_ERROR(vfio_open_node(path("sock"), devnull(), O_RDWR), ENODEV);
        close(s);
}

static void test_directory(void) {
        ASSERT_OK(mkdir(path("dir"), 0700));
        ASSERT_ERROR(vfio_open_node(path("dir"), devnull(), O_RDWR), ENODEV);
}

static void test_regular_file(void) {
        int fd = open(path("file"), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);

        ASSERT_OK(fd);
        close(fd);
        ASSERT_ERROR(vfio_open_node(path("file"), devnull(), O_RDWR), ENODEV);
}

static void test_missing(void) {
        ASSERT_ERROR(vfio_open_node(path("missing"), devnull(), O_RDWR), ENOENT);
}

static void test_no_fd_leak(void) {
        int before = dup(0), after;

        close(before);
        for (int i = 0; i < 100; i++) {
                ASSERT_ERROR(vfio_open_node(path("file"), devnull(), O_RDWR), ENODEV);
                ASSERT_ERROR(vfio_open_node(path("link"), devnull(), O_RDWR), ENODEV);
                ASSERT_ERROR(vfio_open_node(path("parent/null"), devnull(), O_RDWR), ELOOP);
        }
        after = dup(0);
        close(after);
        ASSERT_EQ(after, before);       /* the lowest free fd is unchanged: nothing leaked */
}

int main(void) {
        ASSERT_TRUE(mkdtemp(dir) != NULL);

        TEST(test_right_node);
        TEST(test_wrong_rdev);
        TEST(test_symlink_last);
        TEST(test_symlink_parent);
        TEST(test_fifo);
        TEST(test_socket);
        TEST(test_directory);
        TEST(test_regular_file);
        TEST(test_missing);
        TEST(test_no_fd_leak);

        (void) unlink(path("link"));
        (void) unlink(path("parent"));
        (void) unlink(path("fifo"));
        (void) unlink(path("file"));
        (void) unlink(path("sock"));
        (void) rmdir(path("dir"));
        (void) rmdir(dir);
        return 0;
}
