/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "json-util.h"
#include "macro.h"
#include "noiommu/protocol.h"

/* The checks json_parse_message() applies to every value: depth (a scalar counts as a level),
 * string and key length, no embedded NUL. */
static bool json_value_is_sane(json_t *v, unsigned depth) {
        const char *key;
        json_t *e;
        size_t i;

        if (depth > NOIOMMU_JSON_DEPTH_MAX)
                return false;

        switch (json_typeof(v)) {
        case JSON_OBJECT:
                json_object_foreach(v, key, e)
                        if (strlen(key) > NOIOMMU_JSON_STRING_MAX || !json_value_is_sane(e, depth + 1))
                                return false;
                return true;
        case JSON_ARRAY:
                json_array_foreach(v, i, e)
                        if (!json_value_is_sane(e, depth + 1))
                                return false;
                return true;
        case JSON_STRING:
                /* jansson rejects \u0000 unless JSON_ALLOW_NUL is given, but compare anyway: a
                 * string with an embedded NUL reads as a harmless-looking C string. */
                return json_string_length(v) <= NOIOMMU_JSON_STRING_MAX &&
                       strlen(json_string_value(v)) == json_string_length(v);
        case JSON_REAL:
                /* Well-formed JSON: accepted here, and refused by every parameter accessor
                 * (json_get_u64() wants an integer), so a float size is InvalidParameter, not
                 * a protocol violation. */
        case JSON_INTEGER:
        case JSON_TRUE:
        case JSON_FALSE:
        case JSON_NULL:
                return true;
        default:
                return false;
        }
}

int json_parse_message(const char *buf, size_t len, json_t **ret) {
        json_error_t err;
        json_t *v;

        v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &err);
        if (!v)
                return -EBADMSG;
        if (!json_is_object(v) || !json_value_is_sane(v, 1)) {
                json_decref(v);
                return -EBADMSG;
        }
        *ret = v;
        return 0;
}

static bool is_lower_hex(char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static unsigned hexval(char c) {
        return c <= '9' ? (unsigned) (c - '0') : (unsigned) (c - 'a' + 10);
}

bool pci_address_is_valid(const char *s) {
        /* 0123456789ab
         * dddd:bb:dd.f */
        if (!s || strlen(s) != NOIOMMU_PCI_ADDRESS_LEN)
                return false;
        for (size_t i = 0; i < NOIOMMU_PCI_ADDRESS_LEN; i++) {
                if (i == 4 || i == 7) {
                        if (s[i] != ':')
                                return false;
                } else if (i == 10) {
                        if (s[i] != '.')
                                return false;
                } else if (!is_lower_hex(s[i]))
                        return false;
        }
        if (hexval(s[8]) * 16 + hexval(s[9]) > 0x1f)
                return false;
        if (hexval(s[11]) > 7)
                return false;
        return true;
}

bool noiommu_id_is_valid(const char *s) {
        if (!s || strlen(s) != NOIOMMU_ID_LEN)
                return false;
        for (size_t i = 0; i < NOIOMMU_ID_LEN; i++)
                if (!is_lower_hex(s[i]))
                        return false;
        return true;
}

int json_get_u64(json_t *v, uint64_t *ret) {
        json_int_t i;

        if (!json_is_integer(v))
                return -EINVAL;
        i = json_integer_value(v);
        if (i < 0)
                return -EINVAL;
        *ret = (uint64_t) i;
        return 0;
}

int parse_size(const char *s, uint64_t *ret) {
        static const struct {
                char suffix;
                unsigned shift;
        } units[] = { { 'K', 10 }, { 'M', 20 }, { 'G', 30 }, { 'T', 40 } };
        uint64_t v = 0;
        const char *p = s;
        unsigned shift = 0;

        if (!s || !isdigit((unsigned char) *p))
                return -EINVAL;
        for (; isdigit((unsigned char) *p); p++) {
                if (v > (UINT64_MAX - 9) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (*p - '0');
        }
        if (*p) {
                char u = (char) toupper((unsigned char) *p);
                bool found = false;

                for (size_t i = 0; i < ELEMENTSOF(units); i++)
                        if (units[i].suffix == u) {
                                shift = units[i].shift;
                                found = true;
                        }
                if (!found)
                        return -EINVAL;
                p++;
                /* Case-insensitive like the unit letter itself: "2m", "2mib" and "2MiB" alike. */
                if (strcasecmp(p, "iB") == 0 || strcasecmp(p, "B") == 0)
                        p += strlen(p);
                if (*p)
                        return -EINVAL;
        }
        if (shift > 0 && v > (UINT64_MAX >> shift))
                return -ERANGE;
        *ret = v << shift;
        return 0;
}

const char *format_size(char buf[static 32], uint64_t n) {
        static const char suffixes[] = "KMGT";
        unsigned i = 0;

        while (n >= 1024 && n % 1024 == 0 && i < sizeof(suffixes) - 1) {
                n /= 1024;
                i++;
        }
        if (i == 0)
                (void) snprintf(buf, 32, "%" PRIu64, n);
        else
                (void) snprintf(buf, 32, "%" PRIu64 "%c", n, suffixes[i - 1]);
        return buf;
}
