"""Turn a batch of validated events into the rows of the projection, keyed by natural keys.

Pure Python and set-shaped: one pass over the events folds everything a batch touches into
dictionaries (one entry per entity), which `projection.py` then writes with one statement per table.
Every merge rule depends on event time only (min/max, newest-wins with a stable tie-break), so the
result does not depend on the order events arrived in.

Whose view a dataset's facets are (`Ownership`): an event's dataset facets — schema version, facets
(ownership, tags, dataSource, custom ones, …), symlinks, the column-lineage observation — are the
dataset's own only when the key that sent it acts for the dataset's owner (products.yaml, else the first
accepted ownership claim in log order; a dataset nobody owns is anybody's). Another product's event still
records its job's flows (job inputs/outputs, column edges), its ownership claims (candidates), and the
fields its schema names — added, never retyped or redescribed over the owner's (`FieldRow.rank`).
Judged in log order within a batch exactly as across batches, so a rebuild reproduces it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from catalog.openlineage.events import DatasetRef, OpenLineageEvent
from catalog.policy.products import ANY_EMITTER, Claim, ProductMap

NameKey = tuple[str, str]  # (namespace, name) of a dataset or a job
FieldKey = tuple[NameKey, str]  # (dataset, dotted field path)
SubjectKey = tuple[str, Any]  # ("dataset", NameKey) | ("job", NameKey) | ("run", (NameKey, UUID))
EventKey = tuple[dt.datetime, bytes]  # (event time, digest): an event's identity in the log
ClaimKey = tuple[NameKey, str, str]  # (dataset, owner name, emitter product or ANY_EMITTER)

# Terminal states outrank the others so a late START cannot reopen a finished run.
STATE_RANK = {"START": 1, "RUNNING": 2, "COMPLETE": 3, "FAIL": 3, "ABORT": 3}


@dataclass(slots=True)
class Span:
    """The event-time interval an entity was seen in."""

    first: dt.datetime
    last: dt.datetime

    def widen(self, at: dt.datetime) -> None:
        if at < self.first:
            self.first = at
        if at > self.last:
            self.last = at


@dataclass(slots=True)
class RunRow:
    span: Span
    state: str | None = None
    rank: int = 0
    state_time: dt.datetime | None = None
    started_at: dt.datetime | None = None
    parent_run: uuid.UUID | None = None
    parent_job: NameKey | None = None

    def observe(self, event_type: str | None, at: dt.datetime) -> None:
        rank = STATE_RANK.get(event_type or "", 0)
        if rank and (rank, at, event_type or "") > (self.rank, self.state_time or at, self.state or ""):
            self.state, self.rank, self.state_time = event_type, rank, at
        if event_type == "START" and (self.started_at is None or at < self.started_at):
            self.started_at = at


@dataclass(slots=True)
class FieldRow:
    span: Span
    type: str | None = None
    description: str | None = None
    attrs_time: dt.datetime | None = None
    rank: int = 0  # 1: type/description from the dataset's owner; 0: another product's schema (or none)


@dataclass(slots=True)
class ClaimRow:
    """An ownership claim of the batch and what it amounted to when first folded (for the audit log)."""

    span: Span
    first_logged: int
    products: tuple[str, ...]  # the products the owner name names (none for `user:ana`)
    owning: str | None  # the dataset's product once the claim was folded
    verdict: str  # 'placed' | 'agrees' | 'conflict' | 'none' (names no product)
    actor: str | None  # the key that sent it, when known (the accepting route knows; a rebuild does not)


@dataclass(slots=True)
class Ownership:
    """What the fold needs to tell whose view a dataset's facets are: products.yaml, the stored placement
    of the batch's datasets the file does not place, and the events' log ids (claims place in log order)."""

    products: ProductMap | None = None
    placed: dict[NameKey, tuple[int, str]] = field(default_factory=dict)  # dataset -> (log id, product)
    log_ids: dict[EventKey, int] = field(default_factory=dict)
    _by_file: dict[NameKey, str | None] = field(default_factory=dict)

    def by_file(self, key: NameKey) -> str | None:
        if self.products is None:
            return None
        if key not in self._by_file:
            self._by_file[key] = self.products.placed("dataset", key[0], key[1])[0]
        return self._by_file[key]

    def owner(self, key: NameKey) -> str | None:
        """The dataset's product as far as the log has been folded (None: nobody owns it yet)."""
        by_file = self.by_file(key)
        if by_file is not None:
            return by_file
        placed = self.placed.get(key)
        return placed[1] if placed is not None else None

    def speaks_for_owner(self, key: NameKey, emitter: str | None) -> bool:
        """Are facets sent by `emitter` (None: a key acting for every product) the dataset's own?"""
        if emitter is None:
            return True
        owner = self.owner(key)
        return owner is None or owner == emitter

    def names_only_owner(self, key: NameKey, owners: Iterable[str]) -> bool:
        """Do these owner names name no product but the dataset's (as far as the log has been folded)?"""
        if self.products is None:
            return True
        named = set(self.products.owner_products(owners))
        return not named or named == {self.owner(key)}

    def fold_claim(self, key: NameKey, claim: Claim) -> tuple[tuple[str, ...], str | None, str]:
        """Place the dataset if `claim` is the first valid one (in log order); (products it names, the
        dataset's product after it, verdict)."""
        named = tuple(self.products.claimed_products(claim)) if self.products is not None else ()
        if not named:
            return named, self.owner(key), "none"
        if self.by_file(key) is None:
            for product in named:
                if claim.emitter not in (product, ANY_EMITTER):
                    continue
                current = self.placed.get(key)
                if current is None or (claim.first_logged, product) < current:
                    self.placed[key] = (claim.first_logged, product)
        owning = self.owner(key)
        if owning is not None and set(named) == {owning} and claim.emitter in (owning, ANY_EMITTER):
            placed = self.placed.get(key)
            verdict = "placed" if placed == (claim.first_logged, owning) else "agrees"
        elif owning is not None and set(named) == {owning}:
            verdict = "agrees"  # another product naming the owner: it changes nothing
        else:
            verdict = "conflict"
        return named, owning, verdict


