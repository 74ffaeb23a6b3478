/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the files of the vfio mock share: vfio-mock.c (the model of the kernel, and the
 * description of the whole mock and its environment interface at its top), mock-trap.c (the
 * path trap and the real libc functions) and mock-log.c (the event log). Every file includes
 * this first: it undoes _FORTIFY_SOURCE and _FILE_OFFSET_BITS before any system header.
 */
#pragma once

#undef _FORTIFY_SOURCE          /* the fortified open() is an inline wrapper we could not replace */
#undef _FILE_OFFSET_BITS        /* meson sets 64: open would be renamed open64, and so on; we
                                 * define both names ourselves */
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>
#include <linux/openat2.h>
#include <linux/pci_regs.h>

#include "vfio-uapi.h"

/* Paths here are bounded by the fixture root (PATH_MAX) and sysfs names; a truncated one
 * simply does not exist. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

/* io_uring_register() opcodes (<linux/io_uring.h>): the pins of the daemon's memory */
#define M_IORING_REGISTER_BUFFERS       0
#define M_IORING_UNREGISTER_BUFFERS     1

/* ---- Shared between the mock's files (hidden: a preloaded module exports only the
 * libc functions it replaces) ---- */

#pragma GCC visibility push(hidden)

/* mock-trap.c: the real libc functions, looked up on first use (REAL() below) */
void *resolve(const char *name);
extern int (*real_open)(const char *, int, ...);
extern int (*real_openat)(int, const char *, int, ...);
extern FILE *(*real_fopen)(const char *, const char *);
extern FILE *(*real_fopen64)(const char *, const char *);
extern DIR *(*real_opendir)(const char *);
extern ssize_t (*real_readlink)(const char *, char *, size_t);
extern ssize_t (*real_readlinkat)(int, const char *, char *, size_t);
extern int (*real_stat)(const char *, struct stat *);
extern int (*real_stat64)(const char *, struct stat64 *);
extern int (*real_lstat)(const char *, struct stat *);
extern int (*real_lstat64)(const char *, struct stat64 *);
extern int (*real_fstatat)(int, const char *, struct stat *, int);
extern int (*real_fstatat64)(int, const char *, struct stat64 *, int);
extern int (*real_fstat)(int, struct stat *);
extern int (*real_fstat64)(int, struct stat64 *);
extern int (*real_access)(const char *, int);
extern int (*real_faccessat)(int, const char *, int, int);
extern int (*real_ioctl)(int, unsigned long, ...);
extern ssize_t (*real_pread)(int, void *, size_t, off_t);
extern ssize_t (*real_pread64)(int, void *, size_t, off64_t);
extern ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
extern ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
extern int (*real_close)(int);
extern void *(*real_mmap)(void *, size_t, int, int, int, off_t);
extern void *(*real_mmap64)(void *, size_t, int, int, int, off64_t);
extern int (*real_munmap)(void *, size_t);
extern long (*real_syscall)(long, ...);
extern ssize_t (*real_sendmsg)(int, const struct msghdr *, int);

/* mock-trap.c: whether the mock runs in this process (NOIOMMU_MOCK_ROOT and
 * NOIOMMU_MOCK_PROGRAM), and where the fixture root and the shared object state are */
extern pthread_mutex_t lock;                   /* recursive: every entry point takes it */
extern char root[PATH_MAX];
extern char state_dir[PATH_MAX];
bool is_active(void);
bool streq(const char *a, const char *b);

/* mock-log.c */
extern char log_path[PATH_MAX];
__attribute__((format(printf, 1, 2))) void mlog(const char *format, ...);

/* vfio-mock.c: the model behind a trapped character node and the io_uring pins */
int node_open(const char *abs, const char *real_path, int flags);
ssize_t node_fd_link(int fd, char *out, size_t size);
void note_io_uring_register(long fd, long op, long arg, long n);

#pragma GCC visibility pop

#define REAL(name) ({                                                           \
        if (!real_##name)                                                       \
                real_##name = (__typeof__(real_##name)) resolve(#name);         \
        real_##name;                                                            \
})
