/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See settings.h: reads and validates the configuration (a leaf, layer 0). Every key and value
 * is checked; a file that fails is an error, never a partial or default configuration.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hugepage.h"
#include "settings.h"
#include "internal/json-util.h"
#include "internal/log.h"
#include "internal/macro.h"
#include "internal/strv.h"

static int parse_address_list(const char *path, const char *key, json_t *v, char ***list) {
        size_t i;
        json_t *e;

        if (!json_is_array(v))
                return log_error_errno(EINVAL, "%s: \"%s\" must be a list of PCI addresses.", path, key);
        json_array_foreach(v, i, e) {
                if (!json_is_string(e) || !pci_address_is_valid(json_string_value(e)))
                        return log_error_errno(EINVAL, "%s: \"%s\"[%zu] is not a PCI address like \"0000:01:00.0\".",
                                               path, key, i);
                if (!strv_contains(*list, json_string_value(e)) && strv_extend(list, json_string_value(e)) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* "deviceBackends": {"ADDRESS": "BACKEND", ...}. Strict like the rest: a bad address or an
 * unknown backend name is a load error, never a silent default. */
static int parse_device_backends(Settings *c, const char *path, json_t *v) {
        const char *address;
        json_t *e;

        if (!json_is_object(v))
                return log_error_errno(EINVAL, "%s: \"deviceBackends\" must be an object mapping PCI addresses "
                                       "to backend names, like {\"0000:01:00.0\": \"group-noiommu\"}.", path);
        json_object_foreach(v, address, e) {
                DeviceBackendSetting *n, *found = NULL;
                Backend b;

                if (!pci_address_is_valid(address))
                        return log_error_errno(EINVAL, "%s: \"deviceBackends\": \"%s\" is not a PCI address like "
                                               "\"0000:01:00.0\".", path, address);
                b = json_is_string(e) ? backend_from_string(json_string_value(e)) : _BACKEND_INVALID;
                if (b < 0)
                        return log_error_errno(EINVAL, "%s: \"deviceBackends\": the backend of %s must be "
                                               "\"cdev-noiommu\", \"group-noiommu\" or \"cdev-iommu\".",
                                               path, address);

                for (size_t i = 0; i < c->n_device_backends; i++)
                        if (streq(c->device_backends[i].address, address))
                                found = &c->device_backends[i];
                if (!found) {
                        n = reallocarray(c->device_backends, c->n_device_backends + 1, sizeof(*n));
                        if (!n)
                                return -ENOMEM;
                        c->device_backends = n;
                        found = &n[c->n_device_backends++];
                        strcpy(found->address, address);
                }
                found->backend = b;             /* a later drop-in overrides an earlier file */
        }
        return 0;
}

static int pool_entry_u64(const char *path, size_t i, json_t *e, const char *key, uint64_t *ret) {
        json_t *v = json_object_get(e, key);

        if (!v)
                return log_error_errno(EINVAL, "%s: \"hugepagePool\"[%zu] lacks \"%s\".", path, i, key);
        if (json_get_u64(v, ret) < 0 || *ret == 0)
                return log_error_errno(EINVAL, "%s: \"hugepagePool\"[%zu].%s must be a positive integer.", path, i, key);
        return 0;
}

/* "hugepagePool": [{"hugepageSize": N, "size": N, "count": N, "numaNode": N}, ...]. A memfd
 * cannot be assembled from other memfds, so an entry is regions of one exact size: what a
 * container asks for. Strict like the rest; the later file's list replaces the earlier one's,
 * so that a drop-in can switch the pool off with []. */
static int parse_pool(Settings *c, const char *path, json_t *v) {
        static const char *const allowed[] = { "hugepageSize", "size", "count", "numaNode", NULL };
        _cleanup_free_ PoolSetting *pool = NULL;
        uint64_t regions = 0, bytes = 0;
        size_t i;
        json_t *e;
        int r;

        if (!json_is_array(v))
                return log_error_errno(EINVAL, "%s: \"hugepagePool\" must be a list of objects like "
                                       "{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 8}.", path);
        if (json_array_size(v) > 0) {
                pool = new0(PoolSetting, json_array_size(v));
                if (!pool)
                        return -ENOMEM;
        }
        json_array_foreach(v, i, e) {
                PoolSetting *p = &pool[i];
                const char *key;
                json_t *f;
                uint64_t count;

                if (!json_is_object(e))
                        return log_error_errno(EINVAL, "%s: \"hugepagePool\"[%zu] must be an object.", path, i);
                json_object_foreach(e, key, f)
                        if (!strv_contains((char **) allowed, key))
                                return log_error_errno(EINVAL, "%s: \"hugepagePool\"[%zu]: unknown key \"%s\".", path, i, key);
                r = pool_entry_u64(path, i, e, "hugepageSize", &p->hugepage_size);
                if (r < 0)
                        return r;
                if ((p->hugepage_size & (p->hugepage_size - 1)) != 0)
                        return log_error_errno(EINVAL, "%s: \"hugepagePool\"[%zu].hugepageSize must be a power of two "
                                               "(a hugepage size like 2097152 or 1073741824).", path, i);
                r = pool_entry_u64(path, i, e, "size", &p->size);
                if (r < 0)
                        return r;
                if (p->size % p->hugepage_size != 0 || p->size > NOIOMMU_ALLOC_SIZE_MAX)
                        return log_error_errno(EINVAL, "%s: \"hugepagePool\"[%zu].size must be a multiple of its "
                                               "hugepageSize, at most %" PRIu64 " bytes.", path, i, NOIOMMU_ALLOC_SIZE_MAX);
                r = pool_entry_u64(path, i, e, "count", &count);
                if (r < 0)
                        return r;
                if (count > NOIOMMU_POOL_REGIONS_MAX)
                        return log_error_errno(EINVAL, "%s: \"hugepagePool\"[%zu].count must be at most %u.",
                                               path, i, NOIOMMU_POOL_REGIONS_MAX);
                p->count = (unsigned) count;
                p->numa_node = -1;
                if ((f = json_object_get(e, "numaNode"))) {
                        if (!json_is_integer(f) || json_integer_value(f) < 0 ||
                            json_integer_value(f) > NOIOMMU_NUMA_NODE_MAX)
                                return log_error_errno(EINVAL, "%s: \"hugepagePool\"[%zu].numaNode must be a NUMA node "
                                                       "number from 0 to %u.", path, i, NOIOMMU_NUMA_NODE_MAX);
                        p->numa_node = (int) json_integer_value(f);
                }
                for (size_t j = 0; j < i; j++)
                        if (pool[j].hugepage_size == p->hugepage_size && pool[j].size == p->size &&
                            pool[j].numa_node == p->numa_node)
                                return log_error_errno(EINVAL, "%s: \"hugepagePool\"[%zu] repeats entry %zu; "
                                                       "raise that one's count instead.", path, i, j);
                /* Checked per entry, so that the sums stay far from overflowing: each entry
                 * adds at most 64 regions of 64 GiB. */
                regions += p->count;
                bytes += p->size * p->count;
                if (regions > NOIOMMU_POOL_REGIONS_MAX || bytes > NOIOMMU_POOL_BYTES_MAX)
                        return log_error_errno(EINVAL, "%s: \"hugepagePool\" holds %" PRIu64 " regions of %" PRIu64 " bytes "
                                               "in all by entry %zu; at most %u regions and %" PRIu64 " bytes are allowed.",
                                               path, regions, bytes, i, NOIOMMU_POOL_REGIONS_MAX, NOIOMMU_POOL_BYTES_MAX);
        }
        free(c->pool);
        c->pool = TAKE_PTR(pool);
        c->n_pool = json_array_size(v);
        return 0;
}

static int settings_merge_file(Settings *c, const char *path) {
        json_error_t err;
        json_t *root, *v;
        const char *key;
        int r = 0;

        root = json_load_file(path, JSON_REJECT_DUPLICATES, &err);
        if (!root) {
                FILE *f = fopen(path, "re");
                if (!f && errno == ENOENT)
                        return 0;
                if (f)
                        fclose(f);
                return log_error_errno(EINVAL, "%s:%d: %s", path, err.line, err.text);
        }
        if (!json_is_object(root)) {
                json_decref(root);
                return log_error_errno(EINVAL, "%s: the configuration must be a JSON object.", path);
        }

        json_object_foreach(root, key, v) {
                if (streq(key, "noiommuDevices"))
                        r = parse_address_list(path, key, v, &c->noiommu_devices);
                else if (streq(key, "iommuDevices")) {
                        if (json_is_string(v) && streq(json_string_value(v), "all"))
                                c->iommu_devices_all = true;
                        else {
                                c->iommu_devices_all = false;
                                r = parse_address_list(path, key, v, &c->iommu_devices);
                        }
                } else if (streq(key, "auditFailure")) {
                        if (json_is_string(v) && streq(json_string_value(v), "deny"))
                                c->audit_failure_log = false;
                        else if (json_is_string(v) && streq(json_string_value(v), "log"))
                                c->audit_failure_log = true;
                        else
                                r = log_error_errno(EINVAL, "%s: \"auditFailure\" must be \"deny\" or \"log\".", path);
                } else if (streq(key, "maxMemoryPerUid")) {
                        if (json_get_u64(v, &c->max_memory_per_uid) < 0 || c->max_memory_per_uid == 0)
                                r = log_error_errno(EINVAL, "%s: \"maxMemoryPerUid\" must be a positive number of bytes.", path);
                } else if (streq(key, "deviceBackends"))
                        r = parse_device_backends(c, path, v);
                else if (streq(key, "maxMemoryPerContainer")) {
                        if (json_get_u64(v, &c->max_memory_per_container) < 0 || c->max_memory_per_container == 0)
                                r = log_error_errno(EINVAL, "%s: \"maxMemoryPerContainer\" must be a positive number of bytes.", path);
                } else if (streq(key, "maxLeasesPerContainer")) {
                        if (json_get_u64(v, &c->max_leases_per_container) < 0 || c->max_leases_per_container == 0)
                                r = log_error_errno(EINVAL, "%s: \"maxLeasesPerContainer\" must be a positive number.", path);
                } else if (streq(key, "rootWithoutCapabilities")) {
                        if (json_is_string(v) && streq(json_string_value(v), "deny"))
                                c->root_without_capabilities_polkit = false;
                        else if (json_is_string(v) && streq(json_string_value(v), "polkit"))
                                c->root_without_capabilities_polkit = true;
                        else
                                r = log_error_errno(EINVAL, "%s: \"rootWithoutCapabilities\" must be \"deny\" or \"polkit\".", path);
                } else if (streq(key, "hugepagePool"))
                        r = parse_pool(c, path, v);
                else
                        r = log_error_errno(EINVAL, "%s: unknown key \"%s\".", path, key);
                if (r < 0)
                        break;
        }
        json_decref(root);
        return r;
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

int settings_load(const char *path, Settings *ret) {
        Settings c = { .iommu_devices_all = true };
        char dpath[PATH_MAX];
        char **files = NULL;
        size_t n = 0;
        DIR *d;
        int r;

        r = settings_merge_file(&c, path);
        if (r < 0)
                goto fail;

        (void) snprintf(dpath, sizeof(dpath), "%s.d", path);
        d = opendir(dpath);
        if (d) {
                struct dirent *de;

                while ((de = readdir(d))) {
                        size_t l = strlen(de->d_name);
                        char f[sizeof(dpath) + 1 + NAME_MAX];    /* DIR/NAME */

                        if (de->d_name[0] == '.' || l < 6 || !streq(de->d_name + l - 5, ".conf"))
                                continue;
                        (void) snprintf(f, sizeof(f), "%s/%s", dpath, de->d_name);
                        if (strv_extend(&files, f) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                        n++;
                }
                (void) closedir(d);
                if (r < 0)
                        goto fail;
                if (n > 0)
                        qsort(files, n, sizeof(char *), cmp_str);
                for (size_t i = 0; i < n; i++) {
                        r = settings_merge_file(&c, files[i]);
                        if (r < 0)
                                goto fail;
                }
        }
        strv_free(files);
        *ret = c;
        return 0;

fail:
        strv_free(files);
        settings_done(&c);
        return r;
}

void settings_done(Settings *c) {
        strv_free(c->noiommu_devices);
        strv_free(c->iommu_devices);
        free(c->device_backends);
        free(c->pool);
        *c = (Settings) {};
}

bool settings_allows_noiommu(const Settings *c, const char *address) {
        return strv_contains(c->noiommu_devices, address);
}

bool settings_allows_iommu(const Settings *c, const char *address) {
        return c->iommu_devices_all || strv_contains(c->iommu_devices, address);
}

Backend settings_device_backend(const Settings *c, const char *address) {
        for (size_t i = 0; i < c->n_device_backends; i++)
                if (streq(c->device_backends[i].address, address))
                        return c->device_backends[i].backend;
        return _BACKEND_INVALID;
}
