/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-fastpath: the timed half of tests/bench/run-fastpath.py (issue 10, "measure it in one
 * run"). Everything between the clocks is C: no Python, no JSON library, no client library, so
 * the same binary measures any build of the daemon and the rows differ only in what they ask.
 *
 *   bench-fastpath serve SOCKET
 *       the transport floor: accept, read one NUL-terminated request, reply with one fd in
 *       SCM_RIGHTS, close; one connection at a time, until killed
 *   bench-fastpath latency ITERATIONS WARMUP ROW...
 *       runs every ROW once per iteration, in turn (interleaved, so that drift hits all rows
 *       alike), and prints one line per row:
 *         ROW <name> <p50 us> <p99 us> <n>
 *         NA <name> <reason>             (the row failed during the warm-up: not supported)
 *         FAIL <name> <iteration> <reason>
 *   bench-fastpath batch N ROW
 *       runs one ROW N times, untimed, for the daemon-side counters (strace, /proc, callgrind)
 *       the script reads around it; exit status 1 on the first failure
 *
 * A ROW is NAME[@MAX]=KIND[,ARG...]; with @MAX the row takes at most MAX samples, in every
 * k-th iteration (k = ITERATIONS / MAX rounded up), so that it stays interleaved with the others:
 * the device rows cost milliseconds each on the vfio mock.
 *   floor,SOCKET            connect + request + reply with an fd + close, to `serve`
 *   peer                    dbus-daemon ($DBUS_SYSTEM_BUS_ADDRESS): connect + Hello + GetId
 *   polkit,SIZE             CheckAuthorization(io.noiommud.allocate-memory) on an open bus
 *                           connection, the subject shape the daemon sends (bench-alloc.c)
 *   kernel,SIZE             memfd_create(MFD_HUGETLB) + ftruncate + fallocate (prealloc + zero)
 *   direct,SIZE             the daemon's kernel sequence for new memory, done here: memfd,
 *                           fallocate, seal, mmap, io_uring pin, pagemap (bench-alloc.c)
 *   getinfo,SOCKET          daemon: connect + org.varlink.service.GetInfo + close
 *   alloc,SOCKET,SIZE       daemon: connect + AllocateMemory(size) + memfd received + close
 *   acqmem,SOCKET,DEV,SIZE  daemon: connect + AcquireDevice(device, memory: [{size}]) + the
 *                           device fd and memfd received + close (one call, one polkit check)
 *   acq2,SOCKET,DEV,SIZE    daemon: connect + AcquireDevice + AllocateMemory(size, lease) +
 *                           close (two calls, two polkit checks), for comparison
 *   acq,SOCKET,DEV          daemon: connect + AcquireDevice + the device fd received + close:
 *                           what the device alone costs (on the vfio mock: mostly the mock)
 *
 * A daemon reply that is a Varlink error fails the request with the error's text. A device that
 * is still being torn down after the previous iteration's disconnect (DeviceBusy) is retried
 * after 1 ms, with the clock restarted: teardown is asynchronous by design.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/io_uring.h>
#include <linux/memfd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "internal/fd-util.h"
#include "internal/json-util.h"
#include "internal/macro.h"

#define MAX_ARGS 4
#define REPLY_MAX (4U << 20)
#define MAX_FDS 16

typedef enum Kind {
        KIND_FLOOR,
        KIND_PEER,
        KIND_POLKIT,
        KIND_KERNEL,
        KIND_DIRECT,
        KIND_GETINFO,
        KIND_ALLOC,
        KIND_ACQMEM,
        KIND_ACQ2,
        KIND_ACQ,
} Kind;

static const struct {
        const char *name;
        unsigned n_args;
} kinds[] = {
        [KIND_FLOOR] = { "floor", 1 },
        [KIND_PEER] = { "peer", 0 },
        [KIND_POLKIT] = { "polkit", 1 },
        [KIND_KERNEL] = { "kernel", 1 },
        [KIND_DIRECT] = { "direct", 1 },
        [KIND_GETINFO] = { "getinfo", 1 },
        [KIND_ALLOC] = { "alloc", 2 },
        [KIND_ACQMEM] = { "acqmem", 3 },
        [KIND_ACQ2] = { "acq2", 3 },
        [KIND_ACQ] = { "acq", 2 },
};

typedef struct Row {
        char *name;
        Kind kind;
        char *args[MAX_ARGS];
        uint64_t size;
        uint64_t *ns;
        size_t n;
        unsigned long max;      /* NAME@MAX=...: at most MAX samples, spread over the run */
        unsigned every;         /* so it runs in every every-th iteration only */
        char reason[256];
        bool dead;
} Row;

static char *reply_buf;
static sd_bus *bus;
static int pagemap_fd = -EBADF;

static uint64_t now_ns(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

/* fallocate(2): "EINTR  A signal was caught during execution"; on hugetlbfs a long
 * preallocation checks for pending signals between pages. The pages already allocated stay, so
 * calling it again for the same range finishes the job. */
static int fallocate_retry(int fd, uint64_t size) {
        while (fallocate(fd, 0, 0, (off_t) size) < 0)
                if (errno != EINTR)
                        return -errno;
        return 0;
}

/* --- Varlink over a UNIX socket, by hand -------------------------------------------------- */

static int unix_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        strcpy(sa.sun_path, path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                int e = -errno;
                close(fd);
                return e;
        }
        return fd;
}

static int send_all(int fd, const char *s, size_t n) {
        while (n > 0) {
                ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                s += k;
                n -= (size_t) k;
        }
        return 0;
}

/* Reads one NUL-terminated message into reply_buf; fds that came with it are appended to fds.
 * Stops at the first NUL: every request here expects exactly one reply. */
static int recv_message(int fd, int *fds, size_t *n_fds) {
        size_t len = 0;

        for (;;) {
                union {
                        struct cmsghdr h;
                        uint8_t buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
                } control;
                struct iovec iov = { reply_buf + len, REPLY_MAX - 1 - len };
                struct msghdr mh = {
                        .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = &control, .msg_controllen = sizeof(control),
                };
                ssize_t k;

                if (iov.iov_len == 0)
                        return -EMSGSIZE;
                k = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                size_t m = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                const int *in = (const int *) CMSG_DATA(c);
                                for (size_t i = 0; i < m; i++) {
                                        if (*n_fds < MAX_FDS)
                                                fds[(*n_fds)++] = in[i];
                                        else
                                                close(in[i]);
                                }
                        }
                if (k == 0)
                        return -ECONNRESET;
                if (memchr(reply_buf + len, 0, (size_t) k)) {
                        reply_buf[len + (size_t) k] = 0;
                        return 0;
                }
                len += (size_t) k;
        }
}

