/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * vfio-mock: an LD_PRELOAD fixture backend for noiommud's device tests (security.md §10,
 * house-style.md §6). It is loaded into the *production* daemon binary; the daemon has no test
 * switch. Everything is driven by environment variables and files below the fixture root:
 *
 *   NOIOMMU_MOCK_ROOT=DIR    required; without it (or in a program other than
 *                            NOIOMMU_MOCK_PROGRAM, default "noiommud", "*" = any) every function
 *                            here just forwards to libc, so sh/unshare/mount started with the
 *                            same LD_PRELOAD are unaffected
 *   NOIOMMU_MOCK_LOG=FILE    append one line per kernel event: "SEQ EVENT key=value ..."
 *   NOIOMMU_MOCK_IOVA_RANGES "START-LAST,..." (hex or decimal) reported by IOAS_IOVA_RANGES once a
 *                            HWPT sits in the IOAS; default: the whole 64-bit space for a noiommu
 *                            (software) page table, which has no reserved regions and so no MSI
 *                            hole (Linux 7.3); a 48-bit space minus the x86 MSI window for a real
 *                            IOMMU
 *   fault switches: NOIOMMU_MOCK_NO_RESET, NOIOMMU_MOCK_RESET_FAIL, NOIOMMU_MOCK_BME_STUCK,
 *                   NOIOMMU_MOCK_NO_GET_PA (ENOTTY: a kernel before 7.3),
 *                   NOIOMMU_MOCK_GET_PA_STUB (EOPNOTSUPP: 7.3 without IOMMUFD_NOIOMMU),
 *                   NOIOMMU_MOCK_MOVED_PA (GET_PA reports addresses 64 GiB away for areas
 *                   pinned by an earlier process: pages that "moved" across a daemon restart),
 *                   NOIOMMU_MOCK_STORE_STATE (the daemon's "FDSTORE=1 FDNAME=state-*"
 *                   notification fails with EIO while every other push goes through: the
 *                   write-ahead state cannot be stored; "1"/"all" only)
 *                   — each "1"/"all" or a list of PCI addresses (the device the call is about;
 *                   for GET_PA the device attached to the IOAS). The same switches can be
 *                   flipped at run time by writing DIR/mock-control/no-reset, reset-fail,
 *                   bme-stuck, no-get-pa, get-pa-stub, moved-pa, store-state (same syntax, re-read on use;
 *                   an empty or missing file means off).
 *
 * 1. Path trap (kmod's style): absolute paths below /sys and /dev/vfio, and /dev/iommu, are
 *    rewritten to DIR/sys/..., DIR/dev/... for open, openat, their fortified and 64-bit
 *    variants, fopen, opendir, readlink(at), (l)stat, fstatat, access and faccessat. A relative
 *    path whose dirfd is an fd of "/" counts as absolute (inventory.c opens "/" and walks from
 *    there). Not trapped, because the memory is real: /sys/kernel/mm (hugepage sizes),
 *    /sys/devices/system (NUMA nodes), /sys/fs, /sys/kernel/{security,debug,tracing}.
 *    syscall(SYS_openat2) is trapped too (the path is in the arguments): the daemon's
 *    production openat2() path runs, with the fixture root standing for "/" (do_openat2()),
 *    and the log line says "open path=... trapped=1 via=openat2 resolve=FLAGS"; an EAGAIN of
 *    that real call (a rename or mount elsewhere during a walk through "..") is passed on and
 *    logged as "open-eagain path=...". Every other syscall() is forwarded.
 *
 * 2. Device nodes: the fixture's dev/ tree is made of real filesystem objects. A character
 *    device node (mknod) is never opened for real: opening it yields a fake fd — an open of a
 *    fresh regular file in DIR/mock-state/ — whose fstat() reports S_IFCHR and the node's own
 *    st_rdev. What the fd *is* follows from that rdev, as in the kernel: the sysfs "dev"
 *    attributes of the fixture say which rdev is the VFIO container (class/misc/vfio), iommufd
 *    (class/misc/iommu), a group (class/vfio/NAME), or a device cdev (bus/pci/devices/BDF/
 *    vfio-dev/NAME). A node with any other rdev opens as an inert object (every ioctl ENOTTY).
 *    Symlinks, FIFOs and regular files in dev/ are opened for real, so the daemon's own checks
 *    meet them. An O_PATH fd of a node reopened through /proc/self/fd/N opens the node too.
 *    Each fake fd's open file description holds an OFD lock on its state file; a fresh open of
 *    the file that finds the lock taken means "some process (the client!) still holds that
 *    file", which is how a leaked device fd keeps a cdev bound or a group busy. The mock keeps
 *    no fd of its own open between calls, so the daemon's fd counts stay meaningful.
 *
 * 3. The ioctls vfio.c issues, modelled on the kernel (kernel-api.md §5–§8, §11): container,
 *    group (exclusive open, viability, SET_CONTAINER, SET_IOMMU(NOIOMMU), GET_DEVICE_FD),
 *    device (GET_INFO with PCI and optional RESET, GET_REGION_INFO, RESET, config space by
 *    pread/pwrite with PCI_COMMAND starting with Bus Master on, the access_granted gate, BIND
 *    once, ATTACH/DETACH_IOMMUFD_PT) and iommufd (IOAS_ALLOC, IOVA_RANGES with the EMSGSIZE
 *    protocol, IOAS_MAP with FIXED_IOVA, IOAS_UNMAP, DESTROY, HWPT_ALLOC with flags 0 and no
 *    data, and IOMMU_IOAS_NOIOMMU_GET_PA as merged in Linux 7.3, with the errnos in the order
 *    linux-7.3.md lists them). HWPTs as in 7.3: attaching by IOAS id makes an automatic HWPT
 *    that dies with the attachment (DETACH, replace, last close); HWPT_ALLOC makes an explicit
 *    one that stays until DESTROY (EBUSY while a device is attached to it) and is never picked
 *    by an attach by IOAS id. Mappings are pinned only while some HWPT sits in their IOAS —
 *    the physical addresses are recorded from the mapping process's pagemap when the pin is
 *    taken, and GET_PA answers from that record — and unpinned when the last one goes, after
 *    which GET_PA answers EOPNOTSUPP. Any iommufd call outside that set is logged as a
 *    "violation" (kernel-api.md §10 hazard 1).
 *
 * 4. The teardown order is logged: config-read/config-write of PCI_COMMAND, clear_bme (or
 *    bme-stuck), reset, ioas-unmap, detach, destroy (kind=hwpt|ioas), pin-ioas/unpin-ioas
 *    (iommufd pins of an IOAS's mappings taken or dropped), pin/unpin (io_uring
 *    IORING_(UN)REGISTER_BUFFERS through syscall()), mmap/munmap and close-memfd of the
 *    daemon's "noiommud-<id>" memfds (last=1 when no other fd of the daemon refers to it),
 *    close-device/-group/-container/-iommufd (still-open=1 when another fd, maybe the
 *    client's, refers to the same open file), send-fd for fds leaving with SCM_RIGHTS, every
 *    refusal (open-node-refused, bind-refused, ...), and every access to /sys or /dev ("open
 *    path=... trapped=0|1", likewise stat, access, readlink, opendir, fopen).
 *
 * 5. State shared between processes: every object's state lives in its own state file as well
 *    (rewritten after each call, re-read when newer), and a process that meets a state file it
 *    did not create — a restarted daemon given its fds back by the fd store, or a client
 *    process with the mock preloaded (NOIOMMU_MOCK_PROGRAM naming it) calling an ioctl on its
 *    device fd — adopts the object ("adopt" in the log). Config space is kept per function in
 *    DIR/mock-state/pci-BDF. So a client's DETACH is seen by the daemon's next call, as with
 *    the kernel, and leases can be tested across kill -9.
 *
 * Files: vfio-mock.c (this one: the model, items 2-5), mock-trap.c (item 1, and the real libc
 * functions), mock-log.c (the event log), mock.h (what they share).
 *
 * The kernel ABI is the daemon's daemon/vfio-uapi.h; tests/mock/abi-check.c checks that header
 * against the numbers written down in kernel-api.md §11 and linux-7.3.md, once for the daemon
 * and the mock. The structs that grew over kernel versions are modelled in their 7.3 layout.
 *
 * The VM tier (tests/vm, real kernels and QEMU's edu device) is the reference: where this model
 * and a real kernel disagree (an errno, an order, a size), the model is wrong (docs/testing.md).
 * The daemon is single-threaded, but every entry point takes one recursive lock anyway.
 */
#include "mock.h"

/* ---- Kernel ABI ----
 *
 * Numbers, constants and the fixed-layout structs come from daemon/vfio-uapi.h, the daemon's
 * own header, which tests/mock/abi-check.c checks against the literal numbers of kernel-api.md
 * §11 and linux-7.3.md. The structs whose size grew over kernel versions are modelled below in
 * their 7.3 layout, whatever the build host's headers have: the mock plays a 7.3 kernel, which
 * accepts any size from the first version's up to its own (copy_struct_from_user(): a longer
 * struct only with zero trailing bytes). Their common prefix is checked against the header. */

/* vfio-pci's region offset encoding (VFIO_PCI_OFFSET_SHIFT, drivers/vfio/pci/vfio_pci_priv.h:
 * kernel-internal, not uapi) and the size of conventional PCI config space. */
#define M_PCI_OFFSET_SHIFT              40
#define M_PCI_CONFIG_SIZE               256U

#define MOVED_PA_SHIFT                  (UINT64_C(1) << 36)

struct m_device_info {                  /* minimum 16; 20 with cap_offset, 24 with pad (6.2+) */
        uint32_t argsz, flags, num_regions, num_irqs, cap_offset, pad;
};
struct m_bind {                         /* minimum 16; 24 since 7.2 (token_uuid_ptr) */
        uint32_t argsz, flags;
        int32_t iommufd;
        uint32_t out_devid;
        uint64_t token_uuid_ptr;
};
struct m_attach {                       /* minimum 12; 16 since 7.2 (pasid) */
        uint32_t argsz, flags, pt_id, pasid;
};
struct m_detach {                       /* minimum 8; 12 since 7.2 */
        uint32_t argsz, flags, pasid;
};
struct m_hwpt_alloc {                   /* minimum 24; 48 since 6.11 (linux-7.3.md) */
        uint32_t size, flags, dev_id, pt_id, out_hwpt_id, reserved;
        uint32_t data_type, data_len;
        uint64_t data_uptr;
        uint32_t fault_id, reserved2;
};

#define M_SAME_FIELD(m, k, f) \
        _Static_assert(offsetof(struct m, f) == offsetof(struct k, f), #m "." #f " is not where the header has it")
M_SAME_FIELD(m_device_info, vfio_device_info, num_regions);
M_SAME_FIELD(m_device_info, vfio_device_info, num_irqs);
M_SAME_FIELD(m_device_info, vfio_device_info, cap_offset);
M_SAME_FIELD(m_bind, vfio_device_bind_iommufd, iommufd);
M_SAME_FIELD(m_bind, vfio_device_bind_iommufd, out_devid);
M_SAME_FIELD(m_attach, vfio_device_attach_iommufd_pt, pt_id);
M_SAME_FIELD(m_detach, vfio_device_detach_iommufd_pt, flags);
M_SAME_FIELD(m_hwpt_alloc, iommu_hwpt_alloc, pt_id);
M_SAME_FIELD(m_hwpt_alloc, iommu_hwpt_alloc, out_hwpt_id);
_Static_assert(sizeof(struct m_device_info) >= sizeof(struct vfio_device_info), "device info");
_Static_assert(sizeof(struct m_bind) >= sizeof(struct vfio_device_bind_iommufd), "bind");
_Static_assert(sizeof(struct m_attach) >= sizeof(struct vfio_device_attach_iommufd_pt), "attach");
_Static_assert(sizeof(struct m_detach) >= sizeof(struct vfio_device_detach_iommufd_pt), "detach");
_Static_assert(sizeof(struct m_hwpt_alloc) == 48, "hwpt alloc, 7.3");
_Static_assert(offsetof(struct m_hwpt_alloc, data_uptr) == 32, "hwpt alloc, 7.3");
_Static_assert(offsetof(struct m_hwpt_alloc, fault_id) == 40, "hwpt alloc, 7.3");

/* ---- State ---- */

typedef enum ObjKind {
        OBJ_CONTAINER,
        OBJ_GROUP,
        OBJ_DEVICE,
        OBJ_IOMMUFD,
        OBJ_OTHER,
} ObjKind;

static const char *const obj_kind_name[] = {
        [OBJ_CONTAINER] = "container",
        [OBJ_GROUP] = "group",
        [OBJ_DEVICE] = "device",
        [OBJ_IOMMUFD] = "iommufd",
        [OBJ_OTHER] = "other",
};

/* One PCI function of the fixture; its state outlives the fds (config space is the device's). */
typedef struct Pci {
        char bdf[16];
        int group;                      /* -1: none */
        bool noiommu_cdev;              /* its cdev is named noiommu-vfioN */
        uint8_t config[M_PCI_CONFIG_SIZE];
        struct Pci *next;
} Pci;

#define MAPS_MAX 64
#define IOAS_MAX 8
#define HWPT_MAX 16
#define RUNS_MAX 64

/* A physically contiguous run of a pinned area: [off, off + len) of the area at phys. */
typedef struct Run {
        uint64_t off, phys, len;
} Run;

/* An IOAS_MAP area. While a HWPT sits in its IOAS the pages are pinned, and the physical
 * addresses are recorded then (from the mapping process's pagemap), as the kernel's pin fixes
 * them: GET_PA answers from that record, also in a restarted daemon whose mapping is gone. */
typedef struct Area {
        uint64_t iova, length, user_va;
        int32_t owner_pid;              /* the process whose user_va it is */
        int32_t pin_pid;                /* the process that was running when it got pinned */
        bool pinned;
        bool runs_overflow;             /* too fragmented to record: read pagemap live */
        uint32_t n_runs;
        Run runs[RUNS_MAX];
} Area;

typedef struct Ioas {
        uint32_t id;
        bool destroyed;
        uint32_t n_areas;
        Area areas[MAPS_MAX];
} Ioas;

/* An explicit HWPT (IOMMU_HWPT_ALLOC). Automatic ones exist only as a device's attachment
 * (Obj.hwpt_auto): they die with the attachment, as in the kernel. */
typedef struct Hwpt {
        uint32_t id;
        uint32_t ioas_id;
        bool noiommu;                   /* made for a noiommu device: a software page table */
        bool destroyed;
} Hwpt;

typedef struct Obj {
        unsigned id;
        ObjKind kind;
        bool dead;                      /* no open file description refers to it any more */
        dev_t st_dev;
        ino_t st_ino;
        char path[PATH_MAX];            /* its state file */
        dev_t rdev;
        char node[64];

        /* container */
        bool iommu_set;
        unsigned n_groups;
        /* group */
        int group;
        struct Obj *container;
        /* device */
        Pci *pci;
        bool cdev;
        struct Obj *via_group;          /* a group-opened device holds its group open */
        bool access_granted;
        struct Obj *ictx;               /* bound to this iommufd */
        uint32_t devid;
        uint32_t attached_ioas;         /* 0: not attached; else the IOAS of its domain */
        uint32_t hwpt;                  /* the HWPT it is attached to */
        bool hwpt_auto;                 /* an automatic HWPT (attached by IOAS id) */
        /* iommufd */
        uint32_t next_id;
        Ioas *ioas;                     /* IOAS_MAX, allocated for iommufd objects only */
        uint32_t n_ioas;
        Hwpt hwpts[HWPT_MAX];
        uint32_t n_hwpts;

        uint64_t gen;                   /* of the state last written to or read from its file */

        struct Obj *next;
} Obj;

static Obj *objs;
static unsigned obj_counter;
static Pci *pcis;

/* The fixture's rdev table, rebuilt on every node open (tests change the tree at run time). */
typedef struct Node {
        ObjKind kind;
        dev_t rdev;
        int group;
        char bdf[16];
        char name[64];
        bool noiommu;
} Node;

#define NODES_MAX 256

/* ---- Small helpers ---- */

/* Reads a small file into buf (NUL-terminated, trailing newlines dropped). */
static int read_file(const char *path, char *buf, size_t size) {
        ssize_t n;
        int fd;

        fd = REAL(open)(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        n = read(fd, buf, size - 1);
        REAL(close)(fd);
        if (n < 0)
                return -EIO;
        buf[n] = 0;
        while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
                buf[--n] = 0;
        return 0;
}

static int read_devnum(const char *path, dev_t *ret) {
        char buf[64];
        unsigned ma, mi;

        if (read_file(path, buf, sizeof(buf)) < 0)
                return -ENOENT;
        if (sscanf(buf, "%u:%u", &ma, &mi) != 2)
                return -EINVAL;
        *ret = makedev(ma, mi);
        return 0;
}

/* Last component of a symlink's target, or "" */
static void readlink_basename(const char *path, char *ret, size_t size) {
        char buf[PATH_MAX];
        const char *b;
        ssize_t n;

        ret[0] = 0;
        n = REAL(readlink)(path, buf, sizeof(buf) - 1);
        if (n <= 0)
                return;
        buf[n] = 0;
        b = strrchr(buf, '/');
        snprintf(ret, size, "%s", b ? b + 1 : buf);
}

/* Whether a fault switch applies to the device bdf (NULL: any device). "1"/"all" or a list. */
static bool switch_list_has(const char *v, const char *bdf) {
        char buf[1024];
        char *save = NULL;

        if (!v || !*v || streq(v, "0"))
                return false;
        if (streq(v, "1") || streq(v, "all"))
                return true;
        if (!bdf)
                return false;
        snprintf(buf, sizeof(buf), "%s", v);
        for (char *w = strtok_r(buf, ", \t\n", &save); w; w = strtok_r(NULL, ", \t\n", &save))
                if (streq(w, bdf))
                        return true;
        return false;
}

static bool fault(const char *env, const char *file, const char *bdf) {
        char path[PATH_MAX + 64], buf[1024];

        if (switch_list_has(getenv(env), bdf))
                return true;
        snprintf(path, sizeof(path), "%s/mock-control/%s", root, file);
        if (read_file(path, buf, sizeof(buf)) < 0)
                return false;
        return switch_list_has(buf, bdf);
}

/* ---- The fixture's device table ---- */

static int scan_nodes(Node *nodes, size_t max) {
        char path[PATH_MAX + 256], name[64];
        struct dirent *de;
        size_t n = 0;
        DIR *d;
        int fd;

        snprintf(path, sizeof(path), "%s/sys/class/misc/vfio/dev", root);
        if (n < max && read_devnum(path, &nodes[n].rdev) >= 0) {
                nodes[n] = (Node) { .kind = OBJ_CONTAINER, .rdev = nodes[n].rdev, .group = -1 };
                snprintf(nodes[n].name, sizeof(nodes[n].name), "vfio");
                n++;
        }
        snprintf(path, sizeof(path), "%s/sys/class/misc/iommu/dev", root);
        if (n < max && read_devnum(path, &nodes[n].rdev) >= 0) {
                nodes[n] = (Node) { .kind = OBJ_IOMMUFD, .rdev = nodes[n].rdev, .group = -1 };
                snprintf(nodes[n].name, sizeof(nodes[n].name), "iommu");
                n++;
        }

        /* groups: class/vfio/noiommu-N or class/vfio/N */
        snprintf(path, sizeof(path), "%s/sys/class/vfio", root);
        fd = REAL(open)(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0 && (d = fdopendir(fd))) {
                while ((de = readdir(d)) && n < max) {
                        const char *num = de->d_name;
                        char p2[PATH_MAX + 512];
                        dev_t rdev;

                        if (de->d_name[0] == '.')
                                continue;
                        if (strncmp(num, "noiommu-", 8) == 0)
                                num += 8;
                        if (!isdigit((unsigned char) num[0]))
                                continue;
                        snprintf(p2, sizeof(p2), "%s/%s/dev", path, de->d_name);
                        if (read_devnum(p2, &rdev) < 0)
                                continue;
                        nodes[n] = (Node) { .kind = OBJ_GROUP, .rdev = rdev, .group = atoi(num) };
                        snprintf(nodes[n].name, sizeof(nodes[n].name), "%s", de->d_name);
                        n++;
                }
                closedir(d);
        } else if (fd >= 0)
                REAL(close)(fd);

        /* device cdevs: bus/pci/devices/BDF/vfio-dev/NAME/dev */
        snprintf(path, sizeof(path), "%s/sys/bus/pci/devices", root);
        fd = REAL(open)(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0 && (d = fdopendir(fd))) {
                while ((de = readdir(d)) && n < max) {
                        char vdir[PATH_MAX + 512], grp[PATH_MAX + 512], g[64];
                        struct dirent *ve;
                        DIR *vd;
                        int vfd;

                        if (de->d_name[0] == '.' || strlen(de->d_name) >= 16)
                                continue;
                        snprintf(grp, sizeof(grp), "%s/%s/iommu_group", path, de->d_name);
                        readlink_basename(grp, g, sizeof(g));
                        snprintf(vdir, sizeof(vdir), "%s/%s/vfio-dev", path, de->d_name);
                        vfd = REAL(open)(vdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (vfd < 0)
                                continue;
                        vd = fdopendir(vfd);
                        if (!vd) {
                                REAL(close)(vfd);
                                continue;
                        }
                        while ((ve = readdir(vd)) && n < max) {
                                char p2[PATH_MAX + 1024];
                                dev_t rdev;

                                if (ve->d_name[0] == '.' || strlen(ve->d_name) >= sizeof(name))
                                        continue;
                                snprintf(p2, sizeof(p2), "%s/%s/dev", vdir, ve->d_name);
                                if (read_devnum(p2, &rdev) < 0)
                                        continue;
                                nodes[n] = (Node) {
                                        .kind = OBJ_DEVICE,
                                        .rdev = rdev,
                                        .group = g[0] && isdigit((unsigned char) g[0]) ? atoi(g) : -1,
                                        .noiommu = strncmp(ve->d_name, "noiommu-", 8) == 0,
                                };
                                snprintf(nodes[n].bdf, sizeof(nodes[n].bdf), "%s", de->d_name);
                                snprintf(nodes[n].name, sizeof(nodes[n].name), "%s", ve->d_name);
                                n++;
                        }
                        closedir(vd);
                }
                closedir(d);
        } else if (fd >= 0)
                REAL(close)(fd);

        return (int) n;
}

static bool noiommu_enabled(void) {
        char path[PATH_MAX + 64], buf[16];

        snprintf(path, sizeof(path), "%s/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", root);
        return read_file(path, buf, sizeof(buf)) >= 0 && (streq(buf, "Y") || streq(buf, "1"));
}

/* A PCI function's config space outlives the processes: state_dir/pci-BDF. */
static void pci_save(const Pci *p) {
        char path[PATH_MAX + 64];
        int fd;

        (void) mkdir(state_dir, 0755);
        snprintf(path, sizeof(path), "%s/pci-%s", state_dir, p->bdf);
        fd = REAL(open)(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
        if (fd < 0)
                return;
        (void) !REAL(pwrite)(fd, p->config, sizeof(p->config), 0);
        REAL(close)(fd);
}

static bool pci_load(Pci *p) {
        char path[PATH_MAX + 64];
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "%s/pci-%s", state_dir, p->bdf);
        fd = REAL(open)(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return false;
        n = REAL(pread)(fd, p->config, sizeof(p->config), 0);
        REAL(close)(fd);
        return n == (ssize_t) sizeof(p->config);
}

static Pci *pci_get(const char *bdf) {
        char path[PATH_MAX + 128], buf[64], g[64];
        Pci *p;

        for (p = pcis; p; p = p->next)
                if (streq(p->bdf, bdf)) {
                        (void) pci_load(p);     /* another process may have written it */
                        return p;
                }

        p = calloc(1, sizeof(Pci));
        if (!p)
                return NULL;
        snprintf(p->bdf, sizeof(p->bdf), "%s", bdf);
        snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s/iommu_group", root, bdf);
        readlink_basename(path, g, sizeof(g));
        p->group = g[0] && isdigit((unsigned char) g[0]) ? atoi(g) : -1;

        /* config space: ids and class from sysfs, the rest zero */
        snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s/vendor", root, bdf);
        if (read_file(path, buf, sizeof(buf)) >= 0) {
                unsigned v = (unsigned) strtoul(buf, NULL, 16);
                p->config[0] = (uint8_t) v;
                p->config[1] = (uint8_t) (v >> 8);
        }
        snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s/device", root, bdf);
        if (read_file(path, buf, sizeof(buf)) >= 0) {
                unsigned v = (unsigned) strtoul(buf, NULL, 16);
                p->config[2] = (uint8_t) v;
                p->config[3] = (uint8_t) (v >> 8);
        }
        snprintf(path, sizeof(path), "%s/sys/bus/pci/devices/%s/class", root, bdf);
        if (read_file(path, buf, sizeof(buf)) >= 0) {
                unsigned v = (unsigned) strtoul(buf, NULL, 16);
                p->config[9] = (uint8_t) v;
                p->config[10] = (uint8_t) (v >> 8);
                p->config[11] = (uint8_t) (v >> 16);
        }
        (void) pci_load(p);
        p->next = pcis;
        pcis = p;
        return p;
}

static uint16_t pci_command(const Pci *p) {
        return (uint16_t) (p->config[PCI_COMMAND] | p->config[PCI_COMMAND + 1] << 8);
}

static void pci_set_command(Pci *p, uint16_t v) {
        p->config[PCI_COMMAND] = (uint8_t) v;
        p->config[PCI_COMMAND + 1] = (uint8_t) (v >> 8);
        pci_save(p);
}

/* ---- Objects ---- */

/* Whether some open file description still refers to o: its OFD lock is still held. */
static bool obj_alive(Obj *o) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
        int fd;

        if (o->dead)
                return false;
        fd = REAL(open)(o->path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
                return false;
        if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
                fl.l_type = F_UNLCK;
        REAL(close)(fd);
        if (fl.l_type != F_UNLCK)
                return true;

        /* Dead for good: nothing can refer to it again. Unlinking lets the inode go. */
        o->dead = true;
        (void) unlink(o->path);
        return false;
}

static Obj *obj_by_path(const char *path);
static void obj_refresh(Obj *o);

static Obj *obj_of_fd(int fd) {
        char link[64], target[PATH_MAX];
        struct stat st;
        ssize_t n;

        if (fd < 0 || !is_active() || REAL(fstat)(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return NULL;
        for (Obj *o = objs; o; o = o->next)
                if (!o->dead && o->st_ino == st.st_ino && o->st_dev == st.st_dev) {
                        obj_refresh(o);
                        return o;
                }

        /* A state file this process did not create: inherited (fd store) or received. */
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = REAL(readlink)(link, target, sizeof(target) - 1);
        if (n <= 0 || !state_dir[0])
                return NULL;
        target[n] = 0;
        if (strncmp(target, state_dir, strlen(state_dir)) != 0 || target[strlen(state_dir)] != '/')
                return NULL;
        return obj_by_path(target);
}

static Obj *obj_of_fd_kind(int fd, ObjKind kind) {
        Obj *o = obj_of_fd(fd);

        return o && o->kind == kind ? o : NULL;
}

/* Creates the object and returns an fd of a new open file description for it, holding its
 * OFD lock. */
static int obj_new(ObjKind kind, const char *node, dev_t rdev, int flags, Obj **ret) {
        struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1 };
        struct stat st;
        Obj *o;
        int fd;

        (void) mkdir(state_dir, 0755);

        o = calloc(1, sizeof(Obj));
        if (!o)
                return -ENOMEM;
        o->id = ++obj_counter;
        o->kind = kind;
        o->rdev = rdev;
        o->group = -1;
        o->next_id = 1;
        snprintf(o->node, sizeof(o->node), "%s", node);
        snprintf(o->path, sizeof(o->path), "%s/%u-%d-%s-%s", state_dir, o->id, (int) getpid(),
                 obj_kind_name[kind], node);

        fd = REAL(open)(o->path, O_RDWR | O_CREAT | O_EXCL | O_NOCTTY |
                        (flags & (O_CLOEXEC | O_NONBLOCK)), 0600);
        if (fd < 0) {
                int r = -errno;
                free(o);
                return r;
        }
        if (fcntl(fd, F_OFD_SETLK, &fl) < 0 || REAL(fstat)(fd, &st) < 0) {
                int r = -errno;
                REAL(close)(fd);
                (void) unlink(o->path);
                free(o);
                return r;
        }
        o->st_dev = st.st_dev;
        o->st_ino = st.st_ino;
        if (kind == OBJ_IOMMUFD) {
                o->ioas = calloc(IOAS_MAX, sizeof(Ioas));
                if (!o->ioas) {
                        REAL(close)(fd);
                        (void) unlink(o->path);
                        free(o);
                        return -ENOMEM;
                }
        }
        o->next = objs;
        objs = o;
        *ret = o;
        return fd;
}

/* A group is open while its file is, or while any device fd obtained from it is (the device
 * file holds a reference on the group file, kernel-api.md §7 item 9). */
static bool group_is_open(int group) {
        for (Obj *o = objs; o; o = o->next) {
                if (o->kind == OBJ_GROUP && o->group == group && obj_alive(o))
                        return true;
                if (o->kind == OBJ_DEVICE && o->via_group && o->via_group->group == group &&
                    obj_alive(o))
                        return true;
        }
        return false;
}

/* vfio_device_block_group(): a bound cdev keeps its group from being opened. */
static bool group_has_bound_cdev(int group) {
        for (Obj *o = objs; o; o = o->next)
                if (o->kind == OBJ_DEVICE && o->cdev && o->access_granted && o->pci &&
                    o->pci->group == group && obj_alive(o))
                        return true;
        return false;
}

/* device->open_count: open device files (group-opened or bound cdevs) other than "self". */
static unsigned device_open_count(const Pci *p, const Obj *self) {
        unsigned n = 0;

        for (Obj *o = objs; o; o = o->next)
                if (o != self && o->kind == OBJ_DEVICE && o->pci == p &&
                    (o->via_group || o->access_granted) && obj_alive(o))
                        n++;
        return n;
}

static Ioas *ioas_find(Obj *ictx, uint32_t id) {
        for (size_t i = 0; ictx->ioas && i < ictx->n_ioas; i++)
                if (ictx->ioas[i].id == id && !ictx->ioas[i].destroyed)
                        return &ictx->ioas[i];
        return NULL;
}

static Hwpt *hwpt_find(Obj *ictx, uint32_t id) {
        for (size_t i = 0; i < ictx->n_hwpts; i++)
                if (ictx->hwpts[i].id == id && !ictx->hwpts[i].destroyed)
                        return &ictx->hwpts[i];
        return NULL;
}

static void obj_refresh(Obj *o);

/* A live device of ictx attached (to any HWPT) in this IOAS, if any. */
static Obj *ioas_attached_device(Obj *ictx, uint32_t ioas_id) {
        for (Obj *o = objs; o; o = o->next) {
                if (o->kind != OBJ_DEVICE || o->ictx != ictx || !obj_alive(o))
                        continue;
                obj_refresh(o);         /* a client may have attached or detached it */
                if (o->access_granted && o->attached_ioas == ioas_id)
                        return o;
        }
        return NULL;
}

/* Whether some HWPT sits in the IOAS — an explicit one (until DESTROY), or the automatic one of
 * a live device attached by IOAS id (until DETACH or the last close) — and whether it is a
 * noiommu (software) page table. IOAS_MAP pins only while this is true (linux-7.3.md). */
static bool ioas_domain(Obj *ictx, uint32_t ioas_id, bool *ret_noiommu) {
        for (size_t i = 0; i < ictx->n_hwpts; i++)
                if (!ictx->hwpts[i].destroyed && ictx->hwpts[i].ioas_id == ioas_id) {
                        if (ret_noiommu)
                                *ret_noiommu = ictx->hwpts[i].noiommu;
                        return true;
                }
        for (Obj *o = objs; o; o = o->next) {
                if (o->kind != OBJ_DEVICE || o->ictx != ictx || !obj_alive(o))
                        continue;
                obj_refresh(o);
                if (o->access_granted && o->attached_ioas == ioas_id && o->hwpt_auto) {
                        if (ret_noiommu)
                                *ret_noiommu = o->pci && o->pci->noiommu_cdev;
                        return true;
                }
        }
        return false;
}

/* Physical address of the 4 KiB page at va in process pid, from its pagemap (the daemon is
 * root; so is the test that drives a client's ioctl). */
static int virt_to_phys_pid(int pid, uint64_t va, uint64_t *ret) {
        char path[64];
        uint64_t e;
        int fd;

        if (pid == getpid())
                snprintf(path, sizeof(path), "/proc/self/pagemap");
        else
                snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
        fd = REAL(open)(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (REAL(pread)(fd, &e, sizeof(e), (off_t) (va / 4096 * 8)) != (ssize_t) sizeof(e)) {
                REAL(close)(fd);
                return -EIO;
        }
        REAL(close)(fd);
        if (!(e >> 63) || (e & ((UINT64_C(1) << 55) - 1)) == 0)
                return -ENXIO;
        *ret = (e & ((UINT64_C(1) << 55) - 1)) * 4096 + va % 4096;
        return 0;
}

/* Pins an area: records where its pages are now, as pin_user_pages() would fix them. */
static int area_pin(Area *a) {
        a->n_runs = 0;
        a->runs_overflow = false;
        for (uint64_t off = 0; off < a->length; off += 4096) {
                uint64_t pa;
                int k = virt_to_phys_pid(a->owner_pid, a->user_va + off, &pa);

                if (k < 0)
                        return k;
                if (a->n_runs > 0 && a->runs[a->n_runs - 1].phys + a->runs[a->n_runs - 1].len == pa)
                        a->runs[a->n_runs - 1].len += 4096;
                else if (a->n_runs < RUNS_MAX)
                        a->runs[a->n_runs++] = (Run) { .off = off, .phys = pa, .len = 4096 };
                else {
                        a->runs_overflow = true;        /* answered from pagemap, live */
                        break;
                }
        }
        a->pinned = true;
        a->pin_pid = getpid();
        return 0;
}

/* Brings the pins of an IOAS in line with whether a HWPT sits in it (evaluated lazily: a
 * client's DETACH in another process, or the death of the last holder of a device file, is
 * seen here). Logs pin-ioas/unpin-ioas on a change. */
static void ioas_sync_pins(Obj *ictx, Ioas *ioas) {
        bool domain = ioas_domain(ictx, ioas->id, NULL);
        unsigned changed = 0;

        for (size_t i = 0; i < ioas->n_areas; i++) {
                Area *a = &ioas->areas[i];

                if (domain && !a->pinned) {
                        if (area_pin(a) >= 0)
                                changed++;
                } else if (!domain && a->pinned) {
                        a->pinned = false;
                        a->n_runs = 0;
                        changed++;
                }
        }
        if (changed)
                mlog("%s iommufd=%u ioas=%u areas=%u", domain ? "pin-ioas" : "unpin-ioas", ictx->id, ioas->id,
                     changed);
}

static void ictx_sync_pins(Obj *ictx) {
        for (size_t i = 0; ictx->ioas && i < ictx->n_ioas; i++)
                if (!ictx->ioas[i].destroyed)
                        ioas_sync_pins(ictx, &ictx->ioas[i]);
}

/* ---- State shared between processes ----
 *
 * Every object's state is written to its own state file after each call that may change it,
 * and read back when the file is newer than what this process last saw. So a process that
 * did not create an object can use it: a restarted daemon with fds from the fd store, or a
 * client process (the mock preloaded, NOIOMMU_MOCK_PROGRAM naming it) calling an ioctl on the
 * device fd it was given — as with the kernel, the effect is seen by the daemon at its next
 * call. Objects refer to each other by state file path. */

#define SAVED_MAGIC "vfiomock2"

typedef struct Saved {
        char magic[16];
        uint64_t gen;
        uint32_t id, kind;
        uint64_t rdev;
        int32_t group;
        char node[64];
        uint8_t iommu_set, cdev, access_granted, hwpt_auto;
        uint32_t n_groups;
        char container[PATH_MAX];
        char bdf[16];
        char via_group[PATH_MAX];
        char ictx[PATH_MAX];
        uint32_t devid, attached_ioas, hwpt;
        uint32_t next_id, n_ioas, n_hwpts;
        Hwpt hwpts[HWPT_MAX];
        /* then n_ioas Ioas */
} Saved;

static Obj *obj_by_path(const char *path);
static Pci *pci_get(const char *bdf);

static void obj_save(Obj *o) {
        Saved *sv;
        int fd;

        if (!o || o->dead)
                return;
        sv = calloc(1, sizeof(Saved));
        if (!sv)
                return;
        snprintf(sv->magic, sizeof(sv->magic), "%s", SAVED_MAGIC);
        sv->gen = ++o->gen;
        sv->id = o->id;
        sv->kind = (uint32_t) o->kind;
        sv->rdev = (uint64_t) o->rdev;
        sv->group = o->group;
        snprintf(sv->node, sizeof(sv->node), "%s", o->node);
        sv->iommu_set = o->iommu_set;
        sv->n_groups = o->n_groups;
        if (o->container)
                snprintf(sv->container, sizeof(sv->container), "%s", o->container->path);
        if (o->pci)
                snprintf(sv->bdf, sizeof(sv->bdf), "%s", o->pci->bdf);
        sv->cdev = o->cdev;
        if (o->via_group)
                snprintf(sv->via_group, sizeof(sv->via_group), "%s", o->via_group->path);
        sv->access_granted = o->access_granted;
        if (o->ictx)
                snprintf(sv->ictx, sizeof(sv->ictx), "%s", o->ictx->path);
        sv->devid = o->devid;
        sv->attached_ioas = o->attached_ioas;
        sv->hwpt = o->hwpt;
        sv->hwpt_auto = o->hwpt_auto;
        sv->next_id = o->next_id;
        sv->n_ioas = o->ioas ? o->n_ioas : 0;
        sv->n_hwpts = o->n_hwpts;
        memcpy(sv->hwpts, o->hwpts, sizeof(sv->hwpts));

        fd = REAL(open)(o->path, O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
                (void) !REAL(pwrite)(fd, sv, sizeof(*sv), 0);
                if (sv->n_ioas > 0)
                        (void) !REAL(pwrite)(fd, o->ioas, sizeof(Ioas) * sv->n_ioas, sizeof(*sv));
                REAL(close)(fd);
        }
        free(sv);
}

/* Loads o's state from its file if it is newer than what o holds. Returns 0, or -1 if the file
 * holds no state. */
static int obj_load(Obj *o, bool force) {
        Saved *sv;
        int fd, r = -1;

        fd = REAL(open)(o->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        sv = calloc(1, sizeof(Saved));
        if (!sv) {
                REAL(close)(fd);
                return -1;
        }
        if (REAL(pread)(fd, sv, sizeof(*sv), 0) != (ssize_t) sizeof(*sv) || strcmp(sv->magic, SAVED_MAGIC) != 0)
                goto out;
        r = 0;
        if (!force && sv->gen == o->gen)
                goto out;
        o->gen = sv->gen;
        o->id = sv->id;
        o->kind = (ObjKind) sv->kind;
        o->rdev = (dev_t) sv->rdev;
        o->group = sv->group;
        snprintf(o->node, sizeof(o->node), "%s", sv->node);
        o->iommu_set = sv->iommu_set;
        o->n_groups = sv->n_groups;
        o->container = sv->container[0] ? obj_by_path(sv->container) : NULL;
        o->pci = sv->bdf[0] ? pci_get(sv->bdf) : NULL;
        o->cdev = sv->cdev;
        o->via_group = sv->via_group[0] ? obj_by_path(sv->via_group) : NULL;
        o->access_granted = sv->access_granted;
        o->ictx = sv->ictx[0] ? obj_by_path(sv->ictx) : NULL;
        o->devid = sv->devid;
        o->attached_ioas = sv->attached_ioas;
        o->hwpt = sv->hwpt;
        o->hwpt_auto = sv->hwpt_auto;
        o->next_id = sv->next_id;
        o->n_hwpts = sv->n_hwpts > HWPT_MAX ? HWPT_MAX : sv->n_hwpts;
        memcpy(o->hwpts, sv->hwpts, sizeof(o->hwpts));
        if (o->kind == OBJ_IOMMUFD) {
                if (!o->ioas)
                        o->ioas = calloc(IOAS_MAX, sizeof(Ioas));
                o->n_ioas = 0;
                if (o->ioas && sv->n_ioas <= IOAS_MAX &&
                    REAL(pread)(fd, o->ioas, sizeof(Ioas) * sv->n_ioas, sizeof(*sv)) == (ssize_t) (sizeof(Ioas) * sv->n_ioas))
                        o->n_ioas = sv->n_ioas;
        }
out:
        free(sv);
        REAL(close)(fd);
        return r;
}

static void obj_refresh(Obj *o) {
        if (o && !o->dead)
                (void) obj_load(o, /* force= */ false);
}

/* An object this process knows by its state file, adopting it if needed (NULL if the file is
 * gone or holds no state). */
static Obj *obj_by_path(const char *path) {
        const char *name;
        struct stat st;
        Obj *o;

        for (o = objs; o; o = o->next)
                if (!o->dead && streq(o->path, path))
                        return o;
        if (strncmp(path, state_dir, strlen(state_dir)) != 0 || path[strlen(state_dir)] != '/')
                return NULL;
        name = path + strlen(state_dir) + 1;
        if (strchr(name, '/') || REAL(stat)(path, &st) < 0 || !S_ISREG(st.st_mode))
                return NULL;
        o = calloc(1, sizeof(Obj));
        if (!o)
                return NULL;
        snprintf(o->path, sizeof(o->path), "%s", path);
        o->st_dev = st.st_dev;
        o->st_ino = st.st_ino;
        o->group = -1;
        /* Linked first: objects may refer to each other. */
        o->next = objs;
        objs = o;
        if (obj_load(o, /* force= */ true) < 0) {
                objs = o->next;
                free(o->ioas);
                free(o);
                return NULL;
        }
        if (o->id > obj_counter)
                obj_counter = o->id;
        mlog("adopt kind=%s obj=%u%s%s", obj_kind_name[o->kind], o->id, o->pci ? " dev=" : "",
             o->pci ? o->pci->bdf : "");
        return o;
}

/* Saves an object and those an ioctl on it may have changed too. */
static void obj_save_related(Obj *o) {
        obj_save(o);
        if (o->ictx)
                obj_save(o->ictx);
        if (o->container)
                obj_save(o->container);
}

/* Whether another object still points to o: a device keeps its group, its container (through
 * the group) and the iommufd it is bound to, as the kernel's references do, and the code here
 * follows those pointers without asking whether the target is still open. */
static bool obj_referenced(const Obj *o) {
        for (const Obj *x = objs; x; x = x->next)
                if (x != o && (x->container == o || x->via_group == o || x->ictx == o))
                        return true;
        return false;
}

/* Frees every object that no open file description refers to any more and no other object
 * points to. Dead is for good: the OFD lock (obj_alive()) is held by the open file description
 * itself, so every fd naming it, in any process — dup(), F_DUPFD, SCM_RIGHTS, the fd store — has
 * been closed, and its state file is unlinked, so nothing can bring it back. Without this every
 * open stayed allocated (an iommufd's IOAS table is ~800 KB), and a daemon on the mock grew with
 * each AcquireDevice. Runs after an object's fd is closed; the list stays short, so asking each
 * object is cheap. */
static void obj_collect(void) {
        bool again;

        do {
                again = false;
                for (Obj **p = &objs; *p;) {
                        Obj *o = *p;

                        if (obj_alive(o) || obj_referenced(o)) {
                                p = &o->next;
                                continue;
                        }
                        *p = o->next;
                        free(o->ioas);
                        free(o);
                        again = true;   /* what it pointed to may be free to go now */
                }
        } while (again);
}

/* ---- Node open ---- */

/* Opens a node of the fixture. Returns -1 with errno set, an fd, or -2 when the path is not a
 * character device (the caller opens it for real). */
int node_open(const char *abs, const char *real_path, int flags) {
        Node nodes[NODES_MAX];
        const Node *match = NULL;
        struct stat st;
        Obj *o;
        int n, fd;

        if (REAL(lstat)(real_path, &st) < 0 || !S_ISCHR(st.st_mode))
                return -2;

        n = scan_nodes(nodes, NODES_MAX);
        for (int i = 0; i < n; i++)
                if (nodes[i].rdev == st.st_rdev)
                        match = &nodes[i];

        if (!match) {
                /* Some other character device (a /dev/null planted in the fixture): opens, but
                 * knows no VFIO ioctl. */
                fd = obj_new(OBJ_OTHER, "other", st.st_rdev, flags, &o);
                if (fd < 0) {
                        errno = -fd;
                        return -1;
                }
                mlog("open-node path=%s kind=other rdev=%u:%u obj=%u", abs,
                     major(st.st_rdev), minor(st.st_rdev), o->id);
                return fd;
        }

        if (match->kind == OBJ_GROUP) {
                /* vfio_group_fops_open(): one opener at a time, and not while a cdev of the
                 * group is bound. */
                if (group_is_open(match->group) || group_has_bound_cdev(match->group)) {
                        mlog("open-node-refused path=%s kind=group group=%d errno=EBUSY", abs,
                             match->group);
                        errno = EBUSY;
                        return -1;
                }
        }

        fd = obj_new(match->kind, match->name, st.st_rdev, flags, &o);
        if (fd < 0) {
                errno = -fd;
                return -1;
        }
        o->group = match->group;
        if (match->kind == OBJ_DEVICE) {
                o->cdev = true;
                o->pci = pci_get(match->bdf);
                if (!o->pci) {
                        REAL(close)(fd);
                        errno = ENOMEM;
                        return -1;
                }
                o->pci->noiommu_cdev = match->noiommu;
                /* As if the client had enabled bus mastering during the last lease. */
                pci_set_command(o->pci, pci_command(o->pci) | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
        }
        mlog("open-node path=%s kind=%s node=%s rdev=%u:%u obj=%u%s%s", abs,
             obj_kind_name[match->kind], match->name, major(st.st_rdev), minor(st.st_rdev), o->id,
             match->bdf[0] ? " dev=" : "", match->bdf);
        obj_save(o);
        return fd;
}

/* What readlink("/proc/self/fd/N") says for a node object, as the kernel would: a device from
 * a group is "anon_inode:[vfio-device]", a device cdev /dev/vfio/devices/NAME, a group
 * /dev/vfio/NAME, the container /dev/vfio/vfio, iommufd /dev/iommu (the daemon's restore tells
 * a lease's fds apart by that). -2: fd is not one. */
ssize_t node_fd_link(int fd, char *out, size_t size) {
        char buf[PATH_MAX];
        Obj *o;
        int n = -2;

        pthread_mutex_lock(&lock);
        o = obj_of_fd(fd);
        if (o && o->kind == OBJ_DEVICE)
                n = o->via_group ? snprintf(buf, sizeof(buf), "anon_inode:[vfio-device]")
                                 : snprintf(buf, sizeof(buf), "/dev/vfio/devices/%s", o->node);
        else if (o && o->kind == OBJ_GROUP)
                n = snprintf(buf, sizeof(buf), "/dev/vfio/%s", o->node);
        else if (o && o->kind == OBJ_CONTAINER)
                n = snprintf(buf, sizeof(buf), "/dev/vfio/vfio");
        else if (o && o->kind == OBJ_IOMMUFD)
                n = snprintf(buf, sizeof(buf), "/dev/iommu");
        pthread_mutex_unlock(&lock);
        if (n < 0)
                return n;
        /* readlink(2): no terminating NUL, truncated to size */
        if ((size_t) n > size)
                n = (int) size;
        memcpy(out, buf, (size_t) n);
        return n;
}

/* ---- ioctl models ---- */

static int fail(int e) {
        errno = e;
        return -1;
}

/* iommufd's size rule: at least min_size; bytes beyond what we know must be zero (E2BIG). */
static int iommufd_check_size(const void *arg, size_t min_size, size_t known) {
        uint32_t size;

        if (!arg)
                return EFAULT;
        memcpy(&size, arg, sizeof(size));
        if (size < min_size)
                return EINVAL;
        for (size_t i = known; i < size; i++)
                if (((const uint8_t *) arg)[i] != 0)
                        return E2BIG;
        return 0;
}

static int container_ioctl(Obj *o, unsigned long req, void *arg) {
        switch (req) {
        case VFIO_GET_API_VERSION:
                return VFIO_API_VERSION;
        case VFIO_CHECK_EXTENSION:
                /* By value. Only the noiommu "IOMMU" exists here, and only with the parameter. */
                if ((long) arg == VFIO_NOIOMMU_IOMMU)
                        return noiommu_enabled() ? 1 : 0;
                return 0;
        case VFIO_SET_IOMMU:
                if ((long) arg != VFIO_NOIOMMU_IOMMU) {
                        mlog("set-iommu-refused obj=%u type=%ld", o->id, (long) arg);
                        return fail(ENODEV);
                }
                if (o->n_groups == 0)
                        return fail(EINVAL);
                if (o->iommu_set)
                        return fail(EBUSY);
                if (!noiommu_enabled())
                        return fail(ENODEV);
                o->iommu_set = true;
                mlog("set-iommu obj=%u type=noiommu", o->id);
                return 0;
        default:
                /* The noiommu backend answers every other container ioctl with ENOTTY. */
                mlog("unhandled-ioctl kind=container req=0x%lx", req);
                return fail(ENOTTY);
        }
}

static bool group_viable(int group) {
        char path[PATH_MAX + 64];
        struct dirent *de;
        DIR *d;
        int fd;
        bool viable = true;

        snprintf(path, sizeof(path), "%s/sys/kernel/iommu_groups/%d/devices", root, group);
        fd = REAL(open)(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return true;
        d = fdopendir(fd);
        if (!d) {
                REAL(close)(fd);
                return true;
        }
        while ((de = readdir(d))) {
                char p2[PATH_MAX + 512], drv[64];

                if (de->d_name[0] == '.')
                        continue;
                snprintf(p2, sizeof(p2), "%s/%s/driver", path, de->d_name);
                readlink_basename(p2, drv, sizeof(drv));
                /* Unbound members are fine; members on a host driver make the group unusable. */
                if (drv[0] && !strstr(drv, "vfio"))
                        viable = false;
        }
        closedir(d);
        return viable;
}

static bool group_has_device(int group, const char *bdf) {
        char path[PATH_MAX + 128];
        struct stat st;

        if (strchr(bdf, '/') || streq(bdf, ".") || streq(bdf, ".."))
                return false;
        snprintf(path, sizeof(path), "%s/sys/kernel/iommu_groups/%d/devices/%s", root, group, bdf);
        return REAL(lstat)(path, &st) == 0;
}

static int group_ioctl(Obj *o, unsigned long req, void *arg) {
        switch (req) {
        case VFIO_GROUP_GET_STATUS: {
                struct vfio_group_status s;

                if (!arg)
                        return fail(EFAULT);
                memcpy(&s, arg, sizeof(s));
                if (s.argsz < sizeof(s))
                        return fail(EINVAL);
                s.flags = (group_viable(o->group) ? VFIO_GROUP_FLAGS_VIABLE : 0) |
                          (o->container ? VFIO_GROUP_FLAGS_CONTAINER_SET : 0);
                memcpy(arg, &s, sizeof(s));
                return 0;
        }
        case VFIO_GROUP_SET_CONTAINER: {
                Obj *c;
                int cfd;

                if (!arg)
                        return fail(EFAULT);
                memcpy(&cfd, arg, sizeof(cfd));         /* a pointer to an int */
                c = obj_of_fd_kind(cfd, OBJ_CONTAINER);
                if (!c)
                        return fail(EINVAL);
                if (o->container)
                        return fail(EINVAL);
                o->container = c;
                c->n_groups++;
                mlog("set-container group=%d container=%u", o->group, c->id);
                return 0;
        }
        case VFIO_GROUP_UNSET_CONTAINER:
                if (!o->container)
                        return fail(EINVAL);
                o->container->n_groups--;
                o->container = NULL;
                return 0;
        case VFIO_GROUP_GET_DEVICE_FD: {
                char name[64];
                Obj *d;
                int fd;

                if (!arg)
                        return fail(EFAULT);
                snprintf(name, sizeof(name), "%s", (const char *) arg);
                if (!o->container || !o->container->iommu_set)
                        return fail(EINVAL);
                if (!group_has_device(o->group, name)) {
                        mlog("get-device-fd-refused group=%d name=%s errno=ENODEV", o->group, name);
                        return fail(ENODEV);
                }
                fd = obj_new(OBJ_DEVICE, name, 0, O_CLOEXEC, &d);
                if (fd < 0)
                        return fail(-fd);
                d->pci = pci_get(name);
                if (!d->pci) {
                        REAL(close)(fd);
                        return fail(ENOMEM);
                }
                d->via_group = o;
                d->group = o->group;
                d->access_granted = true;
                pci_set_command(d->pci, pci_command(d->pci) | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY);
                mlog("get-device-fd group=%d dev=%s obj=%u", o->group, name, d->id);
                obj_save(d);
                return fd;
        }
        default:
                mlog("unhandled-ioctl kind=group req=0x%lx", req);
                return fail(ENOTTY);
        }
}

static int device_bind(Obj *o, void *arg) {
        struct m_bind b = {};
        uint32_t argsz;
        Obj *ictx;

        if (!arg)
                return fail(EFAULT);
        memcpy(&argsz, arg, sizeof(argsz));
        if (argsz < 16)
                return fail(EINVAL);
        memcpy(&b, arg, argsz < sizeof(b) ? argsz : sizeof(b));
        for (size_t i = sizeof(b); i < argsz; i++)
                if (((const uint8_t *) arg)[i] != 0)
                        return fail(E2BIG);
        if (b.flags != 0 || b.iommufd < 0 || (argsz >= 24 && b.token_uuid_ptr != 0))
                return fail(EINVAL);
        if (!o->cdev)
                return fail(EINVAL);            /* BIND_IOMMUFD only on cdev fds */
        if (o->pci->group >= 0 && group_is_open(o->pci->group)) {
                mlog("bind-refused dev=%s obj=%u errno=EBUSY reason=group-open", o->pci->bdf, o->id);
                return fail(EBUSY);
        }
        if (o->access_granted) {
                mlog("bind-refused dev=%s obj=%u errno=EINVAL reason=bound-twice", o->pci->bdf, o->id);
                return fail(EINVAL);
        }
        /* vfio_df_open(): "Only the group path allows the device to be opened multiple times" */
        if (device_open_count(o->pci, o) > 0) {
                mlog("bind-refused dev=%s obj=%u errno=EINVAL reason=still-bound-elsewhere",
                     o->pci->bdf, o->id);
                return fail(EINVAL);
        }
        ictx = obj_of_fd(b.iommufd);
        if (!ictx)
                return fail(fcntl(b.iommufd, F_GETFD) < 0 ? EBADF : EBADFD);
        if (ictx->kind != OBJ_IOMMUFD)
                return fail(EBADFD);

        o->ictx = ictx;
        o->devid = ictx->next_id++;
        o->access_granted = true;
        b.out_devid = o->devid;
        memcpy((uint8_t *) arg + offsetof(struct m_bind, out_devid), &b.out_devid, sizeof(b.out_devid));
        mlog("bind dev=%s obj=%u iommufd=%u devid=%u", o->pci->bdf, o->id, ictx->id, o->devid);
        return 0;
}

static int device_attach(Obj *o, void *arg) {
        struct m_attach a = {};
        uint32_t argsz;

        if (!arg)
                return fail(EFAULT);
        memcpy(&argsz, arg, sizeof(argsz));
        if (argsz < 12)
                return fail(EINVAL);
        memcpy(&a, arg, argsz < sizeof(a) ? argsz : sizeof(a));
        if (a.flags != 0 || !o->cdev || !o->ictx)
                return fail(EINVAL);
        if (ioas_find(o->ictx, a.pt_id)) {
                /* By IOAS id: a new automatic HWPT (a software page table for noiommu), whose
                 * id is written back. Attaching an attached device replaces its domain
                 * (iommufd_device_replace()); an automatic HWPT it leaves dies with it. */
                uint32_t old = o->attached_ioas ? o->hwpt : 0;

                o->attached_ioas = a.pt_id;
                o->hwpt = o->ictx->next_id++;
                o->hwpt_auto = true;
                memcpy((uint8_t *) arg + offsetof(struct m_attach, pt_id), &o->hwpt, sizeof(o->hwpt));
                mlog("attach dev=%s obj=%u ioas=%u hwpt=%u auto=1 replaced=%u", o->pci->bdf, o->id,
                     o->attached_ioas, o->hwpt, old);
        } else if (hwpt_find(o->ictx, a.pt_id)) {
                /* An explicit HWPT: pt_id stays as it is. */
                uint32_t old = o->attached_ioas ? o->hwpt : 0;
                Hwpt *h = hwpt_find(o->ictx, a.pt_id);

                o->attached_ioas = h->ioas_id;
                o->hwpt = h->id;
                o->hwpt_auto = false;
                mlog("attach dev=%s obj=%u ioas=%u hwpt=%u auto=0 replaced=%u", o->pci->bdf, o->id,
                     o->attached_ioas, o->hwpt, old);
        } else {
                mlog("attach-refused dev=%s pt_id=%u errno=ENOENT", o->pci->bdf, a.pt_id);
                return fail(ENOENT);
        }
        ictx_sync_pins(o->ictx);
        return 0;
}

static int device_detach(Obj *o, void *arg) {
        struct m_detach d = {};
        uint32_t argsz;

        if (!arg)
                return fail(EFAULT);
        memcpy(&argsz, arg, sizeof(argsz));
        if (argsz < 8)
                return fail(EINVAL);
        memcpy(&d, arg, argsz < sizeof(d) ? argsz : sizeof(d));
        if (d.flags != 0 || !o->cdev)
                return fail(EINVAL);
        if (!o->attached_ioas) {
                /* vfio_iommufd_physical_detach_ioas(): nothing attached, nothing to do */
                mlog("detach dev=%s obj=%u ioas=0 hwpt=0 attached=0", o->pci->bdf, o->id);
                return 0;
        }
        /* An automatic HWPT is destroyed with the attachment, which unpins every mapping of its
         * IOAS unless another HWPT sits there; an explicit one stays until DESTROY. */
        mlog("detach dev=%s obj=%u ioas=%u hwpt=%u auto=%d", o->pci->bdf, o->id, o->attached_ioas,
             o->hwpt, o->hwpt_auto);
        o->attached_ioas = 0;
        o->hwpt = 0;
        o->hwpt_auto = false;
        if (o->ictx)
                ictx_sync_pins(o->ictx);
        return 0;
}

static int device_ioctl(Obj *o, unsigned long req, void *arg) {
        if (req == VFIO_DEVICE_BIND_IOMMUFD)
                return device_bind(o, arg);

        /* The access_granted gate of vfio_main.c: nothing else before BIND. */
        if (!o->access_granted)
                return fail(EINVAL);

        switch (req) {
        case VFIO_DEVICE_GET_INFO: {
                struct m_device_info i = {};
                uint32_t argsz;

                if (!arg)
                        return fail(EFAULT);
                memcpy(&argsz, arg, sizeof(argsz));
                if (argsz < 16)
                        return fail(EINVAL);
                i.argsz = argsz;
                i.flags = VFIO_DEVICE_FLAGS_PCI |
                          (fault("NOIOMMU_MOCK_NO_RESET", "no-reset", o->pci->bdf) ? 0 : VFIO_DEVICE_FLAGS_RESET);
                i.num_regions = VFIO_PCI_NUM_REGIONS;
                i.num_irqs = VFIO_PCI_NUM_IRQS;
                memcpy(arg, &i, argsz >= 20 ? 20 : 16);
                return 0;
        }
        case VFIO_DEVICE_GET_REGION_INFO: {
                struct vfio_region_info r;

                if (!arg)
                        return fail(EFAULT);
                memcpy(&r, arg, sizeof(r));
                if (r.argsz < sizeof(r) || r.index >= VFIO_PCI_NUM_REGIONS)
                        return fail(EINVAL);
                r.cap_offset = 0;
                r.offset = (uint64_t) r.index << M_PCI_OFFSET_SHIFT;
                if (r.index == VFIO_PCI_CONFIG_REGION_INDEX) {
                        r.size = M_PCI_CONFIG_SIZE;
                        r.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
                } else if (r.index == 0) {
                        r.size = 4096;
                        r.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
                } else {
                        r.size = 0;
                        r.flags = 0;
                }
                memcpy(arg, &r, sizeof(r));
                return 0;
        }
        case VFIO_DEVICE_GET_IRQ_INFO: {
                struct vfio_irq_info q;

                if (!arg)
                        return fail(EFAULT);
                memcpy(&q, arg, sizeof(q));
                if (q.argsz < sizeof(q) || q.index >= VFIO_PCI_NUM_IRQS)
                        return fail(EINVAL);
                q.flags = 1;                    /* EVENTFD */
                q.count = q.index <= 2 ? 1 : 0;
                memcpy(arg, &q, sizeof(q));
                return 0;
        }
        case VFIO_DEVICE_RESET:
                if (fault("NOIOMMU_MOCK_NO_RESET", "no-reset", o->pci->bdf)) {
                        mlog("reset-unsupported dev=%s obj=%u", o->pci->bdf, o->id);
                        return fail(EINVAL);            /* !vdev->reset_works */
                }
                if (fault("NOIOMMU_MOCK_RESET_FAIL", "reset-fail", o->pci->bdf)) {
                        mlog("reset-failed dev=%s obj=%u", o->pci->bdf, o->id);
                        return fail(EIO);
                }
                /* A function reset returns the command register to 0: no bus mastering. */
                pci_set_command(o->pci, 0);
                mlog("reset dev=%s obj=%u", o->pci->bdf, o->id);
                return 0;
        case VFIO_DEVICE_ATTACH_IOMMUFD_PT:
                return device_attach(o, arg);
        case VFIO_DEVICE_DETACH_IOMMUFD_PT:
                return device_detach(o, arg);
        default:
                mlog("unhandled-ioctl kind=device dev=%s req=0x%lx", o->pci->bdf, req);
                return fail(ENOTTY);
        }
}

/* ---- iommufd ---- */

/* The IOVA ranges of an IOAS with a domain. A noiommu (software) page table has no reserved
 * regions, so no MSI hole: the whole 64-bit space (linux-7.3.md). A real IOMMU's: a 48-bit
 * space without the x86 MSI window. NOIOMMU_MOCK_IOVA_RANGES overrides both. */
static int parse_ranges(struct iommu_iova_range *r, size_t max, bool noiommu) {
        const char *v = getenv("NOIOMMU_MOCK_IOVA_RANGES");
        char buf[1024], *save = NULL;
        size_t n = 0;

        if (!v || !*v)
                v = noiommu ? "0x0-0xffffffffffffffff" : "0x0-0xfedfffff,0xfef00000-0xffffffffffff";
        snprintf(buf, sizeof(buf), "%s", v);
        for (char *w = strtok_r(buf, ", \t\n", &save); w && n < max; w = strtok_r(NULL, ", \t\n", &save)) {
                char *dash = strchr(w + 1, '-');

                if (!dash)
                        continue;
                *dash = 0;
                r[n].start = strtoull(w, NULL, 0);
                r[n].last = strtoull(dash + 1, NULL, 0);
                n++;
        }
        return (int) n;
}

static bool iova_allowed(Obj *ictx, uint32_t ioas_id, uint64_t iova, uint64_t length) {
        struct iommu_iova_range r[16];
        bool noiommu = false;
        int n;

        if (!ioas_domain(ictx, ioas_id, &noiommu))
                return true;            /* no domain yet: the whole space */
        n = parse_ranges(r, 16, noiommu);
        for (int i = 0; i < n; i++)
                if (iova >= r[i].start && iova <= r[i].last && length - 1 <= r[i].last - iova)
                        return true;
        return false;
}

static int ioas_map(Obj *ictx, void *arg) {
        struct iommu_ioas_map m;
        unsigned char *vec;
        Ioas *ioas;
        size_t pages;
        int e;

        e = iommufd_check_size(arg, sizeof(m), sizeof(m));
        if (e)
                return fail(e);
        memcpy(&m, arg, sizeof(m));
        if (m.flags & ~(IOMMU_IOAS_MAP_FIXED_IOVA | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE) ||
            m.__reserved)
                return fail(EOPNOTSUPP);
        if (!(m.flags & (IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_READABLE)) || m.length == 0)
                return fail(EINVAL);
        ioas = ioas_find(ictx, m.ioas_id);
        if (!ioas)
                return fail(ENOENT);
        ioas_sync_pins(ictx, ioas);
        if (!(m.flags & IOMMU_IOAS_MAP_FIXED_IOVA)) {
                /* The kernel would pick an IOVA; noiommud must always choose it itself. */
                mlog("violation what=ioas-map-without-fixed-iova ioas=%u", m.ioas_id);
                return fail(EINVAL);
        }
        if (m.iova % 4096 || m.length % 4096 || m.user_va % 4096 || m.iova + m.length - 1 < m.iova)
                return fail(EINVAL);
        if (!iova_allowed(ictx, m.ioas_id, m.iova, m.length)) {
                mlog("ioas-map-refused ioas=%u iova=0x%" PRIx64 " length=0x%" PRIx64 " errno=EINVAL reason=outside-allowed-ranges",
                     m.ioas_id, (uint64_t) m.iova, (uint64_t) m.length);
                return fail(EINVAL);
        }
        for (size_t i = 0; i < ioas->n_areas; i++) {
                const Area *a = &ioas->areas[i];

                if (m.iova <= a->iova + a->length - 1 && a->iova <= m.iova + m.length - 1)
                        return fail(EEXIST);
        }
        if (ioas->n_areas >= MAPS_MAX)
                return fail(ENOSPC);

        /* pin_user_pages() needs the range mapped in the caller. */
        pages = (size_t) (m.length / 4096);
        vec = malloc(pages);
        if (!vec)
                return fail(ENOMEM);
        if (mincore((void *) (uintptr_t) m.user_va, (size_t) m.length, vec) < 0) {
                free(vec);
                mlog("ioas-map-refused ioas=%u user_va=0x%" PRIx64 " errno=EFAULT", m.ioas_id, (uint64_t) m.user_va);
                return fail(EFAULT);
        }
        free(vec);

        ioas->areas[ioas->n_areas] = (Area) { .iova = m.iova, .length = m.length, .user_va = m.user_va,
                                              .owner_pid = getpid() };
        /* Pinned now if a HWPT sits in the IOAS (iopt_area_fill_domains()), else at the next
         * attach or HWPT_ALLOC. */
        if (ioas_domain(ictx, m.ioas_id, NULL) && area_pin(&ioas->areas[ioas->n_areas]) < 0)
                return fail(EFAULT);
        ioas->n_areas++;
        mlog("ioas-map iommufd=%u ioas=%u iova=0x%" PRIx64 " length=0x%" PRIx64 " user_va=0x%" PRIx64 " pinned=%d",
             ictx->id, m.ioas_id, (uint64_t) m.iova, (uint64_t) m.length, (uint64_t) m.user_va,
             ioas->areas[ioas->n_areas - 1].pinned);
        return 0;
}

static int ioas_unmap(Obj *ictx, void *arg) {
        struct iommu_ioas_unmap u;
        uint64_t done = 0, last;
        Ioas *ioas;
        int e;

        e = iommufd_check_size(arg, sizeof(u), sizeof(u));
        if (e)
                return fail(e);
        memcpy(&u, arg, sizeof(u));
        ioas = ioas_find(ictx, u.ioas_id);
        if (!ioas)
                return fail(ENOENT);
        ioas_sync_pins(ictx, ioas);
        if (u.length == 0)
                return fail(EINVAL);
        last = u.iova == 0 && u.length == UINT64_MAX ? UINT64_MAX : u.iova + u.length - 1;
        if (last < u.iova)
                return fail(EOVERFLOW);

        /* Areas must be covered whole. */
        for (size_t i = 0; i < ioas->n_areas; i++) {
                const Area *a = &ioas->areas[i];
                uint64_t alast = a->iova + a->length - 1;

                if (alast < u.iova || a->iova > last)
                        continue;
                if (a->iova < u.iova || alast > last)
                        return fail(EINVAL);
        }
        for (size_t i = 0; i < ioas->n_areas;) {
                const Area *a = &ioas->areas[i];

                if (a->iova >= u.iova && a->iova + a->length - 1 <= last) {
                        done += a->length;
                        ioas->areas[i] = ioas->areas[--ioas->n_areas];
                } else
                        i++;
        }
        if (done == 0) {
                mlog("ioas-unmap-refused ioas=%u iova=0x%" PRIx64 " length=0x%" PRIx64 " errno=ENOENT",
                     u.ioas_id, (uint64_t) u.iova, (uint64_t) u.length);
                return fail(ENOENT);
        }
        u.length = done;
        memcpy(arg, &u, sizeof(u));
        mlog("ioas-unmap iommufd=%u ioas=%u iova=0x%" PRIx64 " unmapped=0x%" PRIx64, ictx->id, u.ioas_id, (uint64_t) u.iova, done);
        return 0;
}

/* Physical address of iova + off within a pinned area, and how far it is contiguous. */
static int area_phys(const Area *a, uint64_t off, uint64_t *ret_pa, uint64_t *ret_run) {
        if (!a->runs_overflow) {
                for (size_t i = 0; i < a->n_runs; i++)
                        if (off >= a->runs[i].off && off - a->runs[i].off < a->runs[i].len) {
                                *ret_pa = a->runs[i].phys + (off - a->runs[i].off);
                                *ret_run = a->runs[i].len - (off - a->runs[i].off);
                                return 0;
                        }
                return -ENXIO;
        }
        /* Too fragmented to record: the mapping process's pagemap, page by page. */
        {
                uint64_t pa, run, next;

                if (virt_to_phys_pid(a->owner_pid, a->user_va + off, &pa) < 0)
                        return -EFAULT;
                run = 4096 - off % 4096;
                while (off + run < a->length &&
                       virt_to_phys_pid(a->owner_pid, a->user_va + off + run, &next) >= 0 && next == pa + run)
                        run += 4096;
                *ret_pa = pa;
                *ret_run = run;
                return 0;
        }
}

/* IOMMU_IOAS_NOIOMMU_GET_PA, errors in the order 7.3 checks them (linux-7.3.md table). */
static int ioas_get_pa(Obj *ictx, void *arg) {
        struct iommu_ioas_noiommu_get_pa q;
        const Area *area = NULL;
        uint64_t pa, run;
        bool noiommu = false;
        Ioas *ioas;
        Obj *dev;
        int e;

        dev = NULL;
        if (arg) {
                memcpy(&q, arg, sizeof(q.size) + sizeof(q.flags) + sizeof(q.ioas_id));
                ioas = ioas_find(ictx, q.ioas_id);
                if (ioas)
                        dev = ioas_attached_device(ictx, q.ioas_id);
        }
        if (fault("NOIOMMU_MOCK_NO_GET_PA", "no-get-pa", dev && dev->pci ? dev->pci->bdf : NULL)) {
                mlog("get-pa-absent errno=ENOTTY");
                return fail(ENOTTY);            /* a kernel before 7.3 */
        }

        e = iommufd_check_size(arg, sizeof(q), sizeof(q));
        if (e)
                return fail(e);
        memcpy(&q, arg, sizeof(q));
        if (fault("NOIOMMU_MOCK_GET_PA_STUB", "get-pa-stub", dev && dev->pci ? dev->pci->bdf : NULL)) {
                mlog("get-pa-stub errno=EOPNOTSUPP");
                return fail(EOPNOTSUPP);        /* 7.3 with IOMMUFD but without IOMMUFD_NOIOMMU */
        }
        if (q.flags != 0 || q.__reserved != 0)
                return fail(EOPNOTSUPP);
        if (q.length == 0)
                return fail(EINVAL);
        if (q.iova >= ULONG_MAX)
                return fail(EOVERFLOW);
        ioas = ioas_find(ictx, q.ioas_id);
        if (!ioas)
                return fail(ENOENT);
        ioas_sync_pins(ictx, ioas);
        for (size_t i = 0; i < ioas->n_areas; i++)
                if (q.iova >= ioas->areas[i].iova && q.iova - ioas->areas[i].iova < ioas->areas[i].length)
                        area = &ioas->areas[i];
        if (!area) {
                mlog("get-pa-refused ioas=%u iova=0x%" PRIx64 " errno=ENOENT", q.ioas_id, (uint64_t) q.iova);
                return fail(ENOENT);
        }
        if (!ioas_domain(ictx, q.ioas_id, &noiommu)) {
                /* Detached: no page table behind the area any more. */
                mlog("get-pa-refused ioas=%u iova=0x%" PRIx64 " errno=EOPNOTSUPP reason=no-hwpt", q.ioas_id, (uint64_t) q.iova);
                return fail(EOPNOTSUPP);
        }
        if (!noiommu) {
                mlog("violation what=get-pa-on-iommu-device dev=%s", dev && dev->pci ? dev->pci->bdf : "?");
                return fail(EOPNOTSUPP);        /* the IOAS is backed by a real IOMMU */
        }
        if (!area->pinned || area_phys(area, q.iova - area->iova, &pa, &run) < 0)
                return fail(EFAULT);

        /* Addresses that moved since a previous daemon process got them (a fault for the
         * quarantine-on-restore path): a pin taken by another process reports other pages. */
        if (area->pin_pid != getpid() &&
            fault("NOIOMMU_MOCK_MOVED_PA", "moved-pa", dev && dev->pci ? dev->pci->bdf : NULL)) {
                pa += MOVED_PA_SHIFT;
                mlog("get-pa-moved ioas=%u iova=0x%" PRIx64, q.ioas_id, (uint64_t) q.iova);
        }

        /* The physically contiguous run from iova, within the area, capped by the input. */
        if (run > q.length)
                run = q.length;

        q.out_phys = pa;
        q.length = run;
        memcpy(arg, &q, sizeof(q));
        mlog("get-pa ioas=%u iova=0x%" PRIx64 " phys=0x%" PRIx64 " length=0x%" PRIx64,
             q.ioas_id, (uint64_t) q.iova, pa, run);
        return 0;
}

/* IOMMU_HWPT_ALLOC. For a noiommu device only flags 0 with no driver data on an IOAS (7.3:
 * anything else EOPNOTSUPP). The mock models only that form for real IOMMUs too. */
static int hwpt_alloc(Obj *ictx, void *arg) {
        struct m_hwpt_alloc h = {};
        uint32_t size;
        Obj *dev = NULL;
        bool noiommu;
        int e;

        e = iommufd_check_size(arg, 24, sizeof(h));
        if (e)
                return fail(e);
        memcpy(&size, arg, sizeof(size));
        memcpy(&h, arg, size < sizeof(h) ? size : sizeof(h));
        for (Obj *o = objs; o; o = o->next)
                if (o->kind == OBJ_DEVICE && o->ictx == ictx && o->access_granted && o->devid == h.dev_id &&
                    obj_alive(o))
                        dev = o;
        if (!dev) {
                mlog("hwpt-alloc-refused iommufd=%u dev_id=%u errno=ENOENT", ictx->id, h.dev_id);
                return fail(ENOENT);
        }
        noiommu = dev->pci && dev->pci->noiommu_cdev;
        if (h.flags != 0 || h.data_type != 0 || h.data_len != 0 || h.data_uptr != 0 || h.fault_id != 0) {
                mlog("hwpt-alloc-refused iommufd=%u dev=%s flags=0x%x data_type=%u errno=EOPNOTSUPP", ictx->id,
                     dev->pci->bdf, h.flags, h.data_type);
                return fail(EOPNOTSUPP);
        }
        if (!ioas_find(ictx, h.pt_id)) {
                e = hwpt_find(ictx, h.pt_id) ? EOPNOTSUPP : ENOENT;     /* nested: never for noiommu */
                mlog("hwpt-alloc-refused iommufd=%u dev=%s pt_id=%u errno=%s", ictx->id, dev->pci->bdf, h.pt_id,
                     e == ENOENT ? "ENOENT" : "EOPNOTSUPP");
                return fail(e);
        }
        if (ictx->n_hwpts >= HWPT_MAX)
                return fail(ENOSPC);
        h.out_hwpt_id = ictx->next_id++;
        ictx->hwpts[ictx->n_hwpts++] = (Hwpt) { .id = h.out_hwpt_id, .ioas_id = h.pt_id, .noiommu = noiommu };
        memcpy((uint8_t *) arg + offsetof(struct m_hwpt_alloc, out_hwpt_id), &h.out_hwpt_id, sizeof(h.out_hwpt_id));
        mlog("hwpt-alloc iommufd=%u ioas=%u hwpt=%u dev=%s noiommu=%d", ictx->id, h.pt_id, h.out_hwpt_id,
             dev->pci->bdf, noiommu);
        /* A HWPT in the IOAS pins its mappings at once, with or without a device attached. */
        ictx_sync_pins(ictx);
        return 0;
}

static int iommufd_ioctl(Obj *o, unsigned long req, void *arg) {
        int e;

        switch (req) {
        case IOMMU_IOAS_ALLOC: {
                struct iommu_ioas_alloc a;

                e = iommufd_check_size(arg, sizeof(a), sizeof(a));
                if (e)
                        return fail(e);
                memcpy(&a, arg, sizeof(a));
                if (a.flags != 0)
                        return fail(EOPNOTSUPP);
                if (o->n_ioas >= IOAS_MAX)
                        return fail(ENOSPC);
                a.out_ioas_id = o->next_id++;
                o->ioas[o->n_ioas++] = (Ioas) { .id = a.out_ioas_id };
                memcpy(arg, &a, sizeof(a));
                mlog("ioas-alloc iommufd=%u ioas=%u", o->id, a.out_ioas_id);
                return 0;
        }
        case IOMMU_DESTROY: {
                struct iommu_destroy d;
                Ioas *ioas;
                Hwpt *h;

                e = iommufd_check_size(arg, sizeof(d), sizeof(d));
                if (e)
                        return fail(e);
                memcpy(&d, arg, sizeof(d));
                h = hwpt_find(o, d.id);
                if (h) {
                        /* An explicit HWPT: EBUSY while a device is attached to it. */
                        for (Obj *x = objs; x; x = x->next)
                                if (x->kind == OBJ_DEVICE && x->ictx == o && obj_alive(x)) {
                                        obj_refresh(x);
                                        if (x->access_granted && x->attached_ioas && !x->hwpt_auto && x->hwpt == d.id) {
                                                mlog("destroy-refused iommufd=%u id=%u kind=hwpt errno=EBUSY", o->id, d.id);
                                                return fail(EBUSY);
                                        }
                                }
                        h->destroyed = true;
                        mlog("destroy iommufd=%u id=%u kind=hwpt ioas=%u", o->id, d.id, h->ioas_id);
                        ioas = ioas_find(o, h->ioas_id);
                        if (ioas)
                                ioas_sync_pins(o, ioas);
                        return 0;
                }
                ioas = ioas_find(o, d.id);
                if (!ioas) {
                        mlog("destroy-refused iommufd=%u id=%u errno=ENOENT", o->id, d.id);
                        return fail(ENOENT);
                }
                /* A HWPT holds its IOAS: attached devices and explicit HWPTs first. */
                if (ioas_domain(o, d.id, NULL) || ioas_attached_device(o, d.id)) {
                        mlog("destroy-refused iommufd=%u id=%u kind=ioas errno=EBUSY", o->id, d.id);
                        return fail(EBUSY);
                }
                ioas->destroyed = true;
                mlog("destroy iommufd=%u id=%u kind=ioas areas=%u", o->id, d.id, ioas->n_areas);
                return 0;
        }
        case IOMMU_IOAS_IOVA_RANGES: {
                struct iommu_ioas_iova_ranges q;
                struct iommu_iova_range r[16];
                bool noiommu = false;
                int n;

                e = iommufd_check_size(arg, sizeof(q), sizeof(q));
                if (e)
                        return fail(e);
                memcpy(&q, arg, sizeof(q));
                if (q.__reserved)
                        return fail(EOPNOTSUPP);
                if (!ioas_find(o, q.ioas_id))
                        return fail(ENOENT);
                if (ioas_domain(o, q.ioas_id, &noiommu))
                        n = parse_ranges(r, 16, noiommu);
                else {
                        r[0] = (struct iommu_iova_range) { .start = 0, .last = UINT64_MAX };
                        n = 1;
                }
                for (int i = 0; i < n && (uint32_t) i < q.num_iovas; i++)
                        memcpy((uint8_t *) (uintptr_t) q.allowed_iovas + (size_t) i * sizeof(r[0]), &r[i], sizeof(r[0]));
                e = q.num_iovas < (uint32_t) n ? EMSGSIZE : 0;
                q.num_iovas = (uint32_t) n;
                q.out_iova_alignment = 4096;
                memcpy(arg, &q, sizeof(q));
                mlog("iova-ranges iommufd=%u ioas=%u n=%d%s", o->id, q.ioas_id, n, e ? " errno=EMSGSIZE" : "");
                return e ? fail(e) : 0;
        }
        case IOMMU_IOAS_MAP:
                return ioas_map(o, arg);
        case IOMMU_IOAS_UNMAP:
                return ioas_unmap(o, arg);
        case IOMMU_IOAS_NOIOMMU_GET_PA:
                return ioas_get_pa(o, arg);
        case IOMMU_HWPT_ALLOC:
                return hwpt_alloc(o, arg);
        default:
                /* hw info, viommu, dirty tracking, ...: never with noiommu, and not needed by
                 * noiommud at all (kernel-api.md §10, hazard 1). */
                mlog("violation what=unexpected-iommufd-ioctl req=0x%lx", req);
                return fail(ENOTTY);
        }
}

static int obj_ioctl(Obj *o, unsigned long req, void *arg) {
        switch (o->kind) {
        case OBJ_CONTAINER:
                return container_ioctl(o, req, arg);
        case OBJ_GROUP:
                return group_ioctl(o, req, arg);
        case OBJ_DEVICE:
                return device_ioctl(o, req, arg);
        case OBJ_IOMMUFD:
                return iommufd_ioctl(o, req, arg);
        case OBJ_OTHER:
        default:
                return fail(ENOTTY);
        }
}

/* ---- Config space ---- */

static ssize_t device_rw(Obj *o, void *buf, size_t n, uint64_t off, bool write) {
        uint64_t index = off >> M_PCI_OFFSET_SHIFT, pos = off & ((UINT64_C(1) << M_PCI_OFFSET_SHIFT) - 1);
        Pci *p = o->pci;

        if (!o->access_granted) {
                errno = EINVAL;
                return -1;
        }
        if (index != VFIO_PCI_CONFIG_REGION_INDEX) {
                errno = EINVAL;
                return -1;
        }
        if (pos >= M_PCI_CONFIG_SIZE)
                return 0;
        if (n > M_PCI_CONFIG_SIZE - pos)
                n = (size_t) (M_PCI_CONFIG_SIZE - pos);

        if (!write) {
                memcpy(buf, p->config + pos, n);
                if (pos <= PCI_COMMAND + 1 && pos + n > PCI_COMMAND)
                        mlog("config-read dev=%s obj=%u reg=PCI_COMMAND value=0x%04x", p->bdf, o->id, pci_command(p));
                return (ssize_t) n;
        }

        for (size_t i = 0; i < n; i++) {
                uint64_t at = pos + i;
                uint8_t v = ((const uint8_t *) buf)[i];

                /* Only the command register is writable in this model (vfio-pci virtualizes
                 * most of the rest). */
                if (at == PCI_COMMAND || at == PCI_COMMAND + 1) {
                        uint16_t before = pci_command(p), after;

                        p->config[at] = v;
                        after = pci_command(p);
                        if ((before & PCI_COMMAND_MASTER) && !(after & PCI_COMMAND_MASTER) &&
                            fault("NOIOMMU_MOCK_BME_STUCK", "bme-stuck", p->bdf)) {
                                /* The write does not stick: a broken device, or a second holder
                                 * of the fd that turned it on again at once. */
                                pci_set_command(p, after | PCI_COMMAND_MASTER);
                                mlog("bme-stuck dev=%s obj=%u", p->bdf, o->id);
                        }
                }
        }
        if (pos <= PCI_COMMAND + 1 && pos + n > PCI_COMMAND) {
                uint16_t written = 0;

                memcpy(&written, (const uint8_t *) buf + (PCI_COMMAND > pos ? PCI_COMMAND - pos : 0),
                       n >= 2 ? 2 : 1);
                mlog("config-write dev=%s obj=%u reg=PCI_COMMAND value=0x%04x now=0x%04x", p->bdf, o->id,
                     written, pci_command(p));
                if (!(written & PCI_COMMAND_MASTER) && !(pci_command(p) & PCI_COMMAND_MASTER))
                        mlog("clear_bme dev=%s obj=%u", p->bdf, o->id);
        }
        pci_save(p);
        return (ssize_t) n;
}

/* ---- The daemon's DMA memory: memfds named "noiommud-<id>", their mappings and pins ---- */

typedef struct Mapping {
        uintptr_t addr;
        size_t len;
        char name[80];
        int ring;                       /* io_uring fd pinning it, -1 */
} Mapping;

#define MAPPINGS_MAX 1024
static Mapping mappings[MAPPINGS_MAX];
static size_t n_mappings;

/* "noiommud-<id>" if fd is one of the daemon's DMA memfds. */
static bool fd_memfd_name(int fd, char *ret, size_t size) {
        char link[64], target[PATH_MAX];
        const char *prefix = "/memfd:noiommud-";
        ssize_t n;

        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        n = REAL(readlink)(link, target, sizeof(target) - 1);
        if (n <= 0)
                return false;
        target[n] = 0;
        if (strncmp(target, prefix, strlen(prefix)) != 0)
                return false;
        snprintf(ret, size, "%s", target + strlen("/memfd:"));
        if (strchr(ret, ' '))
                *strchr(ret, ' ') = 0;          /* " (deleted)" */
        return true;
}

static bool inode_open_in_process(dev_t dev, ino_t ino) {
        struct dirent *de;
        DIR *d;
        int fd;
        bool found = false;

        fd = REAL(open)("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return false;
        d = fdopendir(fd);
        if (!d) {
                REAL(close)(fd);
                return false;
        }
        while (!found && (de = readdir(d))) {
                struct stat st;
                int n;

                if (de->d_name[0] == '.')
                        continue;
                n = atoi(de->d_name);
                if (n == dirfd(d))
                        continue;
                if (REAL(fstat)(n, &st) == 0 && st.st_dev == dev && st.st_ino == ino)
                        found = true;
        }
        closedir(d);
        return found;
}

static Mapping *mapping_by_addr(uintptr_t addr) {
        for (size_t i = 0; i < n_mappings; i++)
                if (addr >= mappings[i].addr && addr - mappings[i].addr < mappings[i].len)
                        return &mappings[i];
        return NULL;
}

/* ---- Interposed functions on fds ---- */

/* fstat() of a fake fd: a character device with the node's rdev. */
static void fake_stat(int fd, dev_t *ret_rdev, bool *ret_fake) {
        Obj *o;

        *ret_fake = false;
        if (!is_active())
                return;
        pthread_mutex_lock(&lock);
        o = obj_of_fd(fd);
        if (o) {
                *ret_fake = true;
                *ret_rdev = o->rdev;
        }
        pthread_mutex_unlock(&lock);
}

int fstat(int fd, struct stat *st) {
        dev_t rdev = 0;
        bool fake;
        int r;

        r = REAL(fstat)(fd, st);
        if (r < 0)
                return r;
        fake_stat(fd, &rdev, &fake);
        if (fake) {
                st->st_mode = S_IFCHR | (st->st_mode & 07777);
                st->st_rdev = rdev;
                st->st_size = 0;
                st->st_blocks = 0;
        }
        return r;
}

int fstat64(int fd, struct stat64 *st) {
        dev_t rdev = 0;
        bool fake;
        int r;

        r = REAL(fstat64)(fd, st);
        if (r < 0)
                return r;
        fake_stat(fd, &rdev, &fake);
        if (fake) {
                st->st_mode = S_IFCHR | (st->st_mode & 07777);
                st->st_rdev = rdev;
                st->st_size = 0;
                st->st_blocks = 0;
        }
        return r;
}

int ioctl(int fd, unsigned long req, ...) {
        va_list ap;
        void *arg;
        Obj *o;
        int r, e;

        va_start(ap, req);
        arg = va_arg(ap, void *);
        va_end(ap);

        if (!is_active())
                return REAL(ioctl)(fd, req, arg);

        pthread_mutex_lock(&lock);
        o = obj_of_fd(fd);
        if (!o) {
                pthread_mutex_unlock(&lock);
                return REAL(ioctl)(fd, req, arg);
        }
        r = obj_ioctl(o, req, arg);
        e = errno;
        obj_save_related(o);
        pthread_mutex_unlock(&lock);
        errno = e;
        return r;
}

static ssize_t do_prw(int fd, void *buf, size_t n, uint64_t off, bool write, bool *handled) {
        ssize_t r;
        Obj *o;
        int e;

        *handled = false;
        if (!is_active())
                return 0;
        pthread_mutex_lock(&lock);
        o = obj_of_fd_kind(fd, OBJ_DEVICE);
        if (!o) {
                pthread_mutex_unlock(&lock);
                return 0;
        }
        *handled = true;
        r = device_rw(o, buf, n, off, write);
        e = errno;
        pthread_mutex_unlock(&lock);
        errno = e;
        return r;
}

ssize_t pread(int fd, void *buf, size_t n, off_t off) {
        bool handled;
        ssize_t r = do_prw(fd, buf, n, (uint64_t) off, false, &handled);

        return handled ? r : REAL(pread)(fd, buf, n, off);
}

ssize_t pread64(int fd, void *buf, size_t n, off64_t off) {
        bool handled;
        ssize_t r = do_prw(fd, buf, n, (uint64_t) off, false, &handled);

        return handled ? r : REAL(pread64)(fd, buf, n, off);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
        bool handled;
        ssize_t r = do_prw(fd, (void *) buf, n, (uint64_t) off, true, &handled);

        return handled ? r : REAL(pwrite)(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
        bool handled;
        ssize_t r = do_prw(fd, (void *) buf, n, (uint64_t) off, true, &handled);

        return handled ? r : REAL(pwrite64)(fd, buf, n, off);
}

int close(int fd) {
        char memfd[80];
        struct stat st;
        bool is_memfd;
        Obj *o;
        int r, e;

        if (!is_active() || fd < 0)
                return REAL(close)(fd);

        pthread_mutex_lock(&lock);
        o = obj_of_fd(fd);
        is_memfd = !o && fd_memfd_name(fd, memfd, sizeof(memfd)) && REAL(fstat)(fd, &st) == 0;
        r = REAL(close)(fd);
        e = errno;
        if (r == 0 && o) {
                bool alive = obj_alive(o);

                switch (o->kind) {
                case OBJ_DEVICE:
                        /* still-open=1: another fd (this process's or the client's) still
                         * refers to the same open file. */
                        mlog("close-device dev=%s obj=%u still-open=%d", o->pci ? o->pci->bdf : "?",
                             o->id, alive);
                        break;
                case OBJ_GROUP:
                        mlog("close-group group=%d obj=%u still-open=%d", o->group, o->id, alive);
                        break;
                case OBJ_CONTAINER:
                        mlog("close-container obj=%u still-open=%d", o->id, alive);
                        break;
                case OBJ_IOMMUFD:
                        mlog("close-iommufd obj=%u still-open=%d", o->id, alive);
                        break;
                case OBJ_OTHER:
                default:
                        mlog("close-other obj=%u", o->id);
                        break;
                }
                if (!alive)
                        obj_collect();
        } else if (r == 0 && is_memfd)
                /* last=1: no other fd of this process refers to that memfd any more */
                mlog("close-memfd name=%s last=%d", memfd, !inode_open_in_process(st.st_dev, st.st_ino));
        pthread_mutex_unlock(&lock);
        errno = e;
        return r;
}

static void note_mmap(void *p, size_t len, int fd) {
        char name[80];

        if (p == MAP_FAILED || fd < 0 || !is_active())
                return;
        pthread_mutex_lock(&lock);
        if (fd_memfd_name(fd, name, sizeof(name)) && n_mappings < MAPPINGS_MAX) {
                mappings[n_mappings] = (Mapping) { .addr = (uintptr_t) p, .len = len, .ring = -1 };
                snprintf(mappings[n_mappings].name, sizeof(mappings[n_mappings].name), "%s", name);
                n_mappings++;
                mlog("mmap name=%s addr=%p len=0x%zx", name, p, len);
        }
        pthread_mutex_unlock(&lock);
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off) {
        void *p = REAL(mmap)(addr, len, prot, flags, fd, off);
        int e = errno;

        note_mmap(p, len, fd);
        errno = e;
        return p;
}

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off) {
        void *p = REAL(mmap64)(addr, len, prot, flags, fd, off);
        int e = errno;

        note_mmap(p, len, fd);
        errno = e;
        return p;
}

int munmap(void *addr, size_t len) {
        int r, e;

        if (!is_active())
                return REAL(munmap)(addr, len);

        pthread_mutex_lock(&lock);
        r = REAL(munmap)(addr, len);
        e = errno;
        if (r == 0)
                for (size_t i = 0; i < n_mappings; i++)
                        if (mappings[i].addr == (uintptr_t) addr) {
                                mlog("munmap name=%s addr=%p len=0x%zx", mappings[i].name, addr, len);
                                mappings[i] = mappings[--n_mappings];
                                break;
                        }
        pthread_mutex_unlock(&lock);
        errno = e;
        return r;
}

void note_io_uring_register(long fd, long op, long arg, long n) {
        pthread_mutex_lock(&lock);
        if (op == M_IORING_REGISTER_BUFFERS && arg && n > 0) {
                const struct iovec *iov = (const struct iovec *) arg;
                Mapping *m = mapping_by_addr((uintptr_t) iov[0].iov_base);

                if (m)
                        m->ring = (int) fd;
                mlog("pin name=%s ring=%ld n=%ld", m ? m->name : "?", fd, n);
        } else if (op == M_IORING_UNREGISTER_BUFFERS) {
                const char *name = "?";

                for (size_t i = 0; i < n_mappings; i++)
                        if (mappings[i].ring == (int) fd) {
                                name = mappings[i].name;
                                mappings[i].ring = -1;
                        }
                mlog("unpin name=%s ring=%ld", name, fd);
        }
        pthread_mutex_unlock(&lock);
}

ssize_t sendmsg(int fd, const struct msghdr *msg, int flags) {
        static const char state_push[] = "FDSTORE=1\nFDNAME=state-";

        if (is_active() && msg && msg->msg_iovlen > 0 && msg->msg_iov[0].iov_len >= strlen(state_push) &&
            strncmp(msg->msg_iov[0].iov_base, state_push, strlen(state_push)) == 0 &&
            fault("NOIOMMU_MOCK_STORE_STATE", "store-state", NULL)) {
                mlog("store-state-refused errno=EIO");
                errno = EIO;
                return -1;
        }
        if (is_active() && msg && msg->msg_controllen > 0) {
                pthread_mutex_lock(&lock);
                for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *) msg); c;
                     c = CMSG_NXTHDR((struct msghdr *) msg, c)) {
                        size_t n;

                        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                                continue;
                        n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                        for (size_t i = 0; i < n; i++) {
                                int sfd;
                                char name[80];
                                Obj *o;

                                memcpy(&sfd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                o = obj_of_fd(sfd);
                                if (o)
                                        mlog("send-fd kind=%s obj=%u%s%s", obj_kind_name[o->kind], o->id,
                                             o->pci ? " dev=" : "", o->pci ? o->pci->bdf : "");
                                else if (fd_memfd_name(sfd, name, sizeof(name)))
                                        mlog("send-fd kind=memfd name=%s", name);
                        }
                }
                pthread_mutex_unlock(&lock);
        }
        return REAL(sendmsg)(fd, msg, flags);
}
