/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Classification of kernel uevents into Monitor() device events. */
#include <string.h>

#include "monitor.h"
#include "tests.h"

#define UEVENT(s) s, sizeof(s) - 1

static void test_bind_vfio(void) {
        const char *dev = NULL, *detail = NULL;
        const char *e = monitor_classify_uevent(UEVENT("bind@/devices/pci0000:00/0000:00:03.0\0ACTION=bind\0"
                                                       "DEVPATH=/devices/pci0000:00/0000:00:03.0\0SUBSYSTEM=pci\0"
                                                       "DRIVER=vfio-pci\0PCI_SLOT_NAME=0000:00:03.0\0SEQNUM=7\0"),
                                                &dev, &detail);
        ASSERT_STREQ(e, "device-added");
        ASSERT_STREQ(dev, "0000:00:03.0");
        ASSERT_STREQ(detail, "vfio-pci");
}

static void test_bind_other_driver(void) {
        const char *dev, *detail;

        ASSERT_TRUE(monitor_classify_uevent(UEVENT("bind@/x\0ACTION=bind\0SUBSYSTEM=pci\0DRIVER=e1000e\0"
                                                   "PCI_SLOT_NAME=0000:00:03.0\0"), &dev, &detail) == NULL);
}

static void test_unbind_remove(void) {
        const char *dev, *detail;

        ASSERT_STREQ(monitor_classify_uevent(UEVENT("unbind@/x\0ACTION=unbind\0SUBSYSTEM=pci\0"
                                                    "PCI_SLOT_NAME=0000:01:00.0\0"), &dev, &detail), "device-removed");
        ASSERT_STREQ(detail, "unbind");
        ASSERT_STREQ(monitor_classify_uevent(UEVENT("remove@/x\0ACTION=remove\0SUBSYSTEM=pci\0"
                                                    "PCI_SLOT_NAME=0000:01:00.0\0"), &dev, &detail), "device-removed");
        ASSERT_STREQ(detail, "remove");
}

static void test_rejects(void) {
        const char *dev, *detail;

        /* other subsystems, malformed or missing addresses, changes */
        ASSERT_TRUE(monitor_classify_uevent(UEVENT("remove@/x\0ACTION=remove\0SUBSYSTEM=usb\0"
                                                   "PCI_SLOT_NAME=0000:01:00.0\0"), &dev, &detail) == NULL);
        ASSERT_TRUE(monitor_classify_uevent(UEVENT("remove@/x\0ACTION=remove\0SUBSYSTEM=pci\0"
                                                   "PCI_SLOT_NAME=../../etc\0"), &dev, &detail) == NULL);
        ASSERT_TRUE(monitor_classify_uevent(UEVENT("remove@/x\0ACTION=remove\0SUBSYSTEM=pci\0"), &dev, &detail) == NULL);
        ASSERT_TRUE(monitor_classify_uevent(UEVENT("change@/x\0ACTION=change\0SUBSYSTEM=pci\0"
                                                   "PCI_SLOT_NAME=0000:01:00.0\0"), &dev, &detail) == NULL);
        /* a key that only starts like another one */
        ASSERT_TRUE(monitor_classify_uevent(UEVENT("x@/x\0ACTIONX=remove\0SUBSYSTEM=pci\0"
                                                   "PCI_SLOT_NAME=0000:01:00.0\0"), &dev, &detail) == NULL);
        /* truncated: no terminating NUL on the last field */
        ASSERT_TRUE(monitor_classify_uevent("remove@/x\0ACTION=rem", 20, &dev, &detail) == NULL);
}

int main(void) {
        TEST(test_bind_vfio);
        TEST(test_bind_other_driver);
        TEST(test_unbind_remove);
        TEST(test_rejects);
        return 0;
}
