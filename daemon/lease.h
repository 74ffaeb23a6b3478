/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Device leases (layer 2, docs/architecture.md): who holds which device, the memory mapped for
 * it, and the teardown order. A Lease owns its VfioDevice (every device fd, reached through the
 * BackendOps table, backend.h: vfio.c in the daemon, tests/fake-backend.c in the tests), the
 * Regions mapped for it (retired ones too) and the memory it adopted; the LeaseRegistry (in the
 * Manager) lists every lease, and its holder's Client names it. Observers (persist.c,
 * monitor.c) hear of it only through the LeaseHooks the manager wires; nothing here calls them
 * by name. It trusts its callers to have authorized the holder, and nothing of the device: a
 * device is assumed able to DMA until it has been quiesced.
 *
 * A lease is created as a reservation (RESERVED, then AUTHORIZING while polkit decides) before
 * polkit is asked, so that a second request for the same device — even one racing the first
 * through polkit — gets DeviceBusy (security.md §3.8). It becomes ACTIVE when the device is
 * open and its fd is on its way to the client. The states and the allowed transitions are
 * listed at LeaseState below and enforced by lease.c's table. It ends on ReleaseDevice,
 * RevokeLease or when the connection closes, always through lease_end() and in this order
 * (design.md §3.3):
 *
 *   QUIESCING: Bus Master off through the daemon's own device fd (read back) -> VFIO_DEVICE_RESET
 *              if the device supports it -> unmap/unpin the lease's memory -> free the memory
 *              -> close the device, which frees it for the next client.
 *
 * If quiescing fails the device is QUARANTINED: its memory stays pinned, it is never handed out
 * again, and it is audited; an administrator has to act. A device fd cannot be revoked: a
 * client that kept a copy keeps it, which the next grant detects where the kernel allows (the
 * group stays busy, or a cdev refuses a second bind).
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "backend.h"
#include "hugepage.h"
#include "identity.h"
#include "inventory.h"
#include "noiommu/protocol.h"
#include "region.h"
#include "vfio.h"

typedef struct Client Client;

/* Memory allocations one lease may have mapped (leases per client: client.h). */
#define NOIOMMU_REGIONS_PER_LEASE_MAX 64

/* Every state a lease object can be in; lease.c changes them only through lease_set_state(),
 * which checks each change against its table of allowed transitions:
 *
 *   RESERVED     created by lease_reserve(): the device is taken, nothing is open yet
 *   AUTHORIZING  a reservation waiting for polkit's verdict (lease_wait_authorization())
 *   ACTIVE       open, its fd on the way to (or with) its holder
 *   HOLDER_GONE  restored after a restart (lease_restore()) without its client yet: attached
 *                to a connection again (ACTIVE), or reclaimed (QUIESCING)
 *   QUIESCING    lease_end()'s ordered teardown is running
 *   QUARANTINED  the device could not be quiesced, or its DMA addresses cannot be vouched for
 *
 * A lease is freed only from RESERVED/AUTHORIZING (never opened) or at the end of a successful
 * teardown (QUIESCING). Only ACTIVE and QUARANTINED leases are persisted. */
typedef enum LeaseState {
        LEASE_RESERVED,
        LEASE_AUTHORIZING,
        LEASE_ACTIVE,
        LEASE_HOLDER_GONE,
        LEASE_QUIESCING,
        LEASE_QUARANTINED,
        _LEASE_STATE_MAX,
        _LEASE_STATE_INVALID = -EINVAL,
} LeaseState;

const char *lease_state_to_string(LeaseState s);

/* What observers (persist.c, monitor.c) hear about a lease, through the hooks the manager wires
 * once (manager_new()). They observe; they never decide: the write-ahead is not an event but
 * an explicit, checked persist_grant() call before any fd is sent. */
typedef enum LeaseEvent {
        LEASE_EVENT_GRANTED,            /* recorded and about to be sent to its holder */
        LEASE_EVENT_QUARANTINED,        /* reason: why */
        LEASE_EVENT_CLOSING,            /* quiesced and memory freed; the device is closed next */
        LEASE_EVENT_RELEASED,           /* closed and recorded; the object goes next */
        _LEASE_EVENT_MAX,
        _LEASE_EVENT_INVALID = -EINVAL,
} LeaseEvent;

