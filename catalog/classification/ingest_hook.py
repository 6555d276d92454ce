"""What ingest calls: classify the fields and datasets a batch touched, and propagate from what changed.

It runs on ingest's raw asyncpg connection inside the batch's one transaction: the ingest hot path
sends its set-based statements straight to asyncpg (SQLAlchemy's per-statement overhead was
measurable there, see catalog/db/engine.py `raw_connection`), and this hook is part of that path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from catalog.classification.detect import refresh_declared, refresh_detected
from catalog.classification.propagate import (
    lock_propagation,
    propagate_from,
    targets_of_new_edges_from_classified,
)
from catalog.classification.rules import RuleSet


@dataclass(frozen=True, slots=True)
class ClassifyOutcome:
    detected_changed: int
    declared_changed: int
    propagated: int  # propagated rows written (states added or re-derived)


async def classify_batch(
    conn: asyncpg.Connection[Any],
    *,
    field_ids: Iterable[int],
    dataset_ids: Iterable[int],
    new_edges: Iterable[tuple[int, int]],
    rules: RuleSet,
) -> ClassifyOutcome:
    """Classify what a batch touched and propagate only from what changed (in the caller's transaction).

    `new_edges` are the (source, target) field edges the batch inserted. An edge seen before has carried
    whatever its source held already (and a source whose own classification changed is handled as a
    change), so only new edges need relaxing."""
    await lock_propagation(conn)  # before anything decides what to propagate (see the lock's comment)
    detected = await refresh_detected(conn, rules, sorted(set(field_ids)))
    declared = await refresh_declared(conn, sorted(set(dataset_ids)))
    fed = await targets_of_new_edges_from_classified(conn, new_edges)
    # A changed detection or declaration can remove PII, so what depends on it is re-derived (a field seen
    # for the first time has nothing depending on it); a new edge from a classified column can only add
    # states. Both in one breadth-first pass.
    written = await propagate_from(conn, detected | declared, also=fed)
    return ClassifyOutcome(len(detected), len(declared), written)
