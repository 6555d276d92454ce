"""Write a compliance bundle: every section streamed from one consistent snapshot into a zip as CSV and
JSON, an HTML report, and a manifest (file hashes, period, asOf, filters, audit-chain head) signed with
the catalog's Ed25519 key.

Memory stays bounded whatever the catalog's size: rows come through server-side cursors and go straight
into the zip; the JSON twin of each file is spooled to a temporary file meanwhile (one pass over the
rows, not two queries), and the report keeps only counts and a capped sample.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import logging
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog import __version__
from catalog.audit import service as audit
from catalog.audit.signing import ALGORITHM, KeyEncryptionKey, Signer, active_signer
from catalog.db.replica import ReadRouter, current_lsn
from catalog.export.report import FlowGraph, render_report
from catalog.export.sections import SECTIONS, Section, SectionResult

log = logging.getLogger(__name__)

FORMAT = "catalog-export/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
REPORT = "report.html"
SAMPLE_ROWS = 50  # rows of each section shown in the HTML report (the CSV/JSON have them all)


@dataclass(frozen=True, slots=True)
class ExportRequest:
    as_of: dt.datetime | None = None  # None: now
    period_from: dt.datetime | None = None
    period_to: dt.datetime | None = None
    product: str | None = None
    actor: str | None = None


@dataclass(frozen=True, slots=True)
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    key_id: str


class _HashingWriter:
    """Writes through to a zip entry while hashing and counting, so no file is read twice."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> int:
        self.sha.update(chunk)
        self.size += len(chunk)
        self.target.write(chunk)
        return len(chunk)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    return value


async def _tables(conn: AsyncConnection) -> set[str]:
    rows = await conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
    return {r[0] for r in rows}


class _Bundle:
    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.files: dict[str, dict[str, Any]] = {}

    def _entry(self, name: str) -> zipfile.ZipInfo:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # reproducible bytes
        info.compress_type = zipfile.ZIP_DEFLATED
        return info

    def add_bytes(self, name: str, data: bytes, rows: int | None = None) -> None:
        self.zf.writestr(self._entry(name), data)
        self.files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        if rows is not None:
            self.files[name]["rows"] = rows

    async def add_section(
        self, conn: AsyncConnection, section: Section, sql: str, params: dict[str, Any]
    ) -> SectionResult:
        result = SectionResult(section)
        csv_name, json_name = f"{section.name}.csv", f"{section.name}.json"
        # zipfile allows one write handle at a time: the CSV entry is streamed (and closed) first while
        # the JSON twin is spooled to a temporary file, then copied into its own entry.
        with tempfile.TemporaryFile() as spool:
            with self.zf.open(self._entry(csv_name), "w") as raw_csv:
                csv_out = _HashingWriter(raw_csv)
                buffer = io.StringIO()
                writer = csv.writer(buffer)
                stream = await conn.stream(text(sql), params)
                columns = list(stream.keys())
                result.columns = columns
                writer.writerow(columns)
                spool.write(b"[")
                async for row in stream:
                    values = list(row)
                    cells = [_cell(v) for v in values]
                    writer.writerow(cells)
                    if buffer.tell() > 64 * 1024:
                        csv_out.write(buffer.getvalue().encode())
                        buffer.seek(0)
                        buffer.truncate()
                    spool.write(b",\n" if result.rows else b"\n")
                    spool.write(
                        orjson.dumps({c: _json_value(v) for c, v in zip(columns, values, strict=True)})
                    )
                    if len(result.sample) < SAMPLE_ROWS:
                        result.sample.append(cells)
                    result.rows += 1
                csv_out.write(buffer.getvalue().encode())
                spool.write(b"\n]\n")
            self.files[csv_name] = {
                "sha256": csv_out.sha.hexdigest(),
                "bytes": csv_out.size,
                "rows": result.rows,
            }
            spool.seek(0)
            with self.zf.open(self._entry(json_name), "w") as raw_json:
                json_out = _HashingWriter(raw_json)
                while chunk := spool.read(1024 * 1024):
                    json_out.write(chunk)
            self.files[json_name] = {
                "sha256": json_out.sha.hexdigest(),
                "bytes": json_out.size,
                "rows": result.rows,
            }
        return result


