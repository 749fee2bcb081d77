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

old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
if [[ -n $old_id && ${1:-} != --force ]]; then
  have=$(docker image inspect -f '{{index .Config.Labels "cube.image-hash"}}' "$IMAGE")
  if [[ $have == "$hash" ]]; then
    echo "cube setup: image $IMAGE up to date"
    exit 0
  fi
fi

start=$(date +%s%N)
printf 'cube setup: building image %s… ' "$IMAGE"
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
# The replaced image would linger as <none>; it stays only while a container uses it.
if [[ -n $old_id && $old_id != "$new_id" ]]; then
  docker rmi "$old_id" >/dev/null 2>&1 || true
fi
printf 'ok (%s s)\n' "$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')"
