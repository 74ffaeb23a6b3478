/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * JSON and name validation shared by the daemon and the client. Everything a peer sends passes
 * through here before any other code looks at it.
 */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Deepest nesting a message may have, counting every value including scalars: the top-level
 * object is level 1, a number inside a segment of a reply (reply, parameters, segments, segment,
 * number) is level 5. */
#define NOIOMMU_JSON_DEPTH_MAX 8

/* Longest string value any message carries. */
#define NOIOMMU_JSON_STRING_MAX 4096

/* Parses one message (without its NUL): a JSON object, no duplicate keys, no strings
 * with embedded NUL or longer than NOIOMMU_JSON_STRING_MAX, nesting at most
 * NOIOMMU_JSON_DEPTH_MAX. Returns 0 and the object in *ret, or -EBADMSG. */
int json_parse_message(const char *buf, size_t len, json_t **ret);

/* "dddd:bb:dd.f", lower-case hex, device <= 0x1f, function <= 7. */
bool pci_address_is_valid(const char *s);

/* A memory or lease id: NOIOMMU_ID_LEN lower-case hex digits. */
bool noiommu_id_is_valid(const char *s);

/* Reads a non-negative JSON integer. Returns -EINVAL for anything else. */
int json_get_u64(json_t *v, uint64_t *ret);

/* Parses a byte count for humans: a decimal number with an optional K, M, G or T suffix (powers
 * of 1024, optionally followed by "iB" or "B"), in any case ("2m", "2MiB", "2mib"). Returns
 * -EINVAL or -ERANGE. */
int parse_size(const char *s, uint64_t *ret);

/* Formats a byte count as "2M", "1G", "4096" (exact, no rounding). */
const char *format_size(char buf[static 32], uint64_t n);
