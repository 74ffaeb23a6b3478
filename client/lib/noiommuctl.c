/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * noiommuctl: the command line client of noiommud, built on libnoiommu.
 *
 *   noiommuctl [--socket PATH] [--json] list
 *   noiommuctl [--socket PATH] [--json] alloc SIZE [--hugepage-size SIZE] [--numa-node N]
 *                                             [--hold[=stdin|signal]]
 *   noiommuctl [--socket PATH] [--json] free MEMORY-ID
 *   noiommuctl [--socket PATH] [--json] acquire [BDF] [--memory SIZE[,SIZE...]
 *                                             [--hugepage-size SIZE] [--numa-node N]]
 *                                             [--hold[=stdin|signal]] [--interactive]
 *   noiommuctl [--socket PATH] [--json] release LEASE-ID
 *   noiommuctl [--socket PATH] [--json] leases [--interactive]
 *   noiommuctl [--socket PATH] [--json] revoke LEASE-ID [--interactive]
 *   noiommuctl [--socket PATH] [--json] monitor [--interactive]
 *   noiommuctl [--socket PATH] [--json] batch
 *   noiommuctl [--socket PATH] cdi generate [--output FILE]
 *   noiommuctl [--socket PATH] run [--device BDF] [--memory SIZE[,SIZE...]] [--numa N] -- CMD...
 *
 * Inside a container $NOIOMMUD_SOCKET and $NOIOMMUD_DEVICE (set by the CDI spec that "cdi
 * generate" writes) are the defaults of --socket and of acquire's and run's device.
 *
 * Results go to stdout (one JSON line per result with --json), diagnostics to stderr. Exit
 * status: 0 success, 1 a call failed, 2 usage error.
 *
 * What it trusts: nothing the daemon sends is printed to a terminal unfiltered; strings from
 * error parameters and device lists have control characters replaced, so a hostile daemon
 * cannot drive the terminal. JSON output is produced by jansson and is escaped anyway.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <libgen.h>
#include <dirent.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "internal/errors.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "internal/run-env.h"
#include "noiommu/noiommu.h"
#include "noiommu/protocol.h"

#define EXIT_USAGE 2

/* Longest line "batch" accepts, and most words on it. */
#define BATCH_LINE_MAX 4096
#define BATCH_WORDS_MAX 16

/* What "--hold" waits for before it frees or releases. */
typedef enum HoldMode {
        HOLD_NONE,                      /* no --hold: release at once (at exit) */
        HOLD_STDIN,                     /* --hold, --hold=stdin: EOF on stdin, or SIGINT/SIGTERM */
        HOLD_SIGNAL,                    /* --hold=signal: SIGINT/SIGTERM only, stdin untouched */
} HoldMode;

typedef struct AllocArgs {
        uint64_t size;
        uint64_t hugepage_size;         /* 0 = daemon's default */
        int numa_node;                  /* -1 = any */
        const char *lease;              /* batch only: map into this lease's DMA context */
        HoldMode hold;
        bool interactive;
} AllocArgs;

/* The memory objects and leases this process holds, so that "free ID" and "release ID" in batch
 * mode unmap and close what they end. */
typedef struct Held {
        noiommu_memory **memory;
        size_t n;
        size_t allocated;
        noiommu_lease **leases;
        size_t n_leases;
        size_t allocated_leases;
} Held;

/* The options of "run" and "cdi generate". */
typedef struct RunArgs {
        const char *device;             /* NULL: $NOIOMMUD_DEVICE, or no device */
        uint64_t memory[NOIOMMU_RUN_MEMORY_MAX];
        size_t n_memory;
        const char *output;             /* cdi generate --output */
} RunArgs;

static const char *arg_socket = NULL;
static bool arg_json = false;
/* Set by the administrator's commands (leases, revoke): they name leases of any connection, so
 * NoSuchLease must not be explained as "not on this connection". */
static bool arg_admin = false;

_printf_(1, 0)
static char *strvprintf(const char *format, va_list ap) {
        char *s;

        if (vasprintf(&s, format, ap) < 0)
                return NULL;
        return s;
}

_printf_(1, 2)
static char *strprintf(const char *format, ...) {
        va_list ap;
        char *s;

        va_start(ap, format);
        s = strvprintf(format, ap);
        va_end(ap);
        return s;
}

static int log_oom(void) {
        (void) log_error_errno(-ENOMEM, "Out of memory.");
        return EXIT_FAILURE;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(noiommu_conn *, noiommu_disconnect);
DEFINE_TRIVIAL_CLEANUP_FUNC(noiommu_memory *, noiommu_memory_unref);
DEFINE_TRIVIAL_CLEANUP_FUNC(noiommu_lease *, noiommu_lease_unref);
DEFINE_TRIVIAL_CLEANUP_FUNC(noiommu_device_list *, noiommu_device_list_free);

static void held_done(Held *h) {
        /* Device fds first: the daemon ends the leases when the connection closes, and a cdev
         * only becomes free once every copy of its fd is closed. */
        for (size_t i = 0; i < h->n_leases; i++)
                h->leases[i] = noiommu_lease_unref(h->leases[i]);
        free(h->leases);
        for (size_t i = 0; i < h->n; i++)
                h->memory[i] = noiommu_memory_unref(h->memory[i]);
        free(h->memory);
        *h = (Held) {};
}

static int held_add_lease(Held *h, noiommu_lease *l) {
        if (h->n_leases == h->allocated_leases) {
                size_t a = MAX(h->allocated_leases * 2, (size_t) 4);
                noiommu_lease **p;

                p = realloc(h->leases, a * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                h->leases = p;
                h->allocated_leases = a;
        }
        h->leases[h->n_leases++] = l;
        return 0;
}

/* Removes and returns the held lease with this id, or NULL. */
static noiommu_lease *held_take_lease(Held *h, const char *id) {
        for (size_t i = 0; i < h->n_leases; i++)
                if (streq(noiommu_lease_get_id(h->leases[i]), id)) {
                        noiommu_lease *l = h->leases[i];

                        h->leases[i] = h->leases[--h->n_leases];
                        return l;
                }
        return NULL;
}

static int held_add(Held *h, noiommu_memory *m) {
        if (h->n == h->allocated) {
                size_t a = MAX(h->allocated * 2, (size_t) 8);
                noiommu_memory **p;

                p = realloc(h->memory, a * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                h->memory = p;
                h->allocated = a;
        }
        h->memory[h->n++] = m;
        return 0;
}

/* Removes and returns the held object with this id, or NULL. */
static noiommu_memory *held_take(Held *h, const char *id) {
        for (size_t i = 0; i < h->n; i++)
                if (streq(noiommu_memory_get_id(h->memory[i]), id)) {
                        noiommu_memory *m = h->memory[i];

                        h->memory[i] = h->memory[--h->n];
                        return m;
                }
        return NULL;
}

static const char *socket_path(void) {
        const char *e;

        if (arg_socket)
                return arg_socket;
        e = secure_getenv(NOIOMMU_SOCKET_ENV);
        return e && *e ? e : NOIOMMU_SOCKET_PATH_DEFAULT;
}

/* Replaces bytes a terminal could interpret (C0 and C1 controls, DEL, and for simplicity all
 * non-ASCII) in place. */
static char *sanitize(char *s);

/* Prints a table: the header and n rows of n_cols cells (row-major, cells[row * n_cols + col]),
 * each column padded to its widest entry, every cell sanitized first. A NULL cell means its
 * allocation failed. Used by 'list' and 'leases'. */
static int print_table(const char *const *header, size_t n_cols, char **cells, size_t n) {
        _cleanup_free_ size_t *width = new0(size_t, n_cols);

        if (!width)
                return log_oom();
        for (size_t j = 0; j < n_cols; j++)
                width[j] = strlen(header[j]);
        for (size_t i = 0; i < n * n_cols; i++) {
                if (!cells[i])
                        return log_oom();
                width[i % n_cols] = MAX(width[i % n_cols], strlen(sanitize(cells[i])));
        }

        for (size_t i = 0; i <= n; i++)
                for (size_t j = 0; j < n_cols; j++) {
                        const char *cell = i == 0 ? header[j] : cells[(i - 1) * n_cols + j];

                        if (j + 1 < n_cols)
                                printf("%-*s  ", (int) width[j], cell);
                        else
                                printf("%s\n", cell);
                }
        return EXIT_SUCCESS;
}

static char *sanitize(char *s) {
        for (char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || (unsigned char) *p >= 0x7f)
                        *p = '?';
        return s;
}

static int print_json_line(json_t *v) {
        _cleanup_free_ char *text = NULL;

        text = json_dumps(v, JSON_COMPACT);
        if (!text)
                return log_error_errno(-ENOMEM, "Out of memory.");
        (void) puts(text);
        return 0;
}

/* {"error": NAME, "parameters": {...}} on stdout, for --json. */
static void print_json_error(const char *name, json_t *parameters) {
        json_auto_t *v = NULL;

        v = json_pack("{s:s,s:O}", "error", name, "parameters", parameters);
        if (v)
                (void) print_json_line(v);
}

static void print_json_local_error(int r) {
        json_auto_t *p = NULL;

        p = json_pack("{s:i,s:s}", "errno", abs(r), "message", strerror(abs(r)));
        if (p)
                print_json_error("local", p);
}

static void print_json_usage_error(const char *message) {
        json_auto_t *p = NULL;

        p = json_pack("{s:s}", "message", message);
        if (p)
                print_json_error("usage", p);
}

_printf_(1, 2)
static int usage_error(const char *format, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;

        va_start(ap, format);
        message = strvprintf(format, ap);
        va_end(ap);
        if (!message)
                return EXIT_USAGE;

        log_error("%s", message);
        if (arg_json)
                print_json_usage_error(message);
        return EXIT_USAGE;
}

static int usage_error_bad_id(const char *id) {
        _cleanup_free_ char *shown = strdup(id);

        return usage_error("Invalid memory id '%s': expected %i lower-case hex digits.",
                           shown ? sanitize(shown) : "", NOIOMMU_ID_LEN);
}

static int usage_error_bad_lease(const char *id) {
        _cleanup_free_ char *shown = strdup(id);

        return usage_error("Invalid lease id '%s': expected %i lower-case hex digits.",
                           shown ? sanitize(shown) : "", NOIOMMU_ID_LEN);
}

static int usage_error_bad_address(const char *address) {
        _cleanup_free_ char *shown = strdup(address);

        return usage_error("Invalid PCI address '%s': expected dddd:bb:dd.f in lower-case hex, "
                           "as 'noiommuctl list' shows it.", shown ? sanitize(shown) : "");
}

static const char *json_param_string(json_t *p, const char *key) {
        const char *s = json_string_value(json_object_get(p, key));

        return s ?: "?";
}

/* "device 0000:01:00.0, reason foo": the string and integer parameters of an error, in the
 * order the daemon sent them. NULL only when out of memory. */
static char *error_parameters_text(json_t *p) {
        _cleanup_free_ char *out = strdup("");
        const char *key;
        json_t *v;

        if (!out)
                return NULL;
        json_object_foreach(p, key, v) {
                _cleanup_free_ char *value = NULL;
                char *n;

                if (json_is_string(v))
                        value = strdup(json_string_value(v));
                else if (json_is_integer(v))
                        value = strprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
                else
                        continue;
                if (!value)
                        return NULL;
                n = strprintf("%s%s%s %s", out, *out ? ", " : "", key, value);
                if (!n)
                        return NULL;
                free(out);
                out = n;
        }
        return TAKE_PTR(out);
}

/* A sentence for a Varlink error, using its parameters where they help. "requested" and
 * "hugepage_size" describe the allocation, for OutOfMemory errors without parameters. */
static char *varlink_error_message(const char *name, json_t *p, uint64_t requested,
                                   uint64_t hugepage_size) {
        char a[32], b[32];
        char *s = NULL;

        if (streq(name, NOIOMMU_ERROR_PERMISSION_DENIED)) {
                const char *reason = json_string_value(json_object_get(p, "reason"));

                if (!reason || streq(reason, "denied"))
                        s = strdup("Permission denied by polkit");
                else if (streq(reason, "polkit-unavailable"))
                        s = strdup("Permission denied: polkit is not available to authorize "
                                   "the request");
                else if (streq(reason, "action-not-registered"))
                        s = strdup("Permission denied: the polkit action is not registered "
                                   "(is the noiommud policy installed?)");
                else if (streq(reason, "root-without-capabilities") &&
                         json_is_string(json_object_get(p, "message")))
                        /* uid 0 without the capability in the initial user namespace (container
                         * root): the daemon's sentence says what an administrator can do. */
                        s = strprintf("Permission denied: %s",
                                      json_string_value(json_object_get(p, "message")));
                else if (streq(reason, "subject-gone"))
                        s = strdup("Permission denied: the calling process went away during "
                                   "authorization");
                else
                        s = strprintf("Permission denied: authorization failed (%s)", reason);
        } else if (streq(name, NOIOMMU_ERROR_OUT_OF_MEMORY)) {
                json_t *r = json_object_get(p, "requested");
                json_t *h = json_object_get(p, "hugepageSize");

                if (json_is_integer(r) && json_integer_value(r) > 0)
                        requested = (uint64_t) json_integer_value(r);
                if (json_is_integer(h) && json_integer_value(h) > 0)
                        hugepage_size = (uint64_t) json_integer_value(h);

                if (hugepage_size > 0)
                        s = strprintf("not enough free hugepages of size %s for %s",
                                      format_size(a, hugepage_size), format_size(b, requested));
                else
                        s = strprintf("not enough free hugepages of the default size for %s",
                                      format_size(b, requested));
        } else if (streq(name, NOIOMMU_ERROR_NO_SUCH_MEMORY))
                s = strprintf("no memory %s on this connection: memory belongs to the connection "
                              "that allocated it and is freed when that connection closes; use "
                              "'noiommuctl batch' to allocate and free on one connection",
                              json_param_string(p, "memory"));
        else if (streq(name, NOIOMMU_ERROR_NO_SUCH_LEASE) && arg_admin)
                s = strprintf("no lease %s: it has ended already, or the id is wrong (see "
                              "'noiommuctl leases')", json_param_string(p, "lease"));
        else if (streq(name, NOIOMMU_ERROR_NO_SUCH_LEASE))
                s = strprintf("no lease %s on this connection: a lease belongs to the connection "
                              "that acquired it and ends when that connection closes; use "
                              "'noiommuctl batch' to acquire, allocate and release on one "
                              "connection", json_param_string(p, "lease"));
        else {
                /* Everything else: the one-line meaning from the protocol's error table
                 * (NOIOMMU_ERROR_TABLE), followed by the error's scalar parameters. */
                const VarlinkErrorInfo *info = varlink_error_lookup(name);
                _cleanup_free_ char *details = error_parameters_text(p);

                s = strprintf("%s%s%s%s", info ? info->meaning : "call failed",
                              details && *details ? " (" : "", details ?: "",
                              details && *details ? ")" : "");
        }

        return s;
}

static const char *local_error_hint(int r) {
        switch (-r) {
        case EBADMSG:
                return " (noiommud sent an invalid reply; the connection was dropped)";
        case EXFULL:
                return " (file descriptors were lost in transit, e.g. RLIMIT_NOFILE; "
                       "the connection was dropped)";
        case EPROTO:
                return " (protocol error; the connection was dropped)";
        case EMSGSIZE:
                return " (reply too large; the connection was dropped)";
        case ECONNRESET:
        case EPIPE:
                return " (noiommud closed the connection)";
        case ENOTCONN:
                return " (the connection was dropped after an earlier error)";
        default:
                return "";
        }
}

/* Reports a failed call: the daemon's error if it sent one, else the local errno. "what" is
 * used for local errors only ("Failed to allocate 2M"). Returns EXIT_FAILURE. */
_printf_(5, 6)
static int report_call_error(noiommu_conn *c, int r, uint64_t requested, uint64_t hugepage_size,
                             const char *format, ...) {
        const char *name = noiommu_last_error(c);

        if (name) {
                json_auto_t *p = NULL;
                _cleanup_free_ char *message = NULL, *n = NULL;
                const char *ptext = noiommu_last_error_parameters(c);

                p = ptext ? json_loads(ptext, 0, NULL) : NULL;
                if (!p)
                        p = json_object();

                message = varlink_error_message(name, p, requested, hugepage_size);
                n = strdup(name);
                if (!message || !n)
                        return log_oom();

                (void) log_error("%s (%s)", sanitize(message), sanitize(n));
                if (arg_json && p)
                        print_json_error(name, p);
        } else {
                _cleanup_free_ char *what = NULL;
                va_list ap;

                va_start(ap, format);
                what = strvprintf(format, ap);
                va_end(ap);

                (void) log_error_errno(r, "%s: %m%s", what ?: "Failed", local_error_hint(r));
                if (arg_json)
                        print_json_local_error(r);
        }
        return EXIT_FAILURE;
}

/* Why connecting failed, in terms of what to do. The kernel answers ECONNREFUSED both for a
 * socket nobody listens on and for a path that is not a socket at all, and EACCES first if the
 * caller may not write to whatever the path names (unix(7), net/unix/af_unix.c
 * unix_find_bsd()), so the file type decides the hint before the errno does. */
static const char *connect_error_hint(const char *path, int r) {
        struct stat st;

        if (path[0] == '@')             /* abstract: no file to look at */
                return r == -ECONNREFUSED ? " (nothing listens on this abstract socket: is "
                                            "noiommud running?)" : "";
        if ((r == -ECONNREFUSED || r == -EACCES || r == -ENOTSOCK) && stat(path, &st) >= 0) {
                if (S_ISDIR(st.st_mode))
                        return " (that is a directory: --socket and $" NOIOMMU_SOCKET_ENV " name "
                               "the socket file itself, by default "
                               NOIOMMU_SOCKET_PATH_DEFAULT ")";
                if (!S_ISSOCK(st.st_mode))
                        return " (that is not a socket: --socket and $" NOIOMMU_SOCKET_ENV " name "
                               "the socket file of noiommud, by default "
                               NOIOMMU_SOCKET_PATH_DEFAULT ")";
        }
        switch (-r) {
        case ENOENT:
                return " (no such socket: is noiommud running, or noiommud.socket enabled? "
                       "--socket and $" NOIOMMU_SOCKET_ENV " name the socket file)";
        case EACCES:
                return " (no permission to connect: the socket must be writable and every "
                       "directory above it searchable for this user)";
        case ECONNREFUSED:
                return " (nothing listens on this socket: is noiommud running?)";
        default:
                return "";
        }
}

static int connect_or_report(noiommu_conn **ret) {
        const char *path = socket_path();
        int r;

        r = noiommu_connect(path, ret);
        if (r < 0) {
                _cleanup_free_ char *p = strdup(path);

                (void) log_error_errno(r, "cannot connect to %s: %m%s", p ? sanitize(p) : "socket",
                                       connect_error_hint(path, r));
                if (arg_json)
                        print_json_local_error(r);
                return EXIT_FAILURE;
        }
        return 0;
}

/* The largest byte count the protocol carries: a JSON integer that jansson (json_int_t, a
 * long long) and the daemon accept, INT64_MAX = 8 EiB - 1. */
#define SIZE_ARG_MAX ((uint64_t) INT64_MAX)

static int parse_size_arg(const char *s, const char *what, uint64_t *ret) {
        uint64_t v;
        int r;

        r = parse_size(s, &v);
        if (r == -ERANGE || (r >= 0 && v > SIZE_ARG_MAX))
                return usage_error("Invalid %s '%s': too large, the largest is %" PRIu64
                                   " bytes (8 EiB - 1).", what, s, SIZE_ARG_MAX);
        if (r < 0 || v == 0)
                return usage_error("Invalid %s '%s': expected a size like 4096, 2M or 1G "
                                   "(suffixes K, M, G, T, optionally followed by iB or B, in "
                                   "any case).", what, s);
        *ret = v;
        return 0;
}

static DIR *closedir_safe(DIR *d) {
        if (d)
                (void) closedir(d);
        return NULL;
}
DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir_safe);

/* Whether the kernel offers hugepages of "size": /sys/kernel/mm/hugepages/hugepages-<kB>kB
 * (Documentation/admin-guide/mm/hugetlbpage.rst). Writes the sizes it offers, "2M 1G", to
 * "list". Returns 1 if it offers size, 0 if it does not, -errno if the directory cannot be
 * read or is empty (no hugetlb, or /sys not mounted, as in some containers: then only the
 * daemon can tell). */
static int hugepage_size_offered(uint64_t size, char list[static 256]) {
        _cleanup_(closedir_safep) DIR *d = NULL;
        bool found = false, any = false;
        struct dirent *de;

        list[0] = 0;
        d = opendir("/sys/kernel/mm/hugepages");
        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                unsigned long long kb;
                char b[32];
                int n = 0;

                /* %n is written only if the whole pattern matched */
                if (sscanf(de->d_name, "hugepages-%llukB%n", &kb, &n) != 1 || n == 0 ||
                    de->d_name[n] != 0 || kb == 0 || kb > SIZE_ARG_MAX / 1024)
                        continue;
                any = true;
                if (kb * 1024 == size)
                        found = true;
                if (strlen(list) + 34 < 256) {
                        if (list[0])
                                strcat(list, " ");
                        strcat(list, format_size(b, kb * 1024));
                }
        }
        if (!any)
                return -ENOENT;
        return found;
}

/* --hugepage-size: a size, a power of two of at least 4 KiB (every architecture's hugepage
 * sizes are), and one this kernel offers if it says which. Checked here so that a typo is a
 * usage error (exit 2) before anything is sent, not a NotSupported after a round trip. */
static int parse_hugepage_size_arg(const char *s, uint64_t *ret) {
        char list[256];
        uint64_t v;
        int r;

        r = parse_size_arg(s, "hugepage size", &v);
        if (r != 0)
                return r;
        if (v < 4096 || (v & (v - 1)) != 0)
                return usage_error("Invalid hugepage size '%s': hugepage sizes are powers of two "
                                   "(like 2M or 1G).", s);
        r = hugepage_size_offered(v, list);
        if (r == 0)
                return usage_error("Invalid hugepage size '%s': this kernel's hugepage sizes are "
                                   "%s.", s, list);
        *ret = v;
        return 0;
}

static int parse_numa_arg(const char *s, int *ret) {
        char *end;
        long v;

        errno = 0;
        v = strtol(s, &end, 10);
        if (errno != 0 || end == s || *end || v < -1 || v > INT32_MAX)
                return usage_error("Invalid NUMA node '%s': expected a number >= 0, or -1 for "
                                   "any.", s);
        *ret = (int) v;
        return 0;
}

/* "cdev-noiommu,group-noiommu", or "-" for none. */
static char *available_backends(const noiommu_device_list *l, size_t i) {
        _cleanup_free_ char *text = NULL;
        const char *b;

        for (size_t j = 0; (b = noiommu_device_list_get_available_backend(l, i, j)); j++) {
                char *t = strprintf("%s%s%s", text ?: "", text ? "," : "", b);

                if (!t)
                        return NULL;
                free(text);
                text = t;
        }
        return text ? TAKE_PTR(text) : strdup("-");
}

static int do_list(noiommu_conn *c) {
        static const char *const header[] = {
                "ADDRESS", "VENDOR:DEVICE", "DRIVER", "BACKEND", "AVAILABLE", "GROUP", "NUMA", "STATE",
                "REASON",
        };
        _cleanup_(noiommu_device_list_freep) noiommu_device_list *l = NULL;
        size_t n;
        char *(*cells)[ELEMENTSOF(header)] = NULL;
        int r, ret = EXIT_SUCCESS;

        if (arg_json) {
                _cleanup_free_ char *text = NULL;

                /* The reply parameters verbatim: scripts get every field the daemon sends. */
                r = noiommu_call(c, NOIOMMU_METHOD_LIST_DEVICES, NULL, &text, NULL, 0, NULL);
                if (r < 0)
                        return report_call_error(c, r, 0, 0, "Failed to list devices");
                (void) puts(text);
                return EXIT_SUCCESS;
        }

        r = noiommu_list_devices(c, &l);
        if (r < 0)
                return report_call_error(c, r, 0, 0, "Failed to list devices");

        n = noiommu_device_list_get_count(l);
        if (n == 0) {
                (void) puts("No VFIO devices found.");
                return EXIT_SUCCESS;
        }

        cells = calloc(n, sizeof(*cells));
        if (!cells)
                return log_oom();

        for (size_t i = 0; i < n; i++) {
                const char *backend = noiommu_device_list_get_backend(l, i);
                const char *reason = noiommu_device_list_get_reason(l, i);
                int group = noiommu_device_list_get_iommu_group(l, i);
                int numa = noiommu_device_list_get_numa_node(l, i);

                cells[i][0] = strdup(noiommu_device_list_get_address(l, i));
                cells[i][1] = strprintf("%04x:%04x",
                                        (unsigned) noiommu_device_list_get_vendor_id(l, i),
                                        (unsigned) noiommu_device_list_get_device_id(l, i));
                cells[i][2] = strdup(noiommu_device_list_get_driver(l, i));
                cells[i][3] = strdup(backend ?: "-");
                cells[i][4] = available_backends(l, i);
                cells[i][5] = group >= 0 ? strprintf("%i", group) : strdup("-");
                cells[i][6] = numa >= 0 ? strprintf("%i", numa) : strdup("-");
                cells[i][7] = strdup(noiommu_device_list_get_state(l, i));
                /* Why it is not served, or else why it is served the way it is. */
                cells[i][8] = strdup(reason ?: noiommu_device_list_get_backend_reason(l, i) ?: "-");

        }

        ret = print_table(header, ELEMENTSOF(header), n > 0 ? &cells[0][0] : NULL, n);

        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < ELEMENTSOF(header); j++)
                        free(cells[i][j]);
        free(cells);
        return ret;
}

static int print_memory(noiommu_memory *m) {
        const noiommu_segment *s;
        char a[32], b[32];
        size_t n;

        s = noiommu_memory_get_segments(m, &n);

        if (arg_json) {
                json_auto_t *v = NULL, *segments = NULL;

                segments = json_array();
                if (!segments)
                        return log_oom();
                for (size_t i = 0; i < n; i++) {
                        json_t *e = json_pack("{s:I,s:I,s:I}",
                                              "offset", (json_int_t) s[i].offset,
                                              "length", (json_int_t) s[i].length,
                                              "dmaAddress", (json_int_t) s[i].dma_address);

                        if (json_array_append_new(segments, e) < 0)
                                return log_oom();
                }

                /* The reply parameters minus "fd", which means nothing outside the reply. */
                v = json_pack("{s:s,s:I,s:I,s:i,s:s,s:O}",
                              "memory", noiommu_memory_get_id(m),
                              "size", (json_int_t) noiommu_memory_get_size(m),
                              "hugepageSize", (json_int_t) noiommu_memory_get_hugepage_size(m),
                              "numaNode", noiommu_memory_get_numa_node(m),
                              "addressKind",
                              noiommu_address_kind_to_string(noiommu_memory_get_address_kind(m)),
                              "segments", segments);
                if (!v)
                        return log_oom();
                return print_json_line(v) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }

        printf("Memory:         %s\n", noiommu_memory_get_id(m));
        printf("Size:           %s (%" PRIu64 " bytes)\n",
               format_size(a, noiommu_memory_get_size(m)), noiommu_memory_get_size(m));
        printf("Hugepage size:  %s\n", format_size(b, noiommu_memory_get_hugepage_size(m)));
        printf("NUMA node:      %i\n", noiommu_memory_get_numa_node(m));
        printf("Address kind:   %s\n",
               noiommu_address_kind_to_string(noiommu_memory_get_address_kind(m)));
        printf("Mapped at:      %p\n", noiommu_memory_get_address(m));
        printf("Segments:       %zu\n", n);
        printf("\n%-18s  %-18s  %s\n", "OFFSET", "LENGTH", "DMA-ADDRESS");
        for (size_t i = 0; i < n; i++)
                printf("0x%016" PRIx64 "  0x%016" PRIx64 "  0x%016" PRIx64 "\n",
                       s[i].offset, s[i].length, s[i].dma_address);
        return EXIT_SUCCESS;
}

/* Whether stdin is /dev/null (character device 1:3, devices.txt) or not open at all: the
 * standard input of a background job of a non-interactive shell, of a systemd service, of
 * "setsid -f". Such a stdin reaches EOF at once and can never say "release now". */
static bool stdin_is_null(void) {
        struct stat st;

        if (fstat(STDIN_FILENO, &st) < 0)
                return errno == EBADF;
        return S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3;
}

/* Waits until SIGINT/SIGTERM arrives or, with HOLD_STDIN, stdin reaches EOF (or fails). The
 * signals must already be blocked (see do_alloc()). HOLD_STDIN with stdin at /dev/null or
 * closed would release at once, which is never what holding means: it waits for a signal only
 * (as --hold=signal does), and says so. */
static int wait_for_release(const sigset_t *mask, HoldMode mode) {
        _cleanup_close_ int sfd = -EBADF;

        if (mode == HOLD_STDIN && stdin_is_null()) {
                log_info("Standard input is /dev/null or closed: holding until SIGINT or "
                         "SIGTERM (as with --hold=signal).");
                mode = HOLD_SIGNAL;
        }

        sfd = signalfd(-1, mask, SFD_CLOEXEC);
        if (sfd < 0)
                return log_error_errno(negative_errno(), "Failed to create signalfd: %m");

        for (;;) {
                /* poll() ignores entries with a negative fd: with HOLD_SIGNAL stdin is not
                 * even looked at. */
                struct pollfd p[2] = {
                        { .fd = sfd, .events = POLLIN },
                        { .fd = mode == HOLD_STDIN ? STDIN_FILENO : -1, .events = POLLIN },
                };

                if (poll(p, ELEMENTSOF(p), -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        return log_error_errno(negative_errno(), "Failed to wait: %m");
                }

                if (p[0].revents & POLLIN)
                        return 0;

                if (p[1].revents & POLLNVAL)
                        mode = HOLD_SIGNAL;     /* stdin went away under us: signals only */
                else if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
                        char buf[4096];
                        ssize_t k;

                        k = read(STDIN_FILENO, buf, sizeof(buf));
                        if (k < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (k <= 0)
                                return 0;       /* EOF (or an error) on stdin: release */
                }
        }
}

static int do_alloc(noiommu_conn *c, const AllocArgs *a, Held *held) {
        _cleanup_(noiommu_memory_unrefp) noiommu_memory *m = NULL;
        noiommu_alloc_options o;
        sigset_t mask;
        char s[32];
        int r, ret;

        noiommu_alloc_options_init(&o);
        o.hugepage_size = a->hugepage_size;
        o.numa_node = a->numa_node;
        o.lease = a->lease;
        if (a->interactive)
                o.flags |= NOIOMMU_ALLOC_INTERACTIVE;

        r = noiommu_allocate(c, a->size, &o, &m);
        if (r < 0)
                return report_call_error(c, r, a->size, a->hugepage_size, "Failed to allocate %s",
                                         format_size(s, a->size));

        if (a->hold) {
                /* Block the signals before anyone can learn from our output that we hold the
                 * memory, so a SIGTERM sent right after reading it is handled, not fatal. */
                sigemptyset(&mask);
                sigaddset(&mask, SIGINT);
                sigaddset(&mask, SIGTERM);
                if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
                        return log_error_errno(negative_errno(), "Failed to block signals: %m"),
                               EXIT_FAILURE;
        }

        ret = print_memory(m);
        if (fflush(stdout) != 0)
                ret = EXIT_FAILURE;

        if (a->hold) {
                /* The mapping stays in this process while we wait: tests inspect
                 * /proc/PID/maps and pagemap of this process meanwhile. */
                r = wait_for_release(&mask, a->hold);
                if (r < 0)
                        ret = EXIT_FAILURE;

                r = noiommu_free(c, TAKE_PTR(m));
                if (r < 0)
                        return report_call_error(c, r, 0, 0, "Failed to free memory");
                return ret;
        }

        if (held && ret == EXIT_SUCCESS) {
                r = held_add(held, m);
                if (r < 0)
                        return log_oom();
                TAKE_PTR(m);
        }

        /* Otherwise the memory is freed by the daemon when the connection closes on exit. */
        return ret;
}

/* A call whose only parameter is an id, for ids this process did not allocate or acquire
 * itself (the daemon then answers NoSuchMemory / NoSuchLease unless the id is on this
 * connection). */
static int call_with_id(noiommu_conn *c, const char *method, const char *key, const char *id) {
        json_auto_t *p = json_pack("{s:s}", key, id);
        _cleanup_free_ char *text = p ? json_dumps(p, JSON_COMPACT) : NULL;

        if (!text)
                return -ENOMEM;
        return noiommu_call(c, method, text, NULL, NULL, 0, NULL);
}

static int do_free(noiommu_conn *c, const char *id, Held *held) {
        noiommu_memory *m;
        int r;

        if (!noiommu_id_is_valid(id))
                return usage_error_bad_id(id);

        m = held ? held_take(held, id) : NULL;
        if (m)
                r = noiommu_free(c, m);
        else
                r = call_with_id(c, NOIOMMU_METHOD_FREE_MEMORY, "memory", id);
        if (r < 0)
                return report_call_error(c, r, 0, 0, "Failed to free memory %s", id);

        if (arg_json)
                (void) puts("{}");
        else
                printf("Freed memory %s.\n", id);
        return EXIT_SUCCESS;
}

static int print_lease(noiommu_lease *l) {
        int group = noiommu_lease_get_iommu_group(l), numa = noiommu_lease_get_numa_node(l);
        char vendor[8], device[8];

        (void) snprintf(vendor, sizeof(vendor), "%04x", (unsigned) noiommu_lease_get_vendor_id(l));
        (void) snprintf(device, sizeof(device), "%04x", (unsigned) noiommu_lease_get_device_id(l));

        if (arg_json) {
                json_auto_t *v = NULL;

                /* The reply parameters with "fd" (an index into the reply's fds, meaningless
                 * here) replaced by "deviceFd", our fd number for the device. */
                v = json_pack("{s:s,s:{s:s,s:s,s:s,s:s,s:s,s:o,s:i},s:i}",
                              "lease", noiommu_lease_get_id(l),
                              "device",
                              "address", noiommu_lease_get_address(l),
                              "vendorId", vendor,
                              "deviceId", device,
                              "driver", noiommu_lease_get_driver(l),
                              "backend", noiommu_lease_get_backend(l),
                              "iommuGroup", group >= 0 ? json_integer(group) : json_null(),
                              "numaNode", numa,
                              "deviceFd", noiommu_lease_get_fd(l));
                if (!v)
                        return log_oom();
                return print_json_line(v) < 0 ? EXIT_FAILURE : EXIT_SUCCESS;
        }

        {
                _cleanup_free_ char *driver = strdup(noiommu_lease_get_driver(l));
                _cleanup_free_ char *backend = strdup(noiommu_lease_get_backend(l));

                if (!driver || !backend)
                        return log_oom();
                printf("Lease:          %s\n", noiommu_lease_get_id(l));
                printf("Device:         %s (%s:%s, %s)\n", noiommu_lease_get_address(l), vendor,
                       device, sanitize(driver));
                printf("Backend:        %s\n", sanitize(backend));
                if (group >= 0)
                        printf("IOMMU group:    %i\n", group);
                else
                        printf("IOMMU group:    -\n");
                if (numa >= 0)
                        printf("NUMA node:      %i\n", numa);
                else
                        printf("NUMA node:      -\n");
                printf("Device fd:      %i\n", noiommu_lease_get_fd(l));
        }
        return EXIT_SUCCESS;
}

/* acquire, and with sizes (n_memory > 0, a's hugepage size and NUMA node) the memory mapped for
 * the lease in the same call (AcquireDevice with "memory": one polkit check). */
static int do_acquire(noiommu_conn *c, const char *address, HoldMode hold, bool interactive,
                      const uint64_t *sizes, size_t n_memory, const AllocArgs *a, Held *held) {
        _cleanup_(noiommu_lease_unrefp) noiommu_lease *l = NULL;
        noiommu_memory *m[NOIOMMU_ACQUIRE_MEMORY_MAX] = {};
        sigset_t mask;
        int r, ret;

        if (!pci_address_is_valid(address))
                return usage_error_bad_address(address);

        if (n_memory > 0) {
                noiommu_alloc_options o;
                uint64_t total = 0;
                char s[32];

                noiommu_alloc_options_init(&o);
                o.hugepage_size = a->hugepage_size;
                o.numa_node = a->numa_node;
                r = noiommu_acquire_device_with_memory(c, address, interactive ? NOIOMMU_ACQUIRE_INTERACTIVE : 0,
                                                       sizes, n_memory, &o, &l, m);
                for (size_t i = 0; i < n_memory; i++)
                        total = sizes[i] > UINT64_MAX - total ? UINT64_MAX : total + sizes[i];
                if (r < 0)
                        return report_call_error(c, r, total, a->hugepage_size,
                                                 "Failed to acquire %s with %s of memory", address,
                                                 format_size(s, total));
        } else {
                r = noiommu_acquire_device(c, address, interactive ? NOIOMMU_ACQUIRE_INTERACTIVE : 0, &l);
                if (r < 0)
                        return report_call_error(c, r, 0, 0, "Failed to acquire %s", address);
        }

        if (hold) {
                /* As for alloc --hold: blocked before anyone learns from our output. */
                sigemptyset(&mask);
                sigaddset(&mask, SIGINT);
                sigaddset(&mask, SIGTERM);
                if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                        for (size_t i = 0; i < n_memory; i++)
                                (void) noiommu_memory_unref(m[i]);
                        return log_error_errno(negative_errno(), "Failed to block signals: %m"),
                               EXIT_FAILURE;
                }
        }

        ret = print_lease(l);
        for (size_t i = 0; i < n_memory && ret == EXIT_SUCCESS; i++) {
                if (!arg_json)
                        putchar('\n');
                ret = print_memory(m[i]);
        }
        if (fflush(stdout) != 0)
                ret = EXIT_FAILURE;

        if (hold) {
                /* The device fd and the mappings stay open here while we wait: tests look at
                 * /proc/PID/fd. */
                r = wait_for_release(&mask, hold);
                if (r < 0)
                        ret = EXIT_FAILURE;

                /* The release takes the lease's memory with it, quiesce first; our mappings
                 * go after. */
                r = noiommu_release_device(c, TAKE_PTR(l));
                for (size_t i = 0; i < n_memory; i++)
                        (void) noiommu_memory_unref(m[i]);
                if (r < 0)
                        return report_call_error(c, r, 0, 0, "Failed to release the lease");
                return ret;
        }

        if (held && ret == EXIT_SUCCESS) {
                r = held_add_lease(held, l);
                if (r < 0)
                        return log_oom();
                TAKE_PTR(l);
        }

        /* Otherwise the lease (and its memory) ends when the connection closes on exit. */
        for (size_t i = 0; i < n_memory; i++)
                (void) noiommu_memory_unref(m[i]);
        return ret;
}

static int do_release(noiommu_conn *c, const char *id, Held *held) {
        noiommu_lease *l;
        int r;

        if (!noiommu_id_is_valid(id))
                return usage_error_bad_lease(id);

        l = held ? held_take_lease(held, id) : NULL;
        if (l)
                r = noiommu_release_device(c, l);
        else
                r = call_with_id(c, NOIOMMU_METHOD_RELEASE_DEVICE, "lease", id);
        if (r < 0)
                return report_call_error(c, r, 0, 0, "Failed to release lease %s", id);

        if (arg_json)
                (void) puts("{}");
        else
                printf("Released lease %s.\n", id);
        return EXIT_SUCCESS;
}

/* "3d04h", "2h05m", "4m07s", "12s" from microseconds. */
static char *format_age(uint64_t usec) {
        uint64_t sec = usec / 1000000ULL;

        if (sec >= 86400)
                return strprintf("%" PRIu64 "d%02" PRIu64 "h", sec / 86400, sec % 86400 / 3600);
        if (sec >= 3600)
                return strprintf("%" PRIu64 "h%02" PRIu64 "m", sec / 3600, sec % 3600 / 60);
        if (sec >= 60)
                return strprintf("%" PRIu64 "m%02" PRIu64 "s", sec / 60, sec % 60);
        return strprintf("%" PRIu64 "s", sec);
}

static char *json_int_cell(json_t *v) {
        if (!json_is_integer(v))
                return strdup("-");
        return strprintf("%" JSON_INTEGER_FORMAT, json_integer_value(v));
}

static char *json_string_cell(json_t *v) {
        const char *s = json_string_value(v);

        return strdup(s && *s ? s : "-");
}

static int interactive_parameters(bool interactive, const char *lease, char **ret) {
        json_auto_t *p = NULL;

        p = lease ? json_pack("{s:s}", "lease", lease) : json_object();
        if (!p || (interactive && json_object_set_new(p, "interactive", json_true()) < 0))
                return -ENOMEM;
        *ret = json_dumps(p, JSON_COMPACT);
        return *ret ? 0 : -ENOMEM;
}

/* The "pool" of a ListLeases reply (hugepagePool in noiommud.conf): nothing without one, so
 * that a daemon without a pool (or an older one) prints exactly what it printed before. */
static int print_pool(json_t *pool) {
        static const char *const header[] = { "POOL-HUGEPAGE", "SIZE", "NODE", "READY", "TARGET" };
        char *(*cells)[ELEMENTSOF(header)] = NULL;
        size_t n = json_is_array(pool) ? json_array_size(pool) : 0;
        int ret;

        if (n == 0)
                return EXIT_SUCCESS;
        cells = calloc(n, sizeof(*cells));
        if (!cells)
                return log_oom();
        for (size_t i = 0; i < n; i++) {
                json_t *e = json_array_get(pool, i);
                json_t *hp = json_object_get(e, "hugepageSize"), *size = json_object_get(e, "size");
                json_t *node = json_object_get(e, "numaNode");
                char buf[32];

                cells[i][0] = json_is_integer(hp) && json_integer_value(hp) >= 0 ?
                        strdup(format_size(buf, (uint64_t) json_integer_value(hp))) : strdup("-");
                cells[i][1] = json_is_integer(size) && json_integer_value(size) >= 0 ?
                        strdup(format_size(buf, (uint64_t) json_integer_value(size))) : strdup("-");
                cells[i][2] = json_is_integer(node) ? json_int_cell(node) : strdup("any");
                cells[i][3] = json_int_cell(json_object_get(e, "ready"));
                cells[i][4] = json_int_cell(json_object_get(e, "target"));
        }
        (void) putchar('\n');
        ret = print_table(header, ELEMENTSOF(header), &cells[0][0], n);
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < ELEMENTSOF(header); j++)
                        free(cells[i][j]);
        free(cells);
        return ret;
}

