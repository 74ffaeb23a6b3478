#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""The journal catalog against the records the daemon really writes.

journalctl -x replaces each @FIELD@ of a catalog entry with that field of the record it explains
(sd_journal_get_catalog()). A field the record does not carry would show up unreplaced, so every
@FIELD@ in the entry of a MESSAGE_ID must be a field that *every* record with that MESSAGE_ID
in daemon/record.c sends (a static reading of the source: each record is built from a
"JournalRecord j" to its jr_send(&j, ...), with the "FIELD=" literals of its jr_add()/jr_addf()
calls, PRIORITY from jr_add_priority(), and the client's fields (client_fields_format()) and the
device's (jr_add_device()) where it adds them with jr_add_client()/jr_add_device()). Also: every
MESSAGE_ID of daemon/msgid.h has exactly one entry and every entry is one of them, and
journalctl --update-catalog accepts the file in a temporary root (journalctl --root=DIR
--dump-catalog then shows every entry).

usage: check-catalog.py SOURCE_ROOT [CATALOG]   (CATALOG: an installed copy; default the source's)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("FAIL: " + msg)


def read(path):
    with open(path) as f:
        return f.read()


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), src, flags=re.S)
    return re.sub(r"//[^\n]*", "", src)


def balanced_call(src, start):
    """The text between the '(' at src[start] and its matching ')', string literals respected."""
    depth = 0
    i = start
    while i < len(src):
        c = src[i]
        if c == '"':
            i += 1
            while src[i] != '"':
                i += 2 if src[i] == "\\" else 1
        elif c == "'":
            i += 1
            while src[i] != "'":
                i += 2 if src[i] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return src[start + 1:i]
        i += 1
    raise ValueError("unbalanced call at offset %d" % start)


FIELD_LITERAL = re.compile(r'"([A-Z0-9_]+)=')


def function_fields(src, name):
    """The "FIELD=" literals in the body of the function name()."""
    m = re.search(r"\b%s\([^;{]*\)\s*\{" % name, src)
    if not m:
        fail("daemon/record.c: no function %s()" % name)
        return set()
    depth, i = 0, m.end() - 1
    while True:
        depth += {"{": 1, "}": -1}.get(src[i], 0)
        if depth == 0:
            break
        i += 1
    return set(FIELD_LITERAL.findall(src[m.end():i]))


def daemon_records(root):
    """{msgid hex: [set of fields of one record], ...}"""
    ids = dict(re.findall(r'#define (NOIOMMU_MSGID_\w+)\s+"([0-9a-f]{32})"',
                          read(os.path.join(root, "daemon", "msgid.h"))))
    if not ids:
        fail("daemon/msgid.h: no MESSAGE_IDs found")
    src = strip_comments(read(os.path.join(root, "daemon", "record.c")))
    added = {"jr_add_client": function_fields(src, "client_fields_format"),
             "jr_add_device": function_fields(src, "jr_add_device")}
    for name, fields in added.items():
        if len(fields) < 6:
            fail("daemon/record.c: %s() adds only %s; the parser no longer understands the file"
                 % (name, sorted(fields)))
    records = {v: [] for v in ids.values()}
    n_records = 0
    for m in re.finditer(r"\bJournalRecord\s+j\b", src):
        end = src.find("jr_send(&j", m.end())
        if end < 0:
            fail("daemon/record.c: a JournalRecord at offset %d is never sent" % m.start())
            continue
        body = src[m.end():end]
        if "JournalRecord" in body:
            fail("daemon/record.c: a JournalRecord at offset %d is never sent" % m.start())
            continue
        if "MESSAGE_ID" not in body:
            continue
        n_records += 1
        fields = set(FIELD_LITERAL.findall(body))
        for name, af in added.items():
            if re.search(r"\b%s\s*\(" % name, body):
                fields |= af
        if re.search(r"\bjr_add_priority\s*\(", body):
            fields.add("PRIORITY")
        # "MESSAGE_ID=" NOIOMMU_MSGID_X, or cond ? "MESSAGE_ID=" NOIOMMU_MSGID_A : "MESSAGE_ID=" ...B
        used = set(re.findall(r"\bNOIOMMU_MSGID_\w+", body))
        if not used:
            fail("daemon/record.c: a record with a MESSAGE_ID not taken from msgid.h: %s" % body[:120])
        for u in used:
            if u not in ids:
                fail("daemon/record.c uses %s, which msgid.h does not define" % u)
                continue
            records[ids[u]].append(fields)
    if n_records < 10:
        fail("daemon/record.c: found only %d records with a MESSAGE_ID; the parser no longer "
             "understands the file" % n_records)
    return ids, records


