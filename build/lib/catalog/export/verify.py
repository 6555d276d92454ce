"""Check a bundle offline: the manifest's Ed25519 signature, every file's SHA-256, no file added or
missing, and the audit slice's hash chain (it must link up and end at the head the manifest names)."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from catalog.audit.chain import BrokenLink, ChainRow, ChainWalker, classify
from catalog.audit.signing import key_id_for, public_raw, verify_signature
from catalog.export.bundle import MANIFEST, SIGNATURE


@dataclass
class BundleCheck:
    problems: list[str] = field(default_factory=list)
    files_checked: int = 0
    key_id: str | None = None
    as_of: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def signature_key_id(bundle: Path) -> str | None:
    """The key id the bundle says it was signed with (to look the public key up)."""
    with zipfile.ZipFile(bundle) as zf:
        key_id = orjson.loads(zf.read(SIGNATURE)).get("keyId")
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


def verify_bundle(bundle: Path, public_key: Ed25519PublicKey) -> BundleCheck:
    check = BundleCheck()
    try:
        zf = zipfile.ZipFile(bundle)
    except (OSError, zipfile.BadZipFile) as exc:
        check.problems.append(f"not a readable zip: {exc}")
        return check
    with zf:
        unsafe = unsafe_entries(zf.infolist())
        if unsafe:
            check.problems.extend(unsafe)
            return check
        names = set(zf.namelist())
        if MANIFEST not in names or SIGNATURE not in names:
            check.problems.append(f"{MANIFEST} or {SIGNATURE} is missing")
            return check
        try:
            manifest_bytes = zf.read(MANIFEST)
            signature = orjson.loads(zf.read(SIGNATURE))
            manifest = orjson.loads(manifest_bytes)
        # A damaged deflate stream raises zlib.error rather than BadZipFile, depending on where the damage is.
        except (zipfile.BadZipFile, zlib.error, orjson.JSONDecodeError) as exc:
            check.problems.append(f"manifest or signature unreadable: {exc}")
            return check
        check.key_id = signature.get("keyId")
        check.as_of = manifest.get("asOf")
        given = key_id_for(public_raw(public_key))
        if check.key_id != given:
            check.problems.append(
                f"the bundle says it was signed with {check.key_id}, not with the given key {given}"
            )
        if not verify_signature(public_key, base64.b64decode(signature.get("signature", "")), manifest_bytes):
            check.problems.append(
                "the manifest's signature is invalid for the given key (wrong key, or manifest altered)"
            )
            return check
        files: dict[str, dict[str, object]] = manifest.get("files", {})
        for name, meta in sorted(files.items()):
            if name not in names:
                check.problems.append(f"{name}: listed in the manifest but missing")
                continue
            digest = hashlib.sha256()
            try:
                with zf.open(name) as handle:
                    while chunk := handle.read(1024 * 1024):
                        digest.update(chunk)
            except (zipfile.BadZipFile, zlib.error, OSError) as exc:
                check.problems.append(f"{name}: corrupt in the zip ({exc})")
                continue
            check.files_checked += 1
            if digest.hexdigest() != meta.get("sha256"):
                check.problems.append(f"{name}: SHA-256 differs from the manifest (the file was changed)")
        for extra in sorted(names - set(files) - {MANIFEST, SIGNATURE}):
            check.problems.append(f"{extra}: not listed in the manifest (added after signing)")
        if "audit/audit_log.csv" in files and "audit/audit_log.csv" in names and check.ok:
            problem = _check_audit_slice(zf, manifest)
            if problem:
                check.problems.append(problem)
    return check


def _check_audit_slice(zf: zipfile.ZipFile, manifest: dict[str, object]) -> str | None:
    """The slice must be an unbroken chain; when it runs to asOf, it must end at the manifest's head."""
    walker: ChainWalker | None = None
    with zf.open("audit/audit_log.csv") as raw:
        for record in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline="")):
            row = ChainRow(
                seq=int(record["seq"]),
                recorded_at=dt.datetime.fromisoformat(record["recorded_at"]),
                action=record["action"],
                actor=record["actor"] or None,
                subject=record["subject"],
                details_json=record["details"],
                prev_hash=bytes.fromhex(record["prev_hash"]),
                hash=bytes.fromhex(record["hash"]),
            )
            if walker is None:
                walker = ChainWalker(start_seq=row.seq, start_prev=row.prev_hash)
            outcome = walker.check(row)
            if isinstance(outcome, BrokenLink):
                outcome = classify(outcome, None)
            if outcome is not None:
                return f"audit/audit_log.csv: {outcome.message}"
    head = manifest.get("auditChain")
    period = manifest.get("period")
    if (
        walker is not None
        and isinstance(head, dict)
        and isinstance(period, dict)
        and period.get("to") is None
    ) and (walker.head_seq != head.get("headSeq") or walker.prev_hash.hex() != head.get("headHash")):
        return "audit/audit_log.csv: the slice does not end at the audit-chain head named in the manifest"
    return None
