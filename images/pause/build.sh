#!/usr/bin/env bash
# Builds cube/pause:local — the image of a worker's warm network sandboxes
# (worker/docker/sandbox-pool.ts): the host's static busybox, sleeping for good, imported
# with `docker import` (no registry, no network). Kubernetes' pause image plays this part.
#
# The image carries a hash of what it is made of (this script, the busybox binary) in the
# label cube.image-hash; when the image already has that hash, nothing is done.
#
# Usage: images/pause/build.sh [--force]
set -euo pipefail
# shellcheck source=../image-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../image-lib.sh"

IMAGE=cube/pause:local
BUSYBOX=${BUSYBOX:-/bin/busybox}

if [[ ! -x $BUSYBOX ]]; then
  echo "cube setup: $BUSYBOX is missing: apt-get install -y busybox-static" >&2
  exit 1
fi

hash=$({ sha256sum <"${BASH_SOURCE[0]}"; sha256sum <"$BUSYBOX"; } | sha256sum | cut -c1-32)

skip_if_current "${1:-}"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/bin"
cp "$BUSYBOX" "$root/bin/busybox"
# 2^31-1 seconds: busybox's sleep takes no "infinity". As PID 1 it has no handler for
# SIGTERM, so the worker removes sandboxes with SIGKILL (docker rm -f), at once.
new_id=$(
  tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
    docker import -c 'ENTRYPOINT ["/bin/busybox", "sleep", "2147483647"]' \
      -c "LABEL cube.image-hash=$hash" - "$IMAGE"
)
finish_build "$new_id"
