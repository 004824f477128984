-- Seals keep the list of the event hashes they cover (authenticated by the
-- seal hash and signature), so verification can name the first bad event.
-- Retention: a SECURITY DEFINER function detaches and drops whole monthly
-- partitions older than a cutoff, and the cutoff is remembered so
-- verification knows which sealed events are gone on purpose.

-- +goose Up
ALTER TABLE audit_seals ADD COLUMN event_hashes bytea NOT NULL DEFAULT '\x'
  CHECK (octet_length(event_hashes) = 32 * event_count);
ALTER TABLE audit_seals ALTER COLUMN event_hashes DROP DEFAULT;
CREATE INDEX audit_seals_horizon ON audit_seals (horizon_to);

CREATE TABLE audit_retention (
  applied_at timestamptz PRIMARY KEY DEFAULT now(),
  cutoff     timestamptz NOT NULL,
  dropped    text[] NOT NULL
);
CREATE TRIGGER append_only BEFORE UPDATE OR DELETE ON audit_retention
  FOR EACH ROW EXECUTE FUNCTION elile_append_only();
GRANT SELECT ON audit_retention TO elile_app, elile_platform;

-- +goose StatementBegin
CREATE FUNCTION audit_drop_partitions_before(cutoff timestamptz)
RETURNS text[] LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  part    record;
  dropped text[] := '{}';
BEGIN
  FOR part IN
    SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'audit_events'::regclass ORDER BY c.relname
  LOOP
    -- FOR VALUES FROM ('...') TO ('...'): drop when the upper bound <= cutoff.
    IF substring(part.bound FROM 'TO \(''([^'']+)''\)')::timestamptz <= cutoff THEN
      EXECUTE format('ALTER TABLE audit_events DETACH PARTITION %I', part.relname);
      EXECUTE format('DROP TABLE %I', part.relname);
      dropped := dropped || part.relname::text;
    END IF;
  END LOOP;
  IF cardinality(dropped) > 0 THEN
    INSERT INTO audit_retention (cutoff, dropped) VALUES (cutoff, dropped);
  END IF;
  RETURN dropped;
END
$$;
-- +goose StatementEnd
REVOKE ALL ON FUNCTION audit_drop_partitions_before(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_drop_partitions_before(timestamptz) TO elile_platform;

-- +goose Down
DROP FUNCTION audit_drop_partitions_before(timestamptz);
DROP TABLE audit_retention;
DROP INDEX audit_seals_horizon;
ALTER TABLE audit_seals DROP COLUMN event_hashes;
