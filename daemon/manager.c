/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See manager.h: the process, its listening socket and limits, and the wiring of the upward
 * tables (layer 5).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/epoll.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "record.h"
#include "client.h"
#include "hugepage.h"
#include "internal/fd-util.h"
#include "internal/log.h"
#include "internal/wire.h"
#include "internal/macro.h"
#include "fdstore.h"
#include "inventory.h"
#include "lease.h"
#include "manager.h"
#include "monitor.h"
#include "persist.h"
#include "noiommu/protocol.h"
#include "polkit.h"

struct UidCount {
        UidCount *next;
        uid_t uid;
        unsigned n;
        Client *clients;                /* this uid's clients, by Client.uid_next */
};

static UidCount **uid_bucket(Manager *m, uid_t uid) {
        return &m->uid_counts[(uid * 2654435761U) % ELEMENTSOF(m->uid_counts)];
}

static UidCount *uid_find(Manager *m, uid_t uid) {
        for (UidCount *u = *uid_bucket(m, uid); u; u = u->next)
                if (u->uid == uid)
                        return u;
        return NULL;
}

unsigned manager_conns_for_uid(Manager *m, uid_t uid) {
        UidCount *u = uid_find(m, uid);

        return u ? u->n : 0;
}

static void client_memory(const Client *c, unsigned *n_regions, uint64_t *bytes) {
        unsigned n = 0;
        uint64_t b = 0;

        for (size_t i = 0; i < c->n_regions; i++) {
                n++;
                b += region_size(c->regions[i]);
        }
        for (size_t i = 0; i < c->n_leases; i++) {
                const Lease *l = c->leases[i];

                for (size_t j = 0; j < l->n_regions; j++) {
                        n++;
                        b += region_size(l->regions[j]);
                }
                for (size_t j = 0; j < l->n_adopted; j++) {
                        n++;
                        b += region_size(l->adopted[j]);
                }
        }
        *n_regions += n;
        *bytes += b;
}

void manager_usage_for_key(Manager *m, const char *key, uint64_t *ret_bytes, unsigned *ret_leases) {
        uint64_t bytes = 0;
        unsigned leases = 0, n = 0;
        char buf[CLIENT_CGROUP_MAX + 16];

        /* A walk over all connections: per-container limits are checked once per allocation
         * or acquire, and keys are not worth a second index next to the per-uid one. */
        for (Client *c = m->clients; c; c = c->next) {
                const char *k = client_identity_limit_key(&c->id, buf, sizeof(buf));

                if (!k || !streq(k, key))
                        continue;
                client_memory(c, &n, &bytes);
                leases += (unsigned) c->n_leases + (c->pending_lease ? 1U : 0U);
        }
        *ret_bytes = bytes;
        *ret_leases = leases;
}

/* ClientContext.added: the lists and per-uid counts the accept limits use. */
static int manager_client_added(Client *c, void *userdata) {
        Manager *m = userdata;
        UidCount **b = uid_bucket(m, c->id.uid), *u;

        for (u = *b; u; u = u->next)
                if (u->uid == c->id.uid)
                        break;
        if (!u) {
                u = new0(UidCount, 1);
                if (!u)
                        return -ENOMEM;
                u->uid = c->id.uid;
                u->next = *b;
                *b = u;
        }
        u->n++;
        c->uid_next = u->clients;
        if (u->clients)
                u->clients->uid_prev = c;
        u->clients = c;

        c->next = m->clients;
        if (m->clients)
                m->clients->prev = c;
        m->clients = c;
        m->n_conns++;
        return 0;
}

/* glibc returns freed memory to the kernel only from the top of the main heap (M_TRIM_THRESHOLD,
 * 128 KiB) and from mmap()ed chunks; the ~3 KiB a connection costs (Client, Conn, sd-event
 * sources, jansson's request) are small chunks spread over the heap, so after 1,000 connections
 * closed RSS stayed at 5.8 MiB against 3.4 at start. malloc_trim(0) also madvise(MADV_DONTNEED)s
 * the free pages inside the heap (glibc >= 2.8, mtrim()). It walks every free chunk, so it runs
 * from a timer at idle priority, once per NOIOMMU_TRIM_DELAY_USEC at most, not per close. */
