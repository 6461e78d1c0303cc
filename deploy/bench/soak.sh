#!/usr/bin/env bash
# Soak and scale on the project's Swarm lab, measured, not asserted (docs/measured.md).
#
# SERVICES labelled app services (default 1,000) across CLUSTERS service clusters (default 10),
# RUNNING of them with a task (the rest with 0 replicas: their labels are read, parsed and
# rendered like any other), one nginx proxy per cluster on lb-00/lb-01 (host-mode ports
# 8100+N). `interlock run` (the release binary, a host process against the manager) starts on
# the whole set, then DURATION seconds (default 600) of continuous churn, one change every
# CHURN_EVERY seconds (default 1): a host label changed, an app with a task scaled 1 <-> 2, an
# app removed and created again. Printed at the end:
# - pass time p50 / p99 / max (from the core's per-pass debug line), passes, requests per pass;
# - interlock's RSS (VmRSS every 10 s): first, max and last after the initial convergence, and
#   the slope of a least-squares line through the samples (flat means about 0 MB/min);
# - Docker requests while idle: after the churn and 70 s to settle, IDLE seconds (default 60)
#   without changes.
#
# Usage: deploy/bench/soak.sh   (root; SERVICES=… CLUSTERS=… RUNNING=… DURATION=… to change)
#
# Afterwards, reset the lab (`deploy/lab/swarm-lab.sh down`; the next `up` or `deploy/test.sh`
# builds it again from the image cache): after several soaks on one swarm its allocator once ran
# out of addresses on the `interlock` network ("could not find an available IP while allocating
# VIP"), and the feature tests' proxies then never started.
set -euo pipefail
cd "$(dirname "$0")/../.."
SERVICES=${SERVICES:-1000}
CLUSTERS=${CLUSTERS:-10}
RUNNING=${RUNNING:-100}
DURATION=${DURATION:-600}
CHURN_EVERY=${CHURN_EVERY:-1}
IDLE=${IDLE:-60}
BIN=target/release/interlock
WORK=$(mktemp -d /tmp/interlock-soak.XXXXXX)
CONFIG=$WORK/soak.toml
LOG=$WORK/interlock.log
RSS=$WORK/rss.txt
PREFIX=soak-app
export DOCKER_HOST=unix:///var/run/docker.sock

cargo build --release --quiet --bin interlock
deploy/lab/swarm-lab.sh up --interlock-binary "$BIN" >/dev/null

log() { echo "soak: $*" >&2; }
now() { date +%s.%N; }

