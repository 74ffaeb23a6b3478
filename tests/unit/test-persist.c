/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/persist.c's state writes against a fake fd store: fdstore_push/remove/enabled are
 * caught with --wrap (meson.build), and the store is modelled as the set of names it holds, so
 * that what a sequence of writes, some failing, leaves behind can be checked exactly:
 *
 *   - a failed push stored nothing: the generation is not advanced, so two failures in a row
 *     never remove the name that holds the last good state (the store always has a state);
 *   - the state stays dirty until a write worked;
 *   - persist_init() creates the deferred write, and persist_dirty() never writes by itself
 *     (only the event loop does), so it is safe inside a handler;
 *   - a stored fd's kind is read from its link with " (deleted)" ignored.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fdstore.h"
#include "internal/macro.h"
#include "lease.h"
#include "persist.h"
#include "tests.h"

#define NAMES_MAX 8

static char store[NAMES_MAX][32];       /* the names the fake store holds */
static unsigned pushes, push_failures, removes;
static bool fail_pushes;

bool __wrap_fdstore_enabled(void);
int __wrap_fdstore_push(const char *name, const int *fds, size_t n, bool poll);
int __wrap_fdstore_remove(const char *name);

bool __wrap_fdstore_enabled(void) {
        return true;
}

static int find(const char *name) {
        for (int i = 0; i < NAMES_MAX; i++)
                if (streq(store[i], name))
                        return i;
        return -1;
}

static bool holds(const char *name) {
        return find(name) >= 0;
}

/* One sendmsg(): all or nothing, as the real fdstore_push(). */
int __wrap_fdstore_push(const char *name, const int *fds, size_t n, bool poll) {
        pushes++;
        ASSERT_TRUE(n > 0 && fds[0] >= 0);
        if (fail_pushes) {
                push_failures++;
                return -ENOBUFS;
        }
        if (!holds(name)) {
                int i = find("");

                ASSERT_TRUE(i >= 0);
                (void) snprintf(store[i], sizeof(store[i]), "%s", name);
        }
        return 0;
}

int __wrap_fdstore_remove(const char *name) {
        int i = find(name);

        removes++;
        if (i >= 0)
                store[i][0] = 0;
        return 0;
}

static unsigned n_states(void) {
        return holds("state-0") + holds("state-1");
}

typedef struct Fixture {
        sd_event *event;
        Client *clients;
        LeaseRegistry leases;
        Persist p;
} Fixture;

static void setup(Fixture *f) {
        memset(store, 0, sizeof(store));
        pushes = push_failures = removes = 0;
        fail_pushes = false;
        *f = (Fixture) {};
        ASSERT_OK(sd_event_new(&f->event));
        ASSERT_OK(persist_init(&f->p, f->event, &f->clients, &f->leases, NULL, NULL));
}

static void teardown(Fixture *f) {
        persist_done(&f->p);
        f->event = sd_event_unref(f->event);
}

/* Two failed writes in a row after a good one: the good state is still in the store, and the
 * next good write goes under the other name and removes it only then. */
static void test_failed_push_keeps_last_state(void) {
        Fixture f;

        setup(&f);
        ASSERT_OK(persist_save(&f.p));
        ASSERT_EQ(f.p.generation, 1);
        ASSERT_TRUE(holds("state-1"));
        ASSERT_EQ(n_states(), 1);

        fail_pushes = true;
        ASSERT_TRUE(persist_save(&f.p) < 0);
        ASSERT_EQ(f.p.generation, 1);   /* nothing was stored under generation 2 */
        ASSERT_TRUE(holds("state-1"));
        ASSERT_TRUE(persist_save(&f.p) < 0);
        ASSERT_EQ(push_failures, 2);
        ASSERT_EQ(f.p.generation, 1);
        ASSERT_TRUE(holds("state-1"));  /* the last good state survived both failures */
        ASSERT_EQ(n_states(), 1);

        fail_pushes = false;
        ASSERT_OK(persist_save(&f.p));
        ASSERT_EQ(f.p.generation, 2);
        ASSERT_TRUE(holds("state-0"));
        ASSERT_FALSE(holds("state-1"));
        ASSERT_EQ(n_states(), 1);
        teardown(&f);
}