@dataclass(slots=True)
class FacetSeen:
    """The newest value of one facet of one subject in a batch. Its JSON text and digest are computed for
    the value that wins, once: a step folds a dataset's facets once per event that names the dataset, and
    encoding and hashing every one of them was ~10 % of the projector's time (py-spy on `catch_up`)."""

    at: dt.datetime
    value: Any
    _encoded: tuple[bytes, str | None] | None = field(default=None, init=False, repr=False)

    def encoded(self) -> tuple[bytes, str | None]:
        """(digest of the value, the value as JSON text, None when the facet was deleted)."""
        if self._encoded is None:
            value = self.value
            deleted = isinstance(value, dict) and value.get("_deleted") is True
            blob = None if deleted else orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
            self._encoded = (hashlib.sha256(blob or b"").digest(), None if blob is None else blob.decode())
        return self._encoded


@dataclass(slots=True)
class Rows:
    """Everything one batch writes, deduplicated by natural key."""

    namespaces: dict[str, Span] = field(default_factory=dict)
    datasets: dict[NameKey, Span] = field(default_factory=dict)
    jobs: dict[NameKey, Span] = field(default_factory=dict)
    runs: dict[tuple[NameKey, uuid.UUID], RunRow] = field(default_factory=dict)
    fields: dict[FieldKey, FieldRow] = field(default_factory=dict)
    versions: dict[tuple[NameKey, bytes], tuple[Span, str]] = field(default_factory=dict)
    # (kind, subject, name) -> the newest value seen (newest event time; equal times: the greater digest)
    facets: dict[tuple[str, Any, str], FacetSeen] = field(default_factory=dict)
    job_io: dict[tuple[NameKey, str, NameKey], Span] = field(default_factory=dict)
    # (target ds, target field, source ds, source field, job, type, subtype, masking) -> (span, description)
    edges: dict[
        tuple[NameKey, str | None, NameKey, str | None, NameKey | None, str, str, bool],
        tuple[Span, str | None],
    ] = field(default_factory=dict)
    symlinks: dict[tuple[NameKey, str, str], tuple[Span, str | None]] = field(default_factory=dict)
    claims: dict[ClaimKey, ClaimRow] = field(default_factory=dict)
    # (owner kind "job"|"dataset", owner, event time): the owner declared its complete edge set then;
    # as-of lineage drops edges an owner stopped declaring (catalog/lineage/service.py).
    observations: set[tuple[str, NameKey, dt.datetime]] = field(default_factory=set)

    # -- folding helpers -------------------------------------------------------------------------

    def see_namespace(self, name: str, at: dt.datetime) -> None:
        span = self.namespaces.get(name)
        if span is None:
            self.namespaces[name] = Span(at, at)
        else:
            span.widen(at)

    def see_dataset(self, key: NameKey, at: dt.datetime) -> None:
        self.see_namespace(key[0], at)
        span = self.datasets.get(key)
        if span is None:
            self.datasets[key] = Span(at, at)
        else:
            span.widen(at)

    def see_job(self, key: NameKey, at: dt.datetime) -> None:
        self.see_namespace(key[0], at)
        span = self.jobs.get(key)
        if span is None:
            self.jobs[key] = Span(at, at)
        else:
            span.widen(at)

    def see_claim(
        self,
        ownership: Ownership,
        key: NameKey,
        owner: str,
        emitter: str,
        at: dt.datetime,
        logged: int,
        actor: str | None,
    ) -> None:
        claim_key = (key, owner, emitter)
        row = self.claims.get(claim_key)
        if row is not None:
            row.span.widen(at)
            if logged < row.first_logged:
                row.first_logged = logged
            return
        products, owning, verdict = ownership.fold_claim(key, Claim(owner, emitter, logged))
        self.claims[claim_key] = ClaimRow(Span(at, at), logged, products, owning, verdict, actor)

    def see_field(self, key: FieldKey, at: dt.datetime) -> FieldRow:
        self.see_dataset(key[0], at)
        return self.see_field_of_seen_dataset(key, at)

    def see_field_of_seen_dataset(self, key: FieldKey, at: dt.datetime) -> FieldRow:
        """`see_field` for a field of a dataset already seen at `at`: a schema names a dozen fields or
        hundreds, and seeing their dataset and its namespace again for each was a fifth of `extract`
        (cProfile, the bench's stream)."""
        row = self.fields.get(key)
        if row is None:
            row = self.fields[key] = FieldRow(Span(at, at))
        else:
            row.span.widen(at)
        return row

    def see_facets(self, kind: str, subject: Any, facets: dict[str, Any], at: dt.datetime) -> None:
        for name, value in facets.items():
            key = (kind, subject, name)
            current = self.facets.get(key)
            if current is None or at > current.at:
                self.facets[key] = FacetSeen(at, value)
            elif at == current.at:
                # Equal times are settled by the digest (the SQL upsert does the same).
                seen = FacetSeen(at, value)
                if seen.encoded()[0] > current.encoded()[0]:
                    self.facets[key] = seen


