#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The whole test suite on a fresh Debian 12 machine, as root: installs what is needed, builds,
# runs every tier meson knows (unit, integration, containers, vm), runs the unit and integration
# tiers once more on an ASan+UBSan build and the functional integration tests under valgrind,
# and ends with a one-line summary. A tier that cannot run here is
# reported as SKIPPED with its reason, loudly; skips are never counted as passes.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/install-vm-deps.sh
BUILD_DIR=${BUILD_DIR:-build}
./scripts/build.sh
# The tree must also build warning-free (-Werror) with clang; the tests run on the gcc build.
# build.sh passes -Dwerror=true (not a default of meson.build) and turns it on in an older
# build directory.
if command -v clang >/dev/null; then
        CC=clang BUILD_DIR=build-clang ./scripts/build.sh
fi
rc=0
# meson leaves an old testlog.json in place when it runs nothing (a build that failed, a test
# name that no longer exists): remove them, so that the summary counts only this run.
rm -f "$BUILD_DIR"/meson-logs/testlog*.json build-asan/meson-logs/testlog*.json
# Every suite, the containers tier included (real podman containers, rootful and rootless, as
# clients; tests/containers/meson.build). Its tests take the integration lock, so they run one
# at a time and never beside an integration test, whatever --num-processes says.
meson test -C "$BUILD_DIR" --print-errorlogs --num-processes 2 "$@" || rc=$?

# The same daemon, client and tests built with AddressSanitizer and UndefinedBehaviorSanitizer
# (build-dev.ini): a leak, overflow or UB anywhere in a test run fails it (the harness checks the
# daemon's exit status, which LeakSanitizer sets).
BUILD_DIR=build-asan ./scripts/build.sh --native-file build-dev.ini || rc=$?
meson test -C build-asan --print-errorlogs --num-processes 2 --suite unit --suite integration || rc=$?

# The functional integration tests once more with the gcc build's daemon under valgrind's
# memcheck (the "valgrind" test setup in tests/meson.build): a memory error or a definite leak
# fails the test. These are the tests whose oracles are behaviour, not latency, and that have
# been run under valgrind; the load, timing and restart tests run natively and under ASan.
VALGRIND_TESTS=(varlink-service allocate-memory denied polkit-absent action-missing
        disconnect-during-auth bad-input hugepage-exhaustion free-memory ctl-batch lifecycle
        polkit-subject device-backends monitor)
# meson drops a name it does not know without a word: check every name first.
known=$(meson test -C "$BUILD_DIR" --list 2>/dev/null)
for t in "${VALGRIND_TESTS[@]}"; do
        grep -q "/ $t\$" <<<"$known" || { echo "run-tests.sh: no test named $t for valgrind" >&2; rc=1; }
done
meson test -C "$BUILD_DIR" --setup valgrind --print-errorlogs "${VALGRIND_TESTS[@]}" || rc=$?

/usr/bin/python3 scripts/summarize-tests.py "$BUILD_DIR/meson-logs/testlog.json" \
        build-asan/meson-logs/testlog.json "$BUILD_DIR/meson-logs/testlog-valgrind.json" || rc=1
exit $rc