static int on_trim(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) malloc_trim(0);
        return 0;
}

static void manager_schedule_trim(Manager *m) {
        uint64_t now;
        int enabled = SD_EVENT_OFF;

        if (m->trim_source) {
                (void) sd_event_source_get_enabled(m->trim_source, &enabled);
                if (enabled != SD_EVENT_OFF)
                        return;                 /* already due: this close is included */
        }
        if (sd_event_now(m->event, CLOCK_MONOTONIC, &now) < 0)
                return;
        if (!m->trim_source) {
                if (sd_event_add_time(m->event, &m->trim_source, CLOCK_MONOTONIC, now + NOIOMMU_TRIM_DELAY_USEC,
                                      NOIOMMU_TRIM_DELAY_USEC / 4, on_trim, m) < 0)
                        return;                 /* only memory not given back: nothing fails */
                (void) sd_event_source_set_priority(m->trim_source, SD_EVENT_PRIORITY_IDLE);
                (void) sd_event_source_set_description(m->trim_source, "malloc-trim");
        } else
                (void) sd_event_source_set_time(m->trim_source, now + NOIOMMU_TRIM_DELAY_USEC);
        (void) sd_event_source_set_enabled(m->trim_source, SD_EVENT_ONESHOT);
}

static void closing_unlink(Manager *m, Client *c) {
        if (c->close_prev)
                c->close_prev->close_next = c->close_next;
        else
                m->closing_head = c->close_next;
        if (c->close_next)
                c->close_next->close_prev = c->close_prev;
        else
                m->closing_tail = c->close_prev;
        c->close_next = c->close_prev = NULL;
        c->close_queued = false;
}

static int on_close_batch(sd_event_source *s, void *userdata) {
        Manager *m = userdata;

        for (unsigned i = 0; i < NOIOMMU_CLOSE_BATCH && m->closing_head; i++)
                (void) client_free(m->closing_head, m->closing_head->close_reason);   /* unlinks it */
        /* More: again on a later iteration, behind what became ready meanwhile (sd-event
         * dispatches sources of one priority oldest-pending first). */
        if (m->closing_head)
                (void) sd_event_source_set_enabled(m->close_source, SD_EVENT_ONESHOT);
        return 0;
}

/* ClientContext.closing: a connection ended; its teardown is queued (NOIOMMU_CLOSE_BATCH). */
static void manager_client_closing(Client *c, const char *reason, void *userdata) {
        Manager *m = userdata;

        assert(!c->close_queued);
        if (!m->close_source) {
                if (sd_event_add_defer(m->event, &m->close_source, on_close_batch, m) < 0) {
                        (void) client_free(c, reason);  /* no queue: at once, as before */
                        return;
                }
                (void) sd_event_source_set_description(m->close_source, "close-batch");
        }
        c->close_reason = reason;
        c->close_queued = true;
        c->close_prev = m->closing_tail;
        if (m->closing_tail)
                m->closing_tail->close_next = c;
        else
                m->closing_head = c;
        m->closing_tail = c;
        (void) sd_event_source_set_enabled(m->close_source, SD_EVENT_ONESHOT);
}

void manager_flush_closing(Manager *m) {
        while (m->closing_head)
                (void) client_free(m->closing_head, m->closing_head->close_reason);
}

static int on_resume_accepting(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (!m->accept_paused)
                return 0;
        m->accept_paused = false;
        if (!m->accept_limited)
                (void) sd_event_source_set_enabled(m->listen_source, SD_EVENT_ON);
        return 0;
}

