#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""Counts the calls that cross from one source file into another along one request path.

The path is played by tests/fuzz/fuzz-conn (the real core over a socketpair, the privileged
leaves replaced by the fake backend tests/fake-backend.c), built with -finstrument-functions into a scratch build
directory; a preloaded tracer records every (caller, callee) function pair at run time. A call
counts as crossing when caller and callee are defined in different files, both of them in
daemon/, client/internal/ or the fake backend (which stands for the leaves: polkit, vfio, hugepage,
inventory, Linux audit). Calls from the fuzz harness itself, and callbacks entered from libsystemd
(sd-event), are not counted.

Two inputs are played, each ending with the client hanging up (fuzz-conn's first ending only):
  scenario   AcquireDevice on a noiommu device, AllocateMemory into the lease, hang-up;
  baseline   no request at all (connect, hang-up);
the request path is scenario minus baseline (both include the manager's start and stop).

Usage: cross-file-calls.py SOURCE_TREE SCRATCH_DIR
Prints the counts and the files in the order the scenario first enters them.
"""

import collections
import os
import re
import subprocess
import sys

TRACER = r'''
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <link.h>
#define N 65536
static uintptr_t base; static int have_base;
__attribute__((no_instrument_function)) static int first(struct dl_phdr_info *i, size_t size, void *data) {
        base = (uintptr_t) i->dlpi_addr;        /* the first object is the executable */
        return 1;
}
static struct { uintptr_t a, b; unsigned long n; } pairs[N];
static uintptr_t stack[4096]; static int depth;
static uintptr_t order[N]; static int n_order;
__attribute__((no_instrument_function)) static void note(uintptr_t a, uintptr_t b) {
        unsigned h = (unsigned) ((a * 31 + b) % N);
        while (pairs[h].n && (pairs[h].a != a || pairs[h].b != b)) h = (h + 1) % N;
        if (!pairs[h].n) { pairs[h].a = a; pairs[h].b = b; if (n_order < N) order[n_order++] = b; }
        pairs[h].n++;
}
__attribute__((no_instrument_function)) void __cyg_profile_func_enter(void *fn, void *site) {
        if (!have_base) { dl_iterate_phdr(first, NULL); have_base = 1; }
        uintptr_t f = (uintptr_t) fn - base;
        note(depth > 0 ? stack[depth - 1] : 0, f);
        if (depth < 4096) stack[depth] = f;
        depth++;
}
__attribute__((no_instrument_function)) void __cyg_profile_func_exit(void *fn, void *site) {
        if (depth > 0) depth--;
}
__attribute__((no_instrument_function, destructor)) static void dump(void) {
        const char *p = getenv("TRACE_OUT");
        FILE *f = p ? fopen(p, "w") : NULL;
        if (!f) return;
        for (int i = 0; i < N; i++) if (pairs[i].n) fprintf(f, "p %lx %lx %lu\n", (unsigned long) pairs[i].a, (unsigned long) pairs[i].b, pairs[i].n);
        for (int i = 0; i < n_order; i++) fprintf(f, "o %lx\n", (unsigned long) order[i]);
        fclose(f);
}
'''

COUNTED = re.compile(r"(daemon/[^/]+\.c|client/internal/[^/]+\.c|tests/fake-backend\.c)$")


def build(src, scratch):
    bdir = os.path.join(scratch, "build")
    if not os.path.exists(os.path.join(bdir, "build.ninja")):
        subprocess.run(["meson", "setup", bdir, src, "-Dc_args=-finstrument-functions",
                        "-Dc_link_args=-Wl,--unresolved-symbols=ignore-in-object-files",
                        "-Dwerror=false"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["ninja", "-C", bdir, "tests/fuzz/fuzz-conn-replay"], check=True, stdout=subprocess.DEVNULL)
    tracer = os.path.join(scratch, "tracer.so")
    with open(tracer + ".c", "w") as f:
        f.write(TRACER)
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", tracer, tracer + ".c"], check=True)
    return os.path.join(bdir, "tests/fuzz/fuzz-conn-replay"), tracer


def play(binary, tracer, scratch, name, data):
    d = os.path.join(scratch, "in-" + name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "input"), "wb") as f:
        f.write(data)
    out = os.path.join(scratch, "trace-" + name)
    env = dict(os.environ, LD_PRELOAD=tracer, TRACE_OUT=out, FUZZ_CONN_ONLY_HANGUP="1")
    subprocess.run([binary, d], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pairs, order = [], []
    with open(out) as f:
        for line in f:
            t = line.split()
            if t[0] == "p":
                pairs.append((int(t[1], 16), int(t[2], 16), int(t[3])))
            else:
                order.append(int(t[1], 16))
    return pairs, order


def locate(binary, addrs, src):
    addrs = sorted(set(a for a in addrs if a))
    out = subprocess.run(["addr2line", "-f", "-e", binary] + ["%x" % a for a in addrs],
                         check=True, capture_output=True, text=True).stdout.split("\n")
    where = {}
    for i, a in enumerate(addrs):
        path = out[2 * i + 1].split(":")[0]
        path = os.path.relpath(os.path.realpath(path), os.path.realpath(src)) if path.startswith("/") else path
        where[a] = (out[2 * i], path)
    return where


def crossings(pairs, where, by_pair=None):
    n = 0
    for a, b, count in pairs:
        fa, fb = where.get(a, ("?", "?"))[1], where.get(b, ("?", "?"))[1]
        if COUNTED.search(fa) and COUNTED.search(fb) and fa != fb:
            n += count
            if by_pair is not None:
                by_pair[(os.path.basename(fa), os.path.basename(fb))] += count
    return n


def cycle_modules(src):
    """Modules of daemon/ that are part of an include cycle (scripts/dev/include-graph.py)."""
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    ig = __import__("include-graph")
    mods = ig.modules(os.path.join(src, "daemon"))
    return set(m for comp in ig.cycles(ig.edges(os.path.join(src, "daemon"), mods)) for m in comp)


def main():
    src, scratch = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    os.makedirs(scratch, exist_ok=True)
    binary, tracer = build(src, scratch)
    lease = "0" * 31 + "1"
    scenario = (b'{"method":"io.noiommud.Broker.AcquireDevice","parameters":{"device":"0000:01:00.0"}}\0'
                b'{"method":"io.noiommud.Broker.AllocateMemory","parameters":{"size":2097152,"lease":"' +
                lease.encode() + b'"}}\0')
    res, by_pair = {}, {}
    for name, data in (("baseline", b""), ("scenario", scenario)):
        pairs, order = play(binary, tracer, scratch, name, data)
        where = locate(binary, [a for p in pairs for a in p[:2]] + order, src)
        by_pair[name] = collections.Counter()
        res[name] = crossings(pairs, where, by_pair[name])
        if name == "scenario":
            files = []
            for a in order:
                f = where.get(a, ("?", "?"))[1]
                if COUNTED.search(f) and f not in files:
                    files.append(f)
    print("cross-file calls: scenario %d, baseline (no request) %d, request path %d"
          % (res["scenario"], res["baseline"], res["scenario"] - res["baseline"]))
    print("files, in the order the scenario first enters them: " + " ".join(os.path.basename(f) for f in files))
    cyc = cycle_modules(src)
    path = by_pair["scenario"] - by_pair["baseline"]
    within = sum(n for (a, b), n in path.items()
                 if a[:-2] in cyc and b[:-2] in cyc)
    print("request path: %d calls between files of an include cycle (%s)"
          % (within, " ".join(sorted(cyc)) or "none"))
    print("request path by file pair: " + ", ".join("%s->%s %d" % (a, b, n) for (a, b), n in path.most_common()))


if __name__ == "__main__":
    main()