/* ListLeases (polkit: io.noiommud.manage). Quarantined leases have no holder; their UID and PID
 * columns show the last holder and UNIT shows "-". Then the hugepage pool, if there is one. */
static int do_leases(noiommu_conn *c, bool interactive) {
        static const char *const header[] = {
                "LEASE", "DEVICE", "BACKEND", "STATE", "UID", "PID", "UNIT", "PINNED", "AGE",
        };
        _cleanup_free_ char *params = NULL, *text = NULL;
        json_auto_t *reply = NULL;
        size_t n;
        char *(*cells)[ELEMENTSOF(header)] = NULL;
        json_t *leases;
        int r, ret = EXIT_SUCCESS;

        arg_admin = true;
        if (interactive_parameters(interactive, NULL, &params) < 0)
                return log_oom();
        r = noiommu_call(c, NOIOMMU_METHOD_LIST_LEASES, params, &text, NULL, 0, NULL);
        if (r < 0)
                return report_call_error(c, r, 0, 0, "Failed to list leases");

        if (arg_json) {
                /* The reply parameters verbatim, like "list --json". */
                (void) puts(text);
                return EXIT_SUCCESS;
        }

        reply = json_loads(text, 0, NULL);
        leases = json_object_get(reply, "leases");
        if (!json_is_array(leases)) {
                (void) log_error("noiommud sent a ListLeases reply without a leases array.");
                return EXIT_FAILURE;
        }
        n = json_array_size(leases);
        if (n == 0) {
                (void) puts("No leases.");
                return print_pool(json_object_get(reply, "pool"));
        }

        cells = calloc(n, sizeof(*cells));
        if (!cells)
                return log_oom();
        for (size_t i = 0; i < n; i++) {
                json_t *l = json_array_get(leases, i);
                json_t *device = json_object_get(l, "device");
                json_t *holder = json_object_get(l, "holder");
                json_t *who = json_is_object(holder) ? holder : json_object_get(l, "lastHolder");
                json_t *pinned = json_object_get(l, "bytesPinned");
                json_t *age = json_object_get(l, "ageUsec");
                char buf[32];

                cells[i][0] = json_string_cell(json_object_get(l, "lease"));
                cells[i][1] = json_string_cell(json_object_get(device, "address"));
                cells[i][2] = json_string_cell(json_object_get(device, "backend"));
                cells[i][3] = json_string_cell(json_object_get(l, "state"));
                cells[i][4] = json_int_cell(json_object_get(who, "uid"));
                cells[i][5] = json_int_cell(json_object_get(who, "pid"));
                cells[i][6] = json_string_cell(json_is_object(holder) ? json_object_get(holder, "unit") : NULL);
                cells[i][7] = json_is_integer(pinned) && json_integer_value(pinned) >= 0 ?
                        strdup(format_size(buf, (uint64_t) json_integer_value(pinned))) : strdup("-");
                cells[i][8] = json_is_integer(age) && json_integer_value(age) >= 0 ?
                        format_age((uint64_t) json_integer_value(age)) : strdup("-");

        }

        ret = print_table(header, ELEMENTSOF(header), n > 0 ? &cells[0][0] : NULL, n);

        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < ELEMENTSOF(header); j++)
                        free(cells[i][j]);
        free(cells);
        if (ret == EXIT_SUCCESS)
                ret = print_pool(json_object_get(reply, "pool"));
        return ret;
}