operator_pid=
cleanup() {
  # Its own process group (setsid below): a WRAP's children go with it.
  [ -z "$operator_pid" ] || { kill -TERM -- "-$operator_pid" 2>/dev/null; wait "$operator_pid" 2>/dev/null || true; }
  log "removing the apps and what interlock made (log and samples stay in $WORK); reset the lab before the tests: deploy/lab/swarm-lab.sh down"
  docker service ls -q --filter "name=$PREFIX-" | xargs -r -n 50 docker service rm >/dev/null 2>&1 || true
  docker service ls -q --filter label=com.docker.interlock.managed-by=interlock | xargs -r docker service rm >/dev/null 2>&1 || true
  sleep 5
  docker config ls -q --filter label=com.docker.interlock.managed-by=interlock | xargs -r docker config rm >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Other operators in the lab would fight over the same objects: a core an earlier soak left
# running makes the figures meaningless.
for f in /proc/[0-9]*; do
  if [ "$(cat "$f/comm" 2>/dev/null)" = interlock ] && tr '\0' ' ' <"$f/cmdline" 2>/dev/null | grep -q 'interlock-soak\.'; then
    log "an earlier soak's interlock still runs (pid ${f#/proc/}): stop it first"; exit 1
  fi
done
# Other operators in the lab would fight over the same objects.
for s in interlock interlock-hitless interlock_core il-fault-core; do docker service rm "$s" >/dev/null 2>&1 || true; done
docker service ls -q --filter label=com.docker.interlock.managed-by=interlock | xargs -r docker service rm >/dev/null 2>&1 || true
docker network create -d overlay interlock >/dev/null 2>&1 || true
# A /16: every service takes an address (its VIP) on the network, and a /24 runs out at about 250.
if [ "$(docker network inspect soak-apps -f '{{(index .IPAM.Config 0).Subnet}}' 2>/dev/null)" != 10.201.0.0/16 ]; then
  docker network rm soak-apps >/dev/null 2>&1 || true
  docker network create -d overlay --subnet 10.201.0.0/16 soak-apps >/dev/null
fi

{
  echo 'ListenAddr = "127.0.0.1:18089"'
  echo 'DockerURL = "unix:///var/run/docker.sock"'
  echo 'PollInterval = "3s"'
  echo '[Extensions]'
  for ((c = 0; c < CLUSTERS; c++)); do
    cat <<EOF
  [Extensions.soak$c]
    Image = "local/interlock:lab"
    Args = ["extension"]
    ProxyImage = "local/interlock-proxy:lab"
    ProxyArgs = []
    ProxyConfigPath = "/etc/nginx/nginx.conf"
    ServiceCluster = "soak$c"
    ProxyConstraints = ["node.hostname==lb-0$((c % 2))"]
    PublishMode = "host"
    PublishedPort = $((8100 + c))
    TargetPort = 80
    PublishedSSLPort = 0
    TargetSSLPort = 0
    [Extensions.soak$c.Config]
      User = "nginx"
      PidPath = "/var/run/proxy.pid"
      WorkerProcesses = 1
      RlimitNoFile = 65535
      MaxConnections = 2048
EOF
  done
} >"$CONFIG"

# app_args I: the create arguments of app I (cluster I % CLUSTERS; the first RUNNING have a task).
app_args() {
  local i=$1 replicas=0
  [ "$i" -lt "$RUNNING" ] && replicas=1
  echo "--detach --quiet --no-resolve-image --name $PREFIX-$i --replicas $replicas --network soak-apps --constraint node.hostname==app-00 \
--label com.docker.lb.hosts=app$i.soak.local --label com.docker.lb.port=80 --label com.docker.lb.network=soak-apps \
--label com.docker.lb.service_cluster=soak$((i % CLUSTERS)) local/interlock-app:lab"
}
export -f app_args
export PREFIX RUNNING CLUSTERS

t0=$(now)
log "creating $SERVICES services ($RUNNING with a task) in $CLUSTERS clusters"
existing=$(docker service ls --filter "name=$PREFIX-" --format '{{.Name}}' | wc -l)
if [ "$existing" -ne "$SERVICES" ]; then
  docker service ls -q --filter "name=$PREFIX-" | xargs -r -n 50 docker service rm >/dev/null 2>&1 || true
  sleep 3
  # shellcheck disable=SC2016 # expanded by the inner bash
  seq 0 $((SERVICES - 1)) | xargs -P 4 -I{} bash -c 'docker service create $(app_args {}) >/dev/null'
fi
log "created in $(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.0f", a - b }') s"

# WRAP: a command to run interlock under (a heap profiler, say: WRAP="heaptrack -o /tmp/soak.heap").
# shellcheck disable=SC2086
RUST_LOG=interlock::core::controller=debug,interlock=info setsid ${WRAP:-} "$BIN" run -c "$CONFIG" >"$LOG" 2>&1 &
operator_pid=$!
# The interlock process itself (under a WRAP, a child of it), found by its unique config path.
interlock_pid() {
  local f
  for f in /proc/[0-9]*; do
    [ "$(cat "$f/comm" 2>/dev/null)" = interlock ] && tr '\0' ' ' <"$f/cmdline" 2>/dev/null | grep -qF "$CONFIG" &&
      { echo "${f#/proc/}"; return; }
  done
}
sample_rss() {
  local kb
  kb=$(awk '/VmRSS/ { print $2 }' "/proc/$(interlock_pid)/status" 2>/dev/null) || return 0
  [ -z "$kb" ] || echo "$(date +%s) $(awk -v k="$kb" 'BEGIN { printf "%.1f", k / 1024 }')" >>"$RSS"
}