def extract(events: Iterable[OpenLineageEvent], ownership: Ownership | None = None) -> Rows:
    """Fold a batch of events (in log order) into the rows they add to or update in the projection.
    Without `ownership` every emitter speaks for every dataset (no products.yaml to judge by)."""
    rows = Rows()
    ownership = ownership or Ownership()
    for event in events:
        at = event.event_time
        logged = ownership.log_ids.get((at, event.digest), 0)
        job: NameKey | None = None
        if event.job_namespace is not None and event.job_name is not None:
            job = (event.job_namespace, event.job_name)
            rows.see_job(job, at)
            rows.see_facets("job", job, event.job_facets, at)
        if event.kind == "run" and job is not None and event.run_id is not None:
            _fold_run(rows, job, event)
        if job is not None and (event.inputs or event.outputs):
            rows.observations.add(("job", job, at))
        for direction, refs in (("input", event.inputs), ("output", event.outputs)):
            for ref in refs:
                key = _fold_dataset(rows, ref, job, at, ownership, event, logged)
                if job is not None:
                    io_key = (job, direction, key)
                    span = rows.job_io.get(io_key)
                    if span is None:
                        rows.job_io[io_key] = Span(at, at)
                    else:
                        span.widen(at)
        if event.dataset is not None:
            _fold_dataset(rows, event.dataset, job, at, ownership, event, logged)
    return rows


