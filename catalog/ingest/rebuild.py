"""Re-project the whole catalog from the event log, and fingerprint the projection to prove it identical."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from catalog.audit.service import record_raw
from catalog.db.engine import raw_connection, raw_transaction
from catalog.ingest.projector import STATE, fold_logged, read_after
from catalog.ingest.statistics import analyze_catalog
from catalog.policies_in_force import Policies

# Children first, so TRUNCATE order never matters to foreign keys (they are truncated together anyway).
PROJECTION_TABLES = (
    "ownership_claims",
    "classifications",  # derived; manual decisions (classification_decisions) are audit data, kept
    "lineage_observations",
    "flow_transports",
    "column_edges",
    "job_io",
    "dataset_symlinks",
    "dataset_versions",
    "facets",
    "dataset_fields",
    "runs",
    "jobs",
    "datasets",
    "namespaces",
)

# Each projection table as text rows keyed by natural keys only (surrogate ids differ after a rebuild).
_DS = "(SELECT n.name || '/' || d.name FROM datasets d JOIN namespaces n ON n.id = d.namespace_id WHERE d.id = {})"
_JOB = (
    "(SELECT n.name || '/' || j.name FROM jobs j JOIN namespaces n ON n.id = j.namespace_id WHERE j.id = {})"
)
_FIELD = "(SELECT f.path FROM dataset_fields f WHERE f.id = {})"
FINGERPRINT_QUERIES = {
    "namespaces": "SELECT row(name, first_seen, last_seen)::text FROM namespaces",
    "datasets": f"SELECT row({_DS.format('x.id')}, first_seen, last_seen)::text FROM datasets x",
    "dataset_fields": f"SELECT row({_DS.format('x.dataset_id')}, path, type, description, attrs_time, attrs_rank, "
    "first_seen, last_seen)::text FROM dataset_fields x",
    # first_logged is an event-log id: a rebuild keeps it, another database fed in another order does not.
    "ownership_claims": f"SELECT row({_DS.format('x.dataset_id')}, owner, emitter, first_seen, last_seen)::text "
    "FROM ownership_claims x",
    "dataset_versions": f"SELECT row({_DS.format('x.dataset_id')}, schema_digest, fields, first_seen, last_seen)::text "
    "FROM dataset_versions x",
    "dataset_symlinks": f"SELECT row({_DS.format('x.dataset_id')}, namespace, name, type, first_seen, last_seen)::text "
    "FROM dataset_symlinks x",
    "jobs": f"SELECT row({_JOB.format('x.id')}, first_seen, last_seen)::text FROM jobs x",
    "runs": f"SELECT row({_JOB.format('x.job_id')}, run_uuid, state, state_rank, state_time, started_at, "
    "parent_run_uuid, parent_job_namespace, parent_job_name, first_seen, last_seen)::text FROM runs x",
    "facets": "SELECT row(subject_kind, CASE subject_kind "
    f"WHEN 'dataset' THEN {_DS.format('x.subject_id')} WHEN 'job' THEN {_JOB.format('x.subject_id')} "
    f"ELSE (SELECT {_JOB.format('r.job_id')} || '/' || r.run_uuid FROM runs r WHERE r.id = x.subject_id) END, "
    "name, event_time, value)::text FROM facets x",
    "job_io": f"SELECT row({_JOB.format('x.job_id')}, direction, {_DS.format('x.dataset_id')}, first_seen, "
    "last_seen)::text FROM job_io x",
    "column_edges": f"SELECT row({_DS.format('x.target_dataset_id')}, {_FIELD.format('x.target_field_id')}, "
    f"{_DS.format('x.source_dataset_id')}, {_FIELD.format('x.source_field_id')}, {_JOB.format('x.job_id')}, "
    "transformation_type, transformation_subtype, masking, description, first_seen, last_seen)::text "
    "FROM column_edges x",
    "flow_transports": f"SELECT row({_JOB.format('x.job_id')}, {_DS.format('x.dataset_id')}, direction, uri, "
    "event_time, run_uuid)::text FROM flow_transports x",
    "lineage_observations": "SELECT row(owner_kind, CASE owner_kind "
    f"WHEN 'job' THEN {_JOB.format('x.owner_id')} ELSE {_DS.format('x.owner_id')} END, observed_at)::text "
    "FROM lineage_observations x",
    # A propagated row's path (depth, parent) and the origin's category/confidence it copies are the ones
    # found first, which depends on arrival order (catalog/classification/propagate.py); which states hold
    # a row does not, and that is what is compared.
    "classifications": f"SELECT row({_DS.format('x.dataset_id')}, {_FIELD.format('x.field_id')}, tag, source, "
    "CASE WHEN source = 'propagated' THEN NULL ELSE row(category, confidence, rule) END, masked)::text "
    "FROM classifications x",
}


async def projection_fingerprint(conn: AsyncConnection) -> dict[str, tuple[int, str]]:
    """(row count, md5 of the sorted rows) per projection table, independent of surrogate ids."""
    raw = await raw_connection(conn)
    out: dict[str, tuple[int, str]] = {}
    for table, query in FINGERPRINT_QUERIES.items():
        row = await raw.fetchrow(
            f"SELECT count(*) AS n, md5(coalesce(string_agg(t, E'\\n' ORDER BY t), '')) AS h FROM ({query}) AS q(t)"
        )
        assert row is not None
        out[table] = (row["n"], row["h"])
    return out


async def rebuild_projection(
    engine: AsyncEngine,
    policies: Policies,
    *,
    batch_size: int = 1000,
    progress: Callable[[int, int], Any] | None = None,
) -> int:
    """Empty the projection and fold the log again up to the projector's position, with the projector's
    own reader and fold (catalog/ingest/projector.py; findings and audit rows are history and kept), in
    one transaction; returns events replayed.

    The projector's position row is locked meanwhile: its next step waits, appends go on (what lies past
    the position is the projector's, after the rebuild). Events it set aside stay set aside.
    """
    async with raw_transaction(engine) as raw:
        upto = await raw.fetchval("SELECT position FROM projector_state WHERE name = $1 FOR UPDATE", STATE)
        await raw.execute(f"TRUNCATE {', '.join(PROJECTION_TABLES)} RESTART IDENTITY")
        total = await raw.fetchval(
            "SELECT count(*) FROM event_log WHERE id <= $1 "
            "AND id NOT IN (SELECT event_id FROM projection_set_aside)",
            upto,
        )
        done = position = 0
        analyze_at = 1000  # the replay starts from empty tables: refresh statistics as they grow
        while True:
            batch = await read_after(raw, position, batch_size, upto=upto, skip_set_aside=True)
            if not batch:
                break
            if any(logged.event is None for logged in batch):
                raise RuntimeError("a logged event no longer parses; it was projected before: not rebuilding")
            await fold_logged(raw, batch, policies, governance=False)
            done += len(batch)
            position = batch[-1].id
            if done >= analyze_at:
                await analyze_catalog(raw)
                analyze_at = 2 * done
            if progress:
                progress(done, total)
        # In the same transaction: a rebuild that rolls back leaves no audit row claiming it happened.
        await record_raw(
            raw, action="projection.rebuilt", actor=None, subject="projection", details={"events": done}
        )
        return done
