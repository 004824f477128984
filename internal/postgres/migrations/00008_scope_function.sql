-- The role and tenant of a unit of work, set by SET LOCAL instead of
-- set_config(..., true). On one server the two are the same; on Citus only
-- SET LOCAL reaches the workers (with citus.propagate_set_commands =
-- 'local'): a tenant set with set_config() is not seen there, and
-- row-level security on a worker returns nothing (docs/citus-trial.md).
-- SET takes no parameters, so a function runs it: the unit of work sends
-- one statement text with parameters, which the drivers' statement caches
-- keep once rather than once per tenant.
--
-- SECURITY INVOKER and no SET clause of its own (a function's SET clause
-- would undo the SET LOCAL at its exit); names are schema-qualified
-- instead. SET ROLE checks the session user's membership, as before.

-- +goose Up
-- +goose StatementBegin
CREATE FUNCTION elile_set_scope(role_name text, tenant text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE pg_catalog.format('SET LOCAL ROLE %I', role_name);
  EXECUTE pg_catalog.format('SET LOCAL app.tenant_id = %L', tenant);
END
$$;
-- +goose StatementEnd
-- EXECUTE stays granted to PUBLIC: the function sets nothing its caller
-- could not set itself, and behind a transaction pooler it runs as the
-- login role, before any SET ROLE.

-- +goose Down
DROP FUNCTION elile_set_scope(text, text);
