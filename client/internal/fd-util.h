/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <sys/types.h>

#include "macro.h"

DEFINE_TRIVIAL_CLEANUP_FUNC_VOID(DIR *, closedir);

/* Sets O_NONBLOCK on fd (or clears it). */
int fd_nonblock(int fd, bool nonblock);

/* Reads field 22 (starttime, in clock ticks since boot) of /proc/PID/stat, parsing after the
 * last ')' because comm may contain spaces and parentheses. */
int proc_get_starttime(pid_t pid, unsigned long long *ret);

/* The same, plus field 3 (the state letter: R, S, D, Z for a zombie, ...). ret_state may be
 * NULL. */
int proc_get_stat(pid_t pid, unsigned long long *ret_starttime, char *ret_state);

/* Reads all of a small file (< 64 KiB) into a NUL-terminated string with trailing newlines
 * stripped. dirfd may be AT_FDCWD. */
int read_small_file_at(int dirfd, const char *path, char **ret);

/* The same for a file of /proc generated whole at the first read() (stat, status, cgroup,
 * fdinfo): a read() that does not fill the buffer ends it, one syscall fewer per file. */
int read_virtual_file_at(int dirfd, const char *path, char **ret);
