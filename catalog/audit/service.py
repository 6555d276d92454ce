"""The audit log: checkpoint its head and verify the chain; appending is catalog/audit/append.py
(`record`, `record_raw`, re-exported here for the callers that read `audit.record`).

Appends are serialised by a transaction-scoped advisory lock taken just before the row is written and
held to the caller's commit: two transactions can never both chain onto the same head (the primary key
on `seq` would reject the second anyway). The cost is that auditing transactions commit one at a time;
`bench/audit_append.py` measures it.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from catalog.audit.append import AUDIT_LOCK_KEY as AUDIT_LOCK_KEY
from catalog.audit.append import record as record
from catalog.audit.append import record_raw as record_raw
from catalog.audit.chain import (
    GENESIS,
    BrokenLink,
    ChainRow,
    ChainWalker,
    Tampering,
    classify,
)
from catalog.audit.signing import (
    KeyEncryptionKey,
    active_signer,
    key_id_for,
    load_public_key,
    public_key_by_id,
    public_pem,
    public_raw,
    verify_signature,
)
from catalog.audit.state import StateMismatch, StateReplay, cross_check


@dataclass(frozen=True, slots=True)
class Head:
    seq: int
    hash: bytes
    recorded_at: dt.datetime | None


async def head(conn: AsyncConnection, *, as_of: dt.datetime | None = None) -> Head:
    """The last row of the chain (as of an instant: the last row recorded at or before it)."""
    query = "SELECT seq, hash, recorded_at FROM audit_log"
    params: dict[str, Any] = {}
    if as_of is not None:
        query += " WHERE recorded_at <= :t"
        params["t"] = as_of
    row = (await conn.execute(text(query + " ORDER BY seq DESC LIMIT 1"), params)).first()
    if row is None:
        return Head(0, GENESIS, None)
    return Head(row.seq, bytes(row.hash), row.recorded_at)


def checkpoint_message(seq: int, hash_: bytes) -> bytes:
    return orjson.dumps({"chain": "catalog-audit", "seq": seq, "hash": hash_.hex()})


async def checkpoint(conn: AsyncConnection, kek: KeyEncryptionKey) -> Head | None:
    """Sign the current head (no-op when it is already checkpointed or the log is empty)."""
    current = await head(conn)
    if current.seq == 0:
        return None
    exists = (
        await conn.execute(text("SELECT 1 FROM audit_checkpoints WHERE seq = :s"), {"s": current.seq})
    ).first()
    if exists is not None:
        return current
    signer = await active_signer(conn, kek)
    # The signer may just have been created, which itself appends a row: sign the head as it is now.
    current = await head(conn)
    await conn.execute(
        text(
            "INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature) "
            "VALUES (:s, :h, clock_timestamp(), :k, :sig) ON CONFLICT (seq) DO NOTHING"
        ),
        {
            "s": current.seq,
            "h": current.hash,
            "k": signer.key_id,
            "sig": signer.sign(checkpoint_message(current.seq, current.hash)),
        },
    )
    return current


@dataclass(frozen=True, slots=True)
class ExternalCheckpoint:
    """A signed checkpoint kept outside the database (`catalog audit checkpoint --out FILE`)."""

    seq: int
    hash: bytes
    key_id: str
    signature: bytes
    public_key: Ed25519PublicKey
    source: str  # where it came from (the file name), for messages

    @property
    def genuine(self) -> bool:
        return verify_signature(self.public_key, self.signature, checkpoint_message(self.seq, self.hash))


async def checkpoint_document(conn: AsyncConnection, seq: int) -> dict[str, Any] | None:
    """The signed checkpoint at `seq` as a self-contained JSON document for an auditor to keep outside
    the database (it carries the public key; `catalog signing list` shows the same key id)."""
    row = (
        await conn.execute(
            text(
                "SELECT c.seq, c.hash, c.signed_at, c.key_id, c.signature, k.public_key "
                "FROM audit_checkpoints c JOIN signing_keys k ON k.key_id = c.key_id WHERE c.seq = :s"
            ),
            {"s": seq},
        )
    ).first()
    if row is None:
        return None
    return {
        "chain": "catalog-audit",
        "seq": row.seq,
        "hash": bytes(row.hash).hex(),
        "signedAt": row.signed_at.isoformat(),
        "keyId": row.key_id,
        "signature": base64.b64encode(bytes(row.signature)).decode(),
        "publicKeyPem": public_pem(bytes(row.public_key)),
    }


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be read as one (the message says which member is wrong)."""


