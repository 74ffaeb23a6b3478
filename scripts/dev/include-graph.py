#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The daemon's module graph from its #include lines, and the length of its functions.

A module is a .c file and the .h of the same name in daemon/ (conn.c + conn.h = "conn"). An
edge A -> B means a file of A includes B's header with #include "B.h" (system and
client/internal headers are not modules here). The graph must be acyclic: a cycle means two
modules that cannot be understood, tested or linked without each other (issue 9).

Usage: include-graph.py [--dot] [--max-function-lines N [--exclude FILE.c]...] DIR
Exit status: 0 when there is no cycle (and, with --max-function-lines, no function longer than
N lines), 1 otherwise; the offending cycles and functions are printed.
"""

import argparse
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def modules(root):
    mods = {}
    for name in sorted(os.listdir(root)):
        base, ext = os.path.splitext(name)
        if ext in (".c", ".h"):
            mods.setdefault(base, []).append(os.path.join(root, name))
    return mods


def edges(root, mods):
    graph = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            with open(f, encoding="utf-8") as fh:
                for inc in INCLUDE.findall(fh.read()):
                    target = os.path.splitext(os.path.basename(inc))[0]
                    if "/" not in inc and inc.endswith(".h") and target in mods and target != m:
                        graph[m].add(target)
    return graph


def cycles(graph):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out, n = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


SIGNATURE = re.compile(r'^[A-Za-z_][\w \t*]*?\b([A-Za-z_]\w*)\s*\(')


def function_lengths(lines):
    """(line index, name, length) of each function body in a C file's lines: a function starts
    at a line at column 0 that opens a signature (an identifier and "(", no "=" before it), may
    wrap over several lines, and ends at the next line that is "}" at column 0. Lengths count
    from the signature's first line to the closing brace."""
    found, start, fname = [], None, None
    for i, line in enumerate(lines):
        if start is None:
            m = SIGNATURE.match(line)
            if m and not line.rstrip().endswith(";") and "=" not in line[:m.end()]:
                start, fname = i, m.group(1)
        elif line.rstrip() == "}":
            found.append((start, fname, i - start + 1))
            start = None
        elif line.startswith("}") or (line[:1].isalpha() and line.rstrip().endswith(";")):
            start = None        # a declaration or the end of an initializer, not a body
    return found


def long_functions(root, limit, exclude=()):
    """(file, line, name, length) of every function body longer than limit lines, and the number
    of functions measured."""
    found, measured = [], 0
    for name in sorted(os.listdir(root)):
        if not name.endswith(".c") or name in exclude:
            continue
        path = os.path.join(root, name)
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
        for start, fname, length in function_lengths(lines):
            measured += 1
            if length > limit:
                found.append((path, start + 1, fname, length))
    return found, measured


SELF_TEST = """static const int table[] = {
        1, 2,
};
int prototype(int a);
static int wrapped_signature(int a,
                             int b) {
        if (a)
                return b;
        return 0;
}
Thing *one_line(void) {
        return NULL;
}
"""


def self_test():
    got = [(n, l) for _, n, l in function_lengths(SELF_TEST.split("\n"))]
    assert got == [("wrapped_signature", 6), ("one_line", 3)], got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--dot", action="store_true", help="print the graph in Graphviz format")
    ap.add_argument("--max-function-lines", type=int, default=0)
    ap.add_argument("--exclude", action="append", default=[],
                    help="a .c file whose functions are not measured (still part of the graph)")
    args = ap.parse_args()

    mods = modules(args.root)
    graph = edges(args.root, mods)
    if args.dot:
        print("digraph daemon {")
        for m in sorted(graph):
            for t in sorted(graph[m]):
                print('  "%s" -> "%s";' % (m, t))
        print("}")

    bad = False
    for comp in cycles(graph):
        bad = True
        print("include cycle among: %s" % " ".join(comp))
        for m in comp:
            print("  %s -> %s" % (m, " ".join(sorted(t for t in graph[m] if t in comp))))
    if args.max_function_lines:
        self_test()
        found, measured = long_functions(args.root, args.max_function_lines, args.exclude)
        # The daemon has hundreds of functions: measuring only a few means the parser broke.
        if measured < 100:
            bad = True
            print("only %d functions measured in %s: the signature parser is broken" % (measured, args.root))
        for path, line, fname, length in found:
            bad = True
            print("%s:%d: %s() is %d lines (limit %d)" % (path, line, fname, length, args.max_function_lines))
    if not bad:
        print("%d modules, no include cycle%s" % (len(graph), ", no function over %d lines" % args.max_function_lines
                                                   if args.max_function_lines else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
