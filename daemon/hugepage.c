/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See hugepage.h for what this module (a leaf, layer 0) owns, guarantees and why.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/io_uring.h>
#include <stdbool.h>
#include <linux/memfd.h>
#include <linux/mempolicy.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "hugepage.h"
#include "internal/fd-util.h"
#include "internal/json-util.h"
#include "internal/macro.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U       /* Linux 6.3; bookworm's 6.1 headers lack it */
#endif

#define PAGEMAP_PRESENT (UINT64_C(1) << 63)
#define PAGEMAP_PFN_MASK ((UINT64_C(1) << 55) - 1)

/* io_uring refuses to register a single fixed buffer larger than 1 GiB (io_buffer_validate()),
 * so the mapping is registered as an array of iovecs of at most this size. */
#define PIN_IOVEC_MAX (UINT64_C(1) << 30)

static long sys_io_uring_setup(unsigned entries, struct io_uring_params *p) {
        return syscall(__NR_io_uring_setup, entries, p);
}

static long sys_io_uring_register(int fd, unsigned op, const void *arg, unsigned n) {
        return syscall(__NR_io_uring_register, fd, op, arg, n);
}

int hugepage_sizes(uint64_t *ret_sizes, size_t max, size_t *ret_n) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        size_t n = 0;

        d = opendir("/sys/kernel/mm/hugepages");
        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                unsigned long long kb;
                char tail;

                if (sscanf(de->d_name, "hugepages-%llukB%c", &kb, &tail) != 1)
                        continue;
                if (n < max)
                        ret_sizes[n++] = (uint64_t) kb * 1024;
        }

        /* ascending, so the smallest size comes first */
        for (size_t i = 1; i < n; i++)
                for (size_t j = i; j > 0 && ret_sizes[j - 1] > ret_sizes[j]; j--) {
                        uint64_t t = ret_sizes[j];
                        ret_sizes[j] = ret_sizes[j - 1];
                        ret_sizes[j - 1] = t;
                }
        *ret_n = n;
        return 0;
}

int hugepage_default_size(uint64_t *ret) {
        _cleanup_free_ char *s = NULL;
        const char *p;
        unsigned long long kb;
        int r;

        r = read_small_file_at(AT_FDCWD, "/proc/meminfo", &s);
        if (r < 0)
                return r;
        p = strstr(s, "\nHugepagesize:");
        if (!p || sscanf(p, "\nHugepagesize: %llu kB", &kb) != 1 || kb == 0)
                return -EOPNOTSUPP;
        *ret = (uint64_t) kb * 1024;
        return 0;
}

int hugepage_size_supported(uint64_t hugepage_size) {
        /* The sizes a kernel offers are fixed at boot (hstates are set up then), so read them
         * once instead of on every request. */
        static uint64_t sizes[NOIOMMU_HUGEPAGE_SIZES_MAX];
        static size_t n;
        static bool loaded;
        int r;

        if (!loaded) {
                r = hugepage_sizes(sizes, ELEMENTSOF(sizes), &n);
                if (r < 0)
                        return r;
                loaded = true;
        }
        for (size_t i = 0; i < n; i++)
                if (sizes[i] == hugepage_size)
                        return 1;
        return 0;
}

int pagemap_resolve(int pagemap_fd, const void *addr, uint64_t len, uint64_t *ret_phys) {
        uint64_t buf[4096];
        uint64_t first_pfn = 0, n_entries, done = 0;
        uintptr_t va = (uintptr_t) addr;
        long ps = sysconf(_SC_PAGESIZE);

        if (ps <= 0 || va % (uint64_t) ps != 0 || len == 0 || len % (uint64_t) ps != 0)
                return -EINVAL;
        n_entries = len / (uint64_t) ps;

        while (done < n_entries) {
                size_t k = (size_t) MIN(n_entries - done, (uint64_t) ELEMENTSOF(buf));
                off_t off = (off_t) ((va / (uint64_t) ps + done) * sizeof(uint64_t));
                ssize_t n;

                n = pread(pagemap_fd, buf, k * sizeof(uint64_t), off);
                if (n < 0)
                        return negative_errno();
                if ((size_t) n != k * sizeof(uint64_t))
                        return -EIO;

                for (size_t i = 0; i < k; i++) {
                        uint64_t pfn = buf[i] & PAGEMAP_PFN_MASK;

                        /* Without CAP_SYS_ADMIN at open time the PFN reads as 0. */
                        if (!(buf[i] & PAGEMAP_PRESENT) || pfn == 0)
                                return -ENXIO;
                        if (done + i == 0)
                                first_pfn = pfn;
                        else if (pfn != first_pfn + done + i)
                                return -EFAULT;
                }
                done += k;
        }

        *ret_phys = first_pfn * (uint64_t) ps;
        return 0;
}

