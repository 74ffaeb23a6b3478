/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon/inventory.c against the fixture sysfs trees in tests/fixtures/sysfs/<case>/ (see the
 * README there for what each tree models). The source root comes from $NOIOMMU_SOURCE_ROOT,
 * which meson sets; without it the current directory is taken as the source root.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "internal/fd-util.h"
#include "internal/macro.h"
#include "inventory.h"
#include "tests.h"

static const char *fixture(const char *name) {
        static char path[4096];
        const char *src = getenv("NOIOMMU_SOURCE_ROOT") ?: ".";

        (void) snprintf(path, sizeof(path), "%s/tests/fixtures/sysfs/%s", src, name);
        return path;
}

static int scan(const char *name, InventoryDevice **ret) {
        return inventory_scan(fixture(name), ret);
}

static void assert_ids(const InventoryDevice *d, uint16_t vendor, uint16_t device) {
        ASSERT_EQ(d->vendor_id, vendor);
        ASSERT_EQ(d->device_id, device);
}

static void assert_valid(const InventoryDevice *d, Backend b, const char *node, unsigned ma,
                         unsigned mi) {
        ASSERT_EQ(d->backend, b);
        ASSERT_STREQ(d->node_name, node);
        ASSERT_EQ(major(d->rdev), ma);
        ASSERT_EQ(minor(d->rdev), mi);
        ASSERT_TRUE(d->reason == NULL);
}

static void assert_invalid(const InventoryDevice *d, const char *reason) {
        ASSERT_EQ(d->backend, _BACKEND_INVALID);
        ASSERT_TRUE(d->reason != NULL);
        ASSERT_STREQ(d->reason, reason);
        ASSERT_STREQ(d->node_name, "");
        ASSERT_EQ(d->rdev, 0);
}

#define BIT(b) (1U << (b))
#define CDEV_NOIOMMU BIT(BACKEND_CDEV_NOIOMMU)
#define GROUP_NOIOMMU BIT(BACKEND_GROUP_NOIOMMU)
#define CDEV_IOMMU BIT(BACKEND_CDEV_IOMMU)

static void assert_contains(const char *s, const char *needle) {
        if (!s || !strstr(s, needle)) {
                fprintf(stderr, "expected \"%s\" in \"%s\"\n", needle, s ?: "(null)");
                ASSERT_TRUE(false);
        }
}

/* The device is not served, and its reason says (at least) this. */
static void assert_invalid_has(const InventoryDevice *d, const char *needle) {
        ASSERT_EQ(d->backend, _BACKEND_INVALID);
        ASSERT_STREQ(d->node_name, "");
        ASSERT_EQ(d->rdev, 0);
        ASSERT_TRUE(d->backend_reason == NULL);
        assert_contains(d->reason, needle);
}

/* Which backends the device can use, and why it uses the one it has. */
static void assert_choice(const InventoryDevice *d, unsigned available, const char *why) {
        ASSERT_EQ(d->available, available);
        for (Backend b = 0; b < _BACKEND_MAX; b++)
                ASSERT_EQ(d->candidates[b].reason == NULL, !!(available & BIT(b)));
        if (why)
                assert_contains(d->backend_reason, why);
}

static int noiommu_status(const char *name, const char **ret) {
        return inventory_noiommu_status(fixture(name), ret);
}

static void test_backend_strings(void) {
        for (Backend b = 0; b < _BACKEND_MAX; b++) {
                const char *s = backend_to_string(b);

                ASSERT_TRUE(s != NULL);
                ASSERT_EQ(backend_from_string(s), b);
        }
        ASSERT_STREQ(backend_to_string(BACKEND_CDEV_NOIOMMU), "cdev-noiommu");
        ASSERT_STREQ(backend_to_string(BACKEND_CDEV_IOMMU), "cdev-iommu");
        ASSERT_STREQ(backend_to_string(BACKEND_GROUP_NOIOMMU), "group-noiommu");
        ASSERT_TRUE(backend_to_string(_BACKEND_INVALID) == NULL);
        ASSERT_TRUE(backend_to_string(_BACKEND_MAX) == NULL);
        ASSERT_EQ(backend_from_string("noiommu"), _BACKEND_INVALID);
        ASSERT_EQ(backend_from_string("CDEV-IOMMU"), _BACKEND_INVALID);
        ASSERT_EQ(backend_from_string(""), _BACKEND_INVALID);
        ASSERT_EQ(backend_from_string(NULL), _BACKEND_INVALID);
}

