#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Downloads packages from Debian trixie-backports without touching the machine's apt
# configuration: a private sources list, a private apt state and cache directory, signatures
# checked against the Debian archive keyring (docs/linux-7.3.md "Getting the
# source"). Nothing is installed; .deb files land in a cache outside the checkout.
#
#   debian-backports.sh newest-linux-source MIN_MINOR
#           prints "NAME VERSION" of the newest linux-source-7.N with N >= MIN_MINOR
#   debian-backports.sh download NAME[=VERSION]
#           downloads the package (once) and prints the path of its .deb
#
# The cache is ${NOIOMMU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/noiommud}/apt-backports:
# apt's lists under state/, the .debs under debs/. The package lists are refreshed at most once
# an hour; backports keeps only its newest version of each package, so a fresh list matters.
# Messages go to stderr; exit status 0 on success, 1 on any failure.
set -euo pipefail

SUITE=trixie-backports
MIRROR=${NOIOMMU_DEBIAN_MIRROR:-http://deb.debian.org/debian}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

log() { echo "debian-backports.sh: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

cache=${NOIOMMU_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/noiommud}/apt-backports
[ -r "$KEYRING" ] || die "$KEYRING is missing (package debian-archive-keyring)"
mkdir -p "$cache/etc/preferences.d" "$cache/state/lists/partial" "$cache/cache/archives/partial" "$cache/debs"
echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" >"$cache/etc/sources.list"
# An empty status file: this apt knows nothing of what the machine has installed, so it never
# plans around (or reports on) the system's packages.
: >"$cache/state/status"

APT_OPTS=(
        -o "Dir::Etc::SourceList=$cache/etc/sources.list"
        -o "Dir::Etc::SourceParts=/dev/null"
        -o "Dir::Etc::Preferences=/dev/null"
        -o "Dir::Etc::PreferencesParts=$cache/etc/preferences.d"
        -o "Dir::State=$cache/state"
        -o "Dir::State::status=$cache/state/status"
        -o "Dir::Cache=$cache/cache"
        -o "APT::Architecture=amd64"
        -o "APT::Sandbox::User=root"
        -o "Debug::NoLocking=1"
)

update() {
        local stamp=$cache/state/updated
        if [ -f "$stamp" ] && [ -z "$(find "$stamp" -mmin +60)" ]; then
                return 0
        fi
        exec 8>"$cache/lock"
        flock 8
        apt-get "${APT_OPTS[@]}" -qq update >&2 || die "apt-get update of $SUITE failed"
        touch "$stamp"
        flock -u 8
}

case "${1:-}" in
newest-linux-source)
        min=${2:?usage: $0 newest-linux-source MIN_MINOR}
        update
        best=
        best_minor=-1
        while read -r name _; do
                minor=${name#linux-source-7.}
                [[ "$minor" =~ ^[0-9]+$ ]] || continue
                if [ "$minor" -ge "$min" ] && [ "$minor" -gt "$best_minor" ]; then
                        best=$name
                        best_minor=$minor
                fi
        done < <(apt-cache "${APT_OPTS[@]}" search --names-only '^linux-source-7\.[0-9]+$')
        [ -n "$best" ] || die "$SUITE offers no linux-source-7.N with N >= $min"
        ver=$(apt-cache "${APT_OPTS[@]}" show --no-all-versions "$best" | sed -n 's/^Version: //p' | head -n 1)
        [ -n "$ver" ] || die "cannot read the version of $best"
        echo "$best $ver"
        ;;
download)
        spec=${2:?usage: $0 download NAME[=VERSION]}
        update
        name=${spec%%=*}
        if [ "$spec" != "$name" ]; then
                ver=${spec#*=}
        else
                ver=$(apt-cache "${APT_OPTS[@]}" show --no-all-versions "$name" | sed -n 's/^Version: //p' | head -n 1)
                [ -n "$ver" ] || die "$SUITE has no package $name"
        fi
        # Debian file names encode the epoch's colon as %3a.
        deb=$cache/debs/${name}_${ver//:/%3a}_all.deb
        [ -s "$deb" ] || deb=$cache/debs/${name}_${ver//:/%3a}_amd64.deb
        if [ ! -s "$deb" ]; then
                exec 8>"$cache/lock"
                flock 8
                (cd "$cache/debs" && apt-get "${APT_OPTS[@]}" -qq download "$name=$ver" >&2) ||
                        die "apt-get download $name=$ver failed"
                flock -u 8
                deb=$(ls "$cache/debs/${name}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n 1)
                [ -s "$deb" ] || die "apt-get download $name=$ver left no .deb in $cache/debs"
        fi
        echo "$deb"
        ;;
*)
        echo "usage: $0 newest-linux-source MIN_MINOR | download NAME[=VERSION]" >&2
        exit 1
        ;;
esac
