/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The CMD of `noiommuctl run --memory SIZE -- ctest-dma-user` in the container tests
 * (tests/containers/test-run.py): adopts what noiommuctl passed (noiommu_from_environment()),
 * writes a pattern into every 4 KiB page of every memory object and reads it back, prints one
 * JSON line describing the memory (id, size, the address it is mapped at, the segment table) and
 * the pattern, then keeps everything until stdin reaches EOF, so that the host can check the
 * mapping against /proc/PID/pagemap and read the pattern through /proc/PID/mem meanwhile.
 * Exit status: 0 ok, 1 nothing adopted or an error, 2 the memory did not read back. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <noiommu/noiommu.h>

#define PAGE 4096

static uint64_t pattern(uint64_t i, uint64_t off) {
        return 0x6e6f696f6d6d7500ULL ^ (i << 48) ^ off;
}

int main(void) {
        noiommu_conn *c = NULL;
        noiommu_memory **mem = NULL;
        size_t n = 0;
        char buf[256];
        int r;

        r = noiommu_from_environment(&c, NULL, &mem, &n);
        if (r <= 0) {
                fprintf(stderr, "ctest-dma-user: noiommu_from_environment: %s\n",
                        r < 0 ? strerror(-r) : "nothing was passed");
                return 1;
        }
        if (n == 0) {
                fprintf(stderr, "ctest-dma-user: no memory was passed\n");
                return 1;
        }
        printf("{\"pid\":%d,\"fd\":%d,\"memory\":[", (int) getpid(), noiommu_conn_get_fd(c));
        for (size_t i = 0; i < n; i++) {
                unsigned char *p = noiommu_memory_get_address(mem[i]);
                uint64_t size = noiommu_memory_get_size(mem[i]);
                const noiommu_segment *s;
                size_t ns = 0;

                for (uint64_t off = 0; off < size; off += PAGE)
                        *(volatile uint64_t *) (p + off) = pattern(i, off);
                for (uint64_t off = 0; off < size; off += PAGE)
                        if (*(volatile uint64_t *) (p + off) != pattern(i, off)) {
                                fprintf(stderr, "ctest-dma-user: memory %zu reads back wrong at %#" PRIx64 "\n",
                                        i, off);
                                return 2;
                        }
                s = noiommu_memory_get_segments(mem[i], &ns);
                printf("%s{\"id\":\"%s\",\"size\":%" PRIu64 ",\"hugepageSize\":%" PRIu64
                       ",\"address\":%" PRIuPTR ",\"pattern\":%" PRIu64 ",\"segments\":[",
                       i ? "," : "", noiommu_memory_get_id(mem[i]), size,
                       noiommu_memory_get_hugepage_size(mem[i]), (uintptr_t) p, pattern(i, 0));
                for (size_t j = 0; j < ns; j++)
                        printf("%s{\"offset\":%" PRIu64 ",\"length\":%" PRIu64 ",\"dmaAddress\":%" PRIu64 "}",
                               j ? "," : "", s[j].offset, s[j].length, s[j].dma_address);
                printf("]}");
        }
        printf("]}\n");
        fflush(stdout);

        while ((r = (int) read(STDIN_FILENO, buf, sizeof(buf))) != 0)
                if (r < 0 && errno != EINTR)
                        break;
        for (size_t i = 0; i < n; i++)
                noiommu_memory_unref(mem[i]);
        free(mem);
        noiommu_disconnect(c);
        return 0;
}