static void close_fds(int *fds, size_t *n_fds) {
        for (size_t i = 0; i < *n_fds; i++)
                close(fds[i]);
        *n_fds = 0;
}

/* One call on an open connection. A Varlink error reply is -EPROTO, with the reply kept in
 * reply_buf for the message. */
static int call(int fd, const char *request, int *fds, size_t *n_fds) {
        int r;

        r = send_all(fd, request, strlen(request) + 1);
        if (r < 0)
                return r;
        r = recv_message(fd, fds, n_fds);
        if (r < 0)
                return r;
        /* A successful reply of these methods has no "error" key anywhere (Varlink puts it at
         * the top level of an error reply, and no reply parameter here is named so). */
        if (strstr(reply_buf, "\"error\""))
                return -EPROTO;
        return 0;
}

/* "lease":"<id>" of an AcquireDevice reply. */
static int reply_lease(char *ret, size_t n) {
        const char *p = strstr(reply_buf, "\"lease\":");
        size_t l;

        if (!p)
                return -EBADMSG;
        p += strlen("\"lease\":");
        while (*p == ' ')
                p++;
        if (*p++ != '"')
                return -EBADMSG;
        l = strcspn(p, "\"");
        if (l == 0 || l >= n)
                return -EBADMSG;
        memcpy(ret, p, l);
        ret[l] = 0;
        return 0;
}

