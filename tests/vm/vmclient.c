/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmclient: the daemon clients' share beyond edu.c (vmclient.h): the lease's memory, moved out
 * of edu.c unchanged when dma-probe started to use edu.c, and the arguments both clients take.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "vmclient.h"

/* ---- the memory the lease grants ------------------------------------------------------------- */

/* The DMA address of [offset, offset + len) if one segment covers it whole. */
bool dma_address_of(const noiommu_memory *m, uint64_t offset, uint64_t len, uint64_t *ret) {
        const noiommu_segment *s;
        size_t n;

        s = noiommu_memory_get_segments(m, &n);
        for (size_t i = 0; i < n; i++)
                if (offset >= s[i].offset && offset - s[i].offset <= s[i].length &&
                    len <= s[i].length - (offset - s[i].offset)) {
                        *ret = s[i].dma_address + (offset - s[i].offset);
                        return true;
                }
        return false;
}

/* RAM (SRC_OFFSET) -> edu -> RAM (DST_OFFSET), completion by MSI; every byte compared. */
bool roundtrip(Edu *e, noiommu_memory *m, uint8_t seed) {
        volatile uint8_t *buf = noiommu_memory_get_address(m);
        uint64_t src, dst, t0 = now_usec();
        int r;

        if (!check(dma_address_of(m, SRC_OFFSET, DMA_LEN, &src) && dma_address_of(m, DST_OFFSET, 0x1000, &dst),
                   "the segment table covers both DMA windows"))
                return false;

        for (size_t i = 0; i < DMA_LEN; i++)
                buf[SRC_OFFSET + i] = pattern(i, seed);
        for (size_t i = 0; i < 0x1000; i++)
                buf[DST_OFFSET + i] = 0x5a;
        __atomic_thread_fence(__ATOMIC_SEQ_CST);

        dma_start(e, src, EDU_BUF_ADDR, DMA_LEN, 0);
        r = dma_wait(e);
        if (!check(r >= 0, "DMA RAM (dmaAddress 0x%" PRIx64 ", offset 0x%" PRIx64 ") -> edu, %u bytes: done in %d ms",
                   src, SRC_OFFSET, DMA_LEN, r))
                return false;

        dma_start(e, EDU_BUF_ADDR, dst, DMA_LEN, EDU_DMA_TO_RAM | EDU_DMA_IRQ);
        r = irq_wait(e);
        check(r >= 0, "MSI for the edu -> RAM completion arrived on the eventfd (%d ms)", r);
        r = dma_wait(e);
        if (!check(r >= 0, "DMA edu -> RAM (dmaAddress 0x%" PRIx64 ", offset 0x%" PRIx64 "), %u bytes: done",
                   dst, DST_OFFSET, DMA_LEN))
                return false;
        check(edu_rd32(e, EDU_REG_IRQ_STATUS) & EDU_IRQ_DMA, "interrupt status holds 0x%x (DMA done)", EDU_IRQ_DMA);
        edu_wr32(e, EDU_REG_IRQ_ACK, EDU_IRQ_DMA);

        __atomic_thread_fence(__ATOMIC_SEQ_CST);
        for (size_t i = 0; i < DMA_LEN; i++)
                if (buf[DST_OFFSET + i] != pattern(i, seed))
                        return check(false, "the %u bytes landed at offset 0x%" PRIx64 ": first mismatch at +%zu: 0x%02x, want 0x%02x",
                                     DMA_LEN, DST_OFFSET, i, buf[DST_OFFSET + i], pattern(i, seed));
        for (size_t i = DMA_LEN; i < 0x1000; i++)
                if (buf[DST_OFFSET + i] != 0x5a)
                        return check(false, "the bytes after the transfer are untouched: +%zu changed", i);
        check(true, "the %u bytes landed at offset 0x%" PRIx64 ", nothing beyond them changed (round trip %" PRIu64 " ms)",
              DMA_LEN, DST_OFFSET, (now_usec() - t0) / 1000U);
        return true;
}

/* ---- arguments ------------------------------------------------------------------------------- */

static int client_arg(ClientArgs *a, int argc, char **argv, int *i) {
        const char *s = argv[*i];

        if (!strcmp(s, "--expect-backend") && *i + 1 < argc)
                a->expect_backend = argv[++*i];
        else if (!strcmp(s, "--tag") && *i + 1 < argc)
                tag = argv[++*i];
        else if (s[0] != '-' && !a->socket)
                a->socket = s;
        else if (s[0] != '-' && !a->bdf)
                a->bdf = s;
        else
                return 0;
        return 1;
}

int parse_client_args(int argc, char **argv, ClientArgs *a, client_option_fn own, void *userdata) {
        for (int i = 1; i < argc; i++)
                if (!client_arg(a, argc, argv, &i) && !own(userdata, argc, argv, &i))
                        return -EINVAL;
        return a->socket && a->bdf ? 0 : -EINVAL;
}
