/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The protocol's error names and their errnos: NOIOMMU_ERROR_TABLE (include/noiommu/protocol.h)
 * as data, for libnoiommu (reply -> errno), noiommuctl (name -> sentence) and, later, the daemon.
 */
#pragma once

#include <stddef.h>

typedef struct VarlinkErrorInfo {
        const char *name;       /* "io.noiommud.Broker.DeviceBusy" */
        int error;              /* positive errno libnoiommu returns negated: EBUSY */
        const char *meaning;    /* one line, no trailing period */
} VarlinkErrorInfo;

extern const VarlinkErrorInfo varlink_error_table[];
extern const size_t varlink_error_table_size;

/* The table's entry for an error name, or NULL for a name it does not know. */
const VarlinkErrorInfo *varlink_error_lookup(const char *name);

/* The negative errno for an error name: -EIO for names the table does not know (a newer
 * daemon's error; InternalError is -EIO too). */
int varlink_error_to_errno(const char *name);
