#!/usr/bin/env bash
# A pg_auto_failover formation on loopback for the failover test: a
# monitor (127.0.0.1:6000) and two PostgreSQL 15 nodes (6001, 6002) with
# synchronous replication, in DIR. Debian's postgresql-15-auto-failover
# (--install installs it). pg_autoctl refuses to run as root: as root, it
# runs as postgres.
#
#   scripts/failover-cluster.sh start DIR [--install]  create or start it; prints the formation's URL
#   scripts/failover-cluster.sh primary DIR            the current primary's port
#   scripts/failover-cluster.sh kill-primary DIR       SIGKILL the primary's keeper and postgres
#   scripts/failover-cluster.sh stop DIR               stop everything and remove DIR
#
# Health checks are tightened (1 s period, 1 retry, unhealthy after 3 s; a
# cut-off primary demotes itself after 3 s and the monitor waits 5 s for
# that before promoting) so a failover takes seconds, not the defaults'
# half a minute.
set -euo pipefail
cmd=${1:?usage: failover-cluster.sh start|primary|kill-primary|stop DIR}
dir=${2:?usage: failover-cluster.sh start|primary|kill-primary|stop DIR}
bin=/usr/lib/postgresql/15/bin
as_pg() { # run a shell command as the postgres user (or as us, if not root)
  local env="export PATH=$bin:\$PATH XDG_CONFIG_HOME=$dir/config XDG_DATA_HOME=$dir/data;"
  if [[ $(id -u) == 0 ]]; then su postgres -s /bin/bash -c "$env $1"; else bash -c "$env $1"; fi
}
monitor_url=postgres://autoctl_node@127.0.0.1:6000/pg_auto_failover?sslmode=disable

keeper_pid() { pgrep -f "pg_autoctl run --pgdata $dir/$1\$" || true; }

case $cmd in
start)
  if ! command -v pg_autoctl >/dev/null 2>&1; then
    [[ "${3:-}" == "--install" ]] || { echo "failover-cluster: pg_autoctl missing; run with --install" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15-auto-failover pg-auto-failover-cli >/dev/null
  fi
  mkdir -p "$dir"
  [[ $(id -u) == 0 ]] && chown postgres "$dir"
  if [[ ! -d $dir/monitor ]]; then
    as_pg "pg_autoctl create monitor --pgdata $dir/monitor --pgport 6000 --hostname 127.0.0.1 --auth trust --no-ssl >$dir/monitor-create.log 2>&1"
  fi
  [[ -n $(keeper_pid monitor) ]] || as_pg "nohup pg_autoctl run --pgdata $dir/monitor >>$dir/monitor.log 2>&1 &"
  for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p 6000 && break; sleep 0.5; done
  as_pg "psql -q -h 127.0.0.1 -p 6000 -d pg_auto_failover -c \"ALTER SYSTEM SET pgautofailover.health_check_period = 1000\" \
    -c \"ALTER SYSTEM SET pgautofailover.health_check_timeout = 1000\" -c \"ALTER SYSTEM SET pgautofailover.health_check_max_retries = 1\" \
    -c \"ALTER SYSTEM SET pgautofailover.health_check_retry_delay = 500\" -c \"ALTER SYSTEM SET pgautofailover.node_considered_unhealthy_timeout = 3000\" \
    -c \"ALTER SYSTEM SET pgautofailover.primary_demote_timeout = 5000\" \
    -c \"SELECT pg_reload_conf()\" >/dev/null"
  for n in 1 2; do
    if [[ ! -d $dir/node$n ]]; then
      as_pg "pg_autoctl create postgres --pgdata $dir/node$n --pgport 600$n --hostname 127.0.0.1 --name node$n --auth trust --no-ssl \
        --ssl-mode disable --dbname elile --monitor '$monitor_url' >$dir/node$n-create.log 2>&1"
      # A primary cut off from the monitor demotes itself after this long;
      # the monitor waits primary_demote_timeout (above it) before it
      # promotes the standby, so two primaries never accept writes.
      as_pg "pg_autoctl config set --pgdata $dir/node$n timeout.network_partition_timeout 3 >/dev/null"
    fi
    [[ -n $(keeper_pid node$n) ]] || as_pg "nohup pg_autoctl run --pgdata $dir/node$n >>$dir/node$n.log 2>&1 &"
    # node1 first: it becomes the primary, node2 its synchronous standby.
    for _ in $(seq 120); do pg_isready -q -h 127.0.0.1 -p 600$n && break; sleep 0.5; done
  done
  for _ in $(seq 120); do
    states=$(as_pg "pg_autoctl show state --pgdata $dir/monitor --json 2>/dev/null" | python3 -c '
import json,sys
print(" ".join(sorted(n["current_group_state"] for n in json.load(sys.stdin))))' 2>/dev/null || true)
    [[ $states == "primary secondary" ]] && break
    sleep 0.5
  done
  [[ $states == "primary secondary" ]] || { echo "failover-cluster: not ready (states: $states); see $dir/*.log" >&2; exit 1; }
  echo "postgres://postgres@127.0.0.1:6001,127.0.0.1:6002/elile?target_session_attrs=read-write&sslmode=disable"
  ;;
primary)
  as_pg "pg_autoctl show state --pgdata $dir/monitor --json" | python3 -c '
import json,sys
for n in json.load(sys.stdin):
    if n["current_group_state"] in ("primary", "wait_primary", "single"):
        print(n["nodeport"])'
  ;;
kill-primary)
  port=$("$0" primary "$dir" | head -n1)
  n=${port: -1}
  # The keeper first (it would restart postgres), then postgres itself.
  for pid in $(keeper_pid node$n); do pkill -KILL -P "$pid" || true; kill -KILL "$pid" || true; done
  kill -KILL "$(head -n1 "$dir/node$n/postmaster.pid")" 2>/dev/null || true
  echo "$port"
  ;;
stop)
  for node in node1 node2 monitor; do
    for pid in $(keeper_pid $node); do pkill -KILL -P "$pid" || true; kill -KILL "$pid" || true; done
    [[ -f $dir/$node/postmaster.pid ]] && kill -KILL "$(head -n1 "$dir/$node/postmaster.pid")" 2>/dev/null || true
  done
  sleep 0.5
  rm -rf "$dir"
  ;;
*)
  echo "failover-cluster: unknown command $cmd" >&2
  exit 2
  ;;
esac
