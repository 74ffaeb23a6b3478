/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libnoiommu.so against a scripted fake daemon: a child process on a UNIX socket in a temporary
 * directory that answers each request with a canned reply (with a memfd attached where the reply
 * names one). What it shows:
 *
 *   - a newer daemon's extra fields (in the reply object, its parameters, each device, each
 *     segment, the lease's device) are ignored, and the known ones are still parsed;
 *   - the known fields are still checked strictly: a wrong type or a broken segment table is
 *     -EBADMSG, even next to extra fields;
 *   - noiommu_last_error() is the Varlink error of the failed call, and NULL after a local
 *     argument error (never the previous call's error); an unknown error name is -EIO;
 *   - noiommu_acquire_device_with_memory() sends the list, takes the device fd and each memfd
 *     by the index its item names, maps the memory, and refuses (-EBADMSG, connection
 *     dropped) a reply whose memory item names the device fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal/macro.h"
#include "noiommu/noiommu.h"
#include "tests.h"

/* One step of the fake daemon's script: the method it expects next, the reply it sends, and
 * the size of a memfd to attach (0: none). */
typedef struct Step {
        const char *method;
        const char *reply;
        size_t memfd_size;
        size_t more_memfd_sizes[2];     /* further memfds in the same message (0: none) */
        const char *request_contains;   /* NULL, or text the request must contain */
} Step;

static char socket_dir[] = "/tmp/test-libnoiommu-XXXXXX";
static char socket_path[sizeof(socket_dir) + 16];

static int make_memfd(size_t size) {
        int fd = memfd_create("fake-daemon", MFD_CLOEXEC | MFD_ALLOW_SEALING);

        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(ftruncate(fd, (off_t) size), 0);
        ASSERT_EQ(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), 0);
        return fd;
}

static void send_reply(int fd, const char *reply, const int *memfds, size_t n) {
        struct iovec iov = { .iov_base = (void *) reply, .iov_len = strlen(reply) + 1 };
        union {
                struct cmsghdr h;
                char buf[CMSG_SPACE(sizeof(int) * 3)];
        } control = {};
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };

        ASSERT_TRUE(n <= 3);
        if (n > 0) {
                struct cmsghdr *c;

                mh.msg_control = control.buf;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
                c = CMSG_FIRSTHDR(&mh);
                c->cmsg_level = SOL_SOCKET;
                c->cmsg_type = SCM_RIGHTS;
                c->cmsg_len = CMSG_LEN(sizeof(int) * n);
                memcpy(CMSG_DATA(c), memfds, sizeof(int) * n);
        }
        ASSERT_EQ(sendmsg(fd, &mh, MSG_NOSIGNAL), (ssize_t) iov.iov_len);
}

/* Reads one NUL-terminated request; false at EOF. */
static bool read_request(int fd, char *buf, size_t size) {
        size_t n = 0;

        for (;;) {
                ssize_t k = read(fd, buf + n, 1);

                if (k == 0)
                        return false;
                ASSERT_TRUE(k == 1);
                if (buf[n] == 0)
                        return true;
                ASSERT_TRUE(++n < size);
        }
}

/* The fake daemon: serves one connection by the script, then expects EOF. Exits 0 only if every
 * step came with the expected method and nothing else was asked. */
static _Noreturn void serve(int listen_fd, const Step *steps, size_t n_steps) {
        char request[65536];
        int fd;

        fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        ASSERT_TRUE(fd >= 0);
        for (size_t i = 0; i < n_steps; i++) {
                char want[256];
                int memfds[3];
                size_t n = 0;

                if (!read_request(fd, request, sizeof(request))) {
                        fprintf(stderr, "fake daemon: EOF before step %zu (%s)\n", i, steps[i].method);
                        _exit(EXIT_FAILURE);
                }
                (void) snprintf(want, sizeof(want), "\"method\":\"%s\"", steps[i].method);
                if (!strstr(request, want)) {
                        fprintf(stderr, "fake daemon: step %zu expected %s, got %s\n", i,
                                steps[i].method, request);
                        _exit(EXIT_FAILURE);
                }
                if (steps[i].request_contains && !strstr(request, steps[i].request_contains)) {
                        fprintf(stderr, "fake daemon: step %zu: %s not in %s\n", i,
                                steps[i].request_contains, request);
                        _exit(EXIT_FAILURE);
                }
                if (steps[i].memfd_size > 0)
                        memfds[n++] = make_memfd(steps[i].memfd_size);
                for (size_t k = 0; k < ELEMENTSOF(steps[i].more_memfd_sizes); k++)
                        if (steps[i].more_memfd_sizes[k] > 0)
                                memfds[n++] = make_memfd(steps[i].more_memfd_sizes[k]);
                send_reply(fd, steps[i].reply, memfds, n);
                close_many(memfds, n);
        }
        if (read_request(fd, request, sizeof(request))) {
                fprintf(stderr, "fake daemon: unexpected request %s\n", request);
                _exit(EXIT_FAILURE);
        }
        _exit(EXIT_SUCCESS);
}