# Converged: every proxy service exists and a pass wrote nothing.
t0=$(now)
until [ "$(docker service ls --filter label=com.docker.interlock.managed-by=interlock --filter name=interlock-proxy- -q | wc -l)" -eq "$CLUSTERS" ] &&
  tail -n 3 "$LOG" | grep -q 'pass requests.*writes=0'; do
  kill -0 "$operator_pid" || { tail -n 20 "$LOG"; log "interlock exited"; exit 1; }
  sleep 1
done
converged=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
log "converged on $SERVICES services in ${converged} s; churning for $DURATION s"
start_line=$(wc -l <"$LOG")
: >"$RSS"
sample_rss

churn_end=$(( $(date +%s) + DURATION ))
next_rss=$(( $(date +%s) + 10 ))
changes=0 n=0
while [ "$(date +%s)" -lt "$churn_end" ]; do
  kill -0 "$operator_pid" || { tail -n 20 "$LOG"; log "interlock exited during the churn"; exit 1; }
  i=$((RANDOM % SERVICES))
  case $((n % 3)) in
    0) docker service update --detach --quiet --label-add "com.docker.lb.hosts=app$i-v$n.soak.local" "$PREFIX-$i" >/dev/null ;;
    1) j=$((RANDOM % RUNNING))
       if [ $((n % 2)) -eq 0 ]; then r=2; else r=1; fi
       docker service scale --detach "$PREFIX-$j=$r" >/dev/null 2>&1 ;;
    # shellcheck disable=SC2046 # app_args is a list of words
    2) docker service rm "$PREFIX-$i" >/dev/null && docker service create $(app_args "$i") >/dev/null ;;
  esac
  changes=$((changes + 1)) n=$((n + 1))
  [ "$(date +%s)" -lt "$next_rss" ] || { sample_rss; next_rss=$(( $(date +%s) + 10 )); }
  sleep "$CHURN_EVERY"
done
sample_rss
churn_line=$(wc -l <"$LOG")
log "churn done ($changes changes); idle for $IDLE s"
# Let the last changes settle, and any app's fast-polling window (60 s, core::controller's SETTLE_WINDOW) end.
sleep 70
unsettled=$(docker service ls --filter "name=$PREFIX-" --format '{{.Name}} {{.Replicas}}' |
  awk '{ split($2, r, "/"); if (r[1] != r[2]) print }')
idle_line=$(wc -l <"$LOG")
sleep "$IDLE"
sample_rss

passes() { sed -n "$(($1 + 1)),$2p" "$LOG" | grep 'pass requests' | sed -E 's/.*reads=([0-9]+) writes=([0-9]+) took_ms=([0-9]+).*/\1 \2 \3/'; }
passes "$start_line" "$churn_line" >"$WORK/churn-passes.txt"
passes "$idle_line" "$(wc -l <"$LOG")" >"$WORK/idle-passes.txt"

echo
echo "== soak: $SERVICES services ($RUNNING with a task) in $CLUSTERS clusters, $DURATION s of churn ($changes changes), release build"
echo "first convergence: ${converged} s"
sort -n -k3 "$WORK/churn-passes.txt" | awk '
  { t[NR] = $3; r += $1; w += $2 }
  END {
    if (NR == 0) { print "no passes logged"; exit }
    p50 = t[int((NR - 1) * 0.50) + 1]; p99 = t[int((NR - 1) * 0.99) + 1]
    printf "passes during the churn: %d; pass time p50 %d ms, p99 %d ms, max %d ms\n", NR, p50, p99, t[NR]
    printf "requests per pass: %.1f reads, %.2f writes (mean)\n", r / NR, w / NR
  }'
awk '
  { n++; t[n] = $1; m[n] = $2; if ($2 > max) max = $2; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2 }
  END {
    slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    printf "interlock RSS: first %.1f MB, max %.1f MB, last %.1f MB; slope %.3f MB/min over %d samples\n", m[1], max, m[n], slope * 60, n
  }' "$RSS"
[ -z "$unsettled" ] || echo "apps whose tasks were not all running when the idle phase began: $(echo "$unsettled" | tr '\n' ',' | sed 's/,$//')"
awk -v secs="$IDLE" '{ n++; r += $1; w += $2 } END { printf "idle %d s: %d passes, %d reads, %d writes (%.1f requests/min)\n", secs, n, r, w, (r + w) * 60 / secs }' "$WORK/idle-passes.txt"
