/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cgroup paths -> the unit and container id the daemon believes (identity.h, cgroup_parse()),
 * on paths as podman, docker, containerd, CRI-O, systemd and kubelet make them, and on hostile
 * ones: names a delegate chose below a unit or a delegated cgroup, which must never be taken
 * for the system manager's.
 */
#include <stdbool.h>
#include <string.h>

#include "identity.h"
#include "tests.h"

#define ID_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define ID_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

/* The fake hierarchy: a prefix is a delegation boundary if it is listed. */
static const char *const *delegated_list;

static int fake_delegated(const char *path, size_t len, void *userdata) {
        for (const char *const *d = delegated_list; d && *d; d++)
                if (strlen(*d) == len && memcmp(*d, path, len) == 0)
                        return 1;
        return 0;
}

static int failing_delegated(const char *path, size_t len, void *userdata) {
        return -ENOENT;
}

static void check(const char *path, const char *unit, const char *id, const char *engine) {
        CgroupInfo info;
        char u[CLIENT_UNIT_MAX] = "";

        fprintf(stderr, "   %s\n", path);
        ASSERT_OK(cgroup_parse(path, fake_delegated, NULL, &info));
        if (info.unit_len > 0) {
                memcpy(u, path + info.unit_offset, info.unit_len);
                u[info.unit_len] = 0;
                ASSERT_EQ(info.unit_cgroup_len, info.unit_offset + info.unit_len);
        }
        ASSERT_STREQ(u, unit ?: "");
        ASSERT_STREQ(info.container_id, id ?: "");
        if (engine)
                ASSERT_STREQ(info.container_engine, engine);
        else
                ASSERT_TRUE(info.container_engine == NULL);
}

static void test_systemd_units(void) {
        delegated_list = NULL;
        check("/", NULL, NULL, NULL);
        check("/system.slice/sshd.service", "sshd.service", NULL, NULL);
        check("/user.slice/user-1000.slice/session-3.scope", "session-3.scope", NULL, NULL);
        check("/init.scope", "init.scope", NULL, NULL);
        check("/system.slice/system-getty.slice/getty@tty1.service", "getty@tty1.service", NULL, NULL);
        /* user@.service is delegated: what the user manager runs is inside it */
        check("/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service",
              "user@1000.service", NULL, NULL);
        /* deeply nested slices */
        check("/a.slice/a-b.slice/a-b-c.slice/a-b-c-d.slice/a-b-c-d-e.slice/a-b-c-d-e-f.slice/"
              "a-b-c-d-e-f-g.slice/a-b-c-d-e-f-g-h.slice/a-b-c-d-e-f-g-h-i.slice/x.service/y",
              "x.service", NULL, NULL);
        /* a slice named like a service is a slice */
        check("/odd.service.slice/x.service", "x.service", NULL, NULL);
}

static void test_containers_systemd_driver(void) {
        delegated_list = NULL;
        check("/machine.slice/libpod-" ID_A ".scope", "libpod-" ID_A ".scope", ID_A, "podman");
        check("/machine.slice/libpod-" ID_A ".scope/container", "libpod-" ID_A ".scope", ID_A, "podman");
        check("/machine.slice/libpod-conmon-" ID_A ".scope", "libpod-conmon-" ID_A ".scope", ID_A, "podman");
        check("/system.slice/docker-" ID_A ".scope", "docker-" ID_A ".scope", ID_A, "docker");
        check("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0e1f2a3b_4c5d_6e7f_8091_a2b3c4d5e6f7.slice/"
              "cri-containerd-" ID_A ".scope", "cri-containerd-" ID_A ".scope", ID_A, "containerd");
        check("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podx.slice/crio-" ID_A ".scope",
              "crio-" ID_A ".scope", ID_A, "cri-o");
        check("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podx.slice/crio-conmon-" ID_A ".scope",
              "crio-conmon-" ID_A ".scope", ID_A, "cri-o");
        /* nested: the outer container is the one the host's engine made */
        check("/machine.slice/libpod-" ID_A ".scope/container/docker-" ID_B ".scope",
              "libpod-" ID_A ".scope", ID_A, "podman");
        /* not quite an id: wrong length, upper case, no .scope */
        check("/machine.slice/libpod-0123.scope", "libpod-0123.scope", NULL, NULL);
        check("/machine.slice/libpod-0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef.scope",
              "libpod-0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef.scope", NULL, NULL);
        check("/system.slice/docker-" ID_A ".service", "docker-" ID_A ".service", NULL, NULL);
}

