/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Who is on the other end of a connection, as the kernel said at accept time (security.md §3.5).
 * A leaf (layer 0). Nothing here ever comes from a request. Fields start at invalid sentinels,
 * never 0: an unset uid that stayed 0 is how CVE-2021-3560 happened.
 *
 * Besides SO_PEERCRED/SO_PEERPIDFD this records, for audit records, polkit details and
 * per-container limits, what the kernel says about the client's containment: its full cgroup
 * path, the outermost unit and container id that path shows (cgroup_parse() below says which
 * names are believed), its pid in its own pid namespace, its user namespace (and that
 * namespace's owner) and its effective capabilities. All of it is read once, at accept, like
 * the uid: a process that changes its cgroup or capabilities after connecting is judged as it
 * was when it connected (the same rule as a setuid exec after connect, security.md §10 row 5).
 *
 * A ClientIdentity owns its pidfd. Exactly one is the owner, the Client's (client.h); every copy
 * kept elsewhere (a lease's or a region's holder, a polkit query) has pidfd = -EBADF.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CLIENT_CGROUP_MAX 1024          /* longer paths are cut and marked with cgroup_truncated */
#define CLIENT_CONTAINER_ID_MAX 64      /* 64 lower-case hex digits */
#define CLIENT_UNIT_MAX 256             /* systemd's UNIT_NAME_MAX (unit-name.h), NUL included */

/* Capabilities the daemon asks about (linux/capability.h numbers). */
#define CLIENT_CAP_SYS_RAWIO 17
#define CLIENT_CAP_SYS_ADMIN 21

typedef struct ClientIdentity {
        uid_t uid;                      /* SO_PEERCRED; (uid_t) -1 until known */
        gid_t gid;
        pid_t pid;                      /* SO_PEERCRED, in our pid namespace; 0 = not visible */
        unsigned long long start_time;  /* field 22 of /proc/PID/stat at accept */
        int pidfd;                      /* SO_PEERPIDFD, or pidfd_open() on older kernels */
        bool pidfd_from_peer;           /* true: SO_PEERPIDFD (race-free); false: pidfd_open() */
        uint64_t pidfd_ino;             /* pidfs inode (unique per process), 0 if not pidfs */

        char cgroup[CLIENT_CGROUP_MAX]; /* full cgroup path as the daemon sees it, "" if unknown */
        bool cgroup_truncated;
        char unit[CLIENT_UNIT_MAX];     /* outermost unit (see cgroup_parse()), "" if none */
        size_t unit_cgroup_len;         /* cgroup[0..len) is the unit's own cgroup; 0: no unit */
        char container_id[CLIENT_CONTAINER_ID_MAX + 1];  /* "" if the path shows none */
        const char *container_engine;   /* static: "podman", "docker", ...; NULL if none */

        pid_t nspid;                    /* pid in its own pid namespace (last NSpid field); 0 unknown */
        uint64_t userns_ino;            /* inode of its user namespace; 0 unknown */
        uid_t userns_owner;             /* owner uid of that namespace; (uid_t) -1 unknown */
        int userns_initial;             /* 1: the initial user namespace, 0: not, -1: unknown */
        uint64_t cap_effective;         /* CapEff of /proc/PID/status */
        bool cap_known;
} ClientIdentity;

#define CLIENT_IDENTITY_INIT                                                            \
        (ClientIdentity) {                                                              \
                .uid = (uid_t) -1, .gid = (gid_t) -1, .pid = 0, .pidfd = -EBADF,        \
                .userns_owner = (uid_t) -1, .userns_initial = -1,                       \
        }

/* Reads the identity of the peer of a connected AF_UNIX socket. Fails when the peer is not
 * visible (pid 0) or is already gone. */
int client_identity_from_socket(int fd, ClientIdentity *ret);

/* The connecting process is still the same live process: its pidfd has not exited, the pidfd
 * still names the same pid, and the start time is unchanged. 1 if so, 0 if not, <0 on error. */
int client_identity_still_valid(const ClientIdentity *id);

void client_identity_done(ClientIdentity *id);

/* Whether the client, as it was at accept, held capability cap (CLIENT_CAP_*) in the initial
 * user namespace: cap in its effective set and the client in the initial user namespace.
 * Returns 1 yes, 0 no, -ENODATA when it could not be read (a non-dumpable process the daemon may
 * not inspect): callers treat that as no. */
int client_identity_has_capability(const ClientIdentity *id, int cap);

/* The key per-container limits count under: "container:<id>" when the cgroup path shows a
 * container, else "unit:<the outermost unit's cgroup path>"; NULL when neither is known (then
 * per-container limits do not apply, only per-uid ones). Writes into buf. */
const char *client_identity_limit_key(const ClientIdentity *id, char *buf, size_t size);

/* The cgroup path with everything but [A-Za-z0-9._:@/+,=-] written as \xNN, for places that
 * need printable ASCII: polkit details (which an authentication dialog may show, and which
 * must hold no client free text, security.md §3.10) and JSON (valid UTF-8 only). Below a
 * delegation boundary the client names its cgroups itself, so the raw bytes can be anything
 * but '/' and NUL. size >= 4 * strlen(s) + 1 keeps it whole. */
void cgroup_escape(const char *s, char *buf, size_t size);

/* --- cgroup paths (exposed for the unit tests) ---------------------------------------------- */

/* Is the cgroup at path[0..len) (a prefix of a cgroup path, starting with '/') a delegation
 * boundary: a cgroup handed to someone other than the one who made its parent? 1 yes, 0 no,
 * negative errno if it cannot be told (treated as yes). */
typedef int (*cgroup_delegated_t)(const char *path, size_t len, void *userdata);

typedef struct CgroupInfo {
        size_t unit_offset, unit_len;   /* the unit component within the path; unit_len 0: none */
        size_t unit_cgroup_len;         /* length of the path up to the end of the unit */
        char container_id[CLIENT_CONTAINER_ID_MAX + 1];
        const char *container_engine;   /* NULL: no container */
} CgroupInfo;

/* Reads a cgroup path (as in /proc/PID/cgroup) for the names in it that can be believed.
 *
 * Only the system manager (or root, on a machine without systemd) creates cgroups at the top of
 * the hierarchy; below a unit's cgroup, or below any delegated cgroup, whoever the unit or the
 * delegation belongs to names things as it likes (an "sshd.service", a "libpod-<id>.scope").
 * So the walk starts at the root, goes down through ".slice" components only, and stops at the
 * first component that is not a slice, or at the first delegation boundary:
 *
 *   - the first non-slice component, if it is a NAME.service or NAME.scope, is the unit;
 *   - the container id comes only from that unit's name (libpod-, libpod-conmon-, docker-,
 *     cri-containerd-, crio-, crio-conmon- followed by 64 hex digits and ".scope"), or, when
 *     the path has no unit, from the fixed places container engines with a cgroupfs driver use
 *     at the top of the hierarchy: /libpod_parent/libpod-<id>, /docker/<id>, /k8s.io/<id>,
 *     /kubepods[/besteffort|/burstable]/pod<uid>/<id>, each component but the last not
 *     delegated.
 *
 * A delegated slice, or any component the delegated callback cannot judge, ends the walk with
 * nothing believed. A path outside the daemon's cgroup namespace ("/..") shows nothing. */
int cgroup_parse(const char *path, cgroup_delegated_t delegated, void *userdata, CgroupInfo *ret);

/* Picks the client's path out of /proc/PID/cgroup text: the "0::" line when the machine runs
 * the unified hierarchy only (unified), else the "name=systemd" line (what systemd itself
 * tracks in legacy and hybrid mode), falling back to a "0::" line other than "/". Returns a
 * pointer into text (modified in place), or NULL; *ret_named says which line it is. */
const char *cgroup_pick_line(char *text, bool unified, bool *ret_named);

/* The container engine for the container id of a unit name, NULL if it names none. */
const char *cgroup_unit_container(const char *unit, size_t len, char *ret_id);
