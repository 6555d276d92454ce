"""Ed25519 signing keys: generated on first use, stored AES-GCM encrypted under a key-encryption key (KEK),
identified by a key id derived from the public key, rotatable; retired keys keep verifying old exports.

The KEK comes from `CATALOG_KEY_ENCRYPTION_KEY` (32 bytes, base64). Without it — development and tests
only — a KEK is generated once into `CATALOG_HOME/signing-kek` (mode 0600) with a loud warning: anyone
who can read that file can sign as the catalog, so production must set the variable (from a secret store).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.audit.append import record
from catalog.audit.models import SigningKey

log = logging.getLogger(__name__)

KEK_ENV = "CATALOG_KEY_ENCRYPTION_KEY"
KEK_FILE = "signing-kek"
ALGORITHM = "ed25519"
_warned: set[str] = set()  # warn once per process and KEK file, not on every export


class SigningError(RuntimeError):
    """The signing key cannot be used (wrong or missing KEK, corrupt ciphertext)."""


@dataclass(frozen=True, slots=True)
class KeyEncryptionKey:
    key: bytes
    source: str  # "environment" or the file path: said in logs, never the key

    @property
    def kek_id(self) -> str:
        return hashlib.sha256(b"catalog-kek-id" + self.key).hexdigest()[:16]


def parse_kek(value: str) -> bytes:
    """A KEK given as base64 (standard or URL-safe) or 64 hex characters; it must be 32 bytes."""
    value = value.strip()
    try:
        raw = (
            bytes.fromhex(value)
            if len(value) == 64
            else base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        )
    except ValueError as exc:
        raise SigningError(f"{KEK_ENV} is neither base64 nor hex") from exc
    if len(raw) != 32:
        raise SigningError(f"{KEK_ENV} must hold 32 bytes (AES-256); it holds {len(raw)}")
    return raw


def load_kek(home: Path, env_value: str | None = None) -> KeyEncryptionKey:
    """The KEK from the environment, else the development KEK file under `home` (created on first use)."""
    value = env_value if env_value is not None else os.environ.get(KEK_ENV)
    if value:
        return KeyEncryptionKey(parse_kek(value), "environment")
    path = home / KEK_FILE
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        # O_EXCL: two processes starting at once must not each write a different KEK.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(key + "\n")
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning(
            "DEVELOPMENT KEY-ENCRYPTION KEY IN USE: %s is not set, so signing keys are encrypted with the key "
            "kept in %s (mode 0600). Set %s from a secret store in production.",
            KEK_ENV,
            path,
            KEK_ENV,
        )
    return KeyEncryptionKey(parse_kek(path.read_text()), str(path))


def key_id_for(public_raw: bytes) -> str:
    """A key id anyone can recompute from the public key."""
    return "ed25519:" + hashlib.sha256(public_raw).hexdigest()[:16]


def public_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(public: bytes) -> str:
    key = Ed25519PublicKey.from_public_bytes(public)
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """A public key from PEM, or from 32 raw bytes / their base64."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        key = serialization.load_pem_public_key(text)
        if not isinstance(key, Ed25519PublicKey):
            raise SigningError("the PEM key is not an Ed25519 public key")
        return key
    raw = text if len(text) == 32 else base64.b64decode(text)
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, slots=True)
class Signer:
    """The active key, decrypted for the duration of one operation."""

    key_id: str
    private: Ed25519PrivateKey

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def verify_signature(public: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        public.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _encrypt(kek: KeyEncryptionKey, key_id: str, private: Ed25519PrivateKey) -> bytes:
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    nonce = secrets.token_bytes(12)
    # The key id is authenticated data: a ciphertext moved onto another key's row does not decrypt.
    return nonce + AESGCM(kek.key).encrypt(nonce, raw, key_id.encode())


def _decrypt(kek: KeyEncryptionKey, row_kek_id: str, key_id: str, blob: bytes) -> Ed25519PrivateKey:
    if row_kek_id != kek.kek_id:
        raise SigningError(
            f"signing key {key_id} was encrypted with KEK {row_kek_id}, but the configured KEK "
            f"({kek.source}) is {kek.kek_id}"
        )
    try:
        raw = AESGCM(kek.key).decrypt(blob[:12], blob[12:], key_id.encode())
    except InvalidTag as exc:
        raise SigningError(f"signing key {key_id} does not decrypt: corrupt or tampered") from exc
    return Ed25519PrivateKey.from_private_bytes(raw)


async def _create(conn: AsyncConnection, kek: KeyEncryptionKey) -> Signer:
    private = Ed25519PrivateKey.generate()
    public = public_raw(private.public_key())
    key_id = key_id_for(public)
    await conn.execute(
        insert(SigningKey).values(
            key_id=key_id,
            algorithm=ALGORITHM,
            public_key=public,
            encrypted_private_key=_encrypt(kek, key_id, private),
            kek_id=kek.kek_id,
        )
    )
    return Signer(key_id, private)


async def active_signer(conn: AsyncConnection, kek: KeyEncryptionKey) -> Signer:
    """The current signing key, generated on first use (a transaction-scoped advisory lock keeps two
    processes from both generating one)."""
    row = await _active_row(conn)
    if row is None:
        await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('catalog_signing_keys'))")
        row = await _active_row(conn)
        if row is None:
            signer = await _create(conn, kek)
            await record(
                conn,
                action="signing_key.created",
                actor=None,
                subject=f"signing_key:{signer.key_id}",
                details={"algorithm": ALGORITHM, "kek": kek.kek_id},
            )
            return signer
    return Signer(row.key_id, _decrypt(kek, row.kek_id, row.key_id, row.encrypted_private_key))


