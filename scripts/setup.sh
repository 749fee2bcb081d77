#!/usr/bin/env bash
# cube's set-up, run by `npm run setup`, `npm test` and `npm run dev` before anything else.
# On a Debian 12 machine, as root, it makes sure that:
#   1. the npm dependencies are installed (npm ci, when node_modules is missing or older
#      than package-lock.json), Node 24 LTS among them (the `node` package);
#   2. Debian's docker.io, busybox-static, docker-registry, prometheus, python3-grpcio and
#      chromium are installed (prometheus never started as a service: the metrics tests run
#      their own; chromium is the dashboard test's headless browser);
#   3. a Docker engine answers (dockerd started in the background when none does);
#   4. the test image cube/httpd:local and the network sandbox image cube/pause:local are
#      built and current (images/httpd/build.sh, images/pause/build.sh);
#   5. a local registry answers on 127.0.0.1:5000 (scripts/registry.yml);
#   6. the dashboard is built (web/ into web/dist) and current.
# Each step only acts when something is missing: a second run changes nothing and
# takes well under a second. Without root or apt-get it stops, naming what to install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

APT_PACKAGES_HINT="docker.io busybox-static docker-registry prometheus python3-grpcio chromium"
DOCKERD_LOG=${CUBE_DOCKERD_LOG:-/var/log/dockerd.log}
DOCKERD_PIDFILE=/var/run/docker.pid
DOCKERD_TIMEOUT_S=${CUBE_DOCKERD_TIMEOUT_S:-60}
REGISTRY_CONFIG=scripts/registry.yml
REGISTRY_LOG=${CUBE_REGISTRY_LOG:-/var/log/cube-registry.log}
REGISTRY_TIMEOUT_S=${CUBE_REGISTRY_TIMEOUT_S:-15}

setup_start=$(date +%s%N)
step_start=$setup_start
in_step=0

seconds_since() { awk -v ns=$(($(date +%s%N) - $1)) 'BEGIN { printf "%.1f", ns / 1e9 }'; }
say() { printf 'cube setup: %s\n' "$*"; }
begin() {
  step_start=$(date +%s%N)
  in_step=1
  printf 'cube setup: %s… ' "$*"
}
ok() {
  in_step=0
  printf 'ok (%s s)\n' "$(seconds_since "$step_start")"
}
fail_step() {
  if ((in_step)); then printf 'failed\n'; fi
  in_step=0
}
die() {
  fail_step
  printf 'cube setup: error: %s\n' "$*" >&2
  exit 1
}
# die_with_log LOG MESSAGE: the message, after the last lines of LOG.
die_with_log() {
  fail_step
  echo "--- last lines of $1:" >&2
  tail -n 15 "$1" >&2 || true
  echo "---" >&2
  die "$2"
}
# wait_for NAME PID TIMEOUT_S LOG CHECK: waits until CHECK succeeds, failing fast when
# PID exits and after TIMEOUT_S seconds.
wait_for() {
  local name=$1 pid=$2 timeout_s=$3 log=$4 check=$5
  local deadline=$(($(date +%s) + timeout_s))
  until "$check"; do
    if ! alive "$pid"; then
      # A set-up running at the same time may have won the race to start it.
      sleep 1
      "$check" && return 0
      die_with_log "$log" "$name exited during start-up (see $log)"
    fi
    if (($(date +%s) >= deadline)); then
      die_with_log "$log" "$name (pid $pid) did not answer within ${timeout_s} s (see $log)"
    fi
    sleep 0.2
  done
}
is_root() { [[ $(id -u) == 0 ]]; }
# alive PID: the process runs. A killed process stays a zombie until its parent reaps it,
# and under some inits that takes a while: kill -0 alone would call it alive.
alive() {
  local state
  state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z && $state != X ]]
}

# --- 0. Node ----------------------------------------------------------------------------
# The machine's Node only runs npm: cube itself runs on the Node 24 LTS that npm installs
# into node_modules (the `node` package), which `npm run`, `npm test`, `npx cube` and
# bin/cube.js use. npm 11 needs Node >= 20.17 to run.
command -v node >/dev/null || die "node is missing: install Node.js >= 20.17 with npm (https://nodejs.org)"
node -e 'const [a, b] = process.versions.node.split(".").map(Number);
  process.exit(a > 20 || (a === 20 && b >= 17) ? 0 : 1)' ||
  die "Node.js $(node -p process.versions.node) is too old to run npm: install Node.js >= 20.17"

