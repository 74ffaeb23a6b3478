/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client/internal/errors.c and NOIOMMU_ERROR_TABLE (protocol.h): the one error-name <-> errno
 * table. Checks the table itself (every protocol error name is in it exactly once, with a real
 * errno and a meaning), the lookups, and that the two places that list it for people,
 * include/noiommu/noiommu.h and docs/libnoiommu.md, say exactly what the table says.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal/errors.h"
#include "internal/json-util.h"
#include "internal/macro.h"
#include "noiommu/protocol.h"
#include "tests.h"

/* Every error name protocol.h defines. A new NOIOMMU_ERROR_* without a table entry fails here. */
static const char *const all_names[] = {
        NOIOMMU_ERROR_NO_SUCH_DEVICE, NOIOMMU_ERROR_DEVICE_BUSY, NOIOMMU_ERROR_DEVICE_QUARANTINED,
        NOIOMMU_ERROR_PERMISSION_DENIED, NOIOMMU_ERROR_INTERACTIVE_AUTH_REQUIRED,
        NOIOMMU_ERROR_NOT_SUPPORTED, NOIOMMU_ERROR_OUT_OF_MEMORY, NOIOMMU_ERROR_LIMIT_EXCEEDED,
        NOIOMMU_ERROR_NO_SUCH_LEASE, NOIOMMU_ERROR_NO_SUCH_MEMORY,
        NOIOMMU_ERROR_PROTOCOL_VIOLATION, NOIOMMU_ERROR_INTERNAL,
        VARLINK_ERROR_INVALID_PARAMETER, VARLINK_ERROR_METHOD_NOT_FOUND,
        VARLINK_ERROR_INTERFACE_NOT_FOUND, VARLINK_ERROR_METHOD_NOT_IMPLEMENTED,
        VARLINK_ERROR_EXPECTED_MORE,
};

/* The errnos the table may use, by name, as the documents spell them. */
static const char *errno_name(int e) {
        switch (e) {
        case EACCES:       return "EACCES";
        case EKEYREJECTED: return "EKEYREJECTED";
        case ENOMEM:       return "ENOMEM";
        case EUSERS:       return "EUSERS";
        case ENOENT:       return "ENOENT";
        case EOPNOTSUPP:   return "EOPNOTSUPP";
        case EBUSY:        return "EBUSY";
        case EIO:          return "EIO";
        case EINVAL:       return "EINVAL";
        case EPROTO:       return "EPROTO";
        default:           return NULL;
        }
}

static void test_table(void) {
        ASSERT_EQ(varlink_error_table_size, ELEMENTSOF(all_names));
        for (size_t i = 0; i < varlink_error_table_size; i++) {
                const VarlinkErrorInfo *e = &varlink_error_table[i];
                size_t n = strlen(e->meaning);

                ASSERT_TRUE(e->error > 0);
                ASSERT_TRUE(errno_name(e->error) != NULL);
                ASSERT_TRUE(n > 10 && n < 100);
                ASSERT_TRUE(e->meaning[n - 1] != '.');
                for (size_t j = i + 1; j < varlink_error_table_size; j++)
                        ASSERT_TRUE(!streq(e->name, varlink_error_table[j].name));
        }
        for (size_t i = 0; i < ELEMENTSOF(all_names); i++)
                ASSERT_TRUE(varlink_error_lookup(all_names[i]) != NULL);
}

