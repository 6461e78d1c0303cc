#!/usr/bin/env bash
# Route latency on the project's Swarm lab, measured, not asserted.
#
# - operator: time from `docker service create` of a labelled app until the first 200 through
#   its cluster's proxy, with `interlock run` watching;
# - floor: the same Swarm rolling the same proxy onto a new config by a direct API call
#   (`docker service update --config-rm/--config-add`), operator stopped: what any
#   config-object-based router pays at least;
# - their ratio, medians of RUNS runs each, and the Docker API requests of an idle pass.
#
# Usage: deploy/bench/route-latency.sh   (root; RUNS=5 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-5}
CONFIG=deploy/examples/service-clusters.lab.toml
BIN=target/release/interlock
LOG=$(mktemp /tmp/interlock-bench.XXXXXX.log)

cargo build --release --quiet --bin interlock
deploy/lab/swarm-lab.sh up --interlock-binary "$BIN" >/dev/null
# shellcheck disable=SC1091
source /run/interlock-lab/env
LB=$LAB_ADDR_lb_00

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
code() { curl -s -o /dev/null -m 1 -w '%{http_code}' -H "Host: $1" "http://$LB/" || true; }
wait_code() { # host code timeout-seconds
  local deadline=$(( $(date +%s) + $3 ))
  until [ "$(code "$1")" = "$2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "bench: $1 never answered $2" >&2; return 1; }
    sleep 0.05
  done
}
operator_pid=
start_operator() {
  RUST_LOG=interlock::core::controller=debug,interlock=info "$BIN" run -c "$CONFIG" >>"$LOG" 2>&1 &
  operator_pid=$!
}
stop_operator() { [ -z "$operator_pid" ] || { kill "$operator_pid"; wait "$operator_pid" || true; operator_pid=; }; }
cleanup() {
  stop_operator
  for i in $(seq 1 "$RUNS"); do docker service rm "bench-$i" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

# The walk-through's set-up, and demo-east as the route the floor reuses.
docker node update --label-add nodetype=loadbalancer --label-add region=us-east lb-00 >/dev/null
docker node update --label-add nodetype=loadbalancer --label-add region=us-west lb-01 >/dev/null
for n in interlock demo-east demo-west; do docker network create -d overlay "$n" >/dev/null 2>&1 || true; done
docker service rm demo-east >/dev/null 2>&1 || true
start_operator
# The walk-through pins the proxy by hand; interlock leaves the constraints as set.
until docker service inspect interlock-proxy-us-east >/dev/null 2>&1; do sleep 0.2; done
docker service update --detach --quiet --constraint-add node.labels.nodetype==loadbalancer \
  --constraint-add node.labels.region==us-east interlock-proxy-us-east >/dev/null
docker service create -q --detach --name demo-east --network demo-east --constraint node.hostname==app-00 \
  --label com.docker.lb.hosts=demo-east.local --label com.docker.lb.port=80 \
  --label com.docker.lb.service_cluster=us-east local/interlock-app:lab >/dev/null 2>&1
wait_code demo-east.local 200 90
sleep 8 # let the rollout settle and old configs go

# Idle passes: requests per pass, from the loop's own debug lines.
sleep 10
idle=$(grep 'pass requests' "$LOG" | tail -3 | sed -E 's/.*reads=([0-9]+) writes=([0-9]+).*/\1 \2/' | sort -u)

# Operator runs: a new app on the cluster's existing network.
operator=()
for i in $(seq 1 "$RUNS"); do
  t0=$(now)
  docker service create -q --detach --name "bench-$i" --network demo-east --constraint node.hostname==app-00 \
    --label "com.docker.lb.hosts=bench-$i.local" --label com.docker.lb.port=80 \
    --label com.docker.lb.service_cluster=us-east local/interlock-app:lab >/dev/null 2>&1
  wait_code "bench-$i.local" 200 60
  operator+=("$(since "$t0")")
  docker service rm "bench-$i" >/dev/null
  wait_code "bench-$i.local" 404 60
  sleep 6 # settle: the removal rolls the proxy too
done
stop_operator
sleep 6

# Floor runs: the same proxy rolled onto a config that adds one host, by hand.
floor=()
floor_configs=()
for i in $(seq 1 "$RUNS"); do
  current=$(docker service inspect interlock-proxy-us-east --format '{{(index .Spec.TaskTemplate.ContainerSpec.Configs 0).ConfigName}}')
  data=$(docker config inspect "$current" --format '{{printf "%s" .Spec.Data}}')
  new="bench-floor-$i-$$"
  # The host's server_name, and its entry in the shared map when it is a shared host (issue 21).
  data="${data/server_name demo-east.local/server_name demo-east.local floor-$i.local}"
  data="${data/ demo-east.local up-demo-east.local;/ demo-east.local up-demo-east.local; floor-$i.local up-demo-east.local;}"
  printf '%s\n' "$data" | docker config create "$new" - >/dev/null
  floor_configs+=("$new")
  t0=$(now)
  docker service update --detach --quiet --config-rm "$current" \
    --config-add "source=$new,target=/etc/nginx/nginx.conf" interlock-proxy-us-east >/dev/null 2>&1
  wait_code "floor-$i.local" 200 60
  floor+=("$(since "$t0")")
  sleep 6
done

# Hand the proxy back to the operator (it rolls it onto its own config), then drop the floor configs.
start_operator
wait_code demo-east.local 200 60
sleep 8
for c in "${floor_configs[@]}"; do docker config rm "$c" >/dev/null 2>&1 || true; done
docker service rm demo-east >/dev/null 2>&1 || true

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
om=$(median "${operator[@]}")
fm=$(median "${floor[@]}")
echo "route latency on the lab ($RUNS runs each; seconds)"
printf '  run  operator  floor\n'
for i in $(seq 0 $((RUNS - 1))); do printf '  %3d  %8.2f  %5.2f\n' $((i + 1)) "${operator[$i]}" "${floor[$i]}"; done
printf '  median operator %.2f s, floor %.2f s, ratio %.2f\n' "$om" "$fm" "$(awk -v a="$om" -v b="$fm" 'BEGIN { print a / b }')"
echo "idle pass: Docker API requests (reads writes): $idle"
echo "log: $LOG"