static void test_containers_cgroupfs_driver(void) {
        delegated_list = NULL;
        check("/libpod_parent/libpod-" ID_A, NULL, ID_A, "podman");
        check("/libpod_parent/libpod-" ID_A "/ctr", NULL, ID_A, "podman");
        check("/libpod_parent/libpod-conmon-" ID_A, NULL, ID_A, "podman");
        check("/docker/" ID_A, NULL, ID_A, "docker");
        check("/docker/" ID_A "/docker/" ID_B, NULL, ID_A, "docker");
        check("/k8s.io/" ID_A, NULL, ID_A, "containerd");
        check("/kubepods/besteffort/pod0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7/" ID_A, NULL, ID_A, "kubernetes");
        check("/kubepods/pod0e1f2a3b-4c5d-6e7f-8091-a2b3c4d5e6f7/" ID_A, NULL, ID_A, "kubernetes");
        /* only at the top of the hierarchy */
        check("/foo/docker/" ID_A, NULL, NULL, NULL);
        check("/foo/libpod_parent/libpod-" ID_A, NULL, NULL, NULL);
}

static void test_hostile(void) {
        /* A delegate names things below its unit as it likes: never the unit, never a container. */
        delegated_list = NULL;
        check("/user.slice/user-1000.slice/user@1000.service/app.slice/sshd.service",
              "user@1000.service", NULL, NULL);
        check("/system.slice/foo.service/sshd.service", "foo.service", NULL, NULL);
        check("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" ID_A ".scope/container",
              "user@1000.service", NULL, NULL);
        check("/system.slice/evil.service/libpod_parent/libpod-" ID_A, "evil.service", NULL, NULL);
        check("/system.slice/evil.service/docker/" ID_A, "evil.service", NULL, NULL);
        check("/user.slice/user-1000.slice/session-2.scope/docker-" ID_A ".scope",
              "session-2.scope", NULL, NULL);

        /* A delegated slice (not something systemd makes) ends the walk with nothing. */
        delegated_list = (const char *const[]) { "/evil.slice", NULL };
        check("/evil.slice/sshd.service", NULL, NULL, NULL);
        check("/evil.slice/libpod-" ID_A ".scope", NULL, NULL, NULL);
        check("/system.slice/sshd.service", "sshd.service", NULL, NULL);
        /* ... also deeper down */
        delegated_list = (const char *const[]) { "/user.slice/user-1000.slice", NULL };
        check("/user.slice/user-1000.slice/sshd.service", NULL, NULL, NULL);

        /* cgroupfs places handed to a user (chown) are not believed */
        delegated_list = (const char *const[]) { "/libpod_parent", "/docker", NULL };
        check("/libpod_parent/libpod-" ID_A, NULL, NULL, NULL);
        check("/docker/" ID_A, NULL, NULL, NULL);
        /* the container's own cgroup may be delegated to it: that is normal */
        delegated_list = (const char *const[]) { "/docker/" ID_A, "/machine.slice/libpod-" ID_A ".scope", NULL };
        check("/docker/" ID_A "/sub", NULL, ID_A, "docker");
        check("/machine.slice/libpod-" ID_A ".scope/container", "libpod-" ID_A ".scope", ID_A, "podman");

        /* outside our cgroup namespace, odd spellings */
        delegated_list = NULL;
        check("/../../system.slice/sshd.service", NULL, NULL, NULL);
        check("/system.slice/../sshd.service", NULL, NULL, NULL);
        check("//system.slice/sshd.service", NULL, NULL, NULL);
        check("system.slice/sshd.service", NULL, NULL, NULL);
        check("", NULL, NULL, NULL);

        /* a delegation test that fails (cgroup gone) believes nothing */
        CgroupInfo info;
        ASSERT_OK(cgroup_parse("/evil.slice/sshd.service", failing_delegated, NULL, &info));
        ASSERT_EQ(info.unit_len, 0);
        ASSERT_OK(cgroup_parse("/docker/" ID_A, failing_delegated, NULL, &info));
        ASSERT_TRUE(info.container_engine == NULL);
        /* a top-level unit needs no delegation test */
        ASSERT_OK(cgroup_parse("/sshd.service", failing_delegated, NULL, &info));
        ASSERT_EQ(info.unit_len, strlen("sshd.service"));
}