/* RevokeLease (polkit: io.noiommud.manage): ends a lease of any connection, or releases a
 * quarantined device if its quiesce works now. */
static int do_revoke(noiommu_conn *c, const char *id, bool interactive) {
        _cleanup_free_ char *params = NULL;
        int r;

        arg_admin = true;
        if (!noiommu_id_is_valid(id))
                return usage_error_bad_lease(id);
        if (interactive_parameters(interactive, id, &params) < 0)
                return log_oom();
        r = noiommu_call(c, NOIOMMU_METHOD_REVOKE_LEASE, params, NULL, NULL, 0, NULL);
        if (r < 0)
                return report_call_error(c, r, 0, 0, "Failed to revoke lease %s", id);

        if (arg_json)
                (void) puts("{}");
        else
                printf("Revoked lease %s.\n", id);
        return EXIT_SUCCESS;
}

/* Prints one Monitor() event: the JSON line itself with --json, "EVENT key=value ..." otherwise.
 * Every value comes from the daemon, so control characters are replaced before printing. */
static int print_event(const char *event_json, void *userdata) {
        json_auto_t *e = NULL;
        const char *key, *name;
        json_t *v;

        if (arg_json) {
                (void) puts(event_json);
                (void) fflush(stdout);
                return 0;
        }
        if (json_parse_message(event_json, strlen(event_json), &e) < 0)
                return 0;
        name = json_string_value(json_object_get(e, "event"));
        {
                _cleanup_free_ char *shown = strdup(name ?: "?");

                printf("%s", shown ? sanitize(shown) : "?");
        }
        json_object_foreach(e, key, v) {
                _cleanup_free_ char *val = NULL, *k = strdup(key);

                if (streq(key, "event"))
                        continue;
                val = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
                printf(" %s=%s", k ? sanitize(k) : "?", val ? sanitize(val) : "?");
        }
        printf("\n");
        (void) fflush(stdout);
        return 0;
}

