/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hostile-client: an unprivileged noiommud client that attacks its own lease's DMA context.
 *
 * Runs inside the vm tier's guest (tests/vm/guest-hostile.sh) as "nobody" against the real
 * noiommud, dbus-daemon and polkitd, on a Linux 7.3 kernel where edu is served through the
 * noiommu cdev (backend cdev-noiommu: the daemon's iommufd, IOAS and page table; the client
 * holds only the bound device fd). linux-7.3.md, "Hazard: DETACH by the client": whoever holds
 * the device fd can detach it from its page table, and with an automatic HWPT that unpins every
 * mapping of the IOAS. The daemon's pin must not depend on anything the client does with its fd.
 *
 *   1. AcquireDevice(BDF) -> lease + device fd; AllocateMemory(2 MiB, lease): the "original"
 *      memory; edu set up (BAR0, Bus Master, MSI); a DMA round trip at the reported addresses;
 *   2. for each hostile call (--calls): make the call on the device fd (or on /dev/iommu) and
 *      print "HOSTILE <call> rc=<errno name or 0>" with the kernel's answer; then
 *        - DMA both ways (and the MSI) at the ORIGINALLY reported addresses of the original
 *          memory: the bytes must land in this process's own pages;
 *        - AllocateMemory(2 MiB, lease) again: it must be granted with physical addresses, and
 *          DMA both ways at those must land too;
 *        - with --sync, print "PAGEMAP ..." for both and "SYNC <call>", and wait for a line on
 *          stdin: the guest script (root) compares the addresses with /proc/PID/pagemap and
 *          the daemon's VmPin meanwhile;
 *        - FreeMemory for the new memory (the daemon keeps it pinned until the lease's
 *          quiesce: noiommu memory a device could reach is never freed before that);
 *        - one line "TAG: PASS after <call>: ..." or "TAG: FAIL after <call>: ...";
 *   3. exit WITHOUT any teardown (Bus Master and MSI left on, no ReleaseDevice): the daemon
 *      must quiesce the device before it frees anything, whatever state the calls left.
 *
 * Calls (comma-separated for --calls; the default is all of them, in this order, which needs
 * 1 + 15 hugepages of 2 MiB -- guest-hostile.sh splits them over two leases):
 *   detach          VFIO_DEVICE_DETACH_IOMMUFD_PT
 *   attach-bogus    VFIO_DEVICE_ATTACH_IOMMUFD_PT to id 0xdead
 *   attach-ids      attach-1 ... attach-8 (each its own call): the daemon's device, IOAS and
 *                   HWPT ids are small integers in its iommufd, allocated from 1
 *   attach-N        VFIO_DEVICE_ATTACH_IOMMUFD_PT to id N
 *   iommu-open      open /dev/iommu; if that works, also "bind-own-iommufd" (BIND the device
 *                   to the client's own iommufd) and "hw-info-iommufd" (IOMMU_GET_HW_INFO there)
 *   attach-pasid    ATTACH with VFIO_DEVICE_ATTACH_PASID (pasid 1) to the first id an earlier
 *                   attach-N was granted, else to 2 (the daemon's IOAS: device 1, IOAS 2, ...)
 *   detach-pasid    DETACH with VFIO_DEVICE_DETACH_PASID (pasid 1)
 *   hw-info-devfd   IOMMU_GET_HW_INFO issued on the device fd
 *   attach-ro       ATTACH (same id as attach-pasid) with the argument in a read-only page: the
 *                   kernel attaches, fails to write pt_id back (EFAULT) and detaches again --
 *                   a DETACH in disguise
 *
 * Usage: hostile-client SOCKET BDF [--calls LIST] [--expect-backend NAME] [--sync] [--tag NAME]
 *
 * Output: edu.c's "TAG: ok/FAIL: ..." check lines, "LEASE <id>", "HOSTILE <call> rc=<...>",
 * "PAGEMAP <call> <original|new> pid=P va=0x.. dma=0x.. len=0x..", "SYNC <call>" (--sync),
 * "TAG: PASS after <call>" / "TAG: FAIL after <call>", and a final "N passed, N failed".
 * Exit status 0 only if every check passed. alarm() bounds every step.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "noiommu/noiommu.h"
#include "vmclient.h"
#include "vfio-uapi-min.h"

#define STEP_ALARM_S            60      /* per step, re-armed before each */
#define BOGUS_PT_ID             0xdeadU
#define SMALL_IDS_MAX           8
#define PASID                   1U
#define DEFAULT_PT_ID           2U      /* the daemon's IOAS: BIND makes device 1, then IOAS 2 */
#define CALLS_MAX               32
#define SEGMENTS_MAX            16

static const char *const default_calls =
        "detach,attach-bogus,attach-ids,iommu-open,attach-pasid,detach-pasid,hw-info-devfd,attach-ro";

typedef struct Hostile {
        noiommu_conn *c;
        noiommu_lease *l;
        Edu e;
        noiommu_memory *orig;
        noiommu_segment orig_segs[SEGMENTS_MAX];        /* as first reported */
        size_t n_orig_segs;
        bool sync;
        unsigned round;
        uint32_t granted_pt;    /* first id an ATTACH of ours was granted (0: none yet) */
} Hostile;

/* "EINVAL", or the number if glibc has no name for it. */
static const char *errno_name(int e, char buf[static 16]) {
        const char *n;

        if (e == 0)
                return "0";
        n = strerrorname_np(e);
        if (n)
                return n;
        (void) snprintf(buf, 16, "%d", e);
        return buf;
}

/* One machine-readable line per call: the kernel's answer. */
static void hostile_report(const char *call, int r) {
        char buf[16];

        printf("HOSTILE %s rc=%s\n", call, errno_name(r < 0 ? -r : r, buf));
        fflush(stdout);
}

static int ioctl_errno(int fd, unsigned long req, void *arg) {
        return ioctl(fd, req, arg) < 0 ? -errno : 0;
}

/* ---- the calls ----------------------------------------------------------------------------- */

static int call_detach(Hostile *h, bool pasid) {
        struct vfio_min_detach_pt_73 d = {
                .argsz = sizeof(d),
                .flags = pasid ? VFIO_DEVICE_DETACH_PASID : 0,
                .pasid = pasid ? PASID : 0,
        };

        return ioctl_errno(h->e.dev_fd, VFIO_DEVICE_DETACH_IOMMUFD_PT, &d);
}

static int call_attach(Hostile *h, uint32_t pt_id, bool pasid) {
        struct vfio_min_attach_pt_73 a = {
                .argsz = sizeof(a),
                .flags = pasid ? VFIO_DEVICE_ATTACH_PASID : 0,
                .pt_id = pt_id,
                .pasid = pasid ? PASID : 0,
        };
        int r;

        r = ioctl_errno(h->e.dev_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, &a);
        if (r == 0) {
                info("ATTACH%s to id %" PRIu32 " was granted: the device is now on HWPT %" PRIu32,
                     pasid ? " (PASID)" : "", pt_id, a.pt_id);
                if (h->granted_pt == 0)
                        h->granted_pt = pt_id;
        }
        return r;
}

/* The argument in a read-only page: 7.3's vfio_df_ioctl_attach_pt() attaches (replaces), then
 * copy_to_user(pt_id) fails and it detaches the device on its way out. */
static int call_attach_readonly(Hostile *h, uint32_t pt_id) {
        struct vfio_min_attach_pt_73 *a;
        long pg = sysconf(_SC_PAGESIZE);
        void *p;
        int r;

        p = mmap(NULL, (size_t) pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
                return -errno;
        a = p;
        *a = (struct vfio_min_attach_pt_73) { .argsz = sizeof(*a), .pt_id = pt_id };
        if (mprotect(p, (size_t) pg, PROT_READ) < 0)
                r = -errno;
        else
                r = ioctl_errno(h->e.dev_fd, VFIO_DEVICE_ATTACH_IOMMUFD_PT, a);
        (void) munmap(p, (size_t) pg);
        return r;
}

static int call_hw_info(int fd, uint32_t dev_id) {
        struct iommu_hw_info hw = { .size = sizeof(hw), .dev_id = dev_id };

        return ioctl_errno(fd, IOMMU_GET_HW_INFO, &hw);
}

/* /dev/iommu as this user; with an iommufd of its own, BIND the leased device to it and ask it
 * for the hardware info. Prints its own HOSTILE lines for the sub-calls. */
static int call_iommu_open(void) {
        int fd, r;

        fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
        r = fd < 0 ? -errno : 0;
        hostile_report("iommu-open", r);
        if (fd < 0) {
                info("bind-own-iommufd and hw-info-iommufd not attempted: no iommufd of our own (%s)", errstr(r));
                return r;
        }
        return fd;
}

static void call_iommu_own(Hostile *h, int fd) {
        struct vfio_min_bind_iommufd_73 b = { .argsz = sizeof(b), .iommufd = fd };
        int r;

        r = ioctl_errno(h->e.dev_fd, VFIO_DEVICE_BIND_IOMMUFD, &b);
        hostile_report("bind-own-iommufd", r);
        if (r == 0)
                info("BIND to our own iommufd was granted: device id %" PRIu32, b.out_devid);
        r = call_hw_info(fd, r == 0 ? b.out_devid : 1);
        hostile_report("hw-info-iommufd", r);
}

/* ---- after each call ------------------------------------------------------------------------- */

static void print_pagemap(const char *call, const char *which, const noiommu_memory *m) {
        const noiommu_segment *s;
        uint8_t *base = noiommu_memory_get_address(m);
        size_t n;

        s = noiommu_memory_get_segments(m, &n);
        for (size_t i = 0; i < n; i++)
                printf("PAGEMAP %s %s pid=%i va=0x%" PRIxPTR " dma=0x%" PRIx64 " len=0x%" PRIx64 "\n", call, which,
                       (int) getpid(), (uintptr_t) (base + s[i].offset), s[i].dma_address, s[i].length);
}

/* Hands the guest script a moment to look at pagemap and the daemon's pins. */
static bool sync_point(Hostile *h, const char *call) {
        char line[64];

        if (!h->sync)
                return true;
        printf("SYNC %s\n", call);
        fflush(stdout);
        return check(fgets(line, sizeof(line), stdin) != NULL, "the guest script answered SYNC %s", call);
}

static bool segments_unchanged(Hostile *h) {
        const noiommu_segment *s;
        size_t n;

        s = noiommu_memory_get_segments(h->orig, &n);
        if (n != h->n_orig_segs)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i].offset != h->orig_segs[i].offset || s[i].length != h->orig_segs[i].length ||
                    s[i].dma_address != h->orig_segs[i].dma_address)
                        return false;
        return true;
}

/* The lease keeps working: DMA at the original addresses, and a new allocation that gets
 * addresses and takes DMA. */
static void verify_after(Hostile *h, const char *call) {
        noiommu_alloc_options ao;
        noiommu_memory *m = NULL;
        unsigned fails = n_fail;
        const char *kind, *why = NULL;
        uint64_t first = 0;
        long nz;
        int r;

        h->round++;
        check(segments_unchanged(h), "after %s: the original memory's address table is as first reported", call);
        if (!roundtrip(&h->e, h->orig, (uint8_t) (0x40 + 7 * h->round)))
                why = "DMA at the original addresses";

        noiommu_alloc_options_init(&ao);
        ao.lease = noiommu_lease_get_id(h->l);
        r = noiommu_allocate(h->c, MEM_SIZE, &ao, &m);
        if (!check(r == 0, "after %s: AllocateMemory(2 MiB, lease): %s%s%s%s%s", call,
                   r == 0 ? "granted" : errstr(r),
                   r < 0 && noiommu_last_error(h->c) ? " " : "", r < 0 ? (noiommu_last_error(h->c) ?: "") : "",
                   r < 0 && noiommu_last_error_parameters(h->c) ? " " : "",
                   r < 0 ? (noiommu_last_error_parameters(h->c) ?: "") : "")) {
                why = why ?: "a new allocation into the lease was refused";
        } else {
                kind = noiommu_address_kind_to_string(noiommu_memory_get_address_kind(m));
                first = noiommu_memory_get_segments(m, NULL)[0].dma_address;
                check(kind && strcmp(kind, "physical") == 0, "after %s: new memory %s: addressKind %s, first dmaAddress 0x%" PRIx64,
                      call, noiommu_memory_get_id(m), kind ?: "?", first);
                nz = first_nonzero(noiommu_memory_get_address(m), MEM_SIZE);
                check(nz < 0, "after %s: the new 2 MiB are all zero%s", call, nz < 0 ? "" : ": NOT ZERO");
                if (!roundtrip(&h->e, m, (uint8_t) (0x80 + 11 * h->round)))
                        why = why ?: "DMA at the new memory's addresses";
        }

        print_pagemap(call, "original", h->orig);
        if (m)
                print_pagemap(call, "new", m);
        (void) sync_point(h, call);

        if (m) {
                r = noiommu_free(h->c, m);
                check(r == 0, "after %s: FreeMemory(new)%s%s", call, r ? ": " : "", r ? errstr(r) : "");
        }

        if (n_fail == fails)
                printf("%s: PASS after %s: DMA both ways at the original addresses and at a new allocation's "
                       "(0x%" PRIx64 ") landed in our own pages\n", tag, call, first);
        else
                printf("%s: FAIL after %s: %s\n", tag, call, why ?: "see the FAIL lines above");
        fflush(stdout);
}

/* ---- main ------------------------------------------------------------------------------------ */

typedef struct Options {
        ClientArgs args;        /* SOCKET BDF, --expect-backend, --tag */
        const char *calls;
        bool sync;
} Options;

static int own_option(void *userdata, int argc, char **argv, int *i) {
        Options *o = userdata;
        const char *a = argv[*i];

        if (!strcmp(a, "--sync"))
                o->sync = true;
        else if (!strcmp(a, "--calls") && *i + 1 < argc)
                o->calls = argv[++*i];
        else
                return 0;
        return 1;
}

static int parse_options(int argc, char **argv, Options *o) {
        *o = (Options) { .calls = default_calls };
        return parse_client_args(argc, argv, &o->args, own_option, o);
}

/* Splits the list into call names, expanding attach-ids; -EINVAL for an unknown name. */
static int parse_calls(const char *list, char names[CALLS_MAX][24], size_t *ret_n) {
        char buf[512], *save = NULL;
        size_t n = 0;

        if (strlen(list) >= sizeof(buf))
                return -EINVAL;
        strcpy(buf, list);
        for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                unsigned id;
                char end;

                if (!strcmp(t, "attach-ids")) {
                        for (unsigned i = 1; i <= SMALL_IDS_MAX; i++) {
                                if (n >= CALLS_MAX)
                                        return -E2BIG;
                                (void) snprintf(names[n++], 24, "attach-%u", i);
                        }
                        continue;
                }
                if (strcmp(t, "detach") && strcmp(t, "attach-bogus") && strcmp(t, "iommu-open") &&
                    strcmp(t, "attach-pasid") && strcmp(t, "detach-pasid") && strcmp(t, "hw-info-devfd") &&
                    strcmp(t, "attach-ro") && !(sscanf(t, "attach-%u%c", &id, &end) == 1 && id > 0))
                        return -EINVAL;
                if (n >= CALLS_MAX || strlen(t) >= 24)
                        return -E2BIG;
                strcpy(names[n++], t);
        }
        *ret_n = n;
        return n > 0 ? 0 : -EINVAL;
}