static void test_pick_line(void) {
        char v2[] = "0::/system.slice/a.service\n";
        char hybrid[] = "12:pids:/system.slice/a.service\n1:name=systemd:/system.slice/a.service\n0::/system.slice/a.service\n";
        char v1only[] = "4:memory:/x\n1:name=systemd:/user.slice/b.scope\n0::/\n";
        char v1root[] = "4:memory:/x\n1:name=systemd:/\n0::/libpod_parent/libpod-" ID_A "\n";
        char nothing[] = "4:memory:/x\n";
        /* a hostile name cannot fake a line: the kernel writes one line per hierarchy */
        char weird[] = "1:name=systemd:/evil.slice\n0::/a:name=systemd:/sshd.service\n";
        bool named;

        ASSERT_STREQ(cgroup_pick_line(v2, true, &named), "/system.slice/a.service");
        ASSERT_FALSE(named);
        ASSERT_STREQ(cgroup_pick_line(hybrid, false, &named), "/system.slice/a.service");
        ASSERT_TRUE(named);
        ASSERT_STREQ(cgroup_pick_line(v1only, false, &named), "/user.slice/b.scope");
        ASSERT_TRUE(named);
        ASSERT_STREQ(cgroup_pick_line(v1root, false, &named), "/libpod_parent/libpod-" ID_A);
        ASSERT_FALSE(named);
        ASSERT_TRUE(cgroup_pick_line(nothing, false, &named) == NULL);
        ASSERT_STREQ(cgroup_pick_line(weird, false, &named), "/evil.slice");
}

static void test_limit_key(void) {
        ClientIdentity id = CLIENT_IDENTITY_INIT;
        char buf[CLIENT_CGROUP_MAX + 16];

        ASSERT_TRUE(client_identity_limit_key(&id, buf, sizeof(buf)) == NULL);
        strcpy(id.cgroup, "/system.slice/foo.service/sub");
        strcpy(id.unit, "foo.service");
        id.unit_cgroup_len = strlen("/system.slice/foo.service");
        ASSERT_STREQ(client_identity_limit_key(&id, buf, sizeof(buf)), "unit:/system.slice/foo.service");
        strcpy(id.container_id, ID_A);
        ASSERT_STREQ(client_identity_limit_key(&id, buf, sizeof(buf)), "container:" ID_A);
}

static void test_capability(void) {
        ClientIdentity id = CLIENT_IDENTITY_INIT;

        ASSERT_ERROR(client_identity_has_capability(&id, CLIENT_CAP_SYS_RAWIO), ENODATA);
        id.cap_known = true;
        id.cap_effective = UINT64_C(1) << CLIENT_CAP_SYS_RAWIO;
        ASSERT_ERROR(client_identity_has_capability(&id, CLIENT_CAP_SYS_RAWIO), ENODATA);
        id.userns_initial = 1;
        ASSERT_EQ(client_identity_has_capability(&id, CLIENT_CAP_SYS_RAWIO), 1);
        ASSERT_EQ(client_identity_has_capability(&id, CLIENT_CAP_SYS_ADMIN), 0);
        /* full capabilities in a child user namespace are none in the initial one */
        id.cap_effective = ~UINT64_C(0);
        id.userns_initial = 0;
        ASSERT_EQ(client_identity_has_capability(&id, CLIENT_CAP_SYS_RAWIO), 0);
}

static void test_escape(void) {
        char buf[64];

        cgroup_escape("/system.slice/getty@tty1.service", buf, sizeof(buf));
        ASSERT_STREQ(buf, "/system.slice/getty@tty1.service");
        cgroup_escape("/a b/\xff(x)\n", buf, sizeof(buf));
        ASSERT_STREQ(buf, "/a\\x20b/\\xff\\x28x\\x29\\x0a");
        cgroup_escape("/system-getty\\x2dx.slice", buf, sizeof(buf));
        ASSERT_STREQ(buf, "/system-getty\\x5cx2dx.slice");
        cgroup_escape("/abcdef", buf, 4);                 /* cut, never overrun */
        ASSERT_TRUE(strlen(buf) < 4);
}

int main(void) {
        TEST(test_systemd_units);
        TEST(test_containers_systemd_driver);
        TEST(test_containers_cgroupfs_driver);
        TEST(test_hostile);
        TEST(test_pick_line);
        TEST(test_limit_key);
        TEST(test_capability);
        TEST(test_escape);
        return 0;
}