/* "monitor" runs until SIGINT or SIGTERM, which end it cleanly (exit status 0, output flushed)
 * instead of killing it. noiommu_monitor() blocks in the library, which resumes its poll() after
 * a signal (so that a reply is never lost mid-call); the handler therefore shuts the socket
 * down, shutdown(2) being async-signal-safe (signal-safety(7)): the library then sees the
 * connection end and returns. */
static volatile sig_atomic_t monitor_stop_signal = 0;
static int monitor_fd = -EBADF;

static void monitor_stop(int sig) {
        int saved_errno = errno;

        monitor_stop_signal = sig;
        if (monitor_fd >= 0)
                (void) shutdown(monitor_fd, SHUT_RDWR);
        errno = saved_errno;
}

static int do_monitor(noiommu_conn *c, bool interactive) {
        struct sigaction sa = { .sa_handler = monitor_stop };
        int r;

        arg_admin = true;

        monitor_fd = noiommu_conn_get_fd(c);
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
                return log_error_errno(negative_errno(), "Failed to install signal handlers: %m"),
                       EXIT_FAILURE;

        r = noiommu_monitor(c, interactive ? NOIOMMU_MONITOR_INTERACTIVE : 0, print_event, NULL);
        if (monitor_stop_signal != 0) {
                log_debug("Monitor stopped by signal %i.", (int) monitor_stop_signal);
                return EXIT_SUCCESS;
        }
        if (r < 0 && r != -ECONNRESET)
                return report_call_error(c, r, 0, 0, "Monitor failed");
        return EXIT_SUCCESS;
}

