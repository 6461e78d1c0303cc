#!/usr/bin/env bash
# Every test the project has: formatting, lints, unit and property tests of the pure core, the
# offline integration tests, the tests of rendered configs against the real nginx and HAProxy
# binaries, and the integration tests against a real 4-node Swarm lab and a high-availability lab
# on this machine (started here, as root). CI runs exactly this (see .ci/run). It fails if a lab
# cannot be started: lab tests never pass without a real engine.
#
# The tests that need more than a fresh checkout are behind Cargo features (tests/README.md):
# `lab` (tests/lab/ and tests/ha/), `proxy-binaries` (tests/proxy/) and `acme-server`
# (tests/acme/). A plain `cargo test` runs only the others; this script turns every feature on.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$(date +%s)
step() { echo "== $* (+$(( $(date +%s) - started )) s)"; }

if ! command -v cargo >/dev/null; then
  echo "test.sh: cargo is missing; install Rust (rustup) first" >&2
  exit 1
fi

# One build (clippy's and the tests') takes ~1.6 GB under target/ and the two labs ~6 GB under
# /var/lib: a disk that fills half-way shows up as a linker or dockerd error far from its cause,
# so check first and say it. What is already there (an earlier build, a lab) counts as room.
# Incremental compilation only pays on the next build of the same checkout, and costs ~3 GB.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Where Cargo builds (a caller's CARGO_TARGET_DIR is honoured: the lab takes the binary from it).
target_dir="${CARGO_TARGET_DIR:-target}"
disk_check() {
  local need_mb=$(( (3 + 6) * 1024 )) have_mb avail_mb dir dirs=()
  mkdir -p "$target_dir"
  # Only what exists (`swarm-lab.sh down` removes the nodes' directories): du fails on the rest.
  for dir in "$target_dir" /var/lib/docker /var/cache/interlock-lab /var/lib/docker-{lb-00,lb-01,app-00,ha-00,ha-01,ha-02,ha-03}; do
    [ -e "$dir" ] && dirs+=("$dir")
  done
  have_mb=$(du -smcx "${dirs[@]}" 2>/dev/null | tail -1 | cut -f1) || true
  avail_mb=$(df -Pm "$target_dir" | awk 'NR == 2 { print $4 }') || true
  # A check that cannot measure says so rather than stop the tests.
  [[ $have_mb =~ ^[0-9]+$ && $avail_mb =~ ^[0-9]+$ ]] ||
    { echo "test.sh: could not measure the free disk; going on without the check" >&2; return 0; }
  if (( avail_mb + have_mb < need_mb )); then
    echo "test.sh: the build and the labs need about $(( need_mb / 1024 )) GB; $(( avail_mb / 1024 )) GB are free on $(df -P "$target_dir" | awk 'NR == 2 { print $6 }') and $(( have_mb / 1024 )) GB already in use by them. Free some space first (old checkouts' target/ directories, \`docker system prune\`)." >&2
    exit 1
  fi
}
disk_check

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets --all-features -- -D warnings (every test group linted)"
cargo clippy --workspace --all-targets --all-features -- -D warnings

# Two test runs, side by side (below): the HA lab's tests in one, everything else in the other.
# Both use one feature set, so they share one build (and one target/debug/interlock, which the
# lab tests run): it is built here, before any lab test starts.
features=lab,proxy-binaries,acme-server
ha_tests=(--test ha_failover --test ha_faults --test ha_acme)

step "build the interlock binary (it goes into the lab's local/interlock:lab image) and every test"
cargo build --workspace --all-targets --features "$features"

step "real proxy binaries for config checks (nginx with the stream module, HAProxy), pebble, openssl, curl"
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx-light libnginx-mod-stream)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
# Let's Encrypt's test CA and its DNS (`pebble`, `pebble-challtestsrv`) for tests/acme/.
[ -x /usr/bin/pebble ] && [ -x /usr/bin/pebble-challtestsrv ] || need+=(pebble)
# The lab tests make certificates with openssl and send requests (TLS with SNI too) with curl.
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  # Install without starting the packaged services: only the binaries are wanted here.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get update -qq || echo "test.sh: apt-get update reported errors; trying the install anyway" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  rm -f /usr/sbin/policy-rc.d
fi
# Interlock's configs say `user nginx`, as the official nginx image does.
getent passwd nginx >/dev/null ||
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin nginx

step "swarm lab up (manager + lb-00, lb-01, app-00)"
deploy/lab/swarm-lab.sh up --interlock-binary "$target_dir/debug/interlock"

step "high-availability lab up (a separate swarm of three managers and a worker, for the failover and fault tests)"
deploy/lab/swarm-lab.sh ha-up

# The failover and fault tests (tests/ha/) have a swarm of their own: they run (one after the
# other) beside the rest, which share the main lab, their output kept apart and printed after
# theirs. They are #[ignore]d, so the main run leaves them out.
step "cargo test (unit, property, offline, proxy binaries, lab integration); tests/ha/ beside it on the HA lab"
ha_log="$target_dir/ha-tests.log"
cargo test --features "$features" "${ha_tests[@]}" -- --ignored --nocapture >"$ha_log" 2>&1 &
ha_pid=$!
rc=0
cargo test --workspace --features "$features" || rc=$?
ha_rc=0
wait "$ha_pid" || ha_rc=$?
step "tests/ha/ (failover, faults, acme; run beside the others): exit $ha_rc"
cat "$ha_log"
[[ $rc -eq 0 && $ha_rc -eq 0 ]] || { echo "test.sh: failed (cargo test: exit $rc; HA lab tests: exit $ha_rc)" >&2; exit 1; }

step "done"
