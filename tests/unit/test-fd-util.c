/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client/internal/fd-util.c: /proc parsing (the start time polkit identifies a process by),
 * small-file reads and fd counting.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal/fd-util.h"
#include "internal/macro.h"
#include "tests.h"

/* Field 22 of /proc/self/stat, found independently of fd-util.c: split on spaces from the end of
 * comm. */
static unsigned long long stat_field22(const char *stat) {
        _cleanup_free_ char *copy = strdup(stat);
        char *p, *save = NULL, *tok;
        unsigned long long v = 0;
        int field = 2;

        ASSERT_TRUE(copy != NULL);
        p = strrchr(copy, ')');
        ASSERT_TRUE(p != NULL);
        for (tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
                field++;
                if (field == 22) {
                        ASSERT_EQ(sscanf(tok, "%llu", &v), 1);
                        return v;
                }
        }
        ASSERT_TRUE(!"stat has fewer than 22 fields");
        return 0;
}

static char *read_self_stat(void) {
        char *s = NULL;

        ASSERT_OK(read_small_file_at(AT_FDCWD, "/proc/self/stat", &s));
        return s;
}

static void test_starttime_self(void) {
        _cleanup_free_ char *stat = NULL;
        unsigned long long t = 0;

        ASSERT_OK(proc_get_starttime(getpid(), &t));
        stat = read_self_stat();
        ASSERT_EQ(t, stat_field22(stat));
}

static void test_starttime_hostile_comm(void) {
        static const char *const names[] = {
                "a) (b",                        /* the case from the brief */
                ") 1 2 3 4 5 6",                /* numbers where a naive parser looks */
                "x) R 1 2 3 4 5",
                "((",
                "))",
                "a b c",
        };
        char saved[17] = {};

        ASSERT_OK(prctl(PR_GET_NAME, saved));

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *stat = NULL;
                unsigned long long t = 0;
                char expect[64];

                ASSERT_OK(prctl(PR_SET_NAME, names[i]));
                stat = read_self_stat();

                /* The kernel really shows the hostile comm (truncated to 15 bytes). */
                (void) snprintf(expect, sizeof(expect), "(%.15s)", names[i]);
                ASSERT_TRUE(strstr(stat, expect) != NULL);

                ASSERT_OK(proc_get_starttime(getpid(), &t));
                ASSERT_EQ(t, stat_field22(stat));
        }

        ASSERT_OK(prctl(PR_SET_NAME, saved));
}

static void test_starttime_child(void) {
        unsigned long long self = 0, child = 0;
        int status;
        pid_t pid;

        ASSERT_OK(proc_get_starttime(getpid(), &self));

        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0) {
                pause();
                _exit(0);
        }

        /* Another process, started after us. */
        ASSERT_OK(proc_get_starttime(pid, &child));
        ASSERT_TRUE(child >= self);

        ASSERT_OK(kill(pid, SIGKILL));
        ASSERT_EQ(waitpid(pid, &status, 0), pid);

        /* Reaped: gone. */
        ASSERT_ERROR(proc_get_starttime(pid, &child), ENOENT);
}

static void test_starttime_invalid(void) {
        unsigned long long t = 77;

        ASSERT_ERROR(proc_get_starttime(0, &t), EINVAL);
        ASSERT_ERROR(proc_get_starttime(-1, &t), EINVAL);
        ASSERT_ERROR(proc_get_starttime(INT_MAX, &t), ENOENT);         /* above pid_max */
        ASSERT_EQ(t, 77);
}

/* A scratch directory and an O_DIRECTORY fd of it. */
static int make_tmpdir(char path[static 64]) {
        int fd;

        strcpy(path, "/tmp/test-fd-util.XXXXXX");
        ASSERT_TRUE(mkdtemp(path) != NULL);
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT_OK(fd);
        return fd;
}

