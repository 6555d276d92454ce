"""`catalog audit …` and `catalog signing …`: verify and checkpoint the audit chain, rotate signing keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from catalog.cli_support import DbOpt, HomeOpt, cli_actor

audit_app = typer.Typer(help="Verify and checkpoint the hash-chained audit log.", no_args_is_help=True)
signing_app = typer.Typer(help="Signing keys for exports and audit checkpoints.", no_args_is_help=True)


@audit_app.command("verify")
def audit_verify(
    checkpoint_files: Annotated[
        list[Path] | None,
        typer.Option(
            "--checkpoint",
            help="A checkpoint file kept outside the database (`audit checkpoint --out`); repeatable.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Walk the whole chain; name the first row edited, deleted, inserted or reordered, and every grant,
    key or waiver that disagrees with the chain (exit 1). Says how many rows follow the last checkpoint."""
    from catalog.audit.service import CheckpointFileError, load_external_checkpoint, verify
    from catalog.cli_support import console, fail, out, with_db

    try:
        external = [load_external_checkpoint(f.read_bytes(), str(f)) for f in checkpoint_files or []]
    except CheckpointFileError as exc:
        raise fail(str(exc), 2) from exc

    async def run(conn: Any) -> Any:
        return await verify(conn, external=external)

    report = with_db(home, database_url, run)
    if report.problem is not None:
        raise fail(
            f"audit chain broken at row {report.problem.seq} ({report.problem.kind}): {report.problem.message}"
        )
    if report.mismatches:
        for mismatch in report.mismatches:
            console.print(f"  [red]✗[/] {mismatch.message}")
        raise fail(
            f"audit chain intact, but {len(report.mismatches)} access record(s) disagree with it: "
            "changed outside the service"
        )
    console.print(
        f"[green]audit chain intact[/]: {report.rows} rows, {report.checkpoints} signed checkpoint(s) valid"
        + (f", {len(external)} external checkpoint(s) match" if external else "")
        + "; grants, keys and waivers match it"
    )
    anchor = f"row {report.anchored_seq}" if report.anchored_seq else "no checkpoint yet"
    console.print(
        f"{report.unanchored} row(s) after the last checkpoint ({anchor}): deleting rows from that tail "
        "is only caught by a later checkpoint"
    )
    out.print(f"head {report.head_seq} {report.head_hash.hex()}")
    out.print(f"unanchored {report.unanchored}")


@audit_app.command("checkpoint")
def audit_checkpoint(
    out_file: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Also write the signed checkpoint to this file, to keep outside the database.",
            dir_okay=False,
        ),
    ] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Sign the chain's current head (catches a cut-off tail later)."""
    import orjson

    from catalog.audit.service import checkpoint, checkpoint_document
    from catalog.audit.signing import kek_from_settings
    from catalog.cli_support import console, fail, settings_from, with_db

    kek = kek_from_settings(settings_from(home, database_url))

    async def run(conn: Any) -> Any:
        head = await checkpoint(conn, kek)
        return head, (await checkpoint_document(conn, head.seq) if head is not None else None)

    head, document = with_db(home, database_url, run)
    if head is None:
        if out_file is not None:
            raise fail("the audit log is empty: nothing to checkpoint, no file written")
        console.print("the audit log is empty: nothing to checkpoint")
        return
    console.print(f"checkpointed row {head.seq} ({head.hash.hex()})")
    if out_file is not None:
        out_file.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
        console.print(
            f"wrote {out_file}: keep it outside the database; `audit verify --checkpoint {out_file}`"
        )


@signing_app.command("rotate")
def signing_rotate(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """Retire the active signing key and create a new one (retired keys still verify old exports)."""
    from catalog.audit.signing import kek_from_settings, rotate
    from catalog.cli_support import console, settings_from, with_db

    kek = kek_from_settings(settings_from(home, database_url))

    async def run(conn: Any) -> Any:
        return await rotate(conn, kek, actor=cli_actor())

    old, new = with_db(home, database_url, run)
    console.print(f"signing key is now [bold]{new}[/]" + (f" (retired {old})" if old else ""))


@signing_app.command("list")
def signing_list(home: HomeOpt = None, database_url: DbOpt = None) -> None:
    """List signing keys (public halves only)."""
    from rich.table import Table

    from catalog.audit.signing import list_public_keys
    from catalog.cli_support import out, with_db

    async def run(conn: Any) -> Any:
        return await list_public_keys(conn)

    table = Table("key id", "algorithm", "created", "retired")
    for k in with_db(home, database_url, run):
        table.add_row(
            k.key_id,
            k.algorithm,
            f"{k.created_at:%Y-%m-%d %H:%M}",
            f"{k.retired_at:%Y-%m-%d %H:%M}" if k.retired_at else "active",
        )
    out.print(table)


@signing_app.command("public-key")
def signing_public_key(
    key_id: Annotated[str | None, typer.Argument(help="Key id (default: the active key).")] = None,
    home: HomeOpt = None,
    database_url: DbOpt = None,
) -> None:
    """Print a public key as PEM (give it to `catalog export verify --public-key`)."""
    from catalog.audit.signing import list_public_keys, public_pem
    from catalog.cli_support import fail, out, with_db

    async def run(conn: Any) -> Any:
        return await list_public_keys(conn)

    keys = with_db(home, database_url, run)
    chosen = [k for k in keys if (k.key_id == key_id if key_id else k.retired_at is None)]
    if not chosen:
        raise fail(f"no signing key {key_id!r}" if key_id else "no active signing key yet (export once)")
    out.print(public_pem(bytes(chosen[0].public_key)), end="")
