/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See reexec.h. Trusts its own previous image only: the state memfd must be a sealed memfd of
 * ours, and every fd number it names is checked for the kind persist.c expects before use.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-id128.h>

#include "record.h"
#include "client.h"
#include "fdstore.h"
#include "internal/fd-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "lease.h"
#include "manager.h"
#include "persist.h"
#include "reexec.h"
#include "vfio.h"

#define REEXEC_STATE_SIZE_MAX (256U << 20)

extern char **environ;

static char *exe_path;
static char **saved_argv;

typedef struct Kept {
        int *fds;
        size_t n, allocated;
} Kept;

static uint64_t now_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000ULL + (uint64_t) ts.tv_nsec / 1000ULL;
}

/* Keeps fd open across execve(); remembered so that a failed execve() can undo it. */
static int keep_fd(int fd, void *userdata) {
        Kept *k = userdata;

        if (fd < 0)
                return -EBADF;
        if (k->n == k->allocated) {
                size_t a = k->allocated ? k->allocated * 2 : 64;
                int *p = realloc(k->fds, a * sizeof(int));

                if (!p)
                        return -ENOMEM;
                k->fds = p;
                k->allocated = a;
        }
        if (fcntl(fd, F_SETFD, 0) < 0)
                return negative_errno();
        k->fds[k->n++] = fd;
        return 0;
}

static void kept_undo(Kept *k) {
        for (size_t i = 0; i < k->n; i++)
                (void) fcntl(k->fds[i], F_SETFD, FD_CLOEXEC);
        free(k->fds);
        k->fds = NULL;
        k->n = k->allocated = 0;
}

static int add_named(json_t *fds, Kept *k, const char *name, int fd) {
        int r;

        if (fd < 0)
                return 0;
        r = keep_fd(fd, k);
        if (r < 0)
                return r;
        if (json_array_append_new(fds, json_pack("{s:s, s:i}", "name", name, "fd", fd)) < 0)
                return -ENOMEM;
        return 0;
}

static int add_region(json_t *fds, Kept *k, const Region *r) {
        char name[64];
        int q;

        (void) snprintf(name, sizeof(name), "mem-%s", region_id(r));
        q = add_named(fds, k, name, r->huge->memfd);
        if (q < 0)
                return q;
        (void) snprintf(name, sizeof(name), "pin-%s", region_id(r));
        return add_named(fds, k, name, r->huge->pin_fd);
}

