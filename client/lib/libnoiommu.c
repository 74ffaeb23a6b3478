/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libnoiommu: the client side of io.noiommud.Broker (see include/noiommu/noiommu.h for the API
 * contract).
 *
 * What this file trusts: nothing the daemon sends until it has been checked. Replies are capped
 * at NOIOMMU_REPLY_SIZE_MAX, parsed with json_parse_message() (no duplicate keys, no floats, no
 * embedded NULs, bounded depth), and every field we know is checked strictly: its type, its
 * range and its invariants (the segment table against the size, the fds against the reply).
 * Fields we do not know are ignored, in the reply object and in its parameters alike: a daemon
 * that adds a reply field must not break every deployed client (copies inside container images
 * included), and an unknown field cannot make us use anything we did not check. fds are
 * accepted only together with the first byte of a reply (the kernel ends a stream read at the end
 * of the byte range a sendmsg() attached fds to, security.md §4.1), counted from cmsg_len, and a
 * truncated set (MSG_CTRUNC) is a failed grant. Whatever goes wrong, every received fd is closed
 * and, if the daemon may have granted something the caller never got, the connection is dropped
 * so the daemon releases it.
 *
 * Nothing here logs above debug level (it does not log at all) and nothing prints: every error
 * is a negative errno, plus the Varlink error name and parameters kept on the connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal/errors.h"
#include "internal/json-util.h"
#include "internal/macro.h"
#include "internal/run-env.h"
#include "internal/wire.h"
#include "noiommu/noiommu.h"
#include "noiommu/protocol.h"

/* How much to read at a time; replies are usually far smaller. */
#define REPLY_READ_CHUNK (64U * 1024U)

/* Longest Varlink method or error name we send or accept. */
#define VARLINK_NAME_MAX 255U

struct noiommu_conn {
        int fd;                 /* -EBADF once dropped */
        pid_t pid;              /* the process that connected; the daemon authorises as it */
        WireBuffer in;
        char *error_name;       /* of the last failed call, NULL otherwise */
        char *error_parameters; /* its parameters as compact JSON */
};

typedef struct Device {
        const char *address;    /* all strings point into noiommu_device_list.reply */
        const char *driver;
        const char *backend;
        const char *state;
        const char *reason;
        const char *backend_reason;
        json_t *available_backends;     /* array of non-empty strings, or NULL */
        uint16_t vendor_id;
        uint16_t device_id;
        int iommu_group;
        int numa_node;
} Device;

struct noiommu_device_list {
        json_t *reply;
        Device *devices;
        size_t n_devices;
};

struct noiommu_memory {
        char id[NOIOMMU_ID_LEN + 1];
        int fd;
        void *address;          /* MAP_FAILED until mapped */
        uint64_t size;
        uint64_t hugepage_size;
        int numa_node;
        noiommu_address_kind address_kind;
        noiommu_segment *segments;
        size_t n_segments;
};

struct noiommu_lease {
        char id[NOIOMMU_ID_LEN + 1];
        int fd;                 /* the device fd; -EBADF once closed */
        json_t *reply;          /* the AcquireDevice reply: device's strings point into it */
        Device device;
};

/* The fds that arrived with one reply. Closed by the cleanup unless taken. */
typedef struct ReplyFds {
        int fds[NOIOMMU_FDS_PER_REPLY_MAX];
        size_t n;
} ReplyFds;

static void reply_fds_done(ReplyFds *f) {
        close_many(f->fds, f->n);
        f->n = 0;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(noiommu_memory *, noiommu_memory_unref);
DEFINE_TRIVIAL_CLEANUP_FUNC(noiommu_lease *, noiommu_lease_unref);
DEFINE_TRIVIAL_CLEANUP_FUNC(noiommu_device_list *, noiommu_device_list_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(noiommu_conn *, noiommu_disconnect);

/* Varlink method and error names: "reverse.domain.Interface.Name". We only need them to be
 * harmless to print and to embed: ASCII letters, digits, '.', '-' and '_'. */
static bool varlink_name_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n == 0 || n > VARLINK_NAME_MAX || s[0] == '.' || s[n - 1] == '.' || !strchr(s, '.'))
                return false;
        for (size_t i = 0; i < n; i++) {
                char ch = s[i];

                if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_'))
                        return false;
        }
        return true;
}

static char *mfree_str(char *p) {
        free(p);
        return NULL;
}

static int fd_wait(int fd, short events) {
        struct pollfd p = { .fd = fd, .events = events };

        for (;;) {
                if (poll(&p, 1, -1) < 0) {
                        /* A signal is not a reason to abandon a call half-way: the reply would
                         * stay queued and be taken for the answer to the next call. */
                        if (errno == EINTR)
                                continue;
                        return negative_errno();
                }
                if (p.revents & POLLNVAL)
                        return -EBADF;
                /* POLLERR/POLLHUP: let the next read or write report what happened. */
                return 0;
        }
}

static void conn_clear_error(noiommu_conn *c) {
        c->error_name = mfree_str(c->error_name);
        c->error_parameters = mfree_str(c->error_parameters);
}

/* Every call on a connection starts with this, before it checks its arguments: an error the
 * caller reads after a call is that call's, never the previous one's (noiommu.h promises NULL
 * after a local error). */
static void conn_begin_call(noiommu_conn *c) {
        if (c)
                conn_clear_error(c);
}

/* Ends the connection for good. shutdown() rather than only close(): after a fork() a child may
 * still hold a copy of the socket, and the daemon must see the connection end now, because
 * that is what makes it release what it granted. */
static void conn_drop(noiommu_conn *c) {
        if (c->fd >= 0 && getpid() == c->pid)
                (void) shutdown(c->fd, SHUT_RDWR);
        c->fd = safe_close(c->fd);
        wire_buffer_done(&c->in);
}

static int conn_send_all(noiommu_conn *c, const char *buf, size_t len) {
        while (len > 0) {
                ssize_t n;
                int r;

                n = wire_send(c->fd, buf, len, NULL, 0);
                if (n == -EAGAIN) {
                        r = fd_wait(c->fd, POLLOUT);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n == -EINTR)
                        continue;
                if (n < 0)
                        return (int) n;
                buf += n;
                len -= (size_t) n;
        }
        return 0;
}

/* Reads until one complete reply (up to its NUL) is buffered. Returns its length without the
 * NUL in *ret_len and the fds that came with its first byte in *fds. */
