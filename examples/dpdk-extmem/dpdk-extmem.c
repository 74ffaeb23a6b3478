/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * noiommu-dpdk-extmem: an unprivileged DPDK application on noiommud's DMA memory
 * (docs/dpdk.md, issue 13).
 *
 * DPDK's EAL learns the physical address of its hugepages itself, from /proc/self/pagemap, and
 * so needs root (CAP_SYS_ADMIN) in a VM without an IOMMU. It also has an interface for memory it
 * did not allocate: a named malloc heap with "external" memory added together with the IOVA of
 * each page (rte_malloc_heap_create(), rte_malloc_heap_memory_add(), rte_malloc.h). This program
 * uses that interface with what noiommud hands out:
 *
 *   1. obtain DMA memory: adopt what "noiommuctl run" passed (noiommu_from_environment()), or
 *      connect and noiommu_allocate() — before the EAL starts, so that a refusal is a clear
 *      message and exit status 3, never a failure somewhere inside DPDK;
 *   2. start the EAL without hugepages, PCI or shared files of its own:
 *      --no-huge --no-pci --no-shconf --no-telemetry -l 0 (DPDK 22.11 refuses --in-memory with
 *      --no-huge, and falls back to IOVA-as-VA as non-root anyway: we ask for VA explicitly);
 *   3. create the heap "noiommud" and add the memory with one IOVA per hugepage, taken from the
 *      daemon's segment table;
 *   4. build an mbuf pool on that heap's socket (rte_malloc_heap_get_socket()): every DMA
 *      allocation must name this socket, or DPDK takes it from its own (non-DMA) memory;
 *   5. check every mbuf: buf_iova, and the IOVA of the last byte of its buffer, must be what the
 *      segment table says for buf_addr (physical addresses in noiommu mode). So must a memzone's
 *      iova and rte_malloc_virt2iova() of an rte_malloc_socket() buffer;
 *   6. shut down in the order the memory's owners need: free the pool and everything else on
 *      the heap, remove the memory from the heap (which unregisters it from DPDK's memory map)
 *      and destroy the heap, then free the memory in noiommud, then rte_eal_cleanup().
 *
 * With --own-hugepages it is instead the baseline a DPDK user runs today: as root, EAL on its
 * own hugepages in physical-address mode, the same pool on its own memory, the same check
 * against /proc/self/pagemap. tests/bench/run-dpdk-bench.py times both.
 *
 * Output: a human-readable report (pool size, the segment table, a few mbufs next to it), or
 * with --json one JSON object per line ("ready", then the result). "ready" is printed as soon as
 * the pool is populated, before the check. With --hold the program waits for EOF on stdin
 * before it shuts down, so that a test can read its /proc/PID/pagemap.
 *
 * Exit status: 0 all mbufs checked and shut down cleanly; 1 a check failed or DPDK failed;
 * 2 usage; 3 noiommud refused or could not give the memory (connection, polkit, limits).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_memory.h>
#include <rte_memzone.h>
#include <rte_mempool.h>
#include <rte_version.h>

#include "noiommu/noiommu.h"

#define HEAP_NAME "noiommud"
#define POOL_NAME "noiommud_pool"
#define MEMZONE_NAME "noiommud_probe"
#define POOL_CACHE_SIZE 256
#define EAL_ARGS_MAX 64
#define SHOW_SEGMENTS 8

#define EXIT_CHECK 1
#define EXIT_USAGE 2
#define EXIT_BROKER 3

typedef struct Options {
        const char *socket;
        uint64_t size;
        uint64_t hugepage_size;
        unsigned n_mbufs;               /* 0: as many as fit (pool_fill()) */
        unsigned show;                  /* mbufs printed next to the segment table */
        unsigned sample;                /* mbufs in the --json sample */
        bool json;
        bool hold;
        bool own_hugepages;             /* the root baseline */
        char **eal_extra;
        int n_eal_extra;
} Options;

/* The DMA memory as DPDK sees it: where it is mapped, and the IOVA of each page. */
typedef struct DmaArea {
        uint8_t *base;
        size_t size;
        size_t page_size;
        size_t n_pages;
        rte_iova_t *iovas;              /* n_pages entries; NULL in --own-hugepages mode */
        int pagemap_fd;                 /* --own-hugepages: /proc/self/pagemap */
} DmaArea;

typedef struct CheckResult {
        unsigned checked;
        unsigned bad;
        unsigned virt2iova_differs;     /* rte_mem_virt2iova(buf_addr) != buf_iova (caveat) */
        char first_bad[256];
} CheckResult;

static void usage(FILE *f) {
        fprintf(f,
                "Usage: noiommu-dpdk-extmem [OPTIONS] [-- EAL-ARGS...]\n"
                "\n"
                "Starts DPDK's EAL without hugepages or PCI of its own, takes DMA memory from\n"
                "noiommud, registers it as external memory with the daemon's address table, builds\n"
                "an mbuf pool on it and checks every mbuf's buf_iova. Under \"noiommuctl run\" it\n"
                "uses the first memory object it was passed.\n"
                "\n"
                "  --socket PATH          noiommud's socket (default: $NOIOMMUD_SOCKET or the\n"
                "                         system socket)\n"
                "  --memory SIZE          DMA memory to allocate, e.g. 64M, 1G (default 64M)\n"
                "  --hugepage-size SIZE   page size to ask for (default: the system's)\n"
                "  --mbufs N              pool size (default: as many as fit)\n"
                "  --show N               mbufs to print next to the segment table (default 4)\n"
                "  --sample N             mbufs listed with --json (default 64)\n"
                "  --json                 JSON lines instead of the report\n"
                "  --hold                 wait for EOF on stdin before shutting down\n"
                "  --own-hugepages        baseline: as root, DPDK's own hugepages in PA mode\n"
                "                         (pass --huge-dir and the like after --)\n"
                "\n"
                "Exit status: 0 ok, 1 check or DPDK failure, 2 usage, 3 noiommud refused.\n");
}

static int parse_size(const char *s, uint64_t *ret) {
        char *end;
        unsigned long long v;
        unsigned shift = 0;

        errno = 0;
        v = strtoull(s, &end, 0);
        if (errno != 0 || end == s || s[0] == '-')
                return -EINVAL;
        switch (*end) {
        case 'K': case 'k': shift = 10; end++; break;
        case 'M': case 'm': shift = 20; end++; break;
        case 'G': case 'g': shift = 30; end++; break;
        case '\0': break;
        default: return -EINVAL;
        }
        if (*end != '\0' || v == 0 || v > (UINT64_MAX >> shift))
                return -EINVAL;
        *ret = (uint64_t) v << shift;
        return 0;
}

static int parse_unsigned(const char *s, unsigned *ret) {
        char *end;
        unsigned long v;

        errno = 0;
        v = strtoul(s, &end, 10);
        if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > UINT32_MAX)
                return -EINVAL;
        *ret = (unsigned) v;
        return 0;
}

