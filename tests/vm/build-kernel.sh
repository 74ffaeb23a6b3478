#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds (or reuses) a guest kernel of the vm test tier: docs/vm-testing.md §3-§5 and, for 7.x,
# docs/linux-7.3.md.
#
#   build-kernel.sh [--linux 6.12|7] [FRAGMENT...]
#
#   --linux 6.12  (default) Debian 12's linux-source-6.12 (bookworm-security, installed by
#                 scripts/install-vm-deps.sh): VFIO's own container, the noiommu group path.
#                 FRAGMENT defaults to kernel.config.
#   --linux 7     the newest linux-source-7.N with N >= 3 in Debian trixie-backports, fetched
#                 with a private apt (scripts/debian-backports.sh; nothing is installed): the
#                 merged noiommu cdev. FRAGMENT defaults to kernel.config + kernel-7.config.
#
# tinyconfig + the fragments (in order; a later line for the same option wins) + olddefconfig.
# Every effective fragment line is checked against the resulting .config before anything
# compiles. The result is cached outside the checkout, in
#   ${NOIOMMU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/noiommud}/kernel/<key>/{bzImage,config,info}
# with key = sha256(the fragments, source package name and version, first line of
# gcc --version, SCRIPT_VERSION). A hit costs nothing; a miss costs 3-10 minutes on 2 cores.
# The last line on stdout is the path of bzImage; everything else goes to stderr.
# Exit status: 0 built or cached, 77 the kernel source cannot be had here, 1 anything else.
set -euo pipefail

# Bump when this script changes how the kernel is built: the cache key includes it.
SCRIPT_VERSION=1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
series=6.12
if [ "${1:-}" = --linux ]; then
        series=${2:?--linux needs 6.12 or 7}
        shift 2
fi
frags=()
for f in "$@"; do
        frags+=("$(realpath "$f")")
done
case "$series" in
6.12)
        [ ${#frags[@]} -gt 0 ] || frags=("$here/kernel.config") ;;
7)
        [ ${#frags[@]} -gt 0 ] || frags=("$here/kernel.config" "$here/kernel-7.config") ;;
*)
        echo "build-kernel.sh: --linux takes 6.12 or 7, not $series" >&2
        exit 1 ;;
esac

log() { echo "build-kernel.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

for f in "${frags[@]}"; do
        [ -r "$f" ] || die "cannot read the config fragment $f"
done
command -v gcc >/dev/null || die "gcc is missing (scripts/install-vm-deps.sh)"
for tool in make bc bison flex tar xz flock sha256sum dpkg-deb; do
        command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-vm-deps.sh)"
done

# The source: srcname (the package, also the top directory of its tarball), srcver, and a
# command that writes the .tar.xz to stdout (unpack_source).
if [ "$series" = 6.12 ]; then
        srcname=linux-source-6.12
        tarball=/usr/src/$srcname.tar.xz
        if [ ! -r "$tarball" ]; then
                log "SKIP: $tarball is missing: install linux-source-6.12 (scripts/install-vm-deps.sh)"
                exit 77
        fi
        srcver=$(dpkg-query -W -f '${Version}' "$srcname" 2>/dev/null) ||
                die "$srcname is not installed as a package, but $tarball exists"
        source_tarball() { cat "$tarball"; }
else
        # Backports keeps only its newest version and names the package by series, so ask
        # for the newest 7.N (N >= 3: the noiommu cdev was merged for 7.3).
        if ! pkg=$("$here/../../scripts/debian-backports.sh" newest-linux-source 3); then
                log "SKIP: cannot get linux-source-7.N (N >= 3) from Debian trixie-backports (see above)"
                exit 77
        fi
        srcname=${pkg% *}
        srcver=${pkg#* }
        deb=$("$here/../../scripts/debian-backports.sh" download "$srcname=$srcver") || {
                log "SKIP: cannot download $srcname $srcver from Debian trixie-backports"
                exit 77
        }
        # The package holds /usr/src/linux-source-7.N.tar.xz; read it without installing.
        source_tarball() { dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$srcname.tar.xz"; }
fi
gccver=$(gcc --version | head -n 1)

key=$( { printf 'fragment\n'; cat "${frags[@]}";
         printf '\n%s %s\ngcc %s\nbuild-kernel.sh %s\n' "$srcname" "$srcver" "$gccver" "$SCRIPT_VERSION"; } |
       sha256sum | cut -c1-32)
cache=${NOIOMMU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/noiommud}/kernel
out=$cache/$key

if [ -s "$out/bzImage" ]; then
        log "cache hit: $out ($srcname $srcver)"
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
log "cache miss: building $srcname $srcver for key $key"
log "  fragments ${frags[*]}; log $blog (kept as $cache/last-failed-build.log on failure)"

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

log "unpacking $srcname $srcver"
source_tarball | tar -xJ -C "$tmp" || fail "cannot unpack $srcname"
[ -d "$src" ] || fail "the $srcname tarball did not contain $srcname/"
mkdir -p "$build"

log "configuring (tinyconfig + fragment + olddefconfig)"
{
        make -C "$src" O="$build" tinyconfig &&
        "$src"/scripts/kconfig/merge_config.sh -m -O "$build" "$build/.config" "${frags[@]}" &&
        make -C "$src" O="$build" olddefconfig
} >>"$blog" 2>&1 || fail --log "configuring failed"

# Kconfig drops what it cannot satisfy without a word: check every effective fragment line
# (for an option named in several fragments, the last line, as merge_config.sh applies it).
bad=0
declare -A effective=()
order=()
for f in "${frags[@]}"; do
        while IFS= read -r line || [ -n "$line" ]; do
                case "$line" in
                CONFIG_*=* | "# CONFIG_"*" is not set")
                        k=${line#\# }
                        k=${k%%[= ]*}
                        [ -n "${effective[$k]+x}" ] || order+=("$k")
                        effective[$k]=$line
                        ;;
                "" | "#"*) ;;
                *)
                        log "cannot parse a line of $f: $line"
                        bad=1
                        ;;
                esac
        done <"$f"
done
for k in "${order[@]}"; do
        line=${effective[$k]}
        case "$line" in
        CONFIG_*=n | "# CONFIG_"*" is not set")
                if grep -Eq "^$k=(y|m)$" "$build/.config"; then
                        log "STILL SET: $k (the fragments say $line)"
                        bad=1
                fi
                ;;
        *)
                if ! grep -qxF -- "$line" "$build/.config"; then
                        got=$(grep -E "^$k=|^# $k is not set" "$build/.config" || echo "absent")
                        log "MISSING: $line (the .config has: $got)"
                        bad=1
                fi
                ;;
        esac
done
[ "$bad" = 0 ] || fail "the fragments did not take effect (see MISSING/STILL SET above); nothing was compiled"
log "all fragment lines are in .config ($(($(date +%s) - start)) s so far)"

log "building bzImage with -j$(nproc)"
make -C "$src" O="$build" -j"$(nproc)" bzImage >>"$blog" 2>&1 || fail --log "make bzImage failed"

mkdir "$tmp/out"
cp "$build/arch/x86/boot/bzImage" "$tmp/out/bzImage"
cp "$build/.config" "$tmp/out/config"
{
        echo "$srcname $srcver"
        echo "gcc $gccver"
        echo "build-kernel.sh $SCRIPT_VERSION"
        echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(($(date +%s) - start)) s"
} >"$tmp/out/info"
rm -rf "$out"
mv "$tmp/out" "$out"
end=$(date +%s)
log "built $out/bzImage in $((end - start)) s ($(stat -c %s "$out/bzImage") bytes)"
echo "$out/bzImage"
