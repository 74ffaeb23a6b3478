/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * client/internal/json-util.c: message validation, name validation and size parsing. All of it
 * sees peer input before anything else does, so the rejects matter as much as the accepts.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal/json-util.h"
#include "internal/macro.h"
#include "noiommu/protocol.h"
#include "tests.h"

static int parse(const char *s) {
        json_t *v = NULL;
        int r;

        r = json_parse_message(s, strlen(s), &v);
        if (r >= 0) {
                ASSERT_TRUE(json_is_object(v));
                json_decref(v);
        } else
                ASSERT_TRUE(v == NULL);
        return r;
}

/* "depth" nested containers, innermost empty: {"a":{"a":{}}} or, with arrays, {"a":[[]]}. */
static char *nested(unsigned depth, bool arrays) {
        char *s = malloc(depth * 6 + 1), *p = s;

        ASSERT_TRUE(s != NULL);
        p = stpcpy(p, "{");
        for (unsigned i = 1; i < depth; i++)
                p = stpcpy(p, arrays ? (i == 1 ? "\"a\":[" : "[") : "\"a\":{");
        for (unsigned i = 1; i < depth; i++)
                p = stpcpy(p, arrays ? "]" : "}");
        p = stpcpy(p, "}");
        return s;
}

static void test_parse_accepts(void) {
        json_t *v = NULL;
        const char *s;

        ASSERT_OK(parse("{}"));
        ASSERT_OK(parse("{\"method\":\"io.noiommud.Broker.ListDevices\"}"));
        ASSERT_OK(parse("{\"method\":\"io.noiommud.Broker.AcquireDevice\","
                        "\"parameters\":{\"device\":\"0000:01:00.0\",\"interactive\":false},"
                        "\"more\":false,\"oneway\":false}"));
        ASSERT_OK(parse("{\"method\":\"io.noiommud.Broker.AllocateMemory\","
                        "\"parameters\":{\"size\":2097152,\"numaNode\":0,\"lease\":null}}"));
        ASSERT_OK(parse(" \n{\"a\" : [1, 2, {\"b\": \"c\"}]}\t"));
        ASSERT_OK(parse("{\"s\":\"caf\\u00e9 \\\"quoted\\\" \\n\"}"));

        /* The object comes back intact. */
        s = "{\"method\":\"io.noiommud.Broker.FreeMemory\",\"parameters\":{\"memory\":\"ab\"}}";
        ASSERT_OK(json_parse_message(s, strlen(s), &v));
        ASSERT_STREQ(json_string_value(json_object_get(v, "method")),
                     NOIOMMU_METHOD_FREE_MEMORY);
        ASSERT_STREQ(json_string_value(json_object_get(json_object_get(v, "parameters"), "memory")),
                     "ab");
        json_decref(v);

        /* Only len bytes are parsed: whatever follows in the buffer (the next message) is not. */
        s = "{\"a\":1}XYZ";
        ASSERT_OK(json_parse_message(s, 7, &v));
        json_decref(v);
}

static void test_parse_rejects(void) {
        json_t *v = (json_t *) 0x1;

        /* floats are well-formed JSON: the message parses, and json_get_u64() refuses them, so
         * a float size is an InvalidParameter answer rather than a protocol violation */
        ASSERT_OK(parse("{\"size\":1.5}"));
        ASSERT_OK(parse("{\"size\":1e3}"));
        ASSERT_OK(parse("{\"a\":[1,2.0]}"));
        ASSERT_OK(parse("{\"a\":{\"b\":-0.0}}"));
        {
                json_t *f = json_real(2097152.0);
                uint64_t u;

                ASSERT_ERROR(json_get_u64(f, &u), EINVAL);
                json_decref(f);
        }

        /* duplicate keys, at any level */
        ASSERT_ERROR(parse("{\"method\":\"a\",\"method\":\"b\"}"), EBADMSG);
        ASSERT_ERROR(parse("{\"parameters\":{\"device\":\"x\",\"device\":\"y\"}}"), EBADMSG);

        /* not an object */
        ASSERT_ERROR(parse("[]"), EBADMSG);
        ASSERT_ERROR(parse("[{}]"), EBADMSG);
        ASSERT_ERROR(parse("1"), EBADMSG);
        ASSERT_ERROR(parse("\"s\""), EBADMSG);
        ASSERT_ERROR(parse("null"), EBADMSG);
        ASSERT_ERROR(parse("true"), EBADMSG);

        /* NUL inside a string, escaped or raw */
        ASSERT_ERROR(parse("{\"device\":\"0000:01:00.0\\u0000../x\"}"), EBADMSG);
        ASSERT_ERROR(parse("{\"a\\u0000b\":1}"), EBADMSG);
        ASSERT_ERROR(json_parse_message("{\"a\":\"b\0c\"}", 11, &v), EBADMSG);
        ASSERT_TRUE(v == (json_t *) 0x1);          /* untouched on failure */

        /* truncated, empty, trailing garbage, two messages in one */
        ASSERT_ERROR(parse(""), EBADMSG);
        ASSERT_ERROR(parse("{"), EBADMSG);
        ASSERT_ERROR(parse("{\"method\":\"io.noiommud.Broker.ListDevices\""), EBADMSG);
        ASSERT_ERROR(parse("{\"method\":\"io.noiom"), EBADMSG);
        ASSERT_ERROR(parse("{\"a\":1} x"), EBADMSG);
        ASSERT_ERROR(parse("{}{}"), EBADMSG);
        ASSERT_ERROR(json_parse_message("{}", 0, &v), EBADMSG);

        /* not JSON */
        ASSERT_ERROR(parse("{'a':1}"), EBADMSG);
        ASSERT_ERROR(parse("{\"a\":NaN}"), EBADMSG);
        ASSERT_ERROR(parse("{\"a\":1,}"), EBADMSG);
        ASSERT_ERROR(parse("{\"a\":\"\xff\"}"), EBADMSG);   /* invalid UTF-8 */
}

