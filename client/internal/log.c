/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See log.h. %m in a format expands to strerror(error) of the error passed in, not to whatever
 * errno happens to be, because errno is set to that error before formatting.
 *
 * Built twice (client/meson.build): with NOIOMMU_LOG_JOURNAL=1 for the daemon, which may write
 * to the journal, and with NOIOMMU_LOG_JOURNAL=0 for libnoiommu.so and noiommuctl, which must
 * not need libsystemd (minimal container images have none). Without the journal writer,
 * LOG_TARGET_JOURNAL and LOG_TARGET_AUTO mean stderr.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef NOIOMMU_LOG_JOURNAL
#define NOIOMMU_LOG_JOURNAL 1
#endif

#if NOIOMMU_LOG_JOURNAL
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <systemd/sd-journal.h>
#endif

#include "log.h"

static const char *log_ident = "noiommu";
static LogTarget log_target = LOG_TARGET_STDERR;
static int log_max_level = LOG_INFO;

/* Whether stderr is connected to the journal already (systemd sets $JOURNAL_STREAM to the
 * "dev:inode" of the stream it connected to stderr). */
static bool log_stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == (dev_t) dev && st.st_ino == (ino_t) ino;
}

void log_setup(const char *ident, LogTarget target) {
        const char *e;

        if (ident)
                log_ident = ident;

#if NOIOMMU_LOG_JOURNAL
        if (target == LOG_TARGET_AUTO)
                target = !log_stderr_is_journal() && access("/run/systemd/journal/socket", W_OK) == 0
                                 ? LOG_TARGET_JOURNAL
                                 : LOG_TARGET_STDERR;
#else
        target = LOG_TARGET_STDERR;
#endif
        log_target = target;

        e = getenv("NOIOMMU_LOG_LEVEL");
        if (e) {
                if (streq(e, "debug"))
                        log_max_level = LOG_DEBUG;
                else if (streq(e, "info"))
                        log_max_level = LOG_INFO;
                else if (streq(e, "notice"))
                        log_max_level = LOG_NOTICE;
                else if (streq(e, "warning"))
                        log_max_level = LOG_WARNING;
                else if (streq(e, "err"))
                        log_max_level = LOG_ERR;
        }
}

void log_set_max_level(int level) {
        log_max_level = level;
}

int log_get_max_level(void) {
        return log_max_level;
}

int log_internal(int level, int error, const char *file, int line, const char *func,
                 const char *format, ...) {
        char buf[2048];
        va_list ap;
        int saved = errno;

        error = abs(error);

        errno = error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

#if NOIOMMU_LOG_JOURNAL
        if (log_target == LOG_TARGET_JOURNAL) {
                char code_file[512], code_line[32];

                (void) snprintf(code_file, sizeof(code_file), "CODE_FILE=%s", file);
                (void) snprintf(code_line, sizeof(code_line), "CODE_LINE=%i", line);
                if (error > 0)
                        (void) sd_journal_send_with_location(code_file, code_line, func,
                                                             "MESSAGE=%s", buf,
                                                             "PRIORITY=%i", level,
                                                             "ERRNO=%i", error,
                                                             "SYSLOG_IDENTIFIER=%s", log_ident,
                                                             NULL);
                else
                        (void) sd_journal_send_with_location(code_file, code_line, func,
                                                             "MESSAGE=%s", buf,
                                                             "PRIORITY=%i", level,
                                                             "SYSLOG_IDENTIFIER=%s", log_ident,
                                                             NULL);
        } else
#endif
        if (log_stderr_is_journal())
                /* stderr is a journal stream: a "<N>" prefix sets the priority of the line. */
                (void) fprintf(stderr, "<%i>%s\n", level, buf);
        else
                (void) fprintf(stderr, "%s: %s\n", log_ident, buf);

        errno = saved;
        return -error;
}