typedef struct Lease Lease;

typedef struct Client Client;

typedef struct LeaseHooks {
        void (*event)(const Lease *l, LeaseEvent ev, const char *reason, void *userdata);
        /* l left its holder without ending (quarantined): the holder must forget it. */
        void (*detached)(Lease *l, Client *holder, void *userdata);
        void *userdata;
} LeaseHooks;

/* Every lease of the daemon (reservations and quarantined ones too) and their observers; the
 * manager embeds one. */
typedef struct LeaseRegistry {
        Lease *leases;
        LeaseHooks hooks;
        const BackendOps *backend;      /* the outside world (backend.h), given by the manager */
} LeaseRegistry;

/* Whether the state machine allows from -> to (the table in lease.c; exported for its unit
 * test). A change to the same state is not a transition and is refused. */
bool lease_state_transition_allowed(LeaseState from, LeaseState to);

typedef struct Lease {
        LeaseRegistry *registry;
        struct Lease *next, *prev;      /* in registry->leases */
        char id[NOIOMMU_ID_LEN + 1];
        LeaseState state;
        Client *client;                 /* the holder; NULL once quarantined or while HOLDER_GONE */
        ClientIdentity holder;          /* copy for records (pidfd not owned) */
        InventoryDevice device;         /* as classified when acquired */
        VfioDevice *vfio;
        Region *regions[NOIOMMU_REGIONS_PER_LEASE_MAX];        /* mapped (retired ones too) */
        size_t n_regions;
        /* Memory allocated without a lease on the holder's connection, freed by the client (or
         * left at disconnect) while this noiommu device could still reach it by physical
         * address: kept pinned until this device is quiesced. */
        Region **adopted;
        size_t n_adopted;
        /* Memory mapped for this noiommu device that could not be restored after a restart
         * (lease_keep_unrestored()): its "mem-<id>" stays in the fd store, which keeps the
         * pages allocated, until the device is closed after its quiesce (LEASE_EVENT_CLOSING,
         * persist.c). Not persisted: a second restart before then drops it. */
        char (*unrestored)[NOIOMMU_ID_LEN + 1];
        size_t n_unrestored;
        uint64_t created_usec;
        /* HOLDER_GONE only: the fd-store id of the connection that held it before the restart,
         * so that the client's other memory can be kept with the lease until its quiesce. */
        char restored_conn[NOIOMMU_ID_LEN + 1];
} Lease;

/* Reserves d for client. -EBUSY if a lease exists for that address, -EIO if quarantined. */
int lease_reserve(LeaseRegistry *reg, Client *client, const ClientIdentity *holder,
                  const InventoryDevice *d, Lease **ret);

/* Drops a reservation that never became active (denied, or the client left). */
Lease *lease_unreserve(Lease *l);

/* The reservation's polkit check is pending (RESERVED -> AUTHORIZING). */
void lease_wait_authorization(Lease *l);

/* The restore constructor (persist.c, after a restart or a re-exec): a lease for a device
 * whose fds came back, HOLDER_GONE (or QUARANTINED if it was), linked into the manager's list
 * like any other. Takes ownership of vfio, also on failure. conn_id: the stored connection
 * that held it, or NULL. */
int lease_restore(LeaseRegistry *reg, const char *id, bool quarantined, const InventoryDevice *d,
                  const ClientIdentity *holder, uint64_t created_usec, const char *conn_id,
                  VfioDevice *vfio, Lease **ret);

/* Gives a HOLDER_GONE lease back to its restored client (-> ACTIVE), once the client has it in
 * its list (client_add_lease()). */
void lease_attach(Lease *l, Client *c, const ClientIdentity *holder);

/* Restores a region that was mapped into (or adopted by) l. The region is l's from now on,
 * whatever happens: memory the device may have been told about is never freed here. When it
 * cannot be tracked as a mapping (a state with more regions than a lease may have) it is
 * adopted (kept pinned until the quiesce), and if even that fails it is kept pinned for the
 * daemon's lifetime. Returns true if r is one of l's mappings again (and can be checked as
 * one), false if it was adopted. */
