"""Least privilege: the service connects as its own role, which may append to the audit trail but never rewrite it.

Migrations run as the owner of the schema; the service (`catalog serve` and the CLI's data commands) runs
as a separate role (`catalog_app` unless CATALOG_SERVICE_ROLE says otherwise) that owns nothing, so it
cannot ALTER, DISABLE TRIGGER, TRUNCATE or DROP anything, whatever bug or intruder drives it. This
revision installs `catalog_grant_service_role(role)`, which the migration runner calls again after every
later upgrade (migrations/env.py), so tables added later are classified too:

- append-only tables - the event log (and its partitions) and every table guarded by a trigger whose
  function is named `*_append_only` (audit_log, audit_checkpoints): SELECT, INSERT;
- alembic_version and views: SELECT;
- every other table (the projection, keys, grants, findings, ...): SELECT, INSERT, UPDATE, DELETE (and
  MAINTAIN from PostgreSQL 17 on, so the ingest path's ANALYZE runs);
- sequences: USAGE, SELECT.

Default privileges give tables created later by the owner SELECT, INSERT only: a table nobody has
classified yet is append-only for the service until the function runs. Monthly event-log partitions are
created at run time by `ensure_event_log_partition`, now SECURITY DEFINER (owned by the owner, fixed
search_path) because only a table's owner may attach partitions to it.

The role is created (NOLOGIN) when missing and the migrating role may create roles; with the embedded
server the launcher creates it with LOGIN and a generated password first. Roles are cluster-wide, so
creation tolerates a concurrent creator; grants in one database are serialised by an advisory lock.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import text

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

DEFAULT_SERVICE_ROLE = "catalog_app"  # the same default as Settings.service_role

GRANT_FUNCTION = r"""
CREATE OR REPLACE FUNCTION catalog_grant_service_role(service_role text) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    schema_name text := current_schema();
    schema_oid oid := current_schema()::regnamespace;
    role_oid oid;
    rel record;
    wanted text[];
    held text[];
    append_only boolean;
    has_maintain boolean := current_setting('server_version_num')::int >= 170000;
