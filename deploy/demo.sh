#!/usr/bin/env bash
# The main job on a fresh machine (root): the service-clusters walk-through, for real.
#
# A local 4-node Swarm (manager + lb-00, lb-01, app-00), the walk-through's node labels and
# networks, interlock deployed as the walk-through deploys it (a service pinned to a manager,
# its TOML in a Docker config, the Docker socket mounted), the two demo apps, and real requests
# through each service cluster's proxy. It leaves everything running; `deploy/lab/swarm-lab.sh
# down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin interlock --bin docker-demo
deploy/lab/swarm-lab.sh up --interlock-binary target/release/interlock
# shellcheck disable=SC1091
source /run/interlock-lab/env

step() { printf '\n== %s\n' "$*"; }

step "node labels (as in the walk-through)"
docker node update --label-add nodetype=loadbalancer --label-add region=us-east lb-00
docker node update --label-add nodetype=loadbalancer --label-add region=us-west lb-01

step "networks"
for n in interlock demo-east demo-west; do docker network create -d overlay "$n" 2>/dev/null || echo "$n exists"; done

step "interlock, as a service on a manager"
config=deploy/examples/service-clusters.lab.toml
target/release/interlock validate -c "$config"
docker service rm interlock >/dev/null 2>&1 || true
docker config rm service.interlock.conf >/dev/null 2>&1 || true
docker config create service.interlock.conf "$config"
docker service create --detach --name interlock \
  --label com.docker.interlock.lab-demo=true \
  --mount src=/var/run/docker.sock,dst=/var/run/docker.sock,type=bind \
  --network interlock \
  --constraint node.role==manager \
  --config src=service.interlock.conf,target=/config.toml \
  local/interlock:lab -D run -c /config.toml

step "the demo apps"
for region in east west; do
  docker service rm "demo-$region" >/dev/null 2>&1 || true
  docker config rm "demo-$region-body" >/dev/null 2>&1 || true
  echo "{\"app\":\"demo-$region\",\"metadata\":\"us-$region\"}" | docker config create "demo-$region-body" - >/dev/null
  docker service create --detach --name "demo-$region" --network "demo-$region" \
    --constraint node.hostname==app-00 \
    --label "com.docker.lb.hosts=demo-$region.local" \
    --label com.docker.lb.port=80 \
    --label "com.docker.lb.service_cluster=us-$region" \
    --env "METADATA=us-$region" \
    --config "src=demo-$region-body,target=/www/index.html" \
    local/interlock-app:lab
done

request() { # node-address host
  curl -s -m 2 -o /tmp/interlock-demo-body -w '%{http_code}' -H "Host: $2" "http://$1/" || true
}
step "waiting for the routes"
deadline=$(( $(date +%s) + 120 ))
until [ "$(request "$LAB_ADDR_lb_00" demo-east.local)" = 200 ] && [ "$(request "$LAB_ADDR_lb_01" demo-west.local)" = 200 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "demo: routes did not appear; see: docker service logs interlock" >&2; exit 1; }
  sleep 0.5
done

step "requests through each service cluster (as in the walk-through)"
for pair in "lb-00 $LAB_ADDR_lb_00" "lb-01 $LAB_ADDR_lb_01"; do
  set -- $pair
  for host in demo-east.local demo-west.local; do
    status=$(request "$2" "$host")
    printf '%s  Host: %-16s -> %s %s\n' "$1" "$host" "$status" "$(head -c 80 /tmp/interlock-demo-body | tr -d '\n')"
  done
done

step "what interlock would change now"
target/release/interlock plan -c "$config" || true
echo
echo "Try: docker service scale demo-east=3; docker service logs -f interlock; deploy/lab/swarm-lab.sh down"
