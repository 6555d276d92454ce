"""What every `catalog` subcommand shares: the consoles, the --home/--database-url options, settings,
errors, the one-transaction database runner and the actor the audit log records.

Below `catalog/cli.py` and the domains' own commands (audit, export, scan), which all import it: the
top-level command imports them, never the other way round."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from catalog.config import Settings, load_settings

# Not on a terminal (a pipe, a file, a log collector), rich would wrap and cut at 80 columns: log lines
# broken in two, `keys list` names cut to `airflow…`. There nothing is wrapped: a line is as long as its
# content (a table as wide as its widest row). COLUMNS, when set, still wins; a terminal keeps its width.
UNWRAPPED_WIDTH = 100_000


def _console(*, stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    on_terminal = hasattr(stream, "isatty") and stream.isatty()
    width = None if on_terminal or os.environ.get("COLUMNS") else UNWRAPPED_WIDTH
    return Console(stderr=stderr, width=width, soft_wrap=not on_terminal)


console = _console(stderr=True)
out = _console(stderr=False)

HomeOpt = Annotated[
    Path | None, typer.Option("--home", help="State directory (CATALOG_HOME).", show_default=False)
]
DbOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="External PostgreSQL (CATALOG_DATABASE_URL).", show_default=False),
]


def settings_from(home: Path | None, database_url: str | None, **extra: Any) -> Settings:
    """The settings with the command's options applied; invalid ones end the command (exit 2)."""
    try:
        return load_settings(home=home, database_url=database_url, **extra)
    except Exception as exc:
        console.print(f"[red]invalid settings:[/] {exc}")
        raise typer.Exit(2) from exc


def fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[red]error:[/] {message}")
    return typer.Exit(code)


def with_db(home: Path | None, database_url: str | None, work: Any) -> Any:
    """Run `work(conn)` in one committed transaction on the configured database (migrating first)."""
    # Imported here: `catalog --help` and `catalog version` need no database driver.
    from catalog.db.engine import create_engine
    from catalog.db.resolve import migrated

    settings = settings_from(home, database_url)

    async def run(url: str) -> Any:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as conn:
                return await work(conn)
        finally:
            await engine.dispose()

    with migrated(settings) as db:
        return asyncio.run(run(db.service_url))


def cli_actor() -> str:
    """Who ran a CLI command, as the audit log records it (the OS user: the CLI has no API key)."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no passwd entry (containers): still say it came from the CLI
        return "cli"
