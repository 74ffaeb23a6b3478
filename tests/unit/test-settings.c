/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/settings.c: the "deviceBackends" and "hugepagePool" settings (and that they are as
 * strict as the others), loaded from files in a temporary directory.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal/macro.h"
#include "settings.h"
#include "tests.h"

static char dir[] = "/tmp/test-settings-XXXXXX";

static const char *write_file(const char *name, const char *text) {
        static char path[256];
        FILE *f;

        (void) snprintf(path, sizeof(path), "%s/%s", dir, name);
        f = fopen(path, "we");
        ASSERT_TRUE(f != NULL);
        ASSERT_TRUE(fputs(text, f) >= 0);
        ASSERT_EQ(fclose(f), 0);
        return path;
}

static int load(const char *text, Settings *ret) {
        char path[256];

        (void) snprintf(path, sizeof(path), "%s", write_file("noiommud.conf", text));
        return settings_load(path, ret);
}

static void test_device_backends(void) {
        Settings c = {};

        ASSERT_OK(load("{\"deviceBackends\": {\"0000:00:03.0\": \"group-noiommu\", "
                       "\"0000:00:04.0\": \"cdev-noiommu\", \"0001:02:00.7\": \"cdev-iommu\"}}", &c));
        ASSERT_EQ(c.n_device_backends, 3);
        ASSERT_EQ(settings_device_backend(&c, "0000:00:03.0"), BACKEND_GROUP_NOIOMMU);
        ASSERT_EQ(settings_device_backend(&c, "0000:00:04.0"), BACKEND_CDEV_NOIOMMU);
        ASSERT_EQ(settings_device_backend(&c, "0001:02:00.7"), BACKEND_CDEV_IOMMU);
        ASSERT_EQ(settings_device_backend(&c, "0000:00:05.0"), _BACKEND_INVALID);
        settings_done(&c);

        /* Empty is fine, absent is "no override". */
        ASSERT_OK(load("{\"deviceBackends\": {}}", &c));
        ASSERT_EQ(c.n_device_backends, 0);
        settings_done(&c);
        ASSERT_OK(load("{}", &c));
        ASSERT_EQ(settings_device_backend(&c, "0000:00:03.0"), _BACKEND_INVALID);
        settings_done(&c);
}

static void test_device_backends_invalid(void) {
        static const char *const bad[] = {
                "{\"deviceBackends\": [\"0000:00:03.0\"]}",                     /* not an object */
                "{\"deviceBackends\": \"group-noiommu\"}",
                "{\"deviceBackends\": {\"0000:00:3.0\": \"group-noiommu\"}}",   /* not canonical */
                "{\"deviceBackends\": {\"0000:00:03.0 \": \"group-noiommu\"}}",
                "{\"deviceBackends\": {\"0000:00:0A.0\": \"group-noiommu\"}}",  /* upper case */
                "{\"deviceBackends\": {\"../0000:00:03\": \"group-noiommu\"}}",
                "{\"deviceBackends\": {\"0000:00:03.0\": \"group\"}}",          /* no such backend */
                "{\"deviceBackends\": {\"0000:00:03.0\": \"GROUP-NOIOMMU\"}}",
                "{\"deviceBackends\": {\"0000:00:03.0\": \"\"}}",
                "{\"deviceBackends\": {\"0000:00:03.0\": null}}",
                "{\"deviceBackends\": {\"0000:00:03.0\": 1}}",
                "{\"deviceBackends\": {\"0000:00:03.0\": [\"group-noiommu\"]}}",
                "{\"deviceBackend\": {\"0000:00:03.0\": \"group-noiommu\"}}",   /* typo of the key */
                /* the same device twice */
                "{\"deviceBackends\": {\"0000:00:03.0\": \"group-noiommu\", \"0000:00:03.0\": \"cdev-noiommu\"}}",
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Settings c = {};

                ASSERT_ERROR(load(bad[i], &c), EINVAL);
                ASSERT_TRUE(c.device_backends == NULL);
        }
}

static void test_device_backends_drop_in(void) {
        char d[256], path[256];
        Settings c = {};

        /* A drop-in overrides the main file per device and adds to it. */
        (void) snprintf(d, sizeof(d), "%s/noiommud.conf.d", dir);
        ASSERT_TRUE(mkdir(d, 0755) == 0 || errno == EEXIST);
        (void) write_file("noiommud.conf.d/50-vm.conf",
                          "{\"deviceBackends\": {\"0000:00:03.0\": \"cdev-noiommu\", "
                          "\"0000:00:06.0\": \"group-noiommu\"}}");
        (void) snprintf(path, sizeof(path), "%s",
                        write_file("noiommud.conf", "{\"deviceBackends\": {\"0000:00:03.0\": \"group-noiommu\"}}"));
        ASSERT_OK(settings_load(path, &c));
        ASSERT_EQ(c.n_device_backends, 2);
        ASSERT_EQ(settings_device_backend(&c, "0000:00:03.0"), BACKEND_CDEV_NOIOMMU);
        ASSERT_EQ(settings_device_backend(&c, "0000:00:06.0"), BACKEND_GROUP_NOIOMMU);
        settings_done(&c);

        ASSERT_EQ(unlink(write_file("noiommud.conf.d/50-vm.conf", "")), 0);
        ASSERT_EQ(rmdir(d), 0);
}

