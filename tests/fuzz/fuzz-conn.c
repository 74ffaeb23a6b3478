/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the daemon's connection state machine, the way systemd's
 * src/fuzz/fuzz-varlink.c drives sd-varlink's server: the input is what a client writes on its
 * socket. A real Manager and a real Conn (conn.c: framing, one request at a time, reply queue,
 * protocol violations, deadlines) with the real dispatch.c and lease.c behind them serve one end
 * of a socketpair(AF_UNIX, SOCK_STREAM); this file is the client on the other end. It writes the
 * input in chunks of at most 143 bytes, runs the daemon's sd-event loop until it has nothing left
 * to do after each chunk, and reads and closes whatever comes back. The manager is given the fake
 * outside world of tests/fake-backend.c (polkit, hugepages, VFIO, sysfs, ids: daemon/backend.h),
 * which says what it answers; everything else is the daemon's own code, records (record.c)
 * included. Without $NOTIFY_SOCKET the fd store is disabled, so persist.c stores nothing.
 *
 * Each input is played four times, once for each way a connection ends:
 *   hang-up   the client closes its writing side (EOF for a daemon that reads), then the socket
 *             (a hang-up the daemon sees whatever it is doing); the daemon must forget it;
 *   timeout   time jumps to each deadline the connection arms, until it has none or is gone
 *             (request, idle, write, receipt, or the polkit backstop);
 *   stall     the same, with a client that never reads anything (replies and their fds stay
 *             in its socket: the write and receipt deadlines);
 *   shutdown  the daemon stops with the client still connected.
 * Time jumps by moving CLOCK_MONOTONIC forward for this thread only (clock_gettime() below
 * replaces libc's in this binary, for sd-event too), so the daemon's own deadline arithmetic
 * runs exactly as it would after the real wait.
 *
 * What counts as a failure besides a crash or a sanitizer report: a daemon event loop that does
 * not settle (a busy loop), a reply that is not a NUL-terminated JSON object with "parameters"
 * or "error", more fds on one reply than NOIOMMU_FDS_PER_REPLY_MAX, a connection that outlives
 * its client's hang-up, and any fd left open after the daemon is freed. Memory the daemon leaks
 * is found by LeakSanitizer, because everything is freed after every input.
 *
 * NOIOMMU_LOG_LEVEL=debug makes the daemon's diagnostics visible (they are off by default, for
 * speed); FUZZ_CONN_TRACE=1 prints the replies. Built with -Dfuzzing=true under clang as a real
 * fuzzer; otherwise fuzz-main.c replays the corpus in tests/fuzz/fuzz-conn/ as an ordinary test.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>
#include <systemd/sd-journal.h>

#include "client.h"
#include "dispatch.h"
#include "fake-backend.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "internal/wire.h"
#include "manager.h"
#include "noiommu/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* As fuzz-varlink.c: small writes make the daemon see requests split at every possible place. */
#define CHUNK_MAX 143
/* Loop iterations without the loop running dry before we call it a busy loop. One iteration
 * dispatches one event source; a 143-byte chunk holds at most a few dozen requests. */
#define SETTLE_ITERATIONS_MAX 100000U
/* Deadlines expired in a row before giving up on a connection that re-arms them. */
#define DEADLINES_MAX 8

/* Devices of fake-backend.c's inventory that may be handed out without an IOMMU. */
#define CONFIG "{ \"noiommuDevices\": [ \"0000:01:00.0\", \"0000:05:00.0\", \"0000:06:00.0\" ] }\n"

typedef enum Ending {
        ENDING_HANGUP,
        ENDING_TIMEOUT,
        ENDING_STALL,
        ENDING_SHUTDOWN,
        _ENDING_MAX,
        _ENDING_INVALID = -EINVAL,
} Ending;

typedef struct Peer {
        int fd;
        sd_event_source *source;
        WireBuffer in;                  /* the daemon's replies */
        bool eof;
} Peer;

#define fail(...)                                                                               \
        do {                                                                                    \
                fprintf(stderr, "fuzz-conn: " __VA_ARGS__);                                     \
                fputc('\n', stderr);                                                            \
                abort();                                                                        \
        } while (0)

/* How far this thread's monotonic clocks are ahead of the kernel's. Thread-local and zero
 * outside the time jumps, so libFuzzer's own timing (its alarm callback runs only on this thread,
 * and SIGALRM is blocked while the clock is ahead) never sees it. */
static __thread uint64_t clock_offset_usec;

int clock_gettime(clockid_t id, struct timespec *ts) {
        uint64_t t;

        if (syscall(SYS_clock_gettime, id, ts) < 0)
                return -1;
        if (clock_offset_usec == 0 ||
            (id != CLOCK_MONOTONIC && id != CLOCK_MONOTONIC_RAW && id != CLOCK_MONOTONIC_COARSE &&
             id != CLOCK_BOOTTIME))
                return 0;
        t = (uint64_t) ts->tv_sec * 1000000ULL + (uint64_t) ts->tv_nsec / 1000ULL + clock_offset_usec;
        ts->tv_sec = (time_t) (t / 1000000ULL);
        ts->tv_nsec = (long) (t % 1000000ULL) * 1000L;
        return 0;
}

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

