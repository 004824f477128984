-- Relations have a lifetime (employment starts and ends): validity dates,
-- and when the relation was last changed. A relation is changed (PATCH) or
-- deleted by its tenant; the dates are calendar dates, the end on or after
-- the start.

-- +goose Up
ALTER TABLE entity_relations
  ADD COLUMN valid_from date,
  ADD COLUMN valid_to date,
  ADD COLUMN updated_at timestamptz,
  ADD CONSTRAINT entity_relations_validity CHECK (valid_to IS NULL OR valid_from IS NULL OR valid_to >= valid_from);

-- +goose Down
ALTER TABLE entity_relations
  DROP CONSTRAINT entity_relations_validity,
  DROP COLUMN updated_at,
  DROP COLUMN valid_to,
  DROP COLUMN valid_from;
