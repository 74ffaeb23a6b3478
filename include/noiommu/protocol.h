/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Wire protocol constants of io.noiommud.Broker, shared by the daemon, libnoiommu and anything
 * else that speaks to the broker. Everything here is part of the protocol: changing a value
 * breaks existing clients. The interface description itself is daemon/io.noiommud.Broker.varlink.
 *
 * Framing is Varlink: each message is one JSON object followed by a NUL byte, over a
 * SOCK_STREAM UNIX socket. File descriptors travel only from the daemon to the client, attached
 * with SCM_RIGHTS to the first byte of the reply that names them by index.
 */
#pragma once

#define NOIOMMU_SOCKET_PATH_DEFAULT "/run/noiommud/io.noiommud.Broker"
#define NOIOMMU_SOCKET_ENV "NOIOMMUD_SOCKET"
/* The PCI address a container was given (the CDI device noiommud.io/vfio=ADDRESS sets it): the
 * default of noiommu_acquire_device(c, NULL, ...), "noiommuctl acquire" and "noiommuctl run". */
#define NOIOMMU_DEVICE_ENV "NOIOMMUD_DEVICE"

#define NOIOMMU_INTERFACE "io.noiommud.Broker"

#define NOIOMMU_METHOD_LIST_DEVICES    NOIOMMU_INTERFACE ".ListDevices"
#define NOIOMMU_METHOD_ALLOCATE_MEMORY NOIOMMU_INTERFACE ".AllocateMemory"
#define NOIOMMU_METHOD_FREE_MEMORY     NOIOMMU_INTERFACE ".FreeMemory"
#define NOIOMMU_METHOD_ACQUIRE_DEVICE  NOIOMMU_INTERFACE ".AcquireDevice"
#define NOIOMMU_METHOD_RELEASE_DEVICE  NOIOMMU_INTERFACE ".ReleaseDevice"
#define NOIOMMU_METHOD_LIST_LEASES     NOIOMMU_INTERFACE ".ListLeases"
#define NOIOMMU_METHOD_REVOKE_LEASE    NOIOMMU_INTERFACE ".RevokeLease"
#define NOIOMMU_METHOD_MONITOR         NOIOMMU_INTERFACE ".Monitor"

#define VARLINK_SERVICE_INTERFACE                "org.varlink.service"
#define VARLINK_METHOD_GET_INFO                  VARLINK_SERVICE_INTERFACE ".GetInfo"
#define VARLINK_METHOD_GET_INTERFACE_DESCRIPTION VARLINK_SERVICE_INTERFACE ".GetInterfaceDescription"

#define NOIOMMU_ERROR_NO_SUCH_DEVICE        NOIOMMU_INTERFACE ".NoSuchDevice"
#define NOIOMMU_ERROR_DEVICE_BUSY           NOIOMMU_INTERFACE ".DeviceBusy"
#define NOIOMMU_ERROR_DEVICE_QUARANTINED    NOIOMMU_INTERFACE ".DeviceQuarantined"
#define NOIOMMU_ERROR_PERMISSION_DENIED     NOIOMMU_INTERFACE ".PermissionDenied"
#define NOIOMMU_ERROR_INTERACTIVE_AUTH_REQUIRED NOIOMMU_INTERFACE ".InteractiveAuthenticationRequired"
#define NOIOMMU_ERROR_NOT_SUPPORTED         NOIOMMU_INTERFACE ".NotSupported"
#define NOIOMMU_ERROR_OUT_OF_MEMORY         NOIOMMU_INTERFACE ".OutOfMemory"
#define NOIOMMU_ERROR_LIMIT_EXCEEDED        NOIOMMU_INTERFACE ".LimitExceeded"
#define NOIOMMU_ERROR_NO_SUCH_LEASE         NOIOMMU_INTERFACE ".NoSuchLease"
#define NOIOMMU_ERROR_NO_SUCH_MEMORY        NOIOMMU_INTERFACE ".NoSuchMemory"
#define NOIOMMU_ERROR_PROTOCOL_VIOLATION    NOIOMMU_INTERFACE ".ProtocolViolation"
#define NOIOMMU_ERROR_INTERNAL              NOIOMMU_INTERFACE ".InternalError"

#define VARLINK_ERROR_INVALID_PARAMETER     VARLINK_SERVICE_INTERFACE ".InvalidParameter"
#define VARLINK_ERROR_METHOD_NOT_FOUND      VARLINK_SERVICE_INTERFACE ".MethodNotFound"
#define VARLINK_ERROR_INTERFACE_NOT_FOUND   VARLINK_SERVICE_INTERFACE ".InterfaceNotFound"
#define VARLINK_ERROR_METHOD_NOT_IMPLEMENTED VARLINK_SERVICE_INTERFACE ".MethodNotImplemented"
/* A method that streams its replies (Monitor) was called without "more". */
#define VARLINK_ERROR_EXPECTED_MORE         VARLINK_SERVICE_INTERFACE ".ExpectedMore"

