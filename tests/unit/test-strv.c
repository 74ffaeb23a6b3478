/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client/internal/strv.[ch]: NULL and the empty vector are the same everywhere (polkit compares
 * a query's copied details with the caller's NULL), copies are deep, and a failed extend leaves
 * the vector as it was.
 */
#include <string.h>

#include "internal/macro.h"
#include "internal/strv.h"
#include "tests.h"

static void test_length(void) {
        char *l[] = { (char *) "a", (char *) "b", NULL };
        char *empty[] = { NULL };

        ASSERT_EQ(strv_length(NULL), 0);
        ASSERT_EQ(strv_length(empty), 0);
        ASSERT_EQ(strv_length(l), 2);
}

static void test_extend_contains(void) {
        _cleanup_strv_free_ char **l = NULL;
        char buf[] = "second";

        ASSERT_FALSE(strv_contains(l, "first"));
        ASSERT_OK(strv_extend(&l, "first"));
        ASSERT_TRUE(l != NULL);
        ASSERT_EQ(strv_length(l), 1);
        ASSERT_OK(strv_extend(&l, buf));
        ASSERT_OK(strv_extend(&l, ""));
        ASSERT_EQ(strv_length(l), 3);
        ASSERT_TRUE(l[3] == NULL);

        /* The vector owns copies: changing the caller's buffer changes nothing in it. */
        ASSERT_TRUE(l[1] != buf);
        buf[0] = 'X';
        ASSERT_STREQ(l[1], "second");

        ASSERT_TRUE(strv_contains(l, "first"));
        ASSERT_TRUE(strv_contains(l, "second"));
        ASSERT_TRUE(strv_contains(l, ""));
        ASSERT_FALSE(strv_contains(l, "Xecond"));
        ASSERT_FALSE(strv_contains(l, "firs"));
}

static void test_copy(void) {
        _cleanup_strv_free_ char **c = NULL, **e = NULL;
        char *l[] = { (char *) "key", (char *) "value", NULL };

        c = strv_copy(l);
        ASSERT_TRUE(c != NULL);
        ASSERT_EQ(strv_length(c), 2);
        ASSERT_TRUE(c[0] != l[0] && c[1] != l[1]);
        ASSERT_STREQ(c[0], "key");
        ASSERT_STREQ(c[1], "value");
        ASSERT_TRUE(c[2] == NULL);

        /* NULL copies to an empty, allocated vector: NULL from strv_copy() means ENOMEM only. */
        e = strv_copy(NULL);
        ASSERT_TRUE(e != NULL);
        ASSERT_TRUE(e[0] == NULL);
}

static void test_equal(void) {
        char *ab[] = { (char *) "a", (char *) "b", NULL };
        char *ab2[] = { (char *) "a", (char *) "b", NULL };
        char *ba[] = { (char *) "b", (char *) "a", NULL };
        char *a[] = { (char *) "a", NULL };
        char *empty[] = { NULL };

        ASSERT_TRUE(strv_equal(ab, ab2));
        ASSERT_TRUE(strv_equal(NULL, NULL));
        ASSERT_TRUE(strv_equal(NULL, empty));
        ASSERT_TRUE(strv_equal(empty, NULL));
        ASSERT_FALSE(strv_equal(ab, ba));         /* order matters */
        ASSERT_FALSE(strv_equal(ab, a));          /* a prefix is not equal, either way */
        ASSERT_FALSE(strv_equal(a, ab));
        ASSERT_FALSE(strv_equal(a, NULL));
        ASSERT_FALSE(strv_equal(NULL, a));
}

static void test_free(void) {
        char **l = NULL;

        ASSERT_TRUE(strv_free(NULL) == NULL);
        ASSERT_OK(strv_extend(&l, "x"));
        l = strv_free(l);
        ASSERT_TRUE(l == NULL);

        /* The cleanup handler clears the variable, so a second free cannot happen. */
        {
                _cleanup_strv_free_ char **m = NULL;

                ASSERT_OK(strv_extend(&m, "y"));
                strv_freep(&m);
                ASSERT_TRUE(m == NULL);
        }
}

int main(void) {
        TEST(test_length);
        TEST(test_extend_contains);
        TEST(test_copy);
        TEST(test_equal);
        TEST(test_free);
        return 0;
}