static void write_at(int dir_fd, const char *name, const void *data, size_t n) {
        _cleanup_close_ int fd = -EBADF;

        fd = openat(dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        ASSERT_OK(fd);
        ASSERT_EQ(write(fd, data, n), (ssize_t) n);
}

static void check_read(int dir_fd, const char *content, const char *expect) {
        _cleanup_free_ char *s = NULL;

        write_at(dir_fd, "f", content, strlen(content));
        ASSERT_OK(read_small_file_at(dir_fd, "f", &s));
        ASSERT_STREQ(s, expect);
}

static void test_read_small_file(void) {
        _cleanup_close_ int dir_fd = -EBADF;
        _cleanup_free_ char *big = NULL, *s = NULL;
        char *untouched = (char *) 0x1;
        char path[64], abs[128];
        size_t n;

        dir_fd = make_tmpdir(path);

        check_read(dir_fd, "Y\n", "Y");
        check_read(dir_fd, "0x1234\n", "0x1234");
        check_read(dir_fd, "abc", "abc");
        check_read(dir_fd, "abc\n\n\n", "abc");
        check_read(dir_fd, "a\nb\n", "a\nb");          /* only trailing newlines */
        check_read(dir_fd, "  x \n", "  x ");          /* spaces are kept */
        check_read(dir_fd, "\n", "");
        check_read(dir_fd, "", "");

        /* Larger than the first 4 KiB buffer, still small. */
        n = 60000;
        big = malloc(n + 2);
        ASSERT_TRUE(big != NULL);
        memset(big, 'q', n);
        big[n] = '\n';
        big[n + 1] = 0;
        write_at(dir_fd, "f", big, n + 1);
        ASSERT_OK(read_small_file_at(dir_fd, "f", &s));
        ASSERT_EQ(strlen(s), n);
        freep(&s);

        /* Too big. */
        big = realloc(big, 70000);
        ASSERT_TRUE(big != NULL);
        memset(big, 'q', 70000);
        write_at(dir_fd, "f", big, 70000);
        ASSERT_ERROR(read_small_file_at(dir_fd, "f", &untouched), EFBIG);
        ASSERT_TRUE(untouched == (char *) 0x1);

        /* AT_FDCWD with an absolute path. */
        check_read(dir_fd, "abs\n", "abs");
        (void) snprintf(abs, sizeof(abs), "%s/f", path);
        ASSERT_OK(read_small_file_at(AT_FDCWD, abs, &s));
        ASSERT_STREQ(s, "abs");

        ASSERT_ERROR(read_small_file_at(dir_fd, "missing", &untouched), ENOENT);
        ASSERT_ERROR(read_small_file_at(dir_fd, ".", &untouched), EISDIR);
        ASSERT_TRUE(untouched == (char *) 0x1);

        /* A sysfs-like attribute of the running kernel. */
        {
                _cleanup_free_ char *ost = NULL;

                ASSERT_OK(read_small_file_at(AT_FDCWD, "/proc/sys/kernel/ostype", &ost));
                ASSERT_STREQ(ost, "Linux");
        }

        ASSERT_OK(unlinkat(dir_fd, "f", 0));
        ASSERT_OK(rmdir(path));
}

static void test_fd_count(void) {
        int base, a, b, p[2];

        base = fd_count(0);
        ASSERT_OK(base);
        ASSERT_TRUE(base >= 0);

        a = open("/dev/null", O_RDONLY | O_CLOEXEC);
        ASSERT_OK(a);
        ASSERT_EQ(fd_count(0), base + 1);
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        ASSERT_EQ(fd_count(0), base + 3);
        b = fcntl(a, F_DUPFD_CLOEXEC, 100);
        ASSERT_OK(b);
        ASSERT_EQ(fd_count(0), base + 4);

        (void) safe_close(a);
        (void) safe_close(b);
        (void) safe_close(p[0]);
        (void) safe_close(p[1]);
        ASSERT_EQ(fd_count(0), base);

        /* By pid the directory's own fd is counted too. */
        ASSERT_EQ(fd_count(getpid()), base + 1);
        ASSERT_ERROR(fd_count(INT_MAX), ENOENT);
}

static void test_fd_nonblock(void) {
        _cleanup_close_ int a = -EBADF, b = -EBADF;
        int p[2];

        ASSERT_OK(pipe2(p, O_CLOEXEC));
        a = p[0];
        b = p[1];

        ASSERT_FALSE(fcntl(a, F_GETFL) & O_NONBLOCK);
        ASSERT_OK(fd_nonblock(a, true));
        ASSERT_TRUE(fcntl(a, F_GETFL) & O_NONBLOCK);
        ASSERT_OK(fd_nonblock(a, true));                /* idempotent */
        ASSERT_TRUE(fcntl(a, F_GETFL) & O_NONBLOCK);
        ASSERT_OK(fd_nonblock(a, false));
        ASSERT_FALSE(fcntl(a, F_GETFL) & O_NONBLOCK);

        ASSERT_ERROR(fd_nonblock(-EBADF, true), EBADF);
}

static void test_proc_stat_zombie(void) {
        unsigned long long st0, st;
        char state = 0;
        pid_t pid;

        ASSERT_OK(proc_get_stat(getpid(), &st0, &state));
        ASSERT_TRUE(state == 'R' || state == 'S');

        /* A child that exited but was not reaped yet: same start time, state Z. */
        pid = fork();
        ASSERT_OK(pid);
        if (pid == 0)
                _exit(0);
        for (int i = 0; i < 1000; i++) {
                ASSERT_OK(proc_get_stat(pid, &st, &state));
                if (state == 'Z')
                        break;
                usleep(1000);
        }
        ASSERT_EQ(state, 'Z');
        ASSERT_OK(waitpid(pid, NULL, 0));
        ASSERT_ERROR(proc_get_stat(pid, &st, &state), ENOENT);
}

int main(void) {
        TEST(test_starttime_self);
        TEST(test_starttime_hostile_comm);
        TEST(test_starttime_child);
        TEST(test_starttime_invalid);
        TEST(test_read_small_file);
        TEST(test_fd_count);
        TEST(test_fd_nonblock);
        TEST(test_proc_stat_zombie);
        TEST(test_proc_stat_zombie);
        return 0;
}
