"""Compliance bundles: they verify; one changed byte or a different key fails verification; rotated keys
keep old bundles verifiable; as-of reproduces the catalog at an instant after later changes."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.audit import service as audit
from catalog.audit.signing import kek_from_settings, load_public_key, public_key_by_id, rotate
from catalog.auth.service import create_key, revoke_key
from catalog.config import Settings
from catalog.export.bundle import ExportRequest, ExportResult, write_bundle
from catalog.export.verify import verify_bundle
from tests.export.helpers import (
    AS_OF_MARCH,
    april_events,
    flip_one_byte,
    forged_entries,
    load,
    manifest,
    march_events,
    read,
    rewrite,
)


async def _export(
    engine: AsyncEngine, settings: Settings, out: Path, as_of: str | dt.datetime | None = None
) -> ExportResult:
    when = dt.datetime.fromisoformat(as_of) if isinstance(as_of, str) else as_of
    return await write_bundle(
        engine, out, ExportRequest(as_of=when, actor="test"), kek_from_settings(settings)
    )


async def _public(engine: AsyncEngine, key_id: str) -> object:
    async with engine.connect() as conn:
        key = await public_key_by_id(conn, key_id)
    assert key is not None
    return key


async def test_a_bundle_verifies_and_lists_what_it_holds(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    await load(client, march_events())
    result = await _export(engine, settings, tmp_path / "b.zip")
    check = verify_bundle(result.path, await _public(engine, result.key_id))  # type: ignore[arg-type]
    assert check.ok, check.problems
    m = manifest(result.path)
    assert m["sections"]["inventory/datasets"]["rows"] == 2
    assert m["sections"]["inventory/column_edges"]["rows"] == 2
    for name in ("inventory/datasets.csv", "inventory/datasets.json", "audit/audit_log.csv", "report.html"):
        assert name in m["files"]
    assert m["auditChain"]["headSeq"] >= 0
    assert "payments.public.customers" in read(result.path, "inventory/datasets.csv").decode()
    # Every exported section says whether it was included; omitted ones say why.
    for info in m["sections"].values():
        assert info["included"] or "omitted" in info["note"]


async def test_one_changed_byte_in_a_csv_fails_verification(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    await load(client, march_events())
    result = await _export(engine, settings, tmp_path / "b.zip")
    key = await _public(engine, result.key_id)
    tampered = tmp_path / "tampered.zip"
    rewrite(result.path, tampered, "inventory/column_edges.csv", flip_one_byte)
    check = verify_bundle(tampered, key)  # type: ignore[arg-type]
    assert not check.ok
    assert any("inventory/column_edges.csv" in p and "SHA-256" in p for p in check.problems)

    # Editing the manifest to match the new hash breaks the signature instead.
    forged = tmp_path / "forged.zip"
    rewrite(result.path, forged, "manifest.json", lambda data: data.replace(b'"asOf"', b'"asof"'))
    check = verify_bundle(forged, key)  # type: ignore[arg-type]
    assert not check.ok
    assert any("signature is invalid" in p for p in check.problems)

    # A byte flipped inside the zip file itself (no re-zipping) is caught too.
    raw = bytearray(result.path.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(raw))
    assert not verify_bundle(damaged, key).ok  # type: ignore[arg-type]


async def test_another_key_does_not_verify(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    await load(client, march_events())
    result = await _export(engine, settings, tmp_path / "b.zip")
    stranger = Ed25519PrivateKey.generate().public_key()
    check = verify_bundle(result.path, stranger)
    assert not check.ok
    assert any("signature is invalid" in p for p in check.problems)


async def test_rotation_keeps_old_bundles_verifiable(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    await load(client, march_events())
    old = await _export(engine, settings, tmp_path / "old.zip")
    async with engine.begin() as conn:
        retired, new_id = await rotate(conn, kek_from_settings(settings), actor="test")
    assert retired == old.key_id
    new = await _export(engine, settings, tmp_path / "new.zip")
    assert new.key_id == new_id != old.key_id
    assert verify_bundle(old.path, await _public(engine, old.key_id)).ok  # type: ignore[arg-type]
    assert verify_bundle(new.path, await _public(engine, new.key_id)).ok  # type: ignore[arg-type]
    assert not verify_bundle(old.path, await _public(engine, new.key_id)).ok  # type: ignore[arg-type]

    published = (await client.get("/api/v1/signing-keys")).json()["keys"]
    by_id = {k["keyId"]: k for k in published}
    assert by_id[new_id]["active"]
    assert not by_id[old.key_id]["active"]
    # The published key verifies the old bundle: an auditor needs nothing but the endpoint.
    public = load_public_key(by_id[old.key_id]["publicKeyPem"].encode())
    assert verify_bundle(old.path, public).ok
    assert load_public_key(by_id[old.key_id]["publicKey"].encode()) is not None
    assert base64.b64decode(by_id[old.key_id]["publicKey"])  # raw 32 bytes, base64


async def test_signing_keys_are_encrypted_at_rest(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    result = await _export(engine, settings, tmp_path / "b.zip")
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT public_key, encrypted_private_key FROM signing_keys WHERE key_id = :k"),
                {"k": result.key_id},
            )
        ).one()
    assert len(bytes(row.encrypted_private_key)) == 12 + 32 + 16  # nonce + ciphertext + GCM tag
    kek_file = settings.home / "signing-kek"
    assert kek_file.stat().st_mode & 0o777 == 0o600
    # With another KEK the key cannot be used (and says why) rather than silently making a new one.
    from catalog.audit.signing import SigningError, load_kek

    with pytest.raises(SigningError, match="KEK"):
        await _export_with(engine, tmp_path, load_kek(tmp_path / "other", ""))


async def _export_with(engine: AsyncEngine, tmp_path: Path, kek: object) -> None:
    await write_bundle(engine, tmp_path / "x.zip", ExportRequest(), kek)  # type: ignore[arg-type]


async def test_as_of_reproduces_the_catalog_after_later_changes(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    await load(client, march_events())
    march = await _export(engine, settings, tmp_path / "march.zip", AS_OF_MARCH)
    await load(client, april_events())
    later = await _export(engine, settings, tmp_path / "march-again.zip", AS_OF_MARCH)
    now = await _export(engine, settings, tmp_path / "now.zip")

    first, again = manifest(march.path)["files"], manifest(later.path)["files"]
    data_files = [n for n in first if n != "report.html"]
    assert data_files
    for name in data_files:
        assert first[name]["sha256"] == again[name]["sha256"], name
    columns = read(later.path, "inventory/columns.csv").decode()
    assert "phone" not in columns
    assert "BYTES" not in columns  # the type email had in March, not April's
    assert "cards" not in read(later.path, "inventory/datasets.csv").decode()

    current = read(now.path, "inventory/columns.csv").decode()
    assert "phone" in current
    assert "BYTES" in current
    assert "analytics.cards" in read(now.path, "inventory/datasets.csv").decode()


async def test_as_of_cuts_the_audit_trail_at_the_instant(
    engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    async with engine.begin() as conn:
        before = await create_key(conn, name="before", role="engineer", product="payments", actor="test")
    await asyncio.sleep(0.01)
    instant = dt.datetime.now(dt.UTC)
    await asyncio.sleep(0.01)
    async with engine.begin() as conn:
        after = await create_key(conn, name="after", role="engineer", product="payments", actor="test")
        await revoke_key(conn, key_id=before.key_id, actor="test")
    result = await _export(engine, settings, tmp_path / "b.zip", instant)
    trail = read(result.path, "audit/audit_log.csv").decode()
    assert f"api_key:{before.key_id}" in trail
    assert f"api_key:{after.key_id}" not in trail
    assert "api_key.revoked" not in trail
    async with engine.connect() as conn:
        head = await audit.head(conn, as_of=instant)
    assert manifest(result.path)["auditChain"]["headHash"] == head.hash.hex()
    # The export itself is audited, after the fact, and the chain is still intact.
    async with engine.connect() as conn:
        report = await audit.verify(conn)
        actions = (await conn.execute(text("SELECT action FROM audit_log ORDER BY seq"))).scalars().all()
    assert report.ok
    assert actions[-1] == "export.created"


async def test_the_export_endpoint_is_for_auditors(
    client: httpx.AsyncClient, engine: AsyncEngine, tmp_path: Path
) -> None:
    await load(client, march_events())
    async with engine.begin() as conn:
        engineer = await create_key(conn, name="eng", role="engineer", product="payments")
        auditor = await create_key(conn, name="aud", role="auditor")
    denied = await client.get("/api/v1/exports", headers={"Authorization": f"Bearer {engineer.token}"})
    assert denied.status_code == 403
    async with engine.connect() as conn:
        last = (
            await conn.execute(text("SELECT action, actor FROM audit_log ORDER BY seq DESC LIMIT 1"))
        ).one()
    assert (last.action, last.actor) == ("export.denied", engineer.key_id)

    response = await client.get(
        "/api/v1/exports",
        params={"asOf": AS_OF_MARCH},
        headers={"Authorization": f"Bearer {auditor.token}"},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    bundle = tmp_path / "rest.zip"
    bundle.write_bytes(response.content)
    keys = (await client.get("/api/v1/signing-keys")).json()["keys"]
    key = load_public_key(keys[0]["publicKeyPem"].encode())
    check = verify_bundle(bundle, key)
    assert check.ok, check.problems
    assert manifest(bundle)["asOf"] == AS_OF_MARCH

    naive = await client.get("/api/v1/exports", params={"asOf": "2026-03-31T00:00:00"})
    assert naive.status_code == 400


@pytest.mark.parametrize("kind", ["duplicate", "unlisted", "absolute", "dotdot", "symlink"])
async def test_unsafe_zip_entries_fail_verification(
    client: httpx.AsyncClient, engine: AsyncEngine, settings: Settings, tmp_path: Path, kind: str
) -> None:
    """A forged copy of a CSV placed before the genuine one passes every hash (readers pick the last
    copy) while `unzip` shows the forgery; absolute, `..` and symlink entries escape the directory an
    auditor extracts into. The verifier refuses each, and the CLI exits 1 naming it."""
    from typer.testing import CliRunner

    from catalog.audit.signing import public_pem, public_raw
    from catalog.cli import app

    await load(client, march_events())
    result = await _export(engine, settings, tmp_path / "b.zip")
    key = await _public(engine, result.key_id)
    forged, problem = forged_entries(result.path, tmp_path, "inventory/datasets.csv")[kind]
    check = verify_bundle(forged, key)  # type: ignore[arg-type]
    assert problem in check.problems, check.problems
    pem = tmp_path / "key.pem"
    pem.write_text(public_pem(public_raw(key)))  # type: ignore[arg-type]
    cli = CliRunner().invoke(app, ["export", "verify", str(forged), "--public-key", str(pem)])
    assert cli.exit_code == 1, cli.output
    assert problem in " ".join(cli.output.split())
    genuine = CliRunner().invoke(app, ["export", "verify", str(result.path), "--public-key", str(pem)])
    assert genuine.exit_code == 0, genuine.output