/* --- cdi generate --- */

/* CDI 0.5.0 is the newest version podman 4.3 (Debian 12) reads; it silently skips spec files of
 * later versions. Nothing below needs a later one. */
#define CDI_VERSION "0.5.0"
#define CDI_KIND "noiommud.io/vfio"

/* The socket's directory, bind-mounted read-only at the same path. The directory and not the
 * socket: a bind mount pins the inode it was made from, and the daemon's socket is a new inode
 * after every restart, while the directory stays. Read-only is enough to connect() (a socket's
 * write permission is checked on the inode, not the mount); nosuid, nodev and noexec never hurt
 * and keep a rootless runtime from having to clear flags the host's /run has set. */
static json_t *cdi_edits(const char *socket, const char *dir, const char *device) {
        json_auto_t *edits = NULL, *env = NULL;

        env = json_array();
        if (!env)
                return NULL;
        if (json_array_append_new(env, json_sprintf("%s=%s", NOIOMMU_SOCKET_ENV, socket)) < 0 ||
            (device &&
             json_array_append_new(env, json_sprintf("%s=%s", NOIOMMU_DEVICE_ENV, device)) < 0))
                return NULL;

        /* jansson keeps insertion order, so the output is stable: env, then mounts. */
        edits = json_pack("{s:O, s:[{s:s, s:s, s:s, s:[s,s,s,s,s]}]}",
                          "env", env,
                          "mounts",
                          "hostPath", dir,
                          "containerPath", dir,
                          "type", "bind",
                          "options", "bind", "ro", "nosuid", "nodev", "noexec");
        return TAKE_PTR(edits);
}

static json_t *cdi_device(const char *name, const char *socket, const char *dir,
                          const char *device) {
        json_t *edits = cdi_edits(socket, dir, device);

        if (!edits)
                return NULL;
        return json_pack("{s:s, s:o}", "name", name, "containerEdits", edits);
}

/* Writes text to path atomically: a temporary file in the same directory, mode 0644, fsync(),
 * rename(). A runtime reading the spec directory (podman re-reads it for every container;
 * containerd and CRI-O watch it) sees the old spec or the new one, never half of one. */
static int write_file_atomic(const char *path, const char *text) {
        _cleanup_free_ char *copy = strdup(path), *tmp = NULL;
        _cleanup_close_ int fd = -EBADF;
        size_t len = strlen(text);
        const char *dir;
        int r;

        if (!copy)
                return -ENOMEM;
        dir = dirname(copy);
        if (asprintf(&tmp, "%s/.#noiommuctl-cdi-XXXXXX", dir) < 0) {
                tmp = NULL;
                return -ENOMEM;
        }
        fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0)
                return negative_errno();

        if (fchmod(fd, 0644) < 0)
                goto fail;
        for (size_t done = 0; done < len;) {
                ssize_t n = write(fd, text + done, len - done);

                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        goto fail;
                done += (size_t) n;
        }
        if (fsync(fd) < 0)
                goto fail;
        if (rename(tmp, path) < 0)
                goto fail;
        return 0;

fail:
        r = negative_errno();
        (void) unlink(tmp);
        return r;
}

static int do_cdi_generate(noiommu_conn *c, const char *output) {
        _cleanup_(noiommu_device_list_freep) noiommu_device_list *l = NULL;
        _cleanup_free_ char *copy = NULL, *text = NULL;
        json_auto_t *spec = NULL;
        json_t *devices, *d;
        const char *socket = socket_path(), *dir;
        int r;

        assert(socket[0] == '/');               /* parse_argv() checked */
        copy = strdup(socket);
        if (!copy)
                return log_oom();
        dir = dirname(copy);
        if (streq(dir, "/"))
                return usage_error("The socket %s is directly in /; CDI bind-mounts the socket's "
                                   "directory, so put the socket in a directory of its own.",
                                   socket);

        r = noiommu_list_devices(c, &l);
        if (r < 0)
                return report_call_error(c, r, 0, 0, "Failed to list devices");

        spec = json_pack("{s:s, s:s, s:[]}", "cdiVersion", CDI_VERSION, "kind", CDI_KIND,
                         "devices");
        if (!spec)
                return log_oom();
        devices = json_object_get(spec, "devices");

        d = cdi_device("socket", socket, dir, NULL);
        if (json_array_append_new(devices, d) < 0)
                return log_oom();

        /* One device per PCI function the daemon would serve: "available" and a backend. The
         * name is the PCI address itself: CDI device names may contain ':' and '.' since spec
         * 0.5.0 (pkg/cdi ValidateDeviceName: [A-Za-z0-9] first and last, [A-Za-z0-9_.:-] in
         * between), and the address starts and ends with a hex digit. */
        for (size_t i = 0; i < noiommu_device_list_get_count(l); i++) {
                const char *address = noiommu_device_list_get_address(l, i);

                if (!noiommu_device_list_get_backend(l, i) ||
                    !streq(noiommu_device_list_get_state(l, i), "available"))
                        continue;
                d = cdi_device(address, socket, dir, address);
                if (json_array_append_new(devices, d) < 0)
                        return log_oom();
        }

        text = json_dumps(spec, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text)
                return log_oom();
        {
                /* json_dumps() does not end with a newline; files and terminals want one. */
                size_t n = strlen(text);
                char *t = realloc(text, n + 2);

                if (!t)
                        return log_oom();
                text = t;
                text[n] = '\n';
                text[n + 1] = 0;
        }

        if (!output) {
                if (fputs(text, stdout) < 0)
                        return log_error_errno(negative_errno(), "Failed to write output: %m"),
                               EXIT_FAILURE;
                return EXIT_SUCCESS;
        }

        r = write_file_atomic(output, text);
        if (r < 0)
                return log_error_errno(r, "Failed to write %s: %m", output), EXIT_FAILURE;
        return EXIT_SUCCESS;
}

/* --- run --- */

/* The longest single environment string the kernel passes through execve() (MAX_ARG_STRLEN,
 * 32 pages). A long segment table (many non-contiguous small pages) can exceed it. */
#define ENV_STRING_MAX (32U * 4096U)

_printf_(2, 3)
static int run_setenv(const char *name, const char *format, ...) {
        _cleanup_free_ char *value = NULL;
        va_list ap;

        va_start(ap, format);
        value = strvprintf(format, ap);
        va_end(ap);
        if (!value)
                return -ENOMEM;
        if (strlen(name) + 1 + strlen(value) + 1 > ENV_STRING_MAX)
                return -E2BIG;
        return setenv(name, value, /* overwrite= */ 1) < 0 ? negative_errno() : 0;
}