bool lease_restore_region(Lease *l, Region *r, AddressKind kind, bool retired, bool adopted,
                          uint64_t iova);

/* Opens the device for an authorized reservation and makes the lease active. */
int lease_activate(Lease *l);

/* The grant is recorded and its fd is on the way: tells the observers (LEASE_EVENT_GRANTED). */
void lease_announce_granted(const Lease *l);

/* Ends a lease in the order above. reason: "release", "client-exit", "shutdown". *lp is always
 * cleared: the caller's reference is gone either way. Returns 0 (the lease was freed), or -EIO
 * when quiescing failed or the lease was already quarantined (it then lives on in the
 * manager's list, detached from its connection, owned by the manager until an administrator
 * revokes it). A reservation is simply dropped (0). */
int lease_end(Lease **lp, const char *reason);
/* lease_end(), and once the device is quiesced, the memory whose physical addresses the client
 * knows goes to heir (another noiommu lease of the same client, still able to reach it) instead
 * of being freed. heir may be NULL. */
int lease_end_to(Lease **lp, const char *reason, Lease *heir);

Lease *lease_find_by_address(LeaseRegistry *reg, const char *address);
Lease *lease_find_by_id(LeaseRegistry *reg, const char *id);

/* CLOCK_MONOTONIC in microseconds, the clock of created_usec. */
uint64_t lease_now_usec(void);

/* Bytes of memory the lease keeps pinned (mapped, retired and adopted). */
uint64_t lease_bytes_pinned(const Lease *l);

/* An administrator ends a quarantined lease: the quiesce is tried again, and only if it works
 * now is the memory freed and the device released. *lp is cleared. Returns 0 or -EIO (still
 * quarantined). */
int lease_retry_quarantined(Lease **lp, const char *reason);

/* Maps a freshly allocated region into the lease's DMA context and adopts it. */
int lease_add_region(Lease *l, Region *r, DmaSegment **ret_segments, size_t *ret_n,
                     AddressKind *ret_kind);
/* Finds a region the client has not freed yet. */
Region *lease_find_region(Lease *l, const char *id, size_t *ret_index);
/* The client frees lease memory: behind an IOMMU it is unmapped and freed now; in noiommu mode
 * it stays pinned until the device is quiesced. */
void lease_free_region(Lease *l, size_t index);

/* Takes back a region lease_add_region() just mapped, before its addresses reached anyone (the
 * grant was refused): unmapped and freed at once, audited with reason. */
void lease_withdraw_region(Lease *l, Region *r, const char *reason);

/* Notes memory (by id) this lease's device may have been told about but that could not be
 * restored (see "unrestored" above). Cannot fail: without memory to note it, its store entry
 * simply stays for the daemon's lifetime. */
void lease_keep_unrestored(Lease *l, const char *region_id);

/* Takes r over until the lease ends (see "adopted" above). Cannot fail: memory the device
 * could reach is never freed without its quiesce, so if even the bookkeeping fails r stays
 * pinned for the life of the process. */
void lease_adopt_region(Lease *l, Region *r);

/* Moves what from adopted over to to, which keeps it until its own quiesce: memory a client
 * freed is reachable by every noiommu device of that client, not only by the lease that took
 * it first. */
void lease_hand_over_adopted(Lease *from, Lease *to);

/* Whether the device can reach memory by physical address (no IOMMU between). */
bool lease_is_noiommu(const Lease *l);

/* Quarantines an active (or restored, HOLDER_GONE) lease whose DMA addresses cannot be vouched for any more (error and why
 * say what was found): detached from its connection, audited (LEASE_BROKEN), memory kept pinned,
 * device never handed out again until an administrator revokes it (quiesce first, then free). */
void lease_quarantine(Lease *l, int error, const char *why);

/* Frees all quarantined leases' bookkeeping at daemon exit, without touching the memory
 * state again (the process is going away). */
void lease_free_all(LeaseRegistry *reg);
