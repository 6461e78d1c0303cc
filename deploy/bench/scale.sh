#!/usr/bin/env bash
# 10,000 routes at the speed of 10 (issue 21, item 4): a hitless cluster at 100, 1,000 and 10,000
# hosts on the project's Swarm lab, on nginx and on HAProxy, measured, not asserted.
#
# The core runs as the Swarm service `scale-core` (local/interlock:lab, the lab's image; --up
# builds the current tree into it), RUST_LOG=interlock::core::controller=debug,interlock=info,
# with one extension: cluster `scale`, HitlessServiceUpdate = true, its proxy `scale-proxy` on
# lb-00 (host-mode port 8130), PollInterval 3 s. The kind is switched by re-deploying the core
# with another TOML (same cluster name, same port: the apps stay as they are): before every
# (shape, N, kind) step the core, its proxy and extension services and their configs are removed
# and a new core is created, so each step starts from a fresh proxy.
#
# Apps (local/interlock-app:lab, busybox httpd on 80, on app-00; one shape's at a time) on the overlay network
# `sc-net` (a /16: every service takes a VIP on it), routed by com.docker.lb.* labels:
# - `sc-stable` (stable.sc): the app under steady load;
# - shape A: `sc-a`, one task carrying all N hosts (a0.sc ... a<N-1>.sc) in com.docker.lb.hosts;
# - shape B: `sc-b-I` (bI.sc), N services with one host each, grown 100 -> 1,000 -> 10,000
#   (created with xargs -P 4, --detach --no-resolve-image, as soak.sh; never recreated), all with
#   --replicas 0 but the sampled ones (I = 0, N/2, N-1 of every size): a 0-replica host is still
#   read, parsed, rendered and answered (503) by the proxy. The creation rate is printed; a growth
#   projected to take more than B_MAX_CREATE seconds (default 1200) is not attempted, and the
#   steps it would feed are printed as not reached.
#
# Per (kind, shape, N), printed:
# - first convergence: A: from `docker service create sc-a` (core and proxy already serving
#   stable.sc) to the first 200 of a0, a<N/2> and a<N-1> through the proxy (the issue's own lab
#   figure); B: the services exist first, so from `docker service create scale-core` to the
#   first 200 of b0, b<N/2>, b<N-1>: that includes the core's start, the proxy and extension
#   services' creation and the proxy task's start (`stable.sc` alone, no N hosts, takes that long
#   too: printed as the floor);
# - new app, label-to-served: REPS (default 5) running unlabelled apps `sc-new-R` (created once,
#   on sc-net) get hosts/port/network/service_cluster labels with `docker service update
#   --label-add` (no task restart); from the command returning to the first 200 for the host;
# - new app, create-to-served: a fresh labelled `docker service create sc-fresh-R`, also
#   published in host mode on app-00 (port 8141+R); from before the command to the first 200
#   through the proxy, and to the app's own first 200 on its published port (the app's share);
# - existing app's label change: sc-new-R's host x -> x-x2, to the first 200 on the new host;
# - proxy memory: the proxy container's processes on lb-00 (host PIDs: the container's memory
#   cgroup's cgroup.procs, the same set `docker top` lists), summed Pss from
#   /proc/PID/smaps_rollup (RSS double-counts shared pages and zones between master and
#   workers; the RSS sum is printed beside it), sampled every ~75 ms: steady = median over 9 s
#   idle before the changes, reload = max while the changes go through (processes the extension
#   execs in the container, `nginx -t` and `haproxy -c`, count: they are the proxy's memory too);
# - the core: pass time (its `pass requests ... took_ms= check_ms=` debug lines) without the time
#   its proxy checks took (`nginx -t`/`haproxy -c` on the whole config: the proxy binary's cost,
#   printed apart), median / max over the idle window and over the changes; the read of the
#   swarm (read_ms: Docker's answers and their parsing) and the rest, the core's own work; its VmRSS
#   (steady median, max);
# - failed requests on stable.sc: 4 curl workers, a new connection per request
#   (`Connection: close`, 20 requests/s each), during all the changes above (5 x REPS: label
#   added, fresh created, label changed, fresh removed, labels removed): requests, non-200
#   answers and connection errors.
# Then one markdown table, a row per (kind, shape, N), each figure with its ratio to the same
# kind and shape's 100-host row (the first size), and the issue's targets as columns beside them.
#
# Raw samples (per step: core log, memory samples, timings, load answers) go to a work dir it
# prints. Everything it creates is removed on exit (KEEP_APPS=1 keeps the sc-b-* apps for a next
# run, which reuses them). It refuses to run while another interlock core runs in the lab.
#
# Usage: deploy/bench/scale.sh [--up]   (root)
#        deploy/bench/scale.sh --table WORK_DIR   (the table again, from a run's results.txt)
#   SIZES="100 1000 10000" KINDS="nginx haproxy" SHAPES="A B" REPS=5 B_MAX_CREATE=1200
set -euo pipefail
cd "$(dirname "$0")/../.."
export LC_ALL=C
SIZES=${SIZES:-100 1000 10000}
KINDS=${KINDS:-nginx haproxy}
SHAPES=${SHAPES:-A B}
REPS=${REPS:-5}
B_MAX_CREATE=${B_MAX_CREATE:-1200}
KEEP_APPS=${KEEP_APPS:-0}
BIN=${CARGO_TARGET_DIR:-target}/release/interlock
export DOCKER_HOST=unix:///var/run/docker.sock
LB00=unix:///run/docker-lb-00.sock
CORE=scale-core
PROXY=scale-proxy
EXT=scale-ext
NET=sc-net
PORT=8130
IMG=local/interlock-app:lab
OWNED=label=com.docker.interlock.managed-by=interlock
if [ "${1:-}" = "--table" ]; then
  # Only the table, from an earlier run's results (SIZES, KINDS and SHAPES as that run's).
  WORK=${2:?usage: scale.sh --table WORK_DIR}
