/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The lease state machine (lease.h): every pair of states, allowed or refused, against a table
 * written out here independently of lease.c's, so that a changed transition shows up as a
 * failing test and has to be changed in both places on purpose.
 */
#include "lease.h"
#include "tests.h"

static const struct {
        LeaseState from, to;
} allowed[] = {
        { LEASE_RESERVED, LEASE_AUTHORIZING },          /* polkit asked */
        { LEASE_RESERVED, LEASE_ACTIVE },               /* authorized at once (no polkit round trip) */
        { LEASE_AUTHORIZING, LEASE_ACTIVE },            /* polkit said yes, device opened */
        { LEASE_ACTIVE, LEASE_QUIESCING },              /* release, disconnect, revoke, shutdown */
        { LEASE_ACTIVE, LEASE_QUARANTINED },            /* addresses cannot be vouched for */
        { LEASE_HOLDER_GONE, LEASE_ACTIVE },            /* restored, its client is back */
        { LEASE_HOLDER_GONE, LEASE_QUIESCING },         /* restored, its client is gone: reclaim */
        { LEASE_HOLDER_GONE, LEASE_QUARANTINED },       /* restored, addresses moved */
        { LEASE_QUIESCING, LEASE_QUARANTINED },         /* the quiesce failed */
        { LEASE_QUARANTINED, LEASE_QUIESCING },         /* an administrator retries */
};

static bool expected(LeaseState from, LeaseState to) {
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
                if (allowed[i].from == from && allowed[i].to == to)
                        return true;
        return false;
}

static void test_every_pair(void) {
        unsigned n_allowed = 0;

        for (LeaseState from = 0; from < _LEASE_STATE_MAX; from++)
                for (LeaseState to = 0; to < _LEASE_STATE_MAX; to++) {
                        bool want = expected(from, to), got = lease_state_transition_allowed(from, to);

                        if (want != got)
                                fprintf(stderr, "%s -> %s: expected %s\n", lease_state_to_string(from),
                                        lease_state_to_string(to), want ? "allowed" : "refused");
                        ASSERT_EQ(got, want);
                        n_allowed += got;
                }
        ASSERT_EQ(n_allowed, sizeof(allowed) / sizeof(allowed[0]));
}

static void test_properties(void) {
        /* Nothing goes back to ACTIVE from QUARANTINED or QUIESCING: a quarantined lease is only
         * ever ended, quiesce first. Nothing skips the quiesce into a freed state either: the
         * only way out of ACTIVE that releases memory is QUIESCING. */
        ASSERT_FALSE(lease_state_transition_allowed(LEASE_QUARANTINED, LEASE_ACTIVE));
        ASSERT_FALSE(lease_state_transition_allowed(LEASE_QUIESCING, LEASE_ACTIVE));
        ASSERT_FALSE(lease_state_transition_allowed(LEASE_ACTIVE, LEASE_RESERVED));
        ASSERT_FALSE(lease_state_transition_allowed(LEASE_ACTIVE, LEASE_HOLDER_GONE));
        /* Self-transitions are not transitions. */
        for (LeaseState s = 0; s < _LEASE_STATE_MAX; s++)
                ASSERT_FALSE(lease_state_transition_allowed(s, s));
}

static void test_out_of_range(void) {
        ASSERT_FALSE(lease_state_transition_allowed(_LEASE_STATE_INVALID, LEASE_ACTIVE));
        ASSERT_FALSE(lease_state_transition_allowed(LEASE_ACTIVE, _LEASE_STATE_MAX));
        ASSERT_TRUE(lease_state_to_string(_LEASE_STATE_MAX) == NULL);
}

static void test_names(void) {
        /* Wire and state-file names (ListLeases "state", the persisted "state"). */
        ASSERT_STREQ(lease_state_to_string(LEASE_AUTHORIZING), "authorizing");
        ASSERT_STREQ(lease_state_to_string(LEASE_ACTIVE), "active");
        ASSERT_STREQ(lease_state_to_string(LEASE_QUIESCING), "quiescing");
        ASSERT_STREQ(lease_state_to_string(LEASE_QUARANTINED), "quarantined");
        for (LeaseState s = 0; s < _LEASE_STATE_MAX; s++)
                ASSERT_TRUE(lease_state_to_string(s) != NULL);
}

int main(void) {
        TEST(test_every_pair);
        TEST(test_properties);
        TEST(test_out_of_range);
        TEST(test_names);
        return 0;
}
