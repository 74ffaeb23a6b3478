/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Varlink framing and SCM_RIGHTS over SOCK_STREAM, for both ends.
 *
 * A message is a JSON object terminated by a NUL byte. File descriptors ride on the first byte
 * of the reply that names them: the kernel ends a recvmsg() at the end of the byte range a
 * sendmsg() attached fds to, so the receiver always knows which message its fds belong to
 * (unix(7); security.md §4.1).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Growable input buffer with a hard cap. Bytes [0, n) are buffered; a complete message is
 * [0, index of the first NUL]. */
typedef struct WireBuffer {
        char *data;
        size_t n;
        size_t allocated;
        size_t max;
} WireBuffer;

void wire_buffer_init(WireBuffer *b, size_t max);
void wire_buffer_done(WireBuffer *b);

/* Makes room for at least "want" more bytes without going over the cap, and returns a pointer
 * to the free space and its size in *ret_size. Returns NULL with *ret_size = 0 when the buffer is
 * full (the peer exceeded the cap), or NULL with errno = ENOMEM. */
char *wire_buffer_space(WireBuffer *b, size_t want, size_t *ret_size);

/* If a complete message is buffered, returns its length excluding the NUL (the message itself
 * starts at b->data and is NUL-terminated in place); otherwise -EAGAIN. */
ssize_t wire_buffer_message(const WireBuffer *b);

/* Drops the first "n" bytes (a message and its NUL). */
void wire_buffer_consume(WireBuffer *b, size_t n);

/* Receives into "buf" with no room for control data, so any fds the peer attached are closed
 * by the kernel and MSG_CTRUNC is reported. Returns bytes read (0 at EOF), -EAGAIN, or
 * -EBADMSG if the peer attached fds (or any control data). */
ssize_t wire_recv_nofds(int fd, void *buf, size_t size);

/* Receives into "buf", accepting up to "max_fds" fds with MSG_CMSG_CLOEXEC. fds are counted
 * from cmsg_len, never from what was asked for. On MSG_CTRUNC every fd that did arrive is
 * closed and -EXFULL is returned. Returns bytes read (0 at EOF) and the fds in ret_fds/
 * ret_n_fds; the caller owns them. */
ssize_t wire_recv_fds(int fd, void *buf, size_t size, int *ret_fds, size_t max_fds,
                      size_t *ret_n_fds);

/* Sends with MSG_NOSIGNAL|MSG_DONTWAIT; when n_fds > 0, the fds are attached to the first byte
 * sent. Returns bytes written or a negative errno (-EAGAIN included). The fds stay owned by the
 * caller. */
ssize_t wire_send(int fd, const void *buf, size_t size, const int *fds, size_t n_fds);