static void test_empty(void) {
        InventoryDevice *devs = (InventoryDevice *) 0x1;

        ASSERT_EQ(scan("empty", &devs), 0);
        ASSERT_TRUE(devs == NULL);
}

static void test_missing_root(void) {
        InventoryDevice *devs = NULL;

        ASSERT_ERROR(scan("does-not-exist", &devs), ENOENT);
}

static void test_group_noiommu(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        ASSERT_EQ(scan("group-noiommu", &devs), 1);
        ASSERT_STREQ(devs[0].address, "0000:00:04.0");
        ASSERT_STREQ(devs[0].driver, "vfio-pci");
        assert_ids(&devs[0], 0x1234, 0x11e8);
        ASSERT_EQ(devs[0].iommu_group, 7);
        ASSERT_EQ(devs[0].numa_node, -1);
        /* vfio-dev/vfio0 exists without a dev attribute, as upstream registers it for noiommu
         * devices: it must not make this a cdev-iommu device. */
        assert_valid(&devs[0], BACKEND_GROUP_NOIOMMU, "noiommu-7", 243, 0);
        assert_choice(&devs[0], GROUP_NOIOMMU, "the only noiommu path");
        assert_contains(devs[0].candidates[BACKEND_CDEV_NOIOMMU].reason, "IOMMUFD_NOIOMMU");
}

static void test_cdev_noiommu(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        ASSERT_EQ(scan("cdev-noiommu", &devs), 1);
        ASSERT_STREQ(devs[0].address, "0000:00:04.0");
        assert_ids(&devs[0], 0x1234, 0x11e8);
        ASSERT_EQ(devs[0].iommu_group, 7);
        ASSERT_EQ(devs[0].numa_node, 0);
        /* The group chardev noiommu-7 exists too: the cdev is preferred. */
        assert_valid(&devs[0], BACKEND_CDEV_NOIOMMU, "noiommu-vfio0", 238, 0);
        assert_choice(&devs[0], CDEV_NOIOMMU | GROUP_NOIOMMU, "preferred over group-noiommu");
        ASSERT_STREQ(devs[0].candidates[BACKEND_GROUP_NOIOMMU].node_name, "noiommu-7");
}

static void test_cdev_iommu(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        /* No parameter file: CONFIG_VFIO_NOIOMMU is not built, which a real IOMMU doesn't need. */
        ASSERT_EQ(scan("cdev-iommu", &devs), 1);
        ASSERT_STREQ(devs[0].address, "0000:00:04.0");
        assert_ids(&devs[0], 0x1234, 0x11e8);
        ASSERT_EQ(devs[0].iommu_group, 3);
        ASSERT_EQ(devs[0].numa_node, 0);
        assert_valid(&devs[0], BACKEND_CDEV_IOMMU, "vfio0", 238, 0);
        assert_choice(&devs[0], CDEV_IOMMU, "real IOMMU");
}

static void test_mdev_like(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        /* noiommu mode is on, the device has a vfio cdev, no group and there is no IOMMU at
         * all: still not noiommu (hazard 2). The mdev below the i915 function is not listed.
         * From sysfs this is the same as a device bound before the parameter was set, so the
         * reason names the rebind. */
        ASSERT_EQ(scan("mdev-like", &devs), 1);
        ASSERT_STREQ(devs[0].address, "0000:00:05.0");
        assert_ids(&devs[0], 0x1af4, 0x1041);
        ASSERT_EQ(devs[0].iommu_group, -1);
        ASSERT_EQ(devs[0].numa_node, -1);
        assert_invalid_has(&devs[0], "rebind the device to vfio-pci after enabling "
                                     "vfio.enable_unsafe_noiommu_mode");
        assert_choice(&devs[0], 0, NULL);
}

