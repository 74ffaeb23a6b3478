#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Prints skipped tests with their reasons, and the closing "N passed, N failed, N skipped" line,
# from one or more of meson's testlog.json files (the plain build, then the sanitizer build, then
# the valgrind run). A missing file (that run never started) counts as a failure.
# Exits 1 if anything failed or nothing ran.
import json
import re
import sys

passed = failed = skipped = 0
skips = []
lines = []
for path in sys.argv[1:]:
    label = ('' if path == sys.argv[1] else
             ' [valgrind]' if 'valgrind' in path else ' [%s]' % path.split('/')[0])
    try:
        with open(path, encoding='utf-8') as f:
            lines += [(label, line) for line in f]
    except FileNotFoundError:
        failed += 1
        print('FAILED: no test log %s (that run did not happen)' % path)
for label, line in lines:
    t = json.loads(line)
    t['name'] = t['name'] + label
    result = t.get('result')
    if result in ('OK', 'EXPECTEDFAIL'):
        passed += 1
    elif result == 'SKIP':
        skipped += 1
        out = (t.get('stdout') or '') + (t.get('stderr') or '')
        reasons = [l for l in out.splitlines() if re.search(r'SKIP', l)]
        skips.append((t['name'], reasons[-1] if reasons else 'no reason printed'))
    else:
        failed += 1
        print('FAILED: %s (%s)' % (t['name'], result))

if skips:
    print('=' * 78)
    print('SKIPPED TIERS/TESTS (these did NOT run; they are not passes):')
    for name, reason in skips:
        print('  %s: %s' % (name, reason))
    print('=' * 78)
print('%d passed, %d failed, %d skipped' % (passed, failed, skipped))
sys.exit(1 if failed or passed == 0 else 0)
