/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * See inventory.h for the classification rules (kernel-api.md §3.4, hazards 2, 5 and 6 of §10).
 *
 * What this module trusts: sysfs is written by the kernel, but the tree below "root" is still
 * treated as input. Every path is resolved inside root (openat2() with RESOLVE_IN_ROOT, so
 * neither ".." nor an absolute symlink leaves it), the "driver" and "iommu_group" links are
 * only readlink()ed and reduced to their last component, and only names of the exact expected
 * shape ("0000:01:00.0", "noiommu-vfioN", "vfioN", a decimal group number) are used to build
 * further paths. No device node is opened here: the backend opens nodes by the major:minor
 * found here and checks them with fstat().
 *
 * Nothing here logs; errors are returned, and per-device problems become a reason string.
 */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "internal/fd-util.h"
#include "internal/json-util.h"
#include "internal/macro.h"
#include "inventory.h"
#include "noiommu/protocol.h"

#define SYSFS_PCI_DEVICES      "sys/bus/pci/devices"
#define SYSFS_IOMMU_GROUPS     "sys/kernel/iommu_groups"
#define SYSFS_CLASS_VFIO       "sys/class/vfio"
#define SYSFS_CLASS_IOMMU      "sys/class/iommu"
#define SYSFS_MISC_CONTAINER   "sys/class/misc/vfio"
#define SYSFS_VFIO_PARAMETERS  "sys/module/vfio/parameters"
#define NOIOMMU_PARAMETER      "enable_unsafe_noiommu_mode"

#define DRIVER_VFIO_PCI        "vfio-pci"
#define GROUP_NAME_NOIOMMU     "vfio-noiommu"
#define CDEV_PREFIX_NOIOMMU    "noiommu-vfio"
#define CDEV_PREFIX_IOMMU      "vfio"
#define GROUP_CDEV_PREFIX      "noiommu-"

/* Linux dev_t: 12-bit major, 20-bit minor (MINORBITS). */
#define DEV_MAJOR_MAX 0xfffU
#define DEV_MINOR_MAX 0xfffffU

/* Index numbers in node names ("vfio%d", group ids) are ints in the kernel. */
#define INDEX_DIGITS_MAX 9

static const char *const backend_table[_BACKEND_MAX] = {
        [BACKEND_CDEV_NOIOMMU]  = "cdev-noiommu",
        [BACKEND_CDEV_IOMMU]    = "cdev-iommu",
        [BACKEND_GROUP_NOIOMMU] = "group-noiommu",
};

const char *backend_to_string(Backend b) {
        if (b < 0 || b >= _BACKEND_MAX)
                return NULL;
        return backend_table[b];
}

Backend backend_from_string(const char *s) {
        if (!s)
                return _BACKEND_INVALID;
        for (size_t i = 0; i < ELEMENTSOF(backend_table); i++)
                if (streq(backend_table[i], s))
                        return (Backend) i;
        return _BACKEND_INVALID;
}

/* How often open_in_root() retries an openat2() that answered EAGAIN. One retry nearly always
 * suffices (the window is one path walk); a bound keeps a machine that renames without pause
 * from spinning us forever. */
#define OPEN_IN_ROOT_ATTEMPTS 64

/* Opens "path" relative to root_fd with root_fd acting as "/" for every component, symlinks
 * included. Kernels before 5.6 and seccomp filters that predate openat2() (which answer ENOSYS
 * or EPERM) get plain openat(): in production root is "/", where there is nothing to escape to,
 * so only fixture trees lose the confinement.
 *
 * EAGAIN is retried: with RESOLVE_IN_ROOT the kernel fails a walk through ".." when any rename
 * or mount happened anywhere in the system during the walk, because it can no longer prove
 * ".." stayed below the root (fs/namei.c handle_dots(): "If there was a racing rename or mount
 * along our path, then we can't be sure that ".." hasn't jumped above nd->root (and so
 * userspace should retry or use some fallback)", checking the global rename_lock and
 * mount_lock seqcounts; openat2(2), ERRORS, EAGAIN). Every sysfs device path we open goes
 * through such a ".." (/sys/bus/pci/devices/BDF is a link to ../../../devices/...), so an
 * unrelated rename elsewhere on the machine made a scan fail now and then (an AcquireDevice
 * answered InternalError, "Failed to scan PCI devices: Resource temporarily unavailable").
 * Falling back to openat() would drop the confinement, so we only retry. */
