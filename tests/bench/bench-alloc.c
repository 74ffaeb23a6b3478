/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * bench-alloc: what one AllocateMemory costs, next to what it is made of, in one run.
 *
 *   daemon      connect -> AllocateMemory(size) through noiommud (real polkitd) -> memfd and
 *               segment table received and mapped by libnoiommu -> disconnect
 *   polkit      CheckAuthorization for the same action and subject shape, straight to polkitd
 *               from this (root) process over the same bus
 *   kernel      memfd_create(MFD_HUGETLB) + ftruncate + fallocate + close: the kernel's own
 *               preallocate-and-zero time
 *   direct      everything the daemon does to the memory, done directly by this root process:
 *               memfd, fallocate, seal, mmap, io_uring pin, pagemap, unpin, close
 *   transport   connect, a GetInfo round trip and disconnect: what any request costs before
 *               polkit or the kernel is involved
 *
 * Usage: bench-alloc SOCKET SIZE ITERATIONS
 * Prints medians and p99 in microseconds, and the ratios the design's quality bars name.
 * Run through tests/bench/run-bench.py, which sets up the bus, polkitd and the daemon.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/io_uring.h>
#include <linux/memfd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "internal/fd-util.h"
#include "internal/json-util.h"
#include "internal/macro.h"
#include "noiommu/noiommu.h"

static uint64_t now_ns(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000ULL + (uint64_t) ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;

        return x < y ? -1 : x > y;
}

typedef struct Stats {
        double p50_us;
        double p99_us;
} Stats;

static Stats stats(uint64_t *ns, size_t n) {
        qsort(ns, n, sizeof(uint64_t), cmp_u64);
        return (Stats) {
                .p50_us = (double) ns[n / 2] / 1000.0,
                .p99_us = (double) ns[MIN(n - 1, (size_t) ((double) n * 0.99))] / 1000.0,
        };
}

/* fallocate(2): "EINTR  A signal was caught during execution"; on hugetlbfs a long
 * preallocation (1 GiB: hundreds of ms of zeroing) checks for pending signals between pages and
 * gives up with EINTR. The pages it already allocated stay in the file, so calling it again for
 * the same range finishes the job. */
static int fallocate_retry(int fd, uint64_t size) {
        while (fallocate(fd, 0, 0, (off_t) size) < 0)
                if (errno != EINTR)
                        return -1;
        return 0;
}

static int bench_daemon(const char *socket_path, uint64_t size, uint64_t *ns) {
        noiommu_conn *c = NULL;
        noiommu_memory *m = NULL;
        uint64_t t0 = now_ns();
        int r;

        r = noiommu_connect(socket_path, &c);
        if (r < 0)
                return r;
        r = noiommu_allocate(c, size, NULL, &m);
        *ns = now_ns() - t0;
        if (r < 0) {
                fprintf(stderr, "AllocateMemory failed: %s (%s)\n", strerror(-r),
                        noiommu_last_error(c) ?: "-");
                noiommu_disconnect(c);
                return r;
        }
        r = noiommu_free(c, m);
        noiommu_disconnect(c);
        return r;
}

/* The transport alone: connect, a GetInfo round trip (no polkit, no memory), disconnect. */
static int bench_getinfo(const char *socket_path, uint64_t *ns) {
        noiommu_conn *c = NULL;
        uint64_t t0 = now_ns();
        int r;

        r = noiommu_connect(socket_path, &c);
        if (r < 0)
                return r;
        r = noiommu_call(c, "org.varlink.service.GetInfo", NULL, NULL, NULL, 0, NULL);
        *ns = now_ns() - t0;
        noiommu_disconnect(c);
        return r;
}

static int bench_polkit(sd_bus *bus, uint64_t size, uint64_t *ns) {
        _cleanup_close_ int pidfd = -EBADF;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        sd_bus_message *reply = NULL;
        unsigned long long start_time;
        char s_size[32];
        int authorized = 0, challenge = 0, r;
        uint64_t t0;

        (void) snprintf(s_size, sizeof(s_size), "%" PRIu64, size);
        t0 = now_ns();
        /* The same subject the daemon builds at accept: pid, start time, uid (int32), pidfd. */
        r = proc_get_starttime(getpid(), &start_time);
        if (r < 0)
                return r;
        pidfd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        r = sd_bus_call_method(bus, "org.freedesktop.PolicyKit1", "/org/freedesktop/PolicyKit1/Authority",
                               "org.freedesktop.PolicyKit1.Authority", "CheckAuthorization", &error, &reply,
                               "(sa{sv})sa{ss}us",
                               "unix-process", 4,
                               "pid", "u", (uint32_t) getpid(),
                               "start-time", "t", (uint64_t) start_time,
                               "uid", "i", (int32_t) getuid(),
                               "pidfd", "h", pidfd,
                               "io.noiommud.allocate-memory",
                               3, "size", s_size, "hugepage_size", "2097152", "numa_node", "any",
                               (uint32_t) 0, "bench");
        if (r >= 0)
                r = sd_bus_message_read(reply, "(bba{ss})", &authorized, &challenge, NULL);
        *ns = now_ns() - t0;
        sd_bus_message_unref(reply);
        if (r < 0) {
                fprintf(stderr, "CheckAuthorization failed: %s\n", error.message ?: strerror(-r));
                sd_bus_error_free(&error);
                return r;
        }
        sd_bus_error_free(&error);
        return authorized ? 0 : -EACCES;
}