/* Starts the fake daemon with the script and connects to it. */
static noiommu_conn *fake_daemon(const Step *steps, size_t n_steps, pid_t *ret_pid) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        noiommu_conn *c = NULL;
        int listen_fd;
        pid_t pid;

        (void) unlink(socket_path);
        listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        ASSERT_TRUE(listen_fd >= 0);
        strcpy(sa.sun_path, socket_path);
        ASSERT_EQ(bind(listen_fd, (struct sockaddr *) &sa, sizeof(sa)), 0);
        ASSERT_EQ(listen(listen_fd, 1), 0);

        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0)
                serve(listen_fd, steps, n_steps);
        close(listen_fd);

        ASSERT_OK(noiommu_connect(socket_path, &c));
        *ret_pid = pid;
        return c;
}

static void fake_daemon_done(noiommu_conn *c, pid_t pid) {
        int status;

        (void) noiommu_disconnect(c);
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
}

#define DEVICE_NEW \
        "{\"address\":\"0000:01:00.0\",\"vendorId\":\"8086\",\"deviceId\":\"1234\"," \
        "\"driver\":\"vfio-pci\",\"backend\":\"cdev-noiommu\",\"iommuGroup\":7,\"numaNode\":0," \
        "\"state\":\"available\",\"reason\":null,\"powerState\":\"D0\",\"x-future\":{\"a\":[1,2]}}"

static void test_list_devices_extra_fields(void) {
        static const Step steps[] = {
                { "io.noiommud.Broker.ListDevices",
                  "{\"parameters\":{\"devices\":[" DEVICE_NEW "],\"generation\":42},"
                  "\"io.noiommud.trace\":{\"id\":\"x\"}}", 0 },
        };
        noiommu_device_list *l = NULL;
        noiommu_conn *c;
        pid_t pid;

        c = fake_daemon(steps, ELEMENTSOF(steps), &pid);
        ASSERT_OK(noiommu_list_devices(c, &l));
        ASSERT_EQ(noiommu_device_list_get_count(l), 1);
        ASSERT_STREQ(noiommu_device_list_get_address(l, 0), "0000:01:00.0");
        ASSERT_EQ(noiommu_device_list_get_vendor_id(l, 0), 0x8086);
        ASSERT_EQ(noiommu_device_list_get_device_id(l, 0), 0x1234);
        ASSERT_STREQ(noiommu_device_list_get_backend(l, 0), "cdev-noiommu");
        ASSERT_EQ(noiommu_device_list_get_iommu_group(l, 0), 7);
        ASSERT_TRUE(noiommu_last_error(c) == NULL);
        l = noiommu_device_list_free(l);
        fake_daemon_done(c, pid);
}

static void test_list_devices_known_field_wrong_type(void) {
        /* Extra fields do not buy leniency for the known ones: vendorId must be a string. */
        static const Step steps[] = {
                { "io.noiommud.Broker.ListDevices",
                  "{\"parameters\":{\"devices\":[{\"address\":\"0000:01:00.0\",\"vendorId\":32902,"
                  "\"deviceId\":\"1234\",\"driver\":\"vfio-pci\",\"numaNode\":0,"
                  "\"state\":\"available\",\"extra\":1}]}}", 0 },
        };
        noiommu_device_list *l = NULL;
        noiommu_conn *c;
        pid_t pid;

        c = fake_daemon(steps, ELEMENTSOF(steps), &pid);
        ASSERT_ERROR(noiommu_list_devices(c, &l), EBADMSG);
        ASSERT_TRUE(l == NULL);
        fake_daemon_done(c, pid);
}

#define MEMORY_ID "0123456789abcdef0123456789abcdef"