static int open_in_root(int root_fd, const char *path, int flags) {
        struct open_how how = {
                .flags = (uint64_t) (flags | O_CLOEXEC),
                .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
        };
        long fd;

        for (unsigned attempt = 1;; attempt++) {
                fd = syscall(SYS_openat2, root_fd, path, &how, sizeof(how));
                if (fd >= 0)
                        return (int) fd;
                if (errno != EAGAIN || attempt >= OPEN_IN_ROOT_ATTEMPTS)
                        break;
        }
        if (errno != ENOSYS && errno != EPERM)
                return negative_errno();

        fd = openat(root_fd, path, flags | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        return (int) fd;
}

/* "prefix" followed by 1..INDEX_DIGITS_MAX decimal digits and nothing else. */
static bool name_is_prefix_number(const char *name, const char *prefix) {
        size_t l = strlen(prefix), n;

        if (strncmp(name, prefix, l) != 0)
                return false;
        n = strspn(name + l, "0123456789");
        return n > 0 && n <= INDEX_DIGITS_MAX && name[l + n] == 0;
}

/* A decimal number without sign, at most INDEX_DIGITS_MAX digits. */
static int parse_index(const char *s, int *ret) {
        size_t n;
        long v;

        n = strspn(s, "0123456789");
        if (n == 0 || n > INDEX_DIGITS_MAX || s[n] != 0)
                return -EINVAL;
        v = strtol(s, NULL, 10);
        *ret = (int) v;
        return 0;
}

/* sysfs "vendor" and "device" read "0x1234" (%#06x). */
static int parse_pci_id(const char *s, uint16_t *ret) {
        size_t n;
        unsigned long v;

        if (s[0] != '0' || s[1] != 'x')
                return -EINVAL;
        n = strspn(s + 2, "0123456789abcdefABCDEF");
        if (n == 0 || n > 4 || s[2 + n] != 0)
                return -EINVAL;
        v = strtoul(s + 2, NULL, 16);
        *ret = (uint16_t) v;
        return 0;
}

/* A "dev" attribute: "major:minor" in decimal. */
static int parse_devnum(const char *s, dev_t *ret) {
        unsigned long ma, mi;
        size_t n;
        char *end;

        n = strspn(s, "0123456789");
        if (n == 0 || n > 4 || s[n] != ':')
                return -EINVAL;
        ma = strtoul(s, &end, 10);
        s = end + 1;
        n = strspn(s, "0123456789");
        if (n == 0 || n > 7 || s[n] != 0)
                return -EINVAL;
        mi = strtoul(s, NULL, 10);
        if (ma > DEV_MAJOR_MAX || mi > DEV_MINOR_MAX)
                return -ERANGE;
        *ret = makedev((unsigned) ma, (unsigned) mi);
        return 0;
}

/* Reads dir_fd/name and parses it as a "dev" attribute. -ENOENT if there is none. */
static int read_devnum_at(int dir_fd, const char *name, dev_t *ret) {
        _cleanup_free_ char *s = NULL;
        int r;

        r = read_small_file_at(dir_fd, name, &s);
        if (r < 0)
                return r;
        return parse_devnum(s, ret);
}

/* Reads a link and copies its last component into ret (size ret_size). -ENOENT if there is no
 * link, -EINVAL if the entry is not a link, -ENAMETOOLONG if it does not fit. The target is never
 * followed. */
static int readlink_basename_at(int dir_fd, const char *name, char *ret, size_t ret_size) {
        char buf[PATH_MAX];
        const char *b;
        ssize_t n;

        n = readlinkat(dir_fd, name, buf, sizeof(buf));
        if (n < 0)
                return negative_errno();
        if ((size_t) n >= sizeof(buf))
                return -ENAMETOOLONG;
        buf[n] = 0;

        b = strrchr(buf, '/');
        b = b ? b + 1 : buf;
        if (b[0] == 0 || streq(b, ".") || streq(b, ".."))
                return -EINVAL;
        if (strlen(b) >= ret_size)
                return -ENAMETOOLONG;
        strcpy(ret, b);
        return 0;
}

/* Whether dir_fd/name is a directory (not a link to one). */
static bool has_subdir_at(int dir_fd, const char *name) {
        struct stat st;

        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return false;
        return S_ISDIR(st.st_mode);
}

/* Whether a directory below root has any entry not starting with '.' (fixture trees keep empty
 * directories alive with a ".keep" file). 0 for a missing directory. */
static int dir_has_entries_in_root(int root_fd, const char *path) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *de;
        int fd;

        fd = open_in_root(root_fd, path, O_RDONLY | O_DIRECTORY);
        if (fd == -ENOENT)
                return 0;
        if (fd < 0)
                return fd;
        d = fdopendir(fd);
        if (!d) {
                (void) safe_close(fd);
                return -ENOMEM;
        }

        for (;;) {
                errno = 0;
                de = readdir(d);
                if (!de)
                        return errno > 0 ? -errno : 0;
                if (de->d_name[0] != '.')
                        return 1;
        }
}