BEGIN
    -- Several processes may migrate at once (each `catalog serve` does at start): one grant run at a time.
    PERFORM pg_advisory_xact_lock(hashtext('catalog_grant_service_role'));
    IF service_role = current_user THEN
        RAISE WARNING 'the service role "%" is the role running the migrations: nothing is granted, and the '
            'service can alter the audit tables. Give the service its own role (CATALOG_SERVICE_ROLE).',
            service_role;
        RETURN false;
    END IF;
    SELECT oid INTO role_oid FROM pg_roles WHERE rolname = service_role;
    IF role_oid IS NULL THEN
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', service_role);
        EXCEPTION
            WHEN duplicate_object OR unique_violation THEN
                NULL;  -- another session (another database of this cluster) created it just now
            WHEN insufficient_privilege THEN
                RAISE WARNING 'role "%" does not exist and "%" may not create roles: no grants made. Create it '
                    '(CREATE ROLE % LOGIN PASSWORD ...) and migrate again.', service_role, current_user,
                    quote_ident(service_role);
                RETURN false;
        END;
        SELECT oid INTO role_oid FROM pg_roles WHERE rolname = service_role;
    END IF;
    IF (SELECT rolsuper FROM pg_roles WHERE oid = role_oid) THEN
        RAISE WARNING 'the service role "%" is a superuser: grants cannot restrict it.', service_role;
    END IF;

    -- The event-log partition function must create tables the service may not: run it as its owner.
    EXECUTE format(
        'ALTER FUNCTION ensure_event_log_partition(timestamptz) SECURITY DEFINER SET search_path = %I, pg_temp',
        schema_name);
    REVOKE EXECUTE ON FUNCTION ensure_event_log_partition(timestamptz) FROM PUBLIC;
    REVOKE EXECUTE ON FUNCTION catalog_grant_service_role(text) FROM PUBLIC;
    EXECUTE format('GRANT EXECUTE ON FUNCTION ensure_event_log_partition(timestamptz) TO %I', service_role);
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), service_role);
    IF NOT has_schema_privilege(role_oid, schema_oid, 'USAGE') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', schema_name, service_role);
    END IF;

    FOR rel IN
        SELECT c.oid, c.relname, c.relkind, c.relacl FROM pg_class c
        WHERE c.relnamespace = schema_oid AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')
    LOOP
        append_only := rel.relname = 'event_log'
            OR EXISTS (
                SELECT 1 FROM pg_partition_ancestors(rel.oid) a JOIN pg_class p ON p.oid = a.relid
                WHERE p.relname = 'event_log' AND p.relnamespace = schema_oid)
            OR EXISTS (  -- the table, or a partitioned table it is a partition of, has the trigger
                SELECT 1 FROM pg_trigger t JOIN pg_proc f ON f.oid = t.tgfoid
                WHERE f.proname LIKE '%append\_only' AND NOT t.tgisinternal
                  AND (t.tgrelid = rel.oid OR t.tgrelid IN (SELECT relid FROM pg_partition_ancestors(rel.oid))));
        wanted := CASE
            WHEN rel.relkind = 'S' THEN ARRAY['SELECT', 'USAGE']
            WHEN rel.relkind IN ('v', 'm') OR rel.relname = 'alembic_version' THEN ARRAY['SELECT']
            WHEN append_only THEN ARRAY['INSERT', 'SELECT']
            WHEN has_maintain THEN ARRAY['DELETE', 'INSERT', 'MAINTAIN', 'SELECT', 'UPDATE']
            ELSE ARRAY['DELETE', 'INSERT', 'SELECT', 'UPDATE']
        END;
        SELECT coalesce(array_agg(a.privilege_type ORDER BY a.privilege_type), '{}') INTO held
        FROM aclexplode(rel.relacl) a WHERE a.grantee = role_oid;
        CONTINUE WHEN held = wanted;  -- steady state: no catalog writes on every start
        EXECUTE format('REVOKE ALL ON %s %I.%I FROM %I',
            CASE WHEN rel.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, schema_name, rel.relname, service_role);
        EXECUTE format('GRANT %s ON %s %I.%I TO %I', array_to_string(wanted, ', '),
            CASE WHEN rel.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, schema_name, rel.relname, service_role);
    END LOOP;

    -- Tables the owner creates later (migrations, event-log partitions) start append-only for the service.
    IF NOT EXISTS (
        SELECT 1 FROM pg_default_acl d CROSS JOIN LATERAL aclexplode(d.defaclacl) a
        WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user) AND d.defaclnamespace = schema_oid
          AND d.defaclobjtype = 'r' AND a.grantee = role_oid AND a.privilege_type = 'INSERT')
    THEN
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT ON TABLES TO %I',
            schema_name, service_role);
        EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO %I',
            schema_name, service_role);
    END IF;
    RETURN true;
END
$fn$
"""


def service_role() -> str:
    """The role named by the runner (catalog.db.migrate passes Settings.service_role)."""
    return str(context.config.attributes.get("service_role") or DEFAULT_SERVICE_ROLE)


def upgrade() -> None:
    op.execute(GRANT_FUNCTION)
    op.get_bind().execute(text("SELECT catalog_grant_service_role(:role)"), {"role": service_role()})


def downgrade() -> None:
    bind = op.get_bind()
    role = service_role()
    exists = bind.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role}).first()
    if exists:
        quoted = bind.execute(
            text("SELECT quote_ident(:role), quote_ident(current_schema())"), {"role": role}
        )
        name, schema = quoted.one()
        for statement in (
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {name}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON SEQUENCES FROM {name}",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {name}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {name}",
            f"REVOKE ALL ON FUNCTION ensure_event_log_partition(timestamptz) FROM {name}",
        ):
            op.execute(statement)
    op.execute("ALTER FUNCTION ensure_event_log_partition(timestamptz) SECURITY INVOKER RESET search_path")
    op.execute("GRANT EXECUTE ON FUNCTION ensure_event_log_partition(timestamptz) TO PUBLIC")
    op.execute("DROP FUNCTION IF EXISTS catalog_grant_service_role(text)")