static void test_allocate_extra_fields(void) {
        static const Step steps[] = {
                { "io.noiommud.Broker.AllocateMemory",
                  "{\"parameters\":{\"memory\":\"" MEMORY_ID "\",\"size\":8192,"
                  "\"hugepageSize\":4096,\"numaNode\":-1,\"addressKind\":\"physical\","
                  "\"segments\":[{\"offset\":0,\"length\":4096,\"dmaAddress\":1048576,\"node\":0},"
                  "{\"offset\":4096,\"length\":4096,\"dmaAddress\":8388608,\"cached\":true}],"
                  "\"fd\":0,\"expires\":null,\"pinnedBy\":\"io_uring\"},\"continues\":false,"
                  "\"org.example.debug\":{}}", 8192 },
                { "io.noiommud.Broker.FreeMemory", "{\"parameters\":{\"freedBytes\":8192}}", 0 },
        };
        const noiommu_segment *seg;
        noiommu_memory *m = NULL;
        noiommu_conn *c;
        size_t n = 0;
        pid_t pid;

        c = fake_daemon(steps, ELEMENTSOF(steps), &pid);
        ASSERT_OK(noiommu_allocate(c, 8192, NULL, &m));
        ASSERT_STREQ(noiommu_memory_get_id(m), MEMORY_ID);
        ASSERT_EQ(noiommu_memory_get_size(m), 8192);
        seg = noiommu_memory_get_segments(m, &n);
        ASSERT_EQ(n, 2);
        ASSERT_EQ(seg[1].offset, 4096);
        ASSERT_EQ(seg[1].dma_address, 8388608);
        /* the mapping is the memfd's */
        ((volatile char *) noiommu_memory_get_address(m))[8191] = 1;
        ASSERT_OK(noiommu_free(c, m));
        fake_daemon_done(c, pid);
}

static void test_allocate_invariants_still_checked(void) {
        /* A gap in the segment table, next to an extra field: still refused, and the
         * connection dropped (the daemon cannot be trusted to know what it granted). */
        static const Step steps[] = {
                { "io.noiommud.Broker.AllocateMemory",
                  "{\"parameters\":{\"memory\":\"" MEMORY_ID "\",\"size\":8192,"
                  "\"hugepageSize\":4096,\"numaNode\":-1,\"addressKind\":\"physical\","
                  "\"segments\":[{\"offset\":0,\"length\":4096,\"dmaAddress\":1048576},"
                  "{\"offset\":4608,\"length\":3584,\"dmaAddress\":8388608}],"
                  "\"fd\":0,\"future\":1}}", 8192 },
        };
        noiommu_memory *m = NULL;
        noiommu_conn *c;
        pid_t pid;

        c = fake_daemon(steps, ELEMENTSOF(steps), &pid);
        ASSERT_ERROR(noiommu_allocate(c, 8192, NULL, &m), EBADMSG);
        ASSERT_TRUE(m == NULL);
        ASSERT_ERROR(noiommu_list_devices(c, &(noiommu_device_list *) { NULL }), ENOTCONN);
        fake_daemon_done(c, pid);
}

static void test_acquire_extra_fields(void) {
        static const Step steps[] = {
                { "io.noiommud.Broker.AcquireDevice",
                  "{\"parameters\":{\"lease\":\"" MEMORY_ID "\",\"device\":" DEVICE_NEW ","
                  "\"fd\":0,\"leaseTimeout\":0}}", 4096 },
        };
        noiommu_lease *l = NULL;
        noiommu_conn *c;
        pid_t pid;

        c = fake_daemon(steps, ELEMENTSOF(steps), &pid);
        ASSERT_OK(noiommu_acquire_device(c, "0000:01:00.0", 0, &l));
        ASSERT_STREQ(noiommu_lease_get_id(l), MEMORY_ID);
        ASSERT_STREQ(noiommu_lease_get_backend(l), "cdev-noiommu");
        ASSERT_TRUE(noiommu_lease_get_fd(l) >= 0);
        l = noiommu_lease_unref(l);
        fake_daemon_done(c, pid);
}

#define MEMORY_ID_2 "fedcba9876543210fedcba9876543210"
#define SEGMENT_4K(dma) "{\"offset\":0,\"length\":4096,\"dmaAddress\":" #dma "}"

