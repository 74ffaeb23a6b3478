/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmclient: what the vm tier's daemon clients (edu-client.c, hostile-client.c) share on top of
 * edu.h: the memory a lease grants and edu DMA into it at the reported dmaAddress. Needs
 * libnoiommu (dma-probe, which has none, uses edu.h alone).
 *
 * roundtrip() is the proof that DMA lands: RAM -> edu from SRC_OFFSET, edu -> RAM to DST_OFFSET
 * with an MSI on completion, every byte compared through the client's own mapping.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "edu.h"
#include "noiommu/noiommu.h"

#define MEM_SIZE                (UINT64_C(2) << 20)
#define SRC_OFFSET              UINT64_C(0x1000)        /* RAM -> edu reads here */
#define DST_OFFSET              UINT64_C(0x100000)      /* edu -> RAM writes here (1 MiB in) */

/* The memory. */
bool dma_address_of(const noiommu_memory *m, uint64_t offset, uint64_t len, uint64_t *ret);
bool roundtrip(Edu *e, noiommu_memory *m, uint8_t seed);