static void manager_client_removed(Client *c, void *userdata) {
        Manager *m = userdata;
        UidCount **b = uid_bucket(m, c->id.uid);

        if (c->close_queued)
                closing_unlink(m, c);

        for (UidCount **p = b; *p; p = &(*p)->next)
                if ((*p)->uid == c->id.uid) {
                        if (c->uid_prev)
                                c->uid_prev->uid_next = c->uid_next;
                        else
                                (*p)->clients = c->uid_next;
                        if (c->uid_next)
                                c->uid_next->uid_prev = c->uid_prev;
                        if (--(*p)->n == 0) {
                                UidCount *dead = *p;
                                *p = dead->next;
                                free(dead);
                        }
                        break;
                }

        if (c->prev)
                c->prev->next = c->next;
        else if (m->clients == c)
                m->clients = c->next;
        if (c->next)
                c->next->prev = c->prev;
        m->n_conns--;
        manager_schedule_trim(m);

        /* Fds were freed: accept again if EMFILE had paused us. Not at once: the listening
         * socket is served ahead of established connections (NOIOMMU_PRIORITY_NEW), and
         * resumed after each single close it would take the two fds just freed, fail on the
         * third that reading the identity needs, and refuse that client, once per close
         * (test-flood's EMFILE subtest saw 13 refusals for 20 closes under ASan). A short
         * delay lets the closes of a burst add up first. */
        if (m->accept_paused) {
                int enabled = SD_EVENT_OFF;
                uint64_t now;

                if (m->resume_source)
                        (void) sd_event_source_get_enabled(m->resume_source, &enabled);
                if (enabled != SD_EVENT_OFF)
                        return;
                if (sd_event_now(m->event, CLOCK_MONOTONIC, &now) < 0)
                        now = 0;
                if (!m->resume_source &&
                    sd_event_add_time(m->event, &m->resume_source, CLOCK_MONOTONIC, now + NOIOMMU_ACCEPT_RESUME_USEC,
                                      1, on_resume_accepting, m) < 0) {
                        (void) on_resume_accepting(NULL, 0, m);
                        return;
                }
                (void) sd_event_source_set_time(m->resume_source, now + NOIOMMU_ACCEPT_RESUME_USEC);
                (void) sd_event_source_set_enabled(m->resume_source, SD_EVENT_ONESHOT);
        }
}

/* Refuses a connection over a limit with a best-effort error, without allocating anything. */
static void refuse_connection(int fd, uid_t uid, pid_t pid, const char *limit) {
        ClientIdentity id = CLIENT_IDENTITY_INIT;
        char msg[256];
        int n;

        id.uid = uid;
        id.pid = pid;
        record_limit_exceeded(&id, limit);
        n = snprintf(msg, sizeof(msg), "{\"error\":\"%s\",\"parameters\":{\"limit\":\"%s\"}}",
                     NOIOMMU_ERROR_LIMIT_EXCEEDED, limit);
        if (n > 0 && (size_t) n < sizeof(msg))
                (void) wire_send(fd, msg, (size_t) n + 1, NULL, 0);
}

/* Out of file descriptors. The listening socket stays readable, so without pausing the loop
 * would spin; manager_client_removed() resumes once a connection closes and frees its fds. */
static void pause_accepting(Manager *m) {
        log_warning("Out of file descriptors, not accepting connections until one closes.");
        m->accept_paused = true;
        (void) sd_event_source_set_enabled(m->listen_source, SD_EVENT_OFF);
}

static int on_accept_window(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        m->accept_limited = false;
        if (!m->accept_paused)
                (void) sd_event_source_set_enabled(m->listen_source, SD_EVENT_ON);
        return 0;
}

/* The budget of this interval is spent: the listening socket rests until the interval ends.
 * (sd-event's own rate limit counts wake-ups, not connections: it would slow down a client
 * that connects often, one connection per wake-up.) */