# --- 1. npm dependencies ----------------------------------------------------------------
# npm ci writes node_modules/.package-lock.json last: older than package-lock.json means
# the lock file changed (or an install broke off) since.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  command -v npm >/dev/null || die "npm is missing: install npm (it ships with Node.js)"
  begin "installing npm dependencies (npm ci)"
  npm_log=$(mktemp)
  if ! npm ci --no-audit --no-fund --loglevel=error >"$npm_log" 2>&1; then
    fail_step
    cat "$npm_log" >&2
    rm -f "$npm_log"
    die "npm ci failed (output above)"
  fi
  rm -f "$npm_log"
  ok
fi

# The project's own Node: the `node` package puts its binary in node_modules/.bin.
project_node=node_modules/.bin/node
[[ -x $project_node ]] || die "$project_node is missing after npm ci: remove node_modules and run \`npm run setup\` again"
project_node_version=$("$project_node" -p process.versions.node) ||
  die "$project_node does not run: remove node_modules and run \`npm run setup\` again"
[[ $project_node_version == 24.* ]] ||
  die "$project_node is Node $project_node_version, not 24: remove node_modules and run \`npm run setup\` again"

# --- 2. Debian packages -----------------------------------------------------------------
missing=()
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then missing+=(docker.io); fi
# The image's rootfs is the host's busybox: it must be the static build.
if [[ $(dpkg-query -W -f='${db:Status-Status}' busybox-static 2>/dev/null) != installed ]]; then
  missing+=(busybox-static)
fi
if ! command -v docker-registry >/dev/null; then missing+=(docker-registry); fi
# The server and promtool, for test/metrics*.test.ts (a real scrape, and the format's checks).
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  missing+=(prometheus)
fi
# Python's grpcio (with /usr/bin/python3), for test/tls.test.ts: a gRPC stack other than
# Node's, over TLS with a token.
if [[ $(dpkg-query -W -f='${db:Status-Status}' python3-grpcio 2>/dev/null) != installed ]]; then
  missing+=(python3-grpcio)
fi
# Debian's Chromium, driven headless by playwright-core in test/dashboard.test.ts and the
# dashboard benchmark (never a browser downloaded by a test tool).
if [[ ! -x /usr/bin/chromium ]]; then missing+=(chromium); fi
if ((${#missing[@]})); then
  if ! is_root || ! command -v apt-get >/dev/null; then
    die "missing ${missing[*]}: as root on Debian 12, run \`apt-get install -y ${missing[*]}\` (cube needs $APT_PACKAGES_HINT), then \`npm run setup\` again"
  fi
  begin "installing ${missing[*]} with apt-get"
  # Debian's prometheus starts its service on install wherever an init system can (and its
  # recommended node-exporter too): nothing may start here, the tests run their own server
  # with their own config and storage. policy-rc.d answering 101 ("action forbidden") is
  # Debian's way to say so to invoke-rc.d and deb-systemd-invoke, for this install only.
  policy_rc=/usr/sbin/policy-rc.d
  made_policy=0
  if [[ ! -e $policy_rc ]]; then
    printf '#!/bin/sh\n# cube setup: no service starts during its apt-get install\nexit 101\n' >"$policy_rc"
    chmod 755 "$policy_rc"
    made_policy=1
  fi
  apt_log=$(mktemp)
  if ! {
    apt-get update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  } >"$apt_log" 2>&1; then
    if ((made_policy)); then rm -f "$policy_rc"; fi
    fail_step
    cat "$apt_log" >&2
    rm -f "$apt_log"
    die "apt-get install ${missing[*]} failed (output above)"
  fi
  if ((made_policy)); then rm -f "$policy_rc"; fi
  rm -f "$apt_log"
  ok
fi

# --- 3. Docker engine -------------------------------------------------------------------
docker_answers() { docker version -f '{{.Server.Version}}' >/dev/null 2>&1; }

if docker_answers; then
  say "docker engine $(docker version -f '{{.Server.Version}}') answers"
else
  is_root || die "no Docker engine answers and starting dockerd needs root: run \`npm run setup\` as root (or start dockerd yourself)"
  dockerd_pid=
  if [[ -f $DOCKERD_PIDFILE ]]; then
    old_pid=$(<"$DOCKERD_PIDFILE")
    if [[ -n $old_pid && $(cat "/proc/$old_pid/comm" 2>/dev/null) == dockerd ]] && alive "$old_pid"; then
      # A dockerd that is still starting up: wait for it rather than start a second.
      dockerd_pid=$old_pid
      say "dockerd (pid $dockerd_pid) is running but does not answer yet"
    else
      # A dockerd killed without its clean-up leaves this behind, and the next dockerd
      # refuses to start while it exists.
      say "removing stale $DOCKERD_PIDFILE (process ${old_pid:-?} is gone)"
      rm -f "$DOCKERD_PIDFILE"
    fi
  fi
  containerd_pidfile=/var/run/docker/containerd/containerd.pid
  if [[ -z $dockerd_pid && -f $containerd_pidfile ]] && ! alive "$(<"$containerd_pidfile")"; then
    # dockerd reuses the containerd this names while kill -0 succeeds, and a zombie left by
    # a killed dockerd passes that test: it would then time out dialling it, and exit.
    rm -f "$containerd_pidfile"
  fi
  begin "starting dockerd (log: $DOCKERD_LOG)"
  if [[ -z $dockerd_pid ]]; then
    # Its own session: a Ctrl-C in the terminal that ran `npm test` must not reach it.
    setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
    dockerd_pid=$!
  fi
  wait_for dockerd "$dockerd_pid" "$DOCKERD_TIMEOUT_S" "$DOCKERD_LOG" docker_answers
  ok
fi

# --- 4. Images ---------------------------------------------------------------------------
# The test image, and the image of a worker's warm network sandboxes.
bash images/httpd/build.sh
bash images/pause/build.sh

# --- 5. Local registry ------------------------------------------------------------------
# A registry answers GET /v2/ with 200 and its API version header; plain bash, as curl
# is not on every fresh machine.
registry_answers() {
  timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5000 &&
    printf "GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:5000\r\n\r\n" >&3 && cat <&3' 2>/dev/null |
    grep -qi '^Docker-Distribution-Api-Version: registry/2'
}
port_taken() { timeout 1 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5000' 2>/dev/null; }

if registry_answers; then
  say "registry answers on 127.0.0.1:5000"
else
  port_taken && die "127.0.0.1:5000 is taken by something that is not a Docker registry: stop it, then run \`npm run setup\` again"
  is_root || die "no registry answers on 127.0.0.1:5000 and starting it needs root: run \`npm run setup\` as root"
  begin "starting registry on 127.0.0.1:5000 (log: $REGISTRY_LOG)"
  mkdir -p /var/lib/cube-registry
  setsid docker-registry serve "$REGISTRY_CONFIG" >>"$REGISTRY_LOG" 2>&1 </dev/null &
  wait_for docker-registry $! "$REGISTRY_TIMEOUT_S" "$REGISTRY_LOG" registry_answers
  ok
fi

# --- 6. Dashboard -----------------------------------------------------------------------
# web/ bundled into web/dist (served by the manager at /), again only when its inputs
# changed: web/ itself, the generated code it imports, the lock file, the build script.
web_hash=$(
  {
    find web gen/cube/v1 -path web/dist -prune -o -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    sha256sum package-lock.json scripts/build-web.ts
  } | sha256sum | cut -c1-32
)
if [[ ! -f web/dist/index.html || $(cat web/dist/.inputs 2>/dev/null) != "$web_hash" ]]; then
  begin "building the dashboard (web/ into web/dist)"
  web_log=$(mktemp)
  if ! "$project_node" --import=tsx scripts/build-web.ts >"$web_log" 2>&1; then
    fail_step
    cat "$web_log" >&2
    rm -f "$web_log"
    die "the dashboard's build failed (output above)"
  fi
  rm -f "$web_log"
  echo "$web_hash" >web/dist/.inputs
  ok
else
  say "dashboard up to date"
fi

say "ready ($(seconds_since "$setup_start") s)"
