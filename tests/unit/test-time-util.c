/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client/internal/time-util.h: the one microsecond clock of the tree. The daemon compares its
 * values with sd_event_now()'s, so the unit and the clock must be the ones sd-event uses.
 */
#include <time.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "internal/macro.h"
#include "internal/time-util.h"
#include "tests.h"

static void test_timespec_load(void) {
        struct timespec ts = { .tv_sec = 3, .tv_nsec = 999999999 };

        /* Truncates below a microsecond, never rounds up into the next one. */
        ASSERT_EQ(timespec_load(&ts), 3999999);
        ts = (struct timespec) { .tv_sec = 0, .tv_nsec = 999 };
        ASSERT_EQ(timespec_load(&ts), 0);
        ts = (struct timespec) { .tv_sec = 0, .tv_nsec = 1000 };
        ASSERT_EQ(timespec_load(&ts), 1);
        /* 2^33 s (beyond 32-bit time_t) does not overflow the multiplication. */
        ts = (struct timespec) { .tv_sec = (time_t) 1 << 33 };
        ASSERT_TRUE(timespec_load(&ts) == (usec_t) ((uint64_t) 1 << 33) * USEC_PER_SEC);
}

static void test_now_usec_monotonic(void) {
        usec_t a, b;

        a = now_usec(CLOCK_MONOTONIC);
        ASSERT_TRUE(a > 0);
        ASSERT_OK(usleep(20000));
        b = now_usec(CLOCK_MONOTONIC);
        ASSERT_TRUE(b >= a + 20 * USEC_PER_MSEC);
        /* A sleep of 20 ms is not seconds long: catches a unit mix-up (ns or ms). */
        ASSERT_TRUE(b - a < 10 * USEC_PER_SEC);
}

static void test_now_usec_matches_sd_event(void) {
        _cleanup_(sd_event_unrefp) sd_event *e = NULL;
        uint64_t t;
        usec_t before, after;

        /* sd_event_now() before the first iteration returns the current time of the clock;
         * bracket it with ours to prove the same clock and unit. */
        ASSERT_OK(sd_event_new(&e));
        before = now_usec(CLOCK_MONOTONIC);
        ASSERT_OK(sd_event_now(e, CLOCK_MONOTONIC, &t));
        after = now_usec(CLOCK_MONOTONIC);
        ASSERT_TRUE(before <= t && t <= after);
}

static void test_now_usec_bad_clock(void) {
        /* A clock id the kernel does not have: 0, not an uninitialised value. */
        ASSERT_EQ(now_usec((clockid_t) 0x7fff), 0);
}

int main(void) {
        TEST(test_timespec_load);
        TEST(test_now_usec_monotonic);
        TEST(test_now_usec_matches_sd_event);
        TEST(test_now_usec_bad_clock);
        return 0;
}
