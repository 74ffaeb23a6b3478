/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Peer identity at accept time. The pid + start time pair is a weak identity (CVE-2019-6133);
 * the pidfd from SO_PEERPIDFD (Linux 6.5+) pins the very process that connected. On older
 * kernels we fall back to pidfd_open(pid) right after accept, a weaker binding that is still
 * checked against the start time, and say so in the journal record (security.md §3.7 (b)).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
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
        r = read_virtual_file_at(AT_FDCWD, path, &s);
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

/* --- cgroup path ------------------------------------------------------------------------------ */

static bool component_endswith(const char *c, size_t n, const char *suffix) {
        size_t l = strlen(suffix);

        return n > l && memcmp(c + n - l, suffix, l) == 0;
}

static bool component_is(const char *c, size_t n, const char *name) {
        return n == strlen(name) && memcmp(c, name, n) == 0;
}

static bool is_hex64(const char *s, size_t n) {
        if (n != CLIENT_CONTAINER_ID_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return false;
        return true;
}

const char *cgroup_unit_container(const char *unit, size_t len, char *ret_id) {
        /* Scope units the engines have the system manager create for a container (systemd
         * cgroup driver), and the conmon scopes of podman and CRI-O, which belong to the same
         * container. */
        static const struct {
                const char *prefix;
                const char *engine;
        } table[] = {
                { "libpod-conmon-", "podman" },
                { "libpod-", "podman" },
                { "docker-", "docker" },
                { "cri-containerd-", "containerd" },
                { "crio-conmon-", "cri-o" },
                { "crio-", "cri-o" },
        };

        if (!component_endswith(unit, len, ".scope"))
                return NULL;
        len -= strlen(".scope");
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                size_t pl = strlen(table[i].prefix);

                if (len > pl && memcmp(unit, table[i].prefix, pl) == 0 && is_hex64(unit + pl, len - pl)) {
                        memcpy(ret_id, unit + pl, len - pl);
                        ret_id[len - pl] = 0;
                        return table[i].engine;
                }
        }
        return NULL;
}

#define CGROUP_COMPONENTS_MAX 32

/* Container ids at the fixed top-level places of cgroupfs drivers. c[i]/n[i] are the first
 * components of the path, off[i] their offsets. Every component but the container's own must
 * not be delegated. */
static const char *cgroupfs_container(const char *path, const char *const *c, const size_t *n,
                                      size_t count, cgroup_delegated_t delegated, void *userdata,
                                      char *ret_id) {
        const char *engine = NULL;
        size_t id_index = 0;

        if (count >= 2 && component_is(c[0], n[0], "libpod_parent")) {
                for (const char *const *p = (const char *const[]) { "libpod-conmon-", "libpod-", NULL }; *p; p++) {
                        size_t pl = strlen(*p);

                        if (n[1] > pl && memcmp(c[1], *p, pl) == 0 && is_hex64(c[1] + pl, n[1] - pl)) {
                                memcpy(ret_id, c[1] + pl, n[1] - pl);
                                ret_id[n[1] - pl] = 0;
                                engine = "podman";
                                id_index = 1;
                                break;
                        }
                }
        } else if (count >= 2 && component_is(c[0], n[0], "docker") && is_hex64(c[1], n[1])) {
                engine = "docker", id_index = 1;
        } else if (count >= 2 && component_is(c[0], n[0], "k8s.io") && is_hex64(c[1], n[1])) {
                engine = "containerd", id_index = 1;
        } else if (count >= 3 && component_is(c[0], n[0], "kubepods")) {
                size_t i = 1;

                if (component_is(c[1], n[1], "besteffort") || component_is(c[1], n[1], "burstable"))
                        i = 2;
                if (count > i + 1 && n[i] > 3 && memcmp(c[i], "pod", 3) == 0 && is_hex64(c[i + 1], n[i + 1]))
                        engine = "kubernetes", id_index = i + 1;
        }
        if (!engine)
                return NULL;

        for (size_t i = 0; i < id_index; i++)
                if (delegated(path, (size_t) (c[i] + n[i] - path), userdata) != 0)
                        return NULL;
        if (id_index > 0 && engine && !streq(engine, "podman")) {
                memcpy(ret_id, c[id_index], n[id_index]);
                ret_id[n[id_index]] = 0;
        }
        return engine;
}

