/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peer identity at accept time. The pid + start time pair is a weak identity (CVE-2019-6133);
 * the pidfd from SO_PEERPIDFD (Linux 6.5+) pins the very process that connected. On older
 * kernels we fall back to pidfd_open(pid) right after accept, a weaker binding that is still
 * checked against the start time, and say so in the journal record (security.md §3.7 (b)).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>


#include "identity.h"
#include "internal/fd-util.h"
#include "internal/macro.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77                 /* Linux 6.5; bookworm's headers lack it */
#endif

#ifndef PIDFS_MAGIC
#define PIDFS_MAGIC 0x50494446
#endif

/* The "Pid:" line of a pidfd's fdinfo: the pid in our namespace, -1 once the process exited
 * (and was reaped), 0 if it is not visible to us. */
static int pidfd_get_pid(int pidfd, pid_t *ret) {
        _cleanup_free_ char *s = NULL;
        char path[64];
        const char *p;
        int pid, r;

        (void) snprintf(path, sizeof(path), "/proc/self/fdinfo/%i", pidfd);
        r = read_small_file_at(AT_FDCWD, path, &s);
        if (r < 0)
                return r;
        p = strstr(s, "\nPid:");
        if (!p || sscanf(p, "\nPid: %i", &pid) != 1)
                return -EBADMSG;
        *ret = pid;
        return 0;
}

static int pidfd_is_alive(int pidfd) {
        pid_t pid;
        int r;

        /* Signal 0 only checks: ESRCH means gone. EPERM means the process exists but we may
         * not signal it — the unit's bounding set has no CAP_KILL, so for every client of
         * another uid this is the answer for a live process. */
        if (syscall(SYS_pidfd_send_signal, pidfd, 0, NULL, 0) >= 0 || errno == EPERM)
                return 1;
        if (errno == ESRCH)
                return 0;
        if (errno != ENOSYS)
                return negative_errno();

        /* No pidfd_send_signal() (valgrind does not know it): the fdinfo "Pid:" line turns -1
         * once the process has exited and been reaped. */
        r = pidfd_get_pid(pidfd, &pid);
        if (r < 0)
                return r;
        return pid > 0;
}

static int peer_pidfd(int fd, pid_t pid, bool *ret_from_peer) {
        socklen_t l = sizeof(int);
        int pidfd = -EBADF;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &l) >= 0 && pidfd >= 0) {
                *ret_from_peer = true;
                return pidfd;
        }
        /* ENOPROTOOPT: kernel older than 6.5. EINVAL/ESRCH: the peer was already reaped. */
        if (errno != ENOPROTOOPT)
                return negative_errno();

        pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        if (pidfd < 0)
                return negative_errno();
        /* pidfds are always O_CLOEXEC */
        *ret_from_peer = false;
        return pidfd;
}

/* The client's systemd unit (the last NAME.service, NAME.scope or NAME.socket component of its cgroup
 * path), or the cgroup path itself. One read of /proc/PID/cgroup: this runs for every accepted
 * connection, and sd_pid_get_unit() and friends read the file (and PID 1's) several times. */
static int proc_get_unit(pid_t pid, char *buf, size_t size) {
        _cleanup_free_ char *s = NULL;
        char path[64];
        const char *cg = NULL, *unit = NULL;
        int r;

        (void) snprintf(path, sizeof(path), "/proc/%i/cgroup", (int) pid);
        r = read_small_file_at(AT_FDCWD, path, &s);
        if (r < 0)
                return r;

        /* cgroup v2 ("0::/path"), else the named systemd hierarchy of v1. */
        for (char *line = s, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                if (strncmp(line, "0::", 3) == 0)
                        cg = line + 3;
                else if (!cg && strstr(line, ":name=systemd:"))
                        cg = strstr(line, ":name=systemd:") + strlen(":name=systemd:");
        }
        if (!cg)
                return -ENODATA;

        for (const char *p = cg; p && *p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL) {
                size_t n = strcspn(p, "/");

                if ((n > 8 && strncmp(p + n - 8, ".service", 8) == 0) ||
                    (n > 6 && strncmp(p + n - 6, ".scope", 6) == 0) ||
                    (n > 7 && strncmp(p + n - 7, ".socket", 7) == 0))
                        unit = p;
        }
        if (unit)
                (void) snprintf(buf, size, "%.*s", (int) strcspn(unit, "/"), unit);
        else
                (void) snprintf(buf, size, "%s", cg);
        return 0;
}

int client_identity_from_socket(int fd, ClientIdentity *ret) {
        ClientIdentity id = CLIENT_IDENTITY_INIT;
        struct ucred cred = { .pid = 0, .uid = (uid_t) -1, .gid = (gid_t) -1 };
        socklen_t l = sizeof(cred);
        _cleanup_close_ int pidfd = -EBADF;
        struct statfs sfs;
        struct stat st;
        int r;

        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &l) < 0)
                return negative_errno();
        /* pid 0: the peer is in a pid namespace we cannot see into. The daemon runs in the
         * initial user namespace, so every uid is mapped and the overflow uid cannot appear. */
        if (cred.pid <= 0 || cred.uid == (uid_t) -1 || cred.gid == (gid_t) -1)
                return -EPERM;

        pidfd = peer_pidfd(fd, cred.pid, &id.pidfd_from_peer);
        if (pidfd < 0)
                return pidfd;

        r = proc_get_starttime(cred.pid, &id.start_time);
        if (r < 0)
                return r == -ENOENT ? -ESRCH : r;

        /* SO_PEERPIDFD names the connecting process itself. Check it is still alive now that
         * the start time is read: if it exited in between, /proc/PID may already belong to a
         * new process with a reused pid. (With the pidfd_open() fallback the pidfd may name
         * such a successor already; its start time then differs from the connector's, which
         * the re-check after polkit catches only if the connector's start time was read —
         * that is the documented weakness of kernels without SO_PEERPIDFD.) */
        r = pidfd_is_alive(pidfd);
        if (r < 0)
                return r;
        if (r == 0)
                return -ESRCH;

        if (fstatfs(pidfd, &sfs) >= 0 && sfs.f_type == PIDFS_MAGIC && fstat(pidfd, &st) >= 0)
                id.pidfd_ino = (uint64_t) st.st_ino;

        /* Informative only (audit records); the uid is what authorization uses. */
        (void) proc_get_unit(cred.pid, id.unit, sizeof(id.unit));

        id.uid = cred.uid;
        id.gid = cred.gid;
        id.pid = cred.pid;
        id.pidfd = TAKE_FD(pidfd);
        *ret = id;
        return 0;
}

int client_identity_still_valid(const ClientIdentity *id) {
        unsigned long long st;
        char state;
        int r;

        if (id->pidfd < 0 || id->pid <= 0)
                return 0;

        /* A pidfd names one process for good: if it is alive, the pid is still that process's,
         * and /proc/PID below is its entry. The start time catches the pidfd_open() fallback
         * having opened a successor with a reused pid at accept. */
        r = pidfd_is_alive(id->pidfd);
        if (r <= 0)
                return r;
        r = proc_get_stat(id->pid, &st, &state);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        /* A zombie still answers signal 0 and keeps its start time, but it has exited: the
         * process that connected is gone (a socket handed to a child, say). */
        return st == id->start_time && state != 'Z';
}

void client_identity_done(ClientIdentity *id) {
        id->pidfd = safe_close(id->pidfd);
}