static void limit_accepting(Manager *m) {
        uint64_t until = m->accept_window_start + NOIOMMU_ACCEPT_INTERVAL_USEC;

        if (!m->accept_timer) {
                /* accuracy 1 µs: 0 would select sd-event's default of 250 ms */
                if (sd_event_add_time(m->event, &m->accept_timer, CLOCK_MONOTONIC, until, 1,
                                      on_accept_window, m) < 0)
                        return;                 /* no timer: no limit rather than no accepting */
                (void) sd_event_source_set_priority(m->accept_timer, NOIOMMU_PRIORITY_NEW);
        } else
                (void) sd_event_source_set_time(m->accept_timer, until);
        (void) sd_event_source_set_enabled(m->accept_timer, SD_EVENT_ONESHOT);
        m->accept_limited = true;
        (void) sd_event_source_set_enabled(m->listen_source, SD_EVENT_OFF);
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        uint64_t now;

        if (sd_event_now(m->event, CLOCK_MONOTONIC, &now) >= 0 &&
            now >= m->accept_window_start + NOIOMMU_ACCEPT_INTERVAL_USEC) {
                m->accept_window_start = now;
                m->accept_window_n = 0;
        }

        for (;; m->accept_window_n++) {
                _cleanup_close_ int cfd = -EBADF;
                struct ucred cred = {};
                socklen_t l = sizeof(cred);
                Client *c;
                int r;

                if (m->accept_window_n >= NOIOMMU_ACCEPT_BATCH) {
                        limit_accepting(m);
                        return 0;
                }
                cfd = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (cfd < 0) {
                        if (errno == EAGAIN || errno == EINTR)
                                return 0;
                        if (errno == ECONNABORTED || errno == EPROTO)
                                continue;
                        if (errno == EMFILE || errno == ENFILE) {
                                pause_accepting(m);
                                return 0;
                        }
                        /* Anything else (ENOMEM, ENOBUFS, ...) is transient: a negative return
                         * would make sd-event disable the listening source for good. */
                        log_warning_errno(errno, "accept4() failed, trying again later: %m");
                        return 0;
                }

                if (getsockopt(cfd, SOL_SOCKET, SO_PEERCRED, &cred, &l) < 0)
                        continue;
                if (m->n_conns >= NOIOMMU_CONNS_MAX) {
                        refuse_connection(cfd, cred.uid, cred.pid, "connections");
                        continue;
                }
                if (manager_conns_for_uid(m, cred.uid) >= NOIOMMU_CONNS_PER_UID_MAX) {
                        refuse_connection(cfd, cred.uid, cred.pid, "connections-per-uid");
                        continue;
                }

                r = client_new(&m->client_ctx, cfd, &c);
                if (r == -ENOMEM) {
                        log_error_errno(r, "Out of memory accepting a connection, refusing it.");
                        continue;
                }
                if (r == -EMFILE || r == -ENFILE) {
                        /* accept4() got one of the last fds, but the peer's pidfd or /proc/PID
                         * did not fit. That is our exhaustion, not the peer's doing: tell it so
                         * (no fd needed for that), and leave the rest of the backlog waiting
                         * instead of dropping every queued connection the same way. */
                        refuse_connection(cfd, cred.uid, cred.pid, "file-descriptors");
                        pause_accepting(m);
                        return 0;
                }
                if (r < 0) {
                        ClientIdentity id = CLIENT_IDENTITY_INIT;

                        /* Usually a peer that exited right after connecting; recorded (rate
                         * limited) because it is also what a pid-reuse attempt looks like. */
                        id.uid = cred.uid;
                        id.gid = cred.gid;
                        id.pid = cred.pid;
                        log_debug_errno(r, "Refusing connection from PID %i: peer not identifiable: %m",
                                        (int) cred.pid);
                        record_protocol_violation(&id, "peer identity could not be verified at accept");
                        continue;
                }
                cfd = -EBADF;                           /* owned by c now */
        }
        return 0;
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;
        unsigned n_conns = m->n_conns, n_regions = m->quota.n_regions;

        (void) sd_notify(false, "STOPPING=1\nSTATUS=Shutting down, freeing all memory.");
        /* Connections that already ended are torn down as what they were (client-exit). */
        manager_flush_closing(m);
        n_conns = m->n_conns;
        record_stopping(n_conns, n_regions);
        /* The fd store does not survive a plain stop, so everything is released now, with
         * reason "shutdown" in the records. */
        while (m->clients)
                (void) client_free(m->clients, "shutdown");
        return sd_event_exit(sd_event_source_get_event(s), 0);
}