int cgroup_parse(const char *path, cgroup_delegated_t delegated, void *userdata, CgroupInfo *ret) {
        CgroupInfo info = {};
        const char *c[CGROUP_COMPONENTS_MAX];
        size_t n[CGROUP_COMPONENTS_MAX], count = 0;

        assert(path);
        assert(delegated);
        assert(ret);

        /* Only absolute paths inside our cgroup namespace; "/.." means the client is outside
         * it and the rest of the path is relative to something we cannot see. */
        if (path[0] != '/' || strstr(path, "/..") || strstr(path, "//")) {
                *ret = info;
                return 0;
        }

        for (const char *p = path + 1; *p && count < CGROUP_COMPONENTS_MAX; ) {
                size_t l = strcspn(p, "/");

                if (l == 0)
                        break;
                c[count] = p;
                n[count] = l;
                count++;
                p += l;
                if (*p == '/')
                        p++;
        }

        /* Down through slices only. The first other component ends the walk. */
        for (size_t i = 0; i < count; i++) {
                size_t end = (size_t) (c[i] + n[i] - path);
                bool slice = component_endswith(c[i], n[i], ".slice");
                bool unit = component_endswith(c[i], n[i], ".service") || component_endswith(c[i], n[i], ".scope");

                if (!slice && !unit)
                        break;
                if (slice) {
                        /* A slice is never delegated by systemd: one that is was not made by
                         * the system manager, and neither was anything below it. */
                        if (delegated(path, end, userdata) != 0)
                                break;
                        continue;
                }
                /* The outermost unit. Its own name is the manager's even when it is delegated
                 * (Delegate=yes): only what lies below it is the delegate's. */
                if (n[i] < CLIENT_UNIT_MAX) {
                        info.unit_offset = (size_t) (c[i] - path);
                        info.unit_len = n[i];
                        info.unit_cgroup_len = end;
                        info.container_engine = cgroup_unit_container(c[i], n[i], info.container_id);
                }
                break;
        }

        if (info.unit_len == 0)
                info.container_engine = cgroupfs_container(path, c, n, count, delegated, userdata,
                                                           info.container_id);
        if (!info.container_engine)
                info.container_id[0] = 0;
        *ret = info;
        return 0;
}

const char *cgroup_pick_line(char *text, bool unified, bool *ret_named) {
        const char *v2 = NULL, *named = NULL;

        for (char *line = text, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                if (strncmp(line, "0::", 3) == 0)
                        v2 = line + 3;
                else if (strstr(line, ":name=systemd:"))
                        named = strstr(line, ":name=systemd:") + strlen(":name=systemd:");
        }
        *ret_named = false;
        if (unified)
                return v2;
        /* Legacy or hybrid: systemd tracks units in name=systemd (and mirrors them into the
         * unified hierarchy in hybrid mode). Without systemd, a "0::" line other than "/"
         * is the only other record of where a process was put. */
        if (named && (!streq(named, "/") || !v2 || streq(v2, "/"))) {
                *ret_named = true;
                return named;
        }
        return v2 ?: named;
}

/* Where the hierarchy whose path we record is mounted, found once. */
static struct {
        bool done;
        bool unified;                   /* cgroup2 only: the "0::" line */
        char v2_mount[256];
        char named_mount[256];
} cgroup_layout;

static void cgroup_layout_init(void) {
        _cleanup_free_ char *s = NULL;
        struct statfs sfs;

        if (cgroup_layout.done)
                return;
        cgroup_layout.done = true;
        cgroup_layout.unified = statfs("/sys/fs/cgroup/", &sfs) >= 0 && sfs.f_type == CGROUP2_SUPER_MAGIC;

        /* mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPEROPTS" */
        if (read_small_file_at(AT_FDCWD, "/proc/self/mountinfo", &s) < 0)
                return;
        for (char *line = s, *next; line && *line; line = next) {
                char root[256], mnt[256], fstype[32], superopts[256];
                const char *dash;

                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                dash = strstr(line, " - ");
                if (!dash || sscanf(line, "%*s %*s %*s %255s %255s", root, mnt) != 2 ||
                    sscanf(dash + 3, "%31s %*s %255s", fstype, superopts) != 2 || !streq(root, "/"))
                        continue;
                if (streq(fstype, "cgroup2") && !cgroup_layout.v2_mount[0])
                        (void) snprintf(cgroup_layout.v2_mount, sizeof(cgroup_layout.v2_mount), "%s", mnt);
                else if (streq(fstype, "cgroup") && strstr(superopts, "name=systemd") &&
                         !cgroup_layout.named_mount[0])
                        (void) snprintf(cgroup_layout.named_mount, sizeof(cgroup_layout.named_mount), "%s", mnt);
        }
}