static void test_pool(void) {
        Settings c = {};

        ASSERT_OK(load("{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 4194304, \"count\": 8}, "
                       "{\"hugepageSize\": 1073741824, \"size\": 1073741824, \"count\": 1, \"numaNode\": 1}, "
                       "{\"hugepageSize\": 2097152, \"size\": 4194304, \"count\": 2, \"numaNode\": 0}]}", &c));
        ASSERT_EQ(c.n_pool, 3);
        ASSERT_EQ(c.pool[0].hugepage_size, UINT64_C(2097152));
        ASSERT_EQ(c.pool[0].size, UINT64_C(4194304));
        ASSERT_EQ(c.pool[0].count, 8U);
        ASSERT_EQ(c.pool[0].numa_node, -1);
        ASSERT_EQ(c.pool[1].hugepage_size, UINT64_C(1073741824));
        ASSERT_EQ(c.pool[1].numa_node, 1);
        ASSERT_EQ(c.pool[2].numa_node, 0);
        settings_done(&c);

        /* The caps exactly: 64 regions, 64 GiB. */
        ASSERT_OK(load("{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 63}, "
                       "{\"hugepageSize\": 2097152, \"size\": 68587356160, \"count\": 1}]}", &c));
        ASSERT_EQ(c.n_pool, 2);
        settings_done(&c);

        ASSERT_OK(load("{\"hugepagePool\": []}", &c));
        ASSERT_EQ(c.n_pool, 0);
        ASSERT_TRUE(c.pool == NULL);
        settings_done(&c);
}

static void test_pool_invalid(void) {
        static const char *const bad[] = {
                "{\"hugepagePool\": {}}",
                "{\"hugepagePool\": [1]}",
                "{\"hugepagePool\": [{\"size\": 2097152, \"count\": 1}]}",                        /* no hugepageSize */
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"count\": 1}]}",                /* no size */
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152}]}",           /* no count */
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 0}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": -1}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 1.5}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": \"1\"}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 3145728, \"size\": 3145728, \"count\": 1}]}",   /* not 2^n */
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 3145728, \"count\": 1}]}",   /* not a multiple */
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 0, \"count\": 1}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 0, \"size\": 2097152, \"count\": 1}]}",
                /* larger than the largest allocation, 64 GiB */
                "{\"hugepagePool\": [{\"hugepageSize\": 1073741824, \"size\": 69793218560, \"count\": 1}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 65}]}",
                /* 65 regions, 65 GiB in all */
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 64}, "
                "{\"hugepageSize\": 2097152, \"size\": 4194304, \"count\": 1}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 1073741824, \"size\": 34359738368, \"count\": 1}, "
                "{\"hugepageSize\": 1073741824, \"size\": 35433480192, \"count\": 1}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 1, \"numaNode\": -1}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 1, \"numaNode\": 1024}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 1, \"numaNode\": null}]}",
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 1, \"node\": 0}]}",
                /* the same entry twice */
                "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 1}, "
                "{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 2}]}",
                "{\"hugepagepool\": []}",                                                             /* typo */
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                Settings c = {};

                ASSERT_ERROR(load(bad[i], &c), EINVAL);
                ASSERT_TRUE(c.pool == NULL);
        }
}

static void test_pool_drop_in(void) {
        char d[256], path[256];
        Settings c = {};

        /* A drop-in's list replaces the main file's: [] switches the pool off. */
        (void) snprintf(d, sizeof(d), "%s/noiommud.conf.d", dir);
        ASSERT_TRUE(mkdir(d, 0755) == 0 || errno == EEXIST);
        (void) write_file("noiommud.conf.d/50-pool.conf",
                          "{\"hugepagePool\": [{\"hugepageSize\": 2097152, \"size\": 2097152, \"count\": 2}]}");
        (void) snprintf(path, sizeof(path), "%s",
                        write_file("noiommud.conf", "{\"hugepagePool\": [{\"hugepageSize\": 2097152, "
                                   "\"size\": 4194304, \"count\": 1}, {\"hugepageSize\": 2097152, "
                                   "\"size\": 8388608, \"count\": 1}]}"));
        ASSERT_OK(settings_load(path, &c));
        ASSERT_EQ(c.n_pool, 1);
        ASSERT_EQ(c.pool[0].size, UINT64_C(2097152));
        ASSERT_EQ(c.pool[0].count, 2U);
        settings_done(&c);

        (void) write_file("noiommud.conf.d/50-pool.conf", "{\"hugepagePool\": []}");
        ASSERT_OK(settings_load(path, &c));
        ASSERT_EQ(c.n_pool, 0);
        settings_done(&c);

        ASSERT_EQ(unlink(write_file("noiommud.conf.d/50-pool.conf", "")), 0);
        ASSERT_EQ(rmdir(d), 0);
}

int main(void) {
        ASSERT_TRUE(mkdtemp(dir) != NULL);

        TEST(test_device_backends);
        TEST(test_device_backends_invalid);
        TEST(test_device_backends_drop_in);
        TEST(test_pool);
        TEST(test_pool_invalid);
        TEST(test_pool_drop_in);

        (void) unlink(write_file("noiommud.conf", ""));
        ASSERT_EQ(rmdir(dir), 0);
        return 0;
}
