"""`catalog`: run the service, migrate, ingest files, rebuild the projection, manage API keys."""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from catalog import __version__
from catalog.audit.cli import audit_app, signing_app
from catalog.cli_support import (
    DbOpt,
    HomeOpt,
    cli_actor,
    console,
    fail,
    out,
    settings_from,
    with_db,
)
from catalog.config import Settings
from catalog.export.cli import export_app
from catalog.findings.cli import scan
from catalog.memory import tune_garbage_collector

if TYPE_CHECKING:
    from catalog.policies_in_force import Policies

app = typer.Typer(
    help="Lineage & governance catalog. With no CATALOG_DATABASE_URL, commands use the embedded "
    "PostgreSQL under CATALOG_HOME (default ./.catalog).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
projector_app = typer.Typer(
    help="The projector, which folds the event log into the catalog: run it, see its lag, retry set-aside events.",
    no_args_is_help=True,
)
app.add_typer(projector_app, name="projector")
app.add_typer(audit_app, name="audit")
app.add_typer(signing_app, name="signing")
app.add_typer(export_app, name="export")
app.command("scan")(scan)


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


@app.command()
def migrate(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Apply database migrations (idempotent)."""
    from catalog.db import migrate as migrations
    from catalog.db.resolve import database

    settings = settings_from(home, database_url)
    with database(settings) as db:
        before = migrations.current_revision(db.owner_url)
        migrations.upgrade(db.owner_url, service_role=settings.service_role)
        after = migrations.current_revision(db.owner_url)
    console.print(f"schema at revision [bold]{after}[/] (was {before or 'empty'})")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on (CATALOG_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (CATALOG_PORT, default 5000).")] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Accepting processes on the one port (CATALOG_WORKERS, default 1); one projector leads.",
            min=1,
        ),
    ] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Migrate, then serve the REST API (and the embedded PostgreSQL when no database URL is set)."""
    from sqlalchemy.engine import make_url

    from catalog.db.resolve import migrated
    from catalog.logs import configure_logging
    from catalog.serving import serve as serve_app

    settings = settings_from(home, database_url, host=host, port=port, workers=workers)
    configure_logging(settings.log_level, settings.log_format)
    with migrated(settings) as db:
        where = (
            "an external PostgreSQL"
            if settings.database_url
            else f"the embedded PostgreSQL in {settings.home}/"
        )
        console.print(
            f"catalog {__version__} on [bold]http://{settings.host}:{settings.port}[/] using {where}"
        )
        console.print(f"  API docs:  http://{settings.host}:{settings.port}/docs")
        if db.owner_url == db.service_url:
            console.print(
                "  [yellow]database:[/]  one URL for migrations and service: the service owns the audit "
                "tables (set CATALOG_MIGRATION_DATABASE_URL, see README: Database roles)"
            )
        else:
            console.print(
                f"  database:  serving as role {make_url(db.service_url).username}, migrated as its owner"
            )
        if settings.admin_token:
            console.print(
                "  auth:      Authorization: Bearer $CATALOG_ADMIN_TOKEN (bootstrap admin), or a key"
            )
        else:
            console.print("  auth:      create a key with `catalog keys create --name me --role admin`, then")
            console.print("             send `Authorization: Bearer <key>` (or set CATALOG_ADMIN_TOKEN)")
        if settings.workers > 1:
            console.print(f"  workers:   {settings.workers} accepting processes on the one port")
        console.print(f"  projector: {_projector_placement(settings)}")
        serve_app(settings, db.service_url)


def _projector_placement(settings: Settings) -> str:
    if not settings.projector_enabled:
        return "none here (CATALOG_PROJECTOR_ENABLED=false): run `catalog projector run --follow` beside it"
    if settings.projector_process:
        niced = ""
        if settings.projector_idle:
            niced = " (idle CPU priority)"
        elif settings.projector_nice:
            niced = f" (nice {settings.projector_nice})"
        if settings.projector_busy_share < 1:
            share = f"a {settings.projector_busy_share:.0%} share while its service process is CPU-bound accepting"
            niced = f"{niced[:-1]}; {share})" if niced else f" ({share})"
        if settings.workers > 1:
            return f"a process beside each worker{niced}; one of them folds the log, the others stand by"
        return f"in a process of its own{niced}, folding the log behind the accepting path"
    return "on a thread of the serving process (CATALOG_PROJECTOR_PROCESS=false)"


# -- ingest -------------------------------------------------------------------------------------------


def _sources(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """(label, bytes) for each file: folders are walked for *.json, *.jsonl, *.ndjson; `-` is stdin."""
    for given in paths:
        if given == "-":
            yield "<stdin>", sys.stdin.buffer.read()
            continue
        path = Path(given)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and child.suffix.lower() in {".json", ".jsonl", ".ndjson"}:
                    yield str(child), child.read_bytes()
        elif path.is_file():
            yield str(path), path.read_bytes()
        else:
            raise fail(f"no such file or folder: {given}", 2)


@app.command()
def ingest(
    paths: Annotated[
        list[str], typer.Argument(help="Files, folders or - (stdin): JSON, JSON arrays or NDJSON.")
    ],
    batch_size: Annotated[int, typer.Option(help="Events per transaction.")] = 1000,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Ingest OpenLineage events from files (e.g. the file transport's output) with the API's validation."""
    from catalog.db.resolve import migrated
    from catalog.openlineage.body import iter_ndjson_or_json
    from catalog.openlineage.events import EventRejected, OpenLineageEvent
    from catalog.openlineage.validation import parse_event
    from catalog.policies_in_force import Policies

    settings = settings_from(home, database_url)
    policies = Policies.from_settings(settings)  # what the projection assigns, classifies and judges by
    events: list[OpenLineageEvent] = []
    rejected: list[tuple[str, str]] = []
    for label, data in _sources(paths):
        for index, item in enumerate(iter_ndjson_or_json(data)):
            where = f"{label}#{index}"
            try:
                if isinstance(item, EventRejected):
                    raise item
                events.append(parse_event(item))
            except EventRejected as exc:
                rejected.append((where, f"{exc.pointer or '/'}: {exc.detail}"))
    with migrated(settings) as db:
        tune_garbage_collector()
        stored, duplicates = asyncio.run(_ingest(db.service_url, events, batch_size, policies))
    table = Table(title="ingest summary", show_header=False)
    table.add_row("events read", str(len(events) + len(rejected)))
    table.add_row("stored", f"[green]{stored}[/]")
    table.add_row("already stored (duplicates)", str(duplicates))
    table.add_row("rejected", f"[red]{len(rejected)}[/]" if rejected else "0")
    console.print(table)
    for where, reason in rejected[:50]:
        console.print(f"  [red]rejected[/] {where}: {reason}")
    if len(rejected) > 50:
        console.print(f"  … and {len(rejected) - 50} more")
    if rejected:
        raise typer.Exit(1)


async def _ingest(url: str, events: list[Any], batch_size: int, policies: Policies) -> tuple[int, int]:
    """Append through the accepting path's code, then fold through the projector's (this process is the
    projector unless a running service is; then it waits for that one)."""
    from catalog.db.engine import create_engine, raw_transaction
    from catalog.ingest.projector import catch_up
    from catalog.ingest.service import PartitionCache, append

    engine = create_engine(url, pool_size=2)
    partitions = PartitionCache()
    stored = duplicates = 0
    try:
        with _progress() as progress:
            task = progress.add_task("appending", total=len(events))
            for start in range(0, len(events), batch_size):
                batch = events[start : start + batch_size]
                await partitions.ensure(engine, [e.event_time for e in batch])
                async with raw_transaction(engine) as raw:
                    outcome = await append(raw, batch)
                stored += outcome.stored
                duplicates += outcome.duplicates
                progress.advance(task, len(batch))
            folding = progress.add_task("projecting", total=None)
            await catch_up(engine, policies, batch_size=batch_size)
            progress.update(folding, total=1, completed=1)
    finally:
        await engine.dispose()
    return stored, duplicates


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


# -- projector ----------------------------------------------------------------------------------------


@projector_app.command("run")
def projector_run(
    follow: Annotated[
        bool, typer.Option(help="Keep projecting as events arrive (and take over when the active one dies).")
    ] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Fold the log up to its head (or wait for the active projector to), or with --follow run the same
    projector every `catalog serve` runs, until interrupted."""
    from catalog.db.resolve import migrated
    from catalog.policies_in_force import Policies

    settings = settings_from(home, database_url)
    policies = Policies.from_settings(settings)  # what the projection assigns, classifies and judges by
    with migrated(settings) as db:
        tune_garbage_collector()
        position = asyncio.run(_project(db.service_url, settings, policies, follow))
    console.print(f"projected up to log position {position}")


async def _project(url: str, settings: Settings, policies: Policies, follow: bool) -> int:
    from catalog.db.engine import create_engine
    from catalog.ingest import projector

    if follow:
        reached = 0

        def advanced(position: int) -> None:
            nonlocal reached
            reached = max(reached, position)

        await projector.follow(
            url,
            policies,
            batch_size=settings.projector_batch_size,
            standby_poll=settings.projector_standby_seconds,
            advanced=advanced,
            until=asyncio.Event(),  # never set: until SIGINT/SIGTERM
        )
        return reached
    engine = create_engine(url, pool_size=2)
    try:
        return await projector.catch_up(engine, policies, batch_size=settings.projector_batch_size)
    finally:
        await engine.dispose()


@projector_app.command("status")
def projector_status(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Position, lag (events and seconds), set-aside events and their errors."""
    from catalog.db.engine import raw_connection
    from catalog.ingest import projector

    async def run(conn: Any) -> Any:
        raw = await raw_connection(conn)
        state = await projector.status(raw)
        aside = await raw.fetch(
            "SELECT event_id, event_time, error, attempts FROM projection_set_aside ORDER BY event_id LIMIT 50"
        )
        return state, aside

    state, aside = with_db(home, database_url, run)
    table = Table(title="projector", show_header=False)
    table.add_row("position", f"{state.position} of {state.head}")
    table.add_row("lag", f"{state.lag_events} events, {state.lag_seconds:.1f} s")
    table.add_row("projecting", state.projector or "no process right now")
    table.add_row("set aside", str(state.set_aside))
    table.add_row("last error", state.last_error or "-")
    console.print(table)
    for row in aside:
        console.print(
            f"  [red]set aside[/] event {row['event_id']} ({row['attempts']} tries): {row['error']}"
        )


@projector_app.command("retry")
def projector_retry(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Fold the set-aside events again (after a fix); those that still fail stay set aside."""
    from catalog.db.engine import create_engine
    from catalog.db.resolve import migrated
    from catalog.ingest.projector import retry_set_aside
    from catalog.policies_in_force import Policies

    async def run(url: str) -> tuple[int, int]:
        engine = create_engine(url, pool_size=2)
        try:
            return await retry_set_aside(engine, policies)
        finally:
            await engine.dispose()

    settings = settings_from(home, database_url)
    policies = Policies.from_settings(settings)  # what the projection assigns, classifies and judges by
    with migrated(settings) as db:
        folded, failing = asyncio.run(run(db.service_url))
    console.print(f"folded {folded} set-aside events; {failing} still fail")
    if failing:
        raise typer.Exit(1)


# -- rebuild ------------------------------------------------------------------------------------------


@app.command()
def rebuild(
    verify: Annotated[
        bool, typer.Option(help="Fingerprint the projection before and after and compare.")
    ] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Re-project the whole catalog from the event log (ingestion waits meanwhile)."""
    from catalog.db.resolve import migrated
    from catalog.policies_in_force import Policies

    settings = settings_from(home, database_url)
    policies = Policies.from_settings(settings)  # the projection assigns products and classifies by it
    with migrated(settings) as db:
        # As the owner: TRUNCATE ... RESTART IDENTITY needs the sequences' owner, and the log is locked.
        replayed, same = asyncio.run(_rebuild(db.owner_url, verify, policies))
    console.print(f"replayed {replayed} events")
    if verify:
        if same:
            console.print("[green]the rebuilt projection is identical to the one before[/]")
        else:
            raise fail("the rebuilt projection differs from the one before (see the tables above)")


async def _rebuild(url: str, verify: bool, policies: Policies) -> tuple[int, bool]:
    from catalog.db.engine import create_engine
    from catalog.ingest.rebuild import projection_fingerprint, rebuild_projection

    engine = create_engine(url, pool_size=2)
    try:
        before = None
        if verify:
            async with engine.connect() as conn:
                before = await projection_fingerprint(conn)
        with _progress() as progress:
            task = progress.add_task("replaying", total=None)
            replayed = await rebuild_projection(
                engine,
                policies,
                progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        if before is None:
            return replayed, True
        async with engine.connect() as conn:
            after = await projection_fingerprint(conn)
        for table in before:
            if before[table] != after[table]:
                console.print(f"  [red]{table}[/]: {before[table][0]} rows before, {after[table][0]} after")
        return replayed, before == after
    finally:
        await engine.dispose()


# -- keys ---------------------------------------------------------------------------------------------


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what holds the key, e.g. 'airflow-payments'.")],
    role: Annotated[str, typer.Option(help="pipeline | engineer | steward | auditor | admin")],
    product: Annotated[str | None, typer.Option(help="The product team the key acts for.")] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, help="Expire after this many days.")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from catalog.auth.service import InvalidRole, create_key

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=expires_in_days) if expires_in_days else None

    async def run(conn: Any) -> Any:
        return await create_key(
            conn, name=name, role=role, product=product, expires_at=expires, actor=cli_actor()
        )

    try:
        created = with_db(home, database_url, run)
    except InvalidRole as exc:
        raise fail(str(exc), 2) from exc
    console.print(f"created key [bold]{created.key_id}[/] ({created.role}, product {created.product or '-'})")
    console.print("store it now; it cannot be shown again:")
    out.print(created.token, soft_wrap=True)


@keys_app.command("list")
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="Include revoked keys.")] = False,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """List keys (ids and metadata, never secrets)."""
    from catalog.auth.service import list_keys

    async def run(conn: Any) -> Any:
        return await list_keys(conn, include_revoked=all_keys)

    rows = with_db(home, database_url, run)
    table = Table(Column("key id", no_wrap=True), "name", "role", "product", "created", "expires", "revoked")
    for k in rows:
        table.add_row(
            k.key_id,
            k.name,
            k.role,
            k.product or "-",
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.expires_at:%Y-%m-%d}" if k.expires_at else "-",
            f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "-",
        )
    out.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by `catalog keys list`.")],
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Revoke a key (running services stop accepting it within seconds)."""
    from catalog.auth.service import revoke_key

    async def run(conn: Any) -> Any:
        return await revoke_key(conn, key_id=key_id, actor=cli_actor())

    if not with_db(home, database_url, run):
        raise fail(f"no active key with id {key_id!r}")
    console.print(f"revoked {key_id}")


if __name__ == "__main__":
    app()