async def _flow_graph(
    conn: AsyncConnection, params: dict[str, Any], tables: set[str], limit: int = 40
) -> FlowGraph:
    """Dataset-to-dataset flows for the picture: the `limit` busiest datasets of the PII flows when
    classifications exist (else of all flows), so the drawing stays legible, with every flow among them."""
    has_pii = {"classifications", "product_assignments"} <= tables
    product = (
        "(SELECT pa.product FROM product_assignments pa WHERE pa.subject_kind = 'dataset' AND pa.subject_id = {})"
        if "product_assignments" in tables
        else "NULL::text"
    )
    tier = (
        "(SELECT pa.tier FROM product_assignments pa WHERE pa.subject_kind = 'namespace' AND pa.subject_id = {})"
        if "product_assignments" in tables
        else "NULL::text"
    )
    pii = (
        "EXISTS (SELECT 1 FROM classifications c WHERE c.field_id = e.source_field_id)"
        if has_pii
        else "false"
    )
    edges_sql = f"""
SELECT e.source_dataset_id AS src, e.target_dataset_id AS dst, bool_or({pii}) AS pii,
       bool_and(e.masking) AS masked, count(*) AS columns
FROM column_edges e
WHERE e.first_seen <= :as_of AND e.source_dataset_id <> e.target_dataset_id
GROUP BY 1, 2
UNION ALL
SELECT i.dataset_id, o.dataset_id, false, false, 0
FROM job_io i JOIN job_io o ON o.job_id = i.job_id AND o.direction = 'output'
WHERE i.direction = 'input' AND i.first_seen <= :as_of AND o.first_seen <= :as_of AND i.dataset_id <> o.dataset_id
  AND NOT EXISTS (SELECT 1 FROM column_edges e WHERE e.source_dataset_id = i.dataset_id
                  AND e.target_dataset_id = o.dataset_id AND e.first_seen <= :as_of)"""

    async def picture(basis: str) -> list[Any]:
        # The busiest datasets of the basis flows; then every flow among them (plain ones too, drawn grey,
        # so a PII picture still shows how data moves between the datasets it holds).
        return list(
            (
                await conn.execute(
                    text(
                        f"WITH edges AS ({edges_sql}), basis AS (SELECT * FROM edges{basis}), "
                        "degree AS (SELECT id, count(*) AS n FROM (SELECT src AS id FROM basis UNION ALL "
                        "SELECT dst FROM basis) x GROUP BY id ORDER BY n DESC, id LIMIT :limit) "
                        "SELECT src, dst, pii, masked, columns FROM edges WHERE src IN (SELECT id FROM degree) "
                        "AND dst IN (SELECT id FROM degree)"
                    ),
                    {"as_of": params["as_of"], "limit": limit},
                )
            ).all()
        )

    rows = await picture(" WHERE pii" if has_pii else "")
    if not rows and has_pii:
        rows = await picture("")  # no PII flows: show the plain flows rather than an empty picture
    ids = sorted({r.src for r in rows} | {r.dst for r in rows})
    nodes: dict[int, dict[str, Any]] = {}
    if ids:
        for r in await conn.execute(
            text(
                f"SELECT d.id, n.name AS namespace, d.name, {product.format('d.id')} AS product, "
                f"{tier.format('n.id')} AS tier FROM datasets d JOIN namespaces n ON n.id = d.namespace_id "
                "WHERE d.id = ANY(:ids)"
            ),
            {"ids": ids},
        ):
            nodes[r.id] = {"namespace": r.namespace, "name": r.name, "product": r.product, "tier": r.tier}
    return FlowGraph(
        nodes=nodes,
        edges=[(int(r.src), int(r.dst), bool(r.pii), bool(r.masked)) for r in rows],
        pii_only=has_pii and any(r.pii for r in rows),
    )


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat() if value is not None else None