static int bad_value(const char *option, const char *value) {
        fprintf(stderr, "noiommu-dpdk-extmem: invalid value '%s' for --%s\n", value, option);
        return -EINVAL;
}

static int parse_options(int argc, char *argv[], Options *o) {
        enum {
                ARG_SOCKET = 0x100, ARG_MEMORY, ARG_HUGEPAGE_SIZE, ARG_MBUFS, ARG_SHOW, ARG_SAMPLE,
                ARG_JSON, ARG_HOLD, ARG_OWN_HUGEPAGES,
        };
        static const struct option options[] = {
                { "help",           no_argument,       NULL, 'h'               },
                { "socket",         required_argument, NULL, ARG_SOCKET        },
                { "memory",         required_argument, NULL, ARG_MEMORY        },
                { "hugepage-size",  required_argument, NULL, ARG_HUGEPAGE_SIZE },
                { "mbufs",          required_argument, NULL, ARG_MBUFS         },
                { "show",           required_argument, NULL, ARG_SHOW          },
                { "sample",         required_argument, NULL, ARG_SAMPLE        },
                { "json",           no_argument,       NULL, ARG_JSON          },
                { "hold",           no_argument,       NULL, ARG_HOLD          },
                { "own-hugepages",  no_argument,       NULL, ARG_OWN_HUGEPAGES },
                {}
        };
        int c;

        *o = (Options) {
                .size = UINT64_C(64) << 20,
                .show = 4,
                .sample = 64,
        };

        /* '+': stop at the first non-option, so that "--" hands the rest to the EAL untouched */
        while ((c = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        usage(stdout);
                        exit(EXIT_SUCCESS);
                case ARG_SOCKET:
                        o->socket = optarg;
                        break;
                case ARG_MEMORY:
                        if (parse_size(optarg, &o->size) < 0)
                                return bad_value("memory", optarg);
                        break;
                case ARG_HUGEPAGE_SIZE:
                        if (parse_size(optarg, &o->hugepage_size) < 0)
                                return bad_value("hugepage-size", optarg);
                        break;
                case ARG_MBUFS:
                        if (parse_unsigned(optarg, &o->n_mbufs) < 0 || o->n_mbufs == 0)
                                return bad_value("mbufs", optarg);
                        break;
                case ARG_SHOW:
                        if (parse_unsigned(optarg, &o->show) < 0)
                                return bad_value("show", optarg);
                        break;
                case ARG_SAMPLE:
                        if (parse_unsigned(optarg, &o->sample) < 0)
                                return bad_value("sample", optarg);
                        break;
                case ARG_JSON:
                        o->json = true;
                        break;
                case ARG_HOLD:
                        o->hold = true;
                        break;
                case ARG_OWN_HUGEPAGES:
                        o->own_hugepages = true;
                        break;
                case '?':
                        usage(stderr);
                        return -EINVAL;
                default:
                        abort();
                }

        o->eal_extra = argv + optind;
        o->n_eal_extra = argc - optind;
        if (o->n_eal_extra > EAL_ARGS_MAX - 16) {
                fprintf(stderr, "noiommu-dpdk-extmem: too many EAL arguments\n");
                return -EINVAL;
        }
        return 0;
}

/* The daemon's answer to a failed call, for the message of exit status 3. */
static void broker_error(noiommu_conn *c, const char *what, int r) {
        const char *name = c ? noiommu_last_error(c) : NULL;
        const char *params = c ? noiommu_last_error_parameters(c) : NULL;

        if (name)
                fprintf(stderr, "noiommu-dpdk-extmem: noiommud refused %s: %s %s (%s)\n",
                        what, name, params ? params : "{}", strerror(-r));
        else
                fprintf(stderr, "noiommu-dpdk-extmem: the call to noiommud for %s failed: %s\n",
                        what, strerror(-r));
}

/*
 * Step 1: the memory. Returns 0 with *ret_conn and *ret_mem set, or the exit status to use.
 * The connection must stay open for as long as the memory is registered with DPDK: closing it
 * unpins the pages (noiommu_disconnect()).
 */
static int obtain_memory(const Options *o, noiommu_conn **ret_conn, noiommu_memory **ret_mem) {
        noiommu_conn *c = NULL;
        noiommu_memory **adopted = NULL, *m = NULL;
        size_t n_adopted = 0;
        noiommu_alloc_options ao;
        int r;

        /* started by "noiommuctl run --memory SIZE -- noiommu-dpdk-extmem": adopt, allocate nothing */
        r = noiommu_from_environment(&c, NULL, &adopted, &n_adopted);
        if (r < 0) {
                fprintf(stderr, "noiommu-dpdk-extmem: cannot adopt what noiommuctl run passed: %s\n",
                        strerror(-r));
                return EXIT_BROKER;
        }
        if (r > 0) {
                if (n_adopted == 0) {
                        fprintf(stderr, "noiommu-dpdk-extmem: noiommuctl run passed no memory "
                                "(use noiommuctl run --memory SIZE)\n");
                        free(adopted);
                        (void) noiommu_disconnect(c);
                        return EXIT_BROKER;
                }
                /* the first object is ours; the others go back to the daemon */
                for (size_t i = 1; i < n_adopted; i++)
                        (void) noiommu_free(c, adopted[i]);
                m = adopted[0];
                free(adopted);
                *ret_conn = c;
                *ret_mem = m;
                return 0;
        }

        r = noiommu_connect(o->socket, &c);
        if (r < 0) {
                fprintf(stderr, "noiommu-dpdk-extmem: cannot connect to noiommud%s%s: %s "
                        "(is noiommud running?)\n", o->socket ? " at " : "", o->socket ? o->socket : "",
                        strerror(-r));
                return EXIT_BROKER;
        }

        noiommu_alloc_options_init(&ao);
        ao.hugepage_size = o->hugepage_size;
        r = noiommu_allocate(c, o->size, &ao, &m);
        if (r < 0) {
                broker_error(c, "the DMA memory", r);
                (void) noiommu_disconnect(c);
                return EXIT_BROKER;
        }

        *ret_conn = c;
        *ret_mem = m;
        return 0;
}

/* The daemon's segment table as DPDK wants it: one IOVA per page. */
static int area_from_memory(noiommu_memory *m, DmaArea *ret) {
        const noiommu_segment *segs;
        size_t n_segs, s = 0;
        DmaArea a = {
                .base = noiommu_memory_get_address(m),
                .size = noiommu_memory_get_size(m),
                .page_size = noiommu_memory_get_hugepage_size(m),
                .pagemap_fd = -EBADF,
        };

        segs = noiommu_memory_get_segments(m, &n_segs);
        /* rte_malloc_heap_memory_add() wants va_addr and len aligned to page_sz */
        if (a.page_size == 0 || a.size % a.page_size != 0 || (uintptr_t) a.base % a.page_size != 0)
                return -EINVAL;
        a.n_pages = a.size / a.page_size;
        a.iovas = calloc(a.n_pages, sizeof(rte_iova_t));
        if (!a.iovas)
                return -ENOMEM;

        /* noiommu_allocate() checked that the segments cover [0, size) in order without gaps */
        for (size_t p = 0; p < a.n_pages; p++) {
                uint64_t off = (uint64_t) p * a.page_size;

                while (s < n_segs && off >= segs[s].offset + segs[s].length)
                        s++;
                if (s >= n_segs || segs[s].offset % a.page_size != 0 ||
                    segs[s].length % a.page_size != 0) {
                        free(a.iovas);
                        return -EBADMSG;
                }
                a.iovas[p] = segs[s].dma_address + (off - segs[s].offset);
        }

        *ret = a;
        return 0;
}

/* --own-hugepages: what the kernel says, from /proc/self/pagemap (bits 0-54 PFN, 63 present) */
static rte_iova_t pagemap_phys(const DmaArea *a, const void *va) {
        uint64_t e;
        uintptr_t v = (uintptr_t) va;
        long ps = sysconf(_SC_PAGESIZE);

        if (pread(a->pagemap_fd, &e, sizeof(e), (off_t) (v / ps * sizeof(e))) != sizeof(e))
                return RTE_BAD_IOVA;
        if (!(e >> 63) || (e & ((UINT64_C(1) << 55) - 1)) == 0)
                return RTE_BAD_IOVA;
        return (e & ((UINT64_C(1) << 55) - 1)) * ps + v % ps;
}

/* The DMA address of va, as the segment table (or, for the baseline, the kernel) says. */
static rte_iova_t expected_iova(const DmaArea *a, const void *va) {
        const uint8_t *p = va;

        if (a->iovas) {
                if (p < a->base || p >= a->base + a->size)
                        return RTE_BAD_IOVA;
                return a->iovas[(size_t) (p - a->base) / a->page_size] + (size_t) (p - a->base) % a->page_size;
        }
        return pagemap_phys(a, va);
}

typedef struct CheckCtx {
        const DmaArea *area;
        CheckResult *result;
} CheckCtx;

static void check_mbuf(struct rte_mempool *mp, void *opaque, void *obj, unsigned idx) {
        CheckCtx *ctx = opaque;
        struct rte_mbuf *mb = obj;
        const uint8_t *last = (const uint8_t *) mb->buf_addr + mb->buf_len - 1;
        rte_iova_t want = expected_iova(ctx->area, mb->buf_addr);
        rte_iova_t want_last = expected_iova(ctx->area, last);

        ctx->result->checked++;
        if (rte_mem_virt2iova(mb->buf_addr) != mb->buf_iova)
                ctx->result->virt2iova_differs++;
        /* the whole buffer must be DMA-contiguous: a device writes buf_len bytes from buf_iova */
        if (want != RTE_BAD_IOVA && mb->buf_iova == want && want_last == want + mb->buf_len - 1)
                return;
        if (ctx->result->bad++ == 0)
                snprintf(ctx->result->first_bad, sizeof(ctx->result->first_bad),
                         "mbuf %u at %p: buf_iova 0x%" PRIx64 ", expected 0x%" PRIx64
                         "; last byte expected at 0x%" PRIx64 ", table says 0x%" PRIx64,
                         idx, mb->buf_addr, (uint64_t) mb->buf_iova, (uint64_t) want,
                         (uint64_t) (mb->buf_iova + mb->buf_len - 1), (uint64_t) want_last);
}

/* Every stride-th mbuf, up to max: the first few for the report, a spread for --json. */
typedef struct Collect {
        struct rte_mbuf **mbufs;
        unsigned n, max, stride;
} Collect;

static void collect_mbuf(struct rte_mempool *mp, void *opaque, void *obj, unsigned idx) {
        Collect *c = opaque;

        if (c->n < c->max && idx % c->stride == 0)
                c->mbufs[c->n++] = obj;
}

/*
 * The largest pool that fits: objects never straddle a page (the mempool keeps them
 * IOVA-contiguous: rte_mempool_populate_virt() in 22.11), so whole objects per page, minus the
 * pages the mempool's ring (8 bytes per slot, a power of two), its header with 128 per-lcore
 * caches and our probes take. The same formula in both modes, so the benchmark compares equal
 * pools.
 */
static unsigned pool_fill(size_t size, size_t page_size) {
        struct rte_mempool_objsz sz;
        uint32_t obj = rte_mempool_calc_obj_size(sizeof(struct rte_mbuf) + RTE_MBUF_DEFAULT_BUF_SIZE,
                                                 0, &sz);
        size_t pages = size / page_size, per_page = page_size / obj, reserve;
        uint64_t n = per_page * pages;

        reserve = ((size_t) rte_align64pow2(n + 1) * sizeof(void *) + (UINT64_C(4) << 20)) / page_size + 1;
        if (reserve >= pages)
                return 0;
        return (unsigned) RTE_MIN(per_page * (pages - reserve), (size_t) UINT32_MAX);
}

static const char *iova_mode_name(void) {
        switch (rte_eal_iova_mode()) {
        case RTE_IOVA_PA: return "PA";
        case RTE_IOVA_VA: return "VA";
        case RTE_IOVA_DC: return "DC";
        default: return "?";
        }
}

static double now_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void wait_for_eof(void) {
        char buf[256];

        while (read(STDIN_FILENO, buf, sizeof(buf)) > 0)
                ;
}

int main(int argc, char *argv[]) {
        Options o;
        noiommu_conn *conn = NULL;
        noiommu_memory *mem = NULL;
        DmaArea area = { .pagemap_fd = -EBADF };
        struct rte_mempool *pool = NULL;
        const struct rte_memzone *mz = NULL;
        void *probe = NULL;
        char *eal_argv[EAL_ARGS_MAX];
        int eal_argc = 0, socket_id, r, ret = EXIT_CHECK;
        bool heap_created = false, heap_added = false, heap_removed = false, eal_up = false;
        unsigned n_mbufs;
        CheckResult res = {};
        Collect col = {};
        const noiommu_segment *segs = NULL;
        size_t n_segs = 0;
        rte_iova_t mz_want = RTE_BAD_IOVA, probe_want = RTE_BAD_IOVA, probe_got = RTE_BAD_IOVA;

        /* where the time goes between main() and a ready pool (the benchmark prints these) */
        double t_start = now_ms(), t_memory = t_start, t_eal, t_heap, t_pool;

        if (parse_options(argc, argv, &o) < 0)
                return EXIT_USAGE;

        /* 1. the memory first: a refusal must not start DPDK at all */
        if (!o.own_hugepages) {
                r = obtain_memory(&o, &conn, &mem);
                if (r != 0)
                        return r;
                r = area_from_memory(mem, &area);
                if (r < 0) {
                        fprintf(stderr, "noiommu-dpdk-extmem: the memory's segment table does not fit "
                                "its pages: %s\n", strerror(-r));
                        goto out;
                }
                segs = noiommu_memory_get_segments(mem, &n_segs);
                t_memory = now_ms();
        }

        /* 2. the EAL */
        eal_argv[eal_argc++] = argv[0];
        if (!o.own_hugepages) {
                /* Nothing of its own: no hugetlbfs (it could not learn their addresses unprivileged
                 * anyway), no PCI bus scan (it would open VFIO nodes itself), no files in the
                 * runtime directory, no telemetry socket. --no-huge implies legacy memory, with
                 * which 22.11 refuses --in-memory; --no-shconf is its equivalent here. IOVA as VA
                 * for the EAL's own (anonymous, non-DMA) memory; the external heap carries the
                 * physical addresses. */
                eal_argv[eal_argc++] = (char *) "--no-huge";
                eal_argv[eal_argc++] = (char *) "--no-shconf";
                eal_argv[eal_argc++] = (char *) "--iova-mode=va";
        } else {
                /* the baseline: DPDK on its own hugepages, physical addresses from pagemap */
                eal_argv[eal_argc++] = (char *) "--in-memory";
                eal_argv[eal_argc++] = (char *) "--iova-mode=pa";
        }
        eal_argv[eal_argc++] = (char *) "--no-pci";
        eal_argv[eal_argc++] = (char *) "--no-telemetry";
        eal_argv[eal_argc++] = (char *) "-l";
        eal_argv[eal_argc++] = (char *) "0";
        for (int i = 0; i < o.n_eal_extra; i++)
                eal_argv[eal_argc++] = o.eal_extra[i];
        eal_argv[eal_argc] = NULL;

        r = rte_eal_init(eal_argc, eal_argv);
        if (r < 0) {
                fprintf(stderr, "noiommu-dpdk-extmem: rte_eal_init() failed: %s\n", rte_strerror(rte_errno));
                goto out;
        }
        eal_up = true;
        t_eal = now_ms();

        if (o.own_hugepages) {
                if (rte_eal_iova_mode() != RTE_IOVA_PA) {
                        fprintf(stderr, "noiommu-dpdk-extmem: --own-hugepages needs IOVA as PA, "
                                "the EAL chose %s (not root?)\n", iova_mode_name());
                        goto out;
                }
                area.pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
                if (area.pagemap_fd < 0) {
                        fprintf(stderr, "noiommu-dpdk-extmem: /proc/self/pagemap: %m\n");
                        goto out;
                }
                area.size = o.size;
                area.page_size = o.hugepage_size ?: UINT64_C(2) << 20;
                socket_id = SOCKET_ID_ANY;
        } else {
                /* 3. the memory, with one IOVA per page, as a heap of its own */
                if (rte_malloc_heap_create(HEAP_NAME) < 0) {
                        fprintf(stderr, "noiommu-dpdk-extmem: rte_malloc_heap_create(): %s\n",
                                rte_strerror(rte_errno));
                        goto out;
                }
                heap_created = true;
                if (rte_malloc_heap_memory_add(HEAP_NAME, area.base, area.size, area.iovas,
                                               (unsigned) area.n_pages, area.page_size) < 0) {
                        fprintf(stderr, "noiommu-dpdk-extmem: rte_malloc_heap_memory_add(): %s\n",
                                rte_strerror(rte_errno));
                        goto out;
                }
                heap_added = true;
                socket_id = rte_malloc_heap_get_socket(HEAP_NAME);
                if (socket_id < 0) {
                        fprintf(stderr, "noiommu-dpdk-extmem: rte_malloc_heap_get_socket(): %s\n",
                                rte_strerror(rte_errno));
                        goto out;
                }
        }

        t_heap = now_ms();

        /* 4. the pool, on that socket */
        n_mbufs = o.n_mbufs ?: pool_fill(area.size, area.page_size);
        if (n_mbufs == 0) {
                fprintf(stderr, "noiommu-dpdk-extmem: %zu bytes hold no pool\n", area.size);
                goto out;
        }
        pool = rte_pktmbuf_pool_create(POOL_NAME, n_mbufs, POOL_CACHE_SIZE, 0,
                                       RTE_MBUF_DEFAULT_BUF_SIZE, socket_id);
        if (!pool) {
                /* EINVAL here is usually a missing mempool driver: in a shared-library DPDK the
                 * default "ring_mp_mc" ops live in librte_mempool_ring, a plugin the EAL loads
                 * from its driver directory (or -d), which a minimal container image may lack */
                fprintf(stderr, "noiommu-dpdk-extmem: rte_pktmbuf_pool_create(%u mbufs on socket %d): %s%s\n",
                        n_mbufs, socket_id, rte_strerror(rte_errno),
                        rte_errno == EINVAL ? " (is the mempool driver librte_mempool_ring loaded? "
                        "the EAL loads it from its driver directory, or pass -- -d PATH)" : "");
                goto out;
        }
        t_pool = now_ms();
        if (o.json)
                printf("{\"ready\":true,\"pid\":%d,\"mbufs\":%u,\"ms\":{\"memory\":%.1f,\"eal\":%.1f,"
                       "\"heap\":%.1f,\"pool\":%.1f}}\n", (int) getpid(), pool->size, t_memory - t_start,
                       t_eal - t_memory, t_heap - t_eal, t_pool - t_heap);
        else
                printf("ready: %u mbufs on socket %d after %.1f ms (memory %.1f, EAL %.1f, heap %.1f, "
                       "pool %.1f)\n", pool->size, socket_id, t_pool - t_start, t_memory - t_start,
                       t_eal - t_memory, t_heap - t_eal, t_pool - t_heap);
        fflush(stdout);

        /* 5. every mbuf, then the other allocation paths a driver uses */
        rte_mempool_obj_iter(pool, check_mbuf, &(CheckCtx) { .area = &area, .result = &res });

        mz = rte_memzone_reserve_aligned(MEMZONE_NAME, 4096, socket_id, RTE_MEMZONE_IOVA_CONTIG, 4096);
        if (!mz) {
                fprintf(stderr, "noiommu-dpdk-extmem: rte_memzone_reserve_aligned(): %s\n",
                        rte_strerror(rte_errno));
                goto out;
        }
        mz_want = expected_iova(&area, mz->addr);
        probe = rte_malloc_socket("noiommud_probe", 4096, 4096, socket_id);
        if (!probe) {
                fprintf(stderr, "noiommu-dpdk-extmem: rte_malloc_socket(): %s\n", rte_strerror(rte_errno));
                goto out;
        }
        probe_want = expected_iova(&area, probe);
        probe_got = rte_malloc_virt2iova(probe);

        col.max = o.json ? o.sample : o.show;
        col.stride = o.json && o.sample > 0 ? RTE_MAX(pool->size / o.sample, 1U) : 1;
        col.mbufs = calloc(col.max ?: 1, sizeof(struct rte_mbuf *));
        if (!col.mbufs)
                goto out;
        rte_mempool_obj_iter(pool, collect_mbuf, &col);

        if (o.json) {
                printf("{\"mbufs\":%u,\"checked\":%u,\"bad\":%u,\"virt2iovaDiffers\":%u,"
                       "\"iovaMode\":\"%s\",\"socket\":%d,\"uid\":%u,\"version\":\"%s\","
                       "\"memzone\":{\"va\":%" PRIu64 ",\"iova\":%" PRIu64 ",\"expected\":%" PRIu64 "},"
                       "\"malloc\":{\"va\":%" PRIu64 ",\"iova\":%" PRIu64 ",\"expected\":%" PRIu64 "},"
                       "\"area\":{\"va\":%" PRIu64 ",\"size\":%zu,\"pageSize\":%zu},\"sample\":[",
                       pool->size, res.checked, res.bad, res.virt2iova_differs, iova_mode_name(),
                       socket_id, (unsigned) getuid(), rte_version(),
                       (uint64_t) (uintptr_t) mz->addr, (uint64_t) mz->iova, (uint64_t) mz_want,
                       (uint64_t) (uintptr_t) probe, (uint64_t) probe_got, (uint64_t) probe_want,
                       (uint64_t) (uintptr_t) area.base, area.size, area.page_size);
                for (unsigned i = 0; i < col.n; i++)
                        printf("%s{\"va\":%" PRIu64 ",\"iova\":%" PRIu64 ",\"len\":%u}", i ? "," : "",
                               (uint64_t) (uintptr_t) col.mbufs[i]->buf_addr,
                               (uint64_t) col.mbufs[i]->buf_iova, col.mbufs[i]->buf_len);
                /* the table DPDK was given, so that a test can hold it against pagemap */
                printf("],\"memory\":\"%s\",\"segments\":[", mem ? noiommu_memory_get_id(mem) : "");
                for (size_t i = 0; i < n_segs; i++)
                        printf("%s{\"offset\":%" PRIu64 ",\"length\":%" PRIu64 ",\"dmaAddress\":%" PRIu64 "}",
                               i ? "," : "", segs[i].offset, segs[i].length, segs[i].dma_address);
                printf("]%s\n", res.bad ? ",\"error\":\"mbuf IOVA mismatch\"}" : "}");
        } else {
                printf("%s, EAL as uid %u, IOVA mode %s%s\n", rte_version(), (unsigned) getuid(),
                       iova_mode_name(), o.own_hugepages ? ", own hugepages" :
                       ", no hugepages or PCI of its own");
                if (mem) {
                        printf("noiommud memory %s: %zu bytes, %zu pages of %zu KiB, %s addresses, "
                               "%zu segments\n", noiommu_memory_get_id(mem), area.size, area.n_pages,
                               area.page_size >> 10,
                               noiommu_address_kind_to_string(noiommu_memory_get_address_kind(mem)),
                               n_segs);
                        printf("  %-4s %-12s %-12s %-18s %s\n", "seg", "offset", "length", "dma address",
                               "virtual address");
                        for (size_t i = 0; i < n_segs && i < SHOW_SEGMENTS; i++)
                                printf("  %-4zu 0x%-10" PRIx64 " 0x%-10" PRIx64 " 0x%-16" PRIx64 " %p\n",
                                       i, segs[i].offset, segs[i].length, segs[i].dma_address,
                                       (void *) (area.base + segs[i].offset));
                        if (n_segs > SHOW_SEGMENTS)
                                printf("  ... %zu more\n", n_segs - SHOW_SEGMENTS);
                        printf("heap \"%s\" = socket %d\n", HEAP_NAME, socket_id);
                }
                printf("mbuf pool \"%s\": %u mbufs, %u-byte buffers\n", POOL_NAME, pool->size,
                       (unsigned) RTE_MBUF_DEFAULT_BUF_SIZE);
                printf("  %-6s %-18s %-10s %-18s %s\n", "mbuf", "buf_addr", "offset", "buf_iova", "expected");
                for (unsigned i = 0; i < col.n; i++) {
                        struct rte_mbuf *mb = col.mbufs[i];

                        printf("  %-6u %-18p 0x%-8tx 0x%-16" PRIx64 " 0x%" PRIx64 "\n", i, mb->buf_addr,
                               area.base ? (uint8_t *) mb->buf_addr - area.base : 0,
                               (uint64_t) mb->buf_iova, (uint64_t) expected_iova(&area, mb->buf_addr));
                }
                printf("memzone iova 0x%" PRIx64 " (expected 0x%" PRIx64 "), rte_malloc_virt2iova 0x%"
                       PRIx64 " (expected 0x%" PRIx64 ")\n", (uint64_t) mz->iova, (uint64_t) mz_want,
                       (uint64_t) probe_got, (uint64_t) probe_want);
                printf("checked %u of %u mbufs: %u with a wrong buf_iova; rte_mem_virt2iova() differs "
                       "from buf_iova for %u (IOVA mode %s)\n", res.checked, pool->size, res.bad,
                       res.virt2iova_differs, iova_mode_name());
        }
        fflush(stdout);

        if (res.bad > 0)
                fprintf(stderr, "noiommu-dpdk-extmem: %u mbufs do not carry the DMA address of their "
                        "buffer; first: %s\n", res.bad, res.first_bad);
        else if (res.checked != pool->size)
                fprintf(stderr, "noiommu-dpdk-extmem: checked %u mbufs of %u\n", res.checked, pool->size);
        else if (mz->iova != mz_want || probe_got != probe_want)
                fprintf(stderr, "noiommu-dpdk-extmem: memzone or rte_malloc IOVA is wrong\n");
        else
                ret = EXIT_SUCCESS;

        if (o.hold)
                wait_for_eof();

out:
        /* 6. shutdown: nothing may live on the heap when its memory goes */
        free(col.mbufs);
        rte_free(probe);
        if (mz && rte_memzone_free(mz) < 0) {
                fprintf(stderr, "noiommu-dpdk-extmem: rte_memzone_free() failed\n");
                ret = EXIT_CHECK;
        }
        rte_mempool_free(pool);
        /* removes the memory from the heap and unregisters it from the EAL's memseg lists,
         * before noiommud unpins it */
        if (heap_added) {
                if (rte_malloc_heap_memory_remove(HEAP_NAME, area.base, area.size) < 0) {
                        fprintf(stderr, "noiommu-dpdk-extmem: rte_malloc_heap_memory_remove(): %s\n",
                                rte_strerror(rte_errno));
                        ret = EXIT_CHECK;
                } else
                        heap_removed = true;
        }
        if (heap_created && rte_malloc_heap_destroy(HEAP_NAME) < 0) {
                fprintf(stderr, "noiommu-dpdk-extmem: rte_malloc_heap_destroy(): %s\n",
                        rte_strerror(rte_errno));
                ret = EXIT_CHECK;
        }
        if (mem) {
                /* a failed removal above leaves DPDK holding the pages: do not free them under it */
                if (!heap_added || heap_removed) {
                        r = noiommu_free(conn, mem);
                        if (r < 0) {
                                broker_error(conn, "freeing the memory", r);
                                ret = EXIT_CHECK;
                        }
                } else
                        mem = noiommu_memory_unref(mem);
        }
        conn = noiommu_disconnect(conn);
        free(area.iovas);
        if (area.pagemap_fd >= 0)
                close(area.pagemap_fd);
        if (eal_up)
                (void) rte_eal_cleanup();
        return ret;
}
