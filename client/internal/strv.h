/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NULL-terminated string vectors ("strv"), in systemd's dialect. A NULL strv and an empty one
 * ({ NULL }) mean the same everywhere here: no strings.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "macro.h"

/* Frees every string and the vector; returns NULL, so callers can write l = strv_free(l). */
char **strv_free(char **l);
DEFINE_TRIVIAL_CLEANUP_FUNC(char **, strv_free);
#define _cleanup_strv_free_ _cleanup_(strv_freep)

size_t strv_length(char * const *l);

/* A deep copy; NULL is copied as an empty vector, so the result is NULL only on ENOMEM. */
char **strv_copy(char * const *l);

/* Appends a copy of value. On ENOMEM *l is unchanged. */
int strv_extend(char ***l, const char *value);

bool strv_contains(char * const *l, const char *value);

/* Same strings in the same order (NULL equals empty). */
bool strv_equal(char * const *a, char * const *b);