/* Warns once at load about configured devices that cannot be served as configured: a
 * "deviceBackends" entry the device cannot use (ListDevices then gives the reason for as long as
 * it lasts), and noiommu devices on a kernel that cannot do noiommu at all. Devices may come and
 * go afterwards; this is advice, not a check that holds later. */
static void manager_check_devices(Manager *m) {
        _cleanup_free_ InventoryDevice *devices = NULL;
        const char *why = NULL;
        int n;

        if (m->settings.noiommu_devices && m->backend->inventory.noiommu_status("/", &why) == 0)
                log_warning("noiommuDevices are configured, but this kernel serves no noiommu device: %s.", why);

        if (m->settings.n_device_backends == 0)
                return;
        n = m->backend->inventory.scan("/", &devices);
        if (n < 0) {
                log_warning_errno(n, "Cannot scan PCI devices to check deviceBackends, ignoring: %m");
                return;
        }
        for (size_t i = 0; i < m->settings.n_device_backends; i++) {
                const DeviceBackendSetting *s = &m->settings.device_backends[i];
                InventoryDevice *d = NULL;

                for (int j = 0; j < n; j++)
                        if (streq(devices[j].address, s->address))
                                d = &devices[j];
                if (!d) {
                        log_info("deviceBackends names %s, which is not bound to vfio-pci now.", s->address);
                        continue;
                }
                inventory_device_force(d, s->backend);
                if (d->backend < 0)
                        log_warning("deviceBackends asks for %s for %s, which it cannot use, so it will not be "
                                    "served: %s.", backend_to_string(s->backend), s->address,
                                    d->reason ?: "no backend can serve this device");
        }
}

/* A Region changed or went away: the state must be written again. */
static void manager_state_changed(void *userdata) {
        Manager *m = userdata;

        persist_dirty(&m->persist);
}

static void manager_client_forget_stored(Client *c, void *userdata) {
        Manager *m = userdata;

        persist_forget_conn(&m->persist, c);
}

/* A quarantined lease leaves its holder's hands (the holder's requests about it get
 * NoSuchLease or DeviceQuarantined from now on). */
static void manager_lease_detached(Lease *l, Client *holder, void *userdata) {
        client_forget_lease(holder, l);
}

/* The two observers of every lease, wired here once: the persisted state and Monitor(). */
static void manager_lease_event(const Lease *l, LeaseEvent ev, const char *reason, void *userdata) {
        Manager *m = userdata;

        persist_lease_event(&m->persist, l, ev);
        monitor_lease_event(&m->monitor, l, ev, reason);
}

