#!/usr/bin/env bash
# The main job on a fresh machine: a local multi-node Swarm lab, prepared as in the
# service-clusters walk-through (lb-00 us-east, lb-01 us-west), then interlock pointed at it.
# Today interlock validates the walk-through's config and checks the swarm against it; the
# reconcile loop that routes traffic arrives with `interlock run` (see README, "Status").
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bin interlock
deploy/lab/swarm-lab.sh up --interlock-binary target/release/interlock

# The walk-through's node labels.
docker node update --label-add nodetype=loadbalancer --label-add region=us-east lb-00 >/dev/null
docker node update --label-add nodetype=loadbalancer --label-add region=us-west lb-01 >/dev/null

config=deploy/examples/service-clusters.toml
echo "== interlock validate -c $config"
target/release/interlock validate -c "$config"
echo "== interlock check -c $config"
target/release/interlock check -c "$config"
