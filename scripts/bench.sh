#!/usr/bin/env bash
# Measures, in one run on this machine: PostgreSQL's own ceiling for the SQL
# one create and one read execute (pgbench), then elile through the whole
# stack at the same concurrency (elile loadtest), and elile's peak RSS.
# Loopback only; bounded in time. Usage: scripts/bench.sh [concurrency] [seconds]
set -euo pipefail
cd "$(dirname "$0")/.."
c=${1:-100}; secs=${2:-15}
db=elile_bench; port=18124
command -v pgbench >/dev/null || { echo "pgbench missing (apt-get install postgresql-contrib or postgresql-client)"; exit 1; }
make build >/dev/null
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres
work=$(mktemp -d)
export ENVIRONMENT=development DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" API_PORT=$port \
  LOG_LEVEL=WARN DEV_KEYS_FILE="$work/keys.env" RATE_LIMIT_PER_MINUTE=10000000 RATE_LIMIT_BURST=1000000
./bin/elile migrate up >/dev/null
psql -q -h 127.0.0.1 -U postgres -f scripts/bench/seed.sql "$db"
# At the load's concurrency, and at elile's pool size (30 connections by
# default): elile never opens more than that, and fewer backends fight less.
for clients in "$c" 30; do
  for s in create read; do
    echo "== pgbench: $s, $clients clients, ${secs}s"
    pgbench -h 127.0.0.1 -U postgres -n -c "$clients" -j 2 -T "$secs" -f "scripts/bench/$s.sql" "$db" 2>/dev/null | grep -E "^(tps|latency average)"
  done
done
./bin/elile serve >"$work/out" 2>"$work/err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.2; done
admin=$(./bin/elile apikey create --platform-admin | awk '{print $NF}')
for mix in create_entity=1 get_entity=1; do
  echo "== elile: $mix, concurrency $c, ${secs}s"
  ./bin/elile loadtest --url "http://127.0.0.1:$port" --admin-key "$admin" --mix "$mix" --concurrency "$c" --duration "${secs}s" --seed 200 --quiet | head -3
done
echo "== elile peak RSS: $(grep VmHWM /proc/$pid/status | awk '{print $2, $3}')"
kill -TERM $pid; wait $pid || true
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres
