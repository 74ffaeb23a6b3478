#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The man pages render without warnings and cover what the programs accept.

For each page built from man/*.scd (NOIOMMU_BUILD_ROOT/man/):

  * `man --warnings=w -l PAGE` (man-db, groff) prints nothing on stderr and exits 0, at 80
    columns, and the NAME line names the page;
  * noiommuctl.1: every command and every option of `noiommuctl --help` (the built binary) is
    a term of COMMANDS or OPTIONS;
  * noiommud.8: every long option of the daemon (`noiommud --help` and the getopt table in
    daemon/main.c) is a term of OPTIONS;
  * noiommud.conf.5: every key daemon/settings.c accepts is a term of KEYS, and every term of
    KEYS is a key it accepts;
  * libnoiommu.3: every symbol of client/lib/libnoiommu.sym and every function of
    include/noiommu/noiommu.h is named in SYNOPSIS and described in DESCRIPTION, and every
    noiommu_*() the page names exists;
  * every page points at the administrator's guide in SEE ALSO.

Pages are read as man renders them, without hyphenation or justification (--nh --nj), so that
a word is never split. Exit 0 pass, 1 fail, 77 when man-db or groff is missing (with the reason).
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("NOIOMMU_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("NOIOMMU_BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build")
CTL = os.environ.get("NOIOMMUCTL_TEST_BINARY") or os.path.join(BUILD_ROOT, "client", "lib", "noiommuctl")
DAEMON = os.environ.get("NOIOMMUD_TEST_BINARY") or os.path.join(BUILD_ROOT, "daemon", "noiommud")
PAGES = ["noiommud.8", "noiommuctl.1", "noiommud.conf.5", "libnoiommu.3"]

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def read(*parts):
    with open(os.path.join(SOURCE_ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def man(page, *args):
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MAN_KEEP_FORMATTING="")
    env.pop("MANPAGER", None)
    env.pop("PAGER", None)
    return subprocess.run(["man", *args, "-l", page], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=env, stdin=subprocess.DEVNULL)


def sections(text):
    """{SECTION NAME: text} of a rendered page (headings start in column 0)."""
    out, name = {}, None
    for line in text.splitlines()[1:]:
        if re.match(r"^[A-Z][A-Z0-9 ]+$", line):
            name = line.strip()
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


def terms(text):
    """The terms of a definition list: lines indented 7 columns (man's default) whose body
    follows indented further; a paragraph's lines are all indented 7."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if not re.match(r"^ {7}\S", line):
            continue
        nxt = next((x for x in lines[i + 1:] if x.strip()), "")
        if re.match(r"^ {8,}\S", nxt):
            out.append(line.strip())
    return out


def help_text(binary):
    r = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        fail("%s --help exited %d: %s" % (binary, r.returncode, r.stderr.decode()))
    return r.stdout.decode()


def check_noiommuctl(sec):
    h = help_text(CTL)
    commands_part = h.split("\nCommands:\n", 1)[1].split("\nOptions:\n", 1)[0]
    options_part = h.split("\nOptions:\n", 1)[1]
    verbs = []
    for line in commands_part.splitlines():
        m = re.match(r"^  (\S+(?: generate)?)", line)
        if m:
            verbs.append(m.group(1))
    options = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-h)\b", options_part)))
    if len(verbs) < 10 or len(options) < 10:
        fail("noiommuctl --help parsed to %d commands and %d options: the parser is broken" %
             (len(verbs), len(options)))
    commands = [t.split()[0] if not t.startswith("cdi ") else "cdi generate" for t in terms(sec.get("COMMANDS", ""))]
    for v in verbs:
        if v not in commands:
            fail("noiommuctl.1: command '%s' of noiommuctl --help is not a term of COMMANDS" % v)
    opt_terms = " ".join(terms(sec.get("OPTIONS", "")))
    for o in options:
        if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), opt_terms):
            fail("noiommuctl.1: option %s of noiommuctl --help is not a term of OPTIONS" % o)
    # The spelling with its argument too ("--socket=PATH", "--hold[=stdin|signal]"): an option
    # that grows an argument must grow it in the page.
    spelled = set()
    for line in options_part.splitlines():
        m = re.match(r"^  (-h --help|\s*--\S.*?)(?:  |$)", line)
        if m:
            spelled.update(t.rstrip(",") for t in m.group(1).split() if t.startswith("-"))
    for o in sorted(spelled):
        if o not in opt_terms.split() and o + "," not in opt_terms.split():
            fail("noiommuctl.1: OPTIONS has no term spelled %s as in noiommuctl --help" % o)
    print("noiommuctl.1: %d commands, %d options (%d spellings) of --help covered"
          % (len(verbs), len(options), len(spelled)))


def check_noiommud(sec):
    h = help_text(DAEMON)
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-h)\b", h))
    table = re.search(r"static const struct option options\[\] = \{(.*?)\};", read("daemon", "main.c"), re.S)
    if not table:
        fail("daemon/main.c: the getopt table was not found")
    else:
        for name in re.findall(r'\{\s*"([a-z-]+)"', table.group(1)):
            options.add("--" + name)
    if len(options) < 5:
        fail("noiommud options parsed to %s: the parser is broken" % sorted(options))
    opt_terms = " ".join(terms(sec.get("OPTIONS", "")))
    for o in sorted(options):
        if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), opt_terms):
            fail("noiommud.8: option %s of the daemon is not a term of OPTIONS" % o)
    print("noiommud.8: %d options covered" % len(options))


def check_conf(sec):
    src = read("daemon", "settings.c")
    keys = set(re.findall(r'streq\(key, "(\w+)"\)', src))
    if len(keys) < 8:
        fail("daemon/settings.c parsed to keys %s: the parser is broken" % sorted(keys))
    documented = set(t.split()[0] for t in terms(sec.get("KEYS", "")))
    for k in sorted(keys - documented):
        fail("noiommud.conf.5: key %s, which the daemon accepts, is not a term of KEYS" % k)
    for k in sorted(documented - keys):
        fail("noiommud.conf.5: KEYS documents %s, which daemon/settings.c does not accept" % k)
    # The examples are configurations the daemon would load: strict JSON objects (no duplicate
    # keys), with keys it accepts.
    examples = re.findall(r"^ {11}\{\n.*?^ {11}\}$", sec.get("EXAMPLE", ""), re.M | re.S)
    if len(examples) < 2:
        fail("noiommud.conf.5: expected two JSON examples in EXAMPLE, found %d" % len(examples))
    for ex in examples:
        def no_duplicates(pairs):
            keys = [k for k, _ in pairs]
            if len(keys) != len(set(keys)):
                raise ValueError("duplicate key in %s" % keys)
            return dict(pairs)
        try:
            obj = json.loads(ex, object_pairs_hook=no_duplicates)
        except ValueError as e:
            fail("noiommud.conf.5: an example is not strict JSON (%s):\n%s" % (e, ex))
            continue
        for k in sorted(set(obj) - keys):
            fail("noiommud.conf.5: an example uses key %s, which the daemon does not accept" % k)
    text = "".join(sec.values())
    for must in ("strict", "JSON", ".conf", "lexical", "drop-in"):
        if must.lower() not in text.lower():
            fail("noiommud.conf.5 does not mention '%s'" % must)
    print("noiommud.conf.5: %d keys covered both ways" % len(keys))


def check_lib(sec):
    sym = re.sub(r"/\*.*?\*/", "", read("client", "lib", "libnoiommu.sym"), flags=re.S)
    symbols = set(re.findall(r"^\s*(noiommu_\w+);", sym, re.M))
    header = read("include", "noiommu", "noiommu.h")
    functions = set(re.findall(r"^[a-z][\w \*]*?\b(noiommu_\w+)\(", header, re.M))
    if len(symbols) < 40 or not symbols <= functions | {"noiommu_alloc_options_init"}:
        fail("libnoiommu.sym parsed to %d symbols, header to %d functions; not in the header: %s" %
             (len(symbols), len(functions), sorted(symbols - functions)))
    synopsis, description = sec.get("SYNOPSIS", ""), sec.get("DESCRIPTION", "")
    for f in sorted(symbols | functions):
        if not re.search(r"\b%s\(" % f, synopsis):
            fail("libnoiommu.3: %s is not in SYNOPSIS" % f)
        if not re.search(r"\b%s\(" % f, description):
            fail("libnoiommu.3: %s is not described in DESCRIPTION" % f)
    named = set(re.findall(r"\b(noiommu_[a-z_]+)\(", "".join(sec.values())))
    for f in sorted(named - functions - symbols):
        fail("libnoiommu.3 names %s(), which the library does not have" % f)
    check_lib_example(sec.get("EXAMPLE", ""))
    for must in ("THREAD SAFETY", "FORK", "RETURN VALUE"):
        if must not in sec:
            fail("libnoiommu.3 has no %s section" % must)
    # The header's error list ("NAME[, .NAME...]   -EXXX", one mapping a line) against the
    # page's RETURN VALUE entries (names in the term, the errno in the body): same errno.
    page_map = {}
    rv = sec.get("RETURN VALUE", "").splitlines()
    for i, line in enumerate(rv):
        if re.match(r"^ {7}\S", line) and i + 1 < len(rv):
            body = next((x for x in rv[i + 1:] if x.strip()), "")
            m = re.match(r"^ {8,}(-E[A-Z0-9]+)\s*$", body)
            term = line
            j = i - 1
            while j >= 0 and re.match(r"^ {7}\S", rv[j]) and not re.match(r"^ {8,}", rv[j + 1] if j + 1 < i else ""):
                term = rv[j] + " " + term      # a term wrapped over several lines
                j -= 1
            if m:
                for name in re.findall(r"[A-Za-z.]*[A-Z]\w+", term):
                    page_map[name.split(".")[-1]] = m.group(1)
    header_map = {}
    for names, errno in re.findall(r"^ \*   ((?:io\.noiommud|org\.varlink)\S*(?:, \.?\w+)*)\s{2,}(-E[A-Z0-9]+)$",
                                   header, re.M):
        for n in names.split(", "):
            header_map[n.split(".")[-1]] = errno
    if len(header_map) < 10:
        fail("include/noiommu/noiommu.h: parsed %d error mappings: the parser is broken" % len(header_map))
    for name, errno in sorted(header_map.items()):
        if page_map.get(name) != errno:
            fail("libnoiommu.3: RETURN VALUE maps %s to %s, the header to %s" % (name, page_map.get(name), errno))
    print("libnoiommu.3: %d symbols, %d header functions covered" % (len(symbols), len(functions)))