def _fold_run(rows: Rows, job: NameKey, event: OpenLineageEvent) -> None:
    assert event.run_id is not None
    at = event.event_time
    key = (job, event.run_id)
    run = rows.runs.get(key)
    if run is None:
        run = rows.runs[key] = RunRow(Span(at, at))
    else:
        run.span.widen(at)
    run.observe(event.event_type, at)
    parent = event.run_facets.get("parent")
    if isinstance(parent, dict):
        parent_run = parent.get("run")
        parent_job = parent.get("job")
        if isinstance(parent_run, dict):
            run.parent_run = _uuid(parent_run.get("runId")) or run.parent_run
        if isinstance(parent_job, dict) and isinstance(parent_job.get("namespace"), str):
            name = parent_job.get("name")
            if isinstance(name, str):
                run.parent_job = (parent_job["namespace"], name)
    rows.see_facets("run", key, event.run_facets, at)


def _fold_dataset(
    rows: Rows,
    ref: DatasetRef,
    job: NameKey | None,
    at: dt.datetime,
    ownership: Ownership,
    event: OpenLineageEvent,
    logged: int,
) -> NameKey:
    key = (ref.namespace, ref.name)
    rows.see_dataset(key, at)
    facets = ref.facets
    emitter = ANY_EMITTER if event.emitter is None else event.emitter
    # Claims first: the event that places a dataset speaks for its owner in the same breath.
    owners = _claimed_owners(facets.get("ownership"))
    for owner in owners:
        rows.see_claim(ownership, key, owner, emitter, at, logged, event.emitter_key)
    own = ownership.speaks_for_owner(key, event.emitter)
    if own:
        if owners and not ownership.names_only_owner(key, owners):
            # An ownership facet naming another product than the dataset's is a claim (kept above), never
            # the owners the dataset shows.
            facets = {name: value for name, value in facets.items() if name != "ownership"}
        rows.see_facets("dataset", key, facets, at)
    rank = 1 if own else 0
    schema = facets.get("schema")
    if (
        isinstance(schema, dict)
        and isinstance(schema.get("fields"), list)
        and schema.get("_deleted") is not True
    ):
        normalised = _normalise_fields(schema["fields"])
        for path, ftype, description in _flatten(normalised, ""):
            row = rows.see_field_of_seen_dataset((key, path), at)
            # Same rule as the SQL upsert: the owner's attributes first, then newest, then the greater
            # (type, description). Another product's schema thereby only adds fields.
            if row.attrs_time is None or (rank, at, ftype or "", description or "") > (
                row.rank,
                row.attrs_time,
                row.type or "",
                row.description or "",
            ):
                row.type, row.description, row.attrs_time, row.rank = ftype, description, at, rank
        # Only the owner's schema is a version of the dataset (REST's `fields` are the current version).
        if own:
            blob = orjson.dumps(normalised, option=orjson.OPT_SORT_KEYS)
            version_key = (key, hashlib.sha256(blob).digest())
            version = rows.versions.get(version_key)
            if version is None:
                rows.versions[version_key] = (Span(at, at), blob.decode())
            else:
                version[0].widen(at)
    symlinks = facets.get("symlinks")
    if own and isinstance(symlinks, dict) and isinstance(symlinks.get("identifiers"), list):
        for ident in symlinks["identifiers"]:
            if (
                isinstance(ident, dict)
                and isinstance(ident.get("namespace"), str)
                and isinstance(ident.get("name"), str)
            ):
                skey = (key, ident["namespace"], ident["name"])
                stype = ident.get("type") if isinstance(ident.get("type"), str) else None
                current = rows.symlinks.get(skey)
                if current is None:
                    rows.symlinks[skey] = (Span(at, at), stype)
                else:
                    current[0].widen(at)
                    if stype is not None and (current[1] is None or stype > current[1]):
                        rows.symlinks[skey] = (current[0], stype)
    if own and ("columnLineage" in facets or "lineage" in facets):
        # Another product's column lineage adds its edges but never declares the owner's edge set
        # complete: it must not retire the edges the owner's jobs declared (as-of lineage).
        rows.observations.add(("dataset", key, at))
    for source, source_field, target_field, ttype, subtype, masking, description in _column_lineage(facets):
        if source_field is not None:
            rows.see_field((source, source_field), at)
        else:
            rows.see_dataset(source, at)
        if target_field is not None:
            rows.see_field_of_seen_dataset((key, target_field), at)
        edge = (key, target_field, source, source_field, job, ttype, subtype, masking)
        current_edge = rows.edges.get(edge)
        if current_edge is None:
            rows.edges[edge] = (Span(at, at), description)
        else:
            span, known = current_edge
            # The description seen last wins; equal times keep the greater text (as the SQL upsert does).
            if (at, description or "") > (span.last, known or ""):
                rows.edges[edge] = (span, description)
            span.widen(at)
    return key