static void test_acquire_with_memory(void) {
        static const Step steps[] = {
                { "io.noiommud.Broker.AcquireDevice",
                  "{\"parameters\":{\"lease\":\"" MEMORY_ID "\",\"device\":" DEVICE_NEW ",\"fd\":0,"
                  "\"memory\":["
                  "{\"memory\":\"" MEMORY_ID "\",\"size\":8192,\"hugepageSize\":4096,\"numaNode\":-1,"
                  "\"addressKind\":\"physical\",\"segments\":[{\"offset\":0,\"length\":8192,"
                  "\"dmaAddress\":1048576}],\"fd\":1},"
                  "{\"memory\":\"" MEMORY_ID_2 "\",\"size\":4096,\"hugepageSize\":4096,\"numaNode\":-1,"
                  "\"addressKind\":\"physical\",\"segments\":[" SEGMENT_4K(2097152) "],\"fd\":2}]}}",
                  4096, { 8192, 4096 },
                  "\"memory\":[{\"size\":5000,\"hugepageSize\":4096},{\"size\":4096,\"hugepageSize\":4096}]" },
        };
        const uint64_t sizes[] = { 5000, 4096 };
        noiommu_memory *m[2] = {};
        noiommu_alloc_options o;
        noiommu_lease *l = NULL;
        const noiommu_segment *seg;
        noiommu_conn *c;
        size_t n = 0;
        pid_t pid;

        noiommu_alloc_options_init(&o);
        o.hugepage_size = 4096;
        c = fake_daemon(steps, ELEMENTSOF(steps), &pid);
        ASSERT_OK(noiommu_acquire_device_with_memory(c, "0000:01:00.0", 0, sizes, 2, &o, &l, m));
        ASSERT_STREQ(noiommu_lease_get_id(l), MEMORY_ID);
        ASSERT_STREQ(noiommu_memory_get_id(m[0]), MEMORY_ID);
        ASSERT_STREQ(noiommu_memory_get_id(m[1]), MEMORY_ID_2);
        ASSERT_EQ(noiommu_memory_get_size(m[0]), 8192);
        ASSERT_EQ(noiommu_memory_get_size(m[1]), 4096);
        seg = noiommu_memory_get_segments(m[1], &n);
        ASSERT_EQ(n, 1);
        ASSERT_EQ(seg[0].dma_address, 2097152);
        /* three distinct fds, each what its item named: the mappings are the memfds' */
        ASSERT_TRUE(noiommu_lease_get_fd(l) != noiommu_memory_get_fd(m[0]));
        ASSERT_TRUE(noiommu_memory_get_fd(m[0]) != noiommu_memory_get_fd(m[1]));
        ((volatile char *) noiommu_memory_get_address(m[0]))[8191] = 1;
        ((volatile char *) noiommu_memory_get_address(m[1]))[4095] = 1;
        m[0] = noiommu_memory_unref(m[0]);
        m[1] = noiommu_memory_unref(m[1]);
        l = noiommu_lease_unref(l);
        fake_daemon_done(c, pid);
}

static void test_acquire_with_memory_refused(void) {
        /* The memory item names the device fd: refused, and the connection dropped. */
        static const Step steps[] = {
                { "io.noiommud.Broker.AcquireDevice",
                  "{\"parameters\":{\"lease\":\"" MEMORY_ID "\",\"device\":" DEVICE_NEW ",\"fd\":0,"
                  "\"memory\":[{\"memory\":\"" MEMORY_ID "\",\"size\":4096,\"hugepageSize\":4096,"
                  "\"numaNode\":-1,\"addressKind\":\"physical\",\"segments\":[" SEGMENT_4K(1048576) "],"
                  "\"fd\":0}]}}",
                  4096, { 4096 }, NULL },
        };
        const uint64_t sizes[] = { 4096, 4096, 4096, 4096 };
        noiommu_memory *m[4] = {};
        noiommu_alloc_options o;
        noiommu_lease *l = NULL;
        noiommu_conn *c;
        pid_t pid;

        c = fake_daemon(steps, ELEMENTSOF(steps), &pid);
        /* local argument errors first: nothing sent */
        ASSERT_ERROR(noiommu_acquire_device_with_memory(c, "0000:01:00.0", 0, sizes, 0, NULL, &l, m), EINVAL);
        ASSERT_ERROR(noiommu_acquire_device_with_memory(c, "0000:01:00.0", 0, sizes, 4, NULL, &l, m), EINVAL);
        noiommu_alloc_options_init(&o);
        o.lease = MEMORY_ID;
        ASSERT_ERROR(noiommu_acquire_device_with_memory(c, "0000:01:00.0", 0, sizes, 1, &o, &l, m), EINVAL);

        ASSERT_ERROR(noiommu_acquire_device_with_memory(c, "0000:01:00.0", 0, sizes, 1, NULL, &l, m), EBADMSG);
        ASSERT_TRUE(l == NULL && m[0] == NULL);
        ASSERT_ERROR(noiommu_list_devices(c, &(noiommu_device_list *) { NULL }), ENOTCONN);
        fake_daemon_done(c, pid);
}