def catalog_entries(text):
    """{msgid hex: entry text}; a duplicate id is a failure."""
    entries = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"^-- ([0-9a-f]{32})(?: (\S+))?$", line)
        if m:
            cur = m.group(1)
            if m.group(2):          # a translation (-- ID LANG): not ours
                fail("unexpected language entry %s %s" % (cur, m.group(2)))
            if cur in entries:
                fail("two catalog entries for %s" % cur)
            entries[cur] = ""
        elif cur:
            entries[cur] += line + "\n"
    return entries


def check_fields(ids, records, entries):
    names = {v: k for k, v in ids.items()}
    n_subst = 0
    for mid, text in sorted(entries.items()):
        if mid not in records:
            fail("catalog entry %s is not a MESSAGE_ID of daemon/msgid.h" % mid)
            continue
        calls = records[mid]
        if not calls:
            fail("%s (%s) has a catalog entry but daemon/record.c never sends it" % (mid, names[mid]))
            continue
        always = set.intersection(*calls)
        sometimes = set.union(*calls)
        for field in sorted(set(re.findall(r"@([A-Za-z0-9_]+)@", text))):
            n_subst += 1
            if field not in sometimes:
                fail("%s (%s): @%s@ is not a field of any record with this MESSAGE_ID (it sends: %s)"
                     % (mid, names[mid], field, " ".join(sorted(sometimes))))
            elif field not in always:
                fail("%s (%s): @%s@ is sent by only %d of its %d records; journalctl -x would show "
                     "the bare field name for the others. Name it without @." %
                     (mid, names[mid], field, sum(field in c for c in calls), len(calls)))
        if not re.search(r"^Subject: \S", text, flags=re.M):
            fail("%s (%s): no Subject:" % (mid, names[mid]))
    for mid in sorted(set(ids.values()) - set(entries)):
        fail("%s (%s) has no catalog entry" % (mid, names[mid]))
    return n_subst


def check_journalctl(catalog, entries):
    journalctl = shutil.which("journalctl")
    if not journalctl:
        fail("journalctl is missing (systemd)")
        return
    with tempfile.TemporaryDirectory(prefix="noiommu-catalog.") as root:
        d = os.path.join(root, "usr", "lib", "systemd", "catalog")
        os.makedirs(d)
        shutil.copy(catalog, d)
        p = subprocess.run([journalctl, "--root=" + root, "--update-catalog"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # catalog_import_file() logs and skips a malformed entry but still exits 0: any output
        # at all is a complaint about the file.
        if p.returncode != 0 or p.stdout.strip():
            fail("journalctl --update-catalog (exit %d): %s" % (p.returncode, p.stdout.strip()))
        p = subprocess.run([journalctl, "--root=" + root, "--dump-catalog"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if p.returncode != 0:
            fail("journalctl --dump-catalog (exit %d): %s" % (p.returncode, p.stderr.strip()))
            return
        dumped = catalog_entries(p.stdout)
        before = len(FAILURES)
        for mid, text in entries.items():
            if mid not in dumped:
                fail("journalctl --dump-catalog lacks %s" % mid)
            elif dumped[mid].strip() != text.strip():
                fail("journalctl --dump-catalog shows %s differently from the file" % mid)
        if len(FAILURES) == before:
            print("ok - journalctl --root=DIR --update-catalog accepted it; --dump-catalog shows all %d entries"
                  % len(dumped))


def main():
    root = sys.argv[1]
    catalog = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "policy", "noiommud.catalog")
    ids, records = daemon_records(root)
    entries = catalog_entries(read(catalog))
    before = len(FAILURES)
    n = check_fields(ids, records, entries)
    if len(FAILURES) > before:
        pass
    elif n < len(entries):
        fail("only %d @FIELD@ substitutions in %d entries" % (n, len(entries)))
    else:
        print("ok - %d @FIELD@ substitutions in %d entries, each a field every record of its "
              "MESSAGE_ID carries" % (n, len(entries)))
    check_journalctl(catalog, entries)
    if FAILURES:
        print("%d failure(s)" % len(FAILURES))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