static int conn_receive(noiommu_conn *c, size_t *ret_len, ReplyFds *fds) {
        for (;;) {
                int got[NOIOMMU_FDS_PER_REPLY_MAX];
                size_t n_got = 0, size;
                ssize_t m, n;
                bool first;
                char *p;
                int r;

                m = wire_buffer_message(&c->in);
                if (m >= 0) {
                        *ret_len = (size_t) m;
                        return 0;
                }

                p = wire_buffer_space(&c->in, REPLY_READ_CHUNK, &size);
                if (!p)
                        return c->in.n >= c->in.max ? -EMSGSIZE : -ENOMEM;

                /* Calls are strictly one at a time and a reply is consumed completely before
                 * the next call is sent, so an empty buffer means this read starts a reply. */
                first = c->in.n == 0;

                n = wire_recv_fds(c->fd, p, size, got, ELEMENTSOF(got), &n_got);
                if (n == -EAGAIN) {
                        r = fd_wait(c->fd, POLLIN);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (n == -EINTR)
                        continue;
                if (n < 0)
                        return (int) n;         /* -EXFULL: MSG_CTRUNC, wire closed what came */

                if (n_got > 0) {
                        /* fds on a later byte of a reply could belong to anything; sd-varlink
                         * rejects them the same way. */
                        if (!first || fds->n > 0) {
                                close_many(got, n_got);
                                return -EPROTO;
                        }
                        memcpy(fds->fds, got, n_got * sizeof(int));
                        fds->n = n_got;
                }

                if (n == 0)
                        return -ECONNRESET;

                c->in.n += (size_t) n;
        }
}

/* Makes one call and waits for its reply. On success returns the reply parameters (an object,
 * possibly empty) and the reply's fds, which the caller then owns. A Varlink error reply is
 * recorded on the connection and returned as a negative errno. Every failure that leaves the
 * stream in an unknown state drops the connection. */
static int conn_transact(noiommu_conn *c, const char *method, json_t *parameters,
                         json_t **ret_parameters, ReplyFds *ret_fds) {
        _cleanup_(reply_fds_done) ReplyFds fds = {};
        json_auto_t *call = NULL, *reply = NULL;
        _cleanup_free_ char *text = NULL;
        const char *key, *error = NULL;
        json_t *v, *reply_parameters = NULL;
        size_t len;
        int r;

        conn_clear_error(c);

        if (c->fd < 0)
                return -ENOTCONN;
        if (getpid() != c->pid)
                return -ECHILD;

        call = json_pack("{s:s,s:O}", "method", method, "parameters", parameters);
        if (!call)
                return -ENOMEM;
        text = json_dumps(call, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        len = strlen(text) + 1;                 /* the NUL terminates the Varlink message */
        if (len > NOIOMMU_REQUEST_SIZE_MAX)
                return -E2BIG;

        r = conn_send_all(c, text, len);
        if (r < 0)
                goto drop;

        r = conn_receive(c, &len, &fds);
        if (r < 0)
                goto drop;

        r = json_parse_message(c->in.data, len, &reply);
        if (r < 0)
                goto drop;

        /* One call, one reply: anything after it was sent without being asked for. */
        if (c->in.n != len + 1) {
                r = -EPROTO;
                goto drop;
        }
        wire_buffer_consume(&c->in, len + 1);

        r = -EBADMSG;
        json_object_foreach(reply, key, v) {
                if (streq(key, "parameters")) {
                        if (!json_is_object(v))
                                goto drop;
                        reply_parameters = v;
                } else if (streq(key, "error")) {
                        if (!json_is_string(v) || !varlink_name_is_valid(json_string_value(v)))
                                goto drop;
                        error = json_string_value(v);
                } else if (streq(key, "continues")) {
                        /* We never ask for "more", so there is never a continuation. */
                        if (!json_is_false(v))
                                goto drop;
                }
                /* Anything else is ignored: Varlink puts vendor extensions of the reply object
                 * in members of their own (https://varlink.org/Method-Call), and a newer
                 * daemon may add some. */
        }

        if (error) {
                /* Error replies grant nothing; fds on one are a broken or hostile daemon. */
                if (fds.n > 0) {
                        r = -EPROTO;
                        goto drop;
                }

                c->error_name = strdup(error);
                c->error_parameters = reply_parameters ? json_dumps(reply_parameters, JSON_COMPACT)
                                                       : strdup("{}");
                if (!c->error_name || !c->error_parameters)
                        conn_clear_error(c);

                r = varlink_error_to_errno(error);

                /* The daemon closes the connection after ProtocolViolation; follow suit. */
                if (streq(error, NOIOMMU_ERROR_PROTOCOL_VIOLATION))
                        conn_drop(c);
                return r;
        }

        if (reply_parameters)
                json_incref(reply_parameters);
        else {
                reply_parameters = json_object();
                if (!reply_parameters) {
                        r = -ENOMEM;
                        goto drop;
                }
        }

        *ret_parameters = reply_parameters;
        *ret_fds = fds;
        fds.n = 0;                              /* ownership moved to *ret_fds */
        return 0;

drop:
        /* fds are closed by the cleanup, before or after the socket: the order does not matter,
         * the daemon releases on the connection, not on the fds. */
        conn_drop(c);
        return r;
}

_public_ int noiommu_connect(const char *path, noiommu_conn **ret) {
        _cleanup_(noiommu_disconnectp) noiommu_conn *c = NULL;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        socklen_t salen;
        size_t n;

        if (!ret)
                return -EINVAL;

        if (!path) {
                path = secure_getenv(NOIOMMU_SOCKET_ENV);
                if (!path || !*path)
                        path = NOIOMMU_SOCKET_PATH_DEFAULT;
        }

        n = strlen(path);
        if (n == 0 || (path[0] == '@' && n == 1))
                return -EINVAL;
        if (n >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;

        if (path[0] == '@') {
                /* Abstract namespace: leading NUL, no terminator, length counts exactly. */
                memcpy(sa.sun_path + 1, path + 1, n - 1);
                salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n);
        } else {
                memcpy(sa.sun_path, path, n);
                salen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n + 1);
        }

        c = new0(noiommu_conn, 1);
        if (!c)
                return -ENOMEM;
        c->fd = -EBADF;
        c->pid = getpid();
        wire_buffer_init(&c->in, NOIOMMU_REPLY_SIZE_MAX);

        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0)
                return negative_errno();

        if (connect(c->fd, (const struct sockaddr *) &sa, salen) < 0) {
                int error = 0;
                socklen_t l = sizeof(error);
                int r;

                if (errno != EINTR)
                        return negative_errno();

                /* An interrupted connect() carries on in the background: wait for it and
                 * fetch its outcome, never call connect() again. */
                r = fd_wait(c->fd, POLLOUT);
                if (r < 0)
                        return r;
                if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &l) < 0)
                        return negative_errno();
                if (error != 0)
                        return -error;
        }

        *ret = TAKE_PTR(c);
        return 0;
}

_public_ int noiommu_conn_get_fd(const noiommu_conn *c) {
        if (!c)
                return -EINVAL;
        return c->fd >= 0 ? c->fd : -ENOTCONN;
}

_public_ noiommu_conn *noiommu_disconnect(noiommu_conn *c) {
        if (!c)
                return NULL;

        conn_drop(c);
        conn_clear_error(c);
        free(c);
        return NULL;
}

_public_ const char *noiommu_last_error(noiommu_conn *c) {
        return c ? c->error_name : NULL;
}

_public_ const char *noiommu_last_error_parameters(noiommu_conn *c) {
        return c && c->error_name ? c->error_parameters : NULL;
}

static bool hex4_parse(const char *s, uint16_t *ret) {
        uint16_t v = 0;

        if (strlen(s) != 4)
                return false;
        for (size_t i = 0; i < 4; i++) {
                char ch = s[i];

                if (ch >= '0' && ch <= '9')
                        v = (uint16_t) (v << 4 | (uint16_t) (ch - '0'));
                else if (ch >= 'a' && ch <= 'f')
                        v = (uint16_t) (v << 4 | (uint16_t) (ch - 'a' + 10));
                else
                        return false;
        }
        *ret = v;
        return true;
}

/* A Varlink "?string" member: absent, null, or a string. */
static int optional_string(json_t *v, const char **ret) {
        if (!v || json_is_null(v)) {
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v))
                return -EBADMSG;
        *ret = json_string_value(v);
        return 0;
}

static int device_from_json(json_t *o, Device *ret) {
        const char *vendor, *device;
        json_t *backend = NULL, *group = NULL, *reason = NULL, *backend_reason = NULL, *available = NULL, *e;
        json_int_t numa;
        Device d = {};
        size_t i;

        /* backendReason and availableBackends are optional: daemons before them do not send
         * them. No JSON_STRICT here or in the other replies: a newer daemon's extra fields are
         * ignored, the ones listed are checked. */
        if (json_unpack_ex(o, NULL, 0, "{s:s, s:s, s:s, s:s, s?o, s?o, s:I, s:s, s?o, s?o, s?o}",
                           "address", &d.address,
                           "vendorId", &vendor,
                           "deviceId", &device,
                           "driver", &d.driver,
                           "backend", &backend,
                           "iommuGroup", &group,
                           "numaNode", &numa,
                           "state", &d.state,
                           "reason", &reason,
                           "backendReason", &backend_reason,
                           "availableBackends", &available) < 0)
                return -EBADMSG;

        if (optional_string(backend_reason, &d.backend_reason) < 0)
                return -EBADMSG;
        if (available && !json_is_null(available)) {
                if (!json_is_array(available))
                        return -EBADMSG;
                json_array_foreach(available, i, e)
                        if (!json_is_string(e) || !*json_string_value(e))
                                return -EBADMSG;
                d.available_backends = available;
        }

        if (!pci_address_is_valid(d.address) ||
            !hex4_parse(vendor, &d.vendor_id) ||
            !hex4_parse(device, &d.device_id) ||
            !*d.driver || !*d.state)
                return -EBADMSG;

        if (optional_string(backend, &d.backend) < 0 || optional_string(reason, &d.reason) < 0)
                return -EBADMSG;
        if (d.backend && !*d.backend)
                return -EBADMSG;

        if (!group || json_is_null(group))
                d.iommu_group = -1;
        else if (json_is_integer(group) && json_integer_value(group) >= 0 &&
                 json_integer_value(group) <= INT32_MAX)
                d.iommu_group = (int) json_integer_value(group);
        else
                return -EBADMSG;

        if (numa < -1 || numa > INT32_MAX)
                return -EBADMSG;
        d.numa_node = (int) numa;

        *ret = d;
        return 0;
}

