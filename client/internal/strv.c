/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strv.h"

char **strv_free(char **l) {
        for (char **i = l; i && *i; i++)
                free(*i);
        free(l);
        return NULL;
}

size_t strv_length(char * const *l) {
        size_t n = 0;

        while (l && l[n])
                n++;
        return n;
}

char **strv_copy(char * const *l) {
        _cleanup_strv_free_ char **c = NULL;
        size_t n = strv_length(l);

        c = new0(char *, n + 1);
        if (!c)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                c[i] = strdup(l[i]);
                if (!c[i])
                        return NULL;    /* c[i] is NULL, so the cleanup frees c[0..i) */
        }
        return TAKE_PTR(c);
}

int strv_extend(char ***l, const char *value) {
        _cleanup_free_ char *v = NULL;
        size_t n = strv_length(*l);
        char **nl;

        v = strdup(value);
        if (!v)
                return -ENOMEM;
        /* Allocate before touching *l: a failed realloc() leaves the old vector valid. */
        nl = realloc(*l, sizeof(char *) * (n + 2));
        if (!nl)
                return -ENOMEM;
        nl[n] = TAKE_PTR(v);
        nl[n + 1] = NULL;
        *l = nl;
        return 0;
}

bool strv_contains(char * const *l, const char *value) {
        for (char * const *i = l; i && *i; i++)
                if (streq(*i, value))
                        return true;
        return false;
}

bool strv_equal(char * const *a, char * const *b) {
        size_t i;

        for (i = 0; a && a[i] && b && b[i]; i++)
                if (!streq(a[i], b[i]))
                        return false;
        return (!a || !a[i]) && (!b || !b[i]);
}
