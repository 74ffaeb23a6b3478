/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * run-adopt: the CMD of "noiommuctl run" in test-ctl-run.py. It adopts what noiommuctl passed
 * with noiommu_from_environment(), writes to every byte of each memory object through its own
 * mapping, and prints what it adopted as one JSON line on stdout: the lease, each memory object
 * with the virtual address of its mapping (the test, as root, reads this process's
 * /proc/PID/pagemap there and compares with the segment table: an unprivileged process sees no
 * PFNs), which NOIOMMU_* variables are left, and which fds are open. Then it reads commands
 * from stdin, one per line, and answers each with one line:
 *
 *   list     ListDevices on the adopted connection: {"devices":N} or {"error":ERRNO}
 *   free I   noiommu_free() of memory I: {"freed":ID} or {"error":ERRNO}
 *   acquire  noiommu_acquire_device(c, NULL, ...), i.e. $NOIOMMUD_DEVICE: {"address":A} or
 *            {"error":ERRNO}; the lease is held until exit
 *   exit     exits 0 (so does EOF)
 *
 * "run-adopt fork" adopts in a child instead, which must fail with -ESRCH (NOIOMMU_PID names
 * the parent); it prints {"forked":ERRNO} and exits.
 *
 * Trusts nothing; it is test code and exits 1 on any surprise.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "noiommu/noiommu.h"

extern char **environ;

static void print_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        bool first = true;

        printf("\"fds\":[");
        while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.' || atoi(de->d_name) == dirfd(d))
                        continue;
                printf("%s%s", first ? "" : ",", de->d_name);
                first = false;
        }
        printf("]");
        if (d)
                closedir(d);
}

static void print_env_left(void) {
        bool first = true;

        printf("\"envLeft\":[");
        for (char **e = environ; *e; e++)
                if (strncmp(*e, "NOIOMMU_", 8) == 0 && strncmp(*e, "NOIOMMU_TEST", 12) != 0 &&
                    strncmp(*e, "NOIOMMU_LOG", 11) != 0) {
                        printf("%s\"%.*s\"", first ? "" : ",", (int) strcspn(*e, "="), *e);
                        first = false;
                }
        printf("]");
}

int main(int argc, char *argv[]) {
        noiommu_conn *c = NULL;
        noiommu_lease *l = NULL;
        noiommu_memory **m = NULL;
        size_t n = 0;
        char line[256];
        int r;

        if (argc > 1 && strcmp(argv[1], "fork") == 0) {
                pid_t pid = fork();
                int status;

                if (pid < 0)
                        return 1;
                if (pid == 0) {
                        r = noiommu_from_environment(&c, &l, &m, &n);
                        printf("{\"forked\":%i}\n", r);
                        return 0;
                }
                if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status))
                        return 1;
                return WEXITSTATUS(status);
        }

        r = noiommu_from_environment(&c, &l, &m, &n);
        if (r <= 0) {
                printf("{\"adopted\":%i,", r);
                print_env_left();
                printf(",");
                print_fds();
                printf("}\n");
                return 0;
        }

        printf("{\"adopted\":%i,\"pid\":%i,\"connFd\":%i,", r, (int) getpid(),
               noiommu_conn_get_fd(c));
        if (l)
                printf("\"lease\":{\"lease\":\"%s\",\"address\":\"%s\",\"backend\":\"%s\","
                       "\"vendorId\":%i,\"deviceId\":%i,\"driver\":\"%s\",\"iommuGroup\":%i,"
                       "\"numaNode\":%i,\"fd\":%i},",
                       noiommu_lease_get_id(l), noiommu_lease_get_address(l),
                       noiommu_lease_get_backend(l), noiommu_lease_get_vendor_id(l),
                       noiommu_lease_get_device_id(l), noiommu_lease_get_driver(l),
                       noiommu_lease_get_iommu_group(l), noiommu_lease_get_numa_node(l),
                       noiommu_lease_get_fd(l));
        else
                printf("\"lease\":null,");
        printf("\"memory\":[");
        for (size_t i = 0; i < n; i++) {
                const noiommu_segment *s;
                unsigned char *p = noiommu_memory_get_address(m[i]);
                uint64_t size = noiommu_memory_get_size(m[i]);
                size_t k;

                /* Every byte writable through our own mapping, and what we wrote reads back. */
                for (uint64_t o = 0; o < size; o++)
                        p[o] = (unsigned char) (o * 7 + i);
                for (uint64_t o = 0; o < size; o += 4096)
                        if (p[o] != (unsigned char) (o * 7 + i))
                                return 1;

                s = noiommu_memory_get_segments(m[i], &k);
                printf("%s{\"memory\":\"%s\",\"size\":%" PRIu64 ",\"hugepageSize\":%" PRIu64
                       ",\"numaNode\":%i,\"addressKind\":\"%s\",\"address\":%" PRIuPTR
                       ",\"fd\":%i,\"segments\":[",
                       i > 0 ? "," : "", noiommu_memory_get_id(m[i]), size,
                       noiommu_memory_get_hugepage_size(m[i]), noiommu_memory_get_numa_node(m[i]),
                       noiommu_address_kind_to_string(noiommu_memory_get_address_kind(m[i])),
                       (uintptr_t) p, noiommu_memory_get_fd(m[i]));
                for (size_t j = 0; j < k; j++)
                        printf("%s{\"offset\":%" PRIu64 ",\"length\":%" PRIu64
                               ",\"dmaAddress\":%" PRIu64 "}", j > 0 ? "," : "", s[j].offset,
                               s[j].length, s[j].dma_address);
                printf("]}");
        }
        printf("],");
        print_env_left();
        printf(",");
        print_fds();
        printf("}\n");
        fflush(stdout);

        while (fgets(line, sizeof(line), stdin)) {
                line[strcspn(line, "\n")] = 0;
                if (strcmp(line, "exit") == 0)
                        break;
                if (strcmp(line, "list") == 0) {
                        noiommu_device_list *d = NULL;

                        r = noiommu_list_devices(c, &d);
                        if (r < 0)
                                printf("{\"error\":%i}\n", -r);
                        else
                                printf("{\"devices\":%zu}\n", noiommu_device_list_get_count(d));
                        noiommu_device_list_free(d);
                } else if (strcmp(line, "acquire") == 0) {
                        noiommu_lease *a = NULL;

                        r = noiommu_acquire_device(c, NULL, 0, &a);
                        if (r < 0)
                                printf("{\"error\":%i}\n", -r);
                        else
                                printf("{\"address\":\"%s\",\"lease\":\"%s\"}\n",
                                       noiommu_lease_get_address(a), noiommu_lease_get_id(a));
                        noiommu_lease_unref(a);
                } else if (strncmp(line, "free ", 5) == 0) {
                        size_t i = (size_t) atoi(line + 5);

                        if (i >= n || !m[i])
                                return 1;
                        printf("{\"freed\":\"%s\"", noiommu_memory_get_id(m[i]));
                        r = noiommu_free(c, m[i]);
                        m[i] = NULL;
                        printf(",\"r\":%i}\n", r);
                } else
                        return 1;
                fflush(stdout);
        }

        for (size_t i = 0; i < n; i++)
                noiommu_memory_unref(m[i]);
        free(m);
        noiommu_lease_unref(l);
        noiommu_disconnect(c);
        return 0;
}
