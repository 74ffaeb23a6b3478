/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See linux-audit.h. Built when libaudit is found.
 *
 * libaudit opens the socket and encodes values; the record itself is sent here, because
 * audit_log_user_message() costs seven syscalls where two do (measured with strace on the
 * daemon under tests/integration, libaudit 3.0.9): it probes fds 0-2 for a terminal (three
 * TCGETS ioctls, for "terminal=", which names the daemon's own stdin, never the client), and
 * its check_ack() (lib/netlink.c) waits for the kernel's answer with poll() for up to 500 ms,
 * 80 times over, then reads it twice (MSG_PEEK, then for real).
 *
 * That wait is for nothing: the kernel answers before sendmsg() returns. A message to the
 * kernel's NETLINK_AUDIT socket goes netlink_sendmsg() -> netlink_unicast() ->
 * netlink_unicast_kernel(), which calls the kernel socket's input function, audit_receive()
 * (kernel/audit.c), in the sender's own context; audit_receive() runs audit_receive_msg() and
 * then netlink_ack(), which queues the NLMSG_ERROR answer on the sender's socket
 * (nlmsg_unicast(), net/netlink/af_netlink.c), all before the send returns (read in Linux
 * 6.12: net/netlink/af_netlink.c netlink_unicast_kernel(), kernel/audit.c audit_receive()).
 * If the answer could not be queued (no memory, receive buffer full), netlink_ack()
 * and netlink_overrun() set ENOBUFS on the socket instead, which the next recv() returns. So
 * one recv(MSG_DONTWAIT) right after the send reads the verdict, and EAGAIN there means
 * something this reasoning did not foresee: it is reported as EIO, a failure, so that
 * "auditFailure": "deny" still holds.
 *
 * The text is exactly what audit_log_user_message(fd, type, msg, NULL, NULL, "", result) sends
 * (lib/audit_logging.c, 3.0.9): "<msg> exe=<exe> hostname=? addr=? terminal=? res=success".
 * exe is read once, when the socket opens, as libaudit caches it (static exename) too.
 */
#include <errno.h>
#include <libaudit.h>
#include <limits.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal/macro.h"
#include "linux-audit.h"

static int audit_fd = -EBADF;
static uint32_t audit_seq;
/* exe="/usr/libexec/noiommud", or the path hex-encoded when it needs it (as libaudit does) */
static char exe_field[2 * PATH_MAX + 8];

static const int type_table[_LINUX_AUDIT_TYPE_MAX] = {
        [LINUX_AUDIT_USER_ACCT] = AUDIT_USER_ACCT,
        [LINUX_AUDIT_DEV_ALLOC] = AUDIT_DEV_ALLOC,
        [LINUX_AUDIT_DEV_DEALLOC] = AUDIT_DEV_DEALLOC,
};

/* libaudit's _get_exename(): the path quoted, or hex when it holds a quote, space or control
 * character (audit_value_needs_encoding()), "?" quoted when it cannot be read. */
static void exe_field_init(void) {
        char path[PATH_MAX + 1];
        ssize_t n;

        n = readlink("/proc/self/exe", path, PATH_MAX);
        if (n < 0) {
                (void) snprintf(exe_field, sizeof(exe_field), "\"?\"");
                return;
        }
        path[n] = 0;
        if (audit_value_needs_encoding(path, (unsigned) n))
                (void) audit_encode_value(exe_field, path, (unsigned) n);
        else
                (void) snprintf(exe_field, sizeof(exe_field), "\"%s\"", path);
}

int linux_audit_open(void) {
        if (audit_fd >= 0)
                return 0;
        audit_fd = audit_open();
        if (audit_fd < 0) {
                audit_fd = -EBADF;
                return negative_errno();
        }
        exe_field_init();
        return 0;
}

void linux_audit_close(void) {
        if (audit_fd >= 0)
                audit_close(audit_fd);
        audit_fd = -EBADF;
}

bool linux_audit_is_open(void) {
        return audit_fd >= 0;
}

/* The kernel's answer to message seq: its error (0 or negative errno), read without waiting. */
static int read_ack(uint32_t seq) {
        /* An error answer echoes the whole request after the header; a datagram socket drops
         * what does not fit the buffer, and only the error field is needed. */
        struct {
                struct nlmsghdr hdr;
                struct nlmsgerr err;
        } ack;

        /* Bounded: only the kernel (or a CAP_NET_ADMIN process, NETLINK_AUDIT has no
         * NL_CFG_F_NONROOT_SEND) can queue anything here, and each send is answered once. */
        for (unsigned i = 0; i < 16; i++) {
                struct sockaddr_nl from = {};
                socklen_t from_len = sizeof(from);
                ssize_t n;

                n = recvfrom(audit_fd, &ack, sizeof(ack), MSG_DONTWAIT, (struct sockaddr *) &from, &from_len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return -EIO;    /* no answer queued: see the top of this file */
                if (n < 0)
                        return negative_errno();        /* ENOBUFS: the answer was lost */
                if (from.nl_pid != 0 || (size_t) n < sizeof(ack.hdr) + sizeof(ack.err.error) ||
                    ack.hdr.nlmsg_type != NLMSG_ERROR || ack.hdr.nlmsg_seq != seq)
                        continue;       /* not the kernel's answer to this message */
                return ack.err.error <= 0 ? ack.err.error : -EIO;
        }
        return -EIO;
}

int linux_audit_log(LinuxAuditType type, const char *msg, bool success) {
        struct {
                struct nlmsghdr hdr;
                char data[MAX_AUDIT_MESSAGE_LENGTH];
        } req;
        int k;

        if (type < 0 || type >= _LINUX_AUDIT_TYPE_MAX)
                return -EINVAL;
        if (audit_fd < 0)
                return -EBADF;

        /* The hostname, address and terminal are the daemon's, not the client's: "?", as
         * libaudit writes them for a daemon without a terminal. msg names the client. */
        k = snprintf(req.data, sizeof(req.data), "%s exe=%s hostname=? addr=? terminal=? res=%s",
                     msg, exe_field, success ? "success" : "failed");
        if (k < 0 || (size_t) k >= sizeof(req.data))
                return -EINVAL;         /* libaudit refuses an oversized record too */

        if (++audit_seq == 0)
                audit_seq = 1;
        /* The NUL is sent, as libaudit does (strlen() + 1); the kernel terminates the text
         * itself anyway. NLM_F_ACK: a success is answered too, so silence is never taken
         * for one. */
        req.hdr = (struct nlmsghdr) {
                .nlmsg_len = NLMSG_LENGTH((size_t) k + 1),
                .nlmsg_type = type_table[type],
                .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK,
                .nlmsg_seq = audit_seq,
        };

        struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
        ssize_t n;

        do
                n = sendto(audit_fd, &req, req.hdr.nlmsg_len, 0, (struct sockaddr *) &kernel, sizeof(kernel));
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        if ((size_t) n != req.hdr.nlmsg_len)
                return -EIO;

        return read_ack(audit_seq);
}

char *linux_audit_encode_field(const char *name, const char *value) {
        return audit_encode_nv_string(name, value, 0);
}
