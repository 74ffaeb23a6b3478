#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Compiles the daemon against Linux 7.3's uapi headers (Debian's linux-libc-dev 7.3 from
# trixie-backports), which define everything daemon/vfio-uapi.h otherwise defines itself
# (issue 15; linux-7.3.md "uapi"). The normal build covers the host's (Debian 12: 6.1) headers;
# this covers the other branch of every #ifndef in vfio-uapi.h, where the system header's
# definitions are used and the static_asserts check them.
#
#   check-uapi-7.3.sh [BUILD_DIR]
#
# The .deb comes from scripts/debian-backports.sh (private apt; nothing is installed) and is
# unpacked with dpkg-deb -x into a cache directory outside the checkout, never over the
# system's headers. With BUILD_DIR, every daemon/*.c is compiled (-fsyntax-only) with the
# flags of BUILD_DIR/compile_commands.json plus -isystem for the 7.3 headers; without it, with
# a fixed set of flags. A probe program also checks that the 7.3 definitions were the ones
# used (nothing defined twice, 7.3's struct sizes).
#
# Exit status: 0 all compiled; 1 a compile failed (the log says which); 77 the package could
# not be had (no network and nothing cached) — loudly, as a skip.
set -euo pipefail
cd "$(dirname "$0")/.."
src=$PWD
build=${1:-}

log() { echo "check-uapi-7.3.sh: $*" >&2; }

cache=${NOIOMMU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/noiommud}
deb=
if ! deb=$(./scripts/debian-backports.sh download linux-libc-dev); then
        # Offline: the newest linux-libc-dev 7.N already in the cache will do.
        deb=$(ls -1 "$cache"/apt-backports/debs/linux-libc-dev_7.*_all.deb 2>/dev/null | sort -V | tail -n 1 || true)
        if [ -z "$deb" ]; then
                log "SKIP: cannot download linux-libc-dev from trixie-backports and none is cached in $cache/apt-backports/debs"
                exit 77
        fi
        log "download failed; using the cached $deb"
fi
ver=$(dpkg-deb -f "$deb" Version)
case "$ver" in
7.*) ;;
*) log "FAIL: $deb is version $ver, not a 7.x linux-libc-dev"; exit 1 ;;
esac

# Unpacked once per version, atomically (a rename), so parallel runs never see half a tree.
dest=$cache/uapi/linux-libc-dev_$ver
if [ ! -f "$dest/.complete" ]; then
        mkdir -p "$cache/uapi"
        tmp=$(mktemp -d "$cache/uapi/.unpack.XXXXXX")
        dpkg-deb -x "$deb" "$tmp"
        touch "$tmp/.complete"
        rm -rf "$dest"
        mv -T "$tmp" "$dest" 2>/dev/null || rm -rf "$tmp"
fi
inc=$dest/usr/include
multiarch=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
[ -f "$inc/linux/iommufd.h" ] || { log "FAIL: $inc/linux/iommufd.h missing"; exit 1; }
grep -q 'IOMMU_IOAS_NOIOMMU_GET_PA' "$inc/linux/iommufd.h" ||
        { log "FAIL: linux-libc-dev $ver has no IOMMU_IOAS_NOIOMMU_GET_PA"; exit 1; }
ISYS=(-isystem "$inc" -isystem "$inc/$multiarch")
log "linux-libc-dev $ver from $deb, unpacked in $dest"

fail=0
checked=()

# 1. The probe: vfio-uapi.h after the 7.3 headers, and the 7.3 definitions are the ones in use.
probe=$(mktemp --suffix=.c)
trap 'rm -f "$probe"' EXIT
cat >"$probe" <<'EOF'
#include <linux/iommufd.h>
#include <linux/vfio.h>
#include "vfio-uapi.h"
/* vfio-uapi.h defines these command numbers as macros only when it supplies the group itself. */
#ifdef IOMMUFD_CMD_IOAS_NOIOMMU_GET_PA
#error "vfio-uapi.h defined GET_PA although <linux/iommufd.h> has it"
#endif
#ifdef IOMMUFD_CMD_HWPT_ALLOC
#error "vfio-uapi.h defined HWPT_ALLOC although <linux/iommufd.h> has it"
#endif
static_assert(sizeof(struct iommu_hwpt_alloc) == 48, "7.3 iommu_hwpt_alloc");
static_assert(IOMMU_HWPT_DATA_NONE == 0, "IOMMU_HWPT_DATA_NONE");
static_assert(offsetof(struct iommu_hwpt_alloc, data_uptr) == 32, "7.3 iommu_hwpt_alloc");
static_assert(sizeof(struct vfio_device_bind_iommufd) == 24, "7.3 bind");
static_assert(sizeof(struct vfio_device_attach_iommufd_pt) == 16, "7.3 attach");
static_assert(sizeof(struct vfio_device_detach_iommufd_pt) == 12, "7.3 detach");
int main(void) { return 0; }
EOF
if gcc -std=gnu11 -Wall -Werror -fsyntax-only "${ISYS[@]}" -I"$src/daemon" "$probe"; then
        checked+=("probe: vfio-uapi.h uses 7.3's <linux/iommufd.h>/<linux/vfio.h> definitions")
else
        log "FAIL: the probe of vfio-uapi.h against the 7.3 headers"
        fail=1
fi

# 2. The daemon's translation units.
if [ -n "$build" ] && [ -f "$build/compile_commands.json" ]; then
        mapfile -t cmds < <(/usr/bin/python3 - "$build/compile_commands.json" "$src/daemon/" <<'EOF'
import json, os, shlex, sys
seen = set()
for e in json.load(open(sys.argv[1])):
    f = os.path.normpath(os.path.join(e["directory"], e["file"]))
    if not f.startswith(sys.argv[2]) or not f.endswith(".c") or f in seen:
        continue
    seen.add(f)
    argv = shlex.split(e["command"]) if "command" in e else e["arguments"]
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("-o", "-MF", "-MQ", "-MT"):
            skip = True
            continue
        if a in ("-MD", "-MMD", "-c"):
            continue
        out.append(a)
    print(e["directory"] + "\t" + f + "\t" + shlex.join(out))
EOF
)
        [ "${#cmds[@]}" -gt 0 ] || { log "FAIL: no daemon sources in $build/compile_commands.json"; exit 1; }
        for line in "${cmds[@]}"; do
                IFS=$'\t' read -r dir file cmd <<<"$line"
                eval "argv=($cmd)"
                # -isystem goes first: the 7.3 tree is searched before /usr/include.
                if (cd "$dir" && "${argv[0]}" "${ISYS[@]}" "${argv[@]:1}" -fsyntax-only); then
                        checked+=("${file#"$src"/}")
                else
                        log "FAIL: ${file#"$src"/} does not compile against the 7.3 headers"
                        fail=1
                fi
        done
else
        [ -f "$src/build/config.h" ] || [ -n "$build" ] || log "no BUILD_DIR: compiling the uapi users only, with fixed flags"
        for f in daemon/vfio.c; do
                if gcc -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wno-unused-parameter -fsyntax-only \
                       "${ISYS[@]}" -Idaemon -Iinclude -Iclient "$f"; then
                        checked+=("$f")
                else
                        log "FAIL: $f does not compile against the 7.3 headers"
                        fail=1
                fi
        done
fi

for c in "${checked[@]}"; do
        echo "ok - $c"
done
if [ "$fail" -ne 0 ]; then
        echo "FAIL: the daemon does not compile against linux-libc-dev $ver"
        exit 1
fi
echo "PASS: ${#checked[@]} checks against linux-libc-dev $ver ($inc)"
