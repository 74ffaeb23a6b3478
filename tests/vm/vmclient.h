/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vmclient: what the vm tier's daemon clients (edu-client.c, hostile-client.c) share on top of
 * edu.h: the memory a lease grants, edu DMA into it at the reported dmaAddress, and the
 * arguments both take. Needs
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

/* The arguments every client takes: SOCKET BDF (the first two non-options), --expect-backend
 * NAME, --tag NAME (sets tag). */
typedef struct ClientArgs {
        const char *socket;
        const char *bdf;
        const char *expect_backend;
} ClientArgs;

/* A client's own options: 1 if it took argv[*i] (*i then past its value), 0 if it is not one. */
typedef int (*client_option_fn)(void *userdata, int argc, char **argv, int *i);

/* Parses argv[1..]: the common arguments into a, the rest through own. 0, or -EINVAL for an
 * argument nobody takes or without SOCKET BDF. */
int parse_client_args(int argc, char **argv, ClientArgs *a, client_option_fn own, void *userdata);