int manager_new(const char *config_path, const BackendOps *backend, int (*dispatch)(Client *c),
                Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        sigset_t ss;
        int r;

        assert(backend);

        m = new0(Manager, 1);
        if (!m)
                return -ENOMEM;
        m->backend = backend;
        m->listen_fd = -EBADF;
        m->pagemap_fd = -EBADF;

        r = sd_event_default(&m->event);
        if (r < 0)
                return r;
        (void) sd_event_set_watchdog(m->event, true);

        (void) sigemptyset(&ss);
        (void) sigaddset(&ss, SIGTERM);
        (void) sigaddset(&ss, SIGINT);
        (void) sigaddset(&ss, SIGHUP);          /* re-exec, reexec.c; never the default: fatal */
        if (sigprocmask(SIG_BLOCK, &ss, NULL) < 0)
                return negative_errno();
        (void) signal(SIGPIPE, SIG_IGN);
        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_signal, m);
        if (r < 0)
                return r;

        /* PFNs in pagemap are visible only if the *opener* had CAP_SYS_ADMIN. Open it now, keep
         * the fd, and never hand it to anyone. */
        m->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (m->pagemap_fd < 0)
                return log_error_errno(errno, "Cannot open /proc/self/pagemap (%m): noiommud needs it to tell clients "
                                       "the physical addresses of their memory. Is /proc mounted, and the kernel "
                                       "built with CONFIG_PROC_PAGE_MONITOR?");

        m->client_ctx = (ClientContext) {
                .event = m->event,
                .manager = m,
                .backend = backend,
                .dispatch = dispatch,
                .added = manager_client_added,
                .removed = manager_client_removed,
                .forget_stored = manager_client_forget_stored,
                .closing = manager_client_closing,
                .userdata = m,
        };
        m->lease_registry.backend = backend;
        m->lease_registry.hooks = (LeaseHooks) {
                .event = manager_lease_event,
                .detached = manager_lease_detached,
                .userdata = m,
        };
        m->region_ctx = (RegionContext) {
                .backend = backend,
                .quota = &m->quota,
                .pagemap_fd = m->pagemap_fd,
                .changed = manager_state_changed,
                .userdata = m,
        };
        r = persist_init(&m->persist, m->event, &m->clients, &m->lease_registry, &m->client_ctx, &m->region_ctx);
        if (r < 0)
                return r;

        if (backend->memory.default_size(&m->default_hugepage_size) < 0)
                m->default_hugepage_size = 0;   /* main.c's start-up check says so */

        r = settings_load(config_path ?: NOIOMMU_SETTINGS_PATH, &m->settings);
        if (r < 0)
                return r;
        manager_check_devices(m);

        r = manager_start_pool(m);
        if (r < 0)
                return r;

        r = backend->polkit.new(m->event, &m->polkit);
        if (r < 0)
                return r;

        record_setup(&backend->audit, m->settings.audit_failure_log);
        monitor_setup(&m->monitor, m->event, &m->clients);

        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        /* First: its worker must not outlive what it uses (the pagemap fd, the event loop). */
        m->pool = pool_free(m->pool);
        manager_flush_closing(m);
        while (m->clients)
                (void) client_free(m->clients, "shutdown");
        /* Only quarantined leases are left: the process exit releases their memory anyway. */
        lease_free_all(&m->lease_registry);
        quota_done(&m->quota);
        settings_done(&m->settings);
        if (m->polkit)
                m->polkit = m->backend->polkit.free(m->polkit);
        m->listen_source = sd_event_source_disable_unref(m->listen_source);
        m->trim_source = sd_event_source_disable_unref(m->trim_source);
        m->accept_timer = sd_event_source_disable_unref(m->accept_timer);
        m->resume_source = sd_event_source_disable_unref(m->resume_source);
        m->close_source = sd_event_source_disable_unref(m->close_source);
        persist_done(&m->persist);
        monitor_done(&m->monitor);
        m->listen_fd = safe_close(m->listen_fd);
        if (m->listen_path) {
                struct stat st;

                /* Only the socket this daemon bound: if another one replaced it meanwhile (an
                 * administrator started a second daemon after removing ours), it is theirs. */
                if (lstat(m->listen_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
                    st.st_dev == m->listen_dev && st.st_ino == m->listen_ino)
                        (void) unlink(m->listen_path);
                free(m->listen_path);
        }
        m->pagemap_fd = safe_close(m->pagemap_fd);
        m->event = sd_event_unref(m->event);
        record_shutdown();
        for (size_t i = 0; i < ELEMENTSOF(m->uid_counts); i++)
                while (m->uid_counts[i]) {
                        UidCount *u = m->uid_counts[i];
                        m->uid_counts[i] = u->next;
                        free(u);
                }
        free(m);
        return NULL;
}

