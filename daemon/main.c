/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * noiommud: hands unprivileged clients pinned DMA memory and pre-bound VFIO device fds after a
 * polkit check on their kernel-verified identity. See README.md, docs/design.md and, for the
 * module map, docs/architecture.md.
 *
 * The top layer (7): options and logging, the start-up checks that say what the host lacks
 * (CAP_SYS_ADMIN for pagemap, io_uring, CAP_IPC_LOCK, hugetlb; a child pid namespace is
 * refused), then the Manager with dispatch.c's dispatch_current() as every client's request
 * handler, then either the previous image's state (reexec.c) or the listening socket and the
 * fd store's leases (manager_listen()), and the loop.
 * Owns nothing past start-up but the Manager. Trusts its command line and environment (the
 * service manager's), never a client.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "backend.h"
#include "config.h"
#include "dispatch.h"
#include "internal/fd-util.h"
#include "internal/log.h"
#include "hugepage.h"
#include "manager.h"
#include "reexec.h"
#include "settings.h"
#include "noiommu/protocol.h"

static void help(void) {
        printf("Usage: noiommud [OPTIONS]\n\n"
               "Broker for VFIO devices and pinned hugepage DMA memory.\n\n"
               "  -h --help             Show this help\n"
               "     --version          Show the version\n"
               "     --listen PATH      Bind the Varlink socket at PATH unless the service manager\n"
               "                        passed one (default: $" NOIOMMU_SOCKET_ENV " or\n"
               "                        " NOIOMMU_SOCKET_PATH_DEFAULT ")\n"
               "     --config PATH      Configuration file (default: " NOIOMMU_SETTINGS_PATH ",\n"
               "                        plus PATH.d/NAME.conf drop-ins)\n"
               "     --log-level LEVEL  debug, info, notice, warning or err\n\n"
               "polkit is reached on the system bus ($DBUS_SYSTEM_BUS_ADDRESS honoured).\n");
}

/* The inode of the initial pid namespace (PROC_PID_INIT_INO in include/linux/proc_ns.h, fixed
 * since Linux 3.8). */
#define PID_NS_INIT_INO 0xEFFFFFFCU

/* SO_PEERCRED translates the peer's pid into the daemon's pid namespace: started in a child
 * pid namespace (inside a container, under unshare -p, with PrivatePIDs=), the daemon sees
 * every client outside that namespace as pid 0 and refuses it, and the pids it would send polkit
 * (which lives in the host's namespace) name other processes there. That cannot be served
 * safely, so it is refused at start-up with a message that says what to change.
 *
 * Two signs, because either alone can be hidden: our own NSpid line in /proc/self/status has
 * one field per pid namespace level *of the procfs that was mounted* (a procfs mounted inside
 * the namespace shows one field), and our pid namespace's inode is not the initial one's (seen
 * through any procfs). Returns 1 when the daemon is in the initial pid namespace, 0 if not. */
static int check_pid_namespace(char *ret_detail, size_t size) {
        _cleanup_free_ char *s = NULL;
        struct stat st;
        const char *p;
        int levels = 0;

        ret_detail[0] = 0;
        if (read_small_file_at(AT_FDCWD, "/proc/self/status", &s) >= 0 && (p = strstr(s, "\nNSpid:"))) {
                size_t n = strcspn(p + 1, "\n");

                for (const char *q = p + strlen("\nNSpid:"); q < p + 1 + n; ) {
                        q += strspn(q, " \t");
                        if (q >= p + 1 + n || *q == '\n')
                                break;
                        levels++;
                        q += strcspn(q, " \t\n");
                }
                (void) snprintf(ret_detail, size, "%.*s", (int) n, p + 1);
        }
        if (levels > 1)
                return 0;
        if (stat("/proc/self/ns/pid", &st) >= 0 && st.st_ino != PID_NS_INIT_INO) {
                (void) snprintf(ret_detail, size, "pid namespace inode %llu, the initial one is %u",
                                (unsigned long long) st.st_ino, PID_NS_INIT_INO);
                return 0;
        }
        return 1;
}

static bool have_capability(unsigned cap) {
        _cleanup_free_ char *s = NULL;
        const char *p;

        if (read_small_file_at(AT_FDCWD, "/proc/self/status", &s) < 0 || !(p = strstr(s, "\nCapEff:")))
                return false;
        return (strtoull(p + strlen("\nCapEff:"), NULL, 16) >> cap) & 1;
}

/* What the daemon needs from the host, checked once at start-up so that an administrator reads
 * one message naming what is missing instead of every request failing obscurely. Fatal: what
 * cannot change while this process lives and without which no request can succeed. A warning:
 * what only some requests need (physical addresses: the capability is fixed when pagemap is
 * opened, but IOMMU devices need none), what the administrator can fix at run time (the io_uring sysctl, hugepage reservations) or what only
 * limits how much can be pinned (RLIMIT_MEMLOCK without CAP_IPC_LOCK); the requests it affects
 * then fail with a reason that says the same. Returns -EPERM when start-up must stop. */
static int check_host(Manager *m) {
        char warnings[1024] = "";
        uint64_t sizes[8], phys;
        struct rlimit rl;
        size_t n_sizes = 0;
        long ps = sysconf(_SC_PAGESIZE);
        int r;

#define WARN(...) (void) snprintf(warnings + strlen(warnings), sizeof(warnings) - strlen(warnings), __VA_ARGS__)

        /* A page of our own, present: pagemap gives its PFN only if we had CAP_SYS_ADMIN when
         * it was opened (manager_new()). Mapped, not a static buffer: a mapping is page-aligned
         * whatever the page size, while a 64 KiB-aligned .bss array gave the binary a segment of
         * its own that valgrind could not symbolize (the benchmark's callgrind figures). */
        size_t probe_size = (size_t) (ps > 0 ? ps : 4096);
        char *probe = mmap(NULL, probe_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (probe == MAP_FAILED)
                r = negative_errno();
        else {
                probe[0] = 1;
                r = pagemap_resolve(m->pagemap_fd, probe, probe_size, &phys);
                (void) munmap(probe, probe_size);
        }
        /* Not fatal: device fds behind a real IOMMU need no physical address, and every memory
         * request already answers NotSupported with this reason (method-memory.c). A daemon in a
         * container's user namespace is the usual case. */
        if (r == -ENXIO)
                WARN(" noiommud lacks CAP_SYS_ADMIN in the host's user namespace, so /proc/self/pagemap hides every "
                     "physical address: AllocateMemory answers NotSupported until it runs as root with CAP_SYS_ADMIN "
                     "(the unit's CapabilityBoundingSet= keeps it), in the host's user namespace.");
        else if (r < 0)
                log_warning_errno(r, "Cannot check /proc/self/pagemap at start-up, ignoring: %m");

        r = huge_pin_probe();
        if (r < 0)
                WARN(" io_uring is refused (%s%s): no memory can be pinned, AllocateMemory answers NotSupported "
                     "until kernel.io_uring_disabled is 0 (or 1, with CAP_SYS_ADMIN).",
                     strerror(-r), r == -EPERM ? ", kernel.io_uring_disabled is set" : "");

        if (!have_capability(14 /* CAP_IPC_LOCK */) && getrlimit(RLIMIT_MEMLOCK, &rl) >= 0 &&
            rl.rlim_cur != RLIM_INFINITY)
                WARN(" Without CAP_IPC_LOCK, pinned memory counts against RLIMIT_MEMLOCK (%llu bytes): allocations "
                     "beyond that answer OutOfMemory; give the daemon CAP_IPC_LOCK.",
                     (unsigned long long) rl.rlim_cur);

        if (hugepage_sizes(sizes, ELEMENTSOF(sizes), &n_sizes) < 0 || n_sizes == 0)
                WARN(" The kernel offers no hugepage sizes (no hugetlbfs): AllocateMemory answers NotSupported.");
        else {
                uint64_t reserved = 0;

                for (size_t i = 0; i < n_sizes; i++) {
                        char path[128];
                        _cleanup_free_ char *v = NULL;

                        (void) snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%llukB/nr_hugepages",
                                        (unsigned long long) (sizes[i] / 1024));
                        if (read_small_file_at(AT_FDCWD, path, &v) >= 0)
                                reserved += strtoull(v, NULL, 10);
                }
                if (reserved == 0)
                        log_notice("No hugepages are reserved now: AllocateMemory answers OutOfMemory until the "
                                   "administrator reserves some (vm.nr_hugepages, or hugepages= at boot).");
        }
#undef WARN
        if (warnings[0])
                log_warning("Starting with reduced function:%s", warnings);
        return 0;
}

int main(int argc, char *argv[]) {
        enum { ARG_VERSION = 0x100, ARG_LISTEN, ARG_LOG_LEVEL, ARG_CONFIG };
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                { "listen", required_argument, NULL, ARG_LISTEN },
                { "log-level", required_argument, NULL, ARG_LOG_LEVEL },
                { "config", required_argument, NULL, ARG_CONFIG },
                {}
        };
        _cleanup_(manager_freep) Manager *m = NULL;
        const char *listen_path = NULL, *config_path = NULL;
        int c, r, reexec_fd = -EBADF;
        sigset_t hup;

        /* SIGHUP re-executes the daemon (reexec.c). Until its handler is in place it stays
         * pending instead of killing the daemon by default. */
        (void) sigemptyset(&hup);
        (void) sigaddset(&hup, SIGHUP);
        (void) sigprocmask(SIG_BLOCK, &hup, NULL);

        log_setup("noiommud", LOG_TARGET_AUTO);

        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return EXIT_SUCCESS;
                case ARG_VERSION:
                        printf("noiommud %s\n", PACKAGE_VERSION);
                        return EXIT_SUCCESS;
                case ARG_LISTEN:
                        listen_path = optarg;
                        break;
                case ARG_CONFIG:
                        config_path = optarg;
                        break;
                case ARG_LOG_LEVEL:
                        if (streq(optarg, "debug"))
                                log_set_max_level(LOG_DEBUG);
                        else if (streq(optarg, "info"))
                                log_set_max_level(LOG_INFO);
                        else if (streq(optarg, "notice"))
                                log_set_max_level(LOG_NOTICE);
                        else if (streq(optarg, "warning"))
                                log_set_max_level(LOG_WARNING);
                        else if (streq(optarg, "err"))
                                log_set_max_level(LOG_ERR);
                        else {
                                log_error("Unknown log level '%s'.", optarg);
                                return EXIT_FAILURE;
                        }
                        break;
                case '?':
                        return EXIT_FAILURE;
                default:
                        return EXIT_FAILURE;
                }
        if (optind < argc) {
                log_error("Unexpected argument '%s'.", argv[optind]);
                return EXIT_FAILURE;
        }

        char detail[256];
        if (check_pid_namespace(detail, sizeof(detail)) == 0) {
                log_error("noiommud is running in a child PID namespace (%s). The kernel reports "
                          "client pids relative to this namespace, so clients outside it would all "
                          "be refused and polkit would be asked about the wrong processes. Run "
                          "noiommud in the host's PID namespace: not inside a container, not under "
                          "'unshare -p', and without PrivatePIDs= in its unit. Clients in "
                          "containers reach it through its socket (bind-mount the socket directory).",
                          detail);
                return EXIT_FAILURE;
        }

        r = reexec_pending(&reexec_fd);

        r = manager_new(config_path, &backend_ops_system, dispatch_current, &m);
        if (r < 0) {
                log_error_errno(r, "Failed to set up: %m");
                return EXIT_FAILURE;
        }
        r = check_host(m);
        if (r < 0)
                return EXIT_FAILURE;
        r = reexec_setup(m, argv);
        if (r < 0) {
                log_error_errno(r, "Failed to set up re-execution on SIGHUP: %m");
                return EXIT_FAILURE;
        }
        if (reexec_fd >= 0)
                r = reexec_restore(m, reexec_fd);
        else
                r = manager_listen(m, listen_path);
        if (r < 0)
                return EXIT_FAILURE;
        r = manager_run(m);
        return r < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}
