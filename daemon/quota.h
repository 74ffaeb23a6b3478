/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What pinned DMA memory is held, in total and per uid (a leaf, layer 0): the one set of
 * counters the limits (manager.h, security.md §7.1) are checked against. A Region charges its
 * Quota when it is created and uncharges it in its destructor, whichever container (client,
 * lease, adopted by a lease, quarantined) it sits in meanwhile: memory counts for as long as it
 * is pinned. Modelled on dbus-broker's UserCharge (src/util/user.h), which a Peer releases in
 * peer_free(). The Manager owns the one Quota; each Region owns its QuotaCharge.
 *
 * Pure bookkeeping: no system calls, so it is unit-tested as it is (tests/unit/test-quota.c).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct QuotaUid QuotaUid;

/* Per-uid entries are hashed into this many buckets; an entry exists while the uid holds
 * memory. */
#define QUOTA_UID_BUCKETS 64

typedef struct Quota {
        unsigned n_regions;
        uint64_t bytes;
        QuotaUid *uids[QUOTA_UID_BUCKETS];
} Quota;

/* One region's charge, embedded in it. Zero-initialised means "not charged". */
typedef struct QuotaCharge {
        Quota *quota;
        uid_t uid;
        uint64_t bytes;
} QuotaCharge;

/* Charges bytes (one region) to uid. -ENOMEM only; limits are the caller's policy and are
 * checked before, against quota_usage(). */
int quota_charge(Quota *q, uid_t uid, uint64_t bytes, QuotaCharge *ret);

/* Releases a charge; a second call, or one on a charge never made, does nothing. */
void quota_uncharge(QuotaCharge *c);

/* Regions and bytes held by uid. */
void quota_usage(const Quota *q, uid_t uid, unsigned *ret_regions, uint64_t *ret_bytes);

/* Frees the per-uid entries (every charge must have been released, or is forgotten). */
void quota_done(Quota *q);