_public_ int noiommu_list_devices(noiommu_conn *c, noiommu_device_list **ret) {
        _cleanup_(noiommu_device_list_freep) noiommu_device_list *l = NULL;
        _cleanup_(reply_fds_done) ReplyFds fds = {};
        json_auto_t *parameters = NULL, *reply = NULL;
        json_t *devices, *e;
        size_t i;
        int r;

        conn_begin_call(c);
        if (!c || !ret)
                return -EINVAL;

        parameters = json_object();
        if (!parameters)
                return -ENOMEM;

        r = conn_transact(c, NOIOMMU_METHOD_LIST_DEVICES, parameters, &reply, &fds);
        if (r < 0)
                return r;

        /* ListDevices grants nothing, so fds on its reply are a broken daemon. */
        if (fds.n > 0) {
                conn_drop(c);
                return -EBADMSG;
        }

        if (json_unpack_ex(reply, NULL, 0, "{s:o}", "devices", &devices) < 0 ||
            !json_is_array(devices))
                return -EBADMSG;

        l = new0(noiommu_device_list, 1);
        if (!l)
                return -ENOMEM;
        l->devices = new0(Device, json_array_size(devices));
        if (!l->devices)
                return -ENOMEM;

        json_array_foreach(devices, i, e) {
                r = device_from_json(e, &l->devices[i]);
                if (r < 0)
                        return r;
                l->n_devices++;
        }

        l->reply = TAKE_PTR(reply);             /* the Device strings point into it */
        *ret = TAKE_PTR(l);
        return 0;
}

_public_ noiommu_device_list *noiommu_device_list_free(noiommu_device_list *l) {
        if (!l)
                return NULL;
        free(l->devices);
        json_decref(l->reply);
        free(l);
        return NULL;
}

_public_ size_t noiommu_device_list_get_count(const noiommu_device_list *l) {
        return l ? l->n_devices : 0;
}

static const Device *device_list_get(const noiommu_device_list *l, size_t i) {
        if (!l || i >= l->n_devices)
                return NULL;
        return &l->devices[i];
}

_public_ const char *noiommu_device_list_get_address(const noiommu_device_list *l, size_t i) {
        const Device *d = device_list_get(l, i);

        return d ? d->address : NULL;
}

_public_ int noiommu_device_list_get_vendor_id(const noiommu_device_list *l, size_t i) {
        const Device *d = device_list_get(l, i);

        return d ? (int) d->vendor_id : -EINVAL;
}

_public_ int noiommu_device_list_get_device_id(const noiommu_device_list *l, size_t i) {
        const Device *d = device_list_get(l, i);

        return d ? (int) d->device_id : -EINVAL;
}

_public_ const char *noiommu_device_list_get_driver(const noiommu_device_list *l, size_t i) {
        const Device *d = device_list_get(l, i);

        return d ? d->driver : NULL;
}

_public_ const char *noiommu_device_list_get_backend(const noiommu_device_list *l, size_t i) {
        const Device *d = device_list_get(l, i);

        return d ? d->backend : NULL;
}

_public_ int noiommu_device_list_get_iommu_group(const noiommu_device_list *l, size_t i) {
        const Device *d = device_list_get(l, i);

        return d ? d->iommu_group : -EINVAL;
}

_public_ int noiommu_device_list_get_numa_node(const noiommu_device_list *l, size_t i) {
        const Device *d = device_list_get(l, i);

        return d ? d->numa_node : -EINVAL;
}

_public_ const char *noiommu_device_list_get_state(const noiommu_device_list *l, size_t i) {
        const Device *d = device_list_get(l, i);

        return d ? d->state : NULL;
}

_public_ const char *noiommu_device_list_get_reason(const noiommu_device_list *l, size_t i) {
        const Device *d = device_list_get(l, i);

        return d ? d->reason : NULL;
}

_public_ const char *noiommu_device_list_get_backend_reason(const noiommu_device_list *l, size_t i) {
        const Device *d = device_list_get(l, i);

        return d ? d->backend_reason : NULL;
}

_public_ const char *noiommu_device_list_get_available_backend(const noiommu_device_list *l, size_t i, size_t j) {
        const Device *d = device_list_get(l, i);

        if (!d || !d->available_backends || j >= json_array_size(d->available_backends))
                return NULL;
        return json_string_value(json_array_get(d->available_backends, j));
}

/* Copies the caller's options into "o" (already holding the defaults), reading only the
 * fields that fit in the caller's o->size, openat2()-style. */
static int alloc_options_load(const noiommu_alloc_options *opts, noiommu_alloc_options *o) {
        uint64_t n;

        noiommu_alloc_options_init(o);
        if (!opts)
                return 0;

        /* Bounded like clone3() bounds its struct: a garbage size must not make us read
         * far beyond the caller's structure. */
        n = opts->size;
        if (n < NOIOMMU_ALLOC_OPTIONS_SIZE_VER0)
                return -EINVAL;
        if (n > 4096)
                return -E2BIG;

        /* A newer caller's fields we do not know must be zero (their default). */
        for (uint64_t i = sizeof(*o); i < n; i++)
                if (((const unsigned char *) opts)[i] != 0)
                        return -E2BIG;

        o->hugepage_size = opts->hugepage_size;
        o->numa_node = opts->numa_node;
        o->flags = opts->flags;
        o->lease = opts->lease;

        if (o->hugepage_size > INT64_MAX ||
            o->numa_node < -1 ||
            (o->flags & ~NOIOMMU_ALLOC_INTERACTIVE) != 0 ||
            (o->lease && !noiommu_id_is_valid(o->lease)))
                return -EINVAL;
        return 0;
}

static bool is_power_of_2(uint64_t v) {
        return v != 0 && (v & (v - 1)) == 0;
}

/* Builds a memory object from an AllocateMemory reply (or one item of AcquireDevice's
 * "memory") and its fds, and checks everything that can be checked before the memory is used:
 * the reply against the request, the fds against the reply (n_fds: how many the whole reply
 * must carry), the memfd against the reply, the segment table against the size. Returns
 * -EBADMSG or -EXFULL when the daemon broke the contract, -ENOMEM when we ran out. Takes the
 * memfd out of *fds on success (its slot becomes -EBADF). */
