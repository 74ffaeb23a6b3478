/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * edu: QEMU's edu PCI device (1234:11e8) driven through a VFIO device fd, and the check/info
 * output every vm tier program shares (dma-probe.c, edu-client.c, hostile-client.c).
 *
 * Only libc and VFIO ioctls, no libnoiommu: dma-probe links it statically. Everything goes
 * through a device fd: BAR0 mmap, Bus Master through config region 7, MSI on an eventfd, and
 * edu's DMA engine. What the daemon's clients add on top (the lease's memory, roundtrip(), their
 * common arguments) is in vmclient.h.
 *
 * Output: check() prints "TAG: ok: ..." or "TAG: FAIL: ..." and counts into n_pass/n_fail;
 * info() prints "TAG: ...". The program sets tag before its first line.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EDU_ID_VALUE            0x010000edU
#define EDU_REG_ID              0x00
#define EDU_REG_LIVENESS        0x04
#define EDU_REG_IRQ_STATUS      0x24
#define EDU_REG_IRQ_RAISE       0x60
#define EDU_REG_IRQ_ACK         0x64
#define EDU_REG_DMA_SRC         0x80
#define EDU_REG_DMA_DST         0x88
#define EDU_REG_DMA_COUNT       0x90
#define EDU_REG_DMA_CMD         0x98
#define EDU_DMA_START           0x1
#define EDU_DMA_TO_RAM          0x2     /* direction: 0 = RAM -> edu, 1 = edu -> RAM */
#define EDU_DMA_IRQ             0x4     /* raise IRQ status EDU_IRQ_DMA when done */
#define EDU_IRQ_DMA             0x100
#define EDU_BUF_ADDR            0x40000 /* 4096-byte internal buffer, reachable only by DMA */
/* QEMU 7.2 aborts if a transfer touches the last byte of edu's buffer: offset + count <= 4095. */
#define DMA_LEN                 4000

#define DMA_TIMEOUT_MS          5000
#define IRQ_TIMEOUT_MS          5000

typedef struct Edu {
        int dev_fd;             /* the caller's: never closed here */
        int irq_fd;
        volatile uint8_t *bar;
        size_t bar_size;
        uint64_t cfg_offset;
        uint32_t flags;         /* VFIO_DEVICE_GET_INFO's */
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
static inline uint32_t edu_rd32(Edu *e, unsigned reg) {
        return *(volatile uint32_t *) (e->bar + reg);
}

static inline void edu_wr32(Edu *e, unsigned reg, uint32_t v) {
        *(volatile uint32_t *) (e->bar + reg) = v;
}

int set_bus_master(Edu *e, bool on);
int edu_setup(Edu *e);
void edu_teardown(Edu *e);
int dma_wait(Edu *e);
void dma_start(Edu *e, uint64_t src, uint64_t dst, uint64_t count, uint64_t cmd);
int irq_wait(Edu *e);

/* Memory contents. */
uint8_t pattern(size_t i, uint8_t seed);
long first_nonzero(const volatile uint8_t *p, size_t n);
