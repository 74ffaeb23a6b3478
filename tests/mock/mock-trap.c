/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfio-mock, the path trap (kmod's testsuite style): the libc path calls the daemon makes,
 * and syscall(SYS_openat2), are rewritten from /sys, /dev/vfio and /dev/iommu to the fixture
 * root; a character node of the fixture is handed to the model (node_open(), vfio-mock.c)
 * instead of being opened. Also the real libc functions (REAL()) and whether the mock is
 * active in this process at all. The whole mock is described at the top of
 * vfio-mock.c.
 */
#include "mock.h"

/* ---- Real functions ---- */

void *resolve(const char *name) {
        void *p = dlsym(RTLD_NEXT, name);

        if (!p) {
                static const char msg[] = "vfio-mock: cannot resolve a libc function\n";
                (void) !write(STDERR_FILENO, msg, sizeof(msg) - 1);
                abort();
        }
        return p;
}

int (*real_open)(const char *, int, ...);
int (*real_openat)(int, const char *, int, ...);
FILE *(*real_fopen)(const char *, const char *);
FILE *(*real_fopen64)(const char *, const char *);
DIR *(*real_opendir)(const char *);
ssize_t (*real_readlink)(const char *, char *, size_t);
ssize_t (*real_readlinkat)(int, const char *, char *, size_t);
int (*real_stat)(const char *, struct stat *);
int (*real_stat64)(const char *, struct stat64 *);
int (*real_lstat)(const char *, struct stat *);
int (*real_lstat64)(const char *, struct stat64 *);
int (*real_fstatat)(int, const char *, struct stat *, int);
int (*real_fstatat64)(int, const char *, struct stat64 *, int);
int (*real_fstat)(int, struct stat *);
int (*real_fstat64)(int, struct stat64 *);
int (*real_access)(const char *, int);
int (*real_faccessat)(int, const char *, int, int);
int (*real_ioctl)(int, unsigned long, ...);
ssize_t (*real_pread)(int, void *, size_t, off_t);
ssize_t (*real_pread64)(int, void *, size_t, off64_t);
ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
ssize_t (*real_pwrite64)(int, const void *, size_t, off64_t);
int (*real_close)(int);
void *(*real_mmap)(void *, size_t, int, int, int, off_t);
void *(*real_mmap64)(void *, size_t, int, int, int, off64_t);
int (*real_munmap)(void *, size_t);
long (*real_syscall)(long, ...);
ssize_t (*real_sendmsg)(int, const struct msghdr *, int);

/* Fortified variants (glibc's <bits/fcntl2.h>), which have no prototypes without
 * _FORTIFY_SOURCE. */
int __open_2(const char *path, int flags);
int __open64_2(const char *path, int flags);
int __openat_2(int dirfd, const char *path, int flags);
int __openat64_2(int dirfd, const char *path, int flags);

/* ---- State ---- */

pthread_mutex_t lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
static int active = -1;                 /* -1: not decided yet */
char root[PATH_MAX];
char state_dir[PATH_MAX];

/* ---- Small helpers ---- */

bool streq(const char *a, const char *b) {
        return strcmp(a, b) == 0;
}

static bool startswith_component(const char *s, const char *prefix) {
        size_t n = strlen(prefix);

        return strncmp(s, prefix, n) == 0 && (s[n] == '/' || s[n] == 0);
}

static bool program_matches(void) {
        const char *want = getenv("NOIOMMU_MOCK_PROGRAM");

        if (!want || !*want)
                want = "noiommud";
        return streq(want, "*") || streq(want, program_invocation_short_name);
}

bool is_active(void) {
        const char *r, *l;

        if (active >= 0)
                return active;

        /* Decided once NOIOMMU_MOCK_ROOT is seen; until then the environment is looked at again
         * on every call, so a test program may set it in main(). Other programs (the sh, unshare
         * and mount that run the daemon inherit the same LD_PRELOAD) are out for good. */
        pthread_mutex_lock(&lock);
        if (active < 0) {
                r = getenv("NOIOMMU_MOCK_ROOT");
                l = getenv("NOIOMMU_MOCK_LOG");
                if (!program_matches())
                        active = 0;
                else if (r && *r == '/' && strlen(r) < sizeof(root) - 64) {
                        snprintf(root, sizeof(root), "%s", r);
                        while (strlen(root) > 1 && root[strlen(root) - 1] == '/')
                                root[strlen(root) - 1] = 0;
                        snprintf(state_dir, sizeof(state_dir), "%s/mock-state", root);
                        if (l && *l)
                                snprintf(log_path, sizeof(log_path), "%s", l);
                        active = 1;
                }
        }
        pthread_mutex_unlock(&lock);
        return active > 0;
}

/* ---- Path trap ---- */

static const char *const passthrough[] = {
        "/sys/kernel/mm",
        "/sys/devices/system",
        "/sys/fs",
        "/sys/kernel/security",
        "/sys/kernel/debug",
        "/sys/kernel/tracing",
        NULL,
};

static bool path_is_trapped(const char *p) {
        if (startswith_component(p, "/dev/vfio") || startswith_component(p, "/dev/iommu"))
                return true;
        if (!startswith_component(p, "/sys"))
                return false;
        for (const char *const *x = passthrough; *x; x++)
                if (startswith_component(p, *x))
                        return false;
        return true;
}

/* Makes "path" (relative to dirfd) absolute if it is absolute already or dirfd is an fd of
 * "/". Returns false if it is relative to anything else. */
static bool path_absolute_at(int dirfd, const char *path, char *ret, size_t size) {
        char link[64], target[PATH_MAX];
        ssize_t n;

        if (!path)
                return false;
        if (path[0] == '/') {
                snprintf(ret, size, "%s", path);
                return true;
        }
        if (dirfd < 0 || !path[0])
                return false;
        snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
        n = REAL(readlink)(link, target, sizeof(target) - 1);
        if (n != 1 || target[0] != '/')
                return false;
        snprintf(ret, size, "/%s", path);
        return true;
}

/* Returns the rewritten path in buf, or NULL when the path is not trapped. Logs accesses to
 * /sys and /dev (trapped or not), so tests can check that a request touched no file at all. */
static const char *trap_at_how(int dirfd, const char *path, char *buf, size_t size, const char *what,
                               const char *extra) {
        char abs[PATH_MAX];

        if (!is_active() || !path_absolute_at(dirfd, path, abs, sizeof(abs)))
                return NULL;
        if (!startswith_component(abs, "/sys") && !startswith_component(abs, "/dev"))
                return NULL;
        if (!path_is_trapped(abs)) {
                mlog("%s path=%s trapped=0%s", what, abs, extra);
                return NULL;
        }
        if ((size_t) snprintf(buf, size, "%s%s", root, abs) >= size)
                return NULL;
        mlog("%s path=%s trapped=1%s", what, abs, extra);
        return buf;
}

static const char *trap_at(int dirfd, const char *path, char *buf, size_t size, const char *what) {
        return trap_at_how(dirfd, path, buf, size, what, "");
}

/* ---- Interposed functions ---- */

/* If path is /proc/self/fd/N (or /proc/PID/fd/N of this process) and that fd is an O_PATH fd
 * of something below the fixture's dev/, puts its path (below root) in buf. */
static bool reopen_target(int dirfd, const char *path, char *buf, size_t size) {
        char self[64], dev[PATH_MAX + 8];
        ssize_t n;

        if (path[0] != '/' || strncmp(path, "/proc/", 6) != 0)
                return false;
        snprintf(self, sizeof(self), "/proc/%d/fd/", (int) getpid());
        if (strncmp(path, "/proc/self/fd/", 14) != 0 && strncmp(path, self, strlen(self)) != 0)
                return false;
        n = REAL(readlink)(path, buf, size - 1);
        if (n <= 0)
                return false;
        buf[n] = 0;
        snprintf(dev, sizeof(dev), "%s/dev/", root);
        return strncmp(buf, dev, strlen(dev)) == 0;
}

static int do_openat(int dirfd, const char *path, int flags, mode_t mode) {
        char buf[PATH_MAX + 256];
        const char *t;
        int r;

        if (!is_active())
                return REAL(openat)(dirfd, path, flags, mode);

        pthread_mutex_lock(&lock);
        t = trap_at(dirfd, path, buf, sizeof(buf), "open");
        if (!t && !(flags & O_PATH) && reopen_target(dirfd, path, buf, sizeof(buf))) {
                /* Reopening an O_PATH fd of a fixture node through /proc/self/fd/N: the node
                 * is what gets opened, as in the kernel. */
                r = node_open(buf + strlen(root), buf, flags);
                if (r != -2) {
                        int e = errno;
                        pthread_mutex_unlock(&lock);
                        errno = e;
                        return r;
                }
        }
        if (!t) {
                pthread_mutex_unlock(&lock);
                return REAL(openat)(dirfd, path, flags, mode);
        }
        if (!(flags & O_PATH)) {
                char abs[PATH_MAX];

                (void) path_absolute_at(dirfd, path, abs, sizeof(abs));
                r = node_open(abs, t, flags);
                if (r != -2) {
                        int e = errno;
                        pthread_mutex_unlock(&lock);
                        errno = e;
                        return r;
                }
        }
        pthread_mutex_unlock(&lock);
        return REAL(openat)(AT_FDCWD, t, flags, mode);
}

static mode_t va_mode(int flags, va_list ap) {
        return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t) va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = va_mode(flags, ap);
        va_end(ap);
        return do_openat(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...) {
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = va_mode(flags, ap);
        va_end(ap);
        return do_openat(AT_FDCWD, path, flags | O_LARGEFILE, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = va_mode(flags, ap);
        va_end(ap);
        return do_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
        va_list ap;
        mode_t mode;

        va_start(ap, flags);
        mode = va_mode(flags, ap);
        va_end(ap);
        return do_openat(dirfd, path, flags | O_LARGEFILE, mode);
}

int __open_2(const char *path, int flags) {
        return do_openat(AT_FDCWD, path, flags, 0);
}

int __open64_2(const char *path, int flags) {
        return do_openat(AT_FDCWD, path, flags | O_LARGEFILE, 0);
}

int __openat_2(int dirfd, const char *path, int flags) {
        return do_openat(dirfd, path, flags, 0);
}

int __openat64_2(int dirfd, const char *path, int flags) {
        return do_openat(dirfd, path, flags | O_LARGEFILE, 0);
}

FILE *fopen(const char *path, const char *mode) {
        char buf[PATH_MAX + 256];
        const char *t = trap_at(AT_FDCWD, path, buf, sizeof(buf), "fopen");

        return REAL(fopen)(t ?: path, mode);
}

FILE *fopen64(const char *path, const char *mode) {
        char buf[PATH_MAX + 256];
        const char *t = trap_at(AT_FDCWD, path, buf, sizeof(buf), "fopen");

        return REAL(fopen64)(t ?: path, mode);
}

DIR *opendir(const char *path) {
        char buf[PATH_MAX + 256];
        const char *t = trap_at(AT_FDCWD, path, buf, sizeof(buf), "opendir");

        return REAL(opendir)(t ?: path);
}

ssize_t readlink(const char *path, char *out, size_t size) {
        char buf[PATH_MAX + 256];
        const char *t;

        /* An fd of a node object reads as the kernel's node would (node_fd_link()). */
        if (is_active() && strncmp(path, "/proc/self/fd/", 14) == 0) {
                ssize_t n = node_fd_link(atoi(path + 14), out, size);

                if (n >= 0)
                        return n;
        }
        t = trap_at(AT_FDCWD, path, buf, sizeof(buf), "readlink");
        return REAL(readlink)(t ?: path, out, size);
}

ssize_t readlinkat(int dirfd, const char *path, char *out, size_t size) {
        char buf[PATH_MAX + 256];
        const char *t = trap_at(dirfd, path, buf, sizeof(buf), "readlink");

        return t ? REAL(readlinkat)(AT_FDCWD, t, out, size) : REAL(readlinkat)(dirfd, path, out, size);
}

int access(const char *path, int mode) {
        char buf[PATH_MAX + 256];
        const char *t = trap_at(AT_FDCWD, path, buf, sizeof(buf), "access");

        return REAL(access)(t ?: path, mode);
}

int faccessat(int dirfd, const char *path, int mode, int flags) {
        char buf[PATH_MAX + 256];
        const char *t = trap_at(dirfd, path, buf, sizeof(buf), "access");

        return t ? REAL(faccessat)(AT_FDCWD, t, mode, flags) : REAL(faccessat)(dirfd, path, mode, flags);
}

int stat(const char *path, struct stat *st) {
        char buf[PATH_MAX + 256];
        const char *t = trap_at(AT_FDCWD, path, buf, sizeof(buf), "stat");

        return REAL(stat)(t ?: path, st);
}

int stat64(const char *path, struct stat64 *st) {
        char buf[PATH_MAX + 256];
        const char *t = trap_at(AT_FDCWD, path, buf, sizeof(buf), "stat");

        return REAL(stat64)(t ?: path, st);
}

int lstat(const char *path, struct stat *st) {
        char buf[PATH_MAX + 256];
        const char *t = trap_at(AT_FDCWD, path, buf, sizeof(buf), "stat");

        return REAL(lstat)(t ?: path, st);
}

int lstat64(const char *path, struct stat64 *st) {
        char buf[PATH_MAX + 256];
        const char *t = trap_at(AT_FDCWD, path, buf, sizeof(buf), "stat");

        return REAL(lstat64)(t ?: path, st);
}

int fstatat(int dirfd, const char *path, struct stat *st, int flags) {
        char buf[PATH_MAX + 256];
        const char *t;

        if (!path[0] && (flags & AT_EMPTY_PATH))
                return fstat(dirfd, st);
        t = trap_at(dirfd, path, buf, sizeof(buf), "stat");
        return t ? REAL(fstatat)(AT_FDCWD, t, st, flags) : REAL(fstatat)(dirfd, path, st, flags);
}

int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags) {
        char buf[PATH_MAX + 256];
        const char *t;

        if (!path[0] && (flags & AT_EMPTY_PATH))
                return fstat64(dirfd, st);
        t = trap_at(dirfd, path, buf, sizeof(buf), "stat");
        return t ? REAL(fstatat64)(AT_FDCWD, t, st, flags) : REAL(fstatat64)(dirfd, path, st, flags);
}

/* ---- openat2 ---- */

/* Caller's RESOLVE_* flags for the log: "resolve=no-symlinks,no-magiclinks". */
static void resolve_flags_string(uint64_t resolve, char *ret, size_t size) {
        static const struct { uint64_t flag; const char *name; } names[] = {
                { RESOLVE_NO_XDEV,       "no-xdev" },
                { RESOLVE_NO_MAGICLINKS, "no-magiclinks" },
                { RESOLVE_NO_SYMLINKS,   "no-symlinks" },
                { RESOLVE_BENEATH,       "beneath" },
                { RESOLVE_IN_ROOT,       "in-root" },
                { RESOLVE_CACHED,        "cached" },
        };
        size_t n = 0;

        ret[0] = 0;
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
                if (resolve & names[i].flag)
                        n += (size_t) snprintf(ret + n, n < size ? size - n : 0, "%s%s",
                                               n ? "," : "", names[i].name);
        if (!ret[0])
                snprintf(ret, size, "none");
}

/* The real openat2() answered EAGAIN: with RESOLVE_IN_ROOT (always set here) a rename or mount
 * anywhere in the system during a walk through ".." makes the kernel refuse (fs/namei.c
 * handle_dots(); openat2(2)), and the fixture's bus/pci/devices links go through "..", as
 * sysfs's do. Passed on unchanged, as the kernel would; logged as "open-eagain path=..." so a
 * test can tell that it made the daemon meet this answer. */
static void note_openat2_eagain(const char *abs, int e) {
        if (e == EAGAIN)
                mlog("open-eagain path=%s", abs);
}

/* syscall(SYS_openat2, dirfd, path, how, size) the way the daemon issues it: vfio.c's
 * vfio_open_node() (AT_FDCWD, an absolute /dev path, O_PATH|O_NOFOLLOW,
 * RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS) and inventory.c's open_in_root() (an fd of "/", a
 * relative sysfs path, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS). A trapped path is resolved by the
 * real openat2() relative to an fd of the fixture root with RESOLVE_IN_ROOT added: the fixture
 * root stands for "/", and "/" is where an absolute symlink or a ".." ends for the real call too
 * (openat2(2)), so the translation is exact for these callers. Every other flag of open_how is
 * the caller's and is enforced by the kernel, not modelled here. A character node is never
 * opened for real (it would be the host's device with that number): it is resolved O_PATH first
 * and then opened as the fixture object, as do_openat() does. Returns -2 if the path is not
 * trapped (the caller forwards the call unchanged). */
static long do_openat2(int dirfd, const char *path, const void *how_arg, size_t size) {
        uint64_t how_buf[64] = {};
        struct open_how how;
        char buf[PATH_MAX + 256], abs[PATH_MAX], extra[160], res[96], real_path[PATH_MAX + 8], link[64];
        const char *t;
        struct stat st;
        long fd = -1, pfd;
        int rootfd, e = 0;
        ssize_t n;

        /* copy_struct_from_user() cases the kernel answers itself: let it. */
        if (!how_arg || !path || size < sizeof(struct open_how))    /* OPEN_HOW_SIZE_VER0, 24 */
                return -2;
        if (size > sizeof(how_buf)) {
                errno = E2BIG;          /* a bigger open_how than any kernel has: not modelled */
                return -1;
        }
        memcpy(how_buf, how_arg, size);
        memcpy(&how, how_buf, sizeof(how));

        resolve_flags_string(how.resolve, res, sizeof(res));
        snprintf(extra, sizeof(extra), " via=openat2 resolve=%s", res);
        t = trap_at_how(dirfd, path, buf, sizeof(buf), "open", extra);
        if (!t)
                return -2;
        if (!path_absolute_at(dirfd, path, abs, sizeof(abs)))
                return -2;
        if (how.resolve & RESOLVE_BENEATH) {
                if (path[0] == '/') {
                        errno = EXDEV;  /* an absolute path is never beneath dirfd */
                        return -1;
                }
        } else
                how.resolve |= RESOLVE_IN_ROOT;
        memcpy(how_buf, &how, sizeof(how));

        rootfd = REAL(open)(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                return -1;

        if (!(how.flags & O_PATH)) {
                struct open_how probe = how;

                probe.flags = O_PATH | O_CLOEXEC | (how.flags & (O_DIRECTORY | O_NOFOLLOW));
                probe.mode = 0;
                pfd = REAL(syscall)(SYS_openat2, rootfd, abs + 1, &probe, sizeof(probe));
                if (pfd < 0) {
                        e = errno;
                        note_openat2_eagain(abs, e);
                        goto out;
                }
                if (REAL(fstat)((int) pfd, &st) == 0 && S_ISCHR(st.st_mode)) {
                        snprintf(link, sizeof(link), "/proc/self/fd/%ld", pfd);
                        n = REAL(readlink)(link, real_path, sizeof(real_path) - 1);
                        REAL(close)((int) pfd);
                        if (n <= 0) {
                                e = EIO;
                                goto out;
                        }
                        real_path[n] = 0;
                        fd = node_open(abs, real_path, (int) how.flags);
                        e = errno;
                        if (fd != -2)
                                goto out;
                } else
                        REAL(close)((int) pfd);
        }

        fd = REAL(syscall)(SYS_openat2, rootfd, abs + 1, how_buf, size);
        e = errno;
        if (fd < 0)
                note_openat2_eagain(abs, e);
out:
        REAL(close)(rootfd);
        errno = e;
        return fd < 0 ? -1 : fd;
}

long syscall(long nr, ...) {
        long a[6];
        va_list ap;

        va_start(ap, nr);
        for (size_t i = 0; i < 6; i++)
                a[i] = va_arg(ap, long);
        va_end(ap);

        if (is_active()) {
                if (nr == SYS_openat2) {
                        long r;
                        int e;

                        pthread_mutex_lock(&lock);
                        r = do_openat2((int) a[0], (const char *) a[1], (const void *) a[2], (size_t) a[3]);
                        e = errno;
                        pthread_mutex_unlock(&lock);
                        if (r != -2) {
                                errno = e;
                                return r;
                        }
                }
                if (nr == SYS_io_uring_register) {
                        long r;
                        int e;

                        /* Log the unpin before it happens, the pin after it worked. */
                        if (a[1] == M_IORING_UNREGISTER_BUFFERS)
                                note_io_uring_register(a[0], a[1], a[2], a[3]);
                        r = REAL(syscall)(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
                        e = errno;
                        if (r >= 0 && a[1] == M_IORING_REGISTER_BUFFERS)
                                note_io_uring_register(a[0], a[1], a[2], a[3]);
                        errno = e;
                        return r;
                }
        }
        return REAL(syscall)(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}
