/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The variables of the "noiommuctl run" protocol (noiommu.h, docs/libnoiommu.md), as both of its
 * ends see them: noiommuctl clears what it inherited before it describes its own lease, and
 * noiommu_from_environment() clears them after adopting. Client side only.
 */

#include <stdbool.h>
#include <stddef.h>

/* Whether name (the part of "NAME=value" before '=', n bytes) is a variable of the protocol:
 * NOIOMMU_PID, NOIOMMU_FDS, NOIOMMU_FD_NAMES, NOIOMMU_LEASE, NOIOMMU_DEVICE_* and
 * NOIOMMU_MEMORY_* (any of those: stale ones, of a higher memory index or a field this version
 * does not know, must go as well). */
bool run_env_is_protocol_variable(const char *name, size_t n);

/* Unsets every variable of the protocol. */
void run_env_unset_all(void);
