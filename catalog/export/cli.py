"""`catalog export --out FILE …` writes a signed bundle; `catalog export verify BUNDLE --public-key …` checks one."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from catalog.cli_support import DbOpt, HomeOpt, cli_actor

export_app = typer.Typer(
    help="Signed compliance bundles: `catalog export --out FILE [--as-of T]`; check one with "
    "`catalog export verify BUNDLE --public-key KEY.pem|KEY_ID` (a PEM file from `catalog signing "
    "public-key`, or a signing key id from `catalog signing list`).",
    invoke_without_command=True,
)


def parse_instant(value: str | None, *, end_of_day: bool = True) -> dt.datetime | None:
    """ISO 8601; no zone means UTC; a bare date means the end of that day ("as of June 30")."""
    if value is None:
        return None
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            moment = dt.time.max if end_of_day else dt.time.min
            return dt.datetime.combine(day, moment, tzinfo=dt.UTC)
        parsed = dt.datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 date or instant: {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


@export_app.callback()
def export(
    ctx: typer.Context,
    out_path: Annotated[Path | None, typer.Option("--out", help="Where to write the zip.")] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Reproduce the catalog at this instant or date.")
    ] = None,
    period_from: Annotated[
        str | None, typer.Option("--from", help="Period start (audit rows, denials).")
    ] = None,
    period_to: Annotated[str | None, typer.Option("--to", help="Period end.")] = None,
    product: Annotated[str | None, typer.Option(help="Only this product's data.")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Write a signed compliance bundle (zip) of the catalog as of an instant."""
    if ctx.invoked_subcommand is not None:
        return
    from catalog.audit.signing import kek_from_settings
    from catalog.cli_support import console, fail, out, settings_from
    from catalog.db.engine import create_engine
    from catalog.db.replica import ReadRouter
    from catalog.db.resolve import migrated
    from catalog.export.bundle import ExportRequest, write_bundle

    if out_path is None:
        raise fail("give --out FILE (or a subcommand: verify)", 2)
    request = ExportRequest(
        as_of=parse_instant(as_of),
        period_from=parse_instant(period_from, end_of_day=False),
        period_to=parse_instant(period_to),
        product=product,
        actor=cli_actor(),
    )
    settings = settings_from(home, database_url)
    kek = kek_from_settings(settings)

    async def run(url: str) -> Any:
        engine = create_engine(url, pool_size=2)
        # With CATALOG_READ_DATABASE_URL the snapshot is read on the replica, as `GET /exports` does.
        replica_url = settings.read_database_url
        replica = create_engine(replica_url, pool_size=1, connect_timeout=2.0) if replica_url else None
        read = ReadRouter(engine, replica, max_wait_seconds=settings.read_your_writes_wait_seconds)
        try:
            return await write_bundle(engine, out_path, request, kek, read=read)
        finally:
            await read.dispose()
            await engine.dispose()

    with migrated(settings) as db:
        result = asyncio.run(run(db.service_url))
    included = [n for n, s in result.manifest["sections"].items() if s["included"]]
    omitted = [n for n, s in result.manifest["sections"].items() if not s["included"]]
    console.print(f"wrote [bold]{out_path}[/] as of {result.manifest['asOf']}, signed with {result.key_id}")
    console.print(f"  sections: {', '.join(included)}")
    if omitted:
        console.print(f"  omitted (module not installed): {', '.join(omitted)}")
    out.print(str(out_path))


@export_app.command("verify")
def export_verify(
    bundle: Annotated[Path, typer.Argument(help="The bundle (zip).", exists=True, dir_okay=False)],
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            help="Required. A public key file (PEM, or base64 of the raw key; `catalog signing public-key "
            "KEY_ID > key.pem`), or a signing key id to look up in the catalog (`catalog signing list`).",
            show_default=False,
        ),
    ] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Check the manifest's signature and every file's SHA-256 (exit 1 on any mismatch):
    `catalog export verify BUNDLE --public-key KEY.pem|KEY_ID`."""
    from catalog.audit.signing import load_public_key, public_key_by_id
    from catalog.cli_support import console, fail, with_db
    from catalog.export.verify import signature_key_id, verify_bundle

    if public_key is None:
        # The key must come from the verifier, not from the bundle: name the one the bundle claims, so
        # the auditor knows which to fetch from a source they trust.
        try:
            claimed = signature_key_id(bundle)
        except Exception:
            claimed = None
        which = f"KEY_ID is {claimed}, the key this bundle says signed it; " if claimed else ""
        raise fail(
            "give --public-key: a PEM file of the signing public key (`catalog signing public-key KEY_ID > "
            "key.pem`, or GET /api/v1/signing-keys), or a signing key id to look up in this catalog "
            f"(`catalog signing list`). {which}e.g. `catalog export verify {bundle} --public-key "
            f"{claimed or 'KEY_ID'}`",
            2,
        )
    candidate = Path(public_key)
    if candidate.is_file():
        key = load_public_key(candidate.read_bytes())
    else:

        async def run(conn: Any) -> Any:
            return await public_key_by_id(conn, public_key)

        found = with_db(home, database_url, run)
        if found is None:
            raise fail(f"{public_key!r} is neither a file nor a known signing key id", 2)
        key = found
    check = verify_bundle(bundle, key)
    if not check.ok:
        for problem in check.problems:
            console.print(f"  [red]✗[/] {problem}")
        raise fail(f"{bundle} does NOT verify")
    console.print(
        f"[green]{bundle} verifies[/]: signature by {check.key_id} valid, {check.files_checked} files match "
        f"(as of {check.as_of})"
    )