def load_external_checkpoint(data: bytes, source: str) -> ExternalCheckpoint:
    """Parse a document written by `checkpoint_document`; its signature is checked by `verify`."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CheckpointFileError(f"{source}: not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("chain") != "catalog-audit":
        raise CheckpointFileError(f"{source}: not a catalog audit checkpoint (chain != 'catalog-audit')")
    try:
        seq = doc["seq"]
        if not isinstance(seq, int) or seq < 1:
            raise CheckpointFileError(f"{source}: seq must be a positive integer")
        public = load_public_key(str(doc["publicKeyPem"]).encode())
        checkpoint = ExternalCheckpoint(
            seq=seq,
            hash=bytes.fromhex(str(doc["hash"])),
            key_id=str(doc["keyId"]),
            signature=base64.b64decode(str(doc["signature"]), validate=True),
            public_key=public,
            source=source,
        )
    except KeyError as exc:
        raise CheckpointFileError(f"{source}: member {exc.args[0]!r} is missing") from None
    except (ValueError, TypeError) as exc:
        raise CheckpointFileError(f"{source}: a member is malformed ({exc})") from None
    if key_id_for(public_raw(public)) != checkpoint.key_id:
        raise CheckpointFileError(f"{source}: keyId does not match the public key it carries")
    return checkpoint


@dataclass(frozen=True, slots=True)
class VerifyReport:
    rows: int
    head_seq: int
    head_hash: bytes
    checkpoints: int
    problem: Tampering | None
    # Tables of access changes that disagree with the chain (catalog/audit/state.py).
    mismatches: tuple[StateMismatch, ...] = ()
    # The newest signed checkpoint the chain was found to match (database or external), 0 for none.
    anchored_seq: int = 0

    @property
    def unanchored(self) -> int:
        """Rows after the last checkpoint: a cut-off tail among them would go unnoticed."""
        return self.head_seq - self.anchored_seq

    @property
    def ok(self) -> bool:
        return self.problem is None and not self.mismatches


def _chain_row(r: Any) -> ChainRow:
    return ChainRow(
        seq=r.seq,
        recorded_at=r.recorded_at,
        action=r.action,
        actor=r.actor,
        subject=r.subject,
        details_json=r.details,
        prev_hash=bytes(r.prev_hash),
        hash=bytes(r.hash),
    )


async def verify(
    conn: AsyncConnection,
    *,
    page: int = 5000,
    external: Sequence[ExternalCheckpoint] = (),
    cross_check_state: bool = True,
) -> VerifyReport:
    """Walk the whole chain in seq order (keyset pages: bounded memory), check the signed checkpoints
    (the database's and `external` ones), then hold the grants, keys and waivers against the chain.

    The walk runs unlocked; its last pages and the table comparison run under the append lock, which
    every auditing transaction holds until it commits: no audited change can land between reading the
    chain and reading the tables, so a live database gives no false alarm. The lock is the caller's
    transaction's (released when it ends).
    """
    walker = ChainWalker()
    replay = StateReplay()
    wanted = {cp.seq for cp in external}
    hashes_at: dict[int, bytes] = {}

    async def walk_from(after: int) -> tuple[int, Tampering | None]:
        last_seq = after
        while True:
            rows = (
                await conn.execute(
                    text(
                        "SELECT seq, recorded_at, action, actor, subject, details::text AS details, "
                        "prev_hash, hash FROM audit_log WHERE seq > :after ORDER BY seq LIMIT :n"
                    ),
                    {"after": last_seq, "n": page},
                )
            ).all()
            if not rows:
                return last_seq, None
            for r in rows:
                row = _chain_row(r)
                outcome = walker.check(row)
                if isinstance(outcome, BrokenLink):
                    linked = (
                        await conn.execute(
                            text("SELECT seq FROM audit_log WHERE hash = :h ORDER BY seq LIMIT 1"),
                            {"h": outcome.row.prev_hash},
                        )
                    ).scalar_one_or_none()
                    outcome = classify(outcome, linked)
                if outcome is not None:
                    return last_seq, outcome
                replay.feed(row)
                if row.seq in wanted:
                    hashes_at[row.seq] = row.hash
            last_seq = rows[-1].seq

    last_seq, problem = await walk_from(0)
    if problem is None and cross_check_state:
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": AUDIT_LOCK_KEY})
        _, problem = await walk_from(last_seq)
    checkpoints, anchored = 0, 0
    mismatches: tuple[StateMismatch, ...] = ()
    if problem is None:
        problem, checkpoints, anchored = await _check_checkpoints(conn, walker)
    if problem is None:
        problem, external_anchor = _check_external(walker, external, hashes_at)
        anchored = max(anchored, external_anchor)
    if problem is None and cross_check_state:
        mismatches = tuple(await cross_check(conn, replay))
    return VerifyReport(
        walker.rows, walker.head_seq, walker.prev_hash, checkpoints, problem, mismatches, anchored
    )


def _check_external(
    walker: ChainWalker, external: Sequence[ExternalCheckpoint], hashes_at: dict[int, bytes]
) -> tuple[Tampering | None, int]:
    """Checkpoints an auditor kept outside the database: a superuser can delete the database's own
    checkpoints together with the tail they cover, but not these."""
    anchored = 0
    for cp in sorted(external, key=lambda c: c.seq):
        if not cp.genuine:
            return Tampering(cp.seq, "edited", f"the checkpoint in {cp.source} has an invalid signature"), 0
        if cp.seq > walker.head_seq:
            return (
                Tampering(
                    walker.head_seq + 1,
                    "deleted",
                    f"rows {walker.head_seq + 1}..{cp.seq} were deleted: the checkpoint in {cp.source} covers "
                    f"row {cp.seq} but the chain ends at {walker.head_seq}",
                ),
                0,
            )
        if hashes_at.get(cp.seq) != cp.hash:
            return (
                Tampering(
                    cp.seq,
                    "edited",
                    f"row {cp.seq} differs from the checkpoint in {cp.source}: the chain up to it was rewritten",
                ),
                0,
            )
        anchored = max(anchored, cp.seq)
    return None, anchored


async def _check_checkpoints(conn: AsyncConnection, walker: ChainWalker) -> tuple[Tampering | None, int, int]:
    """Every signed checkpoint must be genuine and match the chain; one beyond its end means the tail
    was cut off (a shortened chain is otherwise still a valid chain). Also: the last row they anchor."""
    count = anchored = 0
    # Checkpoints are few (one per export or per period), so they are fetched at once.
    result = await conn.execute(
        text(
            "SELECT c.seq, c.hash, c.key_id, c.signature, a.hash AS row_hash FROM audit_checkpoints c "
            "LEFT JOIN audit_log a ON a.seq = c.seq ORDER BY c.seq"
        )
    )
    keys: dict[str, Any] = {}
    for cp in result.all():
        count += 1
        if cp.key_id not in keys:
            keys[cp.key_id] = await public_key_by_id(conn, cp.key_id)
        public = keys[cp.key_id]
        message = checkpoint_message(cp.seq, bytes(cp.hash))
        if public is None or not verify_signature(public, bytes(cp.signature), message):
            return (
                Tampering(cp.seq, "edited", f"the checkpoint at row {cp.seq} has an invalid signature"),
                count,
                0,
            )
        if cp.seq > walker.head_seq:
            return (
                Tampering(
                    walker.head_seq + 1,
                    "deleted",
                    f"rows {walker.head_seq + 1}..{cp.seq} were deleted: a signed checkpoint covers row "
                    f"{cp.seq} but the chain ends at {walker.head_seq}",
                ),
                count,
                0,
            )
        if cp.row_hash is None or bytes(cp.row_hash) != bytes(cp.hash):
            return (
                Tampering(cp.seq, "edited", f"row {cp.seq} differs from its signed checkpoint"),
                count,
                0,
            )
        anchored = cp.seq
    return None, count, anchored