static void run_call(Hostile *h, const char *call) {
        uint32_t pt = h->granted_pt ?: DEFAULT_PT_ID;
        unsigned id;
        int r;

        if (!strcmp(call, "detach")) {
                hostile_report(call, call_detach(h, /* pasid= */ false));
        } else if (!strcmp(call, "detach-pasid")) {
                hostile_report(call, call_detach(h, /* pasid= */ true));
        } else if (!strcmp(call, "attach-bogus")) {
                hostile_report(call, call_attach(h, BOGUS_PT_ID, /* pasid= */ false));
        } else if (!strcmp(call, "attach-pasid")) {
                info("attach-pasid: pt_id %" PRIu32 ", pasid %u", pt, PASID);
                hostile_report(call, call_attach(h, pt, /* pasid= */ true));
        } else if (!strcmp(call, "attach-ro")) {
                info("attach-ro: pt_id %" PRIu32 " with the argument in a read-only page", pt);
                hostile_report(call, call_attach_readonly(h, pt));
        } else if (!strcmp(call, "hw-info-devfd")) {
                hostile_report(call, call_hw_info(h->e.dev_fd, 1));
        } else if (!strcmp(call, "iommu-open")) {
                r = call_iommu_open();
                if (r >= 0) {
                        call_iommu_own(h, r);
                        (void) close(r);
                }
        } else if (sscanf(call, "attach-%u", &id) == 1) {
                hostile_report(call, call_attach(h, id, /* pasid= */ false));
        }
}