static void test_lookup(void) {
        /* The mapping libnoiommu has always documented. */
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_PERMISSION_DENIED), EACCES);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_INTERACTIVE_AUTH_REQUIRED), EKEYREJECTED);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_OUT_OF_MEMORY), ENOMEM);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_LIMIT_EXCEEDED), EUSERS);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_NO_SUCH_MEMORY), ENOENT);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_NO_SUCH_LEASE), ENOENT);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_NO_SUCH_DEVICE), ENOENT);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_NOT_SUPPORTED), EOPNOTSUPP);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_DEVICE_BUSY), EBUSY);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_DEVICE_QUARANTINED), EIO);
        ASSERT_ERROR(varlink_error_to_errno(VARLINK_ERROR_INVALID_PARAMETER), EINVAL);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_PROTOCOL_VIOLATION), EPROTO);
        ASSERT_ERROR(varlink_error_to_errno(NOIOMMU_ERROR_INTERNAL), EIO);

        /* Unknown names: a newer daemon's error is -EIO, never a crash or 0. */
        ASSERT_TRUE(varlink_error_lookup("io.noiommud.Broker.SomethingNew") == NULL);
        ASSERT_ERROR(varlink_error_to_errno("io.noiommud.Broker.SomethingNew"), EIO);
        ASSERT_ERROR(varlink_error_to_errno(""), EIO);
        ASSERT_ERROR(varlink_error_to_errno(NULL), EIO);
        /* exact match only */
        ASSERT_TRUE(varlink_error_lookup("io.noiommud.Broker.DeviceBusyX") == NULL);
        ASSERT_TRUE(varlink_error_lookup("io.noiommud.Broker.devicebusy") == NULL);
}

static char *read_source(const char *relative) {
        const char *root = getenv("NOIOMMU_SOURCE_ROOT") ?: ".";
        char path[4096];
        char *buf;
        FILE *f;
        long n;

        (void) snprintf(path, sizeof(path), "%s/%s", root, relative);
        f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "cannot open %s: %m\n", path);
                abort();
        }
        ASSERT_EQ(fseek(f, 0, SEEK_END), 0);
        n = ftell(f);
        ASSERT_TRUE(n > 0);
        rewind(f);
        buf = malloc((size_t) n + 1);
        ASSERT_TRUE(buf != NULL);
        ASSERT_EQ(fread(buf, 1, (size_t) n, f), (size_t) n);
        buf[n] = 0;
        fclose(f);
        return buf;
}

/* The line of "text" that names "name" as a whole word (followed by a space, '`' or ','),
 * copied into line; false if there is none. */
static bool find_line(const char *text, const char *name, char *line, size_t size) {
        for (const char *p = text; (p = strstr(p, name)); p++) {
                const char *start, *end;
                char after = p[strlen(name)];

                if (after != ' ' && after != '`')
                        continue;
                start = p;
                while (start > text && start[-1] != '\n')
                        start--;
                end = strchrnul(p, '\n');
                ASSERT_TRUE((size_t) (end - start) < size);
                memcpy(line, start, (size_t) (end - start));
                line[end - start] = 0;
                return true;
        }
        return false;
}

/* Each table entry is listed on its own line, with exactly its errno. */
static void check_document(const char *relative, const char *before, const char *after) {
        char *text = read_source(relative);

        for (size_t i = 0; i < varlink_error_table_size; i++) {
                const VarlinkErrorInfo *e = &varlink_error_table[i];
                char line[1024], want[64];

                if (!find_line(text, e->name, line, sizeof(line))) {
                        fprintf(stderr, "%s does not list %s\n", relative, e->name);
                        abort();
                }
                (void) snprintf(want, sizeof(want), "%s-%s%s", before, errno_name(e->error), after);
                if (!strstr(line, want)) {
                        fprintf(stderr, "%s lists %s without %s: %s\n", relative, e->name, want, line);
                        abort();
                }
                /* and with no other errno of the table on the same line */
                for (size_t j = 0; j < varlink_error_table_size; j++) {
                        char other[64];

                        if (varlink_error_table[j].error == e->error)
                                continue;
                        (void) snprintf(other, sizeof(other), "%s-%s%s", before,
                                        errno_name(varlink_error_table[j].error), after);
                        if (strstr(line, other)) {
                                fprintf(stderr, "%s lists %s with %s too: %s\n", relative,
                                        e->name, other, line);
                                abort();
                        }
                }
        }
        free(text);
}

static void test_documents(void) {
        check_document("include/noiommu/noiommu.h", " ", "");
        check_document("docs/libnoiommu.md", "`", "`");
}

int main(void) {
        TEST(test_table);
        TEST(test_lookup);
        TEST(test_documents);
        return EXIT_SUCCESS;
}
