/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See quota.h: the memory counters the limits use (layer 0, no system calls).
 */
#include <assert.h>
#include <errno.h>
#include <stdlib.h>

#include "internal/macro.h"
#include "quota.h"

struct QuotaUid {
        QuotaUid *next;
        uid_t uid;
        unsigned n_regions;
        uint64_t bytes;
};

static QuotaUid **quota_bucket(const Quota *q, uid_t uid) {
        /* Knuth's multiplicative hash (TAOCP vol. 3, 6.4): spreads consecutive uids. */
        return (QuotaUid **) &q->uids[(uid * 2654435761U) % QUOTA_UID_BUCKETS];
}

static QuotaUid *quota_find(const Quota *q, uid_t uid) {
        for (QuotaUid *u = *quota_bucket(q, uid); u; u = u->next)
                if (u->uid == uid)
                        return u;
        return NULL;
}

int quota_charge(Quota *q, uid_t uid, uint64_t bytes, QuotaCharge *ret) {
        QuotaUid *u;

        assert(q);
        assert(ret);
        assert(!ret->quota);

        u = quota_find(q, uid);
        if (!u) {
                QuotaUid **b = quota_bucket(q, uid);

                u = new0(QuotaUid, 1);
                if (!u)
                        return -ENOMEM;
                u->uid = uid;
                u->next = *b;
                *b = u;
        }
        u->n_regions++;
        u->bytes += bytes;
        q->n_regions++;
        q->bytes += bytes;
        *ret = (QuotaCharge) { .quota = q, .uid = uid, .bytes = bytes };
        return 0;
}

void quota_uncharge(QuotaCharge *c) {
        Quota *q;
        QuotaUid **p;

        if (!c || !c->quota)
                return;
        q = c->quota;
        for (p = quota_bucket(q, c->uid); *p; p = &(*p)->next)
                if ((*p)->uid == c->uid)
                        break;
        assert(*p);
        assert((*p)->n_regions > 0 && (*p)->bytes >= c->bytes);
        assert(q->n_regions > 0 && q->bytes >= c->bytes);

        (*p)->n_regions--;
        (*p)->bytes -= c->bytes;
        q->n_regions--;
        q->bytes -= c->bytes;
        if ((*p)->n_regions == 0) {
                QuotaUid *u = *p;

                *p = u->next;
                free(u);
        }
        *c = (QuotaCharge) {};
}

void quota_usage(const Quota *q, uid_t uid, unsigned *ret_regions, uint64_t *ret_bytes) {
        const QuotaUid *u = quota_find(q, uid);

        *ret_regions = u ? u->n_regions : 0;
        *ret_bytes = u ? u->bytes : 0;
}

void quota_done(Quota *q) {
        for (size_t i = 0; i < QUOTA_UID_BUCKETS; i++)
                while (q->uids[i]) {
                        QuotaUid *u = q->uids[i];

                        q->uids[i] = u->next;
                        free(u);
                }
        q->n_regions = 0;
        q->bytes = 0;
}
