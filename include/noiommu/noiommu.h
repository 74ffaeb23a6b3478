/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libnoiommu: the client library of noiommud, the broker for VFIO devices and pinned DMA
 * memory. It speaks the io.noiommud.Broker Varlink protocol (protocol.h, the interface file
 * io.noiommud.Broker.varlink) over the daemon's UNIX socket and hands the caller what the daemon
 * grants: sealed hugepage memory, already mapped, with its table of DMA addresses.
 *
 * Conventions (the systemd dialect):
 *   - Functions return 0 (or a documented positive value) on success and a negative errno on
 *     failure. Out-parameters are named ret* and are written only on success.
 *   - Destructors accept NULL and return NULL: c = noiommu_disconnect(c);
 *   - Every fd the library creates or receives is O_CLOEXEC.
 *   - The library never logs, never prints and never calls exit(); it does not install signal
 *     handlers. Sockets are written with MSG_NOSIGNAL, so a vanished daemon is -EPIPE, not
 *     SIGPIPE.
 *   - Threads: the library keeps no global state (noiommu_from_environment() aside, which
 *     edits the environment: call it before other threads exist), so different connections may
 *     be used from different threads at the same time. One noiommu_conn is not thread-safe:
 *     use one connection per thread, or serialise calls on it yourself, and read
 *     noiommu_last_error() in the thread that made the call, before the next call on that
 *     connection (the error belongs to the connection, not to a thread). Calls on one
 *     connection are blocking and strictly one at a time (Varlink allows one outstanding call
 *     per connection). Memory objects, leases and device lists are independent of the
 *     connection: their getters may be called from any thread concurrently; the unref/free
 *     functions must not race with other uses of the same object (no reference counts).
 *   - fork(): a connection stays with the process that opened it; in a child every call on it
 *     fails with -ECHILD and noiommu_disconnect() only closes the child's copy of the socket
 *     (the parent's connection, and all it holds, lives on). A child inherits the memory
 *     mappings (MAP_SHARED: the same pages, not copies) and the memfds and device fds; the
 *     pages stay pinned, and the lease lasts, only as long as the parent's connection. In the
 *     child, noiommu_memory_unref() and noiommu_lease_unref() release only the child's copies.
 *     Across execve() nothing survives: every fd is O_CLOEXEC (see noiommu_conn_get_fd() and
 *     "noiommuctl run" for handing a connection on on purpose).
 *   - Newer daemons: unknown fields in a reply are ignored, the known ones are checked strictly
 *     (types, ranges, the segment table against the size, fds against the reply), so a daemon
 *     that adds a reply field does not break this library. An unknown error name is -EIO.
 *
 * Errors from the daemon are Varlink errors. Each maps to one negative errno; the name and the
 * parameters of the error are available from noiommu_last_error() and
 * noiommu_last_error_parameters() until the next call on the same connection. The mapping is
 * NOIOMMU_ERROR_TABLE in protocol.h (with a one-line meaning of each error); one name a line:
 *
 *   io.noiommud.Broker.PermissionDenied                   -EACCES
 *   io.noiommud.Broker.InteractiveAuthenticationRequired  -EKEYREJECTED
 *   io.noiommud.Broker.OutOfMemory                        -ENOMEM
 *   io.noiommud.Broker.LimitExceeded                      -EUSERS
 *   io.noiommud.Broker.NoSuchMemory                       -ENOENT
 *   io.noiommud.Broker.NoSuchLease                        -ENOENT
 *   io.noiommud.Broker.NoSuchDevice                       -ENOENT
 *   io.noiommud.Broker.NotSupported                       -EOPNOTSUPP
 *   io.noiommud.Broker.DeviceBusy                         -EBUSY
 *   io.noiommud.Broker.DeviceQuarantined                  -EIO
 *   org.varlink.service.InvalidParameter                  -EINVAL
 *   io.noiommud.Broker.ProtocolViolation                  -EPROTO
 *   io.noiommud.Broker.InternalError                      -EIO
 *   org.varlink.service.MethodNotFound                    -EIO
 *   org.varlink.service.InterfaceNotFound                 -EIO
 *   org.varlink.service.MethodNotImplemented              -EIO
 *   org.varlink.service.ExpectedMore                      -EIO
 *   any other name (a newer daemon's error)               -EIO
 *
 * Errors found by the library itself (noiommu_last_error() is NULL for these, and for every
 * argument the library rejects before sending anything, -EINVAL included):
 *
 *   -EBADMSG     the reply is not a valid Varlink reply, or does not match the interface, or
 *                carries more fds than it names
 *   -EXFULL      fewer fds arrived than the reply names (the kernel dropped some: MSG_CTRUNC,
 *                RLIMIT_NOFILE, an LSM), i.e. a failed grant
 *   -EPROTO      fds arrived on a byte other than the first byte of a reply, or the daemon sent
 *                data nobody asked for
 *   -EMSGSIZE    the reply exceeds NOIOMMU_REPLY_SIZE_MAX
 *   -ECONNRESET  the daemon closed the connection (-EPIPE if it did so before our request
 *                was written)
 *   -ENOTCONN    the connection was dropped by an earlier protocol error
 *   -ECHILD      the connection is used from a process other than the one that opened it
 *
 * After any of these the library drops the connection (shutdown() and close() of the socket),
 * so the daemon releases everything it pinned for it, and every later call on it fails with
 * -ENOTCONN. Memory objects already returned stay valid (see noiommu_disconnect()).
 *
 * ABI: exported symbols carry the version node LIBNOIOMMU_0.1, the device-lease API
 * (noiommu_acquire_device() and the noiommu_lease_*() functions) LIBNOIOMMU_0.2, which inherits
 * 0.1; the backend choice of a listed device (noiommu_device_list_get_backend_reason(),
 * noiommu_device_list_get_available_backend()), noiommu_from_environment() and
 * noiommu_conn_get_fd() LIBNOIOMMU_0.3, which inherits 0.2; noiommu_acquire_device_with_memory()
 * LIBNOIOMMU_0.4, which inherits 0.3. Handles are opaque. The only public
 * structures are noiommu_segment (fixed, never grows)
 * and noiommu_alloc_options, which starts with its own size (see there).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"
#include <noiommu/version.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct noiommu_conn noiommu_conn;
typedef struct noiommu_device_list noiommu_device_list;
typedef struct noiommu_memory noiommu_memory;
typedef struct noiommu_lease noiommu_lease;

/*
 * struct noiommu_segment - one run of memory whose DMA addresses are contiguous
 * @offset:      byte offset of the run within the memory object (and its mapping)
 * @length:      length of the run in bytes
 * @dma_address: the address at which the device sees byte @offset: a physical address or an
 *               IOVA, see noiommu_memory_get_address_kind()
 */
typedef struct noiommu_segment {
        uint64_t offset;
        uint64_t length;
        uint64_t dma_address;
} noiommu_segment;

/* What noiommu_segment.dma_address means. */
typedef enum noiommu_address_kind {
        NOIOMMU_ADDRESS_PHYSICAL = 0,   /* CPU physical address (noiommu mode) */
        NOIOMMU_ADDRESS_IOVA = 1,       /* I/O virtual address in the lease's IOMMU domain */
} noiommu_address_kind;

/* noiommu_alloc_options.flags */
#define NOIOMMU_ALLOC_INTERACTIVE (UINT32_C(1) << 0)

/*
 * struct noiommu_alloc_options - optional parameters of noiommu_allocate()
 * @size:          sizeof(noiommu_alloc_options) as the caller was compiled; set by
 *                 noiommu_alloc_options_init()
 * @hugepage_size: page size in bytes (e.g. 2 MiB or 1 GiB); 0 = the system's default
 * @numa_node:     NUMA node to place the pages on, -1 = any. The daemon fails the allocation
 *                 rather than falling back to another node.
 * @flags:         NOIOMMU_ALLOC_INTERACTIVE: let polkit ask the user for authentication
 *                 instead of failing with InteractiveAuthenticationRequired (-EKEYREJECTED)
 * @lease:         lease id (NOIOMMU_ID_LEN hex digits) whose DMA context the memory is mapped
 *                 into, or NULL for memory with physical addresses outside any lease
 *
 * ABI: the structure is versioned by its leading @size field, the way openat2() and clone3()
 * version theirs. New fields are only ever appended. The library reads the fields that fit in
 * @size and uses defaults for the rest, so a program built against an older header keeps
 * working; a program built against a newer header works with an older library as long as
 * every field the older library does not know is zero (its default), and gets -E2BIG
 * otherwise. Always initialise with noiommu_alloc_options_init(), which zeroes the structure
 * (padding included) and sets @size and the non-zero defaults; a plain "= {0}" would silently
 * ask for NUMA node 0 and is rejected for its @size of 0 (-EINVAL).
 */
typedef struct noiommu_alloc_options {
        uint64_t size;
        uint64_t hugepage_size;
        int32_t numa_node;
        uint32_t flags;
        const char *lease;
} noiommu_alloc_options;

/* Size of the first version of noiommu_alloc_options (up to and including @lease). */
#define NOIOMMU_ALLOC_OPTIONS_SIZE_VER0 \
        (offsetof(noiommu_alloc_options, lease) + sizeof(const char *))

/**
 * noiommu_alloc_options_init() - initialise allocation options to their defaults
 * @o: the options to initialise
 *
 * Inline on purpose: @o->size must be the size the caller was compiled with.
 */
static inline void noiommu_alloc_options_init(noiommu_alloc_options *o) {
        unsigned char *p = (unsigned char *) o;

        for (size_t i = 0; i < sizeof(*o); i++)
                p[i] = 0;
        o->size = sizeof(*o);
        o->numa_node = -1;
}

/**
 * noiommu_connect() - connect to noiommud
 * @path: socket path; NULL means $NOIOMMUD_SOCKET if set and not empty (ignored in setuid and
 *        other secure-execution processes), otherwise NOIOMMU_SOCKET_PATH_DEFAULT. A path
 *        starting with '@' names an abstract socket.
 * @ret:  on success, the new connection
 *
 * Opens a blocking SOCK_STREAM|SOCK_CLOEXEC socket and connects it.
 *
 * The daemon takes the identity of the connecting process (uid, pid, start time, pidfd) from the
 * kernel when it accepts the connection, and authorises every call on it as that process. Keep
 * a connection in the process that opened it: after fork() the child must not use it (calls
 * fail with -ECHILD) and should only noiommu_disconnect() it, which in a process other than the
 * opener just closes the child's copy of the socket.
 *
 * Return: 0; -EINVAL or -ENAMETOOLONG for a bad path; -ENOENT or -ECONNREFUSED when noiommud is
 * not running; -EACCES when the socket may not be opened; another negative errno from socket()
 * or connect().
 */
int noiommu_connect(const char *path, noiommu_conn **ret);

/**
 * noiommu_conn_get_fd() - the connection's socket
 * @c: the connection
 *
 * For poll() (the daemon never writes unasked, so POLLIN or POLLHUP on an idle connection
 * means the daemon went away) and for handing the connection to a program the caller execs
 * (noiommuctl run). The fd is borrowed and O_CLOEXEC: do not close it, and do not read or write
 * it. Everything granted on the connection lives as long as any copy of this socket is open.
 *
 * Since LIBNOIOMMU_0.3.
 *
 * Return: the fd, -EINVAL for NULL, -ENOTCONN once the connection was dropped.
 */
int noiommu_conn_get_fd(const noiommu_conn *c);

/*
 * The environment of "noiommuctl run" (docs/libnoiommu.md, "noiommuctl run"), in the spirit of
 * sd_listen_fds(): the fds start at NOIOMMU_RUN_FDS_START and are described by these variables.
 * Numbers are decimal except sizes, offsets and addresses, which are "0x" and lower-case hex.
 *
 *   NOIOMMU_PID               pid of the process that may adopt the fds (the one CMD runs in)
 *   NOIOMMU_FDS               how many fds were passed: 3, 4, ... in this order
 *   NOIOMMU_FD_NAMES          their names, ':'-separated: connection[:device][:memory-0...]
 *   NOIOMMU_LEASE             with "device": the lease id
 *   NOIOMMU_DEVICE_ADDRESS, _BACKEND, _VENDOR_ID, _DEVICE_ID, _DRIVER, _IOMMU_GROUP,
 *   _NUMA_NODE                with "device": the leased device as AcquireDevice described it
 *   NOIOMMU_MEMORY_<i>_ID, _SIZE, _HUGEPAGE_SIZE, _NUMA_NODE, _ADDRESS_KIND, _SEGMENTS
 *                             for each "memory-<i>": the memory as AllocateMemory described it;
 *                             _SEGMENTS is "OFFSET:LENGTH:DMA-ADDRESS,..." in offset order
 */
#define NOIOMMU_RUN_FDS_START 3
#define NOIOMMU_RUN_MEMORY_MAX 64
#define NOIOMMU_ENV_PID "NOIOMMU_PID"
#define NOIOMMU_ENV_FDS "NOIOMMU_FDS"
#define NOIOMMU_ENV_FD_NAMES "NOIOMMU_FD_NAMES"
#define NOIOMMU_ENV_LEASE "NOIOMMU_LEASE"
#define NOIOMMU_ENV_DEVICE_PREFIX "NOIOMMU_DEVICE_"
#define NOIOMMU_ENV_MEMORY_PREFIX "NOIOMMU_MEMORY_"

/**
 * noiommu_from_environment() - adopt what "noiommuctl run" passed to this process
 * @ret_conn:     on success, the connection the lease and memory belong to; required
 * @ret_lease:    on success, the lease, or NULL if none was passed; may be NULL if not wanted
 *                (a passed lease then stays held by the connection, but its device fd is closed)
 * @ret_memory:   on success, a malloc()ed array of the memory objects, NULL if none; free each
 *                with noiommu_free() or noiommu_memory_unref(), the array with free(); may be NULL
 *                if not wanted (the memory then stays pinned on the connection, but unmapped)
 * @ret_n_memory: on success, the number of entries in *ret_memory; may be NULL only together
 *                with @ret_memory
 *
 * The counterpart of "noiommuctl run --device ADDR --memory SIZE,... -- CMD": noiommuctl acquires
 * and allocates, then execs CMD with the connection, the device fd and the memfds inherited and
 * described in the environment (see above). This call turns them back into the objects the
 * process would hold had it made the calls itself: the connection (calls on it work as on any),
 * the lease with its device fd, and each memory object mapped, with its segment table.
 *
 * Everything is checked before it is trusted: NOIOMMU_PID must be this process; every variable
 * must be present, well-formed and consistent with NOIOMMU_FDS and NOIOMMU_FD_NAMES, and none
 * may describe memory that was not passed; the connection must be a connected AF_UNIX
 * SOCK_STREAM socket, the device fd open read-write, each memfd a sealed file of the size given,
 * with a segment table covering it exactly (the checks of noiommu_acquire_device() and
 * noiommu_allocate()). The library works on O_CLOEXEC duplicates: on success it closes the
 * inherited fds, so that nothing this process execs later inherits the lease; on failure it
 * leaves them alone. Either way it unsets every NOIOMMU_* variable of the protocol, so children
 * do not see them (not thread-safe: call it early, before other threads exist, as with
 * sd_listen_fds()). secure_getenv() is used: a setuid or otherwise secure-execution process never
 * adopts anything.
 *
 * What breaks a lease passed this way: a program that closes fds it does not know (daemons
 * "closing all fds", closefrom(3)) before calling this ends it; a fork() between noiommuctl and
 * this call makes NOIOMMU_PID wrong (-ESRCH). The lease ends when the last copy of the
 * connection fd closes; keep the connection open as long as the device or memory is in use.
 *
 * Since LIBNOIOMMU_0.3.
 *
 * Return: 1 when something was adopted; 0 when NOIOMMU_PID is not set (nothing was passed; the
 * out-parameters are set to NULL and 0); -ESRCH when NOIOMMU_PID names another process;
 * -EBADMSG for a malformed or inconsistent environment; -EBADF when a described fd is not open;
 * -ENOTSOCK, -EBADMSG when an fd is not what it is described as; -EINVAL for bad arguments;
 * -ENOMEM; a negative errno from mmap().
 */
int noiommu_from_environment(noiommu_conn **ret_conn, noiommu_lease **ret_lease,
                             noiommu_memory ***ret_memory, size_t *ret_n_memory);

/**
 * noiommu_disconnect() - close a connection
 * @c: the connection, or NULL
 *
 * Shuts the socket down and closes it. The daemon then frees every memory object allocated on
 * this connection (and ends its leases). Memory objects the caller still holds are not touched:
 * they remain valid, mapped and open until noiommu_memory_unref(), and the memfd keeps the
 * pages alive, but the pages are no longer pinned for DMA and their DMA addresses are no longer
 * valid. Do not let a device DMA into them after disconnecting.
 *
 * Called from a process other than the one that opened @c (after fork()), it only closes that
 * process's copy of the socket, so the opener's connection stays up.
 *
 * Return: NULL.
 */
noiommu_conn *noiommu_disconnect(noiommu_conn *c);

/**
 * noiommu_last_error() - Varlink error name of the last failed call
 * @c: the connection
 *
 * Return: the error name (e.g. "io.noiommud.Broker.PermissionDenied") if the last call on @c
 * failed with an error reply from the daemon, NULL if it succeeded or failed locally. The string
 * belongs to @c and is valid until the next call on @c.
 */
const char *noiommu_last_error(noiommu_conn *c);

/**
 * noiommu_last_error_parameters() - parameters of the last error
 * @c: the connection
 *
 * Return: the parameters of the error reply of the last failed call as compact JSON text
 * (e.g. {"requested":4294967296,"hugepageSize":2097152}; "{}" if the error had none), or NULL
 * when noiommu_last_error() is NULL. Valid until the next call on @c.
 */
const char *noiommu_last_error_parameters(noiommu_conn *c);

/**
 * noiommu_list_devices() - list the PCI functions bound to vfio-pci
 * @c:   the connection
 * @ret: on success, the device list; free it with noiommu_device_list_free()
 *
 * Calls io.noiommud.Broker.ListDevices and validates every entry.
 *
 * Return: 0 or a negative errno (see the top of this header).
 */
int noiommu_list_devices(noiommu_conn *c, noiommu_device_list **ret);

/**
 * noiommu_device_list_free() - free a device list
 * @l: the list, or NULL
 *
 * Return: NULL.
 */
noiommu_device_list *noiommu_device_list_free(noiommu_device_list *l);

/**
 * noiommu_device_list_get_count() - number of devices in a list
 * @l: the list
 *
 * Return: the number of devices; valid indices for the accessors below are 0 to count - 1.
 * Devices appear in the order the daemon sent them (sorted by address).
 */
size_t noiommu_device_list_get_count(const noiommu_device_list *l);

/*
 * Accessors for device @i of a list. Strings belong to the list and live as long as it does.
 * For an index out of range the string accessors return NULL and the int accessors -EINVAL.
 *
 * noiommu_device_list_get_address():     PCI address "dddd:bb:dd.f", lower-case hex
 * noiommu_device_list_get_vendor_id():   PCI vendor id, 0 to 0xffff
 * noiommu_device_list_get_device_id():   PCI device id, 0 to 0xffff
 * noiommu_device_list_get_driver():      driver the function is bound to (vfio-pci, a variant)
 * noiommu_device_list_get_backend():     "cdev-noiommu", "cdev-iommu", "group-noiommu", or NULL
 *                                        when no backend can serve the device
 * noiommu_device_list_get_iommu_group(): IOMMU group number, -1 if the device has none
 * noiommu_device_list_get_numa_node():   NUMA node, -1 if the platform does not say
 * noiommu_device_list_get_state():       "available" or "unsupported"
 * noiommu_device_list_get_reason():      why the device cannot be served, or NULL
 * noiommu_device_list_get_backend_reason(): why the daemon serves the device with this backend
 *                                        (e.g. preferred over another one, the only one, or
 *                                        chosen in the daemon's configuration), or NULL (no
 *                                        backend, or a daemon that does not say)
 */
const char *noiommu_device_list_get_address(const noiommu_device_list *l, size_t i);
int noiommu_device_list_get_vendor_id(const noiommu_device_list *l, size_t i);
int noiommu_device_list_get_device_id(const noiommu_device_list *l, size_t i);
const char *noiommu_device_list_get_driver(const noiommu_device_list *l, size_t i);
const char *noiommu_device_list_get_backend(const noiommu_device_list *l, size_t i);
int noiommu_device_list_get_iommu_group(const noiommu_device_list *l, size_t i);
int noiommu_device_list_get_numa_node(const noiommu_device_list *l, size_t i);
const char *noiommu_device_list_get_state(const noiommu_device_list *l, size_t i);
const char *noiommu_device_list_get_reason(const noiommu_device_list *l, size_t i);
const char *noiommu_device_list_get_backend_reason(const noiommu_device_list *l, size_t i);

/**
 * noiommu_device_list_get_available_backend() - a backend device @i could use
 * @l: the list
 * @i: the device
 * @j: 0, 1, ...
 *
 * The backends the device could be served with now ("cdev-noiommu", "group-noiommu",
 * "cdev-iommu"), in the daemon's order of preference; the one it uses is
 * noiommu_device_list_get_backend(). A device in a noiommu group that also has a noiommu cdev
 * lists both.
 *
 * Return: the @j-th backend name (owned by the list), or NULL past the last one, for an index
 * out of range, or from a daemon that does not say.
 */
const char *noiommu_device_list_get_available_backend(const noiommu_device_list *l, size_t i, size_t j);

/**
 * noiommu_allocate() - allocate pinned hugepage DMA memory
 * @c:    the connection; the memory belongs to it (only it can free it, and closing it frees it)
 * @size: bytes wanted, > 0; the daemon rounds up to whole hugepages
 * @opts: options, or NULL for the defaults (see struct noiommu_alloc_options)
 * @ret:  on success, the memory object
 *
 * Calls io.noiommud.Broker.AllocateMemory, receives the memfd, and checks before trusting it:
 * exactly the one fd the reply names arrived; the memfd's size is the reply's size, which is
 * @size rounded up to whole pages of the reply's hugepage size (and that size and the NUMA
 * node are the ones asked for, if any were); F_SEAL_SHRINK and F_SEAL_GROW are set; the
 * segments cover [0, size) in order, without gaps or overlaps. The memory is then mapped
 * MAP_SHARED, PROT_READ|PROT_WRITE and populated (never MAP_NORESERVE: the daemon preallocated
 * every page, so touching it cannot SIGBUS).
 *
 * If the reply breaks any of these rules, or its fds were truncated, every received fd is
 * closed and the connection is dropped, so the daemon releases the pages (and everything else
 * this connection holds). If only a local step fails (mmap(), malloc()), the library frees the
 * memory with FreeMemory and keeps the connection.
 *
 * Ownership: the memory object owns the memfd and the mapping. noiommu_memory_get_fd() lends
 * the memfd; dup() it (with F_DUPFD_CLOEXEC) to keep it beyond the object.
 *
 * Return: 0; -EINVAL for a bad argument; -E2BIG for options with unknown non-zero fields;
 * -EBADMSG or -EXFULL as above; a daemon error mapped to an errno (-ENOMEM: not enough free
 * hugepages; -EACCES: polkit said no); another negative errno.
 */
int noiommu_allocate(noiommu_conn *c, uint64_t size, const noiommu_alloc_options *opts,
                     noiommu_memory **ret);

/**
 * noiommu_free() - free memory in the daemon and locally
 * @c: the connection that allocated @m
 * @m: the memory object, or NULL (then nothing happens and 0 is returned)
 *
 * Calls io.noiommud.Broker.FreeMemory, then unmaps @m, closes its memfd and frees the object.
 * The local object is freed even when the call fails; the error is returned. Stop all DMA
 * into the memory before calling this.
 *
 * Return: 0 or a negative errno (-ENOENT: the daemon does not know the memory on @c).
 */
int noiommu_free(noiommu_conn *c, noiommu_memory *m);

/**
 * noiommu_memory_unref() - drop a memory object without telling the daemon
 * @m: the memory object, or NULL
 *
 * Unmaps the memory, closes the memfd and frees the object. The daemon keeps the pages pinned
 * until FreeMemory is called for the id (noiommu_call()) or the connection closes.
 *
 * Return: NULL.
 */
noiommu_memory *noiommu_memory_unref(noiommu_memory *m);

/*
 * Accessors of a memory object. Nothing they return needs freeing; everything lives as long
 * as @m.
 *
 * noiommu_memory_get_id():             memory id, NOIOMMU_ID_LEN lower-case hex digits
 * noiommu_memory_get_fd():             the sealed memfd, borrowed: do not close it
 * noiommu_memory_get_address():        start of the MAP_SHARED read/write mapping
 * noiommu_memory_get_size():           size in bytes (a multiple of the hugepage size)
 * noiommu_memory_get_hugepage_size():  page size in bytes
 * noiommu_memory_get_numa_node():      NUMA node of the pages, -1 if unknown
 * noiommu_memory_get_address_kind():   whether DMA addresses are physical or IOVAs
 * noiommu_memory_get_segments():       the DMA address table, in offset order, covering
 *                                      [0, size); its length goes to *ret_n (may be NULL)
 */
const char *noiommu_memory_get_id(const noiommu_memory *m);
int noiommu_memory_get_fd(const noiommu_memory *m);
void *noiommu_memory_get_address(const noiommu_memory *m);
uint64_t noiommu_memory_get_size(const noiommu_memory *m);
uint64_t noiommu_memory_get_hugepage_size(const noiommu_memory *m);
int noiommu_memory_get_numa_node(const noiommu_memory *m);
noiommu_address_kind noiommu_memory_get_address_kind(const noiommu_memory *m);
const noiommu_segment *noiommu_memory_get_segments(const noiommu_memory *m, size_t *ret_n);

/**
 * noiommu_address_kind_to_string() - protocol name of an address kind
 * @k: the kind
 *
 * Return: "physical", "iova", or NULL for a value that is neither.
 */
const char *noiommu_address_kind_to_string(noiommu_address_kind k);

/**
 * noiommu_call() - make any Varlink call
 * @c:                         the connection
 * @method:                    fully qualified method name, e.g. "org.varlink.service.GetInfo"
 * @parameters_json:           the parameters as a JSON object text, or NULL for {}
 * @ret_reply_parameters_json: on success, the reply's parameters as compact JSON text, to be
 *                             freed with free(); may be NULL if not wanted
 * @ret_fds:                   array of @max_fds ints that receives the reply's fds; may be NULL
 *                             when @max_fds is 0
 * @max_fds:                   how many fds the caller accepts (at most NOIOMMU_FDS_PER_REPLY_MAX
 *                             can arrive)
 * @ret_n_fds:                 on success, how many fds were stored in @ret_fds; may be NULL only
 *                             when @max_fds is 0
 *
 * An escape hatch for scripts, tests and methods this version of the library does not wrap.
 * Nothing in the reply parameters is interpreted or verified beyond the Varlink framing.
 *
 * fd ownership: on success the caller owns the fds in @ret_fds[0 .. *ret_n_fds) and must close
 * them; they are O_CLOEXEC. On failure no fd is returned: every received fd is closed. If the
 * reply carries more fds than @max_fds, they are all closed and the connection is dropped
 * (-EXFULL), because whatever they granted would otherwise stay pinned for a caller that never
 * got it.
 *
 * Return: 0 or a negative errno (see the top of this header; -EINVAL for a bad method name or
 * parameters that are not a JSON object).
 */
int noiommu_call(noiommu_conn *c, const char *method, const char *parameters_json,
                 char **ret_reply_parameters_json, int *ret_fds, size_t max_fds,
                 size_t *ret_n_fds);

/* noiommu_acquire_device() flags */
#define NOIOMMU_ACQUIRE_INTERACTIVE (1U << 0)

/**
 * noiommu_acquire_device() - lease a VFIO device
 * @c:       the connection; the lease belongs to it (only it can release it, and closing it
 *           ends the lease)
 * @address: PCI address of the device, "dddd:bb:dd.f" in lower-case hex, as ListDevices
 *           reports it; NULL means $NOIOMMUD_DEVICE (set by the CDI device
 *           noiommud.io/vfio=ADDRESS; ignored in secure-execution processes), and -ENXIO when
 *           that is not set either (since LIBNOIOMMU_0.3; earlier versions return -EINVAL)
 * @flags:   NOIOMMU_ACQUIRE_INTERACTIVE: let polkit ask the user for authentication instead of
 *           failing with InteractiveAuthenticationRequired (-EKEYREJECTED)
 * @ret:     on success, the lease
 *
 * Calls io.noiommud.Broker.AcquireDevice. The daemon opens and binds the device the way its
 * backend needs and sends a pre-bound device fd, ready for VFIO_DEVICE_GET_INFO, region info,
 * BAR mmap, config space, IRQ setup and reset. Before trusting the reply the library checks:
 * exactly the one fd the reply names arrived; the lease id is NOIOMMU_ID_LEN hex digits; the
 * device description is well-formed, names @address and has a backend; the fd is open
 * read-write. Otherwise every received fd is closed and the connection is dropped (-EBADMSG,
 * -EXFULL), so the daemon ends the lease it granted. If only a local allocation fails, the
 * library releases the lease with ReleaseDevice and keeps the connection.
 *
 * To map DMA memory into the device's DMA context, pass noiommu_lease_get_id() as the @lease
 * of noiommu_alloc_options: the segments then carry physical addresses for the noiommu
 * backends ("cdev-noiommu", "group-noiommu") and IOVAs behind an IOMMU ("cdev-iommu"); see
 * noiommu_memory_get_address_kind().
 *
 * A device fd cannot be revoked. The daemon clears Bus Master and resets the device through
 * its own handle when the lease ends, but a copy of the fd that outlives the lease (a dup(), a
 * child, an fd passed on) keeps the device open: a cdev device then cannot be granted again
 * (DeviceBusy) until that copy is closed, and a noiommu device could still be told to DMA.
 *
 * Return: 0; -EINVAL for a bad argument; -EBADMSG or -EXFULL as above; a daemon error mapped
 * to an errno (-ENOENT: no such device; -EBUSY: leased to someone else, or a previous holder
 * kept its fd; -EIO: quarantined after a failed teardown; -EOPNOTSUPP: no backend, or not
 * enabled in the daemon's configuration; -EACCES: polkit said no); another negative errno.
 */
int noiommu_acquire_device(noiommu_conn *c, const char *address, unsigned flags,
                           noiommu_lease **ret);

/**
 * noiommu_acquire_device_with_memory() - lease a VFIO device with DMA memory, in one call
 * @c:          the connection; lease and memory belong to it
 * @address:    as for noiommu_acquire_device() (NULL: $NOIOMMUD_DEVICE)
 * @flags:      as for noiommu_acquire_device()
 * @sizes:      bytes wanted for each region, each > 0; the daemon rounds up to whole hugepages
 * @n_memory:   how many regions, 1 to NOIOMMU_ACQUIRE_MEMORY_MAX (3: the reply carries the
 *              device fd and one memfd per region, at most NOIOMMU_FDS_PER_REPLY_MAX fds)
 * @opts:       hugepage_size and numa_node for every region, or NULL for the defaults; its
 *              lease must be NULL (the memory is mapped into the lease this call makes) and its
 *              flags 0 (@flags says whether polkit may ask interactively)
 * @ret_lease:  on success, the lease
 * @ret_memory: an array of @n_memory entries; on success, the memory objects in the order of
 *              @sizes
 *
 * Calls io.noiommud.Broker.AcquireDevice with "memory": one round trip and one polkit check
 * (io.noiommud.acquire-device-with-memory, or -iommu-with-memory behind an IOMMU) for what
 * noiommu_acquire_device() followed by noiommu_allocate() with the lease's id would do. The
 * daemon grants all of it or nothing: if one region cannot be had (-ENOMEM: not enough free
 * hugepages; -EUSERS: a limit, counted for the total) the device is released with whatever
 * was already mapped for it, quiesce first. The reply is checked as each of those two
 * functions checks its own, and the memory is mapped the same way.
 *
 * The memory objects are freed like any other (noiommu_free(), noiommu_memory_unref()); the
 * daemon keeps memory of a noiommu lease pinned until the device is quiesced.
 * noiommu_release_device() ends the lease and, with it, the memory's DMA addresses.
 *
 * Return: as noiommu_acquire_device() and noiommu_allocate(); -EINVAL also for @n_memory out
 * of range or @opts with a lease or flags. On failure nothing is returned and nothing stays
 * granted.
 */
int noiommu_acquire_device_with_memory(noiommu_conn *c, const char *address, unsigned flags,
                                       const uint64_t *sizes, size_t n_memory,
                                       const noiommu_alloc_options *opts,
                                       noiommu_lease **ret_lease, noiommu_memory **ret_memory);

/**
 * noiommu_release_device() - end a lease
 * @c: the connection that acquired @l
 * @l: the lease, or NULL (then nothing happens and 0 is returned)
 *
 * Closes the lease's device fd, calls io.noiommud.Broker.ReleaseDevice and frees the object.
 * The fd is closed first, so that by the time the daemon frees the device no copy of ours
 * keeps it bound. The daemon stops the device (Bus Master off, reset) before it frees the
 * memory mapped for the lease; memory objects allocated with the lease stay mapped here, but
 * their DMA addresses are no longer valid. The local object is freed even when the call fails;
 * the error is returned (-ENOENT: the daemon does not know the lease on @c; -EIO: the device
 * could not be stopped and is now quarantined, its memory stays pinned). Stop using the device
 * before calling this.
 *
 * Return: 0 or a negative errno.
 */
int noiommu_release_device(noiommu_conn *c, noiommu_lease *l);

/* Let polkit ask for authentication (noiommu_monitor()). */
#define NOIOMMU_MONITOR_INTERACTIVE 1U

/* Receives one Monitor() event: its parameters as JSON text, e.g.
 * {"event":"lease-granted","lease":"...","device":"0000:01:00.0",...}. The text is valid only
 * during the call. Return 0 to go on, anything else to stop (noiommu_monitor() returns it). */
typedef int (*noiommu_monitor_cb)(const char *event_json, void *userdata);

/**
 * noiommu_monitor() - follow device and lease changes (io.noiommud.Broker.Monitor)
 * @c:        the connection; it is dedicated to the stream from now on
 * @flags:    NOIOMMU_MONITOR_INTERACTIVE or 0
 * @cb:       called for every event, the first being {"event":"subscribed"}
 * @userdata: passed to @cb
 *
 * Blocks until @cb returns non-zero, the daemon ends the stream, or an error. polkit action
 * io.noiommud.manage. After it returns, only noiommu_disconnect() is useful on @c.
 *
 * Return: what @cb returned; 0 if the daemon ended the stream; -ECONNRESET if the connection
 * closed; a daemon error mapped to an errno (-EACCES: polkit said no); another negative errno.
 */
int noiommu_monitor(noiommu_conn *c, unsigned flags, noiommu_monitor_cb cb, void *userdata);

/**
 * noiommu_lease_unref() - drop a lease object without telling the daemon
 * @l: the lease, or NULL
 *
 * Closes the device fd and frees the object. The lease itself lasts until ReleaseDevice is
 * called for its id (noiommu_call()) or the connection closes.
 *
 * Return: NULL.
 */
noiommu_lease *noiommu_lease_unref(noiommu_lease *l);

/*
 * Accessors of a lease. Strings belong to the lease and live as long as it does.
 *
 * noiommu_lease_get_id():          lease id, NOIOMMU_ID_LEN lower-case hex digits
 * noiommu_lease_get_fd():          the device fd, borrowed: do not close it (dup it with
 *                                  F_DUPFD_CLOEXEC to keep it, with the caveat above)
 * noiommu_lease_get_address():     PCI address
 * noiommu_lease_get_backend():     "cdev-noiommu", "cdev-iommu" or "group-noiommu"
 * noiommu_lease_get_vendor_id():   PCI vendor id, 0 to 0xffff
 * noiommu_lease_get_device_id():   PCI device id, 0 to 0xffff
 * noiommu_lease_get_driver():      driver the function is bound to
 * noiommu_lease_get_iommu_group(): IOMMU group number, -1 if none
 * noiommu_lease_get_numa_node():   NUMA node of the device, -1 if the platform does not say
 *                                  (a good numa_node for its DMA memory)
 *
 * For a NULL lease the string accessors return NULL and the int accessors -EINVAL.
 */
const char *noiommu_lease_get_id(const noiommu_lease *l);
int noiommu_lease_get_fd(const noiommu_lease *l);
const char *noiommu_lease_get_address(const noiommu_lease *l);
const char *noiommu_lease_get_backend(const noiommu_lease *l);
int noiommu_lease_get_vendor_id(const noiommu_lease *l);
int noiommu_lease_get_device_id(const noiommu_lease *l);
const char *noiommu_lease_get_driver(const noiommu_lease *l);
int noiommu_lease_get_iommu_group(const noiommu_lease *l);
int noiommu_lease_get_numa_node(const noiommu_lease *l);

#ifdef __cplusplus
}
#endif
