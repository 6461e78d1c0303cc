#!/usr/bin/env bash
# What a request costs nginx when the upstream is chosen by a variable, at 10,000 hosts: measured,
# not asserted (docs/design/nginx-at-scale.md#cost-per-request).
#
# nginx finds a variable `proxy_pass http://$name`'s upstream by a linear scan of every `upstream`
# block's name, per request (ngx_http_upstream_init_request), so the host whose upstream is
# declared last pays the most. Four configs of the same shape as interlock's shared servers
# (`map $host` → value, one `server` passing to `http://$value`), each with N hosts (default
# 10,000), all leading to one local backend (`return 200`), no keep-alive to it (as rendered):
# - `upstream-per-host`: the shape before this change, an `upstream` block per host;
# - `address`: a one-task host's map value is its task's address (no upstream block);
# - `pooled`: N hosts of one service with two tasks share one upstream;
# - `baseline`: one host, one upstream.
# For each, wrk (1 thread, 8 connections, DURATION seconds, default 8) against the first and the
# last host; printed: requests a second, mean latency, and each figure's ratio to the baseline
# measured in the same run. Run it on an idle machine: the two cores are shared by nginx and wrk.
#
# Usage: deploy/bench/nginx-upstream-lookup.sh   (root; N=… DURATION=… to change)
set -euo pipefail
N=${N:-10000}
DURATION=${DURATION:-8}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { apt-get install -y -q nginx-light >/dev/null; NGINX=/usr/sbin/nginx; }
command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null
WORK=$(mktemp -d /tmp/interlock-upstream-lookup.XXXXXX)
cleanup() {
  local pid
  for pid in "$WORK"/*.pid; do [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null; done
  true
}
trap cleanup EXIT

# config NAME MODE HOSTS: writes $WORK/NAME.conf.
config() {
  local name=$1 mode=$2 hosts=$3 i
  {
    echo "worker_processes 1; daemon on; pid $WORK/$name.pid; error_log $WORK/error.log;"
    echo "events { worker_connections 1024; }"
    echo "http {"
    echo "  access_log off; map_hash_bucket_size 128; map_hash_max_size 65536;"
    for t in client_body proxy fastcgi uwsgi scgi; do echo "  ${t}_temp_path $WORK/$t;"; done
    echo "  server { listen 127.0.0.1:19000; location / { return 200 'ok'; } }"
    echo "  map \$host \$interlock_up { hostnames; default 404;"
    for ((i = 0; i < hosts; i++)); do
      case $mode in
        upstream-per-host) printf '    h%d.example up-h%d.example;\n' "$i" "$i" ;;
        address) printf '    h%d.example 127.0.0.1:19000;\n' "$i" ;;
        pooled) printf '    h%d.example up-pool;\n' "$i" ;;
      esac
    done
    echo "  }"
    case $mode in
      upstream-per-host)
        for ((i = 0; i < hosts; i++)); do
          printf '  upstream up-h%d.example { zone interlock_upstreams 16m; server 127.0.0.1:19000; }\n' "$i"
        done ;;
      pooled) echo "  upstream up-pool { zone interlock_upstreams 1m; server 127.0.0.1:19000; server 127.0.0.1:19000; }" ;;
    esac
    echo "  server { listen 127.0.0.1:19001; location / { proxy_pass http://\$interlock_up; } }"
    echo "}"
  } >"$WORK/$name.conf"
}

# measure NAME HOST: "REQUESTS_PER_SECOND MEAN_LATENCY_MS"
measure() {
  wrk -t1 -c8 -d"${DURATION}s" -H "Host: $2" http://127.0.0.1:19001/ | awk '
    /Requests\/sec/ { r = $2 }
    /^ +Latency / && l == "" { l = $2; if (l ~ /us$/) { sub(/us/, "", l); l /= 1000 } else if (l ~ /ms$/) { sub(/ms/, "", l) } else if (l ~ /s$/) { sub(/s/, "", l); l *= 1000 } }
    END { printf "%.0f %.3f\n", r, l }'
}

results=()
run() { # NAME MODE HOSTS HOST...
  local name=$1 mode=$2 hosts=$3 host
  shift 3
  config "$name" "$mode" "$hosts"
  "$NGINX" -q -c "$WORK/$name.conf" -p "$WORK/"
  sleep 1
  for host in "$@"; do results+=("$name $host $(measure "$name" "$host")"); done
  kill "$(cat "$WORK/$name.pid")"
  sleep 1
}

run baseline pooled 1 h0.example
run upstream-per-host upstream-per-host "$N" h0.example "h$((N - 1)).example"
run address address "$N" h0.example "h$((N - 1)).example"
run pooled pooled "$N" h0.example "h$((N - 1)).example"

echo "== nginx $("$NGINX" -v 2>&1 | sed 's/.*nginx\///'), $N hosts, wrk -t1 -c8 -d${DURATION}s, no keep-alive to the backend"
read -r _ _ base_rps base_ms <<<"${results[0]}"
printf '%-18s %-16s %10s %8s %10s %8s\n' config host "req/s" ratio "mean ms" ratio
for r in "${results[@]}"; do
  read -r name host rps ms <<<"$r"
  printf '%-18s %-16s %10s %8.2f %10s %8.2f\n' "$name" "$host" "$rps" "$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { print a / b }')" \
    "$ms" "$(awk -v a="$ms" -v b="$base_ms" 'BEGIN { print a / b }')"
done
