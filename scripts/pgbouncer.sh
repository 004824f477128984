#!/usr/bin/env bash
# Starts PgBouncer in transaction mode on 127.0.0.1:6432 in front of the
# local PostgreSQL (127.0.0.1:5432), for the tests that run elile behind a
# transaction pooler (ELILE_TEST_PGBOUNCER=127.0.0.1:6432). Does nothing
# when it is already listening. With --install (as root), installs Debian's
# pgbouncer first when it is missing. Loopback only; trust authentication,
# as the local PostgreSQL's development defaults.
set -euo pipefail

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }
if ! command -v pgbouncer >/dev/null 2>&1; then
  if [[ "${1:-}" != "--install" ]]; then
    echo "pgbouncer: not installed; run: sudo scripts/pgbouncer.sh --install" >&2
    exit 1
  fi
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null
fi

up() { pg_isready -h 127.0.0.1 -p 6432 -q 2>/dev/null; }
if up; then
  echo "pgbouncer: up on 127.0.0.1:6432"
  exit 0
fi

dir=${TMPDIR:-/tmp}/elile-pgbouncer
mkdir -p "$dir"
cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=5432

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = 6432
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 5000
default_pool_size = 20
; below PostgreSQL's max_connections (100), which the tests' direct
; connections share
max_user_connections = 60
server_idle_timeout = 5
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
printf '"postgres" ""\n"root" ""\n"%s" ""\n' "$(id -un)" >"$dir/userlist.txt"
# PgBouncer refuses to run as root: as root, run it as postgres.
if [[ $(id -u) == 0 ]]; then
  chown -R postgres "$dir"
  su postgres -s /bin/sh -c "pgbouncer -d '$dir/pgbouncer.ini'"
else
  pgbouncer -d "$dir/pgbouncer.ini"
fi
for _ in $(seq 40); do up && break; sleep 0.25; done
up || { echo "pgbouncer: did not come up on 127.0.0.1:6432 (see $dir/pgbouncer.log)" >&2; exit 1; }
echo "pgbouncer: up on 127.0.0.1:6432 (transaction mode)"