static int add_lease(json_t *fds, Kept *k, const Lease *l) {
        char name[64];
        int f[4], r;

        /* One name for all of them, as in the fd store: persist.c tells them apart. */
        (void) snprintf(name, sizeof(name), "lease-%s", l->id);
        l->registry->backend->device.get_fds(l->vfio, &f[0], &f[1], &f[2], &f[3]);
        for (size_t i = 0; i < ELEMENTSOF(f); i++) {
                r = add_named(fds, k, name, f[i]);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < l->n_regions; i++) {
                r = add_region(fds, k, l->regions[i]);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < l->n_adopted; i++) {
                r = add_region(fds, k, l->adopted[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Everything the new image needs, with every fd it names kept open. */
static json_t *describe(Manager *m, Kept *k, json_t *transient, uint64_t start) {
        _cleanup_(json_decrefp) json_t *fds = json_array(), *conns = json_object();
        _cleanup_close_ int state_fd = -EBADF;
        struct stat st = {};
        int r = 0;

        if (!fds || !conns)
                return NULL;

        for (Client *c = m->clients; r >= 0 && c; c = c->next) {
                char name[64];
                json_t *j;

                j = client_reexec_save(c, keep_fd, k);
                if (!j || json_object_set_new(conns, c->store_id, j) < 0)
                        return NULL;
                (void) snprintf(name, sizeof(name), "conn-%s", c->store_id);
                r = add_named(fds, k, name, c->conn->fd);
                for (size_t i = 0; r >= 0 && i < c->n_regions; i++)
                        r = add_region(fds, k, c->regions[i]);
        }
        for (Lease *l = m->lease_registry.leases; r >= 0 && l; l = l->next)
                if (l->state == LEASE_ACTIVE || l->state == LEASE_QUARANTINED)
                        r = add_lease(fds, k, l);
        if (r < 0)
                return NULL;

        /* After conn_reexec_save(): no reservation is left that the state cannot describe. */
        state_fd = persist_state_memfd(&m->persist);
        if (state_fd < 0 || add_named(fds, k, "state-reexec", state_fd) < 0)
                return NULL;
        if (keep_fd(m->listen_fd, k) < 0)
                return NULL;
        if (m->listen_path && lstat(m->listen_path, &st) < 0)
                st = (struct stat) {};

        json_t *j = json_pack("{s:i, s:O, s:O, s:O, s:i, s:s?, s:I, s:I, s:s, s:I, s:I}",
                              "version", 1,
                              "fds", fds,
                              "conns", conns,
                              "transient", transient,
                              "listen", m->listen_fd,
                              "listenPath", m->listen_path,
                              "listenDev", (json_int_t) m->listen_dev,
                              "listenIno", (json_int_t) m->listen_ino,
                              "listenDescription", m->listen_description,
                              "reloadStartUsec", (json_int_t) start,
                              "reloads", (json_int_t) m->n_reloads);
        /* The state memfd is kept open by the number in fds: this process needs no copy, but
         * the failure path closes it. */
        if (j)
                TAKE_FD(state_fd);
        return j;
}

static void close_state_fd(json_t *j) {
        json_t *e;
        size_t i;

        json_array_foreach(json_object_get(j, "fds"), i, e)
                if (streq(json_string_value(json_object_get(e, "name")) ?: "", "state-reexec"))
                        (void) close((int) json_integer_value(json_object_get(e, "fd")));
}

static void reexec_now(Manager *m) {
        _cleanup_(json_decrefp) json_t *transient = json_array(), *j = NULL;
        _cleanup_close_ int fd = -EBADF;
        uint64_t start = now_usec();
        Kept k = {};
        char num[32];
        int r;

        manager_flush_closing(m);       /* connections that already ended are not handed over */
        (void) sd_notifyf(false, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=Re-executing %s with %u connections.",
                          start, exe_path, m->n_conns);

        /* Replies held for the write-ahead go out (or their connections end) now, in this
         * image, which knows why they are held. */
        persist_flush(&m->persist);

        /* Connections that were never stored (no grant yet, or no fd store) get an id for this
         * hand-over only, so that the state can name them; the new image forgets it again. */
        for (Client *c = m->clients; transient && c; c = c->next) {
                sd_id128_t id;

                if (c->store_id[0])
                        continue;
                if (m->backend->random_id(&id) < 0 ||
                    json_array_append_new(transient, json_string(sd_id128_to_string(id, c->store_id))) < 0) {
                        json_decref(transient);
                        transient = NULL;
                        break;
                }
        }

        j = transient ? describe(m, &k, transient, start) : NULL;
        if (!j)
                r = -ENOMEM;
        else {
                fd = persist_json_memfd(j, "noiommud_reexec");
                r = fd < 0 ? fd : keep_fd(fd, &k);
        }
        if (r >= 0) {
                (void) snprintf(num, sizeof(num), "%i", fd);
                if (setenv(NOIOMMUD_REEXEC_FD_ENV, num, 1) < 0)
                        r = negative_errno();
        }
        if (r >= 0) {
                log_info("Re-executing %s with %u connections and their leases.", exe_path, m->n_conns);
                /* The pool's regions are nobody's and not in the state: freed, its worker joined
                 * (pool.h); the new image fills its own. */
                m->pool = pool_free(m->pool);
                (void) execve(exe_path, saved_argv, environ);
                r = negative_errno();
                (void) manager_start_pool(m);
        }

        /* Still here: nothing was lost, the old image carries on as if no SIGHUP had come. */
        log_error_errno(r, "Failed to re-execute '%s', continuing in the running process: %m", exe_path);
        (void) unsetenv(NOIOMMUD_REEXEC_FD_ENV);
        if (j)
                close_state_fd(j);
        kept_undo(&k);
        for (Client *c = m->clients; c; c = c->next) {
                json_t *e;
                size_t i;

                json_array_foreach(transient, i, e)
                        if (streq(c->store_id, json_string_value(e)))
                                c->store_id[0] = 0;
                conn_reexec_resume(c->conn);
        }
        (void) sd_notifyf(false, "READY=1\nSTATUS=Re-executing failed (%s), still serving.", strerror(-r));
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        reexec_now(userdata);
        return 0;
}

int reexec_setup(Manager *m, char **argv) {
        char buf[PATH_MAX];
        ssize_t n;

        n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
        if (n < 0)
                return log_error_errno(errno, "Cannot resolve /proc/self/exe: %m");
        buf[n] = 0;
        exe_path = strdup(buf);
        if (!exe_path)
                return -ENOMEM;
        saved_argv = argv;

        /* SIGHUP was blocked at the top of main(), so one arriving before this was kept. */
        return sd_event_add_signal(m->event, NULL, SIGHUP, on_sighup, m);
}

int reexec_pending(int *ret_fd) {
        const char *e = getenv(NOIOMMUD_REEXEC_FD_ENV);
        char path[64], target[64];
        int fd, seals;
        ssize_t n;

        if (!e)
                return 0;
        fd = atoi(e);
        (void) unsetenv(NOIOMMUD_REEXEC_FD_ENV);
        /* Only a sealed memfd of our own previous image is taken. */
        (void) snprintf(path, sizeof(path), "/proc/self/fd/%i", fd);
        n = readlink(path, target, sizeof(target) - 1);
        if (fd < 3 || n < 0)
                return log_error_errno(EBADF, "$" NOIOMMUD_REEXEC_FD_ENV " names no open fd, ignoring it.");
        target[n] = 0;
        seals = fcntl(fd, F_GET_SEALS);
        if (strncmp(target, "/memfd:noiommud_reexec", strlen("/memfd:noiommud_reexec")) != 0 || seals < 0 || !(seals & F_SEAL_WRITE))
                return log_error_errno(EBADF, "$" NOIOMMUD_REEXEC_FD_ENV " names %s, not a sealed state memfd, ignoring it.",
                                       target);
        (void) fcntl(fd, F_SETFD, FD_CLOEXEC);
        *ret_fd = fd;
        return 1;
}

static json_t *read_json(int fd) {
        _cleanup_free_ char *buf = NULL;
        json_error_t err;
        struct stat st;

        if (fstat(fd, &st) < 0 || st.st_size <= 0 || (uint64_t) st.st_size > REEXEC_STATE_SIZE_MAX)
                return NULL;
        buf = malloc((size_t) st.st_size);
        if (!buf || pread(fd, buf, (size_t) st.st_size, 0) != st.st_size)
                return NULL;
        return json_loadb(buf, (size_t) st.st_size, JSON_REJECT_DUPLICATES, &err);
}

int reexec_restore(Manager *m, int state_fd) {
        _cleanup_(json_decrefp) json_t *j = NULL;
        _cleanup_free_ int *fds = NULL;
        _cleanup_free_ const char **names = NULL;
        json_t *e, *conns;
        size_t i, n = 0;
        const char *path;
        int listen_fd, r;

        j = read_json(state_fd);
        state_fd = safe_close(state_fd);
        if (!j || json_integer_value(json_object_get(j, "version")) != 1)
                return log_error_errno(EBADMSG, "The previous image's state is unreadable; cannot continue its leases.");

        listen_fd = (int) json_integer_value(json_object_get(j, "listen"));
        if (listen_fd < 3 || sd_is_socket_unix(listen_fd, SOCK_STREAM, /* listening= */ 1, NULL, 0) <= 0)
                return log_error_errno(EBADF, "The previous image passed no listening socket.");
        (void) fcntl(listen_fd, F_SETFD, FD_CLOEXEC);
        m->listen_fd = listen_fd;
        (void) snprintf(m->listen_description, sizeof(m->listen_description), "%s",
                        json_string_value(json_object_get(j, "listenDescription")) ?: "the inherited socket");
        path = json_string_value(json_object_get(j, "listenPath"));
        if (path) {
                m->listen_path = strdup(path);
                if (!m->listen_path)
                        return -ENOMEM;
                m->listen_dev = (dev_t) json_integer_value(json_object_get(j, "listenDev"));
                m->listen_ino = (ino_t) json_integer_value(json_object_get(j, "listenIno"));
        }
        m->reload_start_usec = (uint64_t) json_integer_value(json_object_get(j, "reloadStartUsec"));
        m->n_reloads = (unsigned) json_integer_value(json_object_get(j, "reloads")) + 1;
        r = manager_watch_listen(m);
        if (r < 0)
                return r;

        fds = new0(int, json_array_size(json_object_get(j, "fds")) + 1);
        names = new0(const char *, json_array_size(json_object_get(j, "fds")) + 1);
        if (!fds || !names)
                return -ENOMEM;
        json_array_foreach(json_object_get(j, "fds"), i, e) {
                const char *name = json_string_value(json_object_get(e, "name"));
                int fd = (int) json_integer_value(json_object_get(e, "fd"));

                /* persist.c checks each fd's kind before trusting it. */
                if (!name || fd < 3 || fd == listen_fd || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
                        log_warning("The previous image's fd '%s' is not open, ignoring it.", name ?: "?");
                        continue;
                }
                fds[n] = fd;
                names[n] = name;
                n++;
        }
        log_info("Re-executed: restoring %zu file descriptors handed over by the previous image.", n);
        persist_restore_nosave(&m->persist, fds, (char **) names, n);

        conns = json_object_get(j, "conns");
        for (Client *c = m->clients, *next; c; c = next) {
                json_t *cj = json_object_get(conns, c->store_id);

                next = c->next;
                if (!cj)
                        continue;
                r = conn_reexec_load(c->conn, cj);
                if (r < 0) {
                        log_error_errno(r, "Cannot take over the requests of UID %u (PID %i), ending the connection: %m",
                                        (unsigned) c->id.uid, (int) c->id.pid);
                        (void) client_free(c, "client-exit");
                }
        }
        json_array_foreach(json_object_get(j, "transient"), i, e)
                for (Client *c = m->clients; c; c = c->next)
                        if (streq(c->store_id, json_string_value(e) ?: ""))
                                c->store_id[0] = 0;

        /* The fd store still holds the previous image's fds under the same names; the new
         * state replaces the old one, so a later crash restores from here. */
        (void) persist_save(&m->persist);
        return 0;
}
