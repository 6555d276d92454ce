"""Auditors: fetch a signed export bundle from the real service and verify it offline with the client's
own checker (no `catalog` import in the client): signature, file hashes, added files, the audit chain."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from catalog.auth.service import create_key
from catalog.db.engine import create_engine
from catalog.export.verify import verify_bundle as catalog_verify
from catalog_client import AsyncCatalogClient, CatalogClient, Forbidden
from catalog_client.audit import bundle_key_id, key_id_for, load_public_key, verify_bundle
from tests.conftest import ADMIN_TOKEN, LiveServer
from tests.factories import column_lineage, dataset, run_event, schema

PG = "postgres://payments-db.internal:5432"


def _seed(catalog: CatalogClient, tmp_path: Path) -> None:
    """Some lineage, and a first export: it creates the signing key, so the next bundle's audit slice
    holds that creation and this export."""
    (tmp_path / "warm-up").mkdir()
    catalog.export(tmp_path / "warm-up")
    lineage = {"cpf": [(PG, "public.customers", "cpf", "DIRECT", "IDENTITY", False)]}
    catalog.ingest(
        run_event(
            job=("airflow", "copy"),
            inputs=[dataset(PG, "public.customers", schema=schema("id", "cpf"))],
            outputs=[
                dataset(
                    "bigquery", "wh.customers", schema=schema("cpf"), columnLineage=column_lineage(lineage)
                )
            ],
        )
    )


def _rewrite(bundle: Path, out: Path, change: Callable[[str, bytes], bytes | None]) -> Path:
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = change(info.filename, src.read(info.filename))
            if data is not None:
                dst.writestr(info, data)
    return out


def test_export_verifies_offline_and_tampering_is_named(catalog: CatalogClient, tmp_path: Path) -> None:
    _seed(catalog, tmp_path)
    bundle = catalog.export(tmp_path)  # a directory: the server's file name is kept
    assert bundle.parent == tmp_path
    assert bundle.name.startswith("catalog-export-")
    assert bundle.suffix == ".zip"

    key = catalog.signing_keys().by_id(bundle_key_id(bundle) or "")
    report = verify_bundle(bundle, key)
    assert report.ok, report.problems
    assert report.files_checked == len(report.manifest["files"]) > 3
    assert report.audit_rows > 0
    assert report.key_id == key.key_id
    # the same verdict as the service's own verifier, from the PEM alone
    assert catalog_verify(bundle, load_public_key(key.public_key_pem)).ok

    def flip(target: str) -> Callable[[str, bytes], bytes | None]:
        return lambda name, data: data + b"\n" if name == target else data

    section = next(n for n in report.manifest["files"] if n.endswith(".csv") and n != "audit/audit_log.csv")
    edited = verify_bundle(_rewrite(bundle, tmp_path / "edited.zip", flip(section)), key)
    assert f"{section}: SHA-256 differs from the manifest (the file was changed)" in edited.problems

    def add(name: str, data: bytes) -> bytes | None:
        return data

    added = _rewrite(bundle, tmp_path / "added.zip", add)
    with zipfile.ZipFile(added, "a") as zf:
        zf.writestr("extra.csv", b"a,b\n")
    assert verify_bundle(added, key).problems == [
        "extra.csv: not listed in the manifest (added after signing)"
    ]

    removed = _rewrite(bundle, tmp_path / "removed.zip", lambda n, d: None if n == section else d)
    assert verify_bundle(removed, key).problems == [f"{section}: listed in the manifest but missing"]

    stranger = Ed25519PrivateKey.generate().public_key()
    wrong = verify_bundle(bundle, stranger)
    assert any("signature is invalid" in p for p in wrong.problems)

    forged = _rewrite(
        bundle,
        tmp_path / "forged.zip",
        lambda n, d: d.replace(b'"asOf"', b'"asof"') if n == "manifest.json" else d,
    )
    assert any("signature is invalid" in p for p in verify_bundle(forged, key).problems)


def test_a_rewritten_audit_row_breaks_the_chain(catalog: CatalogClient, tmp_path: Path) -> None:
    """Even a forger who re-hashes the edited slice and re-signs the manifest (with their own key, which
    the auditor is then tricked into trusting) is caught by the audit chain."""
    _seed(catalog, tmp_path)
    bundle = catalog.export(tmp_path / "bundle.zip")
    with zipfile.ZipFile(bundle) as zf:
        rows = list(csv.DictReader(io.StringIO(zf.read("audit/audit_log.csv").decode())))
        manifest = json.loads(zf.read("manifest.json"))
    assert len(rows) >= 2
    rows[0]["action"] = "nothing.happened"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    audit = out.getvalue().encode()
    manifest["files"]["audit/audit_log.csv"]["sha256"] = hashlib.sha256(audit).hexdigest()
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True).encode()
    forger = Ed25519PrivateKey.generate()
    signature = {
        "algorithm": "ed25519",
        "keyId": key_id_for(forger.public_key()),
        "signature": base64.b64encode(forger.sign(manifest_bytes)).decode(),
    }
    replacements = {
        "audit/audit_log.csv": audit,
        "manifest.json": manifest_bytes,
        "manifest.sig": json.dumps(signature).encode(),
    }
    forged = _rewrite(bundle, tmp_path / "forged.zip", lambda n, d: replacements.get(n, d))
    report = verify_bundle(forged, forger.public_key())
    assert report.problems == [
        f"audit/audit_log.csv: row {rows[0]['seq']} was edited: its hash does not match its content"
    ]
    # and the real key refuses the forged manifest outright
    real = verify_bundle(forged, catalog.signing_keys().keys[0])
    assert any("signature is invalid" in p for p in real.problems)


async def test_async_export_with_a_period(live_server: LiveServer, tmp_path: Path) -> None:
    async with AsyncCatalogClient(live_server.url, ADMIN_TOKEN) as client:
        as_of = dt.datetime.now(dt.UTC)
        since = as_of - dt.timedelta(days=1)
        bundle = await client.export(f"{tmp_path}/exports/", as_of=as_of, period_from=since)
        keys = await client.signing_keys()
    assert bundle.parent == tmp_path / "exports"  # created: the trailing slash names a directory
    report = verify_bundle(bundle, keys.by_id(bundle_key_id(bundle) or ""))
    assert report.ok, report.problems
    assert report.manifest["period"]["from"] is not None


async def test_export_needs_the_auditor_role(
    live_server: LiveServer, database_url: str, tmp_path: Path
) -> None:
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.begin() as conn:
            engineer = await create_key(conn, name="eng", role="engineer", product="payments")
    finally:
        await engine.dispose()
    async with AsyncCatalogClient(live_server.url, engineer.token) as client:
        with pytest.raises(Forbidden) as refused:
            await client.export(tmp_path)
    assert (refused.value.status, refused.value.slug) == (403, "forbidden")
    assert not any(p.suffix in (".zip", ".part") for p in tmp_path.iterdir())  # noqa: ASYNC240


@pytest.mark.parametrize("kind", ["duplicate", "unlisted", "absolute", "dotdot", "symlink"])
def test_the_client_refuses_unsafe_zip_entries(catalog: CatalogClient, tmp_path: Path, kind: str) -> None:
    """A forged CSV placed before the genuine one (Python reads the last copy, `unzip` the first), an
    entry the manifest does not list, an absolute or `..` path, a symlink: each is refused by name."""
    from tests.export.helpers import forged_entries

    _seed(catalog, tmp_path)
    bundle = catalog.export(tmp_path / "bundle.zip")
    key = catalog.signing_keys().by_id(bundle_key_id(bundle) or "")
    assert verify_bundle(bundle, key).ok
    target = next(
        n for n in json.loads(zipfile.ZipFile(bundle).read("manifest.json"))["files"] if n.endswith(".csv")
    )
    forged, problem = forged_entries(bundle, tmp_path, target)[kind]
    report = verify_bundle(forged, key)
    assert problem in report.problems, report.problems