/* The real delegation test: a cgroup directory owned by someone other than root was handed to
 * that user (systemd chowns it for Delegate=yes units with User=, and so does any manual
 * delegation); one marked with the trusted.delegate or user.delegate xattr was delegated by
 * systemd (>= 251) to a process running as root. */
static int cgroup_dir_delegated(const char *path, size_t len, void *userdata) {
        const char *mount = userdata;
        char p[CLIENT_CGROUP_MAX + 256], v[8];
        struct stat st;

        if (!mount || !mount[0])
                return -ENOENT;
        (void) snprintf(p, sizeof(p), "%s%.*s", mount, (int) len, path);
        if (stat(p, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if (st.st_uid != 0)
                return 1;
        for (const char *const *x = (const char *const[]) { "trusted.delegate", "user.delegate", NULL }; *x; x++) {
                ssize_t k = getxattr(p, *x, v, sizeof(v) - 1);

                if (k > 0) {
                        v[k] = 0;
                        if (streq(v, "1"))
                                return 1;
                }
        }
        return 0;
}

static void identity_read_cgroup(pid_t pid, ClientIdentity *id) {
        _cleanup_free_ char *s = NULL;
        const char *cg, *mount;
        char path[64];
        CgroupInfo info;
        bool named;

        cgroup_layout_init();
        (void) snprintf(path, sizeof(path), "/proc/%i/cgroup", (int) pid);
        if (read_virtual_file_at(AT_FDCWD, path, &s) < 0)
                return;
        cg = cgroup_pick_line(s, cgroup_layout.unified, &named);
        if (!cg)
                return;

        id->cgroup_truncated = strlen(cg) >= sizeof(id->cgroup);
        (void) snprintf(id->cgroup, sizeof(id->cgroup), "%s", cg);
        if (id->cgroup_truncated)
                return;                 /* nothing is believed of a path we could not keep */

        /* Which mount holds the hierarchy of the line we took. */
        mount = cgroup_layout.unified ? "/sys/fs/cgroup" :
                named ? cgroup_layout.named_mount : cgroup_layout.v2_mount;
        if (cgroup_parse(id->cgroup, cgroup_dir_delegated, (void *) mount, &info) < 0)
                return;
        if (info.unit_len > 0) {
                (void) snprintf(id->unit, sizeof(id->unit), "%.*s", (int) info.unit_len,
                                id->cgroup + info.unit_offset);
                id->unit_cgroup_len = info.unit_cgroup_len;
        }
        if (info.container_engine) {
                memcpy(id->container_id, info.container_id, sizeof(id->container_id));
                id->container_engine = info.container_engine;
        }
}

/* --- namespaces and capabilities ------------------------------------------------------------- */

#ifndef NS_GET_OWNER_UID
#define NS_GET_OWNER_UID _IO(0xb7, 0x4)
#endif

/* From /proc/PID/status (readable by anyone): the last NSpid field and CapEff. */
static void identity_read_status(pid_t pid, ClientIdentity *id) {
        _cleanup_free_ char *s = NULL;
        char path[64];
        const char *p;

        (void) snprintf(path, sizeof(path), "/proc/%i/status", (int) pid);
        if (read_virtual_file_at(AT_FDCWD, path, &s) < 0)
                return;
        p = strstr(s, "\nNSpid:");
        if (p) {
                const char *e = strchr(p + 1, '\n') ?: p + strlen(p);
                const char *last = e;
                int v;

                while (last > p && (last[-1] == ' ' || last[-1] == '\t'))
                        last--;
                while (last > p && last[-1] != ' ' && last[-1] != '\t')
                        last--;
                if (sscanf(last, "%i", &v) == 1 && v > 0)
                        id->nspid = v;
        }
        p = strstr(s, "\nCapEff:");
        if (p) {
                unsigned long long v;

                if (sscanf(p, "\nCapEff: %llx", &v) == 1) {
                        id->cap_effective = v;
                        id->cap_known = true;
                }
        }
}

/* The user namespace: its inode, whether it is the initial one, and its owner. Opening
 * /proc/PID/ns/user needs ptrace read access: the daemon (uid 0) has it for uid-0 clients that
 * are dumpable, which is what the capability check needs; for other uids it needs
 * CAP_SYS_PTRACE, and without it these fields stay unknown (informative only for them). */
/* The inode of the initial user namespace (PROC_USER_INIT_INO in include/linux/proc_ns.h, fixed
 * since Linux 3.8). Not taken from /proc/1/ns/user: PID 1 may be one the daemon cannot inspect,
 * and the daemon's own namespace is not necessarily the initial one (a test runs it in a
 * child user namespace). */
#define USER_NS_INIT_INO 0xEFFFFFFDU

static void identity_read_userns(pid_t pid, ClientIdentity *id) {
        _cleanup_close_ int fd = -EBADF;
        char path[64];
        struct stat st;
        /* Initialized although the ioctl writes it: valgrind does not know NS_GET_OWNER_UID
         * and would report every later use as uninitialised. */
        uid_t owner = (uid_t) -1;

        (void) snprintf(path, sizeof(path), "/proc/%i/ns/user", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return;
        id->userns_ino = (uint64_t) st.st_ino;
        id->userns_initial = st.st_ino == USER_NS_INIT_INO;
        if (ioctl(fd, NS_GET_OWNER_UID, &owner) >= 0)
                id->userns_owner = owner;
}

int client_identity_has_capability(const ClientIdentity *id, int cap) {
        assert(cap >= 0 && cap < 64);

        if (!id->cap_known || id->userns_initial < 0)
                return -ENODATA;
        /* Capabilities in a child user namespace count only there: the kernel checks the
         * noiommu open and pagemap against the initial one. */
        return id->userns_initial == 1 && (id->cap_effective & (UINT64_C(1) << cap)) != 0;
}

void cgroup_escape(const char *s, char *buf, size_t size) {
        size_t o = 0;

        assert(size > 0);
        for (; *s && o + 5 < size; s++) {
                unsigned char ch = (unsigned char) *s;

                if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                    strchr("._:@/+,=-", ch))
                        buf[o++] = (char) ch;
                else
                        o += (size_t) snprintf(buf + o, size - o, "\\x%02x", ch);
        }
        buf[o] = 0;
}

const char *client_identity_limit_key(const ClientIdentity *id, char *buf, size_t size) {
        if (id->container_id[0])
                (void) snprintf(buf, size, "container:%s", id->container_id);
        else if (id->unit_cgroup_len > 0)
                (void) snprintf(buf, size, "unit:%.*s", (int) id->unit_cgroup_len, id->cgroup);
        else
                return NULL;
        return buf;
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

        /* Containment, for records, polkit details, per-container limits and the check of
         * uid-0 clients' capabilities. Read after the start time and before the liveness
         * check below, so that all of it describes the process the pidfd names. With the
         * pidfd_open() fallback (no SO_PEERPIDFD) a connector that exited before accept could
         * have its pid reused, and these would describe the successor; that is the fallback's
         * documented weakness (security.md §3.7 (b)), as for the start time. */
        identity_read_cgroup(cred.pid, &id);
        identity_read_status(cred.pid, &id);
        identity_read_userns(cred.pid, &id);

        /* SO_PEERPIDFD names the connecting process itself. Check it is still alive now that
         * the start time and the rest are read: if it exited in between, /proc/PID may already belong to a
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

        /* A pidfd from SO_PEERPIDFD names the connecting process itself, for good. It polls
         * readable once that process has exited, a zombie included (pidfd_poll() in
         * kernel/fork.c: no task left, or thread_group_exited(), which is true from the moment
         * exit_state is set) — pidfd_open(2): "When the process that it refers to terminates,
         * these interfaces indicate the file descriptor as readable". One poll() then answers
         * what signal 0 and /proc/PID/stat's state answered together. */
        if (id->pidfd_from_peer) {
                struct pollfd pfd = { .fd = id->pidfd, .events = POLLIN };

                r = poll(&pfd, 1, 0);
                if (r < 0)
                        return negative_errno();
                return r == 0;
        }

        /* The pidfd_open() fallback: if it is alive, the pid is still that process's, and
         * /proc/PID below is its entry. The start time catches the fallback having opened a
         * successor with a reused pid at accept. */
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
