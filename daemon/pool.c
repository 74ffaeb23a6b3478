/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See pool.h: ready-made HugeRegions, made by one worker thread, handed over on the loop.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "internal/fd-util.h"
#include "internal/log.h"
#include "pool.h"

/* After a failed refill (no free hugepages of the size, say) the entry waits this long before
 * the worker tries again, so that an exhausted size costs one attempt per interval and not a
 * busy loop of failing fallocate() calls. */
#define POOL_RETRY_USEC (10ULL * 1000 * 1000)

typedef struct PoolEntry {
        PoolSetting setting;
        HugeRegion **ready;             /* setting.count slots, n_ready used */
        unsigned n_ready;
        bool queued;                    /* one region of this entry is queued or in the worker */
        bool suspended;                 /* gave back for a request: no refill this iteration */
        bool failing;                   /* the last refill failed: wait for the retry timer */
} PoolEntry;

/* One region to make. Filled in on the loop, handed to the worker, handed back. */
typedef struct PoolJob {
        struct PoolJob *next;
        size_t entry;
        uint64_t size;
        uint64_t hugepage_size;
        int numa_node;
        char id[NOIOMMU_ID_LEN + 1];
        HugeRegion *huge;               /* the worker's result */
        int error;
} PoolJob;

struct Pool {
        sd_event *event;
        const BackendOps *backend;
        int pagemap_fd;
        PoolEntry *entries;
        size_t n_entries;

        /* Shared with the worker, under lock: */
        pthread_mutex_t lock;
        pthread_cond_t work;            /* signalled: a job was queued, or stop */
        pthread_cond_t idle;            /* broadcast: the worker finished a job */
        PoolJob *todo, **todo_tail;     /* FIFO */
        PoolJob *running;
        PoolJob *done;
        bool stop;

        pthread_t thread;
        bool thread_started;
        int eventfd;                    /* the worker wakes the loop when it put a job on done */
        sd_event_source *done_source;
        sd_event_source *refill_source; /* deferred: refills after the current request */
        sd_event_source *retry_source;  /* POOL_RETRY_USEC after a failed refill */
};

static void *pool_worker(void *userdata) {
        Pool *p = userdata;

        /* Best effort: faulting and zeroing a region is background work, and the loop serving
         * requests shares the machine's cores with it. */
        (void) setpriority(PRIO_PROCESS, (id_t) gettid(), 10);

        (void) pthread_mutex_lock(&p->lock);
        for (;;) {
                PoolJob *j;

                while (!p->stop && !p->todo)
                        (void) pthread_cond_wait(&p->work, &p->lock);
                if (p->stop)
                        break;
                j = p->todo;
                p->todo = j->next;
                if (!p->todo)
                        p->todo_tail = &p->todo;
                p->running = j;
                (void) pthread_mutex_unlock(&p->lock);

                j->error = p->backend->memory.new(j->id, j->size, j->hugepage_size, j->numa_node,
                                                  p->pagemap_fd, &j->huge);

                (void) pthread_mutex_lock(&p->lock);
                p->running = NULL;
                j->next = p->done;
                p->done = j;
                (void) pthread_cond_broadcast(&p->idle);
                /* An eventfd counter does not overflow from one increment per job. */
                (void) eventfd_write(p->eventfd, 1);
        }
        (void) pthread_mutex_unlock(&p->lock);
        return NULL;
}

static void job_free(Pool *p, PoolJob *j) {
        if (j->huge)
                (void) p->backend->memory.free(j->huge);
        free(j);
}

static void pool_arm_retry(Pool *p) {
        uint64_t now;

        if (sd_event_now(p->event, CLOCK_MONOTONIC, &now) < 0 ||
            sd_event_source_set_time(p->retry_source, now + POOL_RETRY_USEC) < 0 ||
            sd_event_source_set_enabled(p->retry_source, SD_EVENT_ONESHOT) < 0)
                log_warning("Cannot arm the pool's retry timer; the pool refills after the next grant.");
}

/* Takes what the worker finished. Returns how many regions were freed because their entry is
 * suspended or full. */
