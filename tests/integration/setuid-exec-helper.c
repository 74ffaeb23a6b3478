/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * setuid-exec-helper: the client side of security.md §10 row 5, "setuid exec after connect"
 * (the CVE-2013-4288 pattern), for tests/integration/test-identity-attacks.py.
 *
 * The test starts this program as an unprivileged uid (setpriv --reuid) in "connect" mode. It
 * connects to the daemon's socket *without* SOCK_CLOEXEC and then execve()s a copy of itself
 * that the test made setuid root, passing the socket's fd number. The setuid copy ("request"
 * mode) makes itself fully root with setresuid(0, 0, 0) and sends AllocateMemory on the socket
 * it inherited. Same pid, same start time, same live process as the one that connected: only
 * its uids changed. The daemon must still decide with the uid SO_PEERCRED gave at connect time.
 *
 *   setuid-exec-helper connect SOCKET SETUID-COPY [--send-first]
 *       connect, print "connected pid=P ruid=R euid=E fd=N", then exec SETUID-COPY in
 *       request mode. With --send-first the AllocateMemory request is sent *before* the exec
 *       (print "sent"), and the exec waits for a line on stdin: the test first makes sure the
 *       CheckAuthorization call is pending in a stopped polkitd, so polkitd evaluates the
 *       subject only after it has become root (the exact 2013 race).
 *   setuid-exec-helper request FD [--already-sent]
 *       print "exec pid=P ruid=R euid=E", setresuid(0,0,0), print "root pid=P ruid=0 euid=0
 *       suid=0", send the request unless --already-sent, read one reply with recvmsg() and print
 *       "reply JSON" and "fds N cmsgs M ctrunc C" (every fd received is closed).
 *
 * The request is {"method":"io.noiommud.Broker.AllocateMemory","parameters":{"size":2097152}}.
 * Run set-id, only the request mode is available (the test's setuid copy lies in a directory
 * every uid can reach while the test runs).
 *
 * Exit status 0 when a reply was read, 2 on usage errors, 3 when setresuid() failed (the copy is
 * not setuid root: nosuid mount, no_new_privs...), 1 on any other failure. Every wait has a
 * deadline (alarm), so it never hangs a test.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define REQUEST "{\"method\":\"io.noiommud.Broker.AllocateMemory\",\"parameters\":{\"size\":2097152}}"
#define REPLY_MAX (64 * 1024)
#define FDS_MAX 253                     /* SCM_MAX_FD: room for anything the kernel could pass */

extern char **environ;

static int send_request(int fd) {
        static const char req[] = REQUEST;        /* sizeof includes the NUL terminator */
        size_t done = 0;

        while (done < sizeof(req)) {
                ssize_t n = send(fd, req + done, sizeof(req) - done, MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "send: %s\n", strerror(errno));
                        return -1;
                }
                done += (size_t) n;
        }
        return 0;
}

/* Reads up to the first NUL. Each recvmsg() has room for FDS_MAX fds, so any SCM_RIGHTS the
 * daemon attached is seen (and counted) rather than lost to MSG_CTRUNC unnoticed. */
static int read_reply(int fd) {
        static char buf[REPLY_MAX + 1];
        size_t len = 0;
        unsigned nfds = 0, ncmsgs = 0;
        int ctrunc = 0;

        while (!memchr(buf, 0, len)) {
                union {
                        struct cmsghdr align;
                        char space[CMSG_SPACE(sizeof(int) * FDS_MAX)];
                } control;
                struct iovec iov = { .iov_base = buf + len, .iov_len = REPLY_MAX - len };
                struct msghdr mh = {
                        .msg_iov = &iov, .msg_iovlen = 1,
                        .msg_control = &control, .msg_controllen = sizeof(control),
                };
                struct pollfd p = { .fd = fd, .events = POLLIN };
                ssize_t n;

                if (len >= REPLY_MAX) {
                        fprintf(stderr, "reply longer than %d bytes\n", REPLY_MAX);
                        return -1;
                }
                if (poll(&p, 1, 60 * 1000) == 0) {
                        fprintf(stderr, "no reply within 60 s\n");
                        return -1;
                }
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        fprintf(stderr, "recvmsg: %s\n", strerror(errno));
                        return -1;
                }
                if (mh.msg_flags & MSG_CTRUNC)
                        ctrunc = 1;
                for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                        ncmsgs++;
                        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
                                size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                                for (size_t i = 0; i < k; i++) {
                                        int x;
                                        memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                        close(x);
                                        nfds++;
                                }
                        }
                }
                if (n == 0) {
                        fprintf(stderr, "EOF before a complete reply (%zu bytes)\n", len);
                        return -1;
                }
                len += (size_t) n;
        }
        buf[len] = 0;
        printf("reply %s\n", buf);               /* stops at the reply's NUL terminator */
        printf("fds %u cmsgs %u ctrunc %d\n", nfds, ncmsgs, ctrunc);
        fflush(stdout);
        return 0;
}

