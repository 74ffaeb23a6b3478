/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The Linux audit subsystem, through libaudit: the only calls into libaudit the daemon makes.
 * daemon/meson.build builds linux-audit.c when libaudit is found and linux-audit-fallback.c
 * (no audit at all) when it is not, so record.c, which decides what is recorded and what a
 * failure means, has no #if (the file swap of dbus-broker's util/audit.c and audit-fallback.c).
 *
 * These functions never log: record.c does, once, knowing what a failure means for a grant.
 * A leaf (layer 0) that owns the audit netlink fd (audit_open()).
 */
#pragma once

#include <errno.h>
#include <stdbool.h>

typedef enum LinuxAuditType {
        LINUX_AUDIT_USER_ACCT,          /* AUDIT_USER_ACCT: an authorization decision */
        LINUX_AUDIT_DEV_ALLOC,          /* AUDIT_DEV_ALLOC: a device lease granted */
        LINUX_AUDIT_DEV_DEALLOC,        /* AUDIT_DEV_DEALLOC: a device lease ended or quarantined */
        _LINUX_AUDIT_TYPE_MAX,
        _LINUX_AUDIT_TYPE_INVALID = -EINVAL,
} LinuxAuditType;

/* Opens the audit netlink socket. 0: open. -EOPNOTSUPP: built without libaudit (socket(2) on
 * NETLINK_AUDIT does not fail with it). Otherwise audit_open()'s errno, negated:
 * EPROTONOSUPPORT/EAFNOSUPPORT/EINVAL (no CONFIG_AUDIT) or ECONNREFUSED (a user namespace) mean
 * "no audit here". */
int linux_audit_open(void);
void linux_audit_close(void);
bool linux_audit_is_open(void);

/* Writes one user-space record of type with the text msg and res=success or res=failed, and
 * reads the kernel's verdict on it: one sendto() and one non-blocking recvfrom(), never a wait
 * (the kernel answers before the send returns; linux-audit.c says where). The kernel stamps it
 * with the daemon's own pid, uid and auid. Returns 0, or the negative errno: -EBADF when not
 * open, -ECONNREFUSED inside a user namespace, -EPERM without CAP_AUDIT_WRITE, -ENOBUFS when the
 * verdict was lost, -EIO when none was there, ... */
int linux_audit_log(LinuxAuditType type, const char *msg, bool success);

/* "name=value" as an audit field: value quoted, or hex-encoded when it holds a space, quote or
 * control character (audit_encode_nv_string()), so a name a client chose cannot forge fields.
 * NULL on ENOMEM, and always without libaudit (the field is then left out). free() the result. */
char *linux_audit_encode_field(const char *name, const char *value);

/* The socket's life and the writes, as a table (backend.h: backend_ops_system has the functions
 * above, a test its fake): record.c writes through the one record_setup() was given. */
typedef struct LinuxAuditOps {
        int (*open)(void);
        void (*close)(void);
        bool (*is_open)(void);
        int (*log)(LinuxAuditType type, const char *msg, bool success);
} LinuxAuditOps;