static unsigned pool_collect(Pool *p) {
        PoolJob *list;
        unsigned freed = 0;

        (void) pthread_mutex_lock(&p->lock);
        list = TAKE_PTR(p->done);
        (void) pthread_mutex_unlock(&p->lock);

        while (list) {
                PoolJob *j = list;
                PoolEntry *e = &p->entries[j->entry];

                list = j->next;
                e->queued = false;
                if (j->error < 0) {
                        /* -ENOSPC is the ordinary case: clients hold the free pages. */
                        if (!e->failing)
                                log_full_errno(j->error == -ENOSPC ? LOG_INFO : LOG_WARNING, j->error,
                                               "Hugepage pool: cannot make a %" PRIu64 "-byte region of %" PRIu64
                                               "-byte pages (%m); trying again every %llu s.",
                                               e->setting.size, e->setting.hugepage_size,
                                               POOL_RETRY_USEC / 1000000);
                        e->failing = true;
                        pool_arm_retry(p);
                } else if (e->suspended || e->n_ready >= e->setting.count) {
                        freed++;
                        log_debug("Hugepage pool: region %s given back before it was ready.", j->id);
                } else {
                        e->failing = false;
                        e->ready[e->n_ready++] = TAKE_PTR(j->huge);
                        log_debug("Hugepage pool: region %s ready (%u/%u of %" PRIu64 " bytes).",
                                  j->id, e->n_ready, e->setting.count, e->setting.size);
                }
                job_free(p, j);
        }
        return freed;
}

/* Queues one region for every entry that lacks one and has none in the making: the worker
 * makes them one by one, so entries fill in turn and a give-back waits for one region at most. */
static void pool_refill(Pool *p) {
        bool queued = false;

        for (size_t i = 0; i < p->n_entries; i++) {
                PoolEntry *e = &p->entries[i];
                sd_id128_t rid;
                PoolJob *j;

                if (e->queued || e->suspended || e->failing || e->n_ready >= e->setting.count)
                        continue;
                j = new0(PoolJob, 1);
                if (!j || p->backend->random_id(&rid) < 0) {
                        free(j);
                        log_warning("Hugepage pool: cannot queue a refill; trying again later.");
                        pool_arm_retry(p);
                        break;
                }
                *j = (PoolJob) {
                        .entry = i,
                        .size = e->setting.size,
                        .hugepage_size = e->setting.hugepage_size,
                        .numa_node = e->setting.numa_node,
                };
                (void) sd_id128_to_string(rid, j->id);
                e->queued = true;

                (void) pthread_mutex_lock(&p->lock);
                *p->todo_tail = j;
                p->todo_tail = &j->next;
                (void) pthread_mutex_unlock(&p->lock);
                queued = true;
        }
        if (queued)
                (void) pthread_cond_signal(&p->work);
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Pool *p = userdata;
        eventfd_t v;

        (void) eventfd_read(fd, &v);
        (void) pool_collect(p);
        pool_refill(p);
        return 0;
}

static int on_refill(sd_event_source *s, void *userdata) {
        Pool *p = userdata;

        for (size_t i = 0; i < p->n_entries; i++)
                p->entries[i].suspended = false;
        pool_refill(p);
        return 0;
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Pool *p = userdata;

        for (size_t i = 0; i < p->n_entries; i++)
                p->entries[i].failing = false;
        pool_refill(p);
        return 0;
}