else
  WORK=$(mktemp -d /tmp/interlock-scale.XXXXXX)
fi
RESULTS=$WORK/results.txt

if [ "${1:-}" = "--table" ]; then
  :
elif [ "$(id -u)" != 0 ]; then
  echo "scale: run as root (the lab's sockets and /proc of its nodes)" >&2
  exit 1
elif [ "${1:-}" = "--up" ]; then
  cargo build --release --quiet --bin interlock
  deploy/lab/swarm-lab.sh up --interlock-binary "$BIN" >/dev/null
fi
if [ "${1:-}" = "--table" ]; then
  :
elif ! status=$(deploy/lab/swarm-lab.sh status 2>&1) || ! grep -q 'swarm: healthy' <<<"$status"; then
  printf '%s\n' "$status" >&2
  echo "scale: the Swarm lab is not healthy; start it with deploy/lab/swarm-lab.sh up (root), or pass --up" >&2
  exit 1
fi
# shellcheck disable=SC1091
[ "${1:-}" = "--table" ] || source /run/interlock-lab/env
# shellcheck disable=SC2154 # from /run/interlock-lab/env
LB=${LAB_ADDR_lb_00:-}:$PORT
# shellcheck disable=SC2154
APP_ADDR=${LAB_ADDR_app_00:-}

