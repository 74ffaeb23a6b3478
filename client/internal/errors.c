/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "internal/errors.h"
#include "internal/macro.h"
#include "noiommu/protocol.h"

#define ERROR_ENTRY(n, e, m) { .name = n, .error = e, .meaning = m },

const VarlinkErrorInfo varlink_error_table[] = {
        NOIOMMU_ERROR_TABLE(ERROR_ENTRY)
};

const size_t varlink_error_table_size = ELEMENTSOF(varlink_error_table);

const VarlinkErrorInfo *varlink_error_lookup(const char *name) {
        if (!name)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(varlink_error_table); i++)
                if (streq(varlink_error_table[i].name, name))
                        return &varlink_error_table[i];
        return NULL;
}

int varlink_error_to_errno(const char *name) {
        const VarlinkErrorInfo *e = varlink_error_lookup(name);

        return e ? -e->error : -EIO;
}
