#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds (or reuses) the vm test tier's guest kernel: docs/vm-testing.md §3-§5.
#
#   build-kernel.sh [FRAGMENT]        FRAGMENT defaults to kernel.config beside this script
#
# tinyconfig + FRAGMENT + olddefconfig, from Debian's /usr/src/linux-source-6.12.tar.xz.
# Every fragment line is checked against the resulting .config before anything compiles.
# The result is cached outside the checkout, in
#   ${NOIOMMU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/noiommud}/kernel/<key>/{bzImage,config}
# with key = sha256(fragment, linux-source-6.12 version, first line of gcc --version,
# SCRIPT_VERSION). A hit costs nothing; a miss costs ~9 minutes on 2 cores.
# The last line on stdout is the path of bzImage; everything else goes to stderr.
# Exit status: 0 built or cached, 77 the kernel source package is missing, 1 anything else.
set -euo pipefail

# Bump when this script changes how the kernel is built: the cache key includes it.
SCRIPT_VERSION=1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
frag=$(realpath "${1:-$here/kernel.config}")
tarball=/usr/src/linux-source-6.12.tar.xz
srcname=linux-source-6.12

log() { echo "build-kernel.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ -r "$frag" ] || die "cannot read the config fragment $frag"
if [ ! -r "$tarball" ]; then
        log "SKIP: $tarball is missing: install linux-source-6.12 (scripts/install-vm-deps.sh)"
        exit 77
fi
srcver=$(dpkg-query -W -f '${Version}' linux-source-6.12 2>/dev/null) ||
        die "linux-source-6.12 is not installed as a package, but $tarball exists"
command -v gcc >/dev/null || die "gcc is missing (scripts/install-vm-deps.sh)"
for tool in make bc bison flex tar xz flock sha256sum; do
        command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-vm-deps.sh)"
done
gccver=$(gcc --version | head -n 1)

key=$( { printf 'fragment\n'; cat "$frag";
         printf '\nlinux-source-6.12 %s\ngcc %s\nbuild-kernel.sh %s\n' "$srcver" "$gccver" "$SCRIPT_VERSION"; } |
       sha256sum | cut -c1-32)
cache=${NOIOMMU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/noiommud}/kernel
out=$cache/$key

if [ -s "$out/bzImage" ]; then
        log "cache hit: $out (linux-source-6.12 $srcver)"
        echo "$out/bzImage"
        exit 0
fi

mkdir -p "$cache"
exec 9<"$cache"
if ! flock -n 9; then
        log "another build holds the lock on $cache; waiting"
        flock 9
fi
# Someone else may have built the same key while we waited.
if [ -s "$out/bzImage" ]; then
        log "cache hit after waiting: $out"
        echo "$out/bzImage"
        exit 0
fi

# Leftovers of an interrupted build (we hold the lock, so nobody is using them).
rm -rf "$cache"/.tmp-* 2>/dev/null || true
tmp=$(mktemp -d "$cache/.tmp-$key.XXXXXX")
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

src=$tmp/$srcname
build=$tmp/build
blog=$tmp/build.log
start=$(date +%s)
log "cache miss: building linux-source-6.12 $srcver for key $key"
log "  fragment $frag; log $blog (kept as $cache/last-failed-build.log on failure)"

# fail [--log] MESSAGE: --log also shows the end of the build log.
fail() {
        local show=0
        if [ "$1" = --log ]; then
                show=1
                shift
        fi
        log "ERROR: $*"
        if [ "$show" = 1 ] && [ -s "$blog" ]; then
                log "last lines of the build log:"
                tail -n 60 "$blog" >&2
        fi
        [ -s "$blog" ] && cp "$blog" "$cache/last-failed-build.log" 2>/dev/null
        exit 1
}

log "unpacking $tarball"
tar -xJf "$tarball" -C "$tmp" || fail "cannot unpack $tarball"
[ -d "$src" ] || fail "$tarball did not contain $srcname/"
mkdir -p "$build"

log "configuring (tinyconfig + fragment + olddefconfig)"
{
        make -C "$src" O="$build" tinyconfig &&
        "$src"/scripts/kconfig/merge_config.sh -m -O "$build" "$build/.config" "$frag" &&
        make -C "$src" O="$build" olddefconfig
} >>"$blog" 2>&1 || fail --log "configuring failed"

# Kconfig drops what it cannot satisfy without a word: check every fragment line.
bad=0
while IFS= read -r line || [ -n "$line" ]; do
        case "$line" in
        CONFIG_*=n | "# CONFIG_"*" is not set")
                k=${line#\# }
                k=${k%%[= ]*}
                if grep -Eq "^$k=(y|m)$" "$build/.config"; then
                        log "STILL SET: $k (the fragment says $line)"
                        bad=1
                fi
                ;;
        CONFIG_*=*)
                if ! grep -qxF -- "$line" "$build/.config"; then
                        k=${line%%=*}
                        got=$(grep -E "^$k=|^# $k is not set" "$build/.config" || echo "absent")
                        log "MISSING: $line (the .config has: $got)"
                        bad=1
                fi
                ;;
        "" | "#"*) ;;
        *)
                log "cannot parse fragment line: $line"
                bad=1
                ;;
        esac
done <"$frag"
[ "$bad" = 0 ] || fail "the fragment did not take effect (see MISSING/STILL SET above); nothing was compiled"
log "all fragment lines are in .config ($(($(date +%s) - start)) s so far)"

log "building bzImage with -j$(nproc)"
make -C "$src" O="$build" -j"$(nproc)" bzImage >>"$blog" 2>&1 || fail --log "make bzImage failed"

mkdir "$tmp/out"
cp "$build/arch/x86/boot/bzImage" "$tmp/out/bzImage"
cp "$build/.config" "$tmp/out/config"
{
        echo "linux-source-6.12 $srcver"
        echo "gcc $gccver"
        echo "build-kernel.sh $SCRIPT_VERSION"
        echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(($(date +%s) - start)) s"
} >"$tmp/out/info"
rm -rf "$out"
mv "$tmp/out" "$out"
end=$(date +%s)
log "built $out/bzImage in $((end - start)) s ($(stat -c %s "$out/bzImage") bytes)"
echo "$out/bzImage"
