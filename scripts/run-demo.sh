#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The main job on a fresh Debian 12 machine, as root: install what is needed, build, start
# noiommud (with a private bus and the real polkitd) and show a real unprivileged client getting
# real pinned DMA memory, checked against /proc/PID/pagemap; then the same from podman containers.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
/usr/bin/python3 scripts/demo.py "${BUILD_DIR:-build}"
# The users noiommud exists for: the same, from inside podman containers (CDI, noiommuctl run).
exec /usr/bin/python3 scripts/container-demo.py "${BUILD_DIR:-build}"
