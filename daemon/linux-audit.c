/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* See linux-audit.h. Built when libaudit is found. */
#include <errno.h>
#include <libaudit.h>

#include "internal/macro.h"
#include "linux-audit.h"

static int audit_fd = -EBADF;

static const int type_table[_LINUX_AUDIT_TYPE_MAX] = {
        [LINUX_AUDIT_USER_ACCT] = AUDIT_USER_ACCT,
        [LINUX_AUDIT_DEV_ALLOC] = AUDIT_DEV_ALLOC,
        [LINUX_AUDIT_DEV_DEALLOC] = AUDIT_DEV_DEALLOC,
};

int linux_audit_open(void) {
        if (audit_fd >= 0)
                return 0;
        audit_fd = audit_open();
        if (audit_fd < 0) {
                audit_fd = -EBADF;
                return negative_errno();
        }
        return 0;
}

void linux_audit_close(void) {
        if (audit_fd >= 0)
                audit_close(audit_fd);
        audit_fd = -EBADF;
}

bool linux_audit_is_open(void) {
        return audit_fd >= 0;
}

int linux_audit_log(LinuxAuditType type, const char *msg, bool success) {
        if (type < 0 || type >= _LINUX_AUDIT_TYPE_MAX)
                return -EINVAL;
        if (audit_fd < 0)
                return -EBADF;
        /* The hostname, address and tty arguments are NULL: the record is about the daemon's
         * client, which msg names; libaudit fills in the daemon's own exe. > 0 is success. */
        errno = 0;
        if (audit_log_user_message(audit_fd, type_table[type], msg, NULL, NULL, NULL, success ? 1 : 0) > 0)
                return 0;
        return negative_errno();
}

char *linux_audit_encode_field(const char *name, const char *value) {
        return audit_encode_nv_string(name, value, 0);
}