/* The noiommu module parameter: 1 for "Y", 0 for "N", -ENOENT when there is none (vfio not
 * loaded, or CONFIG_VFIO_NOIOMMU=n), or another negative errno. */
static int noiommu_parameter_at(int root_fd) {
        _cleanup_close_ int fd = -EBADF;
        _cleanup_free_ char *s = NULL;
        int r;

        fd = open_in_root(root_fd, SYSFS_VFIO_PARAMETERS, O_PATH | O_DIRECTORY);
        if (fd < 0)
                return fd;

        r = read_small_file_at(fd, NOIOMMU_PARAMETER, &s);
        if (r < 0)
                return r;

        /* A bool module parameter reads back as exactly "Y" or "N". */
        if (streq(s, "Y"))
                return 1;
        if (streq(s, "N"))
                return 0;
        return -EBADMSG;
}

/* Whether root/path exists (as anything: class entries are links). */
static int exists_in_root(int root_fd, const char *path) {
        _cleanup_close_ int fd = -EBADF;

        fd = open_in_root(root_fd, path, O_PATH);
        if (fd == -ENOENT || fd == -ENOTDIR)
                return 0;
        if (fd < 0)
                return fd;
        return 1;
}

/* What the scan learns once, for all devices: the kernel-wide markers of linux-7.3.md
 * "Kconfig". None of them can tell VFIO's container from iommufd's (both register the misc
 * device "vfio"), nor VFIO_DEVICE_CDEV=n from a kernel without IOMMUFD_NOIOMMU (both register a
 * noiommu device as vfio-dev/vfioN without "dev"); the reasons below cover both. */
typedef struct ScanContext {
        int root_fd;
        int noiommu_parameter;  /* as noiommu_parameter_at() */
        bool have_iommu;        /* root/sys/class/iommu has an entry */
        bool have_container;    /* class misc "vfio": /dev/vfio/vfio exists */
        bool have_group_class;  /* class "vfio": VFIO_GROUP=y */
} ScanContext;

typedef enum CdevState {
        CDEV_NONE,              /* no entry of this kind */
        CDEV_OK,                /* one entry with a valid "dev" attribute */
        CDEV_NO_DEV,            /* an entry without a "dev" attribute (hazard 6) */
        CDEV_BAD_DEV,           /* a "dev" attribute that cannot be read or parsed */
        CDEV_AMBIGUOUS,         /* more than one entry of this kind */
} CdevState;

typedef struct Cdev {
        CdevState state;
        char name[64];
        dev_t rdev;
} Cdev;

static int cdev_add(Cdev *c, int vfio_dev_fd, const char *name) {
        _cleanup_close_ int fd = -EBADF;
        int r;

        if (c->state != CDEV_NONE) {
                c->state = CDEV_AMBIGUOUS;
                return 0;
        }

        /* Entries below vfio-dev/ are device directories, never links. */
        fd = openat(vfio_dev_fd, name, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                        return 0;       /* vanished, or not a device directory: not an entry */
                return negative_errno();
        }

        assert(strlen(name) < sizeof(c->name));
        strcpy(c->name, name);

        r = read_devnum_at(fd, "dev", &c->rdev);
        if (r == -ENOMEM)
                return r;
        if (r == -ENOENT)
                c->state = CDEV_NO_DEV;
        else if (r < 0)
                c->state = CDEV_BAD_DEV;
        else
                c->state = CDEV_OK;
        return 0;
}

/* Looks through dev_fd/vfio-dev/ for "noiommu-vfioN" and "vfioN" entries. */
static int scan_vfio_dev(int dev_fd, Cdev *ret_noiommu, Cdev *ret_iommu) {
        _cleanup_(closedirp) DIR *d = NULL;
        Cdev noiommu = {}, iommu = {};
        struct dirent *de;
        int fd, r;

        fd = openat(dev_fd, "vfio-dev", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP)
                        return negative_errno();
        } else {
                d = fdopendir(fd);
                if (!d) {
                        (void) safe_close(fd);
                        return -ENOMEM;
                }

                for (;;) {
                        errno = 0;
                        de = readdir(d);
                        if (!de) {
                                if (errno > 0)
                                        return -errno;
                                break;
                        }

                        /* Match the noiommu prefix first: "noiommu-vfio0" must never be taken
                         * for a "vfioN" node (hazard 5). */
                        if (name_is_prefix_number(de->d_name, CDEV_PREFIX_NOIOMMU))
                                r = cdev_add(&noiommu, dirfd(d), de->d_name);
                        else if (name_is_prefix_number(de->d_name, CDEV_PREFIX_IOMMU))
                                r = cdev_add(&iommu, dirfd(d), de->d_name);
                        else
                                continue;
                        if (r < 0)
                                return r;
                }
        }

        *ret_noiommu = noiommu;
        *ret_iommu = iommu;
        return 0;
}