static int memory_from_reply(json_t *reply, ReplyFds *fds, size_t n_fds, uint64_t requested,
                             const noiommu_alloc_options *o, noiommu_memory **ret) {
        _cleanup_(noiommu_memory_unrefp) noiommu_memory *m = NULL;
        json_int_t size, hugepage_size, numa, fd_index;
        const char *id, *kind;
        json_t *segments, *e;
        uint64_t expect, next = 0;
        struct stat st;
        int seals, flags;
        size_t i;

        if (json_unpack_ex(reply, NULL, 0, "{s:s, s:I, s:I, s:I, s:s, s:o, s:I}",
                           "memory", &id,
                           "size", &size,
                           "hugepageSize", &hugepage_size,
                           "numaNode", &numa,
                           "addressKind", &kind,
                           "segments", &segments,
                           "fd", &fd_index) < 0)
                return -EBADMSG;

        /* Exactly the fds the reply names: one memfd (AllocateMemory). Fewer means the kernel
         * dropped some on the way (a failed grant); more means the daemon sent something we
         * cannot account for. */
        if (fd_index < 0 || fd_index >= NOIOMMU_FDS_PER_REPLY_MAX || (size_t) fd_index >= n_fds)
                return -EBADMSG;
        if (fds->n <= (size_t) fd_index)
                return -EXFULL;
        if (fds->n != n_fds || fds->fds[fd_index] < 0)
                return -EBADMSG;            /* a count we did not expect, or an index used twice */

        if (!noiommu_id_is_valid(id))
                return -EBADMSG;

        if (hugepage_size < 4096 || !is_power_of_2((uint64_t) hugepage_size))
                return -EBADMSG;
        if (o->hugepage_size != 0 && (uint64_t) hugepage_size != o->hugepage_size)
                return -EBADMSG;

        /* requested and hugepage_size are both <= INT64_MAX, so this cannot overflow. */
        expect = (requested + (uint64_t) hugepage_size - 1) / (uint64_t) hugepage_size *
                 (uint64_t) hugepage_size;
        if (size <= 0 || (uint64_t) size != expect || (uint64_t) size > SIZE_MAX)
                return -EBADMSG;

        if (numa < -1 || numa > INT32_MAX || (o->numa_node >= 0 && numa != o->numa_node))
                return -EBADMSG;

        m = new0(noiommu_memory, 1);
        if (!m)
                return -ENOMEM;
        m->fd = -EBADF;
        m->address = MAP_FAILED;
        memcpy(m->id, id, NOIOMMU_ID_LEN + 1);
        m->size = (uint64_t) size;
        m->hugepage_size = (uint64_t) hugepage_size;
        m->numa_node = (int) numa;

        if (streq(kind, "physical"))
                m->address_kind = NOIOMMU_ADDRESS_PHYSICAL;
        else if (streq(kind, "iova"))
                m->address_kind = NOIOMMU_ADDRESS_IOVA;
        else
                return -EBADMSG;                /* an address we do not know how to use */

        if (!json_is_array(segments) || json_array_size(segments) == 0)
                return -EBADMSG;
        m->segments = new0(noiommu_segment, json_array_size(segments));
        if (!m->segments)
                return -ENOMEM;

        /* The table must describe every byte exactly once, in order: a device told about a
         * gap or an overlap would DMA into memory nobody accounted for. */
        json_array_foreach(segments, i, e) {
                json_int_t offset, length, dma;

                if (json_unpack_ex(e, NULL, 0, "{s:I, s:I, s:I}",
                                   "offset", &offset,
                                   "length", &length,
                                   "dmaAddress", &dma) < 0)
                        return -EBADMSG;
                if (offset < 0 || length <= 0 || dma < 0)
                        return -EBADMSG;
                if ((uint64_t) offset != next || (uint64_t) length > m->size - next)
                        return -EBADMSG;
                if ((uint64_t) dma > UINT64_MAX - (uint64_t) length)
                        return -EBADMSG;

                m->segments[i] = (noiommu_segment) {
                        .offset = (uint64_t) offset,
                        .length = (uint64_t) length,
                        .dma_address = (uint64_t) dma,
                };
                m->n_segments++;
                next += (uint64_t) length;
        }
        if (next != m->size)
                return -EBADMSG;

        /* Now the fd itself. It must be what the reply says it is; the seals are what keep the
         * pages the device uses from being truncated away under it. */
        m->fd = fds->fds[fd_index];
        fds->fds[fd_index] = -EBADF;

        if (fstat(m->fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
            (uint64_t) st.st_size != m->size)
                return -EBADMSG;

        seals = fcntl(m->fd, F_GET_SEALS);
        if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
                return -EBADMSG;

        flags = fcntl(m->fd, F_GETFL);
        if (flags < 0 || (flags & O_ACCMODE) != O_RDWR)
                return -EBADMSG;

        *ret = TAKE_PTR(m);
        return 0;
}

static int memory_map(noiommu_memory *m) {
        void *p;

        /* MAP_SHARED so device and CPU see the same pages; populated so the data path never
         * takes a fault. Never MAP_NORESERVE: the daemon preallocated every page, and the
         * reservation is what turns exhaustion into an error here rather than a SIGBUS later. */
        p = mmap(NULL, (size_t) m->size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                 m->fd, 0);
        if (p == MAP_FAILED)
                return negative_errno();
        m->address = p;
        return 0;
}

/* Makes a call whose only parameter is an id and whose reply carries nothing (FreeMemory,
 * ReleaseDevice). */
static int conn_call_with_id(noiommu_conn *c, const char *method, const char *key, const char *id) {
        _cleanup_(reply_fds_done) ReplyFds fds = {};
        json_auto_t *parameters = NULL, *reply = NULL;
        int r;

        parameters = json_pack("{s:s}", key, id);
        if (!parameters)
                return -ENOMEM;

        r = conn_transact(c, method, parameters, &reply, &fds);
        if (r < 0)
                return r;
        if (fds.n > 0) {
                conn_drop(c);
                return -EBADMSG;
        }
        return 0;
}

static int conn_free_memory_id(noiommu_conn *c, const char *id) {
        return conn_call_with_id(c, NOIOMMU_METHOD_FREE_MEMORY, "memory", id);
}

_public_ int noiommu_allocate(noiommu_conn *c, uint64_t size, const noiommu_alloc_options *opts,
                              noiommu_memory **ret) {
        _cleanup_(noiommu_memory_unrefp) noiommu_memory *m = NULL;
        _cleanup_(reply_fds_done) ReplyFds fds = {};
        json_auto_t *parameters = NULL, *reply = NULL;
        noiommu_alloc_options o;
        int r;

        conn_begin_call(c);
        if (!c || !ret || size == 0 || size > INT64_MAX)
                return -EINVAL;

        r = alloc_options_load(opts, &o);
        if (r < 0)
                return r;

        parameters = json_pack("{s:I}", "size", (json_int_t) size);
        if (!parameters)
                return -ENOMEM;
        if ((o.hugepage_size > 0 &&
             json_object_set_new(parameters, "hugepageSize",
                                 json_integer((json_int_t) o.hugepage_size)) < 0) ||
            (o.numa_node >= 0 &&
             json_object_set_new(parameters, "numaNode", json_integer(o.numa_node)) < 0) ||
            (o.lease &&
             json_object_set_new(parameters, "lease", json_string(o.lease)) < 0) ||
            ((o.flags & NOIOMMU_ALLOC_INTERACTIVE) &&
             json_object_set_new(parameters, "interactive", json_true()) < 0))
                return -ENOMEM;

        r = conn_transact(c, NOIOMMU_METHOD_ALLOCATE_MEMORY, parameters, &reply, &fds);
        if (r < 0)
                return r;

        r = memory_from_reply(reply, &fds, 1, size, &o, &m);
        if (r < 0) {
                const char *id = json_string_value(json_object_get(reply, "memory"));

                /* Only running out of memory ourselves is not the daemon's fault; then give
                 * the pages back politely. Anything else (and a failed FreeMemory) means the
                 * daemon cannot be trusted to know what it granted: drop the connection, the
                 * one release it cannot get wrong. */
                if (r != -ENOMEM || !noiommu_id_is_valid(id) || conn_free_memory_id(c, id) < 0)
                        conn_drop(c);
                conn_clear_error(c);
                return r;
        }

        r = memory_map(m);
        if (r < 0) {
                if (conn_free_memory_id(c, m->id) < 0)
                        conn_drop(c);
                conn_clear_error(c);
                return r;
        }

        *ret = TAKE_PTR(m);
        return 0;
}

_public_ int noiommu_free(noiommu_conn *c, noiommu_memory *m) {
        int r;

        conn_begin_call(c);
        if (!m)
                return 0;

        r = c ? conn_free_memory_id(c, m->id) : -EINVAL;
        (void) noiommu_memory_unref(m);
        return r;
}

_public_ noiommu_memory *noiommu_memory_unref(noiommu_memory *m) {
        if (!m)
                return NULL;

        if (m->address != MAP_FAILED)
                (void) munmap(m->address, (size_t) m->size);
        m->fd = safe_close(m->fd);
        free(m->segments);
        free(m);
        return NULL;
}

_public_ const char *noiommu_memory_get_id(const noiommu_memory *m) {
        return m ? m->id : NULL;
}

_public_ int noiommu_memory_get_fd(const noiommu_memory *m) {
        return m ? m->fd : -EINVAL;
}

_public_ void *noiommu_memory_get_address(const noiommu_memory *m) {
        return m ? m->address : NULL;
}

_public_ uint64_t noiommu_memory_get_size(const noiommu_memory *m) {
        return m ? m->size : 0;
}

_public_ uint64_t noiommu_memory_get_hugepage_size(const noiommu_memory *m) {
        return m ? m->hugepage_size : 0;
}

_public_ int noiommu_memory_get_numa_node(const noiommu_memory *m) {
        return m ? m->numa_node : -1;
}

_public_ noiommu_address_kind noiommu_memory_get_address_kind(const noiommu_memory *m) {
        return m ? m->address_kind : NOIOMMU_ADDRESS_PHYSICAL;
}

_public_ const noiommu_segment *noiommu_memory_get_segments(const noiommu_memory *m,
                                                            size_t *ret_n) {
        if (!m) {
                if (ret_n)
                        *ret_n = 0;
                return NULL;
        }
        if (ret_n)
                *ret_n = m->n_segments;
        return m->segments;
}

_public_ const char *noiommu_address_kind_to_string(noiommu_address_kind k) {
        switch (k) {
        case NOIOMMU_ADDRESS_PHYSICAL:
                return "physical";
        case NOIOMMU_ADDRESS_IOVA:
                return "iova";
        default:
                return NULL;
        }
}

/* Builds a lease object from an AcquireDevice reply and its fds, checking the reply against the
 * request and the fds against the reply (n_fds: how many it must carry, the device fd and one
 * memfd per region asked for). Returns -EBADMSG or -EXFULL when the daemon broke the contract,
 * -ENOMEM when we ran out. Takes the device fd out of *fds (its slot becomes -EBADF) and a
 * reference to reply on success. */
static int lease_from_reply(json_t *reply, ReplyFds *fds, size_t n_fds, const char *address,
                            noiommu_lease **ret) {
        _cleanup_(noiommu_lease_unrefp) noiommu_lease *l = NULL;
        json_int_t fd_index;
        const char *id;
        json_t *device;
        Device d;
        int flags;

        if (json_unpack_ex(reply, NULL, 0, "{s:s, s:o, s:I}",
                           "lease", &id,
                           "device", &device,
                           "fd", &fd_index) < 0)
                return -EBADMSG;

        /* Exactly the fds the reply names: the device fd (and the memfds, checked with their
         * items). */
        if (fd_index < 0 || fd_index >= NOIOMMU_FDS_PER_REPLY_MAX || (size_t) fd_index >= n_fds)
                return -EBADMSG;
        if (fds->n <= (size_t) fd_index)
                return -EXFULL;
        if (fds->n != n_fds)
                return -EBADMSG;

        if (!noiommu_id_is_valid(id))
                return -EBADMSG;

        /* The device we asked for, and one some backend serves: a lease on anything else is
         * not what the caller agreed to hold. */
        if (device_from_json(device, &d) < 0 || !streq(d.address, address) || !d.backend)
                return -EBADMSG;

        l = new0(noiommu_lease, 1);
        if (!l)
                return -ENOMEM;
        l->fd = -EBADF;
        memcpy(l->id, id, NOIOMMU_ID_LEN + 1);

        l->fd = fds->fds[fd_index];
        fds->fds[fd_index] = -EBADF;

        /* A VFIO device fd is read-write (the group path's anon inode and the cdev alike); its
         * file type says nothing (an anon inode has none), so that is all we can check. */
        flags = fcntl(l->fd, F_GETFL);
        if (flags < 0 || (flags & O_ACCMODE) != O_RDWR)
                return -EBADMSG;

        l->reply = json_incref(reply);
        l->device = d;                          /* its strings point into l->reply */
        *ret = TAKE_PTR(l);
        return 0;
}

static int conn_release_lease_id(noiommu_conn *c, const char *id) {
        return conn_call_with_id(c, NOIOMMU_METHOD_RELEASE_DEVICE, "lease", id);
}

/* The device an acquire names: address, or NULL for the one the container was given. Inside a
 * container the CDI device noiommud.io/vfio=ADDRESS says which device is ours. secure_getenv():
 * a setuid program must not be steered to a device by its caller. The address is checked here
 * too, so a typo never reaches the daemon (and its audit log) as anything but a well-formed
 * name. */
static int device_address_resolve(const char **address) {
        if (!*address) {
                *address = secure_getenv(NOIOMMU_DEVICE_ENV);
                if (!*address || !**address)
                        return -ENXIO;
        }
        return pci_address_is_valid(*address) ? 0 : -EINVAL;
}

_public_ int noiommu_acquire_device(noiommu_conn *c, const char *address, unsigned flags,
                                    noiommu_lease **ret) {
        _cleanup_(noiommu_lease_unrefp) noiommu_lease *l = NULL;
        _cleanup_(reply_fds_done) ReplyFds fds = {};
        json_auto_t *parameters = NULL, *reply = NULL;
        int r;

        conn_begin_call(c);
        if (!c || !ret || (flags & ~NOIOMMU_ACQUIRE_INTERACTIVE) != 0)
                return -EINVAL;

        r = device_address_resolve(&address);
        if (r < 0)
                return r;

        parameters = json_pack("{s:s}", "device", address);
        if (!parameters)
                return -ENOMEM;
        if ((flags & NOIOMMU_ACQUIRE_INTERACTIVE) &&
            json_object_set_new(parameters, "interactive", json_true()) < 0)
                return -ENOMEM;

        r = conn_transact(c, NOIOMMU_METHOD_ACQUIRE_DEVICE, parameters, &reply, &fds);
        if (r < 0)
                return r;

        r = lease_from_reply(reply, &fds, 1, address, &l);
        if (r < 0) {
                const char *id = json_string_value(json_object_get(reply, "lease"));

                /* As in noiommu_allocate(): only our own ENOMEM is released politely; a reply
                 * we cannot trust ends the connection, and with it the lease. */
                if (r != -ENOMEM || !noiommu_id_is_valid(id) || conn_release_lease_id(c, id) < 0)
                        conn_drop(c);
                conn_clear_error(c);
                return r;
        }

        *ret = TAKE_PTR(l);
        return 0;
}

/* The memory objects of an AcquireDevice reply with "memory": each item checked like an
 * AllocateMemory reply, against its request and against the reply's fds. */
static int acquire_memory_from_reply(json_t *reply, ReplyFds *fds, const uint64_t *sizes, size_t n_memory,
                                     const noiommu_alloc_options *o, noiommu_memory **ret_memory) {
        json_t *memory = json_object_get(reply, "memory");
        int r;

        if (!json_is_array(memory) || json_array_size(memory) != n_memory)
                return -EBADMSG;
        for (size_t i = 0; i < n_memory; i++) {
                /* Each memfd follows the device fd, in the order asked: an item naming the
                 * device fd or another item's memfd is caught by memory_from_reply(). */
                r = memory_from_reply(json_array_get(memory, i), fds, 1 + n_memory, sizes[i], o,
                                      &ret_memory[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

_public_ int noiommu_acquire_device_with_memory(noiommu_conn *c, const char *address, unsigned flags,
                                                const uint64_t *sizes, size_t n_memory,
                                                const noiommu_alloc_options *opts,
                                                noiommu_lease **ret_lease, noiommu_memory **ret_memory) {
        _cleanup_(noiommu_lease_unrefp) noiommu_lease *l = NULL;
        noiommu_memory *m[NOIOMMU_ACQUIRE_MEMORY_MAX] = {};
        _cleanup_(reply_fds_done) ReplyFds fds = {};
        json_auto_t *parameters = NULL, *reply = NULL;
        noiommu_alloc_options o;
        json_t *list;
        int r;

        conn_begin_call(c);
        if (!c || !ret_lease || !ret_memory || !sizes || n_memory == 0 ||
            n_memory > NOIOMMU_ACQUIRE_MEMORY_MAX || (flags & ~NOIOMMU_ACQUIRE_INTERACTIVE) != 0)
                return -EINVAL;
        for (size_t i = 0; i < n_memory; i++)
                if (sizes[i] == 0 || sizes[i] > INT64_MAX)
                        return -EINVAL;

        r = alloc_options_load(opts, &o);
        if (r < 0)
                return r;
        /* The lease is the one this call makes; interactive is a property of the one check. */
        if (o.lease || o.flags != 0)
                return -EINVAL;

        r = device_address_resolve(&address);
        if (r < 0)
                return r;

        list = json_array();
        parameters = json_pack("{s:s, s:o}", "device", address, "memory", list);
        if (!parameters)
                return -ENOMEM;
        for (size_t i = 0; i < n_memory; i++) {
                json_t *item = json_pack("{s:I}", "size", (json_int_t) sizes[i]);

                if (!item || json_array_append_new(list, item) < 0 ||
                    (o.hugepage_size > 0 &&
                     json_object_set_new(item, "hugepageSize", json_integer((json_int_t) o.hugepage_size)) < 0) ||
                    (o.numa_node >= 0 &&
                     json_object_set_new(item, "numaNode", json_integer(o.numa_node)) < 0))
                        return -ENOMEM;
        }
        if ((flags & NOIOMMU_ACQUIRE_INTERACTIVE) &&
            json_object_set_new(parameters, "interactive", json_true()) < 0)
                return -ENOMEM;

        r = conn_transact(c, NOIOMMU_METHOD_ACQUIRE_DEVICE, parameters, &reply, &fds);
        if (r < 0)
                return r;

        r = lease_from_reply(reply, &fds, 1 + n_memory, address, &l);
        if (r >= 0)
                r = acquire_memory_from_reply(reply, &fds, sizes, n_memory, &o, m);
        for (size_t i = 0; r >= 0 && i < n_memory; i++)
                r = memory_map(m[i]);
        if (r < 0) {
                const char *id = json_string_value(json_object_get(reply, "lease"));

                for (size_t i = 0; i < n_memory; i++)
                        m[i] = noiommu_memory_unref(m[i]);
                l = noiommu_lease_unref(l);     /* our device fd first, as in noiommu_release_device() */
                /* As in noiommu_acquire_device(): only a local failure (ENOMEM, or mmap()) is
                 * released politely; ReleaseDevice takes the memory mapped for the lease with it
                 * (quiesce first). A reply we cannot trust ends the connection, and with it
                 * everything it granted. */
                if (r == -EBADMSG || r == -EXFULL || !noiommu_id_is_valid(id) ||
                    conn_release_lease_id(c, id) < 0)
                        conn_drop(c);
                conn_clear_error(c);
                return r;
        }

        *ret_lease = TAKE_PTR(l);
        for (size_t i = 0; i < n_memory; i++)
                ret_memory[i] = m[i];
        return 0;
}

_public_ int noiommu_release_device(noiommu_conn *c, noiommu_lease *l) {
        int r;

        conn_begin_call(c);
        if (!l)
                return 0;

        /* Our copy goes first: a cdev stays bound while any copy of its fd is open, and the
         * next holder's bind would then fail. */
        l->fd = safe_close(l->fd);
        r = c ? conn_release_lease_id(c, l->id) : -EINVAL;
        (void) noiommu_lease_unref(l);
        return r;
}

_public_ noiommu_lease *noiommu_lease_unref(noiommu_lease *l) {
        if (!l)
                return NULL;

        l->fd = safe_close(l->fd);
        json_decref(l->reply);
        free(l);
        return NULL;
}

_public_ const char *noiommu_lease_get_id(const noiommu_lease *l) {
        return l ? l->id : NULL;
}

_public_ int noiommu_lease_get_fd(const noiommu_lease *l) {
        return l ? l->fd : -EINVAL;
}

_public_ const char *noiommu_lease_get_address(const noiommu_lease *l) {
        return l ? l->device.address : NULL;
}

_public_ const char *noiommu_lease_get_backend(const noiommu_lease *l) {
        return l ? l->device.backend : NULL;
}

_public_ int noiommu_lease_get_vendor_id(const noiommu_lease *l) {
        return l ? (int) l->device.vendor_id : -EINVAL;
}

_public_ int noiommu_lease_get_device_id(const noiommu_lease *l) {
        return l ? (int) l->device.device_id : -EINVAL;
}

_public_ const char *noiommu_lease_get_driver(const noiommu_lease *l) {
        return l ? l->device.driver : NULL;
}

_public_ int noiommu_lease_get_iommu_group(const noiommu_lease *l) {
        return l ? l->device.iommu_group : -EINVAL;
}

_public_ int noiommu_lease_get_numa_node(const noiommu_lease *l) {
        return l ? l->device.numa_node : -EINVAL;
}

_public_ int noiommu_call(noiommu_conn *c, const char *method, const char *parameters_json,
                          char **ret_reply_parameters_json, int *ret_fds, size_t max_fds,
                          size_t *ret_n_fds) {
        _cleanup_(reply_fds_done) ReplyFds fds = {};
        json_auto_t *parameters = NULL, *reply = NULL;
        _cleanup_free_ char *text = NULL;
        int r;

        conn_begin_call(c);
        if (!c || !varlink_name_is_valid(method))
                return -EINVAL;
        if (max_fds > 0 && (!ret_fds || !ret_n_fds))
                return -EINVAL;

        if (parameters_json) {
                r = json_parse_message(parameters_json, strlen(parameters_json), &parameters);
                if (r < 0)
                        return -EINVAL;
        } else {
                parameters = json_object();
                if (!parameters)
                        return -ENOMEM;
        }

        r = conn_transact(c, method, parameters, &reply, &fds);
        if (r < 0)
                return r;

        if (ret_reply_parameters_json) {
                text = json_dumps(reply, JSON_COMPACT);
                if (!text)
                        r = -ENOMEM;
        }

        /* A grant the caller cannot take (no room, or we failed to hand it over) must not stay
         * pinned on a connection that lives on: drop it. */
        if (fds.n > max_fds || (r < 0 && fds.n > 0)) {
                conn_drop(c);
                return r < 0 ? r : -EXFULL;
        }
        if (r < 0)
                return r;

        if (ret_reply_parameters_json)
                *ret_reply_parameters_json = TAKE_PTR(text);
        if (ret_n_fds) {
                if (fds.n > 0)
                        memcpy(ret_fds, fds.fds, fds.n * sizeof(int));
                *ret_n_fds = fds.n;
        }
        fds.n = 0;                              /* the caller owns them now */
        return 0;
}

_public_ int noiommu_monitor(noiommu_conn *c, unsigned flags, noiommu_monitor_cb cb, void *userdata) {
        json_auto_t *call = NULL;
        _cleanup_free_ char *text = NULL;
        int r;

        conn_begin_call(c);
        if (!c || !cb || (flags & ~NOIOMMU_MONITOR_INTERACTIVE))
                return -EINVAL;
        if (c->fd < 0)
                return -ENOTCONN;
        if (getpid() != c->pid)
                return -ECHILD;

        call = json_pack("{s:s, s:o, s:b}", "method", NOIOMMU_METHOD_MONITOR,
                         "parameters", (flags & NOIOMMU_MONITOR_INTERACTIVE)
                                       ? json_pack("{s:b}", "interactive", 1) : json_object(),
                         "more", 1);
        if (!call)
                return -ENOMEM;
        text = json_dumps(call, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        r = conn_send_all(c, text, strlen(text) + 1);
        if (r < 0) {
                conn_drop(c);
                return r;
        }

        for (;;) {
                _cleanup_(reply_fds_done) ReplyFds fds = {};
                json_auto_t *reply = NULL;
                _cleanup_free_ char *event = NULL;
                json_t *params, *error;
                bool continues;
                size_t len;

                r = conn_receive(c, &len, &fds);
                if (r < 0) {
                        conn_drop(c);
                        return r;
                }
                r = json_parse_message(c->in.data, len, &reply);
                wire_buffer_consume(&c->in, len + 1);
                if (r < 0 || fds.n > 0) {
                        /* Monitor replies never carry fds. */
                        conn_drop(c);
                        return r < 0 ? r : -EPROTO;
                }

                error = json_object_get(reply, "error");
                params = json_object_get(reply, "parameters");
                if (error) {
                        if (!json_is_string(error)) {
                                conn_drop(c);
                                return -EBADMSG;
                        }
                        c->error_name = strdup(json_string_value(error));
                        c->error_parameters = params ? json_dumps(params, JSON_COMPACT) : strdup("{}");
                        if (!c->error_name || !c->error_parameters)
                                conn_clear_error(c);
                        return varlink_error_to_errno(json_string_value(error));
                }
                if (!json_is_object(params)) {
                        conn_drop(c);
                        return -EBADMSG;
                }
                continues = json_is_true(json_object_get(reply, "continues"));

                event = json_dumps(params, JSON_COMPACT);
                if (!event)
                        return -ENOMEM;
                r = cb(event, userdata);
                if (r != 0)
                        return r;
                if (!continues)
                        return 0;
        }
}

/*
 * noiommu_from_environment(): the receiving end of "noiommuctl run" (the protocol is described
 * in noiommu.h and docs/libnoiommu.md). The environment is input from whoever started us, so it
 * is parsed as strictly as a reply from the daemon: every value has exactly one spelling, and
 * the objects are then built by the very functions that check replies (lease_from_reply(),
 * memory_from_reply()), from JSON made out of the variables, so an adopted object has passed the
 * same checks as one received from the daemon.
 */

/* Variables of the lease, after NOIOMMU_ENV_DEVICE_PREFIX. */
static const char *const env_device_fields[] = {
        "ADDRESS", "BACKEND", "VENDOR_ID", "DEVICE_ID", "DRIVER", "IOMMU_GROUP", "NUMA_NODE",
};

/* Variables of memory <i>, after NOIOMMU_ENV_MEMORY_PREFIX "<i>_". */
static const char *const env_memory_fields[] = {
        "ID", "SIZE", "HUGEPAGE_SIZE", "NUMA_NODE", "ADDRESS_KIND", "SEGMENTS",
};

/* "0x" and 1 to 16 lower-case hex digits, without leading zeros. */
static int env_parse_hex(const char *s, size_t n, uint64_t *ret) {
        uint64_t v = 0;

        if (n < 3 || n > 18 || s[0] != '0' || s[1] != 'x' || (s[2] == '0' && n > 3))
                return -EBADMSG;
        for (size_t i = 2; i < n; i++) {
                char ch = s[i];

                if (ch >= '0' && ch <= '9')
                        v = v << 4 | (uint64_t) (ch - '0');
                else if (ch >= 'a' && ch <= 'f')
                        v = v << 4 | (uint64_t) (ch - 'a' + 10);
                else
                        return -EBADMSG;
        }
        if (v > INT64_MAX)
                return -EBADMSG;                /* does not fit a JSON integer */
        *ret = v;
        return 0;
}

/* Decimal, without sign or leading zeros, "-1" allowed when allow_minus_one. */
static int env_parse_int(const char *s, bool allow_minus_one, int64_t max, int64_t *ret) {
        int64_t v = 0;
        size_t n = strlen(s);

        if (allow_minus_one && streq(s, "-1")) {
                *ret = -1;
                return 0;
        }
        if (n == 0 || n > 19 || (s[0] == '0' && n > 1))
                return -EBADMSG;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EBADMSG;
                if (v > (max - (s[i] - '0')) / 10)
                        return -EBADMSG;
                v = v * 10 + (s[i] - '0');
        }
        *ret = v;
        return 0;
}

static const char *env_get(const char *name) {
        return secure_getenv(name);
}

static const char *env_get_field(const char *prefix, int index, const char *field, char *buf,
                                 size_t size) {
        if (index >= 0)
                (void) snprintf(buf, size, "%s%i_%s", prefix, index, field);
        else
                (void) snprintf(buf, size, "%s%s", prefix, field);
        return env_get(buf);
}

/* Every NOIOMMU_MEMORY_<i>_<FIELD> must name a memory that was passed and a field we know: a
 * variable we would ignore is a producer we do not understand. */
static int env_check_memory_variables(size_t n_memory) {
        size_t p = strlen(NOIOMMU_ENV_MEMORY_PREFIX);

        for (char **e = environ; e && *e; e++) {
                const char *s = *e, *eq = strchr(s, '=');
                size_t i = 0, digits = 0;
                bool known = false;

                if (!eq || strncmp(s, NOIOMMU_ENV_MEMORY_PREFIX, p) != 0)
                        continue;
                s += p;
                while (s[digits] >= '0' && s[digits] <= '9' && digits < 4)
                        i = i * 10 + (size_t) (s[digits++] - '0');
                if (digits == 0 || (s[0] == '0' && digits > 1) || s[digits] != '_' || i >= n_memory)
                        return -EBADMSG;
                s += digits + 1;
                for (size_t f = 0; f < ELEMENTSOF(env_memory_fields); f++)
                        if (strlen(env_memory_fields[f]) == (size_t) (eq - s) &&
                            strncmp(s, env_memory_fields[f], (size_t) (eq - s)) == 0)
                                known = true;
                if (!known)
                        return -EBADMSG;
        }
        return 0;
}

/* The AcquireDevice reply the variables describe, with the device fd at index 0. */
static int env_lease_reply(json_t **ret) {
        const char *v[ELEMENTSOF(env_device_fields)], *lease;
        json_auto_t *reply = NULL;
        json_t *group;
        int64_t g, numa;
        char name[64];

        lease = env_get(NOIOMMU_ENV_LEASE);
        if (!lease)
                return -EBADMSG;
        for (size_t i = 0; i < ELEMENTSOF(env_device_fields); i++) {
                v[i] = env_get_field(NOIOMMU_ENV_DEVICE_PREFIX, -1, env_device_fields[i], name,
                                     sizeof(name));
                if (!v[i])
                        return -EBADMSG;
        }
        if (env_parse_int(v[5], /* allow_minus_one= */ true, INT32_MAX, &g) < 0 ||
            env_parse_int(v[6], /* allow_minus_one= */ true, INT32_MAX, &numa) < 0)
                return -EBADMSG;

        group = g >= 0 ? json_integer((json_int_t) g) : json_null();
        reply = json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:s}, s:i}",
                          "lease", lease,
                          "device",
                          "address", v[0],
                          "backend", v[1],
                          "vendorId", v[2],
                          "deviceId", v[3],
                          "driver", v[4],
                          "iommuGroup", group,
                          "numaNode", (json_int_t) numa,
                          "state", "available",
                          "fd", 0);
        if (!reply)
                return -ENOMEM;
        *ret = TAKE_PTR(reply);
        return 0;
}

/* The AllocateMemory reply the variables of memory i describe, with the memfd at index 0. */
static int env_memory_reply(int i, json_t **ret) {
        const char *v[ELEMENTSOF(env_memory_fields)], *p;
        json_auto_t *reply = NULL, *segments = NULL;
        uint64_t size, hugepage_size;
        int64_t numa;
        char name[64];

        for (size_t f = 0; f < ELEMENTSOF(env_memory_fields); f++) {
                v[f] = env_get_field(NOIOMMU_ENV_MEMORY_PREFIX, i, env_memory_fields[f], name,
                                     sizeof(name));
                if (!v[f])
                        return -EBADMSG;
        }
        if (env_parse_hex(v[1], strlen(v[1]), &size) < 0 ||
            env_parse_hex(v[2], strlen(v[2]), &hugepage_size) < 0 ||
            env_parse_int(v[3], /* allow_minus_one= */ true, INT32_MAX, &numa) < 0)
                return -EBADMSG;

        segments = json_array();
        if (!segments)
                return -ENOMEM;
        /* "OFFSET:LENGTH:DMA,OFFSET:LENGTH:DMA": exactly three numbers per segment, nothing
         * empty, no trailing separator. */
        p = v[5];
        for (;;) {
                uint64_t x[3];

                for (size_t k = 0; k < 3; k++) {
                        size_t n = strcspn(p, k < 2 ? ":" : ",");

                        if (env_parse_hex(p, n, &x[k]) < 0)
                                return -EBADMSG;
                        p += n;
                        if (k < 2) {
                                if (*p != ':')
                                        return -EBADMSG;
                                p++;
                        }
                }
                if (json_array_append_new(segments, json_pack("{s:I, s:I, s:I}",
                                                              "offset", (json_int_t) x[0],
                                                              "length", (json_int_t) x[1],
                                                              "dmaAddress", (json_int_t) x[2])) < 0)
                        return -ENOMEM;
                if (*p == 0)
                        break;
                if (*p != ',' || json_array_size(segments) >= NOIOMMU_REPLY_SIZE_MAX / 16)
                        return -EBADMSG;
                p++;
        }

        reply = json_pack("{s:s, s:I, s:I, s:I, s:s, s:O, s:i}",
                          "memory", v[0],
                          "size", (json_int_t) size,
                          "hugepageSize", (json_int_t) hugepage_size,
                          "numaNode", (json_int_t) numa,
                          "addressKind", v[4],
                          "segments", segments,
                          "fd", 0);
        if (!reply)
                return -ENOMEM;
        *ret = TAKE_PTR(reply);
        return 0;
}

/* An O_CLOEXEC duplicate of inherited fd; the original stays untouched until we succeed. */
static int env_dup_fd(int fd, int *ret) {
        int copy;

        if (fcntl(fd, F_GETFD) < 0)
                return -EBADF;
        copy = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return negative_errno();
        *ret = copy;
        return 0;
}

/* The connection must be a connected AF_UNIX stream socket, like the one noiommu_connect()
 * makes. Whether the peer is noiommud cannot be told from here; calls on it will show. */
static int env_check_connection(int fd) {
        struct sockaddr_un sa;
        socklen_t l = sizeof(int), sl = sizeof(sa);
        struct stat st;
        int v;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISSOCK(st.st_mode))
                return -ENOTSOCK;
        if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l) < 0 || v != AF_UNIX)
                return -EBADMSG;
        l = sizeof(int);
        if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) < 0 || v != SOCK_STREAM)
                return -EBADMSG;
        if (getpeername(fd, (struct sockaddr *) &sa, &sl) < 0)
                return -EBADMSG;                /* listening or unconnected */
        return 0;
}