static void test_parse_depth(void) {
        for (unsigned d = 1; d <= NOIOMMU_JSON_DEPTH_MAX + 2; d++)
                for (int arrays = 0; arrays <= 1; arrays++) {
                        _cleanup_free_ char *s = nested(d, arrays);

                        if (d <= NOIOMMU_JSON_DEPTH_MAX)
                                ASSERT_OK(parse(s));
                        else
                                ASSERT_ERROR(parse(s), EBADMSG);
                }

        /* A scalar counts as a level of its own: 7 objects around a number are fine, 8 are not
         * (the parser checks the depth of every value, not only of containers). */
        ASSERT_OK(parse("{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}"));
        ASSERT_ERROR(parse("{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":{\"a\":1}}}}}}}}"),
                     EBADMSG);

        /* Far deeper than jansson's own limit: still a clean error, not a crash. */
        {
                _cleanup_free_ char *s = nested(5000, false);

                ASSERT_ERROR(parse(s), EBADMSG);
        }
}

static void test_parse_string_length(void) {
        _cleanup_free_ char *ok = NULL, *bad = NULL, *badkey = NULL;
        size_t l = NOIOMMU_JSON_STRING_MAX;

        ok = malloc(l + 16);
        bad = malloc(l + 16);
        badkey = malloc(l + 16);
        ASSERT_TRUE(ok && bad && badkey);

        strcpy(ok, "{\"s\":\"");
        memset(ok + 6, 'x', l);
        strcpy(ok + 6 + l, "\"}");
        ASSERT_OK(parse(ok));

        strcpy(bad, "{\"s\":\"");
        memset(bad + 6, 'x', l + 1);
        strcpy(bad + 6 + l + 1, "\"}");
        ASSERT_ERROR(parse(bad), EBADMSG);

        strcpy(badkey, "{\"");
        memset(badkey + 2, 'k', l + 1);
        strcpy(badkey + 2 + l + 1, "\":1}");
        ASSERT_ERROR(parse(badkey), EBADMSG);
}

/* Every kind of value passes the per-value checks (json_value_is_sane(), file-local to
 * json-util.c, reached here through the parser). */
static void test_parse_value_kinds(void) {
        ASSERT_OK(parse("{\"a\":1,\"b\":[true,false,null],\"c\":\"s\",\"d\":{}}"));

        /* A real is well-formed JSON; the typed accessors refuse it where an integer is wanted. */
        ASSERT_OK(parse("{\"a\":0.5}"));

        /* An embedded NUL reads as a shorter, harmless-looking C string: refused, inside arrays
         * and objects too. */
        ASSERT_ERROR(parse("{\"s\":\"a\\u0000b\"}"), EBADMSG);
        ASSERT_ERROR(parse("{\"s\":[\"a\\u0000b\"]}"), EBADMSG);
        ASSERT_ERROR(parse("{\"s\":{\"t\":\"\\u0000\"}}"), EBADMSG);
}

static void test_pci_address(void) {
        ASSERT_TRUE(pci_address_is_valid("0000:01:00.0"));
        ASSERT_TRUE(pci_address_is_valid("0000:00:1f.7"));
        ASSERT_TRUE(pci_address_is_valid("ffff:ff:1f.7"));
        ASSERT_TRUE(pci_address_is_valid("0001:0a:03.1"));

        ASSERT_FALSE(pci_address_is_valid(NULL));
        ASSERT_FALSE(pci_address_is_valid(""));
        ASSERT_FALSE(pci_address_is_valid("0000:0A:00.0"));            /* upper case */
        ASSERT_FALSE(pci_address_is_valid("0000:00:1F.0"));
        ASSERT_FALSE(pci_address_is_valid("ABCD:00:00.0"));
        ASSERT_FALSE(pci_address_is_valid("../../dev/sda"));
        ASSERT_FALSE(pci_address_is_valid("0000:01:00.0/.."));
        ASSERT_FALSE(pci_address_is_valid("0000:01:00.0/"));
        ASSERT_FALSE(pci_address_is_valid("0000:01:00.0 "));           /* trailing space */
        ASSERT_FALSE(pci_address_is_valid(" 0000:01:00.0"));
        ASSERT_FALSE(pci_address_is_valid("0000:01:00.0\n"));
        ASSERT_FALSE(pci_address_is_valid("0000:01:00.00"));           /* too long */
        ASSERT_FALSE(pci_address_is_valid("00000:01:00.0"));
        ASSERT_FALSE(pci_address_is_valid("000:01:00.0"));             /* too short */
        ASSERT_FALSE(pci_address_is_valid("01:00.0"));
        ASSERT_FALSE(pci_address_is_valid("0000:01:20.0"));            /* device 0x20 */
        ASSERT_FALSE(pci_address_is_valid("0000:01:ff.0"));
        ASSERT_FALSE(pci_address_is_valid("0000:01:00.8"));            /* function 8 */
        ASSERT_FALSE(pci_address_is_valid("0000:01:00.f"));
        ASSERT_FALSE(pci_address_is_valid("0000-01:00.0"));
        ASSERT_FALSE(pci_address_is_valid("0000:01-00.0"));
        ASSERT_FALSE(pci_address_is_valid("0000:01:00:0"));
        ASSERT_FALSE(pci_address_is_valid("0000:0g:00.0"));
        ASSERT_FALSE(pci_address_is_valid("0000:01:00.-"));
        ASSERT_FALSE(pci_address_is_valid("0x00:01:00.0"));
}

static void test_noiommu_id(void) {
        char id[NOIOMMU_ID_LEN + 2];

        memset(id, 'a', NOIOMMU_ID_LEN);
        id[NOIOMMU_ID_LEN] = 0;
        ASSERT_TRUE(noiommu_id_is_valid(id));
        ASSERT_TRUE(noiommu_id_is_valid("0123456789abcdef0123456789abcdef"));

        ASSERT_FALSE(noiommu_id_is_valid(NULL));
        ASSERT_FALSE(noiommu_id_is_valid(""));
        ASSERT_FALSE(noiommu_id_is_valid("0123456789ABCDEF0123456789abcdef"));
        ASSERT_FALSE(noiommu_id_is_valid("0123456789abcdef0123456789abcdeg"));
        ASSERT_FALSE(noiommu_id_is_valid("0123456789abcdef-123456789abcdef"));
        ASSERT_FALSE(noiommu_id_is_valid("../../../../../../../../../etc/x"));

        id[NOIOMMU_ID_LEN - 1] = 0;                                     /* 31 */
        ASSERT_FALSE(noiommu_id_is_valid(id));
        id[NOIOMMU_ID_LEN - 1] = 'a';
        id[NOIOMMU_ID_LEN] = 'a';                                       /* 33 */
        id[NOIOMMU_ID_LEN + 1] = 0;
        ASSERT_FALSE(noiommu_id_is_valid(id));
}

static void test_json_get_u64(void) {
        uint64_t u = 7;
        json_t *v;

        v = json_integer(4096);
        ASSERT_OK(json_get_u64(v, &u));
        ASSERT_EQ(u, 4096);
        json_decref(v);

        v = json_integer(0);
        ASSERT_OK(json_get_u64(v, &u));
        ASSERT_EQ(u, 0);
        json_decref(v);

        u = 7;
        v = json_integer(-1);
        ASSERT_ERROR(json_get_u64(v, &u), EINVAL);
        json_decref(v);
        v = json_string("1");
        ASSERT_ERROR(json_get_u64(v, &u), EINVAL);
        json_decref(v);
        v = json_real(1.0);
        ASSERT_ERROR(json_get_u64(v, &u), EINVAL);
        json_decref(v);
        ASSERT_ERROR(json_get_u64(NULL, &u), EINVAL);
        ASSERT_EQ(u, 7);                        /* untouched on failure */
}

static uint64_t size_of(const char *s) {
        uint64_t v = 0;

        ASSERT_OK(parse_size(s, &v));
        return v;
}

static void test_parse_size(void) {
        uint64_t v = 42;

        ASSERT_EQ(size_of("2M"), 2097152);
        ASSERT_EQ(size_of("1G"), UINT64_C(1) << 30);
        ASSERT_EQ(size_of("1GiB"), UINT64_C(1) << 30);
        ASSERT_EQ(size_of("1GB"), UINT64_C(1) << 30);
        ASSERT_EQ(size_of("4096"), 4096);
        ASSERT_EQ(size_of("0"), 0);
        ASSERT_EQ(size_of("64K"), 65536);
        /* the whole suffix is case-insensitive, not only its letter */
        ASSERT_EQ(size_of("2m"), 2097152);
        ASSERT_EQ(size_of("2mib"), 2097152);
        ASSERT_EQ(size_of("2MIB"), 2097152);
        ASSERT_EQ(size_of("2Mib"), 2097152);
        ASSERT_EQ(size_of("2mb"), 2097152);
        ASSERT_EQ(size_of("1gIB"), UINT64_C(1) << 30);
        ASSERT_EQ(size_of("64kib"), 65536);
        ASSERT_EQ(size_of("3T"), UINT64_C(3) << 40);
        ASSERT_EQ(size_of("16777215T"), UINT64_C(16777215) << 40);
        /* The overflow check is conservative in the last digit: values within 9 of UINT64_MAX
         * are refused. Nobody allocates 16 EiB; refusing is the safe side. */
        ASSERT_TRUE(size_of("18446744073709551609") == UINT64_MAX - 6);

        ASSERT_ERROR(parse_size("", &v), EINVAL);
        ASSERT_ERROR(parse_size(NULL, &v), EINVAL);
        ASSERT_ERROR(parse_size("-1", &v), EINVAL);
        ASSERT_ERROR(parse_size("+1", &v), EINVAL);
        ASSERT_ERROR(parse_size(" 1", &v), EINVAL);
        ASSERT_ERROR(parse_size("1 ", &v), EINVAL);
        ASSERT_ERROR(parse_size("1X", &v), EINVAL);
        ASSERT_ERROR(parse_size("1 G", &v), EINVAL);
        ASSERT_ERROR(parse_size("G", &v), EINVAL);
        ASSERT_ERROR(parse_size("1Gi", &v), EINVAL);
        ASSERT_ERROR(parse_size("1gi", &v), EINVAL);
        ASSERT_ERROR(parse_size("1mibb", &v), EINVAL);
        ASSERT_ERROR(parse_size("1ib", &v), EINVAL);
        ASSERT_ERROR(parse_size("1GiBs", &v), EINVAL);
        ASSERT_ERROR(parse_size("1GG", &v), EINVAL);
        ASSERT_ERROR(parse_size("1.5G", &v), EINVAL);
        ASSERT_ERROR(parse_size("0x10", &v), EINVAL);
        ASSERT_ERROR(parse_size("99999999999T", &v), ERANGE);
        ASSERT_ERROR(parse_size("16777216T", &v), ERANGE);        /* exactly 2^64 */
        ASSERT_ERROR(parse_size("18446744073709551616", &v), ERANGE);
        ASSERT_ERROR(parse_size("99999999999999999999999", &v), ERANGE);
        ASSERT_EQ(v, 42);                       /* untouched on failure */
}

static void test_format_size(void) {
        static const uint64_t values[] = {
                0, 1, 1023, 1024, 1536, 4096, 4097, 2097152, UINT64_C(1) << 30,
                UINT64_C(3) << 40, UINT64_C(1) << 50, UINT64_MAX - 6,
        };
        char buf[32];

        ASSERT_STREQ(format_size(buf, 2097152), "2M");
        ASSERT_STREQ(format_size(buf, UINT64_C(1) << 30), "1G");
        ASSERT_STREQ(format_size(buf, UINT64_C(1) << 40), "1T");
        ASSERT_STREQ(format_size(buf, UINT64_C(1) << 50), "1024T");    /* T is the largest */
        ASSERT_STREQ(format_size(buf, 4096), "4K");
        ASSERT_STREQ(format_size(buf, 4097), "4097");                   /* exact, no rounding */
        ASSERT_STREQ(format_size(buf, 1536), "1536");
        ASSERT_STREQ(format_size(buf, 3 * 1024 * 1024 + 1024), "3073K");
        ASSERT_STREQ(format_size(buf, 0), "0");
        ASSERT_STREQ(format_size(buf, UINT64_MAX), "18446744073709551615");
        ASSERT_TRUE(format_size(buf, 1) == buf);

        /* What format_size() writes, parse_size() reads back exactly. */
        for (size_t i = 0; i < ELEMENTSOF(values); i++)
                ASSERT_TRUE(size_of(format_size(buf, values[i])) == values[i]);
}

int main(void) {
        TEST(test_parse_accepts);
        TEST(test_parse_rejects);
        TEST(test_parse_depth);
        TEST(test_parse_string_length);
        TEST(test_parse_value_kinds);
        TEST(test_pci_address);
        TEST(test_noiommu_id);
        TEST(test_json_get_u64);
        TEST(test_parse_size);
        TEST(test_format_size);
        return 0;
}