typedef struct Group {
        bool noiommu_name;      /* "name" reads "vfio-noiommu" */
        bool real;              /* "type" is DMA, DMA-FQ or identity, and not noiommu_name */
} Group;

/* Reads root/sys/kernel/iommu_groups/N/{name,type}. A missing "name" is normal: only named
 * groups have one. */
static int read_group(int root_fd, int group, Group *ret) {
        _cleanup_free_ char *name = NULL, *type = NULL;
        _cleanup_close_ int fd = -EBADF;
        char path[sizeof(SYSFS_IOMMU_GROUPS) + 16];
        Group g = {};
        int r;

        (void) snprintf(path, sizeof(path), SYSFS_IOMMU_GROUPS "/%i", group);
        fd = open_in_root(root_fd, path, O_PATH | O_DIRECTORY);
        if (fd < 0)
                return fd;

        r = read_small_file_at(fd, "name", &name);
        if (r < 0 && r != -ENOENT)
                return r;
        g.noiommu_name = name && streq(name, GROUP_NAME_NOIOMMU);

        r = read_small_file_at(fd, "type", &type);
        if (r < 0 && r != -ENOENT)
                return r;
        g.real = !g.noiommu_name && type &&
                 (streq(type, "DMA") || streq(type, "DMA-FQ") || streq(type, "identity"));

        *ret = g;
        return 0;
}

/* Reads the dev attribute of the legacy group char device root/sys/class/vfio/noiommu-N. */
static int read_group_cdev(int root_fd, int group, dev_t *ret) {
        _cleanup_close_ int fd = -EBADF;
        char path[sizeof(SYSFS_CLASS_VFIO) + sizeof(GROUP_CDEV_PREFIX) + 16];

        (void) snprintf(path, sizeof(path), SYSFS_CLASS_VFIO "/" GROUP_CDEV_PREFIX "%i", group);
        fd = open_in_root(root_fd, path, O_PATH | O_DIRECTORY);
        if (fd < 0)
                return fd;
        return read_devnum_at(fd, "dev", ret);
}

static const char *cdev_reason(CdevState s) {
        switch (s) {
        case CDEV_NO_DEV:
                return "cdev node has no dev attribute";
        case CDEV_BAD_DEV:
                return "cdev node has a bad dev attribute";
        case CDEV_AMBIGUOUS:
                return "more than one vfio cdev entry of the same kind";
        case CDEV_NONE:
        case CDEV_OK:
        default:
                return NULL;
        }
}

/* Reasons a user can act on. Where two kernel configurations look the same from userspace the
 * string names every way out. */
#define REASON_NOIOMMU_OFF \
        "noiommu mode is not enabled: set vfio.enable_unsafe_noiommu_mode=1"
#define REASON_NOIOMMU_UNBUILT \
        "the kernel lacks VFIO_NOIOMMU (there is no vfio.enable_unsafe_noiommu_mode): use a " \
        "kernel built with it (stock Debian kernels are not)"
#define REASON_NOIOMMU_NO_CONTAINER \
        "the kernel lacks VFIO_NOIOMMU, which with VFIO_GROUP needs a /dev/vfio/vfio container " \
        "backend (VFIO_CONTAINER or IOMMUFD_VFIO_CONTAINER): rebuild with one, or with " \
        "VFIO_GROUP=n for the cdev path"
#define REASON_REBIND \
        "not a noiommu device although vfio.enable_unsafe_noiommu_mode is set: the kernel " \
        "decides when vfio-pci binds the device, so rebind the device to vfio-pci after " \
        "enabling vfio.enable_unsafe_noiommu_mode"
#define REASON_NO_IOMMU_OFF \
        "no IOMMU group and noiommu mode is not enabled: set vfio.enable_unsafe_noiommu_mode=1, " \
        "then rebind the device to vfio-pci"
#define REASON_NO_NOIOMMU_CDEV \
        "the kernel lacks VFIO_NOIOMMU for cdev (IOMMUFD_NOIOMMU, Linux 7.3+ with " \
        "VFIO_DEVICE_CDEV): use the group path or rebuild"
#define REASON_NO_CONTAINER \
        "no /dev/vfio/vfio container backend (VFIO_CONTAINER or IOMMUFD_VFIO_CONTAINER) for the " \
        "group path"
#define REASON_NO_VFIO_GROUP \
        "the kernel has no VFIO_GROUP (a cdev-only kernel): there is no group path"
#define REASON_NOT_NOIOMMU_GROUP \
        "the device's IOMMU group is not a noiommu group"

#define BACKEND_REASON_CDEV_PREFERRED \
        "preferred over group-noiommu: the kernel pins the memory (IOAS_MAP) and reports its " \
        "addresses (GET_PA), one bind per open"
