/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * edu-client: an unprivileged noiommud client that drives QEMU's edu device for real.
 *
 * Runs inside the vm tier's guest (tests/vm/guest-daemon.sh) as "nobody", against the real
 * noiommud, dbus-daemon and polkitd. Everything it touches it got from the daemon:
 *
 *   1. connect to the daemon's socket; AcquireDevice(BDF) -> lease + pre-bound device fd;
 *   2. AllocateMemory(2 MiB, lease) through libnoiommu -> sealed hugetlb memfd, mapped, with the
 *      DMA address table (physical addresses in noiommu mode, IOVAs behind the vIOMMU);
 *   3. through the device fd: BAR0 mmap (region 0), identity check, Bus Master on (config
 *      region 7, PCI_COMMAND), MSI on an eventfd (SET_IRQS, index 1);
 *   4. edu DMA with the dmaAddress the daemon reported: RAM -> edu from one offset, edu -> RAM
 *      to another, with an MSI on completion; the bytes must land and the MSI must fire;
 *   5. teardown (MSI off, Bus Master off, close the device fd), ReleaseDevice, disconnect.
 *
 * It prints the acquire latencies it measured: connect -> device fd received, and connect ->
 * 2 MiB memory received, in microseconds (one "LATENCY" line).
 *
 * Usage: edu-client SOCKET BDF [OPTIONS]
 *   --expect-kind physical|iova  the addressKind the daemon must report
 *   --expect-backend NAME        the backend the daemon must report for the device
 *   --hold                       after a successful DMA print "READY <pid>" and block (until
 *                                killed; the guest script kills it with SIGKILL mid-lease)
 *   --inflight                   with --hold: after READY keep edu -> RAM DMAs into the memory
 *                                running back to back, so the kill lands while one is in flight
 *   --probe-on-usr1              with --hold: on each SIGUSR1 make one more full DMA round trip
 *                                (new pattern, every byte compared) and print "PROBE <n> ok" or
 *                                "PROBE <n> FAIL" (vm-restart: DMA still lands after the daemon
 *                                was killed and restarted); re-arms the alarm after each probe
 *   --no-release                 end the lease by disconnecting instead of ReleaseDevice
 *   (with --hold, SIGUSR2 ends the hold: the DMAs stop, the device is torn down and the lease
 *   ends by ReleaseDevice, or by disconnecting with --no-release; the exit status tells)
 *   --expect-denied              AcquireDevice must fail with io.noiommud.Broker.PermissionDenied
 *                                (exit 0 if it does)
 *   --tag NAME                   prefix of every output line (default "edu-client")
 *
 * Output: one line per check ("ok"/"FAIL"), "LEASE <id>", "LATENCY ...", "READY <pid>" (hold),
 * and a final "N passed, N failed". Exit status 0 only if every check passed, 1 otherwise.
 * Every wait has a deadline and the process arms alarm(): it never hangs the VM run.
 *
 * The device side goes through libnoiommu's lease API (noiommu_acquire_device(),
 * noiommu_release_device(), LIBNOIOMMU_0.2): the device fd is the lease's, borrowed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "noiommu/noiommu.h"
#include "vmclient.h"

#define INFLIGHT_OFFSET         UINT64_C(0x180000)      /* the --inflight transfer's target */
#define CLIENT_ALARM_S          90      /* also bounds --hold */

/* The device and the output helpers are in edu.c, the memory in vmclient.c (shared with
 * hostile-client). */

static volatile sig_atomic_t probe_requested;
static volatile sig_atomic_t release_requested;

static void on_usr1(int sig) {
        (void) sig;
        probe_requested = 1;
}

static void on_usr2(int sig) {
        (void) sig;
        release_requested = 1;
}

/* ---- main -------------------------------------------------------------------------------------- */

typedef struct Options {
        ClientArgs args;        /* SOCKET BDF, --expect-backend, --tag */
        const char *expect_kind;
        bool hold;
        bool inflight;
        bool probe_on_usr1;
        bool release;
        bool expect_denied;
} Options;

static int own_option(void *userdata, int argc, char **argv, int *i) {
        Options *o = userdata;
        const char *a = argv[*i];

        if (!strcmp(a, "--hold"))
                o->hold = true;
        else if (!strcmp(a, "--inflight"))
                o->inflight = true;
        else if (!strcmp(a, "--probe-on-usr1"))
                o->probe_on_usr1 = true;
        else if (!strcmp(a, "--no-release"))
                o->release = false;
        else if (!strcmp(a, "--expect-denied"))
                o->expect_denied = true;
        else if (!strcmp(a, "--expect-kind") && *i + 1 < argc)
                o->expect_kind = argv[++*i];
        else
                return 0;
        return 1;
}