/* dirty is cleared only by a write that worked: a failed one is tried again by the next flush. */
static void test_dirty_until_written(void) {
        Fixture f;

        setup(&f);
        fail_pushes = true;
        f.p.dirty = true;
        ASSERT_TRUE(persist_save(&f.p) < 0);
        ASSERT_TRUE(f.p.dirty);
        persist_flush(&f.p);            /* tries again, fails again, still dirty */
        ASSERT_EQ(push_failures, 2);
        ASSERT_TRUE(f.p.dirty);

        fail_pushes = false;
        persist_flush(&f.p);
        ASSERT_FALSE(f.p.dirty);
        ASSERT_EQ(n_states(), 1);
        pushes = 0;
        persist_flush(&f.p);            /* nothing changed: no write */
        ASSERT_EQ(pushes, 0);
        teardown(&f);
}

/* persist_dirty() only schedules: nothing is written (nor a connection ended) from inside the
 * caller, even when writing would fail; the loop writes once. */
static void test_dirty_never_writes_synchronously(void) {
        Fixture f;

        setup(&f);
        ASSERT_TRUE(f.p.source != NULL);        /* made by persist_init() */
        fail_pushes = true;
        persist_dirty(&f.p);
        persist_dirty(&f.p);
        ASSERT_EQ(pushes, 0);
        ASSERT_TRUE(sd_event_run(f.event, 0) > 0);
        ASSERT_EQ(pushes, 1);
        ASSERT_TRUE(f.p.dirty);                 /* failed: still to be written */

        fail_pushes = false;
        persist_dirty(&f.p);
        ASSERT_TRUE(sd_event_run(f.event, 0) > 0);
        ASSERT_EQ(pushes, 2);
        ASSERT_FALSE(f.p.dirty);
        ASSERT_EQ(n_states(), 1);
        ASSERT_EQ(sd_event_run(f.event, 0), 0); /* one shot */
        teardown(&f);
}

/* What a stored fd is, from its link: an unlinked node keeps its kind ("(deleted)" is not part
 * of the name), so a container is never taken for a group. */
static void test_lease_fd_kind(void) {
        ASSERT_EQ(persist_lease_fd_kind_of("anon_inode:[vfio-device]"), 0);
        ASSERT_EQ(persist_lease_fd_kind_of("/dev/vfio/devices/vfio0"), 0);
        ASSERT_EQ(persist_lease_fd_kind_of("/dev/vfio/devices/vfio0 (deleted)"), 0);
        ASSERT_EQ(persist_lease_fd_kind_of("/dev/vfio/noiommu-3"), 1);
        ASSERT_EQ(persist_lease_fd_kind_of("/dev/vfio/12 (deleted)"), 1);
        ASSERT_EQ(persist_lease_fd_kind_of("/dev/vfio/vfio"), 2);
        ASSERT_EQ(persist_lease_fd_kind_of("/dev/vfio/vfio (deleted)"), 2);
        ASSERT_EQ(persist_lease_fd_kind_of("/dev/iommu"), 3);
        ASSERT_EQ(persist_lease_fd_kind_of("/dev/iommu (deleted)"), 3);
        /* Opened in a mount namespace that is gone (a previous run under PrivateMounts=):
         * the link is relative to that namespace's detached /dev mount, as vm-systemd saw. */
        ASSERT_EQ(persist_lease_fd_kind_of("/vfio/devices/vfio0"), 0);
        ASSERT_EQ(persist_lease_fd_kind_of("/vfio/noiommu-0"), 1);
        ASSERT_EQ(persist_lease_fd_kind_of("/vfio/7"), 1);
        ASSERT_EQ(persist_lease_fd_kind_of("/vfio/vfio"), 2);
        ASSERT_EQ(persist_lease_fd_kind_of("/iommu"), 3);
        ASSERT_EQ(persist_lease_fd_kind_of("/vfio/"), -1);
        ASSERT_EQ(persist_lease_fd_kind_of("/null"), -1);
        ASSERT_EQ(persist_lease_fd_kind_of("/dev/null"), -1);
        ASSERT_EQ(persist_lease_fd_kind_of(" (deleted)"), -1);
        ASSERT_EQ(persist_lease_fd_kind_of("/memfd:noiommud-x (deleted)"), -1);
}

int main(void) {
        TEST(test_failed_push_keeps_last_state);
        TEST(test_dirty_until_written);
        TEST(test_dirty_never_writes_synchronously);
        TEST(test_lease_fd_kind);
        return 0;
}