int pool_new(sd_event *event, const BackendOps *backend, int pagemap_fd, const PoolSetting *settings,
             size_t n, Pool **ret) {
        _cleanup_(pool_freep) Pool *p = NULL;
        sigset_t all, old;
        int r;

        assert(event);
        assert(backend);
        assert(ret);

        *ret = NULL;
        if (n == 0)
                return 0;

        p = new0(Pool, 1);
        if (!p)
                return -ENOMEM;
        p->event = sd_event_ref(event);
        p->backend = backend;
        p->pagemap_fd = pagemap_fd;
        p->eventfd = -EBADF;
        p->todo_tail = &p->todo;
        (void) pthread_mutex_init(&p->lock, NULL);
        (void) pthread_cond_init(&p->work, NULL);
        (void) pthread_cond_init(&p->idle, NULL);

        p->entries = new0(PoolEntry, n);
        if (!p->entries)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                PoolEntry *e = &p->entries[p->n_entries];

                /* Not an error: the same configuration may serve machines with other sizes. */
                if (backend->memory.size_supported(settings[i].hugepage_size) <= 0) {
                        log_warning("Hugepage pool: the kernel offers no %" PRIu64 "-byte hugepages; leaving "
                                    "out the pool entry of %" PRIu64 "-byte regions.",
                                    settings[i].hugepage_size, settings[i].size);
                        continue;
                }
                e->setting = settings[i];
                e->ready = new0(HugeRegion *, settings[i].count);
                if (!e->ready)
                        return -ENOMEM;
                p->n_entries++;
        }
        if (p->n_entries == 0)
                return 0;

        p->eventfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (p->eventfd < 0)
                return log_error_errno(errno, "Hugepage pool: eventfd() failed: %m");
        r = sd_event_add_io(event, &p->done_source, p->eventfd, EPOLLIN, on_done, p);
        if (r < 0)
                return log_error_errno(r, "Hugepage pool: cannot watch its eventfd: %m");
        r = sd_event_add_defer(event, &p->refill_source, on_refill, p);
        if (r >= 0)
                r = sd_event_source_set_enabled(p->refill_source, SD_EVENT_OFF);
        if (r >= 0)
                r = sd_event_add_time(event, &p->retry_source, CLOCK_MONOTONIC, UINT64_MAX, 0, on_retry, p);
        if (r >= 0)
                r = sd_event_source_set_enabled(p->retry_source, SD_EVENT_OFF);
        if (r < 0)
                return log_error_errno(r, "Hugepage pool: cannot set up its event sources: %m");

        /* The worker takes no signal: the loop's signal sources (signalfd) need every signal
         * blocked in every thread, or the kernel may deliver SIGTERM to the worker with its
         * default action. A new thread inherits the creator's mask. */
        (void) sigfillset(&all);
        (void) pthread_sigmask(SIG_SETMASK, &all, &old);
        r = -pthread_create(&p->thread, NULL, pool_worker, p);
        (void) pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (r < 0)
                return log_error_errno(r, "Hugepage pool: cannot start its worker thread: %m");
        p->thread_started = true;
        (void) pthread_setname_np(p->thread, "noiommud-pool");

        pool_refill(p);
        *ret = TAKE_PTR(p);
        return 0;
}

Pool *pool_free(Pool *p) {
        if (!p)
                return NULL;

        if (p->thread_started) {
                (void) pthread_mutex_lock(&p->lock);
                p->stop = true;
                (void) pthread_cond_signal(&p->work);
                (void) pthread_mutex_unlock(&p->lock);
                /* Waits for the region in progress, if any (one fallocate of at most one entry's
                 * size); it lands on done and is freed below. */
                (void) pthread_join(p->thread, NULL);
        }
        while (p->todo) {
                PoolJob *j = p->todo;

                p->todo = j->next;
                job_free(p, j);
        }
        while (p->done) {
                PoolJob *j = p->done;

                p->done = j->next;
                job_free(p, j);
        }
        for (size_t i = 0; i < p->n_entries; i++) {
                for (unsigned k = 0; k < p->entries[i].n_ready; k++)
                        (void) p->backend->memory.free(p->entries[i].ready[k]);
                free(p->entries[i].ready);
        }
        free(p->entries);
        sd_event_source_disable_unref(p->done_source);
        sd_event_source_disable_unref(p->refill_source);
        sd_event_source_disable_unref(p->retry_source);
        safe_close(p->eventfd);
        (void) pthread_cond_destroy(&p->work);
        (void) pthread_cond_destroy(&p->idle);
        (void) pthread_mutex_destroy(&p->lock);
        sd_event_unref(p->event);
        free(p);
        return NULL;
}

static HugeRegion *pool_take(Pool *p, uint64_t size, uint64_t hugepage_size, int numa_node) {
        for (size_t i = 0; p && i < p->n_entries; i++) {
                PoolEntry *e = &p->entries[i];
                HugeRegion *h;

                if (e->setting.size != size || e->setting.hugepage_size != hugepage_size ||
                    (numa_node >= 0 && e->setting.numa_node != numa_node) || e->n_ready == 0)
                        continue;
                h = TAKE_PTR(e->ready[--e->n_ready]);
                h->pooled = true;
                /* The refill runs once this request is answered, not before. */
                (void) sd_event_source_set_enabled(p->refill_source, SD_EVENT_ONESHOT);
                return h;
        }
        return NULL;
}