static const char *config_path(void) {
        static char path[64];
        int fd;

        if (path[0])
                return path;

        /* The configuration lives in a memfd that stays open for the life of the process,
         * opened before the first fd count. */
        fd = memfd_create("fuzz-conn-config", MFD_CLOEXEC);
        if (fd < 0 || write(fd, CONFIG, strlen(CONFIG)) != (ssize_t) strlen(CONFIG))
                fail("cannot write the configuration: %m");
        (void) snprintf(path, sizeof(path), "/proc/self/fd/%i", fd);
        return path;
}

static unsigned count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        unsigned n = 0;

        if (!d)
                fail("cannot open /proc/self/fd: %m");
        while ((de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        (void) closedir(d);
        return n;                       /* includes the directory's own fd, on both sides */
}

/* Runs the loop until no event source is ready. */
static void settle(sd_event *e) {
        for (unsigned i = 0;; i++) {
                int r = sd_event_run(e, 0);

                if (r < 0)
                        fail("sd_event_run() failed: %s", strerror(-r));
                if (r == 0)
                        return;
                if (i >= SETTLE_ITERATIONS_MAX)
                        fail("the event loop does not settle (busy loop)");
        }
}

/* Each message the daemon writes must be a JSON object with "parameters" (an object) or "error"
 * (a string). */
static void check_reply(const char *buf, size_t len) {
        static int trace = -1;
        json_error_t err;
        json_t *msg, *v;

        if (trace < 0)
                trace = !!getenv("FUZZ_CONN_TRACE");
        if (trace)
                fprintf(stderr, "fuzz-conn: <- %.*s\n", (int) MIN(len, 300), buf);

        msg = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
        if (!msg)
                fail("the daemon wrote malformed JSON (%s): %.*s", err.text, (int) MIN(len, 512), buf);
        if (!json_is_object(msg))
                fail("the daemon wrote a message that is not an object: %.*s", (int) MIN(len, 512), buf);
        v = json_object_get(msg, "error");
        if (v && !json_is_string(v))
                fail("the daemon wrote an error that is not a string: %.*s", (int) MIN(len, 512), buf);
        v = json_object_get(msg, "parameters");
        if (!v && !json_object_get(msg, "error"))
                fail("the daemon wrote a reply without parameters or error: %.*s", (int) MIN(len, 512), buf);
        if (v && !json_is_object(v))
                fail("the daemon wrote parameters that are not an object: %.*s", (int) MIN(len, 512), buf);
        json_decref(msg);
}

static int on_client_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Peer *cl = userdata;
        int fds[NOIOMMU_FDS_PER_REPLY_MAX];
        size_t space, n_fds = 0;
        ssize_t n, len;
        char *p;

        p = wire_buffer_space(&cl->in, 4096, &space);
        if (!p)
                fail("the daemon wrote more than NOIOMMU_REPLY_SIZE_MAX bytes without a NUL");

        /* Room for exactly the most fds a reply may carry: more are truncated (-EXFULL). */
        n = wire_recv_fds(fd, p, space, fds, ELEMENTSOF(fds), &n_fds);
        close_many(fds, n_fds);
        if (n == -EAGAIN || n == -EINTR)
                return 0;
        if (n == -EXFULL)
                fail("the daemon sent more than %u fds with one reply", NOIOMMU_FDS_PER_REPLY_MAX);
        if (n <= 0) {
                /* EOF or ECONNRESET: the daemon closed the connection. */
                cl->eof = true;
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        }

        cl->in.n += (size_t) n;
        while ((len = wire_buffer_message(&cl->in)) >= 0) {
                check_reply(cl->in.data, (size_t) len);
                wire_buffer_consume(&cl->in, (size_t) len + 1);
        }
        return 0;
}

/* Writes the input in small chunks and lets the daemon work after each. */
static void peer_write(Peer *cl, sd_event *e, const uint8_t *data, size_t size) {
        size_t off = 0;
        bool full = false;

        while (off < size && !cl->eof) {
                ssize_t n = send(cl->fd, data + off, MIN(size - off, (size_t) CHUNK_MAX),
                                 MSG_NOSIGNAL | MSG_DONTWAIT);

                if (n < 0) {
                        if (errno == EPIPE || errno == ECONNRESET)
                                return;         /* the daemon closed the connection */
                        if (errno != EAGAIN)
                                fail("send() failed: %m");
                        /* The socket is full: the daemon reads one request at a time and is
                         * busy with one (a polkit check that never ends, say). If it still
                         * does not read after its loop ran dry, the client stops writing. */
                        if (full)
                                return;
                        full = true;
                } else {
                        off += (size_t) n;
                        full = false;
                }
                settle(e);
        }
}

