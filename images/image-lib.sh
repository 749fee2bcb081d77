# Sourced by images/*/build.sh: the steps every locally imported image shares. The caller
# sets IMAGE and hash (of everything the image is made of) first.

# Exits 0 from the caller when $IMAGE already carries $hash (unless --force is $1); else
# sets old_id (the image being replaced, or empty) and start, and says what is being built.
skip_if_current() {
  old_id=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
  if [[ -n $old_id && ${1:-} != --force ]]; then
    local have
    have=$(docker image inspect -f '{{index .Config.Labels "cube.image-hash"}}' "$IMAGE")
    if [[ $have == "$hash" ]]; then
      echo "cube setup: image $IMAGE up to date"
      exit 0
    fi
  fi
  start=$(date +%s%N)
  printf 'cube setup: building image %s… ' "$IMAGE"
}

# Removes the image replaced by $1 (the new id): it would linger as <none>, kept only while
# a container uses it. Then prints how long the build took.
finish_build() {
  if [[ -n $old_id && $old_id != "$1" ]]; then
    docker rmi "$old_id" >/dev/null 2>&1 || true
  fi
  printf 'ok (%s s)\n' "$(awk -v ns=$(($(date +%s%N) - start)) 'BEGIN { printf "%.1f", ns / 1e9 }')"
}
