/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client/internal/list.h: order after prepends, removal at the head, middle and tail with
 * both directions of links checked, one item in two lists at once, and LIST_FOREACH surviving
 * the removal (and freeing) of the current item, which polkit.c relies on when it fails every
 * query of a vanished bus.
 */
#include <stdbool.h>
#include <stdlib.h>

#include "internal/list.h"
#include "internal/macro.h"
#include "tests.h"

typedef struct Item Item;
struct Item {
        int value;
        LIST_FIELDS(Item, all);
        LIST_FIELDS(Item, odd);
};

/* Checks that head holds exactly want[0..n) in order, with consistent back links. */
static void check_all(Item *head, const int *want, size_t n) {
        Item *prev = NULL;
        size_t k = 0;

        LIST_FOREACH(all, i, head) {
                ASSERT_TRUE(k < n);
                ASSERT_EQ(i->value, want[k]);
                ASSERT_TRUE(i->all_prev == prev);
                prev = i;
                k++;
        }
        ASSERT_EQ(k, n);
}

static void test_prepend_remove(void) {
        LIST_HEAD(Item, head) = NULL;
        Item it[4] = { { .value = 0 }, { .value = 1 }, { .value = 2 }, { .value = 3 } };

        check_all(head, NULL, 0);
        for (size_t i = 0; i < ELEMENTSOF(it); i++) {
                ASSERT_FALSE(LIST_IS_LINKED(all, head, &it[i]));
                ASSERT_TRUE(LIST_PREPEND(all, head, &it[i]) == &it[i]);
                ASSERT_TRUE(LIST_IS_LINKED(all, head, &it[i]));
        }
        check_all(head, (const int[]) { 3, 2, 1, 0 }, 4);

        /* middle */
        ASSERT_TRUE(LIST_REMOVE(all, head, &it[2]) == &it[2]);
        ASSERT_TRUE(it[2].all_next == NULL && it[2].all_prev == NULL);
        ASSERT_FALSE(LIST_IS_LINKED(all, head, &it[2]));
        check_all(head, (const int[]) { 3, 1, 0 }, 3);

        /* head */
        LIST_REMOVE(all, head, &it[3]);
        ASSERT_TRUE(head == &it[1]);
        check_all(head, (const int[]) { 1, 0 }, 2);

        /* tail */
        LIST_REMOVE(all, head, &it[0]);
        ASSERT_TRUE(it[1].all_next == NULL);
        check_all(head, (const int[]) { 1 }, 1);

        /* last one */
        LIST_REMOVE(all, head, &it[1]);
        ASSERT_TRUE(head == NULL);
        ASSERT_FALSE(LIST_IS_LINKED(all, head, &it[1]));

        /* An unlinked item can be linked again. */
        LIST_PREPEND(all, head, &it[2]);
        check_all(head, (const int[]) { 2 }, 1);
}

static void test_two_lists(void) {
        LIST_HEAD(Item, all) = NULL;
        LIST_HEAD(Item, odd) = NULL;
        Item it[5];
        int n = 0;

        for (int i = 0; i < 5; i++) {
                it[i] = (Item) { .value = i };
                LIST_PREPEND(all, all, &it[i]);
                if (i % 2)
                        LIST_PREPEND(odd, odd, &it[i]);
        }
        LIST_FOREACH(odd, i, odd) {
                ASSERT_EQ(i->value % 2, 1);
                n++;
        }
        ASSERT_EQ(n, 2);

        /* Leaving one list does not touch the other's links. */
        LIST_REMOVE(odd, odd, &it[3]);
        ASSERT_TRUE(LIST_IS_LINKED(all, all, &it[3]));
        ASSERT_FALSE(LIST_IS_LINKED(odd, odd, &it[3]));
        check_all(all, (const int[]) { 4, 3, 2, 1, 0 }, 5);
        ASSERT_TRUE(odd == &it[1] && it[1].odd_next == NULL && it[1].odd_prev == NULL);
}

static void test_foreach_remove_current(void) {
        LIST_HEAD(Item, head) = NULL;
        int seen = 0;

        for (int i = 0; i < 6; i++) {
                Item *x = new0(Item, 1);

                ASSERT_TRUE(x);
                x->value = i;
                LIST_PREPEND(all, head, x);
        }

        /* Remove and free every even item while walking: the walk still visits all six. */
        LIST_FOREACH(all, i, head) {
                seen++;
                if (i->value % 2 == 0) {
                        LIST_REMOVE(all, head, i);
                        free(i);
                }
        }
        ASSERT_EQ(seen, 6);
        check_all(head, (const int[]) { 5, 3, 1 }, 3);

        LIST_FOREACH(all, i, head) {
                LIST_REMOVE(all, head, i);
                free(i);
        }
        ASSERT_TRUE(head == NULL);
}

int main(void) {
        TEST(test_prepend_remove);
        TEST(test_two_lists);
        TEST(test_foreach_remove_current);
        return 0;
}