unsigned pool_give_back(Pool *p, uint64_t hugepage_size) {
        unsigned freed = 0;
        bool any = false;

        if (!p)
                return 0;
        for (size_t i = 0; i < p->n_entries; i++)
                if (p->entries[i].setting.hugepage_size == hugepage_size) {
                        p->entries[i].suspended = true;
                        any = true;
                }
        if (!any)
                return 0;

        (void) pthread_mutex_lock(&p->lock);
        /* Queued jobs of the size never start; the one in progress is waited for, so that its
         * pages are free again when this returns (at most one region of one entry). */
        for (PoolJob **j = &p->todo; *j; ) {
                PoolJob *k = *j;

                if (k->hugepage_size != hugepage_size) {
                        j = &k->next;
                        continue;
                }
                *j = k->next;
                p->entries[k->entry].queued = false;
                free(k);
        }
        p->todo_tail = &p->todo;
        while (*p->todo_tail)
                p->todo_tail = &(*p->todo_tail)->next;
        while (p->running && p->running->hugepage_size == hugepage_size)
                (void) pthread_cond_wait(&p->idle, &p->lock);
        (void) pthread_mutex_unlock(&p->lock);

        freed += pool_collect(p);
        for (size_t i = 0; i < p->n_entries; i++) {
                PoolEntry *e = &p->entries[i];

                if (e->setting.hugepage_size != hugepage_size)
                        continue;
                for (unsigned k = 0; k < e->n_ready; k++)
                        (void) p->backend->memory.free(TAKE_PTR(e->ready[k]));
                freed += e->n_ready;
                e->n_ready = 0;
        }
        (void) sd_event_source_set_enabled(p->refill_source, SD_EVENT_ONESHOT);
        if (freed > 0)
                log_info("Hugepage pool: gave back %u region(s) of %" PRIu64 "-byte pages for a request.",
                         freed, hugepage_size);
        return freed;
}

int pool_allocate(Pool *p, const BackendOps *backend, char *id, uint64_t size, uint64_t hugepage_size,
                  int numa_node, int pagemap_fd, HugeRegion **ret) {
        HugeRegion *h;
        int r;

        h = pool_take(p, size, hugepage_size, numa_node);
        if (h) {
                memcpy(id, h->id, NOIOMMU_ID_LEN + 1);
                *ret = h;
                return 0;
        }
        r = backend->memory.new(id, size, hugepage_size, numa_node, pagemap_fd, ret);
        if ((r == -ENOSPC || r == -ENOMEM) && pool_give_back(p, hugepage_size) > 0)
                r = backend->memory.new(id, size, hugepage_size, numa_node, pagemap_fd, ret);
        return r;
}

json_t *pool_to_json(const Pool *p) {
        json_t *a = json_array();

        for (size_t i = 0; a && p && i < p->n_entries; i++) {
                const PoolEntry *e = &p->entries[i];

                if (json_array_append_new(a, json_pack("{s:I, s:I, s:o, s:I, s:I}",
                                                       "hugepageSize", (json_int_t) e->setting.hugepage_size,
                                                       "size", (json_int_t) e->setting.size,
                                                       "numaNode", e->setting.numa_node >= 0 ?
                                                               json_integer(e->setting.numa_node) : json_null(),
                                                       "ready", (json_int_t) e->n_ready,
                                                       "target", (json_int_t) e->setting.count)) < 0) {
                        json_decref(a);
                        return NULL;
                }
        }
        return a;
}

void pool_usage(const Pool *p, unsigned *ret_regions, uint64_t *ret_bytes) {
        unsigned n = 0;
        uint64_t b = 0;

        for (size_t i = 0; p && i < p->n_entries; i++) {
                n += p->entries[i].n_ready;
                b += p->entries[i].n_ready * p->entries[i].setting.size;
        }
        *ret_regions = n;
        *ret_bytes = b;
}