#define BACKEND_REASON_CDEV_ONLY \
        "the only noiommu path for this device: it has no noiommu group"
#define BACKEND_REASON_GROUP_ONLY \
        "the only noiommu path for this device: the kernel registered no noiommu cdev (that " \
        "needs Linux 7.3+ with VFIO_DEVICE_CDEV and IOMMUFD_NOIOMMU)"
#define BACKEND_REASON_IOMMU \
        "a real IOMMU translates and confines the device's DMA"
#define BACKEND_REASON_FORCED \
        "chosen by deviceBackends in the daemon's configuration"

/* Why noiommu mode is unusable now, or NULL when it is on. */
static const char *noiommu_off_reason(const ScanContext *ctx) {
        if (ctx->noiommu_parameter > 0)
                return NULL;
        if (ctx->noiommu_parameter == 0)
                return REASON_NOIOMMU_OFF;
        if (ctx->noiommu_parameter != -ENOENT)
                return "cannot read the noiommu mode parameter";
        if (ctx->have_group_class && !ctx->have_container)
                return REASON_NOIOMMU_NO_CONTAINER;
        return REASON_NOIOMMU_UNBUILT;
}

/* A device without an IOMMU group and without any noiommu marker. With the parameter on, the
 * likeliest cause is a bind that happened before it was set (the kernel names a device noiommu
 * only at bind time); an emulated or mdev-like device looks the same and is never noiommu. */
static const char *no_marker_reason(const ScanContext *ctx) {
        const char *off = noiommu_off_reason(ctx);

        if (!off)
                return REASON_REBIND;
        if (ctx->noiommu_parameter == 0)
                return REASON_NO_IOMMU_OFF;
        return off;
}

static void candidate_set(InventoryCandidate *c, const char *node, dev_t rdev) {
        assert(strlen(node) < sizeof(c->node_name));

        strcpy(c->node_name, node);
        c->rdev = rdev;
        c->reason = NULL;
}

static void candidate_set_unusable(InventoryCandidate *c, const char *reason) {
        assert(reason);

        c->node_name[0] = 0;
        c->rdev = 0;
        c->reason = reason;
}

static void device_set_invalid(InventoryDevice *d, const char *reason) {
        d->backend = _BACKEND_INVALID;
        d->node_name[0] = 0;
        d->rdev = 0;
        d->reason = reason;
        d->backend_reason = NULL;
}

static void device_set_backend(InventoryDevice *d, Backend b, const char *backend_reason) {
        const InventoryCandidate *c = &d->candidates[b];

        assert(!c->reason);

        d->backend = b;
        strcpy(d->node_name, c->node_name);
        d->rdev = c->rdev;
        d->reason = NULL;
        d->backend_reason = backend_reason;
}

static void device_update_available(InventoryDevice *d) {
        d->available = 0;
        for (Backend b = 0; b < _BACKEND_MAX; b++)
                if (!d->candidates[b].reason)
                        d->available |= 1U << b;
}

void inventory_device_force(InventoryDevice *d, Backend b) {
        assert(d);
        assert(b >= 0 && b < _BACKEND_MAX);

        d->forced = true;
        d->forced_backend = b;

        if (d->available & (1U << b)) {
                device_set_backend(d, b, BACKEND_REASON_FORCED);
                return;
        }
        if (d->candidates[b].reason)
                device_set_invalid(d, d->candidates[b].reason);
        /* else: the device was never classified (its attributes are unreadable): keep why. */
}

/* Why the cdev wins (matrix case 3 of linux-7.3.md: a device with a noiommu group and a noiommu
 * cdev, both usable). The cdev path lets the kernel do what the group path leaves to the daemon:
 * IOAS_MAP pins the pages in the kernel and IOMMU_IOAS_NOIOMMU_GET_PA reports the addresses
 * (instead of the daemon's own long-term pin and /proc/self/pagemap), and a cdev can be bound
 * only once per open, so a leaked fd cannot be bound a second time. What it costs: the kernel
 * logs each GET_DEVICE_FD of the group path but nothing per cdev open, so on this path the
 * daemon's audit record is the only per-use record (it is written for every grant anyway).
 * Nothing else decides: not the group number, not the order of the nodes. An administrator
 * who wants the group path for a device (the VM tier does, to test it on 7.3) says so with
 * "deviceBackends" in the configuration (inventory_device_force()). */
static const Backend backend_preference[] = {
        BACKEND_CDEV_NOIOMMU,
        BACKEND_GROUP_NOIOMMU,
        BACKEND_CDEV_IOMMU,
};

/* After device_classify() has judged each candidate: picks the preferred usable backend, or
 * marks the device invalid with the most specific reason nothing is usable. */
