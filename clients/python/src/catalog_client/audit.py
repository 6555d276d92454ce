"""Check an export bundle offline, with nothing but the bundle and the catalog's public key: the
manifest's Ed25519 signature, every file's SHA-256 against the manifest, no file added or missing, and
the audit slice's hash chain (it must link up and, when it runs to `asOf`, end at the manifest's head).

    key = client.signing_keys().by_id(bundle_key_id(path))     # or a PEM kept from an earlier fetch
    report = verify_bundle(path, key)
    assert report.ok, report.problems
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from catalog_client.models import SigningKey

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
AUDIT_SLICE = "audit/audit_log.csv"
CHAIN_VERSION = "audit-v1"
PublicKeyLike = Ed25519PublicKey | SigningKey | bytes | str


@dataclass
class BundleReport:
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    key_id: str | None = None
    as_of: str | None = None
    audit_rows: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_public_key(key: PublicKeyLike) -> Ed25519PublicKey:
    """A key from the signing-keys endpoint, a PEM (str or bytes), 32 raw bytes, or their base64."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, SigningKey):
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(key.public_key))
    data = key.encode() if isinstance(key, str) else key
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        loaded = serialization.load_pem_public_key(text)
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 public key")
        return loaded
    return Ed25519PublicKey.from_public_bytes(text if len(text) == 32 else base64.b64decode(text))


def key_id_for(key: Ed25519PublicKey) -> str:
    """The catalog's key id: anyone can recompute it from the public key."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


def bundle_key_id(bundle: str | Path) -> str | None:
    """The key id the bundle says it was signed with (to pick the public key)."""
    with zipfile.ZipFile(bundle) as zf:
        key_id = json.loads(zf.read(SIGNATURE)).get("keyId")
    return str(key_id) if key_id else None


S_IFMT, S_IFLNK = 0o170000, 0o120000


def unsafe_entries(infos: list[zipfile.ZipInfo]) -> list[str]:
    """Entries no honest bundle has: one name twice (readers disagree on which copy they show — Python
    reads the last, `unzip` extracts the first), an absolute or `..` path (it would land outside the
    directory it is extracted into), or a symlink. Checked before any content is trusted by name."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for info in infos:
        name = info.filename
        # Case folded too: on a case-insensitive file system `A.csv` and `a.csv` extract to one file.
        folded = name.replace("\\", "/").casefold()
        if folded in seen:
            same = seen[folded] == name
            problems.append(
                f"{name}: appears twice in the zip" if same else f"{name}: duplicates {seen[folded]} (case)"
            )
        else:
            seen[folded] = name
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
            problems.append(f"{name}: an absolute path")
        elif ".." in parts:
            problems.append(f"{name}: a path that climbs out with '..'")
        if (info.external_attr >> 16) & S_IFMT == S_IFLNK:
            problems.append(f"{name}: a symbolic link")
    return problems


def verify_bundle(bundle: str | Path, public_key: PublicKeyLike) -> BundleReport:
    report = BundleReport()
    key = load_public_key(public_key)
    try:
        zf = zipfile.ZipFile(bundle)
    except (OSError, zipfile.BadZipFile) as exc:
        report.problems.append(f"not a readable zip: {exc}")
        return report
    with zf:
        unsafe = unsafe_entries(zf.infolist())
        if unsafe:
            report.problems.extend(unsafe)
            return report
        names = set(zf.namelist())
        if MANIFEST not in names or SIGNATURE not in names:
            report.problems.append(f"{MANIFEST} or {SIGNATURE} is missing")
            return report
        try:
            manifest_bytes = zf.read(MANIFEST)
            signature = json.loads(zf.read(SIGNATURE))
            manifest = json.loads(manifest_bytes)
        except (zipfile.BadZipFile, ValueError) as exc:
            report.problems.append(f"manifest or signature unreadable: {exc}")
            return report
        report.manifest = manifest
        report.key_id = signature.get("keyId")
        report.as_of = manifest.get("asOf")
        given = key_id_for(key)
        if report.key_id != given:
            report.problems.append(
                f"the bundle says it was signed with {report.key_id}, not with the given key {given}"
            )
        try:
            key.verify(base64.b64decode(signature.get("signature", "")), manifest_bytes)
        except (InvalidSignature, ValueError):
            report.problems.append(
                "the manifest's signature is invalid for the given key (wrong key, or manifest altered)"
            )
            return report
        files: dict[str, dict[str, Any]] = manifest.get("files", {})
        for name, meta in sorted(files.items()):
            if name not in names:
                report.problems.append(f"{name}: listed in the manifest but missing")
                continue
            digest = hashlib.sha256()
            try:
                with zf.open(name) as handle:
                    while chunk := handle.read(1024 * 1024):
                        digest.update(chunk)
            except (zipfile.BadZipFile, OSError) as exc:
                report.problems.append(f"{name}: corrupt in the zip ({exc})")
                continue
            report.files_checked += 1
            if digest.hexdigest() != meta.get("sha256"):
                report.problems.append(f"{name}: SHA-256 differs from the manifest (the file was changed)")
        for extra in sorted(names - set(files) - {MANIFEST, SIGNATURE}):
            report.problems.append(f"{extra}: not listed in the manifest (added after signing)")
        if AUDIT_SLICE in files and AUDIT_SLICE in names and report.ok:
            problem = _check_audit_slice(zf, manifest, report)
            if problem:
                report.problems.append(problem)
    return report


def _canonical(recorded_at: dt.datetime, action: str, actor: str | None, subject: str, details: str) -> bytes:
    """The bytes a row's hash covers after the previous hash: the catalog's audit-v1 content (compact
    JSON array, UTF-8, the instant in UTC with microseconds)."""
    when = recorded_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return json.dumps(
        [CHAIN_VERSION, when, action, actor, subject, details], ensure_ascii=False, separators=(",", ":")
    ).encode()


def _check_audit_slice(zf: zipfile.ZipFile, manifest: dict[str, Any], report: BundleReport) -> str | None:
    prev: bytes | None = None
    expected_seq: int | None = None
    with zf.open(AUDIT_SLICE) as handle:
        for record in csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", newline="")):
            seq = int(record["seq"])
            prev_hash = bytes.fromhex(record["prev_hash"])
            row_hash = bytes.fromhex(record["hash"])
            content = _canonical(
                dt.datetime.fromisoformat(record["recorded_at"]),
                record["action"],
                record["actor"] or None,
                record["subject"],
                record["details"],
            )
            if hashlib.sha256(prev_hash + content).digest() != row_hash:
                return f"{AUDIT_SLICE}: row {seq} was edited: its hash does not match its content"
            if prev is not None and prev_hash != prev:
                return f"{AUDIT_SLICE}: row {seq} does not link to the row before it (a row was removed, inserted or reordered)"
            if expected_seq is not None and seq != expected_seq:
                return f"{AUDIT_SLICE}: seq jumps from {expected_seq - 1} to {seq}"
            prev, expected_seq = row_hash, seq + 1
            report.audit_rows += 1
    head = manifest.get("auditChain")
    period = manifest.get("period")
    if (
        prev is not None
        and expected_seq is not None
        and isinstance(head, dict)
        and isinstance(period, dict)
        and period.get("to") is None
        and (expected_seq - 1 != head.get("headSeq") or prev.hex() != head.get("headHash"))
    ):
        return f"{AUDIT_SLICE}: the slice does not end at the audit-chain head named in the manifest"
    return None
