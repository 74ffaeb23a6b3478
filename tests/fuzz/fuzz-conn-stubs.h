/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What fuzz-conn.c needs to know about fuzz-conn-stubs.c (the link-time stand-ins for the
 * daemon's privileged backends; their behaviour is described there).
 */
#pragma once

/* Starts a new daemon instance's worth of stub state: polkit verdicts start again at the
 * beginning of their cycle, and ids at 00000000000000000000000000000001. Called before each
 * manager_new(), so that an input always meets the same answers and the same ids. */
void stub_reset(void);