def check_lib_example(example):
    """The EXAMPLE program, as the page shows it, compiles without warnings against the public
    headers and links against the built library."""
    lines = example.splitlines()
    start = next((i for i, x in enumerate(lines) if x.strip().startswith("#include")), None)
    if start is None:
        fail("libnoiommu.3: EXAMPLE has no program")
        return
    indent = len(lines[start]) - len(lines[start].lstrip())
    code = "\n".join(x[indent:] for x in lines[start:]) + "\n"
    # meson passes its compiler and sanitizers (cc=..., sanitize=...); standalone: cc.
    opts = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    cc = shlex.split(opts.get("cc") or os.environ.get("CC") or "cc")
    if not shutil.which(cc[0]):
        fail("no C compiler (%s) to check libnoiommu.3's EXAMPLE with" % cc[0])
        return
    sanitize = opts.get("sanitize", "none")
    flags = ["-fsanitize=" + sanitize] if sanitize not in ("", "none") else []
    with tempfile.TemporaryDirectory(prefix="noiommu-man-example.") as d:
        src = os.path.join(d, "example.c")
        with open(src, "w") as f:
            f.write(code)
        r = subprocess.run(cc + flags + ["-std=gnu11", "-Wall", "-Wextra", "-Werror", src,
                            "-I", os.path.join(SOURCE_ROOT, "include"), "-I", os.path.join(BUILD_ROOT, "include"),
                            "-L", os.path.join(BUILD_ROOT, "client", "lib"), "-lnoiommu",
                            "-o", os.path.join(d, "example")],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            fail("libnoiommu.3: EXAMPLE does not build:\n%s\n%s" % (r.stdout.decode(), code))
        else:
            print("libnoiommu.3: EXAMPLE compiles (-Wall -Wextra -Werror) and links against the built library")


def main():
    for tool in ("man", "groff"):
        if not shutil.which(tool):
            print("SKIP: %s is not installed (Debian packages man-db and groff-base, "
                  "scripts/install-deps.sh)" % tool)
            return 77
    checks = {"noiommuctl.1": check_noiommuctl, "noiommud.8": check_noiommud,
              "noiommud.conf.5": check_conf, "libnoiommu.3": check_lib}
    for page in PAGES:
        path = os.path.join(BUILD_ROOT, "man", page)
        if not os.path.exists(path):
            fail("%s was not built (%s missing)" % (page, path))
            continue
        r = man(path, "--warnings=w")
        if r.returncode != 0 or r.stderr:
            fail("%s: man --warnings=w -l exited %d and printed:\n%s" % (page, r.returncode, r.stderr.decode()))
        r = man(path, "--nh", "--nj")
        text = r.stdout.decode()
        name, section = page.rsplit(".", 1)
        sec = sections(text)
        if not re.match(r"^%s - \S" % re.escape(name), sec.get("NAME", "").strip()):
            fail("%s: NAME section is %r" % (page, sec.get("NAME", "")[:80]))
        if not text.startswith("%s(%s)" % (name, section)):
            fail("%s: header line is %r" % (page, text.splitlines()[0] if text else ""))
        if "docs/admin.md" not in sec.get("SEE ALSO", ""):
            fail("%s: SEE ALSO does not point at docs/admin.md" % page)
        checks[page](sec)
    if failures:
        print("%d failures" % len(failures))
        return 1
    print("all %d man pages render cleanly and cover the programs" % len(PAGES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
