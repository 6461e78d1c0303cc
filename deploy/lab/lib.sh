# shellcheck shell=bash
# shellcheck disable=SC2034  # the settings are used by swarm-lab.sh
# lib.sh: helpers for swarm-lab.sh (sourced, never run on its own).
#
# Layout of the lab (see swarm-lab.sh for the why):
#   host bridge ilab0 10.99.0.1/24  <- the host dockerd (swarm manager) advertises here
#   netns lb-00  10.99.0.11, dockerd at unix:///run/docker-lb-00.sock
#   netns lb-01  10.99.0.12, dockerd at unix:///run/docker-lb-01.sock
#   netns app-00 10.99.0.13, dockerd at unix:///run/docker-app-00.sock

LAB_BRIDGE=ilab0
LAB_MANAGER_ADDR=10.99.0.1
LAB_PREFIXLEN=24
LAB_NODES=(lb-00 lb-01 app-00)
declare -A LAB_NODE_ADDR=([lb-00]=10.99.0.11 [lb-01]=10.99.0.12 [app-00]=10.99.0.13)

# The high-availability lab (`swarm-lab.sh ha-up`): a second, separate swarm of three managers
# and a worker, so that a test can stop the Raft leader's engine without touching the main lab.
# Its own bridge, whose host address is no node (every node is an extra dockerd in a namespace):
#   host bridge ilab1 10.98.0.1/24
#   netns ha-00 10.98.0.11, ha-01 10.98.0.12, ha-02 10.98.0.13 (managers), ha-03 10.98.0.14
#   (a worker); dockerd at unix:///run/docker-NODE.sock
HA_BRIDGE=ilab1
HA_HOST_ADDR=10.98.0.1
HA_MANAGERS=(ha-00 ha-01 ha-02)
HA_WORKERS=(ha-03)
HA_NODES=("${HA_MANAGERS[@]}" "${HA_WORKERS[@]}")
LAB_NODE_ADDR+=([ha-00]=10.98.0.11 [ha-01]=10.98.0.12 [ha-02]=10.98.0.13 [ha-03]=10.98.0.14)
HA_ENV=/run/interlock-lab/ha-env

LAB_LOG_DIR=/var/log/interlock-lab
LAB_RUN_DIR=/run/interlock-lab
LAB_CACHE_DIR=/var/cache/interlock-lab
LAB_LOCK=/run/interlock-lab.lock
LAB_MANAGER_MARKER=$LAB_RUN_DIR/manager-started-by-lab

MANAGER_SOCK=/var/run/docker.sock
MANAGER_HOST=unix://$MANAGER_SOCK
MANAGER_PIDFILE=/var/run/docker.pid
MANAGER_EXEC_ROOT=/var/run/docker

# Every lab dockerd gets this: without it each task start first tries a registry
# pull and, inside a lab namespace, hangs ~10 s on the name look-up.
LAB_DOCKERD_ENV=(DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1)

# ---------------------------------------------------------------- messages, timing
log()  { echo "swarm-lab: $*" >&2; }   # progress goes to stderr: stdout of helpers is data
warn() { echo "swarm-lab: warning: $*" >&2; }
die()  { echo "swarm-lab: error: $*" >&2; exit 1; }