static void test_last_error(void) {
        static const Step steps[] = {
                { "io.noiommud.Broker.AcquireDevice",
                  "{\"error\":\"io.noiommud.Broker.DeviceBusy\","
                  "\"parameters\":{\"device\":\"0000:01:00.0\",\"holderUid\":1000}}", 0 },
                { "io.noiommud.Broker.AcquireDevice",
                  "{\"error\":\"io.noiommud.Broker.DeviceBusy\",\"parameters\":{}}", 0 },
                { "io.noiommud.Broker.ListDevices",
                  "{\"error\":\"io.noiommud.Broker.SomethingNew\",\"parameters\":{\"x\":1}}", 0 },
                { "io.noiommud.Broker.ListDevices", "{\"parameters\":{\"devices\":[]}}", 0 },
        };
        noiommu_device_list *dl = NULL;
        noiommu_alloc_options o;
        noiommu_lease *l = NULL;
        noiommu_memory *m = NULL;
        noiommu_conn *c;
        pid_t pid;

        c = fake_daemon(steps, ELEMENTSOF(steps), &pid);

        /* the daemon's error, with its parameters, extra ones included */
        ASSERT_ERROR(noiommu_acquire_device(c, "0000:01:00.0", 0, &l), EBUSY);
        ASSERT_STREQ(noiommu_last_error(c), "io.noiommud.Broker.DeviceBusy");
        ASSERT_STREQ(noiommu_last_error_parameters(c),
                     "{\"device\":\"0000:01:00.0\",\"holderUid\":1000}");

        /* local argument errors: -EINVAL, nothing sent, and no stale error */
        ASSERT_ERROR(noiommu_acquire_device(c, "0000:01:00.0:bad", 0, &l), EINVAL);
        ASSERT_TRUE(noiommu_last_error(c) == NULL);
        ASSERT_TRUE(noiommu_last_error_parameters(c) == NULL);

        ASSERT_ERROR(noiommu_acquire_device(c, "0000:01:00.0", 0, &l), EBUSY);
        ASSERT_STREQ(noiommu_last_error(c), "io.noiommud.Broker.DeviceBusy");
        ASSERT_ERROR(noiommu_allocate(c, 0, NULL, &m), EINVAL);
        ASSERT_TRUE(noiommu_last_error(c) == NULL);

        noiommu_alloc_options_init(&o);
        o.size = 0;                             /* an options struct without its size */
        ASSERT_ERROR(noiommu_allocate(c, 4096, &o, &m), EINVAL);
        ASSERT_TRUE(noiommu_last_error(c) == NULL);
        ASSERT_ERROR(noiommu_call(c, "not a method", NULL, NULL, NULL, 0, NULL), EINVAL);
        ASSERT_TRUE(noiommu_last_error(c) == NULL);
        ASSERT_ERROR(noiommu_list_devices(c, NULL), EINVAL);
        ASSERT_TRUE(noiommu_last_error(c) == NULL);

        /* an error name this library does not know: -EIO, and the name is kept */
        ASSERT_ERROR(noiommu_list_devices(c, &dl), EIO);
        ASSERT_STREQ(noiommu_last_error(c), "io.noiommud.Broker.SomethingNew");
        ASSERT_ERROR(noiommu_monitor(c, 0, NULL, NULL), EINVAL);
        ASSERT_TRUE(noiommu_last_error(c) == NULL);

        /* success clears it too */
        ASSERT_OK(noiommu_list_devices(c, &dl));
        ASSERT_TRUE(noiommu_last_error(c) == NULL);
        dl = noiommu_device_list_free(dl);

        fake_daemon_done(c, pid);
}

int main(void) {
        ASSERT_TRUE(mkdtemp(socket_dir) != NULL);
        (void) snprintf(socket_path, sizeof(socket_path), "%s/sock", socket_dir);

        TEST(test_list_devices_extra_fields);
        TEST(test_list_devices_known_field_wrong_type);
        TEST(test_allocate_extra_fields);
        TEST(test_allocate_invariants_still_checked);
        TEST(test_acquire_extra_fields);
        TEST(test_acquire_with_memory);
        TEST(test_acquire_with_memory_refused);
        TEST(test_last_error);

        (void) unlink(socket_path);
        (void) rmdir(socket_dir);
        return EXIT_SUCCESS;
}