static int run_describe_memory(size_t i, noiommu_memory *m) {
        _cleanup_free_ char *segments = NULL;
        const noiommu_segment *s;
        char name[64];
        size_t n, len = 0;
        FILE *f;
        int r;

        s = noiommu_memory_get_segments(m, &n);
        f = open_memstream(&segments, &len);
        if (!f)
                return -ENOMEM;
        for (size_t k = 0; k < n; k++)
                fprintf(f, "%s0x%" PRIx64 ":0x%" PRIx64 ":0x%" PRIx64, k > 0 ? "," : "",
                        s[k].offset, s[k].length, s[k].dma_address);
        if (fclose(f) != 0)
                return -ENOMEM;

#define SET(field, ...)                                                                    \
        do {                                                                               \
                (void) snprintf(name, sizeof(name), NOIOMMU_ENV_MEMORY_PREFIX "%zu_%s", i, field); \
                r = run_setenv(name, __VA_ARGS__);                                         \
                if (r < 0)                                                                 \
                        return r;                                                          \
        } while (0)

        SET("ID", "%s", noiommu_memory_get_id(m));
        SET("SIZE", "0x%" PRIx64, noiommu_memory_get_size(m));
        SET("HUGEPAGE_SIZE", "0x%" PRIx64, noiommu_memory_get_hugepage_size(m));
        SET("NUMA_NODE", "%i", noiommu_memory_get_numa_node(m));
        SET("ADDRESS_KIND", "%s",
            noiommu_address_kind_to_string(noiommu_memory_get_address_kind(m)));
        SET("SEGMENTS", "%s", segments);
#undef SET
        return 0;
}

static int run_describe_lease(noiommu_lease *l) {
        int r;

        if ((r = run_setenv(NOIOMMU_ENV_LEASE, "%s", noiommu_lease_get_id(l))) < 0 ||
            (r = run_setenv(NOIOMMU_ENV_DEVICE_PREFIX "ADDRESS", "%s",
                            noiommu_lease_get_address(l))) < 0 ||
            (r = run_setenv(NOIOMMU_ENV_DEVICE_PREFIX "BACKEND", "%s",
                            noiommu_lease_get_backend(l))) < 0 ||
            (r = run_setenv(NOIOMMU_ENV_DEVICE_PREFIX "VENDOR_ID", "%04x",
                            (unsigned) noiommu_lease_get_vendor_id(l))) < 0 ||
            (r = run_setenv(NOIOMMU_ENV_DEVICE_PREFIX "DEVICE_ID", "%04x",
                            (unsigned) noiommu_lease_get_device_id(l))) < 0 ||
            (r = run_setenv(NOIOMMU_ENV_DEVICE_PREFIX "DRIVER", "%s",
                            noiommu_lease_get_driver(l))) < 0 ||
            (r = run_setenv(NOIOMMU_ENV_DEVICE_PREFIX "IOMMU_GROUP", "%i",
                            noiommu_lease_get_iommu_group(l))) < 0 ||
            (r = run_setenv(NOIOMMU_ENV_DEVICE_PREFIX "NUMA_NODE", "%i",
                            noiommu_lease_get_numa_node(l))) < 0)
                return r;
        return 0;
}

/* Puts fds[0..n) at NOIOMMU_RUN_FDS_START, START+1, ... without FD_CLOEXEC, as sd_listen_fds()
 * expects its fds. Copies first, above the target range, so that moving one fd never closes
 * another we still need; dup2() then leaves FD_CLOEXEC clear on exactly the targets. Whatever
 * occupied a target number before (an fd our parent leaked to us) is replaced, as systemd does. */
static int run_move_fds(const int *fds, size_t n) {
        int tmp[2 + NOIOMMU_RUN_MEMORY_MAX];
        size_t made = 0;
        int r = 0;

        assert(n <= ELEMENTSOF(tmp));
        for (; made < n; made++) {
                tmp[made] = fcntl(fds[made], F_DUPFD_CLOEXEC, NOIOMMU_RUN_FDS_START + (int) n);
                if (tmp[made] < 0) {
                        r = negative_errno();
                        break;
                }
        }
        for (size_t i = 0; r == 0 && i < n; i++)
                if (dup2(tmp[i], NOIOMMU_RUN_FDS_START + (int) i) < 0)
                        r = negative_errno();
        close_many(tmp, made);
        return r;
}

static int do_run(noiommu_conn *c, const RunArgs *ra, const AllocArgs *a, char **cmd) {
        _cleanup_(noiommu_lease_unrefp) noiommu_lease *l = NULL;
        noiommu_memory *memory[NOIOMMU_RUN_MEMORY_MAX] = {};
        int fds[2 + NOIOMMU_RUN_MEMORY_MAX];
        _cleanup_free_ char *names = NULL;
        const char *device = ra->device;
        size_t n_fds = 0, len = 0;
        FILE *f;
        int r, ret = EXIT_FAILURE;
        char s[32];

        if (!device) {
                device = secure_getenv(NOIOMMU_DEVICE_ENV);
                if (device && !*device)
                        device = NULL;
        }
        if (device && !pci_address_is_valid(device))
                return usage_error_bad_address(device);

        if (device) {
                r = noiommu_acquire_device(c, device, a->interactive ? NOIOMMU_ACQUIRE_INTERACTIVE : 0, &l);
                if (r < 0)
                        return report_call_error(c, r, 0, 0, "Failed to acquire %s", device);
        }

        for (size_t i = 0; i < ra->n_memory; i++) {
                noiommu_alloc_options o;

                noiommu_alloc_options_init(&o);
                o.hugepage_size = a->hugepage_size;
                o.numa_node = a->numa_node;
                o.lease = l ? noiommu_lease_get_id(l) : NULL;  /* mapped for the device */
                if (a->interactive)
                        o.flags |= NOIOMMU_ALLOC_INTERACTIVE;
                r = noiommu_allocate(c, ra->memory[i], &o, &memory[i]);
                if (r < 0) {
                        ret = report_call_error(c, r, ra->memory[i], a->hugepage_size,
                                                "Failed to allocate %s",
                                                format_size(s, ra->memory[i]));
                        goto finish;
                }
        }

        /* The fds in protocol order, and their names. */
        f = open_memstream(&names, &len);
        if (!f) {
                ret = log_oom();
                goto finish;
        }
        fds[n_fds++] = noiommu_conn_get_fd(c);
        fputs("connection", f);
        if (l) {
                fds[n_fds++] = noiommu_lease_get_fd(l);
                fputs(":device", f);
        }
        for (size_t i = 0; i < ra->n_memory; i++) {
                fds[n_fds++] = noiommu_memory_get_fd(memory[i]);
                fprintf(f, ":memory-%zu", i);
        }
        if (fclose(f) != 0) {
                ret = log_oom();
                goto finish;
        }

        /* What we inherited (a nested "noiommuctl run", or a parent that set some) goes, so that
         * CMD sees only what we describe. */
        run_env_unset_all();
        r = run_setenv(NOIOMMU_ENV_PID, "%i", (int) getpid());  /* exec keeps the pid */
        if (r >= 0)
                r = run_setenv(NOIOMMU_ENV_FDS, "%zu", n_fds);
        if (r >= 0)
                r = run_setenv(NOIOMMU_ENV_FD_NAMES, "%s", names);
        if (r >= 0 && l)
                r = run_describe_lease(l);
        for (size_t i = 0; r >= 0 && i < ra->n_memory; i++)
                r = run_describe_memory(i, memory[i]);
        if (r == -E2BIG) {
                (void) log_error("The segment table is too long for the environment (%u bytes "
                                 "per variable at most): use larger hugepages "
                                 "(--hugepage-size 1G) or fewer, smaller allocations.",
                                 ENV_STRING_MAX);
                goto finish;
        }
        if (r < 0) {
                ret = log_oom();
                goto finish;
        }

        r = run_move_fds(fds, n_fds);
        if (r < 0) {
                (void) log_error_errno(r, "Failed to pass the file descriptors on: %m");
                goto finish;
        }

        /* Everything else we hold is O_CLOEXEC and goes away with the exec. The connection does
         * not end: its socket lives on at fd 3, and the daemon sees the same process (exec keeps
         * the pid and its start time), so the lease and the memory now belong to CMD. */
        (void) fflush(stdout);
        (void) fflush(stderr);
        execvp(cmd[0], cmd);

        r = negative_errno();
        {
                _cleanup_free_ char *shown = strdup(cmd[0]);

                (void) log_error_errno(r, "Failed to execute %s: %m", shown ? sanitize(shown) : "");
        }
        /* As env(1) and the shells report it; the lease ends when we exit. */
        ret = r == -ENOENT ? 127 : 126;

finish:
        for (size_t i = 0; i < ra->n_memory; i++)
                memory[i] = noiommu_memory_unref(memory[i]);
        return ret;
}

enum {
        ARG_SOCKET = 0x100,
        ARG_JSON,
        ARG_HUGEPAGE_SIZE,
        ARG_NUMA_NODE,
        ARG_HOLD,
        ARG_INTERACTIVE,
        ARG_LEASE,
        ARG_VERSION,
        ARG_DEVICE,
        ARG_MEMORY,
        ARG_OUTPUT,
};

/* The argument getopt_long() stopped at with '?' or ':', for the message: optind has moved past
 * it unless it was a cluster of short options ("-12") with more to come. A negative number
 * ("-1") is the common case: getopt takes it for options "1" and so on, but every number
 * noiommuctl takes is positive (sizes) or written --numa-node=-1. */
static int report_bad_option(int c, int argc, char **argv, const struct option *options,
                             const char *context) {
        const char *arg = NULL;

        if (optind > 0 && optind <= argc && argv[optind - 1][0] == '-')
                arg = argv[optind - 1];
        if (optopt > 0 && optopt < 0x100 && optind < argc && argv[optind][0] == '-' &&
            argv[optind][1] != '-' && strchr(argv[optind] + 1, optopt))
                arg = argv[optind];     /* still inside a cluster of short options */
        if (!arg)
                arg = "?";

        if (arg[0] == '-' && arg[1] >= '0' && arg[1] <= '9')
                return usage_error("%sInvalid argument '%s': negative numbers are not accepted "
                                   "(sizes are positive, like 4096, 2M or 1G; any NUMA node is "
                                   "--numa-node=-1).", context, arg);
        if (c == ':')
                return usage_error("%sOption '%s' needs an argument.", context, arg);
        /* an option that takes no argument but got one ("--json=1") or is unknown */
        for (const struct option *o = options; o->name; o++)
                if (strncmp(arg, "--", 2) == 0 && strncmp(arg + 2, o->name, strlen(o->name)) == 0 &&
                    arg[2 + strlen(o->name)] == '=' && o->has_arg == no_argument)
                        return usage_error("%sOption '--%s' takes no argument.", context, o->name);
        return usage_error("%sUnknown option '%s'; see --help.", context, arg);
}

/* Parses the words of one "alloc" command in batch mode (words[0] is "alloc"). getopt_long
 * keeps global state; optind = 0 makes glibc start over for each line. */
