#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Configures (once, with the given meson setup arguments) and builds the project into
# ${BUILD_DIR:-build}, with warnings as errors: werror is not a default option of meson.build
# (a packager's newer compiler must not fail a release build), so the project's own builds ask
# for it here. run-tests.sh builds its clang and ASan directories through this script too.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
        meson setup "$BUILD_DIR" -Dwerror=true "$@"
else
        # An existing build directory keeps the options it was set up with; one made by hand or
        # before werror stopped being a default may have it off. Reconfigure only then, so that
        # an up-to-date directory stays untouched.
        werror=$(meson introspect --buildoptions "$BUILD_DIR" | /usr/bin/python3 -c \
                'import json, sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "werror"][0])')
        if [ "$werror" != True ]; then
                echo "build.sh: $BUILD_DIR was configured without werror, turning it on"
                meson configure "$BUILD_DIR" -Dwerror=true
        fi
fi
ninja -C "$BUILD_DIR"
