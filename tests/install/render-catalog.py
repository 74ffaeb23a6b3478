#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
"""journalctl -x really fills in the catalog's @FIELD@s, for every MESSAGE_ID.

For each MESSAGE_ID of daemon/msgid.h a record carrying the fields every sd_journal_send() with
that id sends (read from daemon/record.c as check-catalog.py does), each with a value of its own,
is written into a journal file by systemd-journal-remote. journalctl --update-catalog compiles
the catalog into a temporary root; journalctl -x (systemd 252) reads the catalog database only
from /var/lib/systemd/catalog, so it runs in a private mount namespace with the temporary
database bound there (the machine's own is untouched). Every explanation must show the value of
each field its entry names with @...@, and no @FIELD@ may be left.

Skips (77) without root (the mount namespace) or without systemd-journal-remote
(scripts/install-deps.sh installs it).

usage: render-catalog.py SOURCE_ROOT [CATALOG]
"""
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REMOTE = "/lib/systemd/systemd-journal-remote"


def skip(why):
    print("SKIP: " + why)
    sys.exit(77)


def main():
    src = sys.argv[1]
    catalog = sys.argv[2] if len(sys.argv) > 2 else os.path.join(src, "policy", "noiommud.catalog")
    if os.geteuid() != 0:
        skip("needs root: journalctl -x reads /var/lib/systemd/catalog only, so the test binds its "
             "own database there in a private mount namespace")
    if not os.access(REMOTE, os.X_OK):
        skip("%s is missing: install systemd-journal-remote (scripts/install-deps.sh)" % REMOTE)
    if not os.path.isdir("/var/lib/systemd/catalog"):
        skip("/var/lib/systemd/catalog does not exist here, so there is nothing to bind over")

    spec = importlib.util.spec_from_file_location("check_catalog", os.path.join(HERE, "check-catalog.py"))
    cc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cc)
    ids, records = cc.daemon_records(src)
    with open(catalog) as f:
        entries = cc.catalog_entries(f.read())
    if cc.FAILURES:
        print("FAIL: cannot read the sources")
        return 1
    names = {v: k for k, v in ids.items()}

    failures = []
    with tempfile.TemporaryDirectory(prefix="noiommu-render.") as work:
        root = os.path.join(work, "root")
        os.makedirs(os.path.join(root, "usr/lib/systemd/catalog"))
        shutil.copy(catalog, os.path.join(root, "usr/lib/systemd/catalog"))
        subprocess.run(["journalctl", "--root=" + root, "--update-catalog"], check=True)

        # Journal export format: one record per MESSAGE_ID, MESSAGE "record N" to find it again.
        order = sorted(mid for mid in entries if records.get(mid))
        if len(order) != len(entries):
            print("FAIL: no parsed record for %s" % ", ".join(sorted(set(entries) - set(order))), flush=True)
            return 1
        export = bytearray()
        for n, mid in enumerate(order):
            fields = set.intersection(*records[mid]) - {"MESSAGE", "MESSAGE_ID", "PRIORITY"}
            export += b"__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n" % (1764918000000000 + n, 1000 + n)
            export += b"_BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=test\n"
            export += b"SYSLOG_IDENTIFIER=noiommud\nPRIORITY=6\n"
            export += ("MESSAGE=record %d\nMESSAGE_ID=%s\n" % (n, mid)).encode()
            for field in sorted(fields):
                export += ("%s=val_%s_end\n" % (field, field)).encode()
            export += b"\n"
        with open(os.path.join(work, "records.export"), "wb") as f:
            f.write(export)
        journal = os.path.join(work, "records.journal")
        subprocess.run([REMOTE, "--output=" + journal, "--split-mode=none",
                        os.path.join(work, "records.export")], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        db = os.path.join(root, "var/lib/systemd/catalog")
        script = ('mount --make-rprivate / && mount --bind "$1" /var/lib/systemd/catalog && '
                  'exec journalctl --file="$2" -x -o short --no-pager')
        p = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", db, journal],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=dict(os.environ, LC_ALL="C", SYSTEMD_COLORS="0"))
        if p.returncode != 0:
            print(p.stdout)
            print("FAIL: journalctl -x exited %d" % p.returncode)
            return 1

    # Split the output at each record's own line; explanation lines start with "-- " (C locale).
    shown = {}
    cur = None
    for line in p.stdout.splitlines():
        m = re.search(r"noiommud: record (\d+)$", line)
        if m:
            cur = order[int(m.group(1))]
            shown[cur] = ""
        elif cur and line.startswith("--"):
            shown[cur] += line[2:].strip() + "\n"
    for mid in order:
        text = shown.get(mid, "")
        wanted = sorted(set(re.findall(r"@([A-Za-z0-9_]+)@", entries[mid])))
        left = re.findall(r"@[A-Za-z0-9_]+@", text)
        missing = [f for f in wanted if "val_%s_end" % f not in text]
        if not text:
            failures.append("%s (%s): journalctl -x shows no explanation" % (mid, names[mid]))
        elif left or missing:
            failures.append("%s (%s): left unreplaced %s, values missing for %s"
                            % (mid, names[mid], left, missing))
        else:
            print("ok - %s (%s): %d field(s) filled in" % (mid, names[mid], len(wanted)))
    for f in failures:
        print("FAIL: " + f)
    if failures:
        print(p.stdout)
        return 1
    print("ok - journalctl -x explained all %d records with their values" % len(order))
    return 0


if __name__ == "__main__":
    sys.exit(main())