static void device_pick_backend(const ScanContext *ctx, InventoryDevice *d, const Cdev *noiommu,
                                const Cdev *iommu, const Group *g, bool noiommu_marked, const char *off) {
        const InventoryCandidate *cdev_noiommu = &d->candidates[BACKEND_CDEV_NOIOMMU],
                                 *group_noiommu = &d->candidates[BACKEND_GROUP_NOIOMMU],
                                 *cdev_iommu = &d->candidates[BACKEND_CDEV_IOMMU];
        const char *reason;

        device_update_available(d);

        for (size_t i = 0; i < ELEMENTSOF(backend_preference); i++) {
                Backend b = backend_preference[i];

                if (!(d->available & (1U << b)))
                        continue;
                device_set_backend(d, b,
                                   b == BACKEND_CDEV_IOMMU ? BACKEND_REASON_IOMMU :
                                   b == BACKEND_GROUP_NOIOMMU ? BACKEND_REASON_GROUP_ONLY :
                                   d->available & (1U << BACKEND_GROUP_NOIOMMU) ? BACKEND_REASON_CDEV_PREFERRED :
                                   BACKEND_REASON_CDEV_ONLY);
                return;
        }

        /* Nothing usable: say what stands in the way, the most specific marker first. */
        if (noiommu->state == CDEV_OK && g->real)
                reason = cdev_noiommu->reason;
        else if (noiommu_marked && off)
                reason = off;
        else if (d->iommu_group >= 0 && g->noiommu_name)
                reason = group_noiommu->reason;
        else if (noiommu->state != CDEV_NONE)
                reason = cdev_noiommu->reason;
        else if (iommu->state != CDEV_NONE && d->iommu_group >= 0)
                reason = cdev_iommu->reason;
        else if (d->iommu_group < 0)
                reason = no_marker_reason(ctx);
        else
                reason = "no usable VFIO device node";
        device_set_invalid(d, reason);
}

/* Decides which backends can serve the device from the markers of kernel-api.md §3.4 and
 * linux-7.3.md, and picks one. Only ENOMEM is fatal; everything else the device lacks becomes
 * a reason (per candidate, and for the device when no candidate is usable). */
static int device_classify(const ScanContext *ctx, int dev_fd, InventoryDevice *d) {
        InventoryCandidate *cdev_noiommu = &d->candidates[BACKEND_CDEV_NOIOMMU],
                           *group_noiommu = &d->candidates[BACKEND_GROUP_NOIOMMU],
                           *cdev_iommu = &d->candidates[BACKEND_CDEV_IOMMU];
        const char *off = noiommu_off_reason(ctx);
        bool noiommu_marked = false;
        Cdev noiommu, iommu;
        Group g = {};
        dev_t rdev;
        int r;

        r = scan_vfio_dev(dev_fd, &noiommu, &iommu);
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                device_set_invalid(d, "cannot read the vfio-dev directory");
                return 0;
        }

        if (d->iommu_group >= 0) {
                r = read_group(ctx->root_fd, d->iommu_group, &g);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        device_set_invalid(d, "cannot read the IOMMU group");
                        return 0;
                }
        }

        /* cdev-noiommu. A noiommu node in a group with a real IOMMU domain contradicts itself:
         * trust neither marker. */
        if (noiommu.state == CDEV_OK && !g.real) {
                candidate_set(cdev_noiommu, noiommu.name, noiommu.rdev);
                noiommu_marked = true;
        } else if (noiommu.state == CDEV_OK)
                candidate_set_unusable(cdev_noiommu, "noiommu cdev in a real IOMMU group");
        else if (noiommu.state != CDEV_NONE)
                candidate_set_unusable(cdev_noiommu, cdev_reason(noiommu.state));
        else if (d->iommu_group >= 0 && g.noiommu_name)
                /* A noiommu device whose vfio-dev entry is "vfioN" without "dev", or missing:
                 * the kernel has no noiommu cdev (VFIO_DEVICE_CDEV=n, before 7.3, or 7.3 without
                 * IOMMUFD_NOIOMMU, e.g. on GENERIC_ATOMIC64 architectures). */
                candidate_set_unusable(cdev_noiommu, REASON_NO_NOIOMMU_CDEV);
        else
                candidate_set_unusable(cdev_noiommu, "the device has no noiommu cdev");

        /* group-noiommu. A noiommu-vfioN entry without a usable node (hazard 6: a kernel that
         * registers the device but not the cdev) leaves the group. */
        if (d->iommu_group >= 0 && g.noiommu_name) {
                noiommu_marked = true;
                r = read_group_cdev(ctx->root_fd, d->iommu_group, &rdev);
                if (r == -ENOMEM)
                        return r;
                if (r == -ENOENT)
                        candidate_set_unusable(group_noiommu, "noiommu group has no group device");
                else if (r < 0)
                        candidate_set_unusable(group_noiommu, "group device has a bad dev attribute");
                else if (!ctx->have_container)
                        candidate_set_unusable(group_noiommu, REASON_NO_CONTAINER);
                else {
                        char node[sizeof(d->node_name)];

                        (void) snprintf(node, sizeof(node), GROUP_CDEV_PREFIX "%i", d->iommu_group);
                        candidate_set(group_noiommu, node, rdev);
                }
        } else if (d->iommu_group < 0)
                candidate_set_unusable(group_noiommu, ctx->have_group_class ? "the device has no IOMMU group" :
                                                      REASON_NO_VFIO_GROUP);
        else
                candidate_set_unusable(group_noiommu, REASON_NOT_NOIOMMU_GROUP);

        /* Both noiommu backends need the parameter on now; where the device has the marker of
         * one, that is the first thing to fix. */
        if (off) {
                if (!cdev_noiommu->reason)
                        candidate_set_unusable(cdev_noiommu, off);
                if (d->iommu_group >= 0 && g.noiommu_name)
                        candidate_set_unusable(group_noiommu, off);
        }

        /* cdev-iommu needs all three markers of a real IOMMU. A vfioN node alone proves nothing:
         * emulated and mdev-like devices have one too (hazard 2). */
        if (noiommu.state != CDEV_NONE)
                /* Any noiommu entry, usable or not, says the device is not behind a real
                 * IOMMU: never believe a vfioN next to it. */
                candidate_set_unusable(cdev_iommu, noiommu.state == CDEV_OK && g.real ?
                                                   cdev_noiommu->reason : "the device has a noiommu cdev entry");
        else if (iommu.state != CDEV_OK)
                candidate_set_unusable(cdev_iommu, iommu.state != CDEV_NONE ? cdev_reason(iommu.state) :
                                                   "no usable VFIO device node");
        else if (d->iommu_group < 0)
                candidate_set_unusable(cdev_iommu, no_marker_reason(ctx));
        else if (!g.real)
                candidate_set_unusable(cdev_iommu, "IOMMU group type is not DMA, DMA-FQ or identity");
        else if (!ctx->have_iommu)
                candidate_set_unusable(cdev_iommu, "no IOMMU registered in /sys/class/iommu");
        else
                candidate_set(cdev_iommu, iommu.name, iommu.rdev);

        device_pick_backend(ctx, d, &noiommu, &iommu, &g, noiommu_marked, off);
        return 0;
}