typedef struct EnvAdopted {
        noiommu_conn *conn;
        noiommu_lease *lease;
        noiommu_memory **memory;
        size_t n_memory;
        int copies[2 + NOIOMMU_RUN_MEMORY_MAX];         /* dups not yet owned by an object */
        size_t n_copies;
} EnvAdopted;

static void env_adopted_done(EnvAdopted *a) {
        for (size_t i = 0; i < a->n_memory; i++)
                a->memory[i] = noiommu_memory_unref(a->memory[i]);
        free(a->memory);
        a->lease = noiommu_lease_unref(a->lease);
        /* Only on failure is the connection still here. Close our copy without shutdown(): the
         * inherited original stays as it was, and with it the lease. */
        if (a->conn)
                a->conn->pid = 0;
        a->conn = noiommu_disconnect(a->conn);
        close_many(a->copies, a->n_copies);
        a->n_copies = 0;
}

static int env_adopt(EnvAdopted *a, int *ret_n_fds) {
        _cleanup_free_ char *names = NULL;
        const char *pid_s, *fds_s, *names_s;
        int64_t pid, n_fds;
        size_t n_memory = 0;
        bool device = false;
        char *save = NULL;
        int i = 0, r;

        pid_s = env_get(NOIOMMU_ENV_PID);
        fds_s = env_get(NOIOMMU_ENV_FDS);
        names_s = env_get(NOIOMMU_ENV_FD_NAMES);
        if (!pid_s)
                return 0;
        if (env_parse_int(pid_s, /* allow_minus_one= */ false, INT32_MAX, &pid) < 0 || pid == 0)
                return -EBADMSG;
        if ((pid_t) pid != getpid())
                return -ESRCH;          /* passed to a parent of ours: a fork in between */
        if (!fds_s || !names_s ||
            env_parse_int(fds_s, /* allow_minus_one= */ false, 2 + NOIOMMU_RUN_MEMORY_MAX,
                          &n_fds) < 0 || n_fds < 1)
                return -EBADMSG;

        /* Names: "connection", then optionally "device", then "memory-0", "memory-1", ... */
        names = strdup(names_s);
        if (!names)
                return -ENOMEM;
        for (char *w = strtok_r(names, ":", &save); w; w = strtok_r(NULL, ":", &save), i++) {
                char expect[32];

                if (i >= n_fds)
                        return -EBADMSG;
                if (i == 0) {
                        if (!streq(w, "connection"))
                                return -EBADMSG;
                        continue;
                }
                if (i == 1 && streq(w, "device")) {
                        device = true;
                        continue;
                }
                (void) snprintf(expect, sizeof(expect), "memory-%zu", n_memory);
                if (!streq(w, expect))
                        return -EBADMSG;
                n_memory++;
        }
        /* strtok_r() skips empty fields; the producer writes none. */
        if (i != n_fds || names_s[0] == ':' || names_s[strlen(names_s) - 1] == ':' ||
            strstr(names_s, "::"))
                return -EBADMSG;

        if (!device && (env_get(NOIOMMU_ENV_LEASE) || env_get(NOIOMMU_ENV_DEVICE_PREFIX "ADDRESS")))
                return -EBADMSG;
        r = env_check_memory_variables(n_memory);
        if (r < 0)
                return r;

        /* The variables are consistent; now the fds. */
        for (int k = 0; k < n_fds; k++) {
                r = env_dup_fd(NOIOMMU_RUN_FDS_START + k, &a->copies[a->n_copies]);
                if (r < 0)
                        return r;
                a->n_copies++;
        }

        r = env_check_connection(a->copies[0]);
        if (r < 0)
                return r;
        a->conn = new0(noiommu_conn, 1);
        if (!a->conn)
                return -ENOMEM;
        a->conn->pid = getpid();
        wire_buffer_init(&a->conn->in, NOIOMMU_REPLY_SIZE_MAX);
        a->conn->fd = TAKE_FD(a->copies[0]);

        if (device) {
                _cleanup_(reply_fds_done) ReplyFds fds = {};
                json_auto_t *reply = NULL;
                const char *address;

                r = env_lease_reply(&reply);
                if (r < 0)
                        return r;
                address = json_string_value(json_object_get(json_object_get(reply, "device"),
                                                            "address"));
                if (!address || !pci_address_is_valid(address))
                        return -EBADMSG;
                fds.fds[0] = TAKE_FD(a->copies[1]);
                fds.n = 1;
                r = lease_from_reply(reply, &fds, 1, address, &a->lease);
                if (r < 0)
                        return r;
        }

        if (n_memory > 0) {
                a->memory = new0(noiommu_memory *, n_memory);
                if (!a->memory)
                        return -ENOMEM;
        }
        for (size_t k = 0; k < n_memory; k++) {
                _cleanup_(reply_fds_done) ReplyFds fds = {};
                json_auto_t *reply = NULL;
                noiommu_alloc_options o;
                json_int_t size;

                r = env_memory_reply((int) k, &reply);
                if (r < 0)
                        return r;
                size = json_integer_value(json_object_get(reply, "size"));
                if (size <= 0)
                        return -EBADMSG;
                fds.fds[0] = TAKE_FD(a->copies[1 + (device ? 1 : 0) + k]);
                fds.n = 1;
                noiommu_alloc_options_init(&o);
                r = memory_from_reply(reply, &fds, 1, (uint64_t) size, &o, &a->memory[k]);
                if (r < 0)
                        return r;
                a->n_memory++;
                r = memory_map(a->memory[k]);
                if (r < 0)
                        return r;
        }

        *ret_n_fds = (int) n_fds;
        return 1;
}

