"""The hash chain itself, free of any database: canonical row content, row hashes, and the walk that
names the first row that was edited, deleted, inserted or reordered.

Kept pure so an auditor can re-check an exported audit slice offline with nothing but this file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

import orjson

GENESIS = bytes(32)  # prev_hash of the first row
CHAIN_VERSION = "audit-v1"


@dataclass(frozen=True, slots=True)
class ChainRow:
    """What the chain covers of one row. `details_json` is PostgreSQL's own text of the jsonb value: it is
    deterministic for a value, so hashing it avoids any disagreement between JSON serialisers."""

    seq: int
    recorded_at: dt.datetime
    action: str
    actor: str | None
    subject: str
    details_json: str
    prev_hash: bytes
    hash: bytes


def canonical(
    *, recorded_at: dt.datetime, action: str, actor: str | None, subject: str, details_json: str
) -> bytes:
    """The bytes a row's hash covers (with the previous hash in front).

    `seq` is deliberately left out: order is carried by `prev_hash`, so renumbering after a deletion is
    still reported as the deletion it is rather than as an edit of every later row.
    """
    when = recorded_at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    return orjson.dumps([CHAIN_VERSION, when, action, actor, subject, details_json])


def row_hash(prev_hash: bytes, content: bytes) -> bytes:
    return hashlib.sha256(prev_hash + content).digest()


def expected_hash(row: ChainRow) -> bytes:
    return row_hash(
        row.prev_hash,
        canonical(
            recorded_at=row.recorded_at,
            action=row.action,
            actor=row.actor,
            subject=row.subject,
            details_json=row.details_json,
        ),
    )


@dataclass(frozen=True, slots=True)
class Tampering:
    """The first break found: which row, what happened to it, and a sentence for a person."""

    seq: int
    kind: str  # edited | deleted | inserted | reordered
    message: str


@dataclass(frozen=True, slots=True)
class BrokenLink:
    """A row whose prev_hash is not the previous row's hash; classifying it needs one lookup (by hash)."""

    row: ChainRow
    expected_seq: int
    before_prev: bytes | None


class ChainWalker:
    """Feed rows in seq order; the first row that breaks the chain is reported.

    Stateful rather than a loop over an iterable so the database walk can stream rows in pages and do
    its one lookup asynchronously, while an offline check of an exported slice uses the same rules.
    """

    def __init__(self, *, start_seq: int = 1, start_prev: bytes = GENESIS) -> None:
        self.rows = 0
        self.expected_seq = start_seq
        self.prev_hash = start_prev
        self.before_prev: bytes | None = None

    @property
    def head_seq(self) -> int:
        return self.expected_seq - 1

    def check(self, row: ChainRow) -> Tampering | BrokenLink | None:
        self.rows += 1
        if expected_hash(row) != row.hash:
            return Tampering(
                row.seq, "edited", f"row {row.seq} was edited: its hash does not match its content"
            )
        if row.prev_hash != self.prev_hash:
            return BrokenLink(row, self.expected_seq, self.before_prev)
        if row.seq != self.expected_seq:  # pragma: no cover - a gap always breaks the link first
            return Tampering(self.expected_seq, "deleted", f"row {self.expected_seq} was deleted")
        self.before_prev, self.prev_hash = self.prev_hash, row.hash
        self.expected_seq += 1
        return None


def classify(broken: BrokenLink, linked_seq: int | None) -> Tampering:
    """What happened, given the seq of the row whose hash the broken row links to (None: no such row)."""
    row, expected_seq = broken.row, broken.expected_seq
    if broken.before_prev is not None and row.prev_hash == broken.before_prev:
        seq = expected_seq - 1
        return Tampering(seq, "inserted", f"row {seq} was inserted: the row after it links past it")
    if linked_seq is not None:
        return Tampering(
            row.seq,
            "reordered",
            f"row {row.seq} is out of order: it follows row {linked_seq}, not row {expected_seq - 1}",
        )
    if row.seq != expected_seq:
        return Tampering(
            expected_seq,
            "deleted",
            f"row {expected_seq} was deleted (seq jumps from {expected_seq - 1} to {row.seq})",
        )
    # The predecessor this row was chained to no longer exists anywhere: either the previous row was
    # rewritten with a freshly computed hash, or a row was deleted and the rest renumbered.
    return Tampering(
        expected_seq - 1,
        "edited",
        f"row {expected_seq - 1} was rewritten (hash recomputed), or a row after it was deleted and "
        f"the rest renumbered: row {row.seq} links to a row that no longer exists",
    )


def walk_rows(rows: list[ChainRow], *, start_seq: int = 1, start_prev: bytes = GENESIS) -> Tampering | None:
    """Check an in-memory slice (e.g. the audit slice of an export) offline."""
    by_hash = {r.hash: r.seq for r in rows}
    walker = ChainWalker(start_seq=start_seq, start_prev=start_prev)
    for row in rows:
        outcome = walker.check(row)
        if isinstance(outcome, BrokenLink):
            return classify(outcome, by_hash.get(row.prev_hash))
        if outcome is not None:
            return outcome
    return None