static int parse_batch_alloc(int n, char **words, AllocArgs *a) {
        static const struct option options[] = {
                { "hugepage-size", required_argument, NULL, ARG_HUGEPAGE_SIZE },
                { "numa-node",     required_argument, NULL, ARG_NUMA_NODE     },
                { "lease",         required_argument, NULL, ARG_LEASE         },
                { "interactive",   no_argument,       NULL, ARG_INTERACTIVE   },
                {}
        };
        int c, r;

        *a = (AllocArgs) { .numa_node = -1 };

        optind = 0;
        opterr = 0;
        while ((c = getopt_long(n, words, ":", options, NULL)) >= 0)
                switch (c) {
                case ARG_HUGEPAGE_SIZE:
                        r = parse_hugepage_size_arg(optarg, &a->hugepage_size);
                        if (r != 0)
                                return r;
                        break;
                case ARG_NUMA_NODE:
                        r = parse_numa_arg(optarg, &a->numa_node);
                        if (r != 0)
                                return r;
                        break;
                case ARG_LEASE:
                        if (!noiommu_id_is_valid(optarg))
                                return usage_error_bad_lease(optarg);
                        a->lease = optarg;
                        break;
                case ARG_INTERACTIVE:
                        a->interactive = true;
                        break;
                case ':':
                case '?':
                        /* In batch mode alloc takes --hugepage-size, --numa-node, --lease and
                         * --interactive; the message names the argument. */
                        return report_bad_option(c, n, words, options, "alloc: ");
                default:
                        return usage_error("alloc: unknown option.");
                }

        if (n - optind != 1)
                return usage_error("alloc needs exactly one SIZE.");
        return parse_size_arg(words[optind], "size", &a->size);
}

static int batch_line(noiommu_conn *c, char *line, Held *held) {
        char *words[BATCH_WORDS_MAX + 1];
        int n = 0;

        for (char *save = NULL, *w = strtok_r(line, " \t\r\n", &save); w;
             w = strtok_r(NULL, " \t\r\n", &save)) {
                if (n >= BATCH_WORDS_MAX)
                        return usage_error("Too many words on one line.");
                words[n++] = w;
        }
        words[n] = NULL;

        if (n == 0)
                return -1;                      /* blank line: not a command */

        if (streq(words[0], "list")) {
                if (n != 1)
                        return usage_error("list takes no arguments.");
                return do_list(c);
        }
        if (streq(words[0], "alloc")) {
                AllocArgs a;
                int r;

                r = parse_batch_alloc(n, words, &a);
                if (r != 0)
                        return r;
                return do_alloc(c, &a, held);
        }
        if (streq(words[0], "free")) {
                if (n != 2)
                        return usage_error("free needs exactly one MEMORY-ID.");
                return do_free(c, words[1], held);
        }
        if (streq(words[0], "acquire")) {
                bool interactive = n == 3 && streq(words[2], "--interactive");

                if (n != 2 && !interactive)
                        return usage_error("acquire needs exactly one PCI address (and takes "
                                           "only --interactive in batch mode).");
                return do_acquire(c, words[1], HOLD_NONE, interactive, NULL, 0, NULL, held);
        }
        if (streq(words[0], "release")) {
                if (n != 2)
                        return usage_error("release needs exactly one LEASE-ID.");
                return do_release(c, words[1], held);
        }

        return usage_error("Unknown command '%s' (expected list, alloc, free, acquire or "
                           "release).", sanitize(words[0]));
}

static int do_batch(noiommu_conn *c) {
        _cleanup_(held_done) Held held = {};
        _cleanup_free_ char *line = NULL;
        size_t allocated = 0;
        bool failed = false, first = true;
        ssize_t k;

        while ((k = getline(&line, &allocated, stdin)) >= 0) {
                char *p = line;
                int r;

                if ((size_t) k > BATCH_LINE_MAX) {
                        (void) usage_error("Line too long.");
                        failed = true;
                } else {
                        p += strspn(p, " \t\r\n");
                        if (*p == '#' || *p == 0)
                                continue;       /* comments and blank lines */

                        /* Human-readable results are separated by a blank line; JSON results
                         * are exactly one line per command. */
                        if (!arg_json && !first)
                                (void) putchar('\n');
                        first = false;

                        r = batch_line(c, p, &held);
                        if (r > 0)
                                failed = true;
                }

                /* A script talking to us through a pipe waits for each answer. */
                if (fflush(stdout) != 0)
                        return log_error_errno(negative_errno(), "Failed to write output: %m"),
                               EXIT_FAILURE;
        }
        if (ferror(stdin))
                return log_error_errno(-EIO, "Failed to read commands from stdin."), EXIT_FAILURE;

        return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

static void help(void) {
        printf("%s [OPTIONS...] COMMAND ...\n"
               "\n"
               "Talk to noiommud, the broker for VFIO devices and pinned DMA memory.\n"
               "\n"
               "Commands:\n"
               "  list                     List the PCI functions bound to vfio-pci\n"
               "  alloc SIZE               Allocate pinned hugepage memory (SIZE like 4096, 2M,\n"
               "                           1G), print its DMA address table, then release it\n"
               "  free MEMORY-ID           Free memory by id. Memory belongs to the connection\n"
               "                           that allocated it and is freed when that connection\n"
               "                           closes, so on its own this normally fails with\n"
               "                           NoSuchMemory; use it inside 'batch'\n"
               "  acquire [BDF]            Lease the VFIO device at PCI address BDF (default:\n"
               "                           $%s) and print the lease; the lease ends when\n"
               "                           noiommuctl exits (see --hold). With --memory, also\n"
               "                           the memory mapped for it, in one call and one polkit\n"
               "                           check (io.noiommud.acquire-device-with-memory)\n"
               "  release LEASE-ID         End a lease. A lease belongs to the connection that\n"
               "                           acquired it, so on its own this fails with\n"
               "                           NoSuchLease; use it inside 'batch'\n"
               "  leases                   List every lease, quarantined devices included\n"
               "                           (polkit: io.noiommud.manage)\n"
               "  revoke LEASE-ID          End any lease: Bus Master off, reset, then its memory;\n"
               "                           on a quarantined device, retry that quiesce\n"
               "                           (polkit: io.noiommud.manage)\n"
               "  monitor                  Print device and lease changes as they happen, one\n"
               "                           line each, until SIGINT or SIGTERM (exit status 0)\n"
               "                           (polkit: io.noiommud.manage)\n"
               "  batch                    Read commands from stdin, one per line, and run them\n"
               "                           on one connection: list; alloc SIZE [--hugepage-size\n"
               "                           SIZE] [--numa-node N] [--lease LEASE-ID]\n"
               "                           [--interactive]; free MEMORY-ID; acquire BDF\n"
               "                           [--interactive]; release LEASE-ID\n"
               "  cdi generate             Write a Container Device Interface spec (kind\n"
               "                           noiommud.io/vfio: device 'socket', and one per PCI\n"
               "                           address the daemon serves) to stdout or --output\n"
               "  run [--device BDF] [--memory SIZE[,SIZE...]] -- CMD [ARGS...]\n"
               "                           Acquire BDF (default: $%s, else none),\n"
               "                           allocate each SIZE for it, then execute CMD with the\n"
               "                           connection, device fd and memfds at fd 3, 4, ... and\n"
               "                           described in $NOIOMMU_FDS, $NOIOMMU_FD_NAMES, ...\n"
               "                           (noiommu_from_environment()); the lease lasts as long\n"
               "                           as CMD\n"
               "\n"
               "Options:\n"
               "  -h --help                Show this help\n"
               "     --version             Show the version\n"
               "     --socket=PATH         Socket of noiommud (default: $%s, else\n"
               "                           %s)\n"
               "     --json                Print results and errors as one JSON object per line\n"
               "     --hugepage-size=SIZE  alloc, run, acquire --memory: hugepage size (default:\n"
               "                           the system's default)\n"
               "     --numa-node=N, --numa=N\n"
               "                           alloc, run, acquire --memory: NUMA node for the pages\n"
               "                           (default: any)\n"
               "     --device=BDF          run: the device to acquire\n"
               "     --memory=SIZE[,SIZE...]\n"
               "                           run, acquire: memory to allocate, one object per SIZE\n"
               "                           (acquire: at most %i)\n"
               "     --output=FILE         cdi generate: write FILE atomically, mode 0644\n"
               "     --hold[=stdin|signal] alloc, acquire: keep the memory (allocated and mapped)\n"
               "                           or the lease (and the device fd) until SIGINT/SIGTERM\n"
               "                           arrives or, with --hold or --hold=stdin, stdin reaches\n"
               "                           EOF; then free or release it. Without a terminal\n"
               "                           (stdin /dev/null or closed) --hold waits for a signal\n"
               "                           only, as --hold=signal always does\n"
               "     --interactive         alloc, acquire, leases, revoke, run: let polkit ask for\n"
               "                           authentication\n"
               "\n"
               "Exit status: 0 on success, 1 if a call failed, 2 on a usage error.\n",
               program_invocation_short_name, NOIOMMU_DEVICE_ENV, NOIOMMU_DEVICE_ENV,
               NOIOMMU_SOCKET_ENV, NOIOMMU_SOCKET_PATH_DEFAULT, NOIOMMU_ACQUIRE_MEMORY_MAX);
}

typedef enum Verb {
        VERB_LIST,
        VERB_ALLOC,
        VERB_FREE,
        VERB_ACQUIRE,
        VERB_RELEASE,
        VERB_LEASES,
        VERB_REVOKE,
        VERB_MONITOR,
        VERB_BATCH,
        VERB_CDI,
        VERB_RUN,
        _VERB_MAX,
        _VERB_INVALID = -EINVAL,
} Verb;

/* Arguments after the verb: min_args to max_args (-1: any number, run's CMD). */
static const struct {
        const char *name;
        int min_args;
        int max_args;
} verbs[_VERB_MAX] = {
        [VERB_LIST]  = { "list",  0, 0 },
        [VERB_ALLOC] = { "alloc", 1, 1 },
        [VERB_FREE]  = { "free",  1, 1 },
        [VERB_ACQUIRE] = { "acquire", 0, 1 },   /* none: $NOIOMMUD_DEVICE */
        [VERB_RELEASE] = { "release", 1, 1 },
        [VERB_LEASES] = { "leases", 0, 0 },
        [VERB_REVOKE] = { "revoke", 1, 1 },
        [VERB_MONITOR] = { "monitor", 0, 0 },
        [VERB_BATCH] = { "batch", 0, 0 },
        [VERB_CDI] = { "cdi", 1, 1 },           /* "generate" */
        [VERB_RUN] = { "run", 1, -1 },
};

/* "2M,1G": one allocation per size. */
static int parse_memory_list(const char *s, RunArgs *ra) {
        _cleanup_free_ char *copy = strdup(s);
        char *save = NULL;

        if (!copy)
                return log_oom();
        if (!*s || s[0] == ',' || s[strlen(s) - 1] == ',' || strstr(s, ",,"))
                return usage_error("Invalid --memory '%s': expected SIZE[,SIZE...] like 2M,1G.", s);
        for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                int r;

                if (ra->n_memory >= NOIOMMU_RUN_MEMORY_MAX)
                        return usage_error("--memory names more than %i allocations.",
                                           NOIOMMU_RUN_MEMORY_MAX);
                r = parse_size_arg(w, "size", &ra->memory[ra->n_memory]);
                if (r != 0)
                        return r;
                ra->n_memory++;
        }
        return 0;
}

/* Returns 0 to go on, a positive exit status to exit with (EXIT_USAGE), or -1 to exit 0
 * (--help, --version). */
