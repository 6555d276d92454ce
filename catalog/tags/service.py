"""Tags on datasets and fields: create, list, put on and take off, and read back in bulk."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

Json = dict[str, Any]


@dataclass(slots=True)
class DatasetTags:
    dataset: list[str] = field(default_factory=list)
    fields: dict[str, list[str]] = field(default_factory=dict)


async def upsert_tag(conn: AsyncConnection, *, name: str, description: str | None = None) -> Json:
    """Create a tag, or update its description (Marquez `PUT /tags/{tag}`)."""
    row = (
        await conn.execute(
            text(
                "INSERT INTO tags (name, description) VALUES (:name, :description) "
                "ON CONFLICT (name) DO UPDATE SET description = coalesce(excluded.description, tags.description), "
                "updated_at = now() RETURNING name, description"
            ),
            {"name": name, "description": description},
        )
    ).one()
    return {"name": row.name, "description": row.description}


async def list_tags(conn: AsyncConnection, *, limit: int, offset: int) -> list[Json]:
    rows = await conn.execute(
        text("SELECT name, description FROM tags ORDER BY name LIMIT :limit OFFSET :offset"),
        {"limit": limit, "offset": offset},
    )
    return [{"name": r.name, "description": r.description} for r in rows]


async def dataset_exists(conn: AsyncConnection, *, namespace: str, dataset: str) -> bool:
    row = await conn.execute(
        text(
            "SELECT 1 FROM datasets d JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = :ns AND d.name = :ds"
        ),
        {"ns": namespace, "ds": dataset},
    )
    return row.first() is not None


async def field_exists(conn: AsyncConnection, *, namespace: str, dataset: str, field: str) -> bool:
    row = await conn.execute(
        text(
            "SELECT 1 FROM dataset_fields f JOIN datasets d ON d.id = f.dataset_id "
            "JOIN namespaces n ON n.id = d.namespace_id WHERE n.name = :ns AND d.name = :ds AND f.path = :f"
        ),
        {"ns": namespace, "ds": dataset, "f": field},
    )
    return row.first() is not None


async def tag_dataset(
    conn: AsyncConnection, *, namespace: str, dataset: str, tag: str, field: str | None = None
) -> None:
    """Put a tag on a dataset (or one of its fields); an unknown tag is created on the way."""
    await conn.execute(
        text("INSERT INTO tags (name) VALUES (:tag) ON CONFLICT (name) DO NOTHING"), {"tag": tag}
    )
    await conn.execute(
        text(
            "INSERT INTO dataset_tags (namespace, dataset, field, tag) VALUES (:ns, :ds, :f, :tag) "
            "ON CONFLICT DO NOTHING"
        ),
        {"ns": namespace, "ds": dataset, "f": field or "", "tag": tag},
    )


async def untag_dataset(
    conn: AsyncConnection, *, namespace: str, dataset: str, tag: str, field: str | None = None
) -> bool:
    """Take a tag off; False when it was not there."""
    result = await conn.execute(
        text(
            "DELETE FROM dataset_tags WHERE namespace = :ns AND dataset = :ds AND field = :f AND tag = :tag "
            "RETURNING 1"
        ),
        {"ns": namespace, "ds": dataset, "f": field or "", "tag": tag},
    )
    return result.first() is not None


async def tags_of(
    conn: AsyncConnection, datasets: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], DatasetTags]:
    """The tags of many datasets and their fields, in one statement."""
    out: dict[tuple[str, str], DatasetTags] = defaultdict(DatasetTags)
    if not datasets:
        return out
    rows = await conn.execute(
        text(
            "SELECT t.namespace, t.dataset, t.field, t.tag FROM dataset_tags t "
            "JOIN unnest(CAST(:ns AS text[]), CAST(:ds AS text[])) AS k(ns, ds) "
            "ON t.namespace = k.ns AND t.dataset = k.ds ORDER BY t.tag"
        ),
        {"ns": [d[0] for d in datasets], "ds": [d[1] for d in datasets]},
    )
    for r in rows:
        entry = out[(r.namespace, r.dataset)]
        if r.field:
            entry.fields.setdefault(r.field, []).append(r.tag)
        else:
            entry.dataset.append(r.tag)
    return out


class NotFound(LookupError):
    """The dataset, its field, or (taking a tag off) the tag on it is not there."""


async def change_tag(
    conn: AsyncConnection, *, namespace: str, dataset: str, tag: str, field: str | None, add: bool
) -> None:
    """Put a tag on (`add`) or take it off a dataset or one of its fields; `NotFound` says what is missing."""
    if not await dataset_exists(conn, namespace=namespace, dataset=dataset):
        raise NotFound(f"dataset {dataset!r} in namespace {namespace!r} not found")
    if field is not None and not await field_exists(conn, namespace=namespace, dataset=dataset, field=field):
        raise NotFound(f"field {field!r} of dataset {dataset!r} not found")
    if add:
        await tag_dataset(conn, namespace=namespace, dataset=dataset, tag=tag, field=field)
    elif not await untag_dataset(conn, namespace=namespace, dataset=dataset, tag=tag, field=field):
        raise NotFound(f"tag {tag!r} is not on {field or dataset!r}")


def apply_tags(dataset: Json, tags: DatasetTags | None) -> Json:
    """Fill a Marquez dataset body's `tags` (and each field's) from stored tags."""
    if tags is None:
        return dataset
    dataset["tags"] = list(tags.dataset)
    for f in dataset.get("fields") or []:
        f["tags"] = list(tags.fields.get(f.get("name"), []))
    return dataset
