#!/usr/bin/env bash
# Builds cube/httpd:local — busybox httpd serving images/httpd/www — with `docker import`
# of a rootfs made from the host's static busybox (no registry, no network).
#
# The image carries a hash of everything it is made of (this script, www/, the busybox
# binary) in the label cube.image-hash; when the image already has that hash, nothing
# is done, so running this again is a no-op.
#
# Usage: images/httpd/build.sh [--force]
set -euo pipefail
# shellcheck source=../image-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../image-lib.sh"

IMAGE=cube/httpd:local
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUSYBOX=${BUSYBOX:-/bin/busybox}
# Passed to `docker import -c`; part of the hash through this file's own content.
CHANGES=(
  -c 'CMD ["httpd", "-f", "-v", "-p", "80", "-h", "/www"]'
  -c 'EXPOSE 80'
  -c 'ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin'
)

if [[ ! -x $BUSYBOX ]]; then
  echo "cube setup: $BUSYBOX is missing: apt-get install -y busybox-static" >&2
  exit 1
fi

# Paths, modes and contents of the inputs, in a stable order (the CGI scripts must stay
# executable, so their mode counts too).
hash=$(
  cd "$HERE"
  {
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 stat -c '%n %a'
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum <"$BUSYBOX"
  } | sha256sum | cut -c1-32
)

skip_if_current "${1:-}"
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,www}
chmod 1777 "$root/tmp"
cp "$BUSYBOX" "$root/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' \
  >"$root/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
cp -R "$HERE/www/." "$root/www/"
chmod 755 "$root"/www/cgi-bin/*

new_id=$(
  tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
    docker import "${CHANGES[@]}" -c "LABEL cube.image-hash=$hash" - "$IMAGE"
)
finish_build "$new_id"