now_ms() { local t=${EPOCHREALTIME//[!0-9]/}; echo $((t / 1000)); }
fmt_ms() { printf '%d.%d s' $(($1 / 1000)) $(($1 % 1000 / 100)); }

# phase NAME: starts timing a phase; phase_end prints "NAME: 12.3 s".
PHASE_NAME='' PHASE_START=0
PHASE_TIMES=()
phase() { PHASE_NAME=$1; PHASE_START=$(now_ms); log "--- $1"; }
phase_end() {
  local took; took=$(fmt_ms $(($(now_ms) - PHASE_START)))
  log "$PHASE_NAME: $took"
  PHASE_TIMES+=("$PHASE_NAME: $took")
}

# tail_log FILE: the last lines of a log, for error messages.
tail_log() { if [[ -f $1 ]]; then { echo "----- last lines of $1:"; tail -n 25 "$1"; echo "-----"; } >&2; fi; }

# ---------------------------------------------------------------- docker clients
# Always name the daemon explicitly: a DOCKER_HOST or context in the caller's
# environment must not redirect the lab's calls.
unset DOCKER_HOST DOCKER_CONTEXT
node_host() { echo "unix:///run/docker-$1.sock"; }
dm() { docker -H "$MANAGER_HOST" "$@"; }          # the manager (host dockerd)
dn() { local n=$1; shift; docker -H "$(node_host "$n")" "$@"; }  # a worker

# daemon_ok HOST: true when the daemon answers.
daemon_ok() { timeout 10 docker -H "$1" info --format '{{.ID}}' >/dev/null 2>&1; }

# ---------------------------------------------------------------- processes
# Process look-ups read /proc directly (procps/pgrep is not on every Debian).
# proc_comm PID: the process name ("" if gone).
proc_comm() { local c=''; { read -r c <"/proc/$1/comm"; } 2>/dev/null || true; echo "$c"; }

# proc_args PID: sets the array PROC_ARGS to the process's argv.
proc_args() { PROC_ARGS=(); { mapfile -d '' PROC_ARGS <"/proc/$1/cmdline"; } 2>/dev/null || true; }

# pids_where COMM PATTERN: pids of processes named COMM (any name if COMM is
# empty) with an argv word matching the glob PATTERN.
pids_where() {
  local f pid a
  for f in /proc/[0-9]*; do
    pid=${f#/proc/}
    [[ $pid != "$$" && $pid != "$BASHPID" ]] || continue
    [[ -z $1 || $(proc_comm "$pid") == "$1" ]] || continue
    proc_args "$pid"
    for a in "${PROC_ARGS[@]}"; do
      # shellcheck disable=SC2053  # $2 is a glob on purpose
      if [[ $a == $2 ]]; then echo "$pid"; break; fi
    done
  done
  return 0
}

# worker_dockerd_pids NODE: dockerd processes serving that node's data root.
worker_dockerd_pids() { pids_where dockerd "/var/lib/docker-$1"; }

# worker_sock_bound NODE: true when, in the mount namespace of each of the node's
# dockerds, /run/docker.sock (= /var/run/docker.sock) is the node's own socket
# /run/docker-NODE.sock (see start_worker), so that a task on NODE that mounts
# /var/run/docker.sock reaches NODE's engine and not the manager's. Needs root
# (reading another process's /proc/PID/root).
worker_sock_bound() {
  local own pid pids
  own=$(stat -c %i "/run/docker-$1.sock" 2>/dev/null) || return 1
  pids=$(worker_dockerd_pids "$1")
  [[ -n $pids ]] || return 1
  for pid in $pids; do
    [[ $(stat -L -c %i "/proc/$pid/root/run/docker.sock" 2>/dev/null) == "$own" ]] || return 1
  done
}

# wait_sock_bound NODE SECONDS: waits until worker_sock_bound NODE.
wait_sock_bound() {
  local i
  for ((i = 0; i < $2 * 5; i++)); do worker_sock_bound "$1" && return 0; sleep 0.2; done
  return 1
}

# live_pid_from_file FILE COMM: the pid in FILE if that process is alive and named COMM.
live_pid_from_file() {
  local pid
  [[ -s $1 ]] || return 0
  pid=$(tr -dc '0-9' <"$1")
  [[ -n $pid && $(proc_comm "$pid") == "$2" ]] && echo "$pid"
  return 0
}

# clean_stale_pidfile FILE COMM: removes FILE unless it names a live COMM process.
# (dockerd refuses to start when its pid file names ANY live process.)
clean_stale_pidfile() {
  [[ -e $1 ]] || return 0
  [[ -n $(live_pid_from_file "$1" "$2") ]] || { rm -f "$1"; log "removed stale pid file $1"; }
}

# stop_pids SECONDS PID...: SIGTERM, wait, then SIGKILL what is left.
stop_pids() {
  local grace=$1 pid left i; shift
  [[ $# -gt 0 ]] || return 0
  kill -TERM "$@" 2>/dev/null || true
  for ((i = 0; i < grace * 5; i++)); do
    left=()
    for pid in "$@"; do [[ -d /proc/$pid ]] && left+=("$pid"); done
    [[ ${#left[@]} -eq 0 ]] && return 0
    sleep 0.2
  done
  warn "pids ${left[*]} ignored SIGTERM for ${grace} s; sending SIGKILL"
  kill -KILL "${left[@]}" 2>/dev/null || true
  sleep 0.5
}

# stop_worker_leftovers NODE: the containerd and shims a killed worker dockerd left.
stop_worker_leftovers() {
  local pids
  pids=$(pids_where '' "*/run/docker-$1/containerd/*")
  # shellcheck disable=SC2086
  [[ -z $pids ]] || { log "$1: stopping leftover containerd/shim processes $pids"; stop_pids 10 $pids; }
}

# wait_daemon HOST SECONDS PID LOG: waits until HOST answers; fails early if PID dies.
wait_daemon() {
  local host=$1 secs=$2 pid=$3 logf=$4 i
  for ((i = 0; i < secs * 2; i++)); do
    daemon_ok "$host" && return 0
    if [[ -n $pid && ! -d /proc/$pid ]]; then
      tail_log "$logf"; die "dockerd for $host (pid $pid) exited during start-up; see $logf"
    fi
    sleep 0.5
  done
  tail_log "$logf"; die "dockerd for $host did not answer within ${secs} s; see $logf"
}

# ---------------------------------------------------------------- mounts
# umount_under DIR...: lazily unmounts everything mounted at or below each DIR
# (overlay2 layers, netns bind mounts, a failed debootstrap's /proc): never rm -rf
# through a live mount.
umount_under() {
  local d m
  for d in "$@"; do
    [[ -e $d ]] || continue
    d=$(readlink -f "$d")
    findmnt -rn -o TARGET | awk -v d="$d" '$0 == d || index($0, d "/") == 1' | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || warn "could not unmount $m"; done
  done
}

# ---------------------------------------------------------------- network
# is_ha_node NODE: true for the high-availability lab's nodes.
is_ha_node() { [[ $1 == ha-* ]]; }
node_bridge() { if is_ha_node "$1"; then echo "$HA_BRIDGE"; else echo "$LAB_BRIDGE"; fi; }
node_gateway() { if is_ha_node "$1"; then echo "$HA_HOST_ADDR"; else echo "$LAB_MANAGER_ADDR"; fi; }

# ensure_bridge [BRIDGE ADDR]: the lab's bridge (default: the main lab's, with the manager's address).
ensure_bridge() {
  local bridge=${1:-$LAB_BRIDGE} addr=${2:-$LAB_MANAGER_ADDR}
  ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
  ip addr replace "$addr/$LAB_PREFIXLEN" dev "$bridge"
  ip link set "$bridge" up
}

netns_ok() { mountpoint -q "/run/netns/$1" 2>/dev/null; }
veth_name() { echo "vilab-$1"; }

# ensure_node_netns NODE: netns + veth to the bridge + address + default route.
# Repairs a stale netns file (e.g. /run kept across a reboot) or a half-gone veth.
ensure_node_netns() {
  local n=$1 veth; veth=$(veth_name "$1")
  if [[ -e /run/netns/$n ]] && ! netns_ok "$n"; then
    rm -f "/run/netns/$n"; log "$n: removed stale netns file"
  fi
  netns_ok "$n" || ip netns add "$n"
  if ! ip link show "$veth" >/dev/null 2>&1 || ! ip -n "$n" link show eth0 >/dev/null 2>&1; then
    ip link del "$veth" 2>/dev/null || true
    ip -n "$n" link del eth0 2>/dev/null || true
    ip link add "$veth" type veth peer name eth0 netns "$n"
  fi
  ip link set "$veth" master "$(node_bridge "$n")" up
  ip -n "$n" link set lo up
  ip -n "$n" addr replace "${LAB_NODE_ADDR[$n]}/$LAB_PREFIXLEN" dev eth0
  ip -n "$n" link set eth0 up
  ip -n "$n" route replace default via "$(node_gateway "$n")"
}

# The host dockerd sets FORWARD to DROP and br_netfilter sends bridged frames
# through it: without this rule worker-to-worker VXLAN is silently dropped.
forward_rule_chain() {
  if iptables -n -L DOCKER-USER >/dev/null 2>&1; then echo DOCKER-USER; else echo FORWARD; fi
}
# ensure_forward_rule [BRIDGE], remove_forward_rule [BRIDGE]: default the main lab's bridge.
ensure_forward_rule() {
  local chain bridge=${1:-$LAB_BRIDGE}; chain=$(forward_rule_chain)
  iptables -C "$chain" -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null ||
    iptables -I "$chain" -i "$bridge" -o "$bridge" -j ACCEPT
}
remove_forward_rule() {
  local chain bridge=${1:-$LAB_BRIDGE}
  for chain in DOCKER-USER FORWARD; do
    while iptables -C "$chain" -i "$bridge" -o "$bridge" -j ACCEPT 2>/dev/null; do
      iptables -D "$chain" -i "$bridge" -o "$bridge" -j ACCEPT
    done
  done
}
