"""A small fintech scenario across a change (March, then April) and bundle helpers for the export tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.factories import at, column_lineage, dataset, run_event, schema

PG = "postgres://payments-db:5432"
BQ = "bigquery"
AS_OF_MARCH = "2026-03-31T23:59:59+00:00"


def march_events() -> list[dict[str, Any]]:
    customers = dataset(PG, "payments.public.customers", schema=schema("id", "email", "cpf"))
    analytics = dataset(
        BQ,
        "analytics.customers",
        schema=schema("id", "email"),
        columnLineage=column_lineage(
            {
                "id": [(PG, "payments.public.customers", "id", "DIRECT", "IDENTITY", False)],
                "email": [(PG, "payments.public.customers", "email", "DIRECT", "IDENTITY", False)],
            }
        ),
    )
    return [
        run_event(
            when=at(day, 2),
            job=("airflow-analytics", "customers_to_bq"),
            inputs=[customers],
            outputs=[analytics],
        )
        for day in (3, 10)
    ]


def april_events() -> list[dict[str, Any]]:
    """After the as-of instant: a new dataset, a new column, a changed type, a new flow."""
    analytics = dataset(
        BQ,
        "analytics.customers",
        schema=schema("id", ("email", "BYTES"), "phone"),
        columnLineage=column_lineage(
            {"phone": [(PG, "payments.public.customers", "phone", "DIRECT", "IDENTITY", False)]}
        ),
    )
    cards = dataset(PG, "cards.public.cards", schema=schema("card_pan", "customer_id"))
    cards_bq = dataset(
        BQ,
        "analytics.cards",
        schema=schema("card_pan"),
        columnLineage=column_lineage(
            {"card_pan": [(PG, "cards.public.cards", "card_pan", "DIRECT", "IDENTITY", True)]}
        ),
    )
    return [
        run_event(
            when=at(5, 2, month=4),
            job=("airflow-analytics", "customers_to_bq"),
            inputs=[dataset(PG, "payments.public.customers", schema=schema("id", "email", "cpf", "phone"))],
            outputs=[analytics],
        ),
        run_event(
            when=at(6, 2, month=4),
            job=("airflow-analytics", "cards_to_bq"),
            inputs=[cards],
            outputs=[cards_bq],
        ),
    ]


async def load(client: httpx.AsyncClient, events: list[dict[str, Any]]) -> None:
    response = await client.post("/api/v1/lineage/batch", json=events)
    assert response.status_code in (200, 204), response.text


def read(bundle: Path, name: str) -> bytes:
    with zipfile.ZipFile(bundle) as zf:
        return zf.read(name)


def manifest(bundle: Path) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(read(bundle, "manifest.json"))
    return value


def rewrite(bundle: Path, out: Path, name: str, change: Any) -> None:
    """Copy a bundle, passing one member's bytes through `change` (an attacker with the zip in hand)."""
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            dst.writestr(info, change(data) if info.filename == name else data)


def flip_one_byte(data: bytes) -> bytes:
    buffer = io.BytesIO(data).getbuffer().tobytes()
    index = len(buffer) // 2
    return buffer[:index] + bytes([buffer[index] ^ 0x01]) + buffer[index + 1 :]


def with_entry(
    bundle: Path, out: Path, entry: zipfile.ZipInfo, data: bytes, *, before: str | None = None
) -> Path:
    """Copy a bundle with one more member (placed before the genuine `before` member, else at the end),
    written as given: any name, any attributes — what a forger's own zip tool can produce."""
    import warnings

    with (
        zipfile.ZipFile(bundle) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")  # zipfile warns about a duplicate name: that is the point
        for info in src.infolist():
            if info.filename == before:
                dst.writestr(entry, data)
            dst.writestr(info, src.read(info.filename))
        if before is None:
            dst.writestr(entry, data)
    return out


def forged_entries(bundle: Path, tmp: Path, target: str) -> dict[str, tuple[Path, str]]:
    """One bundle per unsafe kind of entry, and the problem a verifier must report for it."""
    genuine = read(bundle, target)
    link = zipfile.ZipInfo("inventory/link.csv")
    link.external_attr = (0o120777 << 16) | 0x20  # S_IFLNK | 0777, as `zip --symlinks` stores one
    return {
        "duplicate": (
            with_entry(bundle, tmp / "dup.zip", zipfile.ZipInfo(target), b"forged," + genuine, before=target),
            f"{target}: appears twice in the zip",
        ),
        "unlisted": (
            with_entry(bundle, tmp / "extra.zip", zipfile.ZipInfo("inventory/extra.csv"), b"a\n"),
            "inventory/extra.csv: not listed in the manifest (added after signing)",
        ),
        "absolute": (
            with_entry(bundle, tmp / "abs.zip", zipfile.ZipInfo("/etc/cron.d/catalog"), b"* * * * * x\n"),
            "/etc/cron.d/catalog: an absolute path",
        ),
        "dotdot": (
            with_entry(bundle, tmp / "up.zip", zipfile.ZipInfo("inventory/../../evil.csv"), b"a\n"),
            "inventory/../../evil.csv: a path that climbs out with '..'",
        ),
        "symlink": (
            with_entry(bundle, tmp / "link.zip", link, b"/etc/passwd"),
            "inventory/link.csv: a symbolic link",
        ),
    }