static void test_noiommu_disabled(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        ASSERT_EQ(scan("noiommu-disabled", &devs), 2);

        ASSERT_STREQ(devs[0].address, "0000:00:04.0");
        assert_ids(&devs[0], 0x1234, 0x11e8);
        ASSERT_EQ(devs[0].iommu_group, 7);
        assert_invalid(&devs[0], "noiommu mode is not enabled: set vfio.enable_unsafe_noiommu_mode=1");
        assert_choice(&devs[0], 0, NULL);

        ASSERT_STREQ(devs[1].address, "0000:00:05.0");
        ASSERT_EQ(devs[1].iommu_group, -1);
        assert_invalid(&devs[1], "noiommu mode is not enabled: set vfio.enable_unsafe_noiommu_mode=1");
}

static void test_noiommu_unbuilt(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        ASSERT_EQ(scan("noiommu-unbuilt", &devs), 1);
        ASSERT_STREQ(devs[0].address, "0000:00:04.0");
        ASSERT_EQ(devs[0].iommu_group, 7);
        assert_invalid_has(&devs[0], "the kernel lacks VFIO_NOIOMMU (there is no "
                                     "vfio.enable_unsafe_noiommu_mode)");
}

static void test_not_vfio(void) {
        InventoryDevice *devs = NULL;

        ASSERT_EQ(scan("not-vfio", &devs), 0);
        ASSERT_TRUE(devs == NULL);
}

static void test_cdev_no_dev_attr(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        ASSERT_EQ(scan("cdev-no-dev-attr", &devs), 2);

        /* noiommu-vfio0 without "dev" and nothing else: no node to serve it with. */
        ASSERT_STREQ(devs[0].address, "0000:00:04.0");
        assert_ids(&devs[0], 0x1234, 0x11e8);
        ASSERT_EQ(devs[0].iommu_group, -1);
        ASSERT_EQ(devs[0].numa_node, 0);
        assert_invalid(&devs[0], "cdev node has no dev attribute");

        /* noiommu-vfio1 without "dev", but in noiommu group 8: the legacy group serves it. */
        ASSERT_STREQ(devs[1].address, "0000:00:05.0");
        ASSERT_EQ(devs[1].iommu_group, 8);
        assert_valid(&devs[1], BACKEND_GROUP_NOIOMMU, "noiommu-8", 243, 1);
        assert_choice(&devs[1], GROUP_NOIOMMU, NULL);
        ASSERT_STREQ(devs[1].candidates[BACKEND_CDEV_NOIOMMU].reason, "cdev node has no dev attribute");
}

