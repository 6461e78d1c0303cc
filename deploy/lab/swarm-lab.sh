#!/usr/bin/env bash
# swarm-lab.sh: a real 4-node Docker Swarm on one machine, for interlock's e2e tests.
#
#   swarm-lab.sh up [--interlock-binary PATH]   create or repair the lab (idempotent)
#   swarm-lab.sh down [--purge]                 remove it (--purge: also the image cache)
#   swarm-lab.sh status                         exit 0 only when the 4-node swarm is healthy
#   swarm-lab.sh exec NODE CMD...               run CMD in a worker's network namespace
#   swarm-lab.sh ha-up                          the high-availability lab: a separate swarm of
#                                               three managers ha-00..ha-02 and a worker ha-03
#                                               (after `up`: it takes the main lab's images)
#   swarm-lab.sh ha-stop NODE | ha-start NODE   stop / start one of its engines (failover tests)
#   swarm-lab.sh ha-down                        remove it (`down` does too)
#
# The manager is the host's dockerd (advertising 10.99.0.1 on bridge ilab0); the
# workers lb-00, lb-01 and app-00 are extra dockerds, each in its own network and
# UTS namespace (so its hostname, hence its swarm node name, is its own). No
# registry is reachable, so the images are built here and loaded on every node:
#   local/interlock-proxy:lab  Debian bookworm minbase + nginx-light, stream module, haproxy
#   local/interlock-app:lab    busybox-static httpd serving /www ("interlock-app"), stops by SIGKILL
#   local/pebble:lab           Debian minbase + pebble and pebble-challtestsrv (the ACME test's CA)
#   local/interlock:lab        the proxy image + target/release/interlock as ENTRYPOINT
#   local/docker-demo:lab      the proxy image + the docker-demo binary beside the interlock one
#                              (src/bin/docker-demo.rs), standing in for ehazlett/docker-demo
#   local/carbon:lab           Debian bookworm minbase + graphite-carbon and python3-whisper:
#                              carbon-cache in the foreground (plaintext on 2003), 1 s points
#                              kept 2 h, whisper-fetch to read them back (tests/lab/carbon_agent.rs)
# Connection details for tests land in /run/interlock-lab/env.
#
# Pitfalls it works around (docs/lab.md, "The Swarm lab"):
# - no systemd: the dockerds are started in the background and waited for;
# - `ip netns exec` remounts /sys and dockerd then dies ("Devices cgroup isn't
#   mounted"): workers are started with nsenter --net + unshare --uts instead;
# - a worker dockerd in the host's mount namespace resolves a bind mount's source
#   on the host, so a task on lb-00 mounting /var/run/docker.sock got the MANAGER's
#   engine: each worker gets its own mount namespace (unshare --mount, private)
#   with its own socket bound over /run/docker.sock there, and `up` restarts a
#   worker whose namespace lacks that bind;
# - without DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 every task start first tries a
#   registry pull (~10 s hang in a namespace): every lab dockerd gets it;
# - the host dockerd's FORWARD DROP + br_netfilter drop worker-to-worker VXLAN:
#   a DOCKER-USER ACCEPT rule for the bridge's own traffic;
# - /var/lib/docker* and /run may outlive the daemons (old swarm, stale pid files,
#   sockets, netns files): `up` reuses a healthy swarm and repairs the rest;
# - each node needs its own copy of every image: loaded per node, and only
#   when its content label differs, so a second `up` takes seconds.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
# shellcheck source=lib.sh
source "$SCRIPT_DIR/lib.sh"

PACKAGES=(docker.io debootstrap busybox-static iproute2 iptables curl)
PROXY_SUITE=bookworm
PROXY_MIRROR=http://deb.debian.org/debian
PROXY_INCLUDE=nginx-light,libnginx-mod-stream,haproxy,ca-certificates
# debootstrap does not resolve virtual packages: python3-bcrypt (twisted's) needs
# python3-cffi-backend-api-*, which python3-cffi-backend provides.
CARBON_INCLUDE=graphite-carbon,python3-whisper,python3-cffi-backend
# Bump when the way a rootfs or image is made changes: it is part of the cache keys.
RECIPE_VERSION=2
IMG_PROXY=local/interlock-proxy:lab
IMG_APP=local/interlock-app:lab
IMG_OPERATOR=local/interlock:lab
IMG_DEMO=local/docker-demo:lab
IMG_CARBON=local/carbon:lab
# Let's Encrypt's test CA and its DNS, Debian's pebble (tests/lab/acme.rs).
IMG_PEBBLE=local/pebble:lab
PEBBLE_INCLUDE=pebble,ca-certificates
HASH_LABEL=com.docker.interlock.lab.hash
BINARY_LABEL=com.docker.interlock.binary.sha256

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }

# ================================================================ packages
ensure_packages() {
  local p missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then log "packages present"; return; fi
  log "installing ${missing[*]}"
  apt-get update || warn "apt-get update reported errors (an unreachable extra source?); trying the install anyway"
  DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io debootstrap busybox-static iproute2 iptables curl ||
    die "apt-get install failed"
}

# ================================================================ daemons
start_manager() {
  local logf=$LAB_LOG_DIR/dockerd-manager.log pid
  mkdir -p "$LAB_LOG_DIR" "$LAB_RUN_DIR"
  if daemon_ok "$MANAGER_HOST"; then
    log "manager dockerd answers on $MANAGER_SOCK"
    pid=$(live_pid_from_file "$MANAGER_PIDFILE" dockerd)
    if [[ -n $pid ]] && ! tr '\0' '\n' <"/proc/$pid/environ" | grep -qxF "${LAB_DOCKERD_ENV[0]}"; then
      warn "the running manager dockerd lacks ${LAB_DOCKERD_ENV[0]}: swarm task starts may be slow"
    fi
    return
  fi
  pid=$(live_pid_from_file "$MANAGER_PIDFILE" dockerd)
  if [[ -n $pid ]]; then
    log "manager dockerd (pid $pid) runs but does not answer yet; waiting up to 60 s"
    local i
    for ((i = 0; i < 120; i++)); do daemon_ok "$MANAGER_HOST" && return; [[ -d /proc/$pid ]] || break; sleep 0.5; done
    [[ -f $LAB_MANAGER_MARKER ]] ||
      die "dockerd pid $pid owns $MANAGER_PIDFILE but does not answer, and the lab did not start it: stop it yourself"
    warn "stopping unresponsive lab-started manager dockerd (pid $pid)"
    stop_pids 30 "$pid"
  fi
  clean_stale_pidfile "$MANAGER_PIDFILE" dockerd
  clean_stale_pidfile "$MANAGER_EXEC_ROOT/containerd/containerd.pid" containerd
  log "starting manager dockerd (log: $logf)"
  echo "=== $(date -Is) swarm-lab: starting dockerd" >>"$logf"
  setsid env "${LAB_DOCKERD_ENV[@]}" dockerd >>"$logf" 2>&1 </dev/null 9>&- &
  pid=$!
  echo "$pid" >"$LAB_MANAGER_MARKER"
  wait_daemon "$MANAGER_HOST" 60 "$pid" "$logf"
  log "manager dockerd up (pid $pid)"
}

