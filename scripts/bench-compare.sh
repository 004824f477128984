#!/usr/bin/env bash
# Compares two revisions of elile under the same load on this machine:
# builds each (git worktree), then runs alternating rounds (A B B A A B …)
# of creates and reads against each one's own fresh database, and prints
# every round and the medians. The machine is noisy: compare the two
# columns of one run, not figures across runs.
# Loopback only; bounded in rounds and time.
# Usage: scripts/bench-compare.sh REV_A REV_B [rounds=3] [concurrency=50] [seconds=10]
# ENV_A / ENV_B: extra environment for one side's server, e.g. the same
# revision twice with ENV_B="DATABASE_EXEC_MODE=exec" (the server's own
# DATABASE_URL is postgres://postgres@127.0.0.1:5432/$DB; ENV_B may replace
# it with one through a pooler, using $DB for the database name).
set -euo pipefail
cd "$(dirname "$0")/.."
a=${1:?usage: scripts/bench-compare.sh REV_A REV_B [rounds] [concurrency] [seconds]}
b=${2:?usage: scripts/bench-compare.sh REV_A REV_B [rounds] [concurrency] [seconds]}
rounds=${3:-3}; c=${4:-50}; secs=${5:-10}
work=$(mktemp -d)
pid=
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true
  for rev in A B; do git worktree remove --force "$work/$rev" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
make docs-assets >/dev/null
for pair in "A $a" "B $b"; do
  set -- $pair
  git worktree add --detach -q "$work/$1" "$2"
  cp internal/httpapi/docsassets/*.js "$work/$1/internal/httpapi/docsassets/"
  (cd "$work/$1" && go build -o "$work/elile-$1" ./cmd/elile)
done

run() { # rev mix → "req/s p99"
  local rev=$1 mix=$2 db=elile_cmp_$(echo "$1" | tr AB ab) port=18125
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres
  local extra
  if [[ $rev == A ]]; then extra=${ENV_A:-}; else extra=${ENV_B:-}; fi
  ENVIRONMENT=development DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" API_PORT=$port \
    LOG_LEVEL=WARN DEV_KEYS_FILE="$work/keys-$rev.env" RATE_LIMIT_PER_MINUTE=10000000 RATE_LIMIT_BURST=1000000 \
    env ${extra//\$DB/$db} "$work/elile-$rev" serve >"$work/out" 2>"$work/err" &
  pid=$!
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.2; done
  local admin
  admin=$(ENVIRONMENT=development DATABASE_URL="postgres://postgres@127.0.0.1:5432/$db?sslmode=disable" \
    DEV_KEYS_FILE="$work/keys-$rev.env" "$work/elile-$rev" apikey create --platform-admin | awk '{print $NF}')
  "$work/elile-$rev" loadtest --url "http://127.0.0.1:$port" --admin-key "$admin" --mix "$mix" --concurrency "$c" \
    --duration "${secs}s" --seed 200 --quiet --json |
    python3 -c 'import json,sys; r=json.load(sys.stdin); op=next(iter(r["operations"].values())); print("%.0f %.1f %d" % (r["per_second"], op["p99_ms"], r["errors"]))'
  kill -TERM "$pid"; wait "$pid" || true; pid=
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres
}

declare -A results
for mix in ${MIXES:-create_entity=1 get_entity=1}; do
  for i in $(seq "$rounds"); do
    order="A B"; (( i % 2 == 0 )) && order="B A"
    for rev in $order; do
      r=$(run "$rev" "$mix")
      echo "round $i $mix $rev($([[ $rev == A ]] && echo "$a" || echo "$b")): $r (req/s, p99 ms, errors)"
      results[$mix-$rev]+="$r;"
    done
  done
done
echo "== medians (req/s, p99 ms) over $rounds alternating rounds, c=$c, ${secs}s each"
for mix in ${MIXES:-create_entity=1 get_entity=1}; do
  for rev in A B; do
    echo -n "$mix $rev: "
    echo "${results[$mix-$rev]}" | tr ';' '\n' | grep . | python3 -c '
import sys, statistics
rows=[l.split() for l in sys.stdin]
print("%.0f req/s, p99 %.1f ms" % (statistics.median(float(r[0]) for r in rows), statistics.median(float(r[1]) for r in rows)))'
  done
done