_public_ int noiommu_from_environment(noiommu_conn **ret_conn, noiommu_lease **ret_lease,
                                      noiommu_memory ***ret_memory, size_t *ret_n_memory) {
        _cleanup_(env_adopted_done) EnvAdopted a = {};
        int n_fds = 0, r;

        if (!ret_conn || (ret_memory && !ret_n_memory))
                return -EINVAL;

        r = env_adopt(&a, &n_fds);
        run_env_unset_all();
        if (r < 0)
                return r;
        if (r == 0) {
                *ret_conn = NULL;
                if (ret_lease)
                        *ret_lease = NULL;
                if (ret_memory)
                        *ret_memory = NULL;
                if (ret_n_memory)
                        *ret_n_memory = 0;
                return 0;
        }

        /* Adopted: the inherited originals go, so that nothing we exec later holds the lease
         * without knowing it. Our O_CLOEXEC duplicates in the objects stay. */
        for (int k = 0; k < n_fds; k++)
                (void) close(NOIOMMU_RUN_FDS_START + k);

        *ret_conn = TAKE_PTR(a.conn);
        if (ret_lease)
                *ret_lease = TAKE_PTR(a.lease);
        if (ret_memory) {
                *ret_memory = TAKE_PTR(a.memory);
                *ret_n_memory = a.n_memory;
                a.n_memory = 0;
        }
        return 1;
}