/*
 * Every error name of the protocol, with the errno libnoiommu returns for it and a one-line
 * meaning, as X(NAME, ERRNO, MEANING). This is the one table: libnoiommu maps replies with it,
 * noiommuctl explains errors with it, noiommu.h and docs/libnoiommu.md list it (a unit test,
 * test-errors, compares both with this table). Expanding it needs <errno.h>. A name not in the
 * table (a newer daemon's error) is -EIO, like InternalError. Several names share an errno;
 * noiommu_last_error() tells them apart.
 */
#define NOIOMMU_ERROR_TABLE(X)                                                                  \
        X(NOIOMMU_ERROR_PERMISSION_DENIED, EACCES,                                              \
          "polkit denied the request")                              \
        X(NOIOMMU_ERROR_INTERACTIVE_AUTH_REQUIRED, EKEYREJECTED,                                \
          "polkit allows this only after authentication: retry with the interactive flag")      \
        X(NOIOMMU_ERROR_OUT_OF_MEMORY, ENOMEM,                                                  \
          "not enough free hugepages of the requested size")                                    \
        X(NOIOMMU_ERROR_LIMIT_EXCEEDED, EUSERS,                                                 \
          "a per-user or per-connection limit of the daemon was reached")     \
        X(NOIOMMU_ERROR_NO_SUCH_MEMORY, ENOENT,                                                 \
          "no memory with this id on this connection")                                          \
        X(NOIOMMU_ERROR_NO_SUCH_LEASE, ENOENT,                                                  \
          "no lease with this id (on this connection; at all, for RevokeLease)")                \
        X(NOIOMMU_ERROR_NO_SUCH_DEVICE, ENOENT,                                                 \
          "no such PCI function, or it is not bound to vfio-pci")                               \
        X(NOIOMMU_ERROR_NOT_SUPPORTED, EOPNOTSUPP,                                              \
          "the daemon or the kernel cannot do this here")                    \
        X(NOIOMMU_ERROR_DEVICE_BUSY, EBUSY,                                                     \
          "the device is leased to someone else")                                               \
        X(NOIOMMU_ERROR_DEVICE_QUARANTINED, EIO,                                                \
          "the device failed its teardown and is quarantined until an administrator revokes")   \
        X(VARLINK_ERROR_INVALID_PARAMETER, EINVAL,                                              \
          "a parameter is missing, malformed or out of range")            \
        X(NOIOMMU_ERROR_PROTOCOL_VIOLATION, EPROTO,                                             \
          "the daemon received a malformed request and closed the connection")                  \
        X(NOIOMMU_ERROR_INTERNAL, EIO,                                                          \
          "the daemon failed internally; its journal says why")                                 \
        X(VARLINK_ERROR_METHOD_NOT_FOUND, EIO,                                                  \
          "the daemon does not know the method (it is older than the client?)")                 \
        X(VARLINK_ERROR_INTERFACE_NOT_FOUND, EIO,                                               \
          "the daemon does not implement the interface")                                        \
        X(VARLINK_ERROR_METHOD_NOT_IMPLEMENTED, EIO,                                            \
          "the interface defines the method but the daemon does not implement it")              \
        X(VARLINK_ERROR_EXPECTED_MORE, EIO,                                                     \
          "the method streams its replies and must be called with more")

/* Largest request the daemon accepts, including the terminating NUL. Requests are tiny; a
 * longer one is a protocol violation and ends the connection. */
#define NOIOMMU_REQUEST_SIZE_MAX (64U * 1024U)

/* Largest reply a client accepts. A segment table of 1 GiB in 2 MiB pages that are not
 * contiguous is 512 segments (about 40 KiB of JSON); a 64-GiB table or a long device list still
 * fits. */
#define NOIOMMU_REPLY_SIZE_MAX (4U * 1024U * 1024U)

/* Most fds one reply carries: the device fd and a memfd per region; AcquireDevice with three
 * regions of memory uses all of them. */
#define NOIOMMU_FDS_PER_REPLY_MAX 4

/* Most memory regions one AcquireDevice may ask for ("memory"): its reply carries the device fd
 * and one memfd per region in one SCM_RIGHTS message, which every client sizes for
 * NOIOMMU_FDS_PER_REPLY_MAX fds: the kernel closes the fds that do not fit in the receiver's
 * control buffer and sets MSG_CTRUNC (recvmsg(2), unix(7)), and the library then refuses the
 * whole reply. Raising that bound would break clients built against this header. A container wants one
 * region, two at most (packet buffers and descriptor rings); more go through AllocateMemory. */
#define NOIOMMU_ACQUIRE_MEMORY_MAX (NOIOMMU_FDS_PER_REPLY_MAX - 1)

/* Device addresses are PCI "domain:bus:device.function", lower-case hex, e.g. 0000:01:00.0. */
#define NOIOMMU_PCI_ADDRESS_LEN 12

/* Memory and lease ids are 32 lower-case hex digits (a random 128-bit id). */
#define NOIOMMU_ID_LEN 32