/* --- the rows ------------------------------------------------------------------------------ */

static int run_floor(Row *row, uint64_t *ns) {
        int fds[MAX_FDS];
        size_t n_fds = 0;
        uint64_t t0 = now_ns();
        int fd, r;

        fd = unix_connect(row->args[0]);
        if (fd < 0)
                return fd;
        r = call(fd, "{\"method\":\"org.varlink.service.GetInfo\"}", fds, &n_fds);
        if (r >= 0 && n_fds != 1)
                r = -EBADMSG;
        close_fds(fds, &n_fds);
        close(fd);
        *ns = now_ns() - t0;
        return r;
}

static int run_peer(Row *row, uint64_t *ns) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        sd_bus *b = NULL;
        const char *id;
        uint64_t t0 = now_ns();
        int r;

        /* sd_bus_open_system(): connect + SASL EXTERNAL (+ NEGOTIATE_UNIX_FD) + Hello. */
        r = sd_bus_open_system(&b);
        if (r >= 0)
                r = sd_bus_call_method(b, "org.freedesktop.DBus", "/org/freedesktop/DBus",
                                       "org.freedesktop.DBus", "GetId", &error, &reply, "");
        if (r >= 0)
                r = sd_bus_message_read(reply, "s", &id);
        sd_bus_message_unref(reply);
        sd_bus_flush_close_unref(b);
        *ns = now_ns() - t0;
        if (r < 0)
                (void) snprintf(row->reason, sizeof(row->reason), "GetId: %s", error.message ?: strerror(-r));
        sd_bus_error_free(&error);
        return r;
}

static int run_polkit(Row *row, uint64_t *ns) {
        _cleanup_close_ int pidfd = -EBADF;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        unsigned long long start_time;
        char s_size[32];
        int authorized = 0, challenge = 0, r;
        uint64_t t0;

        (void) snprintf(s_size, sizeof(s_size), "%" PRIu64, row->size);
        t0 = now_ns();
        /* The subject the daemon builds at accept: pid, start time, uid (int32), pidfd. */
        r = proc_get_starttime(getpid(), &start_time);
        if (r < 0)
                return r;
        pidfd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        r = sd_bus_call_method(bus, "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
                               "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization", &error, &reply,
                               "(sa{sv})sa{ss}us",
                               "unix-process", 4,
                               "pid", "u", (uint32_t) getpid(),
                               "start-time", "t", (uint64_t) start_time,
                               "uid", "i", (int32_t) getuid(),
                               "pidfd", "h", pidfd,
                               "io.noiommud.allocate-memory",
                               3, "size", s_size, "hugepage_size", "2097152", "numa_node", "any",
                               (uint32_t) 0, "bench");
        if (r >= 0)
                r = sd_bus_message_read(reply, "(bba{ss})", &authorized, &challenge, NULL);
        *ns = now_ns() - t0;
        sd_bus_message_unref(reply);
        if (r < 0)
                (void) snprintf(row->reason, sizeof(row->reason), "CheckAuthorization: %s",
                                error.message ?: strerror(-r));
        else if (!authorized) {
                (void) snprintf(row->reason, sizeof(row->reason), "CheckAuthorization: not authorized");
                r = -EACCES;
        }
        sd_bus_error_free(&error);
        return r;
}