static int do_connect(const char *path, const char *copy, int send_first) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        char fdstr[16];
        char *argv[5];
        int fd;

        if (strlen(path) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "socket path too long\n");
                return 2;
        }
        strcpy(sa.sun_path, path);
        /* No SOCK_CLOEXEC: the connection must survive the exec. */
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0) {
                fprintf(stderr, "connect %s: %s\n", path, strerror(errno));
                return 1;
        }
        printf("connected pid=%d ruid=%d euid=%d fd=%d\n", (int) getpid(), (int) getuid(),
               (int) geteuid(), fd);
        fflush(stdout);

        if (send_first) {
                char line[64];

                if (send_request(fd) < 0)
                        return 1;
                printf("sent\n");
                fflush(stdout);
                if (!fgets(line, sizeof(line), stdin)) {
                        fprintf(stderr, "stdin closed before the go-ahead to exec\n");
                        return 1;
                }
        }

        (void) snprintf(fdstr, sizeof(fdstr), "%d", fd);
        argv[0] = (char *) "setuid-exec-helper";
        argv[1] = (char *) "request";
        argv[2] = fdstr;
        argv[3] = send_first ? (char *) "--already-sent" : NULL;
        argv[4] = NULL;
        execve(copy, argv, environ);
        fprintf(stderr, "execve %s: %s\n", copy, strerror(errno));
        return 1;
}

static int do_request(const char *fdstr, int already_sent) {
        uid_t r, e, s;
        char *end;
        long fd;

        errno = 0;
        fd = strtol(fdstr, &end, 10);
        if (errno || *end || fd < 0 || fd > 1 << 20) {
                fprintf(stderr, "bad fd %s\n", fdstr);
                return 2;
        }
        printf("exec pid=%d ruid=%d euid=%d\n", (int) getpid(), (int) getuid(), (int) geteuid());
        fflush(stdout);

        if (setresuid(0, 0, 0) < 0) {
                fprintf(stderr, "setresuid(0, 0, 0): %s (is the copy setuid root, on a mount without nosuid?)\n",
                        strerror(errno));
                return 3;
        }
        if (getresuid(&r, &e, &s) < 0 || r != 0 || e != 0 || s != 0) {
                fprintf(stderr, "still not root after setresuid\n");
                return 3;
        }
        printf("root pid=%d ruid=%d euid=%d suid=%d\n", (int) getpid(), (int) r, (int) e, (int) s);
        fflush(stdout);

        if (!already_sent && send_request((int) fd) < 0)
                return 1;
        return read_reply((int) fd) < 0 ? 1 : 0;
}

int main(int argc, char *argv[]) {
        alarm(120);                             /* never hang a test run */

        /* While the test runs, the setuid-root copy sits in a directory every uid can reach.
         * Running set-id, it does nothing but the request mode (talk on an inherited fd): above
         * all it never execs a path from its command line as root. */
        if ((geteuid() != getuid() || getegid() != getgid()) &&
            !(argc >= 3 && strcmp(argv[1], "request") == 0)) {
                fprintf(stderr, "only the request mode runs set-id\n");
                return 2;
        }

        if (argc >= 4 && strcmp(argv[1], "connect") == 0)
                return do_connect(argv[2], argv[3], argc >= 5 && strcmp(argv[4], "--send-first") == 0);
        if (argc >= 3 && strcmp(argv[1], "request") == 0)
                return do_request(argv[2], argc >= 4 && strcmp(argv[3], "--already-sent") == 0);

        fprintf(stderr, "usage: %s connect SOCKET SETUID-COPY [--send-first]\n"
                        "       %s request FD [--already-sent]\n", argv[0], argv[0]);
        return 2;
}