async def _active_row(conn: AsyncConnection) -> SigningKey | None:
    row = (
        await conn.execute(
            select(SigningKey)
            .where(SigningKey.retired_at.is_(None))
            .order_by(SigningKey.created_at.desc())
            .limit(1)
        )
    ).first()
    return SigningKey(**row._mapping) if row is not None else None


async def rotate(
    conn: AsyncConnection, kek: KeyEncryptionKey, *, actor: str | None
) -> tuple[str | None, str]:
    """Retire the active key (it stays, public, for verification) and make a new one: (old id, new id)."""
    await conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('catalog_signing_keys'))")
    old = await _active_row(conn)
    now = dt.datetime.now(dt.UTC)
    if old is not None:
        await conn.execute(update(SigningKey).where(SigningKey.key_id == old.key_id).values(retired_at=now))
    signer = await _create(conn, kek)
    await record(
        conn,
        action="signing_key.rotated",
        actor=actor,
        subject=f"signing_key:{signer.key_id}",
        details={"retired": old.key_id if old else None, "kek": kek.kek_id},
    )
    return (old.key_id if old else None), signer.key_id


async def list_public_keys(conn: AsyncConnection) -> list[SigningKey]:
    """Every key ever used, newest first, private halves excluded by the caller's serialisation."""
    rows = (await conn.execute(select(SigningKey).order_by(SigningKey.created_at.desc()))).all()
    return [SigningKey(**row._mapping) for row in rows]


async def public_key_by_id(conn: AsyncConnection, key_id: str) -> Ed25519PublicKey | None:
    raw = (
        await conn.execute(select(SigningKey.public_key).where(SigningKey.key_id == key_id))
    ).scalar_one_or_none()
    return Ed25519PublicKey.from_public_bytes(bytes(raw)) if raw is not None else None


def kek_from_settings(settings: Any) -> KeyEncryptionKey:
    """The KEK the settings configure (`key_encryption_key`), else the development one under `home`."""
    secret = getattr(settings, "key_encryption_key", None)
    value = secret.get_secret_value() if secret is not None else None
    return load_kek(Path(settings.home), value)