/* Lets time pass until the connection has no deadline armed or is gone. */
static void expire_deadlines(Manager *m) {
        sigset_t alarm;

        (void) sigemptyset(&alarm);
        (void) sigaddset(&alarm, SIGALRM);
        if (sigprocmask(SIG_BLOCK, &alarm, NULL) < 0)
                fail("sigprocmask() failed: %m");

        for (unsigned i = 0; i < DEADLINES_MAX && m->clients; i++) {
                int enabled = SD_EVENT_OFF;
                uint64_t deadline, now;

                if (sd_event_source_get_enabled(m->clients->conn->timer_source, &enabled) < 0 ||
                    enabled == SD_EVENT_OFF)
                        break;
                if (sd_event_source_get_time(m->clients->conn->timer_source, &deadline) < 0)
                        fail("sd_event_source_get_time() failed");
                now = now_usec();
                if (deadline > now)
                        clock_offset_usec += deadline - now;
                settle(m->event);
        }
}

static void run(const uint8_t *data, size_t size, Ending ending) {
        Manager *m = NULL;
        Peer cl = { .fd = -EBADF };
        sigset_t saved;
        int pair[2], r;
        Client *c;

        /* manager_new() blocks SIGTERM and SIGINT for its signalfd; give them back afterwards,
         * so that libFuzzer can still be interrupted. */
        if (sigprocmask(SIG_SETMASK, NULL, &saved) < 0)
                fail("sigprocmask() failed: %m");

        fake_backend_reset();
        r = manager_new(config_path(), &fake_backend, dispatch_current, &m);
        if (r < 0)
                fail("manager_new() failed: %s", strerror(-r));

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) < 0)
                fail("socketpair() failed: %m");
        /* The daemon end is what accept4() would have returned. */
        r = client_new(&m->client_ctx, pair[0], &c);
        if (r < 0)
                fail("client_new() failed: %s", strerror(-r));
        cl.fd = pair[1];
        wire_buffer_init(&cl.in, NOIOMMU_REPLY_SIZE_MAX);
        if (ending != ENDING_STALL) {
                r = sd_event_add_io(m->event, &cl.source, cl.fd, EPOLLIN, on_client_io, &cl);
                if (r < 0)
                        fail("sd_event_add_io() failed: %s", strerror(-r));
        }

        peer_write(&cl, m->event, data, size);
        settle(m->event);

        switch (ending) {
        case ENDING_HANGUP:
                (void) shutdown(cl.fd, SHUT_WR);
                settle(m->event);
                cl.source = sd_event_source_disable_unref(cl.source);
                cl.fd = safe_close(cl.fd);
                settle(m->event);
                if (m->n_conns != 0)
                        fail("the connection outlived its client's hang-up");
                break;

        case ENDING_TIMEOUT:
        case ENDING_STALL:
                expire_deadlines(m);
                break;

        case ENDING_SHUTDOWN:
        case _ENDING_MAX:
        case _ENDING_INVALID:
        default:
                break;
        }

        cl.source = sd_event_source_disable_unref(cl.source);
        m = manager_free(m);
        cl.fd = safe_close(cl.fd);
        wire_buffer_done(&cl.in);

        clock_offset_usec = 0;
        if (sigprocmask(SIG_SETMASK, &saved, NULL) < 0)
                fail("sigprocmask() failed: %m");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool initialized = false;
        unsigned fds_before, fds_after;
        bool only_hangup;

        if (!initialized) {
                /* Quiet unless $NOIOMMU_LOG_LEVEL asks otherwise: record.c mirrors its records to
                 * the log without journald, a quarantine at LOG_CRIT. */
                log_set_max_level(LOG_ALERT);
                log_setup("fuzz-conn", LOG_TARGET_STDERR);
                (void) config_path();
                /* libsystemd opens one datagram socket for all journal writes at the first one
                 * and keeps it for the life of the process (journal_fd() in journal-send.c),
                 * whether or not journald listens: open it now, before the first fd count.
                 * Without journald (the test machines) this record, like record.c's, goes
                 * nowhere. */
                (void) sd_journal_send("MESSAGE=fuzz-conn: replaying inputs", "PRIORITY=%i", LOG_DEBUG,
                                       "SYSLOG_IDENTIFIER=fuzz-conn", NULL);
                initialized = true;
        }

        fds_before = count_fds();
        /* scripts/dev/cross-file-calls.py plays one ending only: the client's hang-up. */
        only_hangup = getenv("FUZZ_CONN_ONLY_HANGUP");
        for (Ending e = 0; e < _ENDING_MAX; e++)
                if (!only_hangup || e == ENDING_HANGUP)
                        run(data, size, e);
        fds_after = count_fds();
        if (fds_after != fds_before)
                fail("%u fds open before the input, %u after", fds_before, fds_after);
        return 0;
}