/* Reads the ids, NUMA node and IOMMU group of a device. Returns NULL, or the reason why the
 * device cannot be served when an attribute is missing or malformed, or sets *ret_error to a
 * negative errno on ENOMEM. */
static const char *device_read_attributes(int dev_fd, InventoryDevice *d, int *ret_error) {
        _cleanup_free_ char *vendor = NULL, *device = NULL, *numa = NULL;
        char group[32];
        int r, r2;

        *ret_error = 0;

        r = read_small_file_at(dev_fd, "numa_node", &numa);
        if (r == -ENOMEM) {
                *ret_error = r;
                return NULL;
        }
        if (r >= 0) {
                int v;

                /* "-1" when the platform does not say; anything unparsable counts the same. */
                if (parse_index(numa, &v) >= 0)
                        d->numa_node = v;
        }

        r = readlink_basename_at(dev_fd, "iommu_group", group, sizeof(group));
        if (r >= 0 && parse_index(group, &d->iommu_group) < 0) {
                d->iommu_group = -1;
                r = -EINVAL;
        }
        if (r < 0 && r != -ENOENT)
                return "iommu_group link is malformed";

        r = read_small_file_at(dev_fd, "vendor", &vendor);
        r2 = read_small_file_at(dev_fd, "device", &device);
        if (r == -ENOMEM || r2 == -ENOMEM) {
                *ret_error = -ENOMEM;
                return NULL;
        }
        if (r < 0 || r2 < 0 ||
            parse_pci_id(vendor, &d->vendor_id) < 0 ||
            parse_pci_id(device, &d->device_id) < 0) {
                d->vendor_id = d->device_id = 0;
                return "cannot read vendor or device id";
        }

        return NULL;
}

/* Looks at root/sys/bus/pci/devices/<name>. Returns 1 and fills *ret if the device is bound
 * to a VFIO PCI driver, 0 if it is not (or vanished meanwhile), or a negative errno. */