int main(int argc, char **argv) {
        char calls[CALLS_MAX][24];
        noiommu_alloc_options ao;
        Hostile h = { .e = { .dev_fd = -1, .irq_fd = -1 } };
        const noiommu_segment *s;
        const char *backend, *kind;
        size_t n_calls = 0, n;
        Options o;
        long nz;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        tag = "hostile";
        if (parse_options(argc, argv, &o) < 0 || parse_calls(o.calls, calls, &n_calls) < 0) {
                fprintf(stderr, "usage: %s SOCKET BDF [--calls LIST] [--expect-backend NAME] [--sync] [--tag NAME]\n"
                        "calls: %s, attach-N\n", argv[0], default_calls);
                return 1;
        }
        h.sync = o.sync;
        alarm(STEP_ALARM_S);
        info("uid %u, pid %i, device %s, socket %s, %zu calls", (unsigned) getuid(), (int) getpid(), o.args.bdf,
             o.args.socket, n_calls);
        check(getuid() != 0 && geteuid() != 0, "running unprivileged (uid %u, euid %u)", (unsigned) getuid(),
              (unsigned) geteuid());

        /* ---- the lease, its first memory, edu, one DMA round trip ---- */
        r = noiommu_connect(o.args.socket, &h.c);
        if (!check(r == 0, "connected to noiommud%s%s", r ? ": " : "", r ? errstr(r) : ""))
                goto finish;
        r = noiommu_acquire_device(h.c, o.args.bdf, 0, &h.l);
        if (!check(r == 0, "AcquireDevice(%s): %s%s%s", o.args.bdf, r == 0 ? "granted" : errstr(r),
                   r < 0 && noiommu_last_error(h.c) ? " " : "", r < 0 ? (noiommu_last_error(h.c) ?: "") : ""))
                goto finish;
        h.e.dev_fd = noiommu_lease_get_fd(h.l);
        backend = noiommu_lease_get_backend(h.l);
        info("LEASE %s", noiommu_lease_get_id(h.l));
        check(h.e.dev_fd >= 0, "lease: device fd %i, backend %s", h.e.dev_fd, backend ?: "?");
        if (o.args.expect_backend &&
            !check(backend && strcmp(backend, o.args.expect_backend) == 0, "backend is %s (want %s)",
                   backend ?: "(none)", o.args.expect_backend))
                goto finish;

        noiommu_alloc_options_init(&ao);
        ao.lease = noiommu_lease_get_id(h.l);
        r = noiommu_allocate(h.c, MEM_SIZE, &ao, &h.orig);
        if (!check(r == 0, "AllocateMemory(2 MiB, lease): %s%s%s", r == 0 ? "granted" : errstr(r),
                   r < 0 && noiommu_last_error(h.c) ? " " : "", r < 0 ? (noiommu_last_error(h.c) ?: "") : ""))
                goto finish;
        kind = noiommu_address_kind_to_string(noiommu_memory_get_address_kind(h.orig));
        s = noiommu_memory_get_segments(h.orig, &n);
        check(kind && strcmp(kind, "physical") == 0 && n <= SEGMENTS_MAX,
              "memory %s: addressKind %s, %zu segment(s), first dmaAddress 0x%" PRIx64, noiommu_memory_get_id(h.orig),
              kind ?: "?", n, s[0].dma_address);
        h.n_orig_segs = n < SEGMENTS_MAX ? n : SEGMENTS_MAX;
        memcpy(h.orig_segs, s, h.n_orig_segs * sizeof(*s));
        nz = first_nonzero(noiommu_memory_get_address(h.orig), MEM_SIZE);
        check(nz < 0, "the 2 MiB granted are all zero%s", nz < 0 ? "" : ": NOT ZERO");

        if (edu_setup(&h.e) < 0)
                goto finish;
        if (!roundtrip(&h.e, h.orig, (uint8_t) getpid()))
                goto finish;
        print_pagemap("initial", "original", h.orig);
        if (!sync_point(&h, "initial"))
                goto finish;

        /* ---- the hostile calls, each followed by the proof that the lease still works ---- */
        for (size_t i = 0; i < n_calls; i++) {
                alarm(STEP_ALARM_S);
                run_call(&h, calls[i]);
                verify_after(&h, calls[i]);
        }

        /* ---- no teardown: Bus Master and MSI stay on, no ReleaseDevice; exit ends the lease ---- */
        info("exiting without teardown (Bus Master on, MSI armed, lease not released)");
finish:
        printf("%s: %u passed, %u failed\n", tag, n_pass, n_fail);
        return n_fail == 0 && n_pass > 0 ? 0 : 1;
}