log() { echo "scale: $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
code() { curl -s -o /dev/null -m 2 -w '%{http_code}' -H "Host: $1" "http://$LB/" 2>/dev/null || true; }
direct() { curl -s -o /dev/null -m 1 -w '%{http_code}' "http://$APP_ADDR:$1/" 2>/dev/null || true; }
# wait_code HOST CODE TIMEOUT: polls every 50 ms; fails (without exiting) when it never answers.
wait_code() {
  local deadline=$(($(date +%s) + $3))
  until [ "$(code "$1")" = "$2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { log "$1 never answered $2 within $3 s"; return 1; }
    sleep 0.05
  done
}
# docker, retried when Swarm says "update out of sequence" (another writer touched the service).
dk() {
  local i out
  for i in 1 2 3 4 5; do
    if out=$(docker "$@" 2>&1); then printf '%s' "$out"; return 0; fi
    grep -q 'out of sequence' <<<"$out" || break
    sleep 0.2
  done
  printf '%s\n' "$out" >&2
  return 1
}
record() { echo "$KIND $SHAPE $N $*" >>"$RESULTS"; } # record KEY VALUE...

# ---------------------------------------------------------------------------------------------
# Background jobs (their PIDs only), and clean-up.
bg_pids=()
stop_bg() {
  local p
  for p in "${bg_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${bg_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  bg_pids=()
}
gone() { [ -z "$(docker ps -q --filter "label=com.docker.swarm.service.name=$1")" ] && [ -z "$(docker -H "$LB00" ps -q --filter "label=com.docker.swarm.service.name=$1")" ]; }
wait_until() { # wait_until SECONDS CMD...: polls CMD every 0.5 s
  local deadline=$(($(date +%s) + $1)); shift
  until "$@"; do [ "$(date +%s)" -lt "$deadline" ] || return 1; sleep 0.5; done
}
# The core first (until its container stops it re-creates what is removed), then its services
# and configs.
remove_core() {
  docker service rm "$CORE" >/dev/null 2>&1 || true
  wait_until 60 gone "$CORE" || log "the core's container still runs after 60 s"
  docker service ls -q --filter "$OWNED" | xargs -r docker service rm >/dev/null 2>&1 || true
  wait_until 60 gone "$PROXY" || log "the proxy's container still runs after 60 s"
  wait_until 30 gone "$EXT" || true
  local i
  for i in 1 2 3 4 5 6; do
    docker config ls -q --filter "$OWNED" | xargs -r docker config rm >/dev/null 2>&1 || true
    docker config ls -q --filter name=sc-config- | xargs -r docker config rm >/dev/null 2>&1 || true
    [ -z "$(docker config ls -q --filter "$OWNED")" ] && break
    sleep 2
  done
}
rm_prefix() { # services named PREFIX*
  docker service ls --format '{{.Name}}' --filter "name=$1" | grep "^$1" | xargs -r -P 4 -n 50 docker service rm >/dev/null 2>&1 || true
}
cleanup() {
  set +e
  [ -z "${STEP:-}" ] || touch "$STEP/load.stop"
  for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  stop_bg
  log "cleaning up (raw samples stay in $WORK)"
  remove_core
  for p in sc-stable sc-a sc-new- sc-fresh-; do rm_prefix "$p"; done
  if [ "$KEEP_APPS" = 1 ]; then log "KEEP_APPS=1: the sc-b-* apps and $NET stay"; else
    rm_prefix sc-b-
    wait_until 120 bash -c "[ -z \"\$(docker ps -aq --filter label=com.docker.swarm.service.name=sc-stable)\" ]" || true
    wait_until 60 bash -c "docker network rm $NET >/dev/null 2>&1 || ! docker network inspect $NET >/dev/null 2>&1" ||
      log "network $NET is still there"
  fi
  docker secret ls --format '{{.Name}}' | grep "^$EXT-token-" | xargs -r docker secret rm >/dev/null 2>&1
  log "left in the lab: $(docker service ls -q | wc -l) services"
}
if [ "${1:-}" != "--table" ]; then
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------
# Another operator in the lab would fight over the same objects: refuse. A core is a process
# named interlock running `run` or `start` (in a container or not), or a service whose command
# says so. An earlier run's own core (scale-core) is removed first.
docker service rm "$CORE" >/dev/null 2>&1 || true
wait_until 60 gone "$CORE" || true
others=$(for f in /proc/[0-9]*; do
  [ "$(cat "$f/comm" 2>/dev/null)" = interlock ] || continue
  tr '\0' ' ' <"$f/cmdline" 2>/dev/null | grep -Eq '(^| )(run|start|apply)( |$)' && echo "pid ${f#/proc/}: $(tr '\0' ' ' <"$f/cmdline")"
done || true)
others+=$(docker service ls --format '{{.ID}} {{.Name}}' | grep -v ' sc-b-' | cut -d' ' -f1 |
  xargs -r docker service inspect --format '{{.Spec.Name}} {{json .Spec.TaskTemplate.ContainerSpec.Args}}' |
  grep -E '"(run|start)"' || true)
if [ -n "$others" ]; then
  printf 'scale: another interlock core runs in the lab; stop it first:\n%s\n' "$others" >&2
  trap - EXIT
  exit 1
fi
remove_core
docker service ls -q --filter "$OWNED" | xargs -r docker service rm >/dev/null 2>&1 || true
for p in sc-stable sc-a sc-new- sc-fresh-; do rm_prefix "$p"; done
docker network create -d overlay interlock >/dev/null 2>&1 || true
if [ "$(docker network inspect "$NET" -f '{{(index .IPAM.Config 0).Subnet}}' 2>/dev/null)" != 10.202.0.0/16 ]; then
  rm_prefix sc-b-
  wait_until 60 bash -c "docker network rm $NET >/dev/null 2>&1 || ! docker network inspect $NET >/dev/null 2>&1" || true
  docker network create -d overlay --subnet 10.202.0.0/16 "$NET" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
# The core's TOML per kind.
toml() {
  cat <<EOF
ListenAddr = ":8080"
DockerURL = "unix:///var/run/docker.sock"
PollInterval = "3s"
EndpointOverride = "$CORE:8080"

[Extensions.scale]
  Image = "local/interlock:lab"
  Args = ["extension"]
  ServiceName = "$EXT"
  ProxyImage = "local/interlock-proxy:lab"
  ProxyServiceName = "$PROXY"
  ProxyArgs = []
  ServiceCluster = "scale"
  HitlessServiceUpdate = true
  ProxyConstraints = ["node.hostname==lb-00"]
  PublishMode = "host"
  PublishedPort = $PORT
  TargetPort = 80
  PublishedSSLPort = 0
  TargetSSLPort = 0
EOF
  if [ "$1" = haproxy ]; then
    cat <<EOF
  ProxyKind = "haproxy"
  ProxyConfigPath = "/usr/local/etc/haproxy/haproxy.cfg"
  ProxyStopSignal = "SIGUSR1"
EOF
  else
    cat <<EOF
  ProxyConfigPath = "/etc/nginx/nginx.conf"
  [Extensions.scale.Config]
    User = "nginx"
    PidPath = "/var/run/proxy.pid"
    WorkerProcesses = 1
    RlimitNoFile = 65535
    MaxConnections = 2048
EOF
  fi
}

# deploy_core KIND: a core of that kind (after remove_core); its log streamed to $STEP/core.log.
deploy_core() {
  toml "$1" >"$WORK/$1.toml"
  local config
  config="sc-config-$1-$(date +%s%N)"
  docker config create "$config" "$WORK/$1.toml" >/dev/null
  docker service create --detach --quiet --no-resolve-image --name "$CORE" \
    --mount type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock --network interlock \
    --constraint node.role==manager --config "src=$config,target=/config.toml" \
    --env RUST_LOG=interlock::core::controller=debug,interlock=info \
    local/interlock:lab run -c /config.toml >/dev/null
}
core_container() { docker ps -q --filter "label=com.docker.swarm.service.name=$CORE" | head -1; }
proxy_container() { docker -H "$LB00" ps -q --filter "label=com.docker.swarm.service.name=$PROXY" | head -1; }
stream_core_log() {
  local c
  wait_until 60 bash -c "[ -n \"\$(docker ps -q --filter label=com.docker.swarm.service.name=$CORE)\" ]" || return 0
  c=$(core_container)
  docker logs -f "$c" >"$STEP/core.log" 2>&1 &
  bg_pids+=($!)
}

# sample_memory: every ~75 ms, "epoch pss_kb rss_kb processes core_rss_kb" into $STEP/mem.txt.
sample_memory() {
  local c pid cg procs core_pid p files
  c=$(proxy_container)
  pid=$(docker -H "$LB00" inspect -f '{{.State.Pid}}' "$c")
  cg=/sys/fs/cgroup/memory$(awk -F: '$2 == "memory" { print $3 }' "/proc/$pid/cgroup")/cgroup.procs
  [ -r "$cg" ] || { log "no memory cgroup for the proxy ($cg): using docker top"; cg=; }
  core_pid=$(docker inspect -f '{{.State.Pid}}' "$(core_container)")
  (
    set +e
    n=0
    while :; do
      if [ -n "$cg" ]; then procs=$(cat "$cg" 2>/dev/null)
      elif [ $((n % 10)) = 0 ]; then procs=$(docker -H "$LB00" top "$c" -eo pid 2>/dev/null | tail -n +2); fi
      n=$((n + 1))
      files=()
      for p in $procs; do files+=("/proc/$p/smaps_rollup"); done
      { printf '%s ' "$(now)"; awk -v k="${#files[@]}" '/^Rss:/ { r += $2 } /^Pss:/ { p += $2 } END { printf "%d %d %d ", p, r, k }' \
          "${files[@]}" /dev/null 2>/dev/null
        awk '/^VmRSS/ { print $2 }' "/proc/$core_pid/status" 2>/dev/null || echo 0
      } >>"$STEP/mem.txt"
      sleep 0.075
    done
  ) &
  bg_pids+=($!)
}

# Steady load on stable.sc: 4 workers, a new connection per request; answers in $STEP/load-W.txt.
start_load() {
  : >"$STEP/load.stop"; rm -f "$STEP/load.stop"
  local w i urls=()
  for ((i = 0; i < 20; i++)); do urls+=(-o /dev/null "http://$LB/"); done
  for w in 1 2 3 4; do
    (
      while [ ! -e "$STEP/load.stop" ]; do
        curl -s -m 2 --rate 20/s -H 'Host: stable.sc' -H 'Connection: close' \
          -w '%{http_code}\n' "${urls[@]}" >>"$STEP/load-$w.txt" 2>/dev/null || true
      done
    ) &
    load_pids+=($!)
  done
}
stop_load() {
  touch "$STEP/load.stop"
  local p
  for p in "${load_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  load_pids=()
}
load_pids=()

# ---------------------------------------------------------------------------------------------
# The apps.
app() { # app NAME REPLICAS [docker service create options...]
  local name=$1 replicas=$2; shift 2
  dk service create --detach --quiet --no-resolve-image --name "$name" --replicas "$replicas" --network "$NET" \
    --constraint node.hostname==app-00 "$@" "$IMG" >/dev/null
}
routed() { # the routing labels of HOST
  echo "--label com.docker.lb.hosts=$1 --label com.docker.lb.port=80 --label com.docker.lb.network=$NET --label com.docker.lb.service_cluster=scale"
}
# B's apps with a task: every size's first, middle and last (the sampled hosts).
RUNNING=" $(for n in 100 1000 10000 $SIZES; do echo "0 $((n / 2)) $((n - 1))"; done | tr ' ' '\n' | sort -un | tr '\n' ' ')"
b_args() {
  local i=$1 r=0
  [[ $RUNNING == *" $i "* ]] && r=1
  echo "--detach --quiet --no-resolve-image --name sc-b-$i --replicas $r --network $NET --constraint node.hostname==app-00 \
--label com.docker.lb.hosts=b$i.sc --label com.docker.lb.port=80 --label com.docker.lb.network=$NET \
--label com.docker.lb.service_cluster=scale $IMG"
}
export -f b_args
export RUNNING NET IMG

# shellcheck disable=SC2046 # routed is a list of words
app sc-stable 1 $(routed stable.sc)
for ((r = 1; r <= REPS; r++)); do app "sc-new-$r" 1; done
fi
b_rate=

# grow_b N: creates the sc-b-I missing below N; fails when the projected time is over the limit.
grow_b() {
  local n=$1 have missing t0 secs
  have=$(docker service ls --format '{{.Name}}' --filter name=sc-b- | grep -c '^sc-b-' || true)
  missing=$((n - have))
  [ "$missing" -gt 0 ] || return 0
  if [ -n "$b_rate" ] && awk -v m="$missing" -v r="$b_rate" -v l="$B_MAX_CREATE" 'BEGIN { exit !(m / r > l) }'; then
    log "B: not growing to $n: $missing services at $b_rate/s would take $(awk -v m="$missing" -v r="$b_rate" 'BEGIN { printf "%.0f", m / r }') s (B_MAX_CREATE=$B_MAX_CREATE)"
    echo "B N=$n not reached: $missing more services at the measured $b_rate services/s would take $(awk -v m="$missing" -v r="$b_rate" 'BEGIN { printf "%.0f", m / r }') s, over B_MAX_CREATE=$B_MAX_CREATE s" >>"$WORK/notes.txt"
    return 1
  fi
  log "B: creating $missing services (to $n)"
  t0=$(now)
  docker service ls --format '{{.Name}}' --filter name=sc-b- | sed -n 's/^sc-b-//p' | sort -n >"$WORK/b-have.txt"
  # shellcheck disable=SC2016 # expanded by the inner bash
  seq 0 $((n - 1)) | sort | comm -23 - <(sort "$WORK/b-have.txt") |
    xargs -P 4 -I{} bash -c 'docker service create $(b_args {}) >/dev/null 2>&1 || docker service create $(b_args {}) >/dev/null'
  secs=$(since "$t0")
  b_rate=$(awk -v m="$missing" -v s="$secs" 'BEGIN { printf "%.1f", m / s }')
  log "B: created $missing services in $secs s ($b_rate/s)"
  echo "B: created $missing services (to $n) in $secs s: $b_rate services/s" >>"$WORK/notes.txt"
}

# ---------------------------------------------------------------------------------------------
# One step: KIND SHAPE N.
served_all() { # HOST...: waits for each to answer 200 (600 s in all); fails when one never does
  local h deadline=$(($(date +%s) + 600))
  for h in "$@"; do
    until [ "$(code "$h")" = 200 ]; do
      [ "$(date +%s)" -lt "$deadline" ] || { log "$h never served"; return 1; }
      sleep 0.05
    done
  done
}

step() {
  KIND=$1 SHAPE=$2 N=$3
  STEP=$WORK/$KIND-$SHAPE-$N
  mkdir -p "$STEP"
  local t0 h samples r host port tp ta t_start
  t_start=$(now)
  log "== $KIND, shape $SHAPE, $N hosts"
  if [ "$SHAPE" = A ]; then
    rm_prefix sc-a
    wait_until 60 bash -c "[ -z \"\$(docker service ls -q --filter name=sc-a)\" ]" || true
  fi
  remove_core
  t0=$(now)
  deploy_core "$KIND"
  stream_core_log
  if ! served_all stable.sc; then record converge_floor NA; record converge NA; return 0; fi
  record converge_floor "$(since "$t0")"
  if [ "$SHAPE" = A ]; then
    samples="a0.sc a$((N / 2)).sc a$((N - 1)).sc"
    t0=$(now)
    dk service create --detach --quiet --no-resolve-image --name sc-a --replicas 1 --network "$NET" \
      --constraint node.hostname==app-00 --label "com.docker.lb.hosts=$(seq -f 'a%.0f.sc' 0 $((N - 1)) | paste -sd,)" \
      --label com.docker.lb.port=80 --label "com.docker.lb.network=$NET" --label com.docker.lb.service_cluster=scale "$IMG" >/dev/null
  else
    samples="b0.sc b$((N / 2)).sc b$((N - 1)).sc"
  fi
  # shellcheck disable=SC2086
  if served_all $samples; then record converge "$(since "$t0")"; else record converge NA; return 0; fi
  sleep 5 # let the passes after the convergence settle
  sample_memory
  echo "idle_start $(now) $(wc -l <"$STEP/core.log")" >"$STEP/phases.txt"
  sleep 9
  echo "changes_start $(now) $(wc -l <"$STEP/core.log")" >>"$STEP/phases.txt"
  start_load
  local changes=0 tag="$KIND-$SHAPE-$N"
  # (a) label-to-served on a running unlabelled app.
  for ((r = 1; r <= REPS; r++)); do
    host="new-$tag-$r.sc"
    # shellcheck disable=SC2046
    dk service update --detach --quiet $(routed "$host" | sed 's/--label /--label-add /g') "sc-new-$r" >/dev/null
    t0=$(now); changes=$((changes + 1))
    if wait_code "$host" 200 120; then record label_new "$(since "$t0")"; else record label_new NA; fi
  done
  # An existing app's host label changed.
  for ((r = 1; r <= REPS; r++)); do
    host="new-$tag-$r-x2.sc"
    dk service update --detach --quiet --label-add "com.docker.lb.hosts=$host" "sc-new-$r" >/dev/null
    t0=$(now); changes=$((changes + 1))
    if wait_code "$host" 200 120; then record label_change "$(since "$t0")"; else record label_change NA; fi
  done
  # (b) create-to-served, and the app's own answer on its published port.
  for ((r = 1; r <= REPS; r++)); do
    host="fresh-$tag-$r.sc" port=$((8140 + r)) tp='' ta=
    t0=$(now)
    # shellcheck disable=SC2046
    app "sc-fresh-$r" 1 --publish "mode=host,target=80,published=$port" $(routed "$host")
    changes=$((changes + 1))
    local deadline=$(($(date +%s) + 120))
    while { [ -z "$tp" ] || [ -z "$ta" ]; } && [ "$(date +%s)" -lt "$deadline" ]; do
      [ -n "$tp" ] || [ "$(code "$host")" != 200 ] || tp=$(since "$t0")
      [ -n "$ta" ] || [ "$(direct "$port")" != 200 ] || ta=$(since "$t0")
      sleep 0.05
    done
    record create_served "${tp:-NA}"; record create_app "${ta:-NA}"
  done
  # Removals: the fresh apps, then the new apps' labels (back to unlabelled for the next step).
  for ((r = 1; r <= REPS; r++)); do
    docker service rm "sc-fresh-$r" >/dev/null; changes=$((changes + 1))
    sleep 0.5
  done
  for ((r = 1; r <= REPS; r++)); do
    dk service update --detach --quiet --label-rm com.docker.lb.hosts --label-rm com.docker.lb.port \
      --label-rm com.docker.lb.network --label-rm com.docker.lb.service_cluster "sc-new-$r" >/dev/null
    changes=$((changes + 1))
    sleep 0.5
  done
  wait_code "new-$tag-$REPS-x2.sc" 404 60 || true
  stop_load
  echo "changes_end $(now) $(wc -l <"$STEP/core.log")" >>"$STEP/phases.txt"
  stop_bg
  record changes "$changes"
  # Load: requests, non-200 answers (000 is a connection error or timeout).
  cat "$STEP"/load-*.txt >"$STEP/load.txt" 2>/dev/null || : >"$STEP/load.txt"
  record requests "$(wc -l <"$STEP/load.txt")"
  record failed "$(grep -vc '^200$' "$STEP/load.txt" || true)"
  record conn_errors "$(grep -c '^000$' "$STEP/load.txt" || true)"
  # Memory and the core, by phase.
  local is ie ce il cl ce_l
  read -r _ is il <<<"$(sed -n 1p "$STEP/phases.txt")"
  read -r _ ie cl <<<"$(sed -n 2p "$STEP/phases.txt")"
  read -r _ ce ce_l <<<"$(sed -n 3p "$STEP/phases.txt")"
  awk -v a="$is" -v b="$ie" '$1 >= a && $1 < b && $4 > 0' "$STEP/mem.txt" >"$STEP/mem-idle.txt"
  awk -v a="$ie" -v b="$ce" '$1 >= a && $1 <= b && $4 > 0' "$STEP/mem.txt" >"$STEP/mem-changes.txt"
  record pss_steady "$(awk '{ print $2 / 1024 }' "$STEP/mem-idle.txt" | median)"
  record rss_steady "$(awk '{ print $3 / 1024 }' "$STEP/mem-idle.txt" | median)"
  record pss_reload "$(awk '{ print $2 / 1024 }' "$STEP/mem-changes.txt" | max)"
  record rss_reload "$(awk '{ print $3 / 1024 }' "$STEP/mem-changes.txt" | max)"
  record core_rss "$(awk '{ print $5 / 1024 }' "$STEP/mem-idle.txt" | median)"
  record core_rss_max "$(cat "$STEP/mem-idle.txt" "$STEP/mem-changes.txt" | awk '{ print $5 / 1024 }' | max)"
  record mem_samples "$(wc -l <"$STEP/mem.txt")"
  passes "$il" "$cl" | while read -r v; do record pass_idle "$v"; done
  passes "$cl" "$ce_l" | while read -r v; do record pass_changes "$v"; done
  checks "$cl" "$ce_l" | while read -r v; do record check_changes "$v"; done
  reads "$cl" "$ce_l" | while read -r v; do record read_changes "$v"; done
  own "$il" "$cl" | while read -r v; do record own_idle "$v"; done
  own "$cl" "$ce_l" | while read -r v; do record own_changes "$v"; done
  record step_seconds "$(since "$t_start")"
  report_step
}
# passes FROM TO: each pass's own time, without the proxy binary's checks it ran (check_ms);
# checks FROM TO: the checks' time of the passes that ran any.
# reads FROM TO: how long each pass's read of the swarm took (Docker's answers and their parsing);
# own FROM TO: each pass without its checks and its read: the core's own work.
pass_lines() {
  sed -n "$(($1 + 1)),$2p" "$STEP/core.log" |
    sed -nE 's/.*pass requests.*took_ms=([0-9]+)( check_ms=([0-9]+))?( read_ms=([0-9]+))?.*/\1 \3 \5/p'
}
passes() { pass_lines "$@" | awk '{ print $1 - ($2 == "" ? 0 : $2) }'; }
checks() { pass_lines "$@" | awk '$2 != "" && $2 > 0 { print $2 }'; }
reads() { pass_lines "$@" | awk '$3 != "" { print $3 }'; }
own() { pass_lines "$@" | awk '$3 != "" { print $1 - $2 - $3 }'; }
median() { sort -n | awk '$1 != "NA" { a[++n] = $1 } END { if (n) print a[int((n + 1) / 2)]; else print "NA" }'; }
max() { sort -n | awk '$1 != "NA" { m = $1; n++ } END { if (n) print m; else print "NA" }'; }
# vals KEY [KIND SHAPE N]: the recorded values of KEY for the step.
vals() { awk -v k="$1" -v K="${2:-$KIND}" -v S="${3:-$SHAPE}" -v N="${4:-$N}" '$1 == K && $2 == S && $3 == N && $4 == k { print $5 }' "$RESULTS"; }
nas() { vals "$@" | grep -c NA || true; }
fmt() { awk -v v="$1" 'BEGIN { if (v == "NA" || v == "") print "NA"; else printf "%.2f", v }'; }

report_step() {
  echo
  echo "== $KIND, shape $SHAPE ($([ "$SHAPE" = A ] && echo "one service, $N hosts" || echo "$N services, one host each")), $REPS repetitions; seconds unless said"
  echo "first convergence: $(fmt "$(vals converge)") s (the core's start to stable.sc served: $(fmt "$(vals converge_floor)") s)"
  echo "new app, label-to-served: median $(fmt "$(vals label_new | median)"), max $(fmt "$(vals label_new | max)") (never served: $(nas label_new)); all: $(vals label_new | tr '\n' ' ')"
  echo "new app, create-to-served: median $(fmt "$(vals create_served | median)"), max $(fmt "$(vals create_served | max)"); the app itself answered after median $(fmt "$(vals create_app | median)"), max $(fmt "$(vals create_app | max)")"
  echo "existing app's label change: median $(fmt "$(vals label_change | median)"), max $(fmt "$(vals label_change | max)") (never served: $(nas label_change))"
  echo "proxy memory (MB): Pss steady $(fmt "$(vals pss_steady)"), max during the changes $(fmt "$(vals pss_reload)"); RSS sum steady $(fmt "$(vals rss_steady)"), max $(fmt "$(vals rss_reload)") ($(vals mem_samples) samples)"
  echo "the core's proxy checks during the changes (ms, per pass that ran one): median $(vals check_changes | median), max $(vals check_changes | max)"
  echo "the core's read of the swarm during the changes (ms): median $(vals read_changes | median), max $(vals read_changes | max); its own work (pass without checks and read): idle median $(vals own_idle | median), during the changes median $(vals own_changes | median), max $(vals own_changes | max)"
  echo "core pass without its proxy checks (ms): idle median $(vals pass_idle | median), max $(vals pass_idle | max) ($(vals pass_idle | wc -l) passes); during the changes median $(vals pass_changes | median), max $(vals pass_changes | max) ($(vals pass_changes | wc -l) passes)"
  echo "core RSS (MB): steady $(fmt "$(vals core_rss)"), max $(fmt "$(vals core_rss_max)")"
  echo "stable.sc under load during $(vals changes) changes: $(vals requests) requests, $(vals failed) failed ($(vals conn_errors) connection errors)"
  echo "step took $(fmt "$(vals step_seconds)") s; raw samples in $STEP"
}

# ---------------------------------------------------------------------------------------------
if [ "${1:-}" != "--table" ]; then
: >"$RESULTS"
: >"$WORK/notes.txt"
log "work dir: $WORK (SIZES=\"$SIZES\" KINDS=\"$KINDS\" SHAPES=\"$SHAPES\" REPS=$REPS)"
t_all=$(now)
for SHAPE in $SHAPES; do
  # One shape's apps at a time: A's N-host service would otherwise stay in B's cluster.
  if [ "$SHAPE" = B ]; then rm_prefix sc-a; else rm_prefix sc-b-; fi
  for N in $SIZES; do
    if [ "$SHAPE" = B ] && ! grow_b "$N"; then
      for KIND in $KINDS; do record not_reached 1; done
      continue
    fi
    for KIND in $KINDS; do step "$KIND" "$SHAPE" "$N"; done
  done
done
remove_core
fi

# ---------------------------------------------------------------------------------------------
# The table: each figure with its ratio to the same kind and shape's first size.
first=${SIZES%% *}
cell() { # cell KEY AGG KIND SHAPE N: the figure (AGG: median, max or one), and (×ratio) to the first size
  local v b
  if [ "$2" = one ]; then v=$(vals "$1" "$3" "$4" "$5" | head -1); b=$(vals "$1" "$3" "$4" "$first" | head -1)
  else v=$(vals "$1" "$3" "$4" "$5" | "$2"); b=$(vals "$1" "$3" "$4" "$first" | "$2"); fi
  awk -v v="${v:-NA}" -v b="${b:-NA}" -v same="$([ "$5" = "$first" ] && echo 1)" 'BEGIN {
    if (v == "NA") { printf "NA"; exit }
    printf (v >= 100 ? "%.0f" : "%.2f"), v
    if (!same && b != "NA" && b > 0) printf " (%.1f×)", v / b }'
}
echo
echo "== scale on the lab: $(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null || echo '?'); total $(fmt "$(since "${t_all:-$(now)}")") s"
[ ! -s "$WORK/notes.txt" ] || sed 's/^/note: /' "$WORK/notes.txt"
echo "figures: median / max of $REPS; (×r) = against the same kind and shape at $first hosts"
echo
echo "| kind | shape | hosts | first convergence s | new app label-to-served s (target ≤ 1 median) | create-to-served s / app itself s | label change s (target ≤ 0.5 median) | proxy Pss MB steady (target ≤ 150) | proxy Pss MB max at reload (target ≤ 2× steady) | core pass ms without checks, idle / changes (target ≤ 100) | core RSS MB (target ≤ 50) | stable app: failed / requests (target 0) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for SHAPE in $SHAPES; do
  for N in $SIZES; do
    for KIND in $KINDS; do
      if [ -n "$(vals not_reached)" ]; then
        echo "| $KIND | $SHAPE | $N | not reached (see note) | | | | | | | | |"; continue
      fi
      [ -n "$(vals converge)" ] || continue
      reload_ratio=$(awk -v a="$(vals pss_reload)" -v b="$(vals pss_steady)" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.2f", a / b }')
      echo "| $KIND | $SHAPE | $N | $(cell converge one "$KIND" "$SHAPE" "$N") \
| $(cell label_new median "$KIND" "$SHAPE" "$N") / $(cell label_new max "$KIND" "$SHAPE" "$N") \
| $(cell create_served median "$KIND" "$SHAPE" "$N") / $(cell create_app median "$KIND" "$SHAPE" "$N") \
| $(cell label_change median "$KIND" "$SHAPE" "$N") / $(cell label_change max "$KIND" "$SHAPE" "$N") \
| $(cell pss_steady one "$KIND" "$SHAPE" "$N") \
| $(cell pss_reload one "$KIND" "$SHAPE" "$N") (${reload_ratio}× steady) \
| $(cell pass_idle median "$KIND" "$SHAPE" "$N") / $(cell pass_changes median "$KIND" "$SHAPE" "$N"), max $(cell pass_changes max "$KIND" "$SHAPE" "$N") \
| $(cell core_rss one "$KIND" "$SHAPE" "$N"), max $(cell core_rss_max one "$KIND" "$SHAPE" "$N") \
| $(vals failed) / $(vals requests) |"
    done
  done
done
echo
echo "raw samples: $WORK"
