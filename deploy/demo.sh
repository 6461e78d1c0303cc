#!/usr/bin/env bash
# The main job on a fresh machine (root): the service-clusters walk-through, for real.
#
# A local 4-node Swarm (manager + lb-00, lb-01, app-00), then the walk-through's commands in the
# document's order (shared/seeds/002_…): node labels, the config object, the interlock network,
# interlock as a service pinned to a manager, the proxies pinned by hand with
# `docker service update --constraint-add`, the apps' networks, the two demo apps, and the
# document's `curl … /ping` through each region's load-balancer node. Only the image names differ
# (the lab has no registry: local/interlock:lab, local/interlock-proxy:lab, local/docker-demo:lab),
# the extension's Args, and `HitlessServiceUpdate = true` in each extension: route changes reach
# the running proxies in place (the demo ends by scaling an app and showing the same proxy task
# serving both instances). It leaves everything running; `deploy/lab/swarm-lab.sh down` removes it.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin interlock --bin docker-demo
deploy/lab/swarm-lab.sh up --interlock-binary target/release/interlock
config=target/service-clusters.hitless.toml
sed '/^ *ServiceCluster = /a\    HitlessServiceUpdate = true' deploy/examples/service-clusters.lab.toml >"$config"
target/release/interlock validate -c "$config"

step() { printf '\n== %s\n' "$*"; }
run() { printf '$> %s\n' "$*"; "$@"; }

step "clearing an earlier demo run"
docker service rm interlock >/dev/null 2>&1 || true
# The operator's container reconciles until it has stopped.
while [ -n "$(docker ps -q --filter label=com.docker.swarm.service.name=interlock)" ]; do sleep 0.5; done
docker service rm demo-east demo-west >/dev/null 2>&1 || true
ids=$(docker service ls -q --filter label=com.docker.interlock.managed-by=interlock)
[ -z "$ids" ] || docker service rm $ids >/dev/null
docker config rm service.interlock.conf >/dev/null 2>&1 || true

step "node labels"
run docker node update --label-add nodetype=loadbalancer --label-add region=us-east lb-00
run docker node update --label-add nodetype=loadbalancer --label-add region=us-west lb-01
run docker node inspect -f '{{ .Spec.Labels  }}' lb-00
run docker node inspect -f '{{ .Spec.Labels  }}' lb-01

step "the config object for interlock ($config)"
printf '$> cat %s | docker config create service.interlock.conf -\n' "$config"
docker config create service.interlock.conf - <"$config"

step "a network for interlock and the extensions"
run docker network create -d overlay interlock 2>/dev/null || echo "interlock exists"

step "the interlock service"
run docker service create --detach \
  --name interlock \
  --mount src=/var/run/docker.sock,dst=/var/run/docker.sock,type=bind \
  --network interlock \
  --constraint node.role==manager \
  --config src=service.interlock.conf,target=/config.toml \
  local/interlock:lab -D run -c /config.toml

step "configure proxy services: pin them to the load-balancer nodes"
for region in us-east us-west; do
  until docker service inspect "interlock-proxy-$region" >/dev/null 2>&1; do sleep 0.5; done
  # Retried if it meets interlock's own first update of the service ("update out of sequence").
  for attempt in 1 2 3 4 5; do
    if run docker service update --detach \
      --constraint-add node.labels.nodetype==loadbalancer \
      --constraint-add "node.labels.region==$region" \
      "interlock-proxy-$region"; then break; fi
    [ "$attempt" -lt 5 ] || exit 1
    sleep 1
  done
done

step "the apps' networks"
run docker network create -d overlay demo-east 2>/dev/null || echo "demo-east exists"
run docker network create -d overlay demo-west 2>/dev/null || echo "demo-west exists"

step "the demo apps"
for region in east west; do
  run docker service create \
    --name "demo-$region" \
    --network "demo-$region" \
    --detach=true \
    --label "com.docker.lb.hosts=demo-$region.local" \
    --label com.docker.lb.port=8080 \
    --label "com.docker.lb.service_cluster=us-$region" \
    --env "METADATA=us-$region" \
    local/docker-demo:lab
done

addr() { docker node inspect -f '{{ .Status.Addr  }}' "$1"; }
status() { curl -s -m 2 -o /dev/null -w '%{http_code}' -H "Host: $2" "http://$(addr "$1")/ping" || true; }
step "waiting for the routes (and the proxies on their pinned nodes)"
deadline=$(($(date +%s) + 120))
until [ "$(status lb-00 demo-east.local)" = 200 ] && [ "$(status lb-01 demo-west.local)" = 200 ] &&
  [ "$(status lb-00 demo-west.local)" = 404 ] && [ "$(status lb-01 demo-east.local)" = 404 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "demo: routes did not appear; see: docker service logs interlock" >&2; exit 1; }
  sleep 0.5
done

step "requests to each service cluster (as in the walk-through)"
for node in lb-00 lb-01; do
  for host in demo-east.local demo-west.local; do
    printf '$> curl -H "Host: %s" http://$(docker node inspect -f '"'"'{{ .Status.Addr  }}'"'"' %s)/ping\n' "$host" "$node"
    curl -s -m 2 -H "Host: $host" "http://$(addr "$node")/ping"
    echo
  done
done

step "where the proxies run, and what interlock would change now"
docker service ps --filter desired-state=running --format '{{.Name}} on {{.Node}}' interlock-proxy-us-east interlock-proxy-us-west
target/release/interlock plan -c "$config" || true

step "hitless: scale demo-east; the same proxy task serves both instances, without a restart"
tasks() { docker service ps -q --filter desired-state=running interlock-proxy-us-east; }
before=$(tasks)
run docker service scale --detach demo-east=2
seen=""
deadline=$(($(date +%s) + 60))
until [ "$(printf '%s\n' $seen | sort -u | grep -c .)" -ge 2 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "demo: the second instance did not appear" >&2; exit 1; }
  seen="$seen $(curl -s -m 2 -H 'Host: demo-east.local' "http://$(addr lb-00)/ping" | sed -n 's/.*"instance":"\([^"]*\)".*/\1/p')"
  sleep 0.1
done
echo "instances answering through lb-00:" $(printf '%s\n' $seen | sort -u)
[ "$(tasks)" = "$before" ] && echo "proxy task before and after: $before (not restarted)" ||
  { echo "demo: the proxy task changed ($before -> $(tasks))" >&2; exit 1; }
echo
echo "Try: docker service scale demo-east=3; docker service logs -f interlock; deploy/lab/swarm-lab.sh down"