int dma_segments_merge(const uint64_t *phys, size_t n_pages, uint64_t page_size,
                       DmaSegment **ret) {
        _cleanup_free_ DmaSegment *s = NULL;
        size_t n = 0;

        if (n_pages == 0 || page_size == 0)
                return -EINVAL;
        s = new0(DmaSegment, n_pages);
        if (!s)
                return -ENOMEM;

        for (size_t i = 0; i < n_pages; i++) {
                if (n > 0 && s[n - 1].dma_address + s[n - 1].length == phys[i]) {
                        s[n - 1].length += page_size;
                        continue;
                }
                s[n++] = (DmaSegment) {
                        .offset = i * page_size,
                        .length = page_size,
                        .dma_address = phys[i],
                };
        }
        *ret = TAKE_PTR(s);
        return (int) n;
}

static int resolve_all(int pagemap_fd, const HugeRegion *r, uint64_t *phys) {
        for (size_t i = 0; i < r->n_pages; i++) {
                int k;

                k = pagemap_resolve(pagemap_fd, (const uint8_t *) r->addr + i * r->hugepage_size,
                                    r->hugepage_size, &phys[i]);
                if (k < 0)
                        return k;
        }
        return 0;
}

static int pin_mapping(void *addr, uint64_t size) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ struct iovec *iov = NULL;
        struct io_uring_params p = {};
        size_t n = (size_t) ((size + PIN_IOVEC_MAX - 1) / PIN_IOVEC_MAX);

        iov = new0(struct iovec, n);
        if (!iov)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                iov[i] = (struct iovec) {
                        .iov_base = (uint8_t *) addr + i * PIN_IOVEC_MAX,
                        .iov_len = (size_t) MIN(PIN_IOVEC_MAX, size - i * PIN_IOVEC_MAX),
                };

        /* io_uring fds are always O_CLOEXEC. */
        fd = (int) sys_io_uring_setup(1, &p);
        if (fd < 0)
                return negative_errno();

        /* IORING_REGISTER_BUFFERS pins with FOLL_LONGTERM (io_pin_pages()); hugetlb is the one
         * file-backed mapping io_uring accepts. The pin lasts until UNREGISTER or the ring's
         * release. */
        while (sys_io_uring_register(fd, IORING_REGISTER_BUFFERS, iov, (unsigned) n) < 0)
                if (errno != EINTR)
                        return negative_errno();

        return TAKE_FD(fd);
}

int huge_pin_probe(void) {
        struct io_uring_params p = {};
        int fd;

        fd = (int) sys_io_uring_setup(1, &p);
        if (fd < 0)
                return negative_errno();
        (void) close(fd);
        return 0;
}

