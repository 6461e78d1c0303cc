#!/usr/bin/env bash
# Hitless config updates against rolling ones on the project's Swarm lab, measured, not asserted.
#
# One run deploys interlock as a Swarm service (`interlock-hitless`, from
# deploy/examples/hitless.lab.toml) with two nginx clusters that differ only in
# HitlessServiceUpdate: `hitless` (lb-00:8097) and `rolling` (lb-01:8098). In each, one after the
# other, a stable app takes steady load (4 new-connection and 4 keep-alive workers) while the
# cluster's other apps change at least 20 times (a host label changed, removed and added back,
# scaled 1→2→1, an app created and removed). Printed per cluster: every change's time from the
# docker command to served, median and p95 of the label changes and of all changes, the failed
# requests on the stable app per mode (keep-alive requests on a connection the proxy closed while
# idle are retried once, as clients do, and counted apart as keepalive_closed); then the ratios.
# The scenario is tests/lab/hitless.rs's (the test asserts no failures on the hitless cluster; this
# compares): this script runs its ignored test `bench_hitless_vs_rolling`.
#
# The core runs the interlock binary baked into the lab's image (local/interlock:lab) when the lab
# was started. To measure the current tree, pass --up: it builds the release binary and
# (re)starts the lab with it, as route-latency.sh does.
#
# Usage: deploy/bench/hitless.sh [--up]   (root; CYCLES=3 by default: 7 changes per cycle)
set -euo pipefail
cd "$(dirname "$0")/../.."
CYCLES=${CYCLES:-3}

if [ "${1:-}" = "--up" ]; then
  cargo build --release --quiet --bin interlock
  deploy/lab/swarm-lab.sh up --interlock-binary target/release/interlock >/dev/null
fi
if ! status=$(deploy/lab/swarm-lab.sh status 2>&1) || ! grep -q 'swarm: healthy' <<<"$status"; then
  printf '%s\n' "$status" >&2
  echo "bench: the Swarm lab is not healthy; start it with deploy/lab/swarm-lab.sh up (root), or pass --up" >&2
  exit 1
fi

HITLESS_CYCLES=$CYCLES cargo test --release --quiet --features lab --test lab_hitless -- --ignored --nocapture --exact bench_hitless_vs_rolling
