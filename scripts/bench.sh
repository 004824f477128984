#!/usr/bin/env bash
# elile against the reference program (scripts/bench/refserver: plain
# net/http + pgx, no auth, no RLS, no rate limit, no seals, one statement per
# round trip) on the same PostgreSQL server, the same tables and indexes, at
# the same concurrency: alternating rounds (ref elile elile ref ref elile …)
# of creates and of reads, then medians, ratios and PostgreSQL CPU per 2xx
# response (every postgres process's CPU during the round, background ones
# and exited backends included, from /proc). Loopback only; bounded.
# Usage: scripts/bench.sh [concurrency=100] [seconds=15] [rounds=3]
# Env: MIXES (default "create_entity=1 get_entity=1"); PGSS_OUT=FILE writes
# each database's pg_stat_statements breakdown there (the server must
# preload pg_stat_statements: see BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
c=${1:-100}; secs=${2:-15}; rounds=${3:-3}
mixes=${MIXES:-create_entity=1 get_entity=1}
eport=18124; rport=18130
make build >/dev/null
work=$(mktemp -d)
go build -o "$work/refserver" ./scripts/bench/refserver
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
for db in elile_bench elile_ref; do
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres
done
export ENVIRONMENT=development LOG_LEVEL=WARN DEV_KEYS_FILE="$work/keys.env" RATE_LIMIT_PER_MINUTE=10000000 RATE_LIMIT_BURST=1000000

# The reference program's database: elile's schema without row-level
# security and without elile's triggers (the plain program has neither).
DATABASE_URL="postgres://postgres@127.0.0.1:5432/elile_ref?sslmode=disable" ./bin/elile migrate up >/dev/null
psql -q -h 127.0.0.1 -U postgres elile_ref <<'SQL'
DO $$ DECLARE t record; BEGIN
  FOR t IN SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace AND c.relrowsecurity LOOP
    EXECUTE format('ALTER TABLE %I NO FORCE ROW LEVEL SECURITY, DISABLE ROW LEVEL SECURITY', t.relname);
  END LOOP;
  FOR t IN SELECT tgname, tgrelid::regclass AS rel FROM pg_trigger WHERE NOT tgisinternal AND tgname IN ('tenant_refs', 'stamp', 'tenant_fixed')
           AND tgrelid::regclass::text NOT LIKE 'audit_events_y%' LOOP
    EXECUTE format('DROP TRIGGER %I ON %s', t.tgname, t.rel);
  END LOOP;
END $$;
SQL
"$work/refserver" -db "postgres://postgres@127.0.0.1:5432/elile_ref?sslmode=disable" -addr "127.0.0.1:$rport" 2>"$work/ref.err" &
pids+=($!)
DATABASE_URL="postgres://postgres@127.0.0.1:5432/elile_bench?sslmode=disable" API_PORT=$eport ./bin/elile serve >"$work/out" 2>"$work/err" &
epid=$!; pids+=($epid)
for port in $eport $rport; do
  for _ in $(seq 150); do curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.2; done
done
admin=$(DATABASE_URL="postgres://postgres@127.0.0.1:5432/elile_bench?sslmode=disable" ./bin/elile apikey create --platform-admin | awk '{print $NF}')

# Clock ticks of every postgres process, plus the CPU of the children the
# postmaster has reaped (backends that exited during the round).
pgcpu() { cat /proc/[0-9]*/stat 2>/dev/null | awk '$2 == "(postgres)" { s += $14 + $15 + $16 + $17 } END { print s + 0 }'; }
tick=$(getconf CLK_TCK)

run() { # server mix → "req/s p99_ms cpu_ms_per_2xx errors"
  local url key
  if [[ $1 == elile ]]; then url="http://127.0.0.1:$eport"; key=$admin; else url="http://127.0.0.1:$rport"; key=unused; fi
  local before after
  before=$(pgcpu)
  ./bin/elile loadtest --url "$url" --admin-key "$key" --mix "$2" --concurrency "$c" --duration "${secs}s" --seed 200 --quiet --json >"$work/report.json"
  after=$(pgcpu)
  python3 - "$work/report.json" "$before" "$after" "$tick" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); before, after, tick = map(float, sys.argv[2:5])
ok = sum(n for op in r["operations"].values() for s, n in op["by_status"].items() if s.startswith("2"))
op = next(iter(r["operations"].values()))
print("%.0f %.1f %.3f %d p50=%.1f p95=%.1f max=%.0f" % (r["per_second"], op["p99_ms"], (after - before) / tick * 1000 / max(ok, 1), r["errors"],
      op["p50_ms"], op["p95_ms"], op["max_ms"]))
PY
}

if [[ -n ${PGSS_OUT:-} ]]; then
  psql -q -h 127.0.0.1 -U postgres -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" -c "SELECT pg_stat_statements_reset()" postgres >/dev/null
fi
declare -A results
for mix in $mixes; do
  for i in $(seq "$rounds"); do
    order="ref elile"; (( i % 2 == 0 )) && order="elile ref"
    for server in $order; do
      r=$(run "$server" "$mix")
      echo "round $i $mix $server: $r  (req/s, p99 ms, PostgreSQL CPU ms per 2xx, errors, latency ms)"
      results[$mix-$server]+="$r;"
    done
  done
done
echo "== medians over $rounds alternating rounds, concurrency $c, ${secs}s each"
for mix in $mixes; do
  python3 - "$mix" "${results[$mix-ref]}" "${results[$mix-elile]}" <<'PY'
import statistics, sys
mix, ref, eli = sys.argv[1], sys.argv[2], sys.argv[3]
def med(s):
    rows = [list(map(float, x.split()[:4])) for x in s.split(";") if x.strip()]
    return [statistics.median(r[i] for r in rows) for i in range(3)]
r, e = med(ref), med(eli)
print("%-16s reference %6.0f req/s p99 %6.1f ms cpu/2xx %.3f ms | elile %6.0f req/s p99 %6.1f ms cpu/2xx %.3f ms | elile/ref: throughput %.2fx, p99 %.2fx, cpu %.2fx"
      % (mix, r[0], r[1], r[2], e[0], e[1], e[2], e[0] / r[0], e[1] / r[1], e[2] / r[2]))
PY
done
echo "== elile peak RSS: $(grep VmHWM /proc/$epid/status | awk '{print $2, $3}')"
if [[ -n ${PGSS_OUT:-} ]]; then
  psql -h 127.0.0.1 -U postgres postgres >"$PGSS_OUT" <<'SQL'
SELECT d.datname AS db, s.calls, round(s.mean_exec_time::numeric, 3) AS mean_ms, round(s.total_exec_time::numeric) AS total_ms,
       round((100 * s.total_exec_time / sum(s.total_exec_time) OVER (PARTITION BY d.datname))::numeric, 1) AS pct,
       left(regexp_replace(s.query, '\s+', ' ', 'g'), 100) AS query
FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
WHERE d.datname IN ('elile_bench', 'elile_ref') AND s.total_exec_time > 1
ORDER BY d.datname, s.total_exec_time DESC;
SQL
  echo "== pg_stat_statements breakdown in $PGSS_OUT"
fi
for db in elile_bench elile_ref; do
  psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" postgres 2>/dev/null || true
done
