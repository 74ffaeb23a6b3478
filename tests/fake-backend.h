/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A fake outside world for the daemon's core (daemon/backend.h), shared by every test that runs
 * the core without root: tests/fuzz/fuzz-conn (the whole connection path) and the unit tests of
 * the lease state machine, teardown order and quota (tests/unit/test-lease-*, test-quota).
 * What each operation answers is described in fake-backend.c.
 */
#pragma once

#include <stdbool.h>

#include "backend.h"

extern const BackendOps fake_backend;

/* Starts a new daemon instance's worth of fake state: polkit verdicts start again at the
 * beginning of their cycle, ids at 00000000000000000000000000000001, and the knobs below are
 * cleared. Called before each manager_new() (fuzz-conn) or test (unit), so that the same input
 * always meets the same answers and the same ids. */
void fake_backend_reset(void);

/* Called with every device and memory operation, in order ("open <address>", "map <region id>",
 * "unmap <id>", "restore-map <id>", "quiesce", "quiesce-failed", "free <id>", "close"), so that
 * a test can check the teardown order. NULL (the default): not traced. */
extern void (*fake_backend_trace)(const char *what);

/* Every device's quiesce fails (as a Bus Master bit that does not read back as off would),
 * besides the devices whose quiesce always fails. */
extern bool fake_backend_quiesce_fails;