static int parse_options(int argc, char **argv, Options *o) {
        *o = (Options) { .release = true };
        return parse_client_args(argc, argv, &o->args, own_option, o);
}

int main(int argc, char **argv) {
        noiommu_alloc_options ao;
        noiommu_memory *m = NULL;
        noiommu_lease *l = NULL;
        noiommu_conn *c = NULL;
        Edu e = { .dev_fd = -1, .irq_fd = -1 };
        const char *backend = NULL, *kind;
        uint64_t t0, t_dev, t_mem;
        size_t n_segs;
        Options o;
        long nz;
        int r;

        setvbuf(stdout, NULL, _IOLBF, 0);
        tag = "edu-client";
        if (parse_options(argc, argv, &o) < 0) {
                fprintf(stderr, "usage: %s SOCKET BDF [--expect-kind physical|iova] [--expect-backend NAME] "
                        "[--hold [--inflight] [--probe-on-usr1]] [--no-release] [--expect-denied] [--tag NAME]\n", argv[0]);
                return 1;
        }
        alarm(CLIENT_ALARM_S);
        info("uid %u, pid %i, device %s, socket %s", (unsigned) getuid(), (int) getpid(), o.args.bdf, o.args.socket);

        /* ---- acquire: connect -> device fd -> 2 MiB memory, timed ---- */
        t0 = now_usec();
        r = noiommu_connect(o.args.socket, &c);
        if (!check(r == 0, "connected to noiommud%s%s", r ? ": " : "", r ? errstr(r) : ""))
                goto finish;

        r = noiommu_acquire_device(c, o.args.bdf, 0, &l);
        t_dev = now_usec();
        if (o.expect_denied) {
                const char *err = r < 0 ? noiommu_last_error(c) : NULL;

                check(r == -EACCES && err && strcmp(err, NOIOMMU_ERROR_PERMISSION_DENIED) == 0,
                      "AcquireDevice as uid %u is refused with PermissionDenied: %s %s (%s)", (unsigned) getuid(),
                      r < 0 ? errstr(r) : "GRANTED", err ?: "-", r < 0 ? (noiommu_last_error_parameters(c) ?: "-") : "-");
                goto finish;
        }
        if (!check(r == 0, "AcquireDevice(%s): %s%s%s%s%s", o.args.bdf, r == 0 ? "granted" : errstr(r),
                   r < 0 && noiommu_last_error(c) ? " " : "", r < 0 ? (noiommu_last_error(c) ?: "") : "",
                   r < 0 && noiommu_last_error(c) ? " " : "", r < 0 ? (noiommu_last_error_parameters(c) ?: "") : ""))
                goto finish;
        e.dev_fd = noiommu_lease_get_fd(l);
        backend = noiommu_lease_get_backend(l);
        info("LEASE %s", noiommu_lease_get_id(l));
        check(e.dev_fd >= 0 && strcmp(noiommu_lease_get_address(l), o.args.bdf) == 0 &&
              noiommu_lease_get_vendor_id(l) == 0x1234 && noiommu_lease_get_device_id(l) == 0x11e8,
              "lease: device fd %i, %s %04x:%04x, driver %s, backend %s, iommu group %i", e.dev_fd,
              noiommu_lease_get_address(l), (unsigned) noiommu_lease_get_vendor_id(l),
              (unsigned) noiommu_lease_get_device_id(l), noiommu_lease_get_driver(l) ?: "?", backend ?: "?",
              noiommu_lease_get_iommu_group(l));
        if (o.args.expect_backend)
                check(backend && strcmp(backend, o.args.expect_backend) == 0, "backend is %s (want %s)",
                      backend ?: "(none)", o.args.expect_backend);

        noiommu_alloc_options_init(&ao);
        ao.lease = noiommu_lease_get_id(l);
        r = noiommu_allocate(c, MEM_SIZE, &ao, &m);
        t_mem = now_usec();
        if (!check(r == 0, "AllocateMemory(2 MiB, lease): %s%s%s", r == 0 ? "granted" : errstr(r),
                   r < 0 && noiommu_last_error(c) ? " " : "", r < 0 ? (noiommu_last_error(c) ?: "") : ""))
                goto finish;

        printf("%s: LATENCY backend=%s device_fd_us=%" PRIu64 " memory_us=%" PRIu64 "\n", tag, backend ?: "?",
               t_dev - t0, t_mem - t0);

        kind = noiommu_address_kind_to_string(noiommu_memory_get_address_kind(m));
        (void) noiommu_memory_get_segments(m, &n_segs);
        info("memory %s: %" PRIu64 " bytes, %zu segment(s), addressKind %s, first dmaAddress 0x%" PRIx64,
             noiommu_memory_get_id(m), noiommu_memory_get_size(m), n_segs, kind ?: "?",
             noiommu_memory_get_segments(m, NULL)[0].dma_address);
        if (o.expect_kind)
                check(kind && strcmp(kind, o.expect_kind) == 0, "addressKind is %s (want %s)", kind ?: "?", o.expect_kind);
        /* Fresh hugetlb pages are zeroed: whatever an earlier client's DMA wrote is gone. */
        nz = first_nonzero(noiommu_memory_get_address(m), MEM_SIZE);
        check(nz < 0, "the 2 MiB granted are all zero%s", nz < 0 ? "" : ": NOT ZERO");

        /* ---- the device ---- */
        if (edu_setup(&e) < 0)
                goto finish;
        if (!roundtrip(&e, m, (uint8_t) getpid()))
                goto finish;

        if (o.hold) {
                uint64_t dst = 0;

                printf("%s: %u passed, %u failed\n", tag, n_pass, n_fail);
                if (o.inflight && !dma_address_of(m, INFLIGHT_OFFSET, DMA_LEN, &dst))
                        o.inflight = false;
                if (o.inflight)
                        info("from now on edu -> RAM DMAs to dmaAddress 0x%" PRIx64 " back to back (~100 ms each), "
                             "so a kill lands while one is in flight", dst);
                if (o.probe_on_usr1) {
                        /* No SA_RESTART: pause() returns, and the loop below runs the probe. */
                        struct sigaction sa = { .sa_handler = on_usr1 };

                        sigemptyset(&sa.sa_mask);
                        if (!check(sigaction(SIGUSR1, &sa, NULL) == 0, "SIGUSR1 handler installed"))
                                goto finish;
                }
                {
                        /* SIGUSR2: stop holding and release (vm-systemd: the client outlives a
                         * daemon restart and ends its lease itself). No SA_RESTART either. */
                        struct sigaction sa = { .sa_handler = on_usr2 };

                        sigemptyset(&sa.sa_mask);
                        if (!check(sigaction(SIGUSR2, &sa, NULL) == 0, "SIGUSR2 handler installed"))
                                goto finish;
                }
                printf("READY %i\n", (int) getpid());
                fflush(stdout);
                /* Until SIGKILL (or SIGALRM as a backstop). With --inflight the engine is kept
                 * busy: a new transfer starts as soon as the previous one ends. */
                for (unsigned probes = 0;;) {
                        if (release_requested) {
                                if (o.inflight)
                                        (void) dma_wait(&e);
                                info("SIGUSR2: ending the hold after %u probe(s)", probes);
                                break;
                        }
                        if (probe_requested) {
                                bool ok;

                                probe_requested = 0;
                                probes++;
                                ok = roundtrip(&e, m, (uint8_t) (getpid() + 17 * probes));
                                printf("%s: PROBE %u %s\n", tag, probes, ok ? "ok" : "FAIL");
                                fflush(stdout);
                                alarm(CLIENT_ALARM_S);
                                continue;
                        }
                        if (!o.inflight) {
                                pause();
                                continue;
                        }
                        dma_start(&e, EDU_BUF_ADDR, dst, DMA_LEN, EDU_DMA_TO_RAM);
                        (void) dma_wait(&e);
                }
        }

        /* ---- release ---- */
finish:
        edu_teardown(&e);
        if (l && o.release) {
                r = noiommu_release_device(c, l);
                check(r == 0, "ReleaseDevice (noiommu_release_device)%s%s", r ? ": " : "", r ? errstr(r) : "");
        } else if (l) {
                info("ending the lease by disconnecting");
                l = noiommu_lease_unref(l);
        }
        m = noiommu_memory_unref(m);
        c = noiommu_disconnect(c);

        printf("%s: %u passed, %u failed\n", tag, n_pass, n_fail);
        return n_fail == 0 && n_pass > 0 ? 0 : 1;
}
