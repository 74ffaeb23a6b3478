/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Prints the version macros of the public header as a program compiled against it sees them,
 * for check-version.py to compare with libnoiommu.pc, the soname and libnoiommu.sym; checks
 * NOIOMMU_CHECK_VERSION() at compile time, in #if as documented. It calls a function of each
 * API version since 0.3 the way the header's example says, so that it links against libnoiommu
 * and needs the newest symbol version, LIBNOIOMMU_0.4 (test-install.py runs it against the
 * installed library and reads its version needs).
 */
#include <errno.h>
#include <stdio.h>

#include <noiommu/noiommu.h>

#if !NOIOMMU_CHECK_VERSION(NOIOMMU_VERSION_MAJOR, NOIOMMU_VERSION_MINOR, NOIOMMU_VERSION_MICRO)
#error "NOIOMMU_CHECK_VERSION() is false for the headers' own version"
#endif
#if NOIOMMU_CHECK_VERSION(NOIOMMU_VERSION_MAJOR, NOIOMMU_VERSION_MINOR, NOIOMMU_VERSION_MICRO + 1)
#error "NOIOMMU_CHECK_VERSION() is true for the next micro version"
#endif
#if NOIOMMU_CHECK_VERSION(NOIOMMU_VERSION_MAJOR, NOIOMMU_VERSION_MINOR + 1, 0)
#error "NOIOMMU_CHECK_VERSION() is true for the next minor version"
#endif
#if NOIOMMU_CHECK_VERSION(NOIOMMU_VERSION_MAJOR + 1, 0, 0)
#error "NOIOMMU_CHECK_VERSION() is true for the next major version"
#endif
#if !NOIOMMU_CHECK_VERSION(0, 1, 0)
#error "NOIOMMU_CHECK_VERSION(0, 1, 0), the first API, is false"
#endif

int main(void) {
        int r = 0;

#if NOIOMMU_CHECK_VERSION(0, 3, 0)
        r = noiommu_conn_get_fd(NULL);
        if (r != -EINVAL) {
                fprintf(stderr, "noiommu_conn_get_fd(NULL) = %d, expected -EINVAL\n", r);
                return 1;
        }
#endif
#if NOIOMMU_CHECK_VERSION(0, 4, 0)
        if (r == -EINVAL) {
                noiommu_lease *lease = NULL;
                noiommu_memory *memory = NULL;

                r = noiommu_acquire_device_with_memory(NULL, NULL, 0, NULL, 0, NULL, &lease, &memory);
                if (r != -EINVAL) {
                        fprintf(stderr, "noiommu_acquire_device_with_memory(NULL, ...) = %d, expected -EINVAL\n", r);
                        return 1;
                }
        }
#endif
        printf("%d %d %d %s %d %d\n", NOIOMMU_VERSION_MAJOR, NOIOMMU_VERSION_MINOR, NOIOMMU_VERSION_MICRO,
               NOIOMMU_VERSION_STRING, NOIOMMU_VERSION, r);
        return 0;
}
