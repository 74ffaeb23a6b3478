/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Cleanup and ownership helpers in systemd's dialect. The semantics matter more than the
 * spelling: close only fds >= 0, reset fds to -EBADF (never 0, which is a valid fd), clear
 * pointers after freeing. tests/unit/test-macro.c proves each of these, including that a closed
 * fd number is handed out again by the kernel.
 */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _pure_ __attribute__((pure))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _sentinel_ __attribute__((sentinel))
#define _public_ __attribute__((visibility("default")))
#define _likely_(x) (__builtin_expect(!!(x), 1))
#define _unlikely_(x) (__builtin_expect(!!(x), 0))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#define new0(t, n) ((t *) calloc((n) ?: 1, sizeof(t)))

/* Takes the value out of a variable and leaves its "empty" value behind, so that the cleanup
 * attribute on the variable does nothing. This is the one visible place where ownership moves. */
#define TAKE_GENERIC(var, type, nullvalue)                      \
        ({                                                      \
                type *_pvar_ = &(var);                          \
                type _var_ = *_pvar_;                           \
                type _nullvalue_ = nullvalue;                   \
                *_pvar_ = _nullvalue_;                          \
                _var_;                                          \
        })
#define TAKE_PTR_TYPE(ptr, type) TAKE_GENERIC(ptr, type, NULL)
#define TAKE_PTR(ptr) TAKE_PTR_TYPE(ptr, typeof(ptr))
#define TAKE_FD(fd) TAKE_GENERIC(fd, int, -EBADF)

static inline void freep(void *p) {
        void **pp = (void **) p;

        free(*pp);
        *pp = NULL;
}
#define _cleanup_free_ _cleanup_(freep)

/* Closes fd if it is valid and returns -EBADF, so callers can write fd = safe_close(fd). The
 * errno of close() is preserved for the caller: close() failing is never actionable here. */
static inline int safe_close(int fd) {
        if (fd >= 0) {
                int saved = errno;
                (void) close(fd);
                errno = saved;
        }
        return -EBADF;
}

static inline void closep(int *fd) {
        *fd = safe_close(*fd);
}
#define _cleanup_close_ _cleanup_(closep)

static inline void close_many(int *fds, size_t n) {
        for (size_t i = 0; i < n; i++)
                fds[i] = safe_close(fds[i]);
}

/* Defines name##p(type *p) calling func(*p) when *p is not NULL, for _cleanup_(name##p). */
#define DEFINE_TRIVIAL_CLEANUP_FUNC(type, func)                 \
        static inline void func##p(type *p) {                   \
                if (*p)                                         \
                        *p = func(*p);                          \
        }

/* Same, for destructors that return void. */
#define DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(type, func)            \
        static inline void func##p(type *p) {                   \
                if (*p) {                                       \
                        func(*p);                               \
                        *p = NULL;                              \
                }                                               \
        }

#define streq(a, b) (strcmp((a), (b)) == 0)

/* Negative errno from a libc call that failed with errno set; never returns 0 even if errno was
 * left unset by a buggy path. */
static inline int negative_errno(void) {
        return errno > 0 ? -errno : -EIO;
}
