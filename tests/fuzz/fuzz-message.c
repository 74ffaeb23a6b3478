/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for everything a client's bytes go through before a handler runs: Varlink
 * framing (WireBuffer, NUL-terminated messages, the request size cap), message parsing and
 * sanity checks (json_parse_message), and the validators of names and sizes. Built with
 * -Dfuzzing=true under clang as a real fuzzer; otherwise fuzz-main.c replays the corpus in
 * tests/fuzz/fuzz-message/ as an ordinary test, so every input that once crashed stays fixed.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "internal/json-util.h"
#include "internal/wire.h"
#include "noiommu/protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_value(json_t *v) {
        const char *key;
        json_t *e;
        size_t i;
        uint64_t u;

        switch (json_typeof(v)) {
        case JSON_OBJECT:
                json_object_foreach(v, key, e)
                        check_value(e);
                break;
        case JSON_ARRAY:
                json_array_foreach(v, i, e)
                        check_value(e);
                break;
        case JSON_STRING:
                (void) pci_address_is_valid(json_string_value(v));
                (void) noiommu_id_is_valid(json_string_value(v));
                (void) parse_size(json_string_value(v), &u);
                break;
        case JSON_INTEGER:
        case JSON_REAL:
                (void) json_get_u64(v, &u);
                break;
        case JSON_TRUE:
        case JSON_FALSE:
        case JSON_NULL:
        default:
                break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        WireBuffer b;
        size_t off = 0;

        wire_buffer_init(&b, NOIOMMU_REQUEST_SIZE_MAX);

        /* Feed the input in chunks of at most 143 bytes, as a slow client would (the
         * fuzz-varlink.c pattern), taking every complete message out as it appears. */
        while (off < size) {
                size_t space, n;
                char *p = wire_buffer_space(&b, 143, &space);
                ssize_t len;

                if (!p)
                        break;                  /* over the cap without a NUL: the daemon disconnects */
                n = space < 143 ? space : 143;
                if (n > size - off)
                        n = size - off;
                memcpy(p, data + off, n);
                b.n += n;
                off += n;

                while ((len = wire_buffer_message(&b)) >= 0) {
                        json_t *msg = NULL;

                        if (json_parse_message(b.data, (size_t) len, &msg) >= 0) {
                                check_value(msg);
                                json_decref(msg);
                        }
                        wire_buffer_consume(&b, (size_t) len + 1);
                }
        }

        wire_buffer_done(&b);
        return 0;
}
