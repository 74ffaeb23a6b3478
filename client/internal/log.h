/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Diagnostics. In the daemon these go to the journal (with CODE_FILE/CODE_LINE) when stderr is
 * not already connected to it, otherwise to stderr; in the client and tests to stderr. Events an
 * auditor cares about do not use these: they are structured records written by daemon/record.c.
 *
 * log_*_errno() return the negative errno they were given, so that the deciding caller can write
 * "return log_error_errno(r, "...: %m");" and log exactly once.
 */
#pragma once

#include <stdbool.h>
#include <syslog.h>

#include "macro.h"

/* Where log lines go. LOG_TARGET_AUTO picks the journal when $JOURNAL_STREAM does not match
 * stderr and the journal socket exists, stderr otherwise. */
typedef enum LogTarget {
        LOG_TARGET_AUTO,
        LOG_TARGET_STDERR,
        LOG_TARGET_JOURNAL,
        _LOG_TARGET_MAX,
        _LOG_TARGET_INVALID = -EINVAL,
} LogTarget;

void log_setup(const char *ident, LogTarget target);
void log_set_max_level(int level);
int log_get_max_level(void);

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) _printf_(6, 7);

#define log_full_errno(level, error, ...)                                                       \
        ({                                                                                      \
                int _l_ = (level), _e_ = (error);                                               \
                (_l_ <= log_get_max_level())                                                    \
                        ? log_internal(_l_, _e_, __FILE__, __LINE__, __func__, __VA_ARGS__)     \
                        : -abs(_e_);                                                            \
        })

#define log_debug(...)   log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...)  log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...)   log_full_errno(LOG_ERR, 0, __VA_ARGS__)

#define log_debug_errno(e, ...)   log_full_errno(LOG_DEBUG, e, __VA_ARGS__)
#define log_info_errno(e, ...)    log_full_errno(LOG_INFO, e, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_ERR, e, __VA_ARGS__)
