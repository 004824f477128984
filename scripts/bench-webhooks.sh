#!/usr/bin/env bash
# The webhook benchmark (issue 16, BENCHMARKS.md): the cost of delivering
# every entity.created to one subscribed endpoint (a receiver on loopback,
# run by the load tool), on this machine, one binary:
#  1. saturation: closed-loop creates, without and with the endpoint,
#     alternating rounds; the throughput cost;
#  2. a fixed rate of 70 % of the no-webhook median: create p99 without and
#     with the endpoint, and the delivery lag (the change's time to the
#     receiver: the oldest pending delivery is never older than the
#     largest).
# Each round gets a fresh database. Loopback only; bounded in rounds and
# time. Usage: scripts/bench-webhooks.sh [rounds=3] [concurrency=50] [seconds=10]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; c=${2:-50}; secs=${3:-10}
work=$(mktemp -d)
pid=
cleanup() { [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
make build >/dev/null
bin=./bin/elile
db=elile_bench_wh port=18126

run() { # webhooks(0|1) load-flags… → "req/s p99 errors lag_p99 lag_max received expected"
  local hooks=$1; shift
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres
  ENVIRONMENT=development DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" API_PORT=$port \
    LOG_LEVEL=WARN DEV_KEYS_FILE="$work/keys.env" RATE_LIMIT_PER_MINUTE=10000000 RATE_LIMIT_BURST=1000000 \
    WEBHOOK_ALLOW_LOOPBACK=true "$bin" serve >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.2; done
  local admin flag=
  admin=$(ENVIRONMENT=development DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" \
    DEV_KEYS_FILE="$work/keys.env" "$bin" apikey create --platform-admin | awk '{print $NF}')
  [[ $hooks == 1 ]] && flag=--webhooks
  "$bin" loadtest --url "http://127.0.0.1:$port" --admin-key "$admin" --mix create_entity=1 --seed 200 --quiet --json $flag "$@" |
    python3 -c '
import json,sys
r=json.load(sys.stdin); op=r["operations"]["create_entity"]; w=r.get("webhooks") or {}
print("%.0f %.1f %d %.1f %.1f %d %d" % (r["per_second"], op["p99_ms"], r["errors"], w.get("lag_p99_ms",0), w.get("lag_max_ms",0), w.get("received",0), w.get("expected",0)))'
  kill -TERM "$pid"; wait "$pid" || true; pid=
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres
}

median() { python3 -c 'import sys,statistics; print("%.1f" % statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }

echo "== saturation: closed loop, c=$c, ${secs}s (req/s, p99 ms, errors, lag p99 ms, lag max ms, received, expected)"
declare -a sat0 sat1 p0 p1
# RATE=N skips the saturation rounds and runs the fixed rate at N.
for i in $( [[ -n "${RATE:-}" ]] || seq "$rounds"); do
  order="0 1"; (( i % 2 == 0 )) && order="1 0"
  for h in $order; do
    r=$(run "$h" --concurrency "$c" --duration "${secs}s")
    echo "round $i webhooks=$h: $r"
    if [[ $h == 0 ]]; then sat0+=("$(echo "$r" | cut -d' ' -f1)"); else sat1+=("$(echo "$r" | cut -d' ' -f1)"); fi
  done
done
if [[ -n "${RATE:-}" ]]; then
  x0=$(python3 -c "print($RATE/0.7)"); x1=$x0; rate=$RATE
else
  x0=$(median "${sat0[@]}"); x1=$(median "${sat1[@]}")
  rate=$(python3 -c "print(round(0.7*$x0))")
fi
echo "== fixed rate: $rate req/s (70 % of $x0), open loop, ${secs}s"
for i in $(seq "$rounds"); do
  order="0 1"; (( i % 2 == 0 )) && order="1 0"
  for h in $order; do
    r=$(run "$h" --concurrency 400 --rate "$rate" --duration "${secs}s")
    echo "round $i webhooks=$h: $r"
    if [[ $h == 0 ]]; then p0+=("$(echo "$r" | cut -d' ' -f2)"); else p1+=("$(echo "$r" | cut -d' ' -f2)"); fi
  done
done
echo "== medians over $rounds alternating rounds"
echo "saturation: $x0 req/s without, $x1 req/s with one endpoint ($(python3 -c "print('%+.1f' % (100*($x1-$x0)/$x0))") %)"
echo "at $rate req/s: create p99 $(median "${p0[@]}") ms without, $(median "${p1[@]}") ms with"