# drop_foreign_swarm_state NODE: a stopped worker whose swarm state belongs to
# another cluster than the manager's would stall its dockerd's start-up ~20 s
# waiting for that cluster, only to leave it afterwards: drop that state first.
# The node certificate's subject O= is the cluster ID (read from the DER, no openssl).
drop_foreign_swarm_state() {
  local dir=/var/lib/docker-$1/swarm crt
  crt=$dir/certificates/swarm-node.crt
  [[ -d $dir ]] || return 0
  if [[ -s $crt && -n ${MANAGER_CLUSTER_ID:-} ]] &&
    grep -v -- ----- "$crt" | base64 -d 2>/dev/null | grep -aqF "$MANAGER_CLUSTER_ID"; then
    return 0
  fi
  log "$1: dropping swarm state of another cluster"
  rm -rf "$dir"
}

# start_worker NODE: (re)starts the node's dockerd unless a good one answers.
# Prints the pid of a freshly started daemon (to wait for), nothing otherwise.
start_worker() {
  local n=$1 host logf=$LAB_LOG_DIR/dockerd-$1.log pid ns_inode name
  host=$(node_host "$n")
  ns_inode=$(stat -L -c %i "/run/netns/$n")
  for pid in $(worker_dockerd_pids "$n"); do
    # A dockerd left in an older incarnation of the netns cannot reach the bridge.
    if [[ $(stat -L -c %i "/proc/$pid/ns/net" 2>/dev/null) != "$ns_inode" ]]; then
      log "$n: dockerd pid $pid runs in a stale network namespace; stopping it"
      stop_pids 30 "$pid"
    fi
  done
  if daemon_ok "$host"; then
    name=$(dn "$n" info --format '{{.Name}}' 2>/dev/null || true)
    if [[ $name != "$n" ]]; then
      log "$n: its dockerd calls itself '$name'; restarting it"
    elif ! worker_sock_bound "$n"; then
      # Started by an older lab, or the manager's socket was recreated since (unlinking
      # it on the host drops the bind in the worker's namespace).
      log "$n: /var/run/docker.sock in its dockerd's mount namespace is not its own socket; restarting it"
    else
      return 0
    fi
  fi
  pid=$(worker_dockerd_pids "$n")
  if [[ -n $pid ]]; then
    log "$n: dockerd $pid does not answer (properly); stopping it"
    # shellcheck disable=SC2086
    stop_pids 30 $pid
  fi
  stop_worker_leftovers "$n" >&2
  drop_foreign_swarm_state "$n" >&2
  clean_stale_pidfile "/run/docker-$n.pid" dockerd >&2
  clean_stale_pidfile "/run/docker-$n/containerd/containerd.pid" containerd >&2
  rm -f "/run/docker-$n.sock"
  mkdir -p "$LAB_LOG_DIR"
  echo "=== $(date -Is) swarm-lab: starting dockerd for $n" >>"$logf"
  # Its own UTS namespace (hostname = swarm node name) and its own mount namespace
  # (private: nothing propagates to or from the host), in which a background loop
  # binds the node's socket over /run/docker.sock as soon as dockerd has created
  # it: a task's bind mount of /var/run/docker.sock is resolved in this namespace,
  # so it reaches this node's engine. Tasks start only after the swarm join, well
  # after the bind (start_workers waits for it).
  setsid env "${LAB_DOCKERD_ENV[@]}" nsenter --net="/run/netns/$n" unshare --uts --mount --propagation private sh -c \
    "hostname $n
( i=0
  while [ \$i -lt 600 ]; do
    [ -S /run/docker-$n.sock ] && exec mount --bind /run/docker-$n.sock /run/docker.sock
    sleep 0.1; i=\$((i + 1))
  done
  echo 'swarm-lab: /run/docker-$n.sock did not appear within 60 s: /run/docker.sock not bound' >&2 ) &
exec dockerd --data-root /var/lib/docker-$n --exec-root /run/docker-$n \
--pidfile /run/docker-$n.pid -H unix:///run/docker-$n.sock --iptables=false --bridge=none" \
    >>"$logf" 2>&1 </dev/null 9>&- &
  log "$n: started dockerd pid $! (log: $logf)"
  echo "$!"
}

start_workers() {
  local n pid
  declare -A started=()
  for n in "${LAB_NODES[@]}"; do
    pid=$(start_worker "$n")
    [[ -z $pid ]] && log "$n: dockerd answers" || started[$n]=$pid
  done
  for n in "${!started[@]}"; do
    wait_daemon "$(node_host "$n")" 60 "${started[$n]}" "$LAB_LOG_DIR/dockerd-$n.log"
    if ! wait_sock_bound "$n" 10; then
      tail_log "$LAB_LOG_DIR/dockerd-$n.log"
      die "$n: /run/docker.sock in its dockerd's mount namespace is not /run/docker-$n.sock after 10 s"
    fi
    log "$n: dockerd up (its tasks' /var/run/docker.sock is its own)"
  done
}

# ================================================================ swarm
# swarm_state HOST [WAIT]: "LocalNodeState|NodeAddr|ControlAvailable|NodeID";
# with WAIT, waits out "pending" for up to 30 s.
swarm_state() {
  local s i tries=1
  [[ -z ${2:-} ]] || tries=60
  for ((i = 0; i < tries; i++)); do
    s=$(docker -H "$1" info --format '{{.Swarm.LocalNodeState}}|{{.Swarm.NodeAddr}}|{{.Swarm.ControlAvailable}}|{{.Swarm.NodeID}}')
    [[ $s == pending* ]] || break
    sleep 0.5
  done
  echo "$s"
}

ensure_manager_swarm() {
  local state addr ctl id
  IFS='|' read -r state addr ctl id < <(swarm_state "$MANAGER_HOST" wait)
  if [[ $state == active && $addr == "$LAB_MANAGER_ADDR" && $ctl == true ]] && timeout 20 docker -H "$MANAGER_HOST" node ls -q >/dev/null 2>&1; then
    log "reusing the manager's swarm (node $id)"
  else
    if [[ $state != inactive ]]; then
      log "manager swarm state '$state' (addr '$addr', manager=$ctl) is not the lab's; leaving it"
      dm swarm leave --force >/dev/null
    fi
    dm swarm init --advertise-addr "$LAB_MANAGER_ADDR" >/dev/null
    log "initialised a new swarm advertising $LAB_MANAGER_ADDR"
  fi
  MANAGER_CLUSTER_ID=$(dm info --format '{{.Swarm.Cluster.ID}}')
}

ensure_worker_joined() {
  local n=$1 known=$2 token=$3 state addr ctl id
  IFS='|' read -r state addr ctl id < <(swarm_state "$(node_host "$n")")
  # A known member may still be connecting (pending); wait_nodes_ready covers it.
  if [[ ($state == active || $state == pending) && -n $id ]] && grep -qxF "$id" <<<"$known"; then
    log "$n: already a member (node $id)"
    return
  fi
  if [[ $state != inactive ]]; then
    log "$n: swarm state '$state' (node '$id') is not this swarm's; leaving it"
    dn "$n" swarm leave --force >/dev/null
  fi
  dn "$n" swarm join --token "$token" --advertise-addr "${LAB_NODE_ADDR[$n]}" "$LAB_MANAGER_ADDR:2377" >/dev/null
  log "$n: joined"
}

# current_node_ids: the swarm node IDs of the manager and the three workers, in that order.
current_node_ids() {
  local n
  dm info --format '{{.Swarm.NodeID}}'
  for n in "${LAB_NODES[@]}"; do dn "$n" info --format '{{.Swarm.NodeID}}'; done
}

remove_stale_nodes() {
  local ids id status name role names
  ids=$(current_node_ids)
  names=" $(uname -n) ${LAB_NODES[*]} "
  while read -r id status name role; do
    [[ -n $id ]] || continue
    grep -qxF "$id" <<<"$ids" && continue
    # A Down entry, or an older entry of one of the four names (a node that left
    # and joined again), is stale. Anything else is not the lab's to remove.
    if [[ $status != Down && $names != *" $name "* ]]; then
      warn "node $id ($name) is $status and not part of the lab; leaving it"; continue
    fi
    [[ $role == manager ]] && { dm node demote "$id" >/dev/null 2>&1 || true; }
    if dm node rm --force "$id" >/dev/null; then log "removed stale node $id ($name, $status)"; else warn "could not remove node $id"; fi
  done < <(dm node ls --format '{{.ID}} {{.Status}} {{.Hostname}} {{if .ManagerStatus}}manager{{end}}')
}

# nodes_ready: true when the four current nodes are Ready with their names.
nodes_ready() {
  local id want line i
  local -a names=("$(uname -n)" "${LAB_NODES[@]}")
  local -a ids
  mapfile -t ids < <(current_node_ids 2>/dev/null) || return 1
  [[ ${#ids[@]} -eq 4 ]] || return 1
  for i in 0 1 2 3; do
    id=${ids[$i]} want="${names[$i]} ready"
    [[ -n $id ]] || return 1
    line=$(dm node inspect --format '{{.Description.Hostname}} {{.Status.State}}' "$id" 2>/dev/null) || return 1
    [[ $line == "$want" ]] || return 1
  done
}

# wait_nodes_ready SECONDS: true once the four current nodes are Ready.
wait_nodes_ready() {
  local i
  for ((i = 0; i < $1 * 2; i++)); do nodes_ready && return 0; sleep 0.5; done
  return 1
}

# node_ready NODE: true when the worker's own swarm node is Ready on the manager.
node_ready() {
  local id
  id=$(dn "$1" info --format '{{.Swarm.NodeID}}' 2>/dev/null) && [[ -n $id ]] &&
    [[ $(dm node inspect --format '{{.Status.State}}' "$id" 2>/dev/null) == ready ]]
}

ensure_swarm() {
  local n known token
  known=$(dm node ls -q)
  token=$(dm swarm join-token -q worker)
  for n in "${LAB_NODES[@]}"; do ensure_worker_joined "$n" "$known" "$token"; done
  if ! wait_nodes_ready 30; then
    # A member that does not come back (e.g. its state is too old): join it afresh.
    for n in "${LAB_NODES[@]}"; do
      node_ready "$n" && continue
      log "$n: not Ready after 30 s; leaving and joining again"
      dn "$n" swarm leave --force >/dev/null 2>&1 || true
      dn "$n" swarm join --token "$token" --advertise-addr "${LAB_NODE_ADDR[$n]}" "$LAB_MANAGER_ADDR:2377" >/dev/null
    done
    if ! wait_nodes_ready 60; then
      dm node ls >&2 || true
      die "the 4 nodes did not all become Ready (logs: $LAB_LOG_DIR/dockerd-*.log)"
    fi
  fi
  remove_stale_nodes
}

# ================================================================ images
cache_key() { printf '%s\n' "$RECIPE_VERSION" "$@" | sha256sum | cut -c1-16; }
file_sha() { sha256sum "$1" | cut -d' ' -f1; }

# cached_sha TAR: the tarball's sha256, computed once and kept beside it.
cached_sha() { [[ -s $1.sha256 ]] || file_sha "$1" >"$1.sha256"; cat "$1.sha256"; }

# Leftovers of an interrupted build (maybe with debootstrap's /proc still mounted).
clean_build_dirs() {
  local d
  for d in "$LAB_CACHE_DIR"/build.*; do
    [[ -e $d ]] || continue
    umount_under "$d"; rm -rf --one-file-system "$d"
  done
  rm -f "$LAB_CACHE_DIR"/*.tmp
}

# minbase_rootfs_tar NAME INCLUDE SLIM_FN [KEY...]: prints the path of a cached Debian minbase
# rootfs tarball with the packages INCLUDE, made by debootstrap and then SLIM_FN ROOTFS, building
# it if needed. KEY: more cache-key material (a recipe's own version).
minbase_rootfs_tar() {
  local name=$1 include=$2 slim=$3 key tar dir logf=$LAB_LOG_DIR/debootstrap-$1.log
  shift 3
  key=$(cache_key "$PROXY_SUITE" minbase "$include" "$PROXY_MIRROR" "$@")
  tar=$LAB_CACHE_DIR/$name-rootfs-$key.tar
  if [[ -s $tar ]]; then echo "$tar"; return; fi
  dir=$(mktemp -d "$LAB_CACHE_DIR/build.XXXXXX")
  log "debootstrap $PROXY_SUITE minbase + $include (about a minute; log: $logf)"
  if ! debootstrap --variant=minbase --include="$include" "$PROXY_SUITE" "$dir/rootfs" "$PROXY_MIRROR" >"$logf" 2>&1; then
    tail_log "$logf"; umount_under "$dir"; rm -rf --one-file-system "$dir"
    die "debootstrap failed; see $logf"
  fi
  umount_under "$dir/rootfs"
  "$slim" "$dir/rootfs"
  tar --numeric-owner -C "$dir/rootfs" -cf "$tar.tmp" .
  file_sha "$tar.tmp" >"$tar.sha256"
  mv "$tar.tmp" "$tar"
  rm -rf --one-file-system "$dir"
  log "cached $name rootfs $tar ($(du -h "$tar" | cut -f1))"
  echo "$tar"
}

# proxy_rootfs_tar: prints the path of the cached proxy rootfs tarball, building it if needed.
proxy_rootfs_tar() { minbase_rootfs_tar proxy "$PROXY_INCLUDE" slim_proxy_rootfs; }

# slim_debian_rootfs ROOTFS: drops what a container does not need (apt caches, docs, logs).
slim_debian_rootfs() {
  local r=$1
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
    "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/locale/* \
    "$r"/var/log/apt/* "$r"/var/log/dpkg.log "$r"/var/log/bootstrap.log "$r"/var/cache/debconf/*-old
  mkdir -p "$r"/var/lib/apt/lists/partial
  echo localhost >"$r"/etc/hostname
  : >"$r"/etc/resolv.conf
}

slim_proxy_rootfs() {
  local r=$1
  slim_debian_rootfs "$r"
  # The stream module stays available (/usr/lib/nginx/modules/ngx_stream_module.so,
  # /usr/share/nginx/modules-available/mod-stream.conf) but the default config does
  # not load it:
  # a generated config that has a stream {} block loads it itself.
  rm -f "$r"/etc/nginx/modules-enabled/50-mod-stream.conf
  # Logs go to the container's output, as in the official nginx image.
  mkdir -p "$r"/var/log/nginx "$r"/run "$r"/run/haproxy "$r"/var/lib/nginx
  ln -sf /dev/stdout "$r"/var/log/nginx/access.log
  ln -sf /dev/stderr "$r"/var/log/nginx/error.log
  chown haproxy:haproxy "$r"/run/haproxy 2>/dev/null || chroot "$r" chown haproxy:haproxy /run/haproxy || true
  # The official nginx image runs workers as user nginx, and Interlock configs say `User = "nginx"`.
  chroot "$r" getent passwd nginx >/dev/null ||
    chroot "$r" useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nginx
}

# Bump when slim_carbon_rootfs changes: it is part of the carbon rootfs's cache key.
CARBON_RECIPE=1

# carbon_rootfs_tar: prints the path of the cached carbon-cache rootfs tarball.
carbon_rootfs_tar() { minbase_rootfs_tar carbon "$CARBON_INCLUDE" slim_carbon_rootfs "recipe $CARBON_RECIPE"; }

# slim_carbon_rootfs ROOTFS: Debian's carbon-cache, set for tests: every series gets its whisper
# file at once (Debian's default creates 50 a minute), no tag database (it would call a
# graphite-web that is not there), and 1 s points kept 2 h (Debian's default keeps one point a
# minute: points of two readings in one minute would overwrite each other).
slim_carbon_rootfs() {
  local r=$1 conf=$1/etc/carbon/carbon.conf
  slim_debian_rootfs "$r"
  sed -i -e 's/^MAX_CREATES_PER_MINUTE = .*/MAX_CREATES_PER_MINUTE = inf/' \
    -e 's/^# *ENABLE_TAGS = True$/ENABLE_TAGS = False/' "$conf"
  { grep -qx 'MAX_CREATES_PER_MINUTE = inf' "$conf" && grep -qx 'ENABLE_TAGS = False' "$conf"; } ||
    die "$conf: could not set MAX_CREATES_PER_MINUTE and ENABLE_TAGS (has graphite-carbon changed?)"
  cat >"$r"/etc/carbon/storage-schemas.conf <<'SCHEMAS'
# local/carbon:lab (deploy/lab/swarm-lab.sh): one point per second, kept two hours.
[carbon]
pattern = ^carbon\.
retentions = 60:90d

[default]
pattern = .*
retentions = 1s:2h
SCHEMAS
}

# pebble_rootfs_tar: prints the path of the cached pebble rootfs tarball (pebble and
# pebble-challtestsrv, dynamically linked: a Debian base).
pebble_rootfs_tar() { minbase_rootfs_tar pebble "$PEBBLE_INCLUDE" slim_debian_rootfs; }

# app_rootfs_tar: prints the path of the cached busybox app tarball (deterministic).
app_rootfs_tar() {
  local bb ver key tar dir a
  bb=$(dpkg -L busybox-static | grep -E '^(/usr)?/bin/busybox$' | head -n1)
  [[ -x $bb ]] || die "busybox-static's /bin/busybox not found"
  ver=$(dpkg-query -W -f='${Version}' busybox-static)
  key=$(cache_key app busybox-static "$ver")
  tar=$LAB_CACHE_DIR/app-rootfs-$key.tar
  if [[ -s $tar ]]; then echo "$tar"; return; fi
  dir=$(mktemp -d "$LAB_CACHE_DIR/build.XXXXXX")
  mkdir -p "$dir"/r/{bin,etc,www,tmp,root,proc,sys,dev,var/run}
  chmod 1777 "$dir"/r/tmp
  cp "$bb" "$dir"/r/bin/busybox
  for a in $("$bb" --list); do
    [[ $a == busybox || $a == */* ]] || ln -sf busybox "$dir/r/bin/$a"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$dir"/r/etc/passwd
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir"/r/etc/group
  echo interlock-app >"$dir"/r/www/index.html
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$dir/r" -cf "$tar.tmp" .
  file_sha "$tar.tmp" >"$tar.sha256"
  mv "$tar.tmp" "$tar"
  rm -rf "$dir"
  echo "$tar"
}

# Images are written in `docker save` format (manifest.json, config JSON, layer
# tars) and streamed into `docker load` on each node: Docker 20.10's `docker import`
# rejects STOPSIGNAL, and a hand-written config gives every node the very same image
# ID. The layers are the cached rootfs tarballs themselves (symlinked, read by tar -h).

# image_label HOST REF LABEL: the label's value on that node's image ("" if none).
image_label() {
  local v
  v=$(docker -H "$1" image inspect --format "{{index .Config.Labels \"$3\"}}" "$2" 2>/dev/null) || v=
  [[ $v == '<no value>' ]] && v=
  echo "$v"
}

# all_hosts: "NAME HOST" for the manager and each worker.
all_hosts() {
  local n
  echo "manager $MANAGER_HOST"
  for n in "${LAB_NODES[@]}"; do echo "$n $(node_host "$n")"; done
}

# hosts_needing REF HASH: the node names whose REF lacks label HASH.
hosts_needing() {
  local name host
  while read -r name host; do
    [[ $(image_label "$host" "$1" "$HASH_LABEL") == "$2" ]] || echo "$name"
  done < <(all_hosts)
}

host_of() { if [[ $1 == manager ]]; then echo "$MANAGER_HOST"; else node_host "$1"; fi; }

# stage_image DIR REF CREATED CONFIG LABELS LAYER_TAR...: writes a docker-load
# directory. CONFIG and LABELS are JSON members ("Cmd":[...] and "key":"value").
stage_image() {
  local dir=$1 ref=$2 created=$3 config=$4 labels=$5 l sha diff_ids='' layers='' history='' cfg cfgsha
  shift 5
  mkdir -p "$dir"
  for l in "$@"; do
    sha=$(cached_sha "$l")
    ln -sf "$(readlink -f "$l")" "$dir/$sha.tar"
    diff_ids+="${diff_ids:+,}\"sha256:$sha\""
    layers+="${layers:+,}\"$sha.tar\""
    history+="${history:+,}{\"created\":\"$created\",\"created_by\":\"deploy/lab/swarm-lab.sh: $(basename "$l")\"}"
  done
  cfg=$(printf '{"architecture":"%s","os":"linux","created":"%s","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],%s,"Labels":{%s}},"rootfs":{"type":"layers","diff_ids":[%s]},"history":[%s]}' \
    "$(dpkg --print-architecture)" "$created" "$config" "$labels" "$diff_ids" "$history")
  cfgsha=$(printf '%s' "$cfg" | sha256sum | cut -d' ' -f1)
  printf '%s' "$cfg" >"$dir/$cfgsha.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]\n' "$cfgsha" "$ref" "$layers" >"$dir/manifest.json"
}

# load_on NODE REF DIR: loads the staged image on NODE, then drops the image REF
# pointed at before (if nothing uses it).
load_on() {
  local node=$1 ref=$2 dir=$3 host old new
  host=$(host_of "$node")
  old=$(docker -H "$host" image inspect --format '{{.Id}}' "$ref" 2>/dev/null) || old=
  tar -C "$dir" -ch . | docker -H "$host" load -q >/dev/null || die "loading $ref on $node failed"
  new=$(docker -H "$host" image inspect --format '{{.Id}}' "$ref")
  if [[ -n $old && $old != "$new" ]]; then docker -H "$host" rmi "$old" >/dev/null 2>&1 || true; fi
}

# ensure_image REF CREATED CONFIG EXTRA_LABELS LAYER_TAR...: loads REF on every node
# whose copy lacks the current content hash, in parallel. Prints the nodes it loaded on.
ensure_image() {
  local ref=$1 created=$2 config=$3 extra=$4 hash dir node l rc=0 shas=()
  shift 4
  for l in "$@"; do shas+=("$(cached_sha "$l")"); done
  hash=$(cache_key "$config" "$extra" "${shas[@]}")
  local -a nodes pids
  mapfile -t nodes < <(hosts_needing "$ref" "$hash")
  if [[ ${#nodes[@]} -eq 0 ]]; then log "$ref: up to date on all nodes"; return 0; fi
  dir=$(mktemp -d "$LAB_CACHE_DIR/build.XXXXXX")
  stage_image "$dir" "$ref" "$created" "$config" "\"$HASH_LABEL\":\"$hash\"${extra:+,$extra}" "$@"
  for node in "${nodes[@]}"; do load_on "$node" "$ref" "$dir" & pids+=($!); done
  for node in "${pids[@]}"; do wait "$node" || rc=1; done
  rm -rf "$dir"
  [[ $rc -eq 0 ]] || die "loading $ref failed"
  log "$ref: loaded on ${nodes[*]} ($(dm image inspect --format '{{.Id}}' "$ref" | cut -c1-19))"
  printf '%s\n' "${nodes[@]}"
}

created_of() { date -u -r "$1" +%Y-%m-%dT%H:%M:%SZ; }

verify_proxy_image() {
  local out
  out=$(dm run --rm "$IMG_PROXY" sh -ec '
      nginx -V 2>/tmp/v || { cat /tmp/v; exit 1; }; head -n1 /tmp/v
      haproxy -v >/tmp/v || { cat /tmp/v; exit 1; }; head -n1 /tmp/v
      nginx -t 2>/tmp/v || { cat /tmp/v; exit 1; }; echo "default config: ok"
      printf "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nevents {}\nstream { server { listen 127.0.0.1:9999; return ok; } }\n" >/tmp/s.conf
      nginx -t -c /tmp/s.conf 2>/tmp/v || { cat /tmp/v; exit 1; }; echo "stream module: ok"' 2>&1) ||
    { echo "$out" >&2; die "$IMG_PROXY does not work: see above"; }
  log "$IMG_PROXY verified: $(echo "$out" | tr '\n' ';' | sed 's/;$//')"
}

# verify_serves IMAGE PATH WANT [RUN_ARGS...]: runs IMAGE on the manager and checks that
# http://IP:PATH answers with a body matching the glob WANT.
verify_serves() {
  local image=$1 path=$2 want=$3 cid ip body='' i
  shift 3
  cid=$(dm run -d "$@" "$image") || die "$image does not start"
  ip=$(dm inspect --format '{{.NetworkSettings.IPAddress}}' "$cid")
  for ((i = 0; i < 20; i++)); do
    body=$(curl -fsS --max-time 2 "http://$ip$path" 2>/dev/null) && break
    sleep 0.25
  done
  dm rm -f "$cid" >/dev/null
  # shellcheck disable=SC2053 # $want is a glob on purpose
  [[ $body == $want ]] || die "$image did not answer http://$ip$path as expected (got: '${body:-nothing}')"
  log "$image verified: $path answers $body"
}

verify_app_image() { verify_serves "$IMG_APP" / '*interlock-app*'; }

# verify_carbon_image: runs carbon-cache on the manager, sends it a point over the plaintext
# protocol and reads it back from its whisper file.
verify_carbon_image() {
  local cid ip now i got=''
  cid=$(dm run -d "$IMG_CARBON") || die "$IMG_CARBON does not start"
  ip=$(dm inspect --format '{{.NetworkSettings.IPAddress}}' "$cid")
  now=$(date +%s)
  for ((i = 0; i < 60; i++)); do
    if { exec 7<>"/dev/tcp/$ip/2003"; } 2>/dev/null; then
      printf 'lab.verify 42 %s\n' "$now" >&7; exec 7>&-; break
    fi
    sleep 0.25
  done
  for ((i = 0; i < 40; i++)); do
    got=$(dm exec "$cid" whisper-fetch --from=$((now - 60)) /var/lib/graphite/whisper/lab/verify.wsp 2>/dev/null |
      awk -v t="$now" '$1 == t { print $2 }') && [[ -n $got ]] && break
    sleep 0.25
  done
  if [[ $got != 42.000000 ]]; then
    dm logs "$cid" 2>&1 | tail -n 20 >&2; dm rm -f "$cid" >/dev/null
    die "$IMG_CARBON did not store a point sent to $ip:2003 (got: '${got:-nothing}')"
  fi
  dm rm -f "$cid" >/dev/null
  log "$IMG_CARBON verified: a point sent to 2003 read back by whisper-fetch"
}

verify_demo_image() { verify_serves "$IMG_DEMO" :8080/ping '*"metadata":"lab-verify"*' -e METADATA=lab-verify; }

# binary_layer_tar BINARY NAME: a cached one-file layer holding BINARY as /usr/local/bin/NAME
# (only the newest such layer per NAME is kept).
binary_layer_tar() {
  local bin=$1 name=$2 sha tar dir
  sha=$(file_sha "$bin")
  tar=$LAB_CACHE_DIR/$name-bin-${sha:0:16}.tar
  if [[ ! -s $tar ]]; then
    rm -f "$LAB_CACHE_DIR/$name"-bin-*.tar "$LAB_CACHE_DIR/$name"-bin-*.tar.sha256
    dir=$(mktemp -d "$LAB_CACHE_DIR/build.XXXXXX")
    install -D -m 0755 "$bin" "$dir/usr/local/bin/$name"
    touch -r "$bin" "$dir/usr/local/bin/$name"
    tar --owner=0 --group=0 --numeric-owner -C "$dir" -cf "$tar.tmp" "./usr/local/bin/$name"
    file_sha "$tar.tmp" >"$tar.sha256"
    mv "$tar.tmp" "$tar"
    rm -rf "$dir"
  fi
  echo "$tar"
}

# ensure_binary_image REF NAME BINARY CONFIG PROXY_TAR: REF is the proxy rootfs plus a layer
# with BINARY as /usr/local/bin/NAME. Prints the nodes it loaded on.
ensure_binary_image() {
  local ref=$1 name=$2 bin=$3 config=$4 proxy_tar=$5 bin_tar bin_sha
  bin_sha=$(file_sha "$bin")
  bin_tar=$(binary_layer_tar "$bin" "$name")
  ensure_image "$ref" "$(created_of "$bin")" "$config" "\"$BINARY_LABEL\":\"$bin_sha\"" "$proxy_tar" "$bin_tar"
  log "$ref: binary $bin (sha256 ${bin_sha:0:12})"
}

ensure_images() {
  local proxy_tar app_tar carbon_tar pebble_tar changed demo_binary
  mkdir -p "$LAB_CACHE_DIR" "$LAB_LOG_DIR"
  clean_build_dirs

  proxy_tar=$(proxy_rootfs_tar)
  changed=$(ensure_image "$IMG_PROXY" "$(created_of "$proxy_tar")" \
    '"Cmd":["nginx","-g","daemon off;"],"StopSignal":"SIGQUIT"' '' "$proxy_tar")
  if grep -qx manager <<<"$changed"; then verify_proxy_image; fi

  app_tar=$(app_rootfs_tar)
  # busybox httpd as PID 1 ignores SIGTERM: without SIGKILL every stop of an app
  # task waits out the 10 s stop grace period.
  changed=$(ensure_image "$IMG_APP" "$(created_of "$app_tar")" \
    '"Cmd":["/bin/busybox","httpd","-f","-p","80","-h","/www"],"StopSignal":"SIGKILL"' '' "$app_tar")
  if grep -qx manager <<<"$changed"; then verify_app_image; fi

  # Carbon (Graphite) for the carbon plug-in's test; SIGTERM makes it close its connections.
  carbon_tar=$(carbon_rootfs_tar)
  changed=$(ensure_image "$IMG_CARBON" "$(created_of "$carbon_tar")" \
    '"Cmd":["carbon-cache","--config=/etc/carbon/carbon.conf","--debug","start"]' '' "$carbon_tar")
  if grep -qx manager <<<"$changed"; then verify_carbon_image; fi

  # pebble for the ACME test: the test gives each service its command (pebble or challtestsrv).
  pebble_tar=$(pebble_rootfs_tar)
  ensure_image "$IMG_PEBBLE" "$(created_of "$pebble_tar")" '"Cmd":["/usr/bin/pebble","-version"]' '' "$pebble_tar" >/dev/null

  if [[ -f $INTERLOCK_BINARY ]]; then
    ensure_binary_image "$IMG_OPERATOR" interlock "$INTERLOCK_BINARY" \
      '"Entrypoint":["/usr/local/bin/interlock"]' "$proxy_tar" >/dev/null
  else
    log "no operator binary at $INTERLOCK_BINARY: skipping $IMG_OPERATOR (cargo build --release, then up again)"
  fi

  # The walk-through's app, built by the same cargo build as the operator.
  demo_binary=$(dirname "$INTERLOCK_BINARY")/docker-demo
  if [[ -f $demo_binary ]]; then
    # std cannot catch SIGTERM, so docker-demo as PID 1 ignores it: SIGKILL spares every
    # stop of a demo task the 10 s grace period (it holds no state worth a clean exit).
    changed=$(ensure_binary_image "$IMG_DEMO" docker-demo "$demo_binary" \
      '"Cmd":["/usr/local/bin/docker-demo"],"StopSignal":"SIGKILL"' "$proxy_tar")
    if grep -qx manager <<<"$changed"; then verify_demo_image; fi
  else
    log "no docker-demo binary at $demo_binary: skipping $IMG_DEMO (cargo build --release --bin docker-demo, then up again)"
  fi
}

# ================================================================ env file
# node_env_lines NODE...: each node's LAB_HOST_<node> and LAB_ADDR_<node> line.
node_env_lines() {
  local n v
  for n in "$@"; do
    v=${n//-/_}
    echo "LAB_HOST_$v=$(node_host "$n")"
    echo "LAB_ADDR_$v=${LAB_NODE_ADDR[$n]}"
  done
}

write_env() {
  local f=$LAB_RUN_DIR/env
  mkdir -p "$LAB_RUN_DIR"
  {
    echo "# written by deploy/lab/swarm-lab.sh up, $(date -Is)"
    echo "LAB_MANAGER_HOST=$MANAGER_HOST"
    echo "LAB_MANAGER_ADDR=$LAB_MANAGER_ADDR"
    echo "LAB_MANAGER_NAME=$(uname -n)"
    echo "LAB_NODES=\"${LAB_NODES[*]}\""
    node_env_lines "${LAB_NODES[@]}"
    echo "LAB_IMAGE_PROXY=$IMG_PROXY"
    echo "LAB_IMAGE_APP=$IMG_APP"
    echo "LAB_IMAGE_OPERATOR=$IMG_OPERATOR"
    echo "LAB_IMAGE_DEMO=$IMG_DEMO"
    echo "LAB_IMAGE_CARBON=$IMG_CARBON"
    echo "LAB_IMAGE_PEBBLE=$IMG_PEBBLE"
  } >"$f.tmp"
  mv "$f.tmp" "$f"
  log "wrote $f"
}

# ================================================================ the high-availability lab
# A second swarm, apart from the main lab so that a test may stop its Raft leader's engine:
# three managers and a worker, each an extra dockerd in its own namespaces (as the workers above), on bridge
# ilab1 (lib.sh). Its images are the main lab's, copied from the host's engine.

HA_LOCK=/run/interlock-lab-ha.lock

# ha_answering: the first HA manager whose engine answers (nothing if none does).
ha_answering() {
  local n
  for n in "${HA_MANAGERS[@]}"; do daemon_ok "$(node_host "$n")" && { echo "$n"; return; }; done
  return 0
}

# ha_swarm_ready: the managers are Ready managers of one swarm, one of them its leader, and the
# workers Ready workers of it.
ha_swarm_ready() {
  local n out
  n=$(ha_answering); [[ -n $n ]] || return 1
  out=$(timeout 20 docker -H "$(node_host "$n")" node ls --format '{{.Hostname}} {{.Status}} {{.ManagerStatus}}' 2>/dev/null) || return 1
  [[ $(grep -c . <<<"$out") -eq ${#HA_NODES[@]} ]] || return 1
  for n in "${HA_MANAGERS[@]}"; do grep -qE "^$n Ready (Leader|Reachable)\$" <<<"$out" || return 1; done
  for n in "${HA_WORKERS[@]}"; do grep -qE "^$n Ready ?\$" <<<"$out" || return 1; done
  grep -q ' Leader$' <<<"$out"
}

wait_ha_ready() {
  local i
  for ((i = 0; i < $1 * 2; i++)); do ha_swarm_ready && return 0; sleep 0.5; done
  return 1
}

# ha_wipe: stops the HA dockerds and removes their state (the namespaces and bridge stay).
ha_wipe() {
  local n pids=()
  for n in "${HA_NODES[@]}"; do mapfile -t -O "${#pids[@]}" pids < <(worker_dockerd_pids "$n"); done
  if [[ ${#pids[@]} -gt 0 ]]; then log "stopping HA dockerds ${pids[*]}"; stop_pids 60 "${pids[@]}"; fi
  for n in "${HA_NODES[@]}"; do
    stop_worker_leftovers "$n"
    umount_under "/run/docker-$n" "/var/lib/docker-$n"
    rm -rf --one-file-system "/run/docker-$n" "/var/lib/docker-$n"
    rm -f "/run/docker-$n.pid" "/run/docker-$n.sock"
  done
}

# ha_start_daemon NODE: starts the node's engine (keeping its swarm state) and waits for it.
ha_start_daemon() {
  local pid
  pid=$(start_worker "$1")
  [[ -z $pid ]] && return 0
  wait_daemon "$(node_host "$1")" 60 "$pid" "$LAB_LOG_DIR/dockerd-$1.log"
  wait_sock_bound "$1" 10 || die "$1: /run/docker.sock in its dockerd's mount namespace is not its own after 10 s"
  log "$1: dockerd up"
}

# ha_images: the main lab's proxy, app and operator images on every HA node that lacks them.
ha_images() {
  local refs=("$IMG_PROXY" "$IMG_APP" "$IMG_OPERATOR" "$IMG_PEBBLE") ref n want need=() tar pids=() rc=0
  for ref in "${refs[@]}"; do
    dm image inspect "$ref" >/dev/null 2>&1 || die "$ref is not on the host's engine: run \`$0 up\` first"
  done
  for n in "${HA_NODES[@]}"; do
    for ref in "${refs[@]}"; do
      want=$(dm image inspect --format '{{.Id}}' "$ref")
      if [[ $(dn "$n" image inspect --format '{{.Id}}' "$ref" 2>/dev/null) != "$want" ]]; then need+=("$n"); break; fi
    done
  done
  if [[ ${#need[@]} -eq 0 ]]; then log "HA images: up to date"; return; fi
  mkdir -p "$LAB_CACHE_DIR"
  tar=$LAB_CACHE_DIR/ha-images.tar
  dm save -o "$tar" "${refs[@]}"
  for n in "${need[@]}"; do dn "$n" load -q -i "$tar" >/dev/null & pids+=($!); done
  for n in "${pids[@]}"; do wait "$n" || rc=1; done
  rm -f "$tar"
  [[ $rc -eq 0 ]] || die "loading the HA images failed"
  log "HA images loaded on ${need[*]}"
}

write_ha_env() {
  local f=$HA_ENV
  mkdir -p "$LAB_RUN_DIR"
  {
    echo "# written by deploy/lab/swarm-lab.sh ha-up, $(date -Is)"
    echo "LAB_HA_NODES=\"${HA_NODES[*]}\""
    echo "LAB_HA_MANAGERS=\"${HA_MANAGERS[*]}\""
    echo "LAB_HA_WORKERS=\"${HA_WORKERS[*]}\""
    node_env_lines "${HA_NODES[@]}"
  } >"$f.tmp"
  mv "$f.tmp" "$f"
  log "wrote $f"
}

cmd_ha_up() {
  local t0 n token first=${HA_NODES[0]}; t0=$(now_ms)
  phase ha-network
  ensure_bridge "$HA_BRIDGE" "$HA_HOST_ADDR"
  ensure_forward_rule "$HA_BRIDGE"
  for n in "${HA_NODES[@]}"; do ensure_node_netns "$n"; done
  phase_end
  phase ha-swarm
  if ha_swarm_ready && [[ -z $(for n in "${HA_NODES[@]}"; do worker_sock_bound "$n" || echo "$n"; done) ]]; then
    log "reusing the HA swarm"
  else
    ha_wipe
    MANAGER_CLUSTER_ID=
    for n in "${HA_NODES[@]}"; do ha_start_daemon "$n"; done
    dn "$first" swarm init --advertise-addr "${LAB_NODE_ADDR[$first]}" >/dev/null
    token=$(dn "$first" swarm join-token -q manager)
    for n in "${HA_MANAGERS[@]:1}"; do
      dn "$n" swarm join --token "$token" --advertise-addr "${LAB_NODE_ADDR[$n]}" "${LAB_NODE_ADDR[$first]}:2377" >/dev/null
      log "$n: joined as a manager"
    done
    token=$(dn "$first" swarm join-token -q worker)
    for n in "${HA_WORKERS[@]}"; do
      dn "$n" swarm join --token "$token" --advertise-addr "${LAB_NODE_ADDR[$n]}" "${LAB_NODE_ADDR[$first]}:2377" >/dev/null
      log "$n: joined as a worker"
    done
    wait_ha_ready 60 || { dn "$first" node ls >&2 || true; die "the HA swarm's nodes did not all become Ready"; }
  fi
  phase_end
  phase ha-images; ha_images; phase_end
  ensure_operator_network dn "$(ha_answering)"
  write_ha_env
  docker -H "$(node_host "$(ha_answering)")" node ls
  log "ha-up: done in $(fmt_ms $(($(now_ms) - t0)))"
}

# ha_node_arg NODE: NODE, checked to be one of the HA lab's.
ha_node_arg() {
  local n
  for n in "${HA_NODES[@]}"; do [[ ${1:-} == "$n" ]] && return 0; done
  die "expected one of: ${HA_NODES[*]} (got '${1:-}')"
}

# ha-stop NODE [--kill]: stops the node's engine (SIGTERM: its containers stop with it), or with
# --kill, as a dying machine: SIGKILL to dockerd, then its containerd and containers. Its swarm
# state stays, for ha-start.
cmd_ha_stop() {
  ha_node_arg "$1"
  local pids
  pids=$(worker_dockerd_pids "$1")
  if [[ ${2:-} == --kill ]]; then
    # shellcheck disable=SC2086
    [[ -z $pids ]] || kill -KILL $pids 2>/dev/null || true
  elif [[ -n ${2:-} ]]; then
    die "ha-stop: unknown argument '$2' (usage: ha-stop NODE [--kill])"
  else
    # shellcheck disable=SC2086
    [[ -z $pids ]] || stop_pids 30 $pids
  fi
  stop_worker_leftovers "$1"
  remove_stale_vxlans "$1"
  log "$1: engine stopped${2:+ ($2)}"
}

# An overlay's VXLAN device falls back into the node's namespace when its engine dies with the
# overlay's sandbox; the restarted engine then cannot join that network again ("error creating
# vxlan interface: file exists", Docker's bug, seen after `ha-stop`): remove such leftovers.
remove_stale_vxlans() {
  local dev
  for dev in $(ip netns exec "$1" ip -o link show type vxlan 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
    ip netns exec "$1" ip link del "$dev" 2>/dev/null && log "$1: removed stale overlay device $dev"
  done
}

# ha-start NODE: starts the node's engine again with its swarm state; waits until the swarm
# shows all its nodes Ready.
cmd_ha_start() {
  ha_node_arg "$1"
  local other
  other=$(ha_answering)
  [[ -z $other ]] || MANAGER_CLUSTER_ID=$(dn "$other" info --format '{{.Swarm.Cluster.ID}}')
  remove_stale_vxlans "$1"
  ha_start_daemon "$1"
  wait_ha_ready 90 || { dn "$1" node ls >&2 || true; die "$1 did not rejoin the HA swarm as a Ready manager"; }
  log "$1: back in the HA swarm"
}

cmd_ha_down() {
  local n
  ha_wipe
  for n in "${HA_NODES[@]}"; do
    if [[ -e /run/netns/$n ]]; then ip netns del "$n" 2>/dev/null || rm -f "/run/netns/$n"; fi
    ip link del "$(veth_name "$n")" 2>/dev/null || true
  done
  remove_forward_rule "$HA_BRIDGE" 2>/dev/null || true
  ip link del "$HA_BRIDGE" 2>/dev/null || true
  rm -f "$HA_ENV"
  log "ha-down: done"
}

# The operator network, created as the walk-through creates it (plain overlay, attachable)
# before any core runs: a core that has to create it makes it encrypted
# (`OperatorNetworkEncrypted`), and IPsec carries nothing between this lab's nodes (worker
# engines run without iptables), so the lab provides it, as a user following the walk-through
# does. Args: the docker wrapper (and its node) to create it through.
ensure_operator_network() {
  if ! "$@" network inspect interlock >/dev/null 2>&1; then
    "$@" network create -d overlay --attachable interlock >/dev/null
    log "operator network interlock: created (unencrypted, as the walk-through does)"
  fi
}

# ================================================================ subcommands
cmd_up() {
  INTERLOCK_BINARY=$REPO_ROOT/target/release/interlock
  while [[ $# -gt 0 ]]; do
    case $1 in
      --interlock-binary)
        [[ $# -ge 2 ]] || die "--interlock-binary needs a PATH"
        [[ -f $2 ]] || die "--interlock-binary: no file at $2"
        INTERLOCK_BINARY=$(readlink -f "$2"); shift 2 ;;
      --interlock-binary=*)
        [[ -f ${1#*=} ]] || die "--interlock-binary: no file at ${1#*=}"
        INTERLOCK_BINARY=$(readlink -f "${1#*=}"); shift ;;
      *) die "up: unknown argument '$1' (usage: up [--interlock-binary PATH])" ;;
    esac
  done
  local t0 n; t0=$(now_ms)
  phase packages; ensure_packages; phase_end
  phase manager
  ensure_bridge
  start_manager
  ensure_forward_rule
  ensure_manager_swarm
  phase_end
  phase workers
  for n in "${LAB_NODES[@]}"; do ensure_node_netns "$n"; done
  start_workers
  phase_end
  phase swarm; ensure_swarm; phase_end
  phase images; ensure_images; phase_end
  ensure_operator_network dm
  write_env
  dm node ls
  local summary; summary=$(printf '%s, ' "${PHASE_TIMES[@]}")
  log "up: done in $(fmt_ms $(($(now_ms) - t0))) (${summary%, })"
}

stop_manager_if_ours() {
  local pid
  if [[ ! -f $LAB_MANAGER_MARKER ]]; then
    if daemon_ok "$MANAGER_HOST"; then log "manager dockerd was not started by the lab; leaving it running"; fi
    return
  fi
  pid=$(live_pid_from_file "$MANAGER_PIDFILE" dockerd)
  [[ -n $pid ]] || pid=$(live_pid_from_file "$LAB_MANAGER_MARKER" dockerd)
  if [[ -n $pid ]]; then
    log "stopping manager dockerd (pid $pid)"
    stop_pids 60 "$pid"
  fi
}

cmd_down() {
  local purge=0 n t0 veth
  case ${1:-} in --purge) purge=1 ;; '') ;; *) die "down: unknown argument '$1' (usage: down [--purge])" ;; esac
  t0=$(now_ms)
  cmd_ha_down
  # The manager leaves first: with its workers still up that takes ~1 s (~8 s
  # after they are gone), and the workers then shut down faster too.
  if daemon_ok "$MANAGER_HOST" && [[ $(dm info --format '{{.Swarm.LocalNodeState}}') != inactive ]]; then
    dm swarm leave --force >/dev/null || warn "the manager could not leave its swarm"
    log "manager left the swarm"
  fi
  remove_forward_rule 2>/dev/null || true
  # All worker dockerds at once: each takes a few seconds to shut down.
  local -a pids=()
  for n in "${LAB_NODES[@]}"; do mapfile -t -O "${#pids[@]}" pids < <(worker_dockerd_pids "$n"); done
  if [[ ${#pids[@]} -gt 0 ]]; then log "stopping worker dockerds ${pids[*]}"; stop_pids 60 "${pids[@]}"; fi
  for n in "${LAB_NODES[@]}"; do
    stop_worker_leftovers "$n"
    umount_under "/run/docker-$n" "/var/lib/docker-$n"
    rm -rf --one-file-system "/run/docker-$n" "/var/lib/docker-$n"
    rm -f "/run/docker-$n.pid" "/run/docker-$n.sock"
    if [[ -e /run/netns/$n ]]; then ip netns del "$n" 2>/dev/null || rm -f "/run/netns/$n"; fi
    veth=$(veth_name "$n")
    ip link del "$veth" 2>/dev/null || true
    log "$n: removed"
  done
  ip link del "$LAB_BRIDGE" 2>/dev/null || true
  stop_manager_if_ours
  rm -rf "$LAB_RUN_DIR"
  if [[ $purge -eq 1 ]]; then rm -rf "$LAB_CACHE_DIR"; log "purged $LAB_CACHE_DIR"; fi
  log "down: done in $(fmt_ms $(($(now_ms) - t0)))"
}

cmd_status() {
  local ok=0 manager=0 n host state
  if daemon_ok "$MANAGER_HOST"; then
    manager=1
    read -r state _ < <(dm info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeAddr}}')
    echo "manager ($(uname -n)): answers on $MANAGER_HOST, swarm $state"
  else
    echo "manager ($(uname -n)): NOT answering on $MANAGER_HOST"; ok=1
  fi
  for n in "${LAB_NODES[@]}"; do
    host=$(node_host "$n")
    if ! daemon_ok "$host"; then echo "$n: NOT answering on $host"; ok=1
    elif [[ $(id -u) -ne 0 ]]; then echo "$n: answers on $host (${LAB_NODE_ADDR[$n]}); its tasks' docker.sock not checked (needs root)"
    elif worker_sock_bound "$n"; then echo "$n: answers on $host (${LAB_NODE_ADDR[$n]}); its tasks' /var/run/docker.sock is its own"
    else echo "$n: answers on $host (${LAB_NODE_ADDR[$n]}), but its tasks' /var/run/docker.sock is NOT its own (up repairs it)"; ok=1; fi
  done
  if [[ $manager -eq 1 ]]; then dm node ls || ok=1; fi
  if [[ $ok -eq 0 ]] && nodes_ready; then echo "swarm: healthy (4 nodes Ready)"; else echo "swarm: NOT healthy"; ok=1; fi
  return $ok
}

cmd_exec() {
  [[ $# -ge 2 ]] || die "usage: exec NODE CMD..."
  local n=$1; shift
  netns_ok "$n" || die "no network namespace '$n' (is the lab up? nodes: ${LAB_NODES[*]})"
  # Also enter the node dockerd's UTS namespace, so `hostname` says the node's name.
  local pid uts=()
  pid=$(worker_dockerd_pids "$n" | head -n1)
  [[ -z $pid ]] || uts=(--uts="/proc/$pid/ns/uts")
  exec nsenter --net="/run/netns/$n" "${uts[@]}" -- "$@"
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
    up|down)
      [[ $(id -u) -eq 0 ]] || die "$cmd must run as root"
      exec 9>"$LAB_LOCK"
      flock -w 900 9 || die "another swarm-lab.sh up/down holds $LAB_LOCK"
      "cmd_$cmd" "$@" ;;
    ha-up|ha-down|ha-stop|ha-start)
      [[ $(id -u) -eq 0 ]] || die "$cmd must run as root"
      exec 9>"$HA_LOCK"
      flock -w 300 9 || die "another swarm-lab.sh $cmd holds $HA_LOCK"
      "cmd_${cmd//-/_}" "$@" ;;
    status) cmd_status "$@" ;;
    exec) cmd_exec "$@" ;;
    -h|--help|help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