static void strv_free_names(char **names, int n) {
        if (!names)
                return;
        for (int i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

static int mkdir_parents(const char *path) {
        _cleanup_free_ char *p = strdup(path);

        if (!p)
                return -ENOMEM;
        for (char *s = strchr(p + 1, '/'); s; s = strchr(s + 1, '/')) {
                *s = 0;
                if (mkdir(p, 0755) < 0 && errno != EEXIST)
                        return negative_errno();
                *s = '/';
        }
        return 0;
}

static int bind_socket(Manager *m, const char *path) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        struct stat st;
        int r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return log_error_errno(ENAMETOOLONG, "Socket path '%s' is too long.", path);
        memcpy(sa.sun_path, path, strlen(path));

        r = mkdir_parents(path);
        if (r < 0)
                return log_error_errno(r, "Failed to create the directory of '%s': %m", path);

        /* A stale socket from an earlier run is replaced; anything else at the path is not
         * ours to remove. Stale means nobody accepts on it: a socket someone listens on belongs
         * to a live daemon, and unlinking it would cut that daemon off from every new client
         * while it keeps running. (Two daemons starting at the same instant can both see a
         * stale file; bind() below then fails for the second with EADDRINUSE.) */
        if (lstat(path, &st) == 0) {
                _cleanup_close_ int probe = -EBADF;

                if (!S_ISSOCK(st.st_mode))
                        return log_error_errno(EEXIST, "'%s' exists and is not a socket, refusing to replace it.", path);
                probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (probe < 0)
                        return log_error_errno(errno, "socket() failed: %m");
                /* Blocking, with a time limit (SO_SNDTIMEO bounds a unix connect()): a live
                 * listener with a full backlog, or a stopped one, makes connect() wait, and a
                 * wait that runs out (EAGAIN) means somebody is there. */
                (void) setsockopt(probe, SOL_SOCKET, SO_SNDTIMEO,
                                  &(struct timeval) { .tv_sec = 1 }, sizeof(struct timeval));
                if (connect(probe, (struct sockaddr *) &sa, sizeof(sa)) == 0 || errno == EAGAIN)
                        return log_error_errno(EADDRINUSE, "Another daemon is listening on '%s'; refusing to start a "
                                               "second one. Stop it first (systemctl stop noiommud.socket "
                                               "noiommud.service), or use 'systemctl reload noiommud' to replace "
                                               "it without ending its leases.", path);
                if (errno != ECONNREFUSED && errno != ENOENT)
                        return log_error_errno(errno, "Cannot tell whether a daemon listens on '%s', refusing to replace it: %m", path);
                log_debug("Replacing the stale socket '%s'.", path);
                (void) unlink(path);
        }

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket() failed: %m");
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return log_error_errno(errno, "Failed to bind '%s': %m", path);
        if (lstat(path, &st) < 0)
                return log_error_errno(errno, "Cannot stat the socket '%s' just bound: %m", path);
        /* Anyone may connect; polkit decides what they get. systemd socket units restrict this
         * further with SocketMode=/SocketGroup= as defence in depth. */
        if (chmod(path, 0666) < 0)
                return log_error_errno(errno, "Failed to chmod '%s': %m", path);
        if (listen(fd, SOMAXCONN) < 0)
                return log_error_errno(errno, "listen() failed: %m");

        m->listen_path = strdup(path);
        if (!m->listen_path)
                return -ENOMEM;
        m->listen_dev = st.st_dev;
        m->listen_ino = st.st_ino;
        (void) snprintf(m->listen_description, sizeof(m->listen_description), "%s", path);
        return TAKE_FD(fd);
}

int manager_watch_listen(Manager *m) {
        int r;

        r = sd_event_add_io(m->event, &m->listen_source, m->listen_fd, EPOLLIN, on_accept, m);
        if (r < 0)
                return log_error_errno(r, "Failed to watch the listening socket: %m");
        r = sd_event_source_set_priority(m->listen_source, NOIOMMU_PRIORITY_NEW);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the listening socket's priority: %m");
        return 0;
}

int manager_listen(Manager *m, const char *path) {
        _cleanup_free_ int *stored = NULL;
        _cleanup_free_ char **stored_names = NULL;
        char **names = NULL;
        size_t n_stored = 0;
        int n, r;

        n = sd_listen_fds_with_names(/* unset_environment= */ true, &names);
        if (n < 0)
                return log_error_errno(n, "Failed to read $LISTEN_FDS: %m");

        stored = new0(int, n > 0 ? (size_t) n : 1);
        stored_names = new0(char *, n > 0 ? (size_t) n : 1);
        if (!stored || !stored_names) {
                strv_free_names(names, n);
                return -ENOMEM;
        }

        for (int i = 0; i < n; i++) {
                int fd = SD_LISTEN_FDS_START + i;

                if (m->listen_fd < 0 && sd_is_socket_unix(fd, SOCK_STREAM, /* listening= */ 1, NULL, 0) > 0) {
                        m->listen_fd = fd;
                        (void) fd_nonblock(fd, true);
                        (void) snprintf(m->listen_description, sizeof(m->listen_description),
                                        "the socket passed by the service manager");
                        continue;
                }
                /* Everything else comes from our fd store (persist.c decides what it is).
                 * sd_listen_fds() already made them close-on-exec. */
                stored[n_stored] = fd;
                stored_names[n_stored] = names ? names[i] : NULL;
                n_stored++;
        }

        if (m->listen_fd < 0) {
                if (!path)
                        path = getenv(NOIOMMU_SOCKET_ENV);
                if (!path || !*path)
                        path = NOIOMMU_SOCKET_PATH_DEFAULT;
                r = bind_socket(m, path);
                if (r < 0) {
                        close_many(stored, n_stored);
                        strv_free_names(names, n);
                        return r;
                }
                m->listen_fd = r;
        }

        r = manager_watch_listen(m);
        if (r < 0) {
                close_many(stored, n_stored);
                strv_free_names(names, n);
                return r;
        }

        if (n_stored > 0 || fdstore_enabled()) {
                log_info("Restoring from %zu stored file descriptors.", n_stored);
                r = persist_restore(&m->persist, stored, stored_names, n_stored);
                if (r < 0)
                        log_warning_errno(r, "Restoring from the fd store failed partially: %m");
        }
        strv_free_names(names, n);
        return 0;
}

int manager_start_pool(Manager *m) {
        int r;

        assert(!m->pool);
        r = pool_new(m->event, m->backend, m->pagemap_fd, m->settings.pool, m->settings.n_pool, &m->pool);
        if (r < 0)
                return log_error_errno(r, "Failed to set up the hugepage pool: %m");
        return 0;
}

int manager_run(Manager *m) {
        char status[512];
        int r;

        m->backend->polkit.connect(m->polkit);

        /* Every connection holds two fds (its socket and the peer's pidfd). Below this the fd
         * limit, not the connection caps, decides when accepting stops (security.md §4.3). The
         * daemon cannot raise it itself (setrlimit() is filtered): the unit sets LimitNOFILE=. */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) >= 0 && rl.rlim_cur != RLIM_INFINITY &&
            rl.rlim_cur < 2ULL * NOIOMMU_CONNS_MAX + 1024)
                log_warning("RLIMIT_NOFILE is %llu, below the %llu that %u connections need; raise LimitNOFILE=.",
                            (unsigned long long) rl.rlim_cur, 2ULL * NOIOMMU_CONNS_MAX + 1024,
                            (unsigned) NOIOMMU_CONNS_MAX);

        if (m->reload_start_usec > 0) {
                uint64_t leases = 0;

                for (Lease *l = m->lease_registry.leases; l; l = l->next)
                        leases++;
                record_reloaded(m->listen_description, m->n_conns, (unsigned) leases, m->quota.n_regions,
                               lease_now_usec() - m->reload_start_usec);
        } else
                record_started(m->listen_description);
        (void) snprintf(status, sizeof(status), "STATUS=Listening on %s.", m->listen_description);
        (void) sd_notify(false, "READY=1");
        (void) sd_notify(false, status);
        log_info("Listening on %s.", m->listen_description);

        r = sd_event_loop(m->event);
        if (r < 0)
                return log_error_errno(r, "Event loop failed: %m");
        return 0;
}
