/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A tiny test harness: each test is "static void test_x(void)" registered with TEST(), and every
 * assertion prints both values and the location when it fails, then aborts the test program.
 */
#pragma once

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fd-count.h"

#define ASSERT_TRUE(expr)                                                                  \
        do {                                                                               \
                if (!(expr)) {                                                             \
                        fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,         \
                                __LINE__, #expr);                                          \
                        abort();                                                           \
                }                                                                          \
        } while (0)
#define ASSERT_FALSE(expr) ASSERT_TRUE(!(expr))

#define ASSERT_EQ(a, b)                                                                    \
        do {                                                                               \
                long long _a_ = (long long) (a), _b_ = (long long) (b);                    \
                if (_a_ != _b_) {                                                          \
                        fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n",          \
                                __FILE__, __LINE__, #a, #b, _a_, _b_);                     \
                        abort();                                                           \
                }                                                                          \
        } while (0)

#define ASSERT_STREQ(a, b)                                                                 \
        do {                                                                               \
                const char *_a_ = (a), *_b_ = (b);                                         \
                if (!_a_ || !_b_ || strcmp(_a_, _b_) != 0) {                               \
                        fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n",      \
                                __FILE__, __LINE__, #a, #b, _a_ ?: "(null)",              \
                                _b_ ?: "(null)");                                          \
                        abort();                                                           \
                }                                                                          \
        } while (0)

/* r >= 0; prints the errno name on failure. */
#define ASSERT_OK(expr)                                                                    \
        do {                                                                               \
                long long _r_ = (long long) (expr);                                        \
                if (_r_ < 0) {                                                             \
                        fprintf(stderr, "%s:%d: %s failed: %lld (%s)\n", __FILE__,         \
                                __LINE__, #expr, _r_, strerror((int) -_r_));               \
                        abort();                                                           \
                }                                                                          \
        } while (0)

/* expr returns exactly -err. */
#define ASSERT_ERROR(expr, err) ASSERT_EQ((expr), -(err))

#define TEST(fn)                                                                           \
        do {                                                                               \
                fprintf(stderr, "== %s\n", #fn);                                           \
                fn();                                                                      \
        } while (0)