static void unpin(int fd) {
        if (fd < 0)
                return;
        /* Unregister explicitly: closing the ring frees it from a workqueue, so the pages would
         * go back to the pool at some later time; unregistering unpins synchronously. */
        (void) sys_io_uring_register(fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
        (void) safe_close(fd);
}

#define BITS_PER_ULONG (8 * sizeof(unsigned long))

static int set_node_policy(int numa_node) {
        unsigned long mask[NOIOMMU_NUMA_NODE_MAX / BITS_PER_ULONG + 1] = {};

        if (numa_node < 0)
                return (int) syscall(SYS_set_mempolicy, MPOL_DEFAULT, NULL, 0);
        if (numa_node > NOIOMMU_NUMA_NODE_MAX)
                return -EINVAL;
        mask[numa_node / BITS_PER_ULONG] |= 1UL << (numa_node % BITS_PER_ULONG);
        /* maxnode is one more than the bits to read: mm/mempolicy.c get_nodes() starts with
         * --maxnode (libnuma passes size + 1 for the same reason). Passing the bit count itself
         * would drop the last node of the mask. */
        if (syscall(SYS_set_mempolicy, MPOL_BIND, mask, NOIOMMU_NUMA_NODE_MAX + 2) < 0)
                return negative_errno();
        return 0;
}

static int node_of(const void *addr) {
        int node = -1;

        if (syscall(SYS_get_mempolicy, &node, NULL, 0, addr, MPOL_F_NODE | MPOL_F_ADDR) < 0)
                return -1;
        return node;
}

static int memfd_new(const char *id, uint64_t hugepage_size) {
        char name[64];
        unsigned shift = (unsigned) __builtin_ctzll(hugepage_size);
        unsigned flags = MFD_HUGETLB | MFD_ALLOW_SEALING | MFD_CLOEXEC |
                         (shift << MFD_HUGE_SHIFT);
        int fd;

        (void) snprintf(name, sizeof(name), "noiommud-%s", id);

        /* MFD_NOEXEC_SEAL (6.3+) makes the memory non-executable for good; older kernels reject
         * the flag with EINVAL, and DMA memory never needed exec anyway. */
        fd = memfd_create(name, flags | MFD_NOEXEC_SEAL);
        if (fd < 0 && errno == EINVAL)
                fd = memfd_create(name, flags);
        if (fd < 0)
                return negative_errno();
        return fd;
}

int huge_region_new(const char *id, uint64_t size, uint64_t hugepage_size, int numa_node,
                    int pagemap_fd, HugeRegion **ret) {
        _cleanup_(huge_region_freep) HugeRegion *r = NULL;
        int k;

        if (hugepage_size == 0 || (hugepage_size & (hugepage_size - 1)) != 0 || size == 0 ||
            size % hugepage_size != 0 || size > NOIOMMU_ALLOC_SIZE_MAX || !noiommu_id_is_valid(id))
                return -EINVAL;

        r = new0(HugeRegion, 1);
        if (!r)
                return -ENOMEM;
        *r = (HugeRegion) {
                .memfd = -EBADF,
                .pin_fd = -EBADF,
                .addr = MAP_FAILED,
                .size = size,
                .hugepage_size = hugepage_size,
                .numa_node = -1,
                .n_pages = (size_t) (size / hugepage_size),
        };
        memcpy(r->id, id, NOIOMMU_ID_LEN);

        r->phys = new0(uint64_t, r->n_pages);
        if (!r->phys)
                return -ENOMEM;

        r->memfd = memfd_new(id, hugepage_size);
        if (r->memfd < 0)
                return r->memfd;

        if (ftruncate(r->memfd, (off_t) size) < 0)
                return negative_errno();

        /* Preallocate. hugetlbfs_fallocate() allocates with the calling task's memory policy,
         * so binding the calling thread for the duration places the pages on the node, and a
         * node without free pages fails with ENOSPC instead of falling back. set_mempolicy()
         * sets the policy of the calling thread only (mm/mempolicy.c: current->mempolicy), so
         * the loop and pool.c's worker never see each other's. */
        if (numa_node >= 0) {
                k = set_node_policy(numa_node);
                if (k < 0)
                        return k;
        }
        /* hugetlbfs_fallocate() may stop with EINTR on a signal (a ptrace attach, say); what
         * it allocated stays, so simply go on. */
        do
                k = fallocate(r->memfd, 0, 0, (off_t) size) < 0 ? negative_errno() : 0;
        while (k == -EINTR);
        if (numa_node >= 0)
                (void) set_node_policy(-1);
        if (k < 0)
                return k;

        if (fcntl(r->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
                return negative_errno();

        /* Never MAP_NORESERVE: the reservation is what turns exhaustion into an error here. */
        r->addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, r->memfd, 0);
        if (r->addr == MAP_FAILED)
                return negative_errno();

        k = pin_mapping(r->addr, size);
        if (k < 0)
                return k;
        r->pin_fd = k;

        /* Only after pinning: a FOLL_LONGTERM pin may migrate pages first. */
        k = resolve_all(pagemap_fd, r, r->phys);
        if (k < 0)
                return k;

        r->numa_node = node_of(r->addr);

        *ret = TAKE_PTR(r);
        return 0;
}

HugeRegion *huge_region_free(HugeRegion *r) {
        if (!r)
                return NULL;

        unpin(r->pin_fd);
        if (r->addr != MAP_FAILED)
                (void) munmap(r->addr, r->size);
        (void) safe_close(r->memfd);
        free(r->phys);
        free(r);
        return NULL;
}

int huge_region_verify(const HugeRegion *r, int pagemap_fd) {
        for (size_t i = 0; i < r->n_pages; i++) {
                uint64_t p;
                int k;

                k = pagemap_resolve(pagemap_fd, (const uint8_t *) r->addr + i * r->hugepage_size,
                                    r->hugepage_size, &p);
                if (k == -ENXIO || (k >= 0 && p != r->phys[i]))
                        return -ESTALE;
                if (k < 0)
                        return k;
        }
        return 0;
}

int huge_region_restore(const char *id, int memfd, int pin_fd, uint64_t size, uint64_t hugepage_size,
                        const uint64_t *phys, size_t n_pages, int pagemap_fd, HugeRegion **ret) {
        _cleanup_(huge_region_freep) HugeRegion *r = NULL;
        struct stat st;
        int k, moved = 0;

        r = new0(HugeRegion, 1);
        if (!r) {
                (void) safe_close(memfd);
                (void) safe_close(pin_fd);
                return -ENOMEM;
        }
        *r = (HugeRegion) {
                .memfd = memfd,
                .pin_fd = pin_fd,       /* from before a re-exec, or -EBADF (pinned below) */
                .addr = MAP_FAILED,
                .size = size,
                .hugepage_size = hugepage_size,
                .numa_node = -1,
                .n_pages = n_pages,
        };
        if (!noiommu_id_is_valid(id) || hugepage_size == 0 || size != n_pages * hugepage_size || memfd < 0)
                return -EINVAL;
        memcpy(r->id, id, NOIOMMU_ID_LEN);

        /* Only a sealed memfd of exactly the recorded size is ours. */
        if (fstat(memfd, &st) < 0)
                return negative_errno();
        if ((uint64_t) st.st_size != size ||
            (fcntl(memfd, F_GET_SEALS) & (F_SEAL_SHRINK | F_SEAL_GROW)) != (F_SEAL_SHRINK | F_SEAL_GROW))
                return -EBADF;

        r->phys = new0(uint64_t, n_pages);
        if (!r->phys)
                return -ENOMEM;

        /* MAP_POPULATE: pagemap shows only pages present in our page tables. Pinning (below)
         * faults them in anyway; an adopted pin does not, because it pins the pages and not
         * this new mapping. */
        r->addr = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, memfd, 0);
        if (r->addr == MAP_FAILED)
                return negative_errno();

        /* After a re-exec the old image's io_uring ring is still open and still holds its
         * FOLL_LONGTERM pin on these very pages (the ring holds page references, not the old
         * mapping, which execve() tore down): it is adopted as it is, so the pages were never
         * unpinned. Only after kill -9 is there no ring, and the pages are pinned again. */
        if (r->pin_fd < 0) {
                k = pin_mapping(r->addr, size);
                if (k < 0)
                        return k;
                r->pin_fd = k;
        }

        k = resolve_all(pagemap_fd, r, r->phys);
        if (k < 0)
                return k;
        for (size_t i = 0; i < n_pages; i++)
                if (r->phys[i] != phys[i])
                        moved = 1;
        r->numa_node = node_of(r->addr);

        *ret = TAKE_PTR(r);
        return moved;
}
