/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/settings.c: the "deviceBackends" setting (and that it is as strict as the others),
 * loaded from files in a temporary directory.
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

int main(void) {
        ASSERT_TRUE(mkdtemp(dir) != NULL);

        TEST(test_device_backends);
        TEST(test_device_backends_invalid);
        TEST(test_device_backends_drop_in);

        (void) unlink(write_file("noiommud.conf", ""));
        ASSERT_EQ(rmdir(dir), 0);
        return 0;
}
