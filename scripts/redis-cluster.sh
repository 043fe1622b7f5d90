#!/usr/bin/env bash
# Starts or stops a local Redis Cluster for the tests and benchmarks: three
# masters and three replicas on loopback ports 7000-7005, each writing its
# AOF with `appendfsync always`, all state under one scratch directory.
#
#   scripts/redis-cluster.sh start   # prints the store URL
#   scripts/redis-cluster.sh stop
#   scripts/redis-cluster.sh url
#   scripts/redis-cluster.sh restart-node PORT   # after a kill: it rejoins
#
# WASQLITE_REDIS_DIR (default target/redis-cluster) holds the nodes' files;
# WASQLITE_REDIS_PORT (default 7000) is the first port.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${WASQLITE_REDIS_DIR:-$PWD/target/redis-cluster}"
base="${WASQLITE_REDIS_PORT:-7000}"
ports=$(seq "$base" $((base + 5)))

url() {
  local nodes
  nodes=$(for p in $ports; do printf '127.0.0.1:%s,' "$p"; done)
  echo "redis://${nodes%,}"
}

stop() {
  for p in $ports; do
    redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "$dir"
}

start_node() {
  mkdir -p "$dir/$1"
  redis-server --port "$1" --bind 127.0.0.1 --daemonize yes --dir "$dir/$1" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --appendonly yes --appendfsync always --save '' --logfile "$dir/$1/redis.log" \
    --pidfile "$dir/$1/redis.pid"
}

start() {
  command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
  stop
  for p in $ports; do
    start_node "$p"
  done
  for p in $ports; do
    for _ in $(seq 50); do
      redis-cli -p "$p" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  # shellcheck disable=SC2046
  redis-cli --cluster create $(for p in $ports; do printf '127.0.0.1:%s ' "$p"; done) \
    --cluster-replicas 1 --cluster-yes >"$dir/create.log"
  # Ready when every node agrees the cluster is ok and each master has its
  # replica attached and in sync (the failover test needs them).
  for _ in $(seq 300); do
    local ready=1
    for p in $ports; do
      redis-cli -p "$p" cluster info | grep -q 'cluster_state:ok' || ready=0
      if redis-cli -p "$p" role | head -1 | grep -q slave; then
        redis-cli -p "$p" info replication | grep -q 'master_link_status:up' || ready=0
      fi
    done
    if [ "$ready" = 1 ] && [ "$(redis-cli -p "$base" cluster nodes | grep -c slave)" = 3 ]; then
      url
      return
    fi
    sleep 0.1
  done
  echo "the cluster did not come up with three replicas in sync; see $dir" >&2
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  restart-node) start_node "${2:?which port}" ;;
  *) echo "usage: $0 start|stop|url|restart-node PORT" >&2; exit 2 ;;
esac
