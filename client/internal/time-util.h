/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Time in microseconds, the unit sd-event (sd_event_now()) and sd-bus timeouts use, so values
 * from here and from the event loop can be compared and added without conversion.
 *
 *   usec_t t = now_usec(CLOCK_MONOTONIC);           (deadlines, durations, rate-limit windows)
 *
 * CLOCK_MONOTONIC does not jump with settimeofday() or NTP steps, so intervals measured with it
 * never run backwards. clock_gettime() fails only with EINVAL for a clock id the kernel does not
 * have, or EFAULT for a bad pointer (clock_gettime(2)), so now_usec() returns the value directly,
 * as dbus-broker's nsec_now() does.
 */
#pragma once

#include <stdint.h>
#include <time.h>

typedef uint64_t usec_t;

#define USEC_PER_SEC  ((usec_t) 1000000ULL)
#define USEC_PER_MSEC ((usec_t) 1000ULL)
#define NSEC_PER_USEC ((usec_t) 1000ULL)

static inline usec_t timespec_load(const struct timespec *ts) {
        return (usec_t) ts->tv_sec * USEC_PER_SEC + (usec_t) ts->tv_nsec / NSEC_PER_USEC;
}

/* The current time of clock in microseconds; 0 (the distant past) only if the kernel does not
 * know clock, which is our own bug. */
static inline usec_t now_usec(clockid_t clock) {
        struct timespec ts;

        if (clock_gettime(clock, &ts) < 0)
                return 0;
        return timespec_load(&ts);
}
