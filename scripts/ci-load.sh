#!/usr/bin/env bash
# Starts bin/elile on a throwaway database and checks the phase document's
# load criterion (100 concurrent requests, zero errors) and 2,000 mixed
# requests at concurrency 100 with zero 5xx; then SIGTERM must exit 0.
# Loopback only, bounded in requests and time.
set -euo pipefail
cd "$(dirname "$0")/.."
db=elile_ci_load
port=18123
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres
work=$(mktemp -d)
export ENVIRONMENT=development DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" \
  API_PORT=$port LOG_LEVEL=WARN DEV_KEYS_FILE="$work/keys.env" \
  RATE_LIMIT_PER_MINUTE=10000000 RATE_LIMIT_BURST=1000000
./bin/elile serve >"$work/out" 2>"$work/err" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.2; done
admin=$(./bin/elile apikey create --platform-admin | awk '{print $NF}')
echo "== 100 concurrent requests, zero errors"
./bin/elile loadtest --url "http://127.0.0.1:$port" --admin-key "$admin" --requests 100 --concurrency 100 --quiet --max-errors 0
echo "== 2,000 mixed requests at concurrency 100, zero 5xx"
./bin/elile loadtest --url "http://127.0.0.1:$port" --admin-key "$admin" --requests 2000 --concurrency 100 --quiet --max-5xx 0
kill -TERM $pid
wait $pid
echo "== SIGTERM: exit $?"
trap 'rm -rf "$work"' EXIT
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres
