/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * edu: QEMU's edu PCI device (1234:11e8) driven through a VFIO device fd, and the check/info
 * output the vm tier's client programs share (edu-client.c, hostile-client.c).
 *
 * Everything here goes through the device fd the daemon sent and the memory it granted:
 * BAR0 mmap, Bus Master through config region 7, MSI on an eventfd, and edu's DMA engine
 * programmed with the dmaAddress of the lease's memory. roundtrip() is the proof that DMA
 * lands: RAM -> edu from SRC_OFFSET, edu -> RAM to DST_OFFSET with an MSI on completion,
 * every byte compared through the client's own mapping.
 *
 * Output: check() prints "TAG: ok: ..." or "TAG: FAIL: ..." and counts into n_pass/n_fail;
 * info() prints "TAG: ...". The program sets tag before its first line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "noiommu/noiommu.h"

#define EDU_ID_VALUE            0x010000edU
#define EDU_REG_ID              0x00
#define EDU_REG_LIVENESS        0x04
#define EDU_REG_IRQ_STATUS      0x24
#define EDU_REG_IRQ_ACK         0x64
#define EDU_REG_DMA_SRC         0x80
#define EDU_REG_DMA_DST         0x88
#define EDU_REG_DMA_COUNT       0x90
#define EDU_REG_DMA_CMD         0x98
#define EDU_DMA_START           0x1
#define EDU_DMA_TO_RAM          0x2
#define EDU_DMA_IRQ             0x4
#define EDU_IRQ_DMA             0x100
#define EDU_BUF_ADDR            0x40000
/* QEMU 7.2 aborts if a transfer touches the last byte of edu's buffer: offset + count <= 4095. */
#define DMA_LEN                 4000

#define MEM_SIZE                (UINT64_C(2) << 20)
#define SRC_OFFSET              UINT64_C(0x1000)        /* RAM -> edu reads here */
#define DST_OFFSET              UINT64_C(0x100000)      /* edu -> RAM writes here (1 MiB in) */

#define DMA_TIMEOUT_MS          5000
#define IRQ_TIMEOUT_MS          5000

typedef struct Edu {
        int dev_fd;             /* borrowed from the lease: never closed here */
        int irq_fd;
        volatile uint8_t *bar;
        size_t bar_size;
        uint64_t cfg_offset;
        bool msi_on;
} Edu;

extern const char *tag;                 /* prefix of every output line */
extern unsigned n_pass, n_fail;         /* check() counts here */

__attribute__((format(printf, 2, 3)))
bool check(bool ok, const char *fmt, ...);
__attribute__((format(printf, 1, 2)))
void info(const char *fmt, ...);
uint64_t now_usec(void);
void sleep_ms(unsigned ms);
const char *errstr(int r);

/* The device. */
int set_bus_master(Edu *e, bool on);
int edu_setup(Edu *e);
void edu_teardown(Edu *e);
int dma_wait(Edu *e);
void dma_start(Edu *e, uint64_t src, uint64_t dst, uint64_t count, uint64_t cmd);
int irq_wait(Edu *e);

/* The memory. */
bool dma_address_of(const noiommu_memory *m, uint64_t offset, uint64_t len, uint64_t *ret);
uint8_t pattern(size_t i, uint8_t seed);
long first_nonzero(const volatile uint8_t *p, size_t n);
bool roundtrip(Edu *e, noiommu_memory *m, uint8_t seed);