static void test_mixed(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        /* Not listed: 0000:00:03.0 (e1000), "0000:00:0A.0" (not a canonical address),
         * "not-a-device". */
        ASSERT_EQ(scan("mixed", &devs), 7);

        ASSERT_STREQ(devs[0].address, "0000:00:04.0");
        assert_ids(&devs[0], 0x1234, 0x11e8);
        ASSERT_EQ(devs[0].iommu_group, 7);
        assert_valid(&devs[0], BACKEND_GROUP_NOIOMMU, "noiommu-7", 243, 7);

        /* A vfio-bound device in a "blocked" group: neither marker set holds. */
        ASSERT_STREQ(devs[1].address, "0000:00:05.0");
        assert_ids(&devs[1], 0x1af4, 0x1000);
        ASSERT_EQ(devs[1].iommu_group, 9);
        assert_invalid(&devs[1], "IOMMU group type is not DMA, DMA-FQ or identity");

        ASSERT_STREQ(devs[2].address, "0000:00:06.0");
        ASSERT_EQ(devs[2].vendor_id, 0);
        ASSERT_EQ(devs[2].iommu_group, 10);
        assert_invalid(&devs[2], "cannot read vendor or device id");

        /* noiommu cdev while the group has a real DMA domain: contradictory markers. */
        ASSERT_STREQ(devs[3].address, "0000:00:07.0");
        ASSERT_EQ(devs[3].iommu_group, 12);
        assert_invalid(&devs[3], "noiommu cdev in a real IOMMU group");

        ASSERT_STREQ(devs[4].address, "0000:00:08.0");
        ASSERT_EQ(devs[4].iommu_group, -1);
        assert_invalid(&devs[4], "iommu_group link is malformed");

        ASSERT_STREQ(devs[5].address, "0000:0a:00.1");
        assert_ids(&devs[5], 0x1234, 0x11e8);
        ASSERT_EQ(devs[5].iommu_group, 11);
        ASSERT_EQ(devs[5].numa_node, 0);
        assert_valid(&devs[5], BACKEND_GROUP_NOIOMMU, "noiommu-11", 243, 11);

        /* A vfio-pci variant driver, admitted by its vfio-dev directory, without a group
         * (VFIO_GROUP=n). */
        ASSERT_STREQ(devs[6].address, "0001:00:00.0");
        ASSERT_STREQ(devs[6].driver, "mlx5_vfio_pci");
        assert_ids(&devs[6], 0x15b3, 0x101e);
        ASSERT_EQ(devs[6].iommu_group, -1);
        ASSERT_EQ(devs[6].numa_node, 1);
        assert_valid(&devs[6], BACKEND_CDEV_NOIOMMU, "noiommu-vfio2", 238, 2);

        for (size_t i = 1; i < 7; i++)
                ASSERT_TRUE(strcmp(devs[i - 1].address, devs[i].address) < 0);
}

/* The kernel's support matrix (linux-7.3.md "Kconfig"), one fixture per row. */

static void test_kconfig_1_group_container(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;
        const char *why = (const char *) 0x1;

        /* group + container, no cdev: the group path, and the cdev is the kernel's to add. */
        ASSERT_EQ(noiommu_status("kconfig-1-group-container", &why), 1);
        ASSERT_TRUE(why == NULL);
        ASSERT_EQ(scan("kconfig-1-group-container", &devs), 1);
        assert_valid(&devs[0], BACKEND_GROUP_NOIOMMU, "noiommu-7", 243, 0);
        assert_choice(&devs[0], GROUP_NOIOMMU, "the kernel registered no noiommu cdev");
        assert_contains(devs[0].candidates[BACKEND_CDEV_NOIOMMU].reason,
                        "the kernel lacks VFIO_NOIOMMU for cdev (IOMMUFD_NOIOMMU");
        assert_contains(devs[0].candidates[BACKEND_CDEV_NOIOMMU].reason, "use the group path or rebuild");
}

static void test_kconfig_no_container(void) {
        static const char *const cases[] = {
                "kconfig-2-group-no-container",
                "kconfig-4-group-cdev-no-container",
        };

        /* No container backend: VFIO_NOIOMMU cannot be built, vfio-pci refuses edu, and nothing
         * is listed. The kernel-wide reason says what to change; case 4 looks like case 2. */
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                InventoryDevice *devs = NULL;
                const char *why = NULL;

                ASSERT_EQ(noiommu_status(cases[i], &why), 0);
                assert_contains(why, "needs a /dev/vfio/vfio container backend (VFIO_CONTAINER or "
                                     "IOMMUFD_VFIO_CONTAINER)");
                ASSERT_EQ(scan(cases[i], &devs), 0);
                ASSERT_TRUE(devs == NULL);
        }
}

static void test_kconfig_3_group_container_cdev(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        /* Both paths: the cdev is picked, the group is recorded as available. The fixture stands
         * for VFIO's and iommufd's container alike (both register misc "vfio"). */
        ASSERT_EQ(scan("kconfig-3-group-container-cdev", &devs), 1);
        assert_valid(&devs[0], BACKEND_CDEV_NOIOMMU, "noiommu-vfio0", 238, 0);
        assert_choice(&devs[0], CDEV_NOIOMMU | GROUP_NOIOMMU, "preferred over group-noiommu");
        ASSERT_STREQ(devs[0].candidates[BACKEND_GROUP_NOIOMMU].node_name, "noiommu-7");
        ASSERT_EQ(devs[0].candidates[BACKEND_GROUP_NOIOMMU].rdev, makedev(243, 0));
        ASSERT_FALSE(devs[0].forced);
}

