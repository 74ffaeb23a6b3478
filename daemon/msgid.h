/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * MESSAGE_IDs of the daemon's structured journal records, made once with `systemd-id128 new`
 * style random ids. Each one is explained in policy/noiommud.catalog; never reuse or change one.
 */
#pragma once

#define NOIOMMU_MSGID_STARTED            "38cebcbb96544ebe9abf9652cb4714f8"
#define NOIOMMU_MSGID_STOPPING           "e959d3c82bb042319afadf7fafeb66fc"
#define NOIOMMU_MSGID_RELOADED           "2ad13f7db0104e27b0b1282f6779b407"
#define NOIOMMU_MSGID_AUTHZ_GRANTED      "d47c8c874ce64ff8a512515a5d5f8140"
#define NOIOMMU_MSGID_AUTHZ_DENIED       "d7c4ecad032c446aae7a40f4dca40318"
#define NOIOMMU_MSGID_POLICY_UNAVAILABLE "023270ad42794ad38b3f073a782f030b"
#define NOIOMMU_MSGID_MEMORY_GRANTED     "1346db795bae46f78ff04d55c60fc21a"
#define NOIOMMU_MSGID_MEMORY_FREED       "0e0a5b7b75c54899976cdd07fabb9955"
#define NOIOMMU_MSGID_PROTOCOL_VIOLATION "e32d64dc2d514ff2b3e20b381ac2f315"
#define NOIOMMU_MSGID_LIMIT_EXCEEDED     "72bcb8840e864ea7bb9481692fe176aa"
#define NOIOMMU_MSGID_LEASE_GRANTED      "e2e0aadb10f7467d89c36b9ea5f0dc3e"
#define NOIOMMU_MSGID_LEASE_RELEASED     "2658388575824c0b83292a993bd3a9e5"
#define NOIOMMU_MSGID_LEASE_RECLAIMED    "002c020ea778428f9da4d800611fee5e"
#define NOIOMMU_MSGID_LEASE_QUIESCED    "5d7a3a3c86c94d6b8f0fb4c1e2a7d913"
#define NOIOMMU_MSGID_QUIESCE_FAILED     "ee4fd76325df43f984e4f1544850fff4"
#define NOIOMMU_MSGID_LEASE_BROKEN       "041807be23704ec5b55b0189a913665a"