static int device_probe(const ScanContext *ctx, const char *name, InventoryDevice *ret) {
        _cleanup_close_ int dev_fd = -EBADF;
        char path[sizeof(SYSFS_PCI_DEVICES) + NOIOMMU_PCI_ADDRESS_LEN + 2];
        InventoryDevice d = {
                .backend = _BACKEND_INVALID,
                .iommu_group = -1,
                .numa_node = -1,
        };
        const char *reason;
        int r;

        assert(strlen(name) == NOIOMMU_PCI_ADDRESS_LEN);

        (void) snprintf(path, sizeof(path), SYSFS_PCI_DEVICES "/%.*s",
                        NOIOMMU_PCI_ADDRESS_LEN, name);
        dev_fd = open_in_root(ctx->root_fd, path, O_PATH | O_DIRECTORY);
        if (dev_fd == -ENOENT || dev_fd == -ENOTDIR)
                return 0;               /* removed while we looked */
        if (dev_fd < 0)
                return dev_fd;

        /* The driver link's target is not followed; its basename is the driver's name. */
        r = readlink_basename_at(dev_fd, "driver", d.driver, sizeof(d.driver));
        if (r < 0)
                return 0;               /* unbound, not a link, or a name no driver has */
        if (!streq(d.driver, DRIVER_VFIO_PCI) && !has_subdir_at(dev_fd, "vfio-dev"))
                return 0;

        strcpy(d.address, name);

        reason = device_read_attributes(dev_fd, &d, &r);
        if (r < 0)
                return r;
        if (reason)
                device_set_invalid(&d, reason);
        else {
                r = device_classify(ctx, dev_fd, &d);
                if (r < 0)
                        return r;
        }

        *ret = d;
        return 1;
}

static int device_compare(const void *a, const void *b) {
        const InventoryDevice *x = a, *y = b;

        return strcmp(x->address, y->address);
}

static int scan_context_init(int root_fd, ScanContext *ret) {
        ScanContext ctx = {
                .root_fd = root_fd,
                .noiommu_parameter = noiommu_parameter_at(root_fd),
        };
        int r;

        if (ctx.noiommu_parameter == -ENOMEM)
                return -ENOMEM;

        /* Unreadable counts as absent: fail closed. */
        r = dir_has_entries_in_root(root_fd, SYSFS_CLASS_IOMMU);
        if (r == -ENOMEM)
                return r;
        ctx.have_iommu = r > 0;
        r = exists_in_root(root_fd, SYSFS_MISC_CONTAINER);
        if (r == -ENOMEM)
                return r;
        ctx.have_container = r > 0;
        r = exists_in_root(root_fd, SYSFS_CLASS_VFIO);
        if (r == -ENOMEM)
                return r;
        ctx.have_group_class = r > 0;

        *ret = ctx;
        return 0;
}

int inventory_noiommu_status(const char *root, const char **ret_reason) {
        _cleanup_close_ int root_fd = -EBADF;
        ScanContext ctx;
        int r;

        assert(root);
        assert(ret_reason);

        root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0)
                return negative_errno();
        r = scan_context_init(root_fd, &ctx);
        if (r < 0)
                return r;
        *ret_reason = noiommu_off_reason(&ctx);
        return !*ret_reason;
}

int inventory_scan(const char *root, InventoryDevice **ret) {
        _cleanup_free_ InventoryDevice *devices = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        _cleanup_close_ int root_fd = -EBADF;
        size_t n = 0, allocated = 0;
        ScanContext ctx;
        struct dirent *de;
        int fd, r;

        assert(root);
        assert(ret);

        root_fd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0)
                return negative_errno();

        fd = open_in_root(root_fd, SYSFS_PCI_DEVICES, O_RDONLY | O_DIRECTORY);
        if (fd == -ENOENT) {
                *ret = NULL;            /* no PCI bus at all */
                return 0;
        }
        if (fd < 0)
                return fd;
        d = fdopendir(fd);
        if (!d) {
                (void) safe_close(fd);
                return -ENOMEM;
        }

        r = scan_context_init(root_fd, &ctx);
        if (r < 0)
                return r;

        for (;;) {
                InventoryDevice dev;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno > 0)
                                return -errno;
                        break;
                }

                /* Only canonical addresses: this also skips ".", "..", ".keep" and anything
                 * that could walk out of the directory. */
                if (!pci_address_is_valid(de->d_name))
                        continue;

                r = device_probe(&ctx, de->d_name, &dev);
                if (r < 0)
                        return r;
                if (r == 0)
                        continue;

                if (n >= allocated) {
                        size_t a = MAX(allocated * 2, (size_t) 16);
                        InventoryDevice *p;

                        if (a > INT_MAX)
                                return -E2BIG;
                        p = reallocarray(devices, a, sizeof(InventoryDevice));
                        if (!p)
                                return -ENOMEM;
                        devices = p;
                        allocated = a;
                }
                devices[n++] = dev;
        }

        if (n > 1)
                qsort(devices, n, sizeof(InventoryDevice), device_compare);

        *ret = TAKE_PTR(devices);
        return (int) n;
}