def _claimed_owners(ownership: Any) -> list[str]:
    """Owner names of an ownership facet (a removed facet claims nothing)."""
    if not isinstance(ownership, dict) or ownership.get("_deleted") is True:
        return []
    owners = ownership.get("owners")
    if not isinstance(owners, list):
        return []
    return list(
        dict.fromkeys(o["name"] for o in owners if isinstance(o, dict) and isinstance(o.get("name"), str))
    )


def _normalise_fields(fields: list[Any]) -> list[dict[str, Any]]:
    """Schema fields reduced to what identifies a schema version (name, type, description, children)."""
    out: list[dict[str, Any]] = []
    for item in fields:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            continue
        entry: dict[str, Any] = {"name": item["name"]}
        if isinstance(item.get("type"), str):
            entry["type"] = item["type"]
        if isinstance(item.get("description"), str):
            entry["description"] = item["description"]
        if isinstance(item.get("fields"), list) and item["fields"]:
            entry["fields"] = _normalise_fields(item["fields"])
        out.append(entry)
    return out


def _flatten(fields: list[dict[str, Any]], prefix: str) -> Iterator[tuple[str, str | None, str | None]]:
    for item in fields:
        path = f"{prefix}{item['name']}"
        yield path, item.get("type"), item.get("description")
        if "fields" in item:
            yield from _flatten(item["fields"], path + ".")


def _column_lineage(
    facets: dict[str, Any],
) -> Iterator[tuple[NameKey, str | None, str | None, str, str, bool, str | None]]:
    """(source dataset, source field, target field, type, subtype, masking, description) of every
    column flow declared by the `columnLineage` facet or its successor, the `lineage` facet."""
    cll = facets.get("columnLineage")
    if isinstance(cll, dict) and cll.get("_deleted") is not True:
        fields = cll.get("fields")
        if isinstance(fields, dict):
            for target, spec in fields.items():
                if not isinstance(spec, dict):
                    continue
                legacy_type = spec.get("transformationType")
                legacy_desc = spec.get("transformationDescription")
                for source in _as_list(spec.get("inputFields")):
                    yield from _edges_from_source(source, target, legacy_type, legacy_desc)
        for source in _as_list(cll.get("dataset")):
            yield from _edges_from_source(source, None, None, None)
    lineage = facets.get("lineage")
    if isinstance(lineage, dict) and lineage.get("_deleted") is not True:
        fields = lineage.get("fields")
        if isinstance(fields, dict):
            for target, spec in fields.items():
                if isinstance(spec, dict):
                    for source in _as_list(spec.get("inputs")):
                        yield from _edges_from_source(source, target, None, None)
        for source in _as_list(lineage.get("inputs")):
            yield from _edges_from_source(source, None, None, None)


def _edges_from_source(
    source: Any, target: str | None, legacy_type: Any, legacy_desc: Any
) -> Iterator[tuple[NameKey, str | None, str | None, str, str, bool, str | None]]:
    if not isinstance(source, dict):
        return
    namespace, name = source.get("namespace"), source.get("name")
    if (
        not isinstance(namespace, str)
        or not isinstance(name, str)
        or source.get("type", "DATASET") != "DATASET"
    ):
        return
    source_field = (
        source.get("field") if isinstance(source.get("field"), str) and source.get("field") else None
    )
    transformations = [t for t in _as_list(source.get("transformations")) if isinstance(t, dict)]
    if not transformations:
        ttype = legacy_type if isinstance(legacy_type, str) else ""
        desc = legacy_desc if isinstance(legacy_desc, str) else None
        yield (namespace, name), source_field, target, ttype, "", False, desc
        return
    for t in transformations:
        yield (
            (namespace, name),
            source_field,
            target,
            t["type"] if isinstance(t.get("type"), str) else "",
            t["subtype"] if isinstance(t.get("subtype"), str) else "",
            t.get("masking") is True,
            t["description"] if isinstance(t.get("description"), str) else None,
        )


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _uuid(value: Any) -> uuid.UUID | None:
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