static void test_kconfig_5_cdev_only(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;
        const char *why = NULL;

        ASSERT_EQ(noiommu_status("kconfig-5-cdev-only", &why), 1);
        ASSERT_EQ(scan("kconfig-5-cdev-only", &devs), 1);
        ASSERT_EQ(devs[0].iommu_group, -1);
        assert_valid(&devs[0], BACKEND_CDEV_NOIOMMU, "noiommu-vfio0", 238, 0);
        assert_choice(&devs[0], CDEV_NOIOMMU, "it has no noiommu group");
        assert_contains(devs[0].candidates[BACKEND_GROUP_NOIOMMU].reason, "no VFIO_GROUP");
}

static void test_kconfig_iommufd_without_noiommu(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        /* "vfio0" without dev next to a noiommu group: the same from userspace as case 1. */
        ASSERT_EQ(scan("kconfig-iommufd-without-noiommu", &devs), 1);
        assert_valid(&devs[0], BACKEND_GROUP_NOIOMMU, "noiommu-7", 243, 0);
        assert_choice(&devs[0], GROUP_NOIOMMU, "IOMMUFD_NOIOMMU");
        assert_contains(devs[0].candidates[BACKEND_CDEV_NOIOMMU].reason,
                        "the kernel lacks VFIO_NOIOMMU for cdev (IOMMUFD_NOIOMMU");
        ASSERT_STREQ(devs[0].candidates[BACKEND_CDEV_IOMMU].reason, "cdev node has no dev attribute");
}

static void test_bound_before_noiommu(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        ASSERT_EQ(scan("bound-before-noiommu", &devs), 1);
        assert_invalid_has(&devs[0], "rebind the device to vfio-pci after enabling "
                                     "vfio.enable_unsafe_noiommu_mode");
        assert_choice(&devs[0], 0, NULL);
}

static void test_noiommu_status(void) {
        const char *why = NULL;

        ASSERT_EQ(noiommu_status("devices", &why), 1);
        ASSERT_TRUE(why == NULL);
        ASSERT_EQ(noiommu_status("noiommu-disabled", &why), 0);
        ASSERT_STREQ(why, "noiommu mode is not enabled: set vfio.enable_unsafe_noiommu_mode=1");
        ASSERT_EQ(noiommu_status("noiommu-unbuilt", &why), 0);
        assert_contains(why, "the kernel lacks VFIO_NOIOMMU (there is no");
        ASSERT_ERROR(noiommu_status("does-not-exist", &why), ENOENT);
}