async def write_bundle(
    engine: AsyncEngine,
    out: Path,
    request: ExportRequest,
    kek: KeyEncryptionKey,
    *,
    read: ReadRouter | None = None,
) -> ExportResult:
    """Write the bundle to `out`, sign its manifest, and record the export (and a checkpoint) in the audit log.

    With `read` (the service's router) the snapshot is read on a replica that has replayed everything
    committed before the export began (the signing key just created included), falling back to the
    primary after the router's bounded wait: an export never misses a write that preceded it."""
    created_at = dt.datetime.now(dt.UTC)
    as_of = request.as_of or created_at
    async with engine.begin() as conn:
        signer = await active_signer(conn, kek)  # may create the first key: a write, so before the snapshot
    params = {
        "as_of": as_of,
        "from": request.period_from,
        "to": request.period_to,
        "product": request.product,
    }
    if read is not None and read.has_replica:
        snapshot = await read.connect(after=await current_lsn(engine))
    else:
        snapshot = await engine.connect()
    try:
        # One snapshot for every file: counts, rows and the chain head agree with each other.
        conn = await snapshot.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        async with conn.begin():
            manifest = await _write_zip(conn, out, params, request, created_at, signer)
    finally:
        await snapshot.close()
    async with engine.begin() as conn:
        await audit.record(
            conn,
            action="export.created",
            actor=request.actor,
            subject=f"export:{manifest['manifestId']}",
            details={
                "asOf": manifest["asOf"],
                "period": manifest["period"],
                "filters": manifest["filters"],
                "keyId": signer.key_id,
                "auditChainHead": manifest["auditChain"],
            },
        )
        await audit.checkpoint(conn, kek)
    return ExportResult(out, manifest, signer.key_id)


async def _write_zip(
    conn: AsyncConnection,
    out: Path,
    params: dict[str, Any],
    request: ExportRequest,
    created_at: dt.datetime,
    signer: Signer,
) -> dict[str, Any]:
    tables = await _tables(conn)
    chain_head = await audit.head(conn, as_of=params["as_of"])
    sections: dict[str, Any] = {}
    results: list[SectionResult] = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        bundle = _Bundle(zf)
        for section in SECTIONS:
            missing = [t for t in section.requires if t not in tables]
            if missing:
                sections[section.name] = {
                    "title": section.title,
                    "included": False,
                    "note": f"omitted: table(s) {', '.join(missing)} not in this catalog",
                }
                continue
            sql = section.sql
            if section.sql_without_products is not None and "product_assignments" not in tables:
                sql = section.sql_without_products
            result = await bundle.add_section(conn, section, sql, params)
            results.append(result)
            sections[section.name] = {
                "title": section.title,
                "included": True,
                "rows": result.rows,
                "files": [f"{section.name}.csv", f"{section.name}.json"],
                "periodFiltered": section.period_filtered,
            }
        graph = await _flow_graph(conn, params, tables)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "generator": {"name": "lineage-catalog", "version": __version__},
            "createdAt": _iso(created_at),
            "asOf": _iso(params["as_of"]),
            "period": {"from": _iso(params["from"]), "to": _iso(params["to"])},
            "filters": {"product": request.product},
            "auditChain": {
                "headSeq": chain_head.seq,
                "headHash": chain_head.hash.hex(),
                "headRecordedAt": _iso(chain_head.recorded_at),
            },
            "sections": sections,
            "signature": {"file": SIGNATURE, "algorithm": ALGORITHM, "keyId": signer.key_id},
        }
        report = render_report(manifest, results, graph)
        bundle.add_bytes(REPORT, report.encode())
        manifest["files"] = dict(sorted(bundle.files.items()))
        manifest["manifestId"] = hashlib.sha256(
            orjson.dumps(
                {k: v for k, v in manifest.items() if k != "manifestId"}, option=orjson.OPT_SORT_KEYS
            )
        ).hexdigest()[:16]
        manifest_bytes = orjson.dumps(manifest, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        zf.writestr(bundle._entry(MANIFEST), manifest_bytes)
        signature = {
            "algorithm": ALGORITHM,
            "keyId": signer.key_id,
            "signature": base64.b64encode(signer.sign(manifest_bytes)).decode(),
        }
        zf.writestr(bundle._entry(SIGNATURE), orjson.dumps(signature, option=orjson.OPT_INDENT_2))
    return manifest


def sections_included(manifest: dict[str, Any]) -> Sequence[str]:
    return [name for name, s in manifest["sections"].items() if s.get("included")]