static int parse_argv(int argc, char *argv[], Verb *ret_verb, char ***ret_args, AllocArgs *a,
                      RunArgs *ra) {
        static const struct option options[] = {
                { "help",          no_argument,       NULL, 'h'               },
                { "version",       no_argument,       NULL, ARG_VERSION       },
                { "socket",        required_argument, NULL, ARG_SOCKET        },
                { "json",          no_argument,       NULL, ARG_JSON          },
                { "hugepage-size", required_argument, NULL, ARG_HUGEPAGE_SIZE },
                { "numa-node",     required_argument, NULL, ARG_NUMA_NODE     },
                { "numa",          required_argument, NULL, ARG_NUMA_NODE     },
                { "hold",          optional_argument, NULL, ARG_HOLD          },
                { "interactive",   no_argument,       NULL, ARG_INTERACTIVE   },
                { "device",        required_argument, NULL, ARG_DEVICE        },
                { "memory",        required_argument, NULL, ARG_MEMORY        },
                { "output",        required_argument, NULL, ARG_OUTPUT        },
                {}
        };
        bool alloc_options = false, hold_option = false, interactive_option = false;
        bool run_options = false, memory_option = false;
        int c, r, n;

        *a = (AllocArgs) { .numa_node = -1 };
        *ra = (RunArgs) {};

        /* --json first, wherever it is: a usage error found before getopt reaches it must
         * still be one JSON line. */
        for (int i = 1; i < argc && !streq(argv[i], "--"); i++)
                if (streq(argv[i], "--json"))
                        arg_json = true;

        /* Errors are ours to report (opterr = 0, leading ':'), so that they follow --json. */
        opterr = 0;
        while ((c = getopt_long(argc, argv, ":h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return -1;
                case ARG_VERSION:
                        printf("noiommuctl %s\n", PACKAGE_VERSION);
                        return -1;
                case ARG_SOCKET:
                        if (!*optarg)
                                return usage_error("--socket needs a path.");
                        arg_socket = optarg;
                        break;
                case ARG_JSON:
                        arg_json = true;
                        break;
                case ARG_HUGEPAGE_SIZE:
                        r = parse_hugepage_size_arg(optarg, &a->hugepage_size);
                        if (r != 0)
                                return r;
                        alloc_options = true;
                        break;
                case ARG_NUMA_NODE:
                        r = parse_numa_arg(optarg, &a->numa_node);
                        if (r != 0)
                                return r;
                        alloc_options = true;
                        break;
                case ARG_HOLD:
                        if (!optarg || streq(optarg, "stdin"))
                                a->hold = HOLD_STDIN;
                        else if (streq(optarg, "signal"))
                                a->hold = HOLD_SIGNAL;
                        else
                                return usage_error("Invalid --hold='%s': expected --hold, "
                                                   "--hold=stdin or --hold=signal.", optarg);
                        hold_option = true;
                        break;
                case ARG_INTERACTIVE:
                        a->interactive = true;
                        interactive_option = true;
                        break;
                case ARG_DEVICE:
                        if (!pci_address_is_valid(optarg))
                                return usage_error_bad_address(optarg);
                        ra->device = optarg;
                        run_options = true;
                        break;
                case ARG_MEMORY:
                        r = parse_memory_list(optarg, ra);
                        if (r != 0)
                                return r;
                        memory_option = true;
                        break;
                case ARG_OUTPUT:
                        if (!*optarg)
                                return usage_error("--output needs a file name.");
                        ra->output = optarg;
                        break;
                case ':':
                case '?':
                        return report_bad_option(c, argc, argv, options, "");
                default:
                        return usage_error("Unknown option code 0x%x.", (unsigned) c);
                }

        if (optind >= argc)
                return usage_error("Missing command (list, alloc, free, acquire, release, "
                                   "leases, revoke, monitor, batch, cdi or run); see --help.");

        for (Verb v = 0; v < _VERB_MAX; v++) {
                if (!streq(argv[optind], verbs[v].name))
                        continue;

                /* getopt_long() moved the verb in front of a "--" it stopped at; skip the "--"
                 * so that run's CMD is what follows it. */
                n = argc - optind - 1;
                if (v == VERB_RUN && n > 0 && streq(argv[optind + 1], "--")) {
                        optind++;
                        n--;
                }
                if (n < verbs[v].min_args || (verbs[v].max_args >= 0 && n > verbs[v].max_args)) {
                        if (v == VERB_RUN)
                                return usage_error("'run' needs a command: noiommuctl run "
                                                   "[--device BDF] [--memory SIZE] -- CMD "
                                                   "[ARGS...].");
                        if (v == VERB_CDI)
                                return usage_error("'cdi' takes one subcommand: generate.");
                        return usage_error("'%s' takes %s.", verbs[v].name,
                                           verbs[v].max_args == 0 ? "no arguments" :
                                           verbs[v].min_args == 0 ? "at most one argument" :
                                                                    "exactly one argument");
                }
                if (v == VERB_CDI && !streq(argv[optind + 1], "generate"))
                        return usage_error("Unknown 'cdi' subcommand '%s' (expected generate).",
                                           argv[optind + 1]);
                /* Checked before connecting: the runtime bind-mounts a path of the host, which
                 * an abstract socket ('@') does not have and a relative one does not name. */
                if (v == VERB_CDI && socket_path()[0] != '/') {
                        _cleanup_free_ char *shown = strdup(socket_path());

                        return usage_error("CDI needs an absolute socket path; '%s' is not one "
                                           "(see --socket and $%s).", shown ? sanitize(shown) : "",
                                           NOIOMMU_SOCKET_ENV);
                }
                if (ra->output && v != VERB_CDI)
                        return usage_error("--output only applies to 'cdi generate'.");
                if (run_options && v != VERB_RUN)
                        return usage_error("--device only applies to 'run'.");
                if (memory_option && v != VERB_RUN && v != VERB_ACQUIRE)
                        return usage_error("--memory only applies to 'run' and 'acquire'.");
                if (memory_option && v == VERB_ACQUIRE && ra->n_memory > NOIOMMU_ACQUIRE_MEMORY_MAX)
                        return usage_error("'acquire --memory' takes at most %i sizes (the reply "
                                           "carries the device fd and one memfd each); allocate "
                                           "more in a 'batch'.", NOIOMMU_ACQUIRE_MEMORY_MAX);
                if (alloc_options && (v == VERB_RUN || (v == VERB_ACQUIRE && memory_option)))
                        ;                       /* they allocate too */
                else if (alloc_options && v != VERB_ALLOC)
                        return usage_error("--hugepage-size and --numa-node only apply to "
                                           "'alloc', 'run' and 'acquire --memory'%s.",
                                           v == VERB_BATCH ? " (write them on the alloc lines of a "
                                           "batch)" : "");
                if (hold_option && v != VERB_ALLOC && v != VERB_ACQUIRE)
                        return usage_error("--hold only applies to 'alloc' and 'acquire'%s.",
                                           v == VERB_BATCH ? " (a batch holds what it allocates "
                                           "and acquires until its input ends)" : "");
                if (interactive_option && v != VERB_ALLOC && v != VERB_ACQUIRE &&
                    v != VERB_LEASES && v != VERB_REVOKE && v != VERB_MONITOR && v != VERB_RUN)
                        return usage_error("--interactive only applies to 'alloc', 'acquire', "
                                           "'leases', 'revoke' and 'monitor'%s.", v == VERB_BATCH ? " (in a "
                                           "batch, write it on the alloc or acquire line)" : "");
                if (v == VERB_ALLOC) {
                        r = parse_size_arg(argv[optind + 1], "size", &a->size);
                        if (r != 0)
                                return r;
                }
                if (v == VERB_FREE && !noiommu_id_is_valid(argv[optind + 1]))
                        return usage_error_bad_id(argv[optind + 1]);
                if ((v == VERB_RELEASE || v == VERB_REVOKE) && !noiommu_id_is_valid(argv[optind + 1]))
                        return usage_error_bad_lease(argv[optind + 1]);
                if (v == VERB_ACQUIRE && n == 1 && !pci_address_is_valid(argv[optind + 1]))
                        return usage_error_bad_address(argv[optind + 1]);
                if (v == VERB_ACQUIRE && n == 0) {
                        /* Inside a container the CDI device noiommud.io/vfio=BDF names ours. */
                        const char *e = secure_getenv(NOIOMMU_DEVICE_ENV);

                        if (!e || !*e)
                                return usage_error("'acquire' needs a PCI address: give one, or "
                                                   "set $%s (the CDI device "
                                                   "noiommud.io/vfio=ADDRESS sets it in a "
                                                   "container).", NOIOMMU_DEVICE_ENV);
                        if (!pci_address_is_valid(e)) {
                                _cleanup_free_ char *shown = strdup(e);

                                return usage_error("Invalid PCI address '%s' in $%s: expected "
                                                   "dddd:bb:dd.f in lower-case hex.",
                                                   shown ? sanitize(shown) : "",
                                                   NOIOMMU_DEVICE_ENV);
                        }
                }

                *ret_verb = v;
                *ret_args = argv + optind + 1;
                return 0;
        }

        {
                _cleanup_free_ char *shown = strdup(argv[optind]);

                return usage_error("Unknown command '%s'; see --help.",
                                   shown ? sanitize(shown) : "");
        }
}

int main(int argc, char *argv[]) {
        _cleanup_(noiommu_disconnectp) noiommu_conn *c = NULL;
        AllocArgs a;
        RunArgs ra;
        char **args = NULL;
        Verb verb = _VERB_INVALID;
        int r;

        log_setup("noiommuctl", LOG_TARGET_STDERR);

        r = parse_argv(argc, argv, &verb, &args, &a, &ra);
        if (r < 0)
                return EXIT_SUCCESS;
        if (r > 0)
                return r;

        r = connect_or_report(&c);
        if (r != 0)
                return r;

        switch (verb) {
        case VERB_LIST:
                r = do_list(c);
                break;
        case VERB_ALLOC:
                r = do_alloc(c, &a, NULL);
                break;
        case VERB_FREE:
                r = do_free(c, args[0], NULL);
                break;
        case VERB_ACQUIRE:
                r = do_acquire(c, args[0] ?: secure_getenv(NOIOMMU_DEVICE_ENV), a.hold,
                               a.interactive, ra.memory, ra.n_memory, &a, NULL);
                break;
        case VERB_RELEASE:
                r = do_release(c, args[0], NULL);
                break;
        case VERB_LEASES:
                r = do_leases(c, a.interactive);
                break;
        case VERB_REVOKE:
                r = do_revoke(c, args[0], a.interactive);
                break;
        case VERB_MONITOR:
                r = do_monitor(c, a.interactive);
                break;
        case VERB_BATCH:
                r = do_batch(c);
                break;
        case VERB_CDI:
                r = do_cdi_generate(c, ra.output);
                break;
        case VERB_RUN:
                r = do_run(c, &ra, &a, args);
                break;
        case _VERB_MAX:
        case _VERB_INVALID:
        default:
                r = EXIT_USAGE;
                break;
        }

        if (fflush(stdout) != 0 && r == EXIT_SUCCESS) {
                (void) log_error_errno(negative_errno(), "Failed to write output: %m");
                r = EXIT_FAILURE;
        }
        return r;
}
