#!/usr/bin/env bash
# Moves an existing single-node elile database onto a Citus cluster
# (docs/scaling.md, "Moving an existing database onto Citus"):
#
#   1. checks the source is at the schema this elile knows, and the target
#      is an empty database with the citus extension on a coordinator that
#      has its workers;
#   2. creates elile's runtime roles on the coordinator (Citus creates them
#      on the workers);
#   3. copies the source (pg_dump) into the coordinator with triggers off:
#      the rows are restored as they are (the audit triggers would restamp
#      events and renumber their chains);
#   4. runs `elile migrate up` there, which distributes the schema (the
#      rows move to the workers' shards);
#   5. verifies every audit chain on the cluster.
#
# Stop every elile server on the source first: writes made during the copy
# are not moved. The source is only read. Run as a user that is superuser
# on both (the restore sets session_replication_role).
#
# Usage: scripts/citus-move.sh SOURCE_URL COORDINATOR_URL
# ELILE: the elile binary (default bin/elile).
set -euo pipefail
src=${1:?usage: scripts/citus-move.sh SOURCE_URL COORDINATOR_URL}
dst=${2:?usage: scripts/citus-move.sh SOURCE_URL COORDINATOR_URL}
elile=${ELILE:-bin/elile}
q() { psql -X -q -v ON_ERROR_STOP=1 -tA "$@"; }

if DATABASE_URL=$src "$elile" migrate status | awk 'NR > 1 && $2 != "applied" {bad = 1} END {exit !bad}'; then
  echo "the source is not at the latest schema: run elile migrate up on it first" >&2; exit 2
fi
[ "$(q "$dst" -c "SELECT count(*) FROM pg_extension WHERE extname = 'citus'")" = 1 ] || {
  echo "the target has no citus extension: CREATE EXTENSION citus there (and on every worker), add the workers" >&2; exit 2; }
[ "$(q "$dst" -c "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')")" = 0 ] || {
  echo "the target database is not empty" >&2; exit 2; }
[ "$(q "$dst" -c "SELECT count(*) FROM citus_get_active_worker_nodes()")" -gt 0 ] || {
  echo "the coordinator has no active workers (citus_add_node)" >&2; exit 2; }

echo "1/4 roles"
q "$dst" <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'elile_app') THEN
    CREATE ROLE elile_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'elile_platform') THEN
    CREATE ROLE elile_platform NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'elile_audit_writer') THEN
    CREATE ROLE elile_audit_writer NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOINHERIT;
  END IF;
END
$$;
SQL

echo "2/4 copy (triggers off)"
dump=$(mktemp)
trap 'rm -f "$dump"' EXIT
pg_dump --no-publications --no-subscriptions "$src" >"$dump"
PGOPTIONS='-c session_replication_role=replica' psql -X -q -v ON_ERROR_STOP=1 "$dst" -f "$dump" >/dev/null
src_events=$(q "$src" -c "SELECT count(*) FROM audit_events")

echo "3/4 distribute"
DATABASE_URL=$dst "$elile" migrate up

echo "4/4 verify"
dst_events=$(q "$dst" -c "SELECT count(*) FROM audit_events")
if [ "$src_events" != "$dst_events" ]; then
  echo "audit events: $src_events on the source, $dst_events on the cluster" >&2
  exit 1
fi
DATABASE_URL=$dst "$elile" audit verify
echo "moved: $dst_events audit events; point DATABASE_URL at the coordinator and start the servers"
