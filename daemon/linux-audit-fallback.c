/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* See linux-audit.h. Built without libaudit: there is no Linux audit, only the journal. */
#include <errno.h>
#include <stddef.h>

#include "linux-audit.h"

int linux_audit_open(void) {
        return -EOPNOTSUPP;
}

void linux_audit_close(void) {
}

bool linux_audit_is_open(void) {
        return false;
}

int linux_audit_log(LinuxAuditType type, const char *msg, bool success) {
        return -EBADF;
}

char *linux_audit_encode_field(const char *name, const char *value) {
        return NULL;
}