static int run_kernel(Row *row, uint64_t *ns) {
        uint64_t t0 = now_ns();
        int fd, r;

        fd = memfd_create("bench", MFD_HUGETLB | MFD_HUGE_2MB | MFD_ALLOW_SEALING | MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        r = ftruncate(fd, (off_t) row->size) < 0 ? -errno : fallocate_retry(fd, row->size);
        *ns = now_ns() - t0;
        close(fd);
        return r;
}

static int run_direct(Row *row, uint64_t *ns) {
        struct io_uring_params p = {};
        uint64_t t0 = now_ns(), size = row->size, hp = 2ULL << 20, phys;
        struct iovec iov[1024];
        size_t n_iov = 0;
        void *addr = MAP_FAILED;
        int fd, ring = -EBADF, r = 0;

        fd = memfd_create("bench", MFD_HUGETLB | MFD_HUGE_2MB | MFD_ALLOW_SEALING | MFD_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (ftruncate(fd, (off_t) size) < 0)
                r = -errno;
        if (r >= 0)
                r = fallocate_retry(fd, size);
        if (r >= 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
                r = -errno;
        if (r >= 0) {
                addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
                if (addr == MAP_FAILED)
                        r = -errno;
        }
        if (r >= 0) {
                for (uint64_t off = 0; off < size && n_iov < ELEMENTSOF(iov); off += 1ULL << 30)
                        iov[n_iov++] = (struct iovec) { (uint8_t *) addr + off, (size_t) MIN(1ULL << 30, size - off) };
                ring = (int) syscall(__NR_io_uring_setup, 1, &p);
                if (ring < 0 || syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, iov, (unsigned) n_iov) < 0)
                        r = -errno;
        }
        for (uint64_t off = 0; r >= 0 && off < size; off += hp)
                if (pread(pagemap_fd, &phys, sizeof(phys), (off_t) (((uintptr_t) addr + off) / 4096 * 8)) != sizeof(phys))
                        r = -EIO;
        *ns = now_ns() - t0;
        if (ring >= 0) {
                (void) syscall(__NR_io_uring_register, ring, IORING_UNREGISTER_BUFFERS, NULL, 0);
                close(ring);
        }
        if (addr != MAP_FAILED)
                (void) munmap(addr, size);
        close(fd);
        return r;
}

static void varlink_reason(Row *row, const char *what, int r) {
        if (r == -EPROTO)
                (void) snprintf(row->reason, sizeof(row->reason), "%s: daemon replied %.200s", what, reply_buf);
        else
                (void) snprintf(row->reason, sizeof(row->reason), "%s: %s", what, strerror(-r));
}

static int run_getinfo(Row *row, uint64_t *ns) {
        int fds[MAX_FDS];
        size_t n_fds = 0;
        uint64_t t0 = now_ns();
        int fd, r;

        fd = unix_connect(row->args[0]);
        if (fd < 0)
                return fd;
        r = call(fd, "{\"method\":\"org.varlink.service.GetInfo\"}", fds, &n_fds);
        close_fds(fds, &n_fds);
        close(fd);
        *ns = now_ns() - t0;
        if (r < 0)
                varlink_reason(row, "GetInfo", r);
        return r;
}

static int run_alloc(Row *row, uint64_t *ns) {
        char req[256];
        int fds[MAX_FDS];
        size_t n_fds = 0;
        uint64_t t0;
        int fd, r;

        (void) snprintf(req, sizeof(req),
                        "{\"method\":\"io.noiommud.Broker.AllocateMemory\",\"parameters\":{\"size\":%" PRIu64 "}}",
                        row->size);
        t0 = now_ns();
        fd = unix_connect(row->args[0]);
        if (fd < 0)
                return fd;
        r = call(fd, req, fds, &n_fds);
        if (r >= 0 && n_fds != 1)
                r = -EBADMSG;
        *ns = now_ns() - t0;
        if (r < 0)
                varlink_reason(row, "AllocateMemory", r);
        close_fds(fds, &n_fds);
        close(fd);
        return r;
}

/* Worth another try: DeviceBusy while the previous iteration's lease is torn down (a hang-up's
 * teardown is queued, manager.c). Nothing else: the InternalError once seen here on re-acquire
 * was the daemon's (openat2() RESOLVE_IN_ROOT answering EAGAIN after any rename on the machine,
 * now retried in inventory.c), and a failure is reported, never retried away. */
static bool busy(int r) {
        return r == -EPROTO && strstr(reply_buf, "DeviceBusy");
}

/* AcquireDevice with memory (acqmem: a device fd and a memfd), or without (acq: the device fd). */
static int run_acqmem(Row *row, uint64_t *ns) {
        bool with_memory = row->kind == KIND_ACQMEM;
        char req[512];
        int fds[MAX_FDS];
        size_t n_fds = 0;
        uint64_t t0;
        int fd, r;

        if (with_memory)
                (void) snprintf(req, sizeof(req),
                                "{\"method\":\"io.noiommud.Broker.AcquireDevice\",\"parameters\":"
                                "{\"device\":\"%s\",\"memory\":[{\"size\":%" PRIu64 "}]}}",
                                row->args[1], row->size);
        else
                (void) snprintf(req, sizeof(req),
                                "{\"method\":\"io.noiommud.Broker.AcquireDevice\",\"parameters\":"
                                "{\"device\":\"%s\"}}", row->args[1]);
        for (unsigned attempt = 0;; attempt++) {
                t0 = now_ns();
                fd = unix_connect(row->args[0]);
                if (fd < 0)
                        return fd;
                r = call(fd, req, fds, &n_fds);
                if (r >= 0 && n_fds != (with_memory ? 2u : 1u))
                        r = -EBADMSG;
                *ns = now_ns() - t0;
                close_fds(fds, &n_fds);
                close(fd);
                if (!busy(r) || attempt >= 2000)
                        break;
                (void) usleep(1000);
        }
        if (r < 0)
                varlink_reason(row, with_memory ? "AcquireDevice with memory" : "AcquireDevice", r);
        return r;
}

static int run_acq2(Row *row, uint64_t *ns) {
        char req[512], lease[128];
        int fds[MAX_FDS];
        size_t n_fds = 0;
        uint64_t t0;
        int fd, r;

        (void) snprintf(req, sizeof(req),
                        "{\"method\":\"io.noiommud.Broker.AcquireDevice\",\"parameters\":{\"device\":\"%s\"}}",
                        row->args[1]);
        for (unsigned attempt = 0;; attempt++) {
                t0 = now_ns();
                fd = unix_connect(row->args[0]);
                if (fd < 0)
                        return fd;
                r = call(fd, req, fds, &n_fds);
                if (r >= 0 && n_fds != 1)
                        r = -EBADMSG;
                if (r >= 0 || !busy(r) || attempt >= 2000)
                        break;
                close_fds(fds, &n_fds);
                close(fd);
                (void) usleep(1000);
        }
        if (r < 0) {
                varlink_reason(row, "AcquireDevice", r);
                goto finish;
        }
        r = reply_lease(lease, sizeof(lease));
        if (r < 0) {
                varlink_reason(row, "AcquireDevice reply", r);
                goto finish;
        }
        (void) snprintf(req, sizeof(req),
                        "{\"method\":\"io.noiommud.Broker.AllocateMemory\",\"parameters\":"
                        "{\"size\":%" PRIu64 ",\"lease\":\"%s\"}}", row->size, lease);
        r = call(fd, req, fds, &n_fds);
        if (r >= 0 && n_fds != 2)
                r = -EBADMSG;
        if (r < 0)
                varlink_reason(row, "AllocateMemory with lease", r);
finish:
        *ns = now_ns() - t0;
        close_fds(fds, &n_fds);
        close(fd);
        return r;
}

static int run_row(Row *row, uint64_t *ns) {
        switch (row->kind) {
        case KIND_FLOOR:   return run_floor(row, ns);
        case KIND_PEER:    return run_peer(row, ns);
        case KIND_POLKIT:  return run_polkit(row, ns);
        case KIND_KERNEL:  return run_kernel(row, ns);
        case KIND_DIRECT:  return run_direct(row, ns);
        case KIND_GETINFO: return run_getinfo(row, ns);
        case KIND_ALLOC:   return run_alloc(row, ns);
        case KIND_ACQMEM:  return run_acqmem(row, ns);
        case KIND_ACQ2:    return run_acq2(row, ns);
        case KIND_ACQ:     return run_acqmem(row, ns);
        default:           return -EINVAL;
        }
}

static int parse_row(char *spec, Row *row) {
        char *eq = strchr(spec, '='), *at, *kind, *save = NULL;
        unsigned long max;
        unsigned n = 0;
        size_t k;

        if (!eq)
                return -EINVAL;
        *eq = 0;
        row->name = spec;
        row->every = 1;
        at = strchr(spec, '@');
        if (at) {
                *at = 0;
                max = strtoul(at + 1, NULL, 10);
                if (max == 0)
                        return -EINVAL;
                row->max = max;
        }
        kind = strtok_r(eq + 1, ",", &save);
        if (!kind)
                return -EINVAL;
        for (k = 0; k < ELEMENTSOF(kinds); k++)
                if (streq(kinds[k].name, kind))
                        break;
        if (k == ELEMENTSOF(kinds))
                return -EINVAL;
        row->kind = (Kind) k;
        for (char *a; (a = strtok_r(NULL, ",", &save)); )
                if (n < MAX_ARGS)
                        row->args[n++] = a;
        if (n != kinds[k].n_args)
                return -EINVAL;
        /* The size is the last argument of the kinds that take one. */
        if (!(row->kind == KIND_FLOOR || row->kind == KIND_PEER || row->kind == KIND_GETINFO ||
              row->kind == KIND_ACQ) &&
            parse_size(row->args[n - 1], &row->size) < 0)
                return -EINVAL;
        return 0;
}

static int row_once(Row *row, uint64_t *ns) {
        int r;

        row->reason[0] = 0;
        r = run_row(row, ns);
        if (r < 0 && !row->reason[0])
                (void) snprintf(row->reason, sizeof(row->reason), "%s", strerror(-r));
        return r;
}

/* --- modes --------------------------------------------------------------------------------- */

static int serve(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char buf[65536];
        int lfd, payload;

        if (strlen(path) >= sizeof(sa.sun_path))
                return 2;
        strcpy(sa.sun_path, path);
        /* The fd handed out: a memfd, like the daemon's replies carry. */
        payload = memfd_create("floor", MFD_CLOEXEC);
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (payload < 0 || lfd < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ||
            listen(lfd, 128) < 0) {
                perror("floor server");
                return 1;
        }
        for (;;) {
                static const char reply[] = "{\"parameters\":{\"fd\":0}}";
                union {
                        struct cmsghdr h;
                        uint8_t buf[CMSG_SPACE(sizeof(int))];
                } control = {};
                struct iovec iov = { (void *) reply, sizeof(reply) };
                struct msghdr mh = {
                        .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = &control, .msg_controllen = sizeof(control),
                };
                struct cmsghdr *c;
                size_t len = 0;
                int fd;

                fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                        continue;
                for (;;) {
                        ssize_t k = read(fd, buf + len, sizeof(buf) - len);
                        if (k <= 0)
                                break;
                        len += (size_t) k;
                        if (memchr(buf + len - (size_t) k, 0, (size_t) k) || len == sizeof(buf))
                                break;
                }
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(c), &payload, sizeof(int));
                (void) sendmsg(fd, &mh, MSG_NOSIGNAL);
                close(fd);
        }
}

static int setup_rows(int argc, char *argv[], Row **ret, size_t n_iter) {
        Row *rows = calloc((size_t) argc, sizeof(Row));

        if (!rows)
                return -ENOMEM;
        for (int i = 0; i < argc; i++) {
                if (parse_row(argv[i], &rows[i]) < 0) {
                        fprintf(stderr, "bad row: %s\n", argv[i]);
                        return -EINVAL;
                }
                if (rows[i].max > 0 && rows[i].max < n_iter)
                        rows[i].every = (unsigned) ((n_iter + rows[i].max - 1) / rows[i].max);
                if (n_iter > 0) {
                        rows[i].ns = calloc(n_iter, sizeof(uint64_t));
                        if (!rows[i].ns)
                                return -ENOMEM;
                }
                if (rows[i].kind == KIND_POLKIT && !bus) {
                        int r = sd_bus_open_system(&bus);
                        if (r < 0) {
                                fprintf(stderr, "Cannot connect to the system bus: %s\n", strerror(-r));
                                return r;
                        }
                }
        }
        *ret = rows;
        return 0;
}

static void print_row(Row *row) {
        double p50, p99;

        if (row->dead)
                return;
        qsort(row->ns, row->n, sizeof(uint64_t), cmp_u64);
        p50 = (double) row->ns[row->n / 2] / 1000.0;
        p99 = (double) row->ns[MIN(row->n - 1, (size_t) ((double) row->n * 0.99))] / 1000.0;
        printf("ROW %s %.1f %.1f %zu\n", row->name, p50, p99, row->n);
}

int main(int argc, char *argv[]) {
        Row *rows = NULL;
        int r;

        reply_buf = malloc(REPLY_MAX);
        pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (!reply_buf || pagemap_fd < 0)
                return 1;

        if (argc == 3 && streq(argv[1], "serve"))
                return serve(argv[2]);

        if (argc >= 5 && streq(argv[1], "latency")) {
                int n = atoi(argv[2]), warm = atoi(argv[3]), n_rows = argc - 4;

                if (n <= 0 || warm < 0)
                        return 2;
                r = setup_rows(n_rows, argv + 4, &rows, (size_t) n);
                if (r < 0)
                        return 2;
                /* Warm-up: a row that fails here is not supported by this build (n/a). */
                for (int i = 0; i < MAX(warm, 1); i++)
                        for (int j = 0; j < n_rows; j++) {
                                uint64_t ns;
                                if (rows[j].dead)
                                        continue;
                                if (row_once(&rows[j], &ns) < 0) {
                                        printf("NA %s %s\n", rows[j].name, rows[j].reason);
                                        rows[j].dead = true;
                                }
                        }
                /* Interleaved: iteration i runs every row once, in turn. */
                for (int i = 0; i < n; i++)
                        for (int j = 0; j < n_rows; j++) {
                                if (rows[j].dead || i % rows[j].every != 0)
                                        continue;
                                if (row_once(&rows[j], &rows[j].ns[rows[j].n]) < 0) {
                                        printf("FAIL %s %d %s\n", rows[j].name, i, rows[j].reason);
                                        rows[j].dead = true;
                                        continue;
                                }
                                rows[j].n++;
                        }
                for (int j = 0; j < n_rows; j++)
                        print_row(&rows[j]);
                sd_bus_flush_close_unref(bus);
                return 0;
        }

        if (argc == 4 && streq(argv[1], "batch")) {
                int n = atoi(argv[2]);

                if (n <= 0)
                        return 2;
                r = setup_rows(1, argv + 3, &rows, 0);
                if (r < 0)
                        return 2;
                for (int i = 0; i < n; i++) {
                        uint64_t ns;
                        if (row_once(&rows[0], &ns) < 0) {
                                fprintf(stderr, "%s: request %d failed: %s\n", rows[0].name, i, rows[0].reason);
                                return 1;
                        }
                }
                sd_bus_flush_close_unref(bus);
                return 0;
        }

        fprintf(stderr,
                "Usage: bench-fastpath serve SOCKET\n"
                "       bench-fastpath latency ITERATIONS WARMUP NAME=KIND[,ARG...]...\n"
                "       bench-fastpath batch N NAME=KIND[,ARG...]\n");
        return 2;
}
