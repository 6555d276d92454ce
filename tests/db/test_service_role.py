"""Least privilege: the service's own connection (as the app builds it) appends to the audit trail but can
neither rewrite it nor switch its guards off; migrations, run as the owner, grant exactly that, to tables
added later too, idempotently and with several sessions migrating at once."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from typer.testing import CliRunner

from catalog.app import create_app
from catalog.audit import service as audit
from catalog.cli import app as cli
from catalog.config import Settings
from catalog.db import migrate
from catalog.db.embedded import EmbeddedPostgres
from catalog.db.engine import libpq_dsn
from catalog.db.resolve import migrated
from tests.conftest import SERVICE_ROLE, PgServer

REPO = Path(__file__).resolve().parents[2]
INSUFFICIENT_PRIVILEGE = "42501"
# Tables the service may only read and append to; any other table with an `*_append_only` trigger is
# found in the catalog and held to the same rule.
APPEND_ONLY = {"audit_log", "audit_checkpoints", "event_log"}

APPEND_ONLY_TABLES_SQL = """
SELECT DISTINCT c.relname FROM pg_class c
JOIN pg_trigger t ON t.tgrelid = c.oid JOIN pg_proc f ON f.oid = t.tgfoid
WHERE f.proname LIKE '%append\\_only' AND c.relnamespace = current_schema()::regnamespace
"""


@pytest.fixture
async def service_engine(settings: Settings, service_database_url: str) -> AsyncIterator[AsyncEngine]:
    """The engine the app itself builds in its lifespan, on the URL `catalog serve` gives it."""
    app = create_app(settings, service_database_url)
    async with app.router.lifespan_context(app):
        yield app.state.engine


async def _sqlstate(engine: AsyncEngine, statement: str) -> str | None:
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    except DBAPIError as exc:
        return getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return None


async def test_the_service_connection_cannot_tamper_with_the_audit_tables(
    service_engine: AsyncEngine, engine: AsyncEngine
) -> None:
    async with service_engine.begin() as conn:  # appending is what the service does, and may
        await audit.record(conn, action="test.action", actor="app", subject="kept", details={"n": 1})
    async with engine.connect() as conn:
        guarded = set((await conn.execute(text(APPEND_ONLY_TABLES_SQL))).scalars())
        owner = (
            await conn.execute(text("SELECT tableowner FROM pg_tables WHERE tablename = 'audit_log'"))
        ).scalar()
    assert {"audit_log", "audit_checkpoints"} <= guarded
    attempts = {
        "UPDATE {t} SET {c} = {c}",
        "DELETE FROM {t}",
        "TRUNCATE {t}",
        "ALTER TABLE {t} DISABLE TRIGGER USER",
        "ALTER TABLE {t} DISABLE TRIGGER ALL",
        "ALTER TABLE {t} OWNER TO CURRENT_USER",
        "DROP TABLE {t}",
    }
    for table in sorted(guarded | APPEND_ONLY):
        async with engine.connect() as conn:
            column = (
                await conn.execute(
                    text(
                        "SELECT attname FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attnum = 1"
                    ),
                    {"t": table},
                )
            ).scalar_one()
        for attempt in sorted(attempts):
            statement = attempt.format(t=table, c=column)
            assert await _sqlstate(service_engine, statement) == INSUFFICIENT_PRIVILEGE, statement
    for statement in (
        "DROP TRIGGER audit_log_no_update_delete ON audit_log",
        "ALTER FUNCTION audit_log_append_only() RENAME TO harmless",
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql "
        "AS $$ BEGIN RETURN NEW; END $$",
        "SET session_replication_role = replica",  # would skip every trigger
        f'SET ROLE "{owner}"',
    ):
        assert await _sqlstate(service_engine, statement) == INSUFFICIENT_PRIVILEGE, statement
    async with service_engine.connect() as conn:
        assert (await audit.verify(conn)).ok


async def test_the_service_role_is_no_superuser_owns_nothing_and_cannot_become_the_owner(
    service_engine: AsyncEngine,
) -> None:
    async with service_engine.connect() as conn:
        me = (
            await conn.execute(
                text(
                    "SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication "
                    "FROM pg_roles WHERE rolname = current_user"
                )
            )
        ).one()
        assert me.rolname == SERVICE_ROLE
        for attribute in ("rolsuper", "rolcreaterole", "rolcreatedb", "rolbypassrls", "rolreplication"):
            assert getattr(me, attribute) is False, attribute
        owned = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM pg_class WHERE relowner = (SELECT oid FROM pg_roles WHERE rolname = "
                    "current_user)"
                )
            )
        ).scalar_one()
        functions = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM pg_proc WHERE proowner = (SELECT oid FROM pg_roles WHERE rolname = "
                    "current_user)"
                )
            )
        ).scalar_one()
        assert (owned, functions) == (0, 0)
        member_of_owner = (
            await conn.execute(
                text(
                    "SELECT pg_has_role(current_user, c.relowner, 'MEMBER') FROM pg_class c "
                    "WHERE c.oid = 'audit_log'::regclass"
                )
            )
        ).scalar_one()
        assert member_of_owner is False


async def test_the_service_keeps_full_use_of_the_projection_and_creates_log_partitions(
    service_engine: AsyncEngine,
) -> None:
    async with service_engine.connect() as conn:
        tx = await conn.begin()
        await conn.execute(
            text("INSERT INTO namespaces (name, first_seen, last_seen) VALUES ('probe://ns', now(), now())")
        )
        await conn.execute(text("UPDATE namespaces SET name = 'probe://ns2' WHERE name = 'probe://ns'"))
        await conn.execute(text("DELETE FROM namespaces WHERE name = 'probe://ns2'"))
        await tx.rollback()
        # A month no test writes to: the partition is created through the owner's SECURITY DEFINER function.
        async with conn.begin():
            part = (
                await conn.execute(text("SELECT ensure_event_log_partition('2091-07-15T00:00:00Z')"))
            ).scalar_one()
    assert part == "event_log_2091_07"
    for statement in (f"UPDATE {part} SET kind = kind", f"DELETE FROM {part}", f"TRUNCATE {part}"):
        assert await _sqlstate(service_engine, statement) == INSUFFICIENT_PRIVILEGE, statement
    assert await _sqlstate(service_engine, "SELECT catalog_grant_service_role('public')") == (
        INSUFFICIENT_PRIVILEGE
    )


def _privileges(admin_url: str, role: str, table: str) -> set[str]:
    with psycopg.connect(libpq_dsn(admin_url), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.privilege_type FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) a "
            "WHERE c.oid = %s::regclass AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (table, role),
        ).fetchall()
    return {row[0] for row in rows}


def test_tables_added_later_are_classified_when_migrations_run_again(database_url: str) -> None:
    with psycopg.connect(libpq_dsn(database_url), autocommit=True) as conn:
        conn.execute("CREATE TABLE later_projection (id bigint)")
        conn.execute("CREATE TABLE later_trail (id bigint)")
        conn.execute(
            "CREATE TRIGGER later_trail_guard BEFORE UPDATE OR DELETE ON later_trail "
            "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
        )
    # Until a migration run classifies them, new tables are append-only for the service (fail safe).
    assert _privileges(database_url, SERVICE_ROLE, "later_projection") == {"SELECT", "INSERT"}
    migrate.upgrade(database_url, service_role=SERVICE_ROLE)  # at head: only the grants are re-applied
    assert _privileges(database_url, SERVICE_ROLE, "later_projection") >= {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
    }
    assert _privileges(database_url, SERVICE_ROLE, "later_trail") == {"SELECT", "INSERT"}
    assert _privileges(database_url, SERVICE_ROLE, "audit_log") == {"SELECT", "INSERT"}
    assert _privileges(database_url, SERVICE_ROLE, "alembic_version") == {"SELECT"}


@pytest.fixture
def fresh_role(pg_server: PgServer) -> Iterator[str]:
    """A role name no session has used (roles are cluster-wide); dropped with its grants afterwards."""
    role = f"catalog_app_{secrets.token_hex(4)}"
    yield role
    with psycopg.connect(libpq_dsn(pg_server.admin_url), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datallowconn").fetchall()]
    for name in names:
        try:
            with psycopg.connect(libpq_dsn(pg_server.url_for(name)), autocommit=True) as conn:
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        except psycopg.OperationalError:
            continue  # another session's database, dropped meanwhile: nothing of ours left in it
    pg_server.execute(f'DROP ROLE IF EXISTS "{role}"')


def test_a_configured_role_is_created_once_when_databases_migrate_concurrently(
    pg_server: PgServer, fresh_role: str
) -> None:
    names = [f"t_{secrets.token_hex(6)}" for _ in range(3)]
    for name in names:
        pg_server.execute(f'CREATE DATABASE "{name}"')
    try:
        # Separate processes, as separate `catalog migrate` runs or test sessions would be.
        script = "import sys; from catalog.db import migrate; migrate.upgrade(sys.argv[1], service_role=sys.argv[2])"
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", script, pg_server.url_for(name), fresh_role],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for name in names
        ]
        for run in runs:
            output, _ = run.communicate(timeout=300)
            assert run.returncode == 0, output
        for name in names:
            url = pg_server.url_for(name)
            assert _privileges(url, fresh_role, "audit_log") == {"SELECT", "INSERT"}
            migrate.upgrade(url, service_role=fresh_role)  # idempotent
            assert _privileges(url, fresh_role, "audit_log") == {"SELECT", "INSERT"}
    finally:
        for name in names:
            pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrate_runs_as_the_owner_url_and_the_service_keeps_its_own(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """External server: CATALOG_MIGRATION_DATABASE_URL migrates, CATALOG_DATABASE_URL (the service) cannot."""
    name = f"t_{secrets.token_hex(6)}"
    pg_server.execute(f'CREATE DATABASE "{name}"')
    try:
        service_url = pg_server.service_url_for(name)
        runner = CliRunner()
        refused = runner.invoke(cli, ["migrate", "--database-url", service_url, "--home", str(tmp_path)])
        assert refused.exit_code != 0  # the service role may not create the schema
        result = runner.invoke(
            cli,
            ["migrate", "--database-url", service_url, "--home", str(tmp_path)],
            env={"CATALOG_MIGRATION_DATABASE_URL": pg_server.url_for(name)},
        )
        assert result.exit_code == 0, result.output
        assert migrate.current_revision(pg_server.url_for(name)) == migrate.head_revision()
        assert _privileges(pg_server.url_for(name), SERVICE_ROLE, "audit_log") == {"SELECT", "INSERT"}
    finally:
        pg_server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def embedded_home() -> Iterator[Path]:
    """A home under a 0755 directory in /tmp (reachable for the server account when root: no relocation)."""
    base = Path(tempfile.mkdtemp(prefix="catalog-role-test-"))
    base.chmod(0o755)
    yield base / "home"
    EmbeddedPostgres(base / "home").destroy()
    shutil.rmtree(base, ignore_errors=True)


def test_the_embedded_server_serves_as_its_own_login_role(embedded_home: Path) -> None:
    home = embedded_home
    settings = Settings(home=home, service_role="catalog_svc")
    with migrated(settings) as db:
        assert make_url(db.service_url).username == "catalog_svc"
        assert make_url(db.owner_url).username != "catalog_svc"
        assert (home / "pg-password-catalog_svc").stat().st_mode & 0o077 == 0

        async def check() -> tuple[str, str | None]:
            from catalog.db.engine import create_engine

            service = create_engine(db.service_url, pool_size=1)
            try:
                async with service.connect() as conn:
                    user = (await conn.execute(text("SELECT current_user"))).scalar_one()
                return user, await _sqlstate(service, "ALTER TABLE audit_log DISABLE TRIGGER USER")
            finally:
                await service.dispose()

        assert asyncio.run(check()) == ("catalog_svc", INSUFFICIENT_PRIVILEGE)
    with migrated(settings) as db:  # a second start finds the role and its password as they were
        assert make_url(db.service_url).password == (home / "pg-password-catalog_svc").read_text().strip()
