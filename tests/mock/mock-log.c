/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfio-mock, the event log: one line per kernel event, "SEQ EVENT key=value ...", appended to
 * NOIOMMU_MOCK_LOG with one O_APPEND write() per line, so that the lines of the processes
 * sharing the file (daemon, restarted daemon, clients) are not mixed. The whole mock is described at the top of vfio-mock.c.
 */
#include "mock.h"

char log_path[PATH_MAX];
static unsigned long log_seq;

__attribute__((format(printf, 1, 2)))
void mlog(const char *format, ...) {
        char line[1024];
        va_list ap;
        int n, k, fd;

        if (!log_path[0])
                return;

        pthread_mutex_lock(&lock);
        n = snprintf(line, sizeof(line), "%lu ", ++log_seq);
        va_start(ap, format);
        k = vsnprintf(line + n, sizeof(line) - (size_t) n - 1, format, ap);
        va_end(ap);
        if (k < 0)
                k = 0;
        n = (int) strlen(line);
        line[n++] = '\n';

        fd = REAL(open)(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
                (void) !write(fd, line, (size_t) n);   /* O_APPEND: one line, one write */
                REAL(close)(fd);
        }
        pthread_mutex_unlock(&lock);
}