static void test_force(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;
        InventoryDevice d;

        /* Case 3, group forced: served by the group, cdev still listed as available. */
        ASSERT_EQ(scan("kconfig-3-group-container-cdev", &devs), 1);
        d = devs[0];
        inventory_device_force(&d, BACKEND_GROUP_NOIOMMU);
        assert_valid(&d, BACKEND_GROUP_NOIOMMU, "noiommu-7", 243, 0);
        assert_choice(&d, CDEV_NOIOMMU | GROUP_NOIOMMU, "deviceBackends");
        ASSERT_TRUE(d.forced);
        ASSERT_EQ(d.forced_backend, BACKEND_GROUP_NOIOMMU);

        /* Forcing what it would pick anyway says so too. */
        d = devs[0];
        inventory_device_force(&d, BACKEND_CDEV_NOIOMMU);
        assert_valid(&d, BACKEND_CDEV_NOIOMMU, "noiommu-vfio0", 238, 0);
        assert_contains(d.backend_reason, "deviceBackends");

        /* An unavailable backend: not served, with that backend's reason. */
        d = devs[0];
        inventory_device_force(&d, BACKEND_CDEV_IOMMU);
        ASSERT_EQ(d.backend, _BACKEND_INVALID);
        ASSERT_TRUE(d.reason != NULL);
        ASSERT_STREQ(d.reason, devs[0].candidates[BACKEND_CDEV_IOMMU].reason);
        ASSERT_TRUE(d.forced);
        ASSERT_EQ(d.forced_backend, BACKEND_CDEV_IOMMU);
        free(devs);
        devs = NULL;

        /* cdev forced on a kernel without IOMMUFD_NOIOMMU: the reason tells what to do. */
        ASSERT_EQ(scan("kconfig-iommufd-without-noiommu", &devs), 1);
        d = devs[0];
        inventory_device_force(&d, BACKEND_CDEV_NOIOMMU);
        assert_invalid_has(&d, "the kernel lacks VFIO_NOIOMMU for cdev (IOMMUFD_NOIOMMU");
        free(devs);
        devs = NULL;

        /* noiommu mode off: whichever backend is forced, the reason is the parameter. */
        ASSERT_EQ(scan("noiommu-disabled", &devs), 2);
        d = devs[0];
        inventory_device_force(&d, BACKEND_GROUP_NOIOMMU);
        assert_invalid(&d, "noiommu mode is not enabled: set vfio.enable_unsafe_noiommu_mode=1");
        free(devs);
        devs = NULL;

        /* A device whose attributes are unreadable keeps its own reason. */
        ASSERT_EQ(scan("mixed", &devs), 7);
        d = devs[2];
        inventory_device_force(&d, BACKEND_GROUP_NOIOMMU);
        assert_invalid(&d, "cannot read vendor or device id");
}

/* Whether the kernel (and whatever runs us: valgrind 3.19 does not know openat2) offers
 * openat2(). Without it inventory.c falls back to openat(), which is fine for root "/" but does
 * not confine a fixture tree. */
static bool have_openat2(void) {
        struct open_how how = { .flags = O_PATH | O_CLOEXEC };
        long fd;

        fd = syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof(how));
        if (fd < 0)
                return false;
        (void) safe_close((int) fd);
        return true;
}

static void test_escape(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;

        if (!have_openat2()) {
                fprintf(stderr, "openat2() unavailable, skipping\n");
                return;
        }

        /* The absolute link resolves inside the fixture (a host device could not have these
         * ids), and the link climbing out of the tree is clamped to its root. */
        ASSERT_EQ(scan("escape", &devs), 1);
        ASSERT_STREQ(devs[0].address, "0000:00:04.0");
        assert_ids(&devs[0], 0x1234, 0xbeef);
        assert_valid(&devs[0], BACKEND_GROUP_NOIOMMU, "noiommu-7", 243, 0);
}

static void test_host(void) {
        _cleanup_free_ InventoryDevice *devs = NULL;
        int n, fds;

        /* Whatever the host has, a scan of the real sysfs succeeds and leaks nothing. */
        fds = fd_count(0);
        ASSERT_OK(fds);
        n = inventory_scan("/", &devs);
        ASSERT_OK(n);
        for (int i = 0; i < n; i++)
                ASSERT_TRUE(devs[i].backend >= 0 || devs[i].reason != NULL);
        ASSERT_EQ(fd_count(0), fds);
}

int main(void) {
        TEST(test_backend_strings);
        TEST(test_empty);
        TEST(test_missing_root);
        TEST(test_group_noiommu);
        TEST(test_cdev_noiommu);
        TEST(test_cdev_iommu);
        TEST(test_mdev_like);
        TEST(test_noiommu_disabled);
        TEST(test_noiommu_unbuilt);
        TEST(test_not_vfio);
        TEST(test_cdev_no_dev_attr);
        TEST(test_mixed);
        TEST(test_kconfig_1_group_container);
        TEST(test_kconfig_no_container);
        TEST(test_kconfig_3_group_container_cdev);
        TEST(test_kconfig_5_cdev_only);
        TEST(test_kconfig_iommufd_without_noiommu);
        TEST(test_bound_before_noiommu);
        TEST(test_noiommu_status);
        TEST(test_force);
        TEST(test_escape);
        TEST(test_host);
        return 0;
}