static int bench_kernel(uint64_t size, uint64_t *ns) {
        uint64_t t0 = now_ns();
        int fd;

        fd = memfd_create("bench", MFD_HUGETLB | MFD_HUGE_2MB | MFD_ALLOW_SEALING | MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t) size) < 0 || fallocate_retry(fd, size) < 0) {
                int e = -errno;
                safe_close(fd);
                return e;
        }
        *ns = now_ns() - t0;
        safe_close(fd);
        return 0;
}

static int bench_direct(int pagemap_fd, uint64_t size, uint64_t *ns) {
        struct io_uring_params p = {};
        uint64_t t0 = now_ns(), hp = 2ULL << 20, phys;
        struct iovec iov[1024];
        size_t n_iov = 0;
        void *addr;
        int fd, ring;

        fd = memfd_create("bench", MFD_HUGETLB | MFD_HUGE_2MB | MFD_ALLOW_SEALING | MFD_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t) size) < 0 || fallocate_retry(fd, size) < 0 ||
            fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
                return -errno;
        addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (addr == MAP_FAILED)
                return -errno;
        for (uint64_t off = 0; off < size && n_iov < 1024; off += 1ULL << 30)
                iov[n_iov++] = (struct iovec) { (uint8_t *) addr + off, (size_t) MIN(1ULL << 30, size - off) };
        ring = (int) syscall(__NR_io_uring_setup, 1, &p);
        if (ring < 0 || syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS, iov, (unsigned) n_iov) < 0)
                return -errno;
        for (uint64_t off = 0; off < size; off += hp)
                if (pread(pagemap_fd, &phys, sizeof(phys), (off_t) (((uintptr_t) addr + off) / 4096 * 8)) != sizeof(phys))
                        return -EIO;
        *ns = now_ns() - t0;
        (void) syscall(__NR_io_uring_register, ring, IORING_UNREGISTER_BUFFERS, NULL, 0);
        safe_close(ring);
        (void) munmap(addr, size);
        safe_close(fd);
        return 0;
}

int main(int argc, char *argv[]) {
        uint64_t size, *d, *pk, *k, *di, *gi;
        sd_bus *bus = NULL;
        int iterations, pagemap_fd, r;
        char sz[32];
        Stats sd, sp, sk, sdi, sgi;

        if (argc != 4 || parse_size(argv[2], &size) < 0 || (iterations = atoi(argv[3])) <= 0) {
                fprintf(stderr, "Usage: bench-alloc SOCKET SIZE ITERATIONS\n");
                return 2;
        }
        d = calloc((size_t) iterations, sizeof(uint64_t));
        pk = calloc((size_t) iterations, sizeof(uint64_t));
        k = calloc((size_t) iterations, sizeof(uint64_t));
        di = calloc((size_t) iterations, sizeof(uint64_t));
        gi = calloc((size_t) iterations, sizeof(uint64_t));
        if (!d || !pk || !k || !di || !gi)
                return 1;
        r = sd_bus_open_system(&bus);
        if (r < 0) {
                fprintf(stderr, "Cannot connect to the system bus: %s\n", strerror(-r));
                return 1;
        }
        pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (pagemap_fd < 0)
                return 1;

        /* Interleave the four measurements so that drift affects all of them alike. */
        for (int i = 0; i < iterations; i++) {
                if ((r = bench_daemon(argv[1], size, &d[i])) < 0 ||
                    (r = bench_polkit(bus, size, &pk[i])) < 0 ||
                    (r = bench_kernel(size, &k[i])) < 0 ||
                    (r = bench_direct(pagemap_fd, size, &di[i])) < 0 ||
                    (r = bench_getinfo(argv[1], &gi[i])) < 0) {
                        fprintf(stderr, "iteration %d failed: %s\n", i, strerror(-r));
                        return 1;
                }
        }

        sd = stats(d, (size_t) iterations);
        sp = stats(pk, (size_t) iterations);
        sk = stats(k, (size_t) iterations);
        sdi = stats(di, (size_t) iterations);
        sgi = stats(gi, (size_t) iterations);
        format_size(sz, size);
        printf("allocate %s, %d iterations (microseconds)\n", sz, iterations);
        printf("  %-44s p50 %10.1f   p99 %10.1f\n", "daemon round trip (connect..mapped)", sd.p50_us, sd.p99_us);
        printf("  %-44s p50 %10.1f   p99 %10.1f\n", "polkit CheckAuthorization alone", sp.p50_us, sp.p99_us);
        printf("  %-44s p50 %10.1f   p99 %10.1f\n", "kernel memfd+fallocate (prealloc+zero)", sk.p50_us, sk.p99_us);
        printf("  %-44s p50 %10.1f   p99 %10.1f\n", "same kernel calls as daemon, direct as root", sdi.p50_us, sdi.p99_us);
        printf("  %-44s p50 %10.1f   p99 %10.1f\n", "connect + GetInfo (transport, no polkit)", sgi.p50_us, sgi.p99_us);
        printf("  daemon overhead over polkit + kernel (p50): %.1f us (goal <= 100)\n",
               sd.p50_us - sp.p50_us - sk.p50_us);
        printf("  daemon overhead over polkit + direct (p50): %.1f us\n",
               sd.p50_us - sp.p50_us - sdi.p50_us);
        printf("  ratio daemon / direct kernel calls (p50):   %.2fx (includes polkit)\n", sd.p50_us / sdi.p50_us);
        printf("  ratio daemon / kernel prealloc+zero (p50):  %.2fx\n", sd.p50_us / sk.p50_us);

        sd_bus_flush_close_unref(bus);
        free(d);
        free(pk);
        free(k);
        free(di);
        free(gi);
        return 0;
}
