"""Small builders of OpenLineage events for tests (the corpus covers real producers' shapes)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

PRODUCER = "https://github.com/example/tests"
RUN_EVENT = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"


def at(day: int = 1, hour: int = 0, minute: int = 0, month: int = 3) -> str:
    return dt.datetime(2026, month, day, hour, minute, tzinfo=dt.UTC).isoformat().replace("+00:00", "Z")


def schema(*fields: str | tuple[str, str] | dict[str, Any]) -> dict[str, Any]:
    out = []
    for f in fields:
        if isinstance(f, dict):
            out.append(f)
        elif isinstance(f, tuple):
            out.append({"name": f[0], "type": f[1]})
        else:
            out.append({"name": f, "type": "STRING"})
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-1-1/SchemaDatasetFacet.json",
        "fields": out,
    }


def dataset(namespace: str, name: str, **facets: Any) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "facets": facets}


def column_lineage(mapping: dict[str, list[tuple[str, str, str, str, str, bool]]]) -> dict[str, Any]:
    """{target field: [(ns, name, field, type, subtype, masking), ...]}"""
    return {
        "_producer": PRODUCER,
        "_schemaURL": "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json",
        "fields": {
            target: {
                "inputFields": [
                    {
                        "namespace": ns,
                        "name": name,
                        "field": field,
                        "transformations": [{"type": t, "subtype": st, "masking": masking}],
                    }
                    for ns, name, field, t, st, masking in sources
                ]
            }
            for target, sources in mapping.items()
        },
    }


def run_event(
    event_type: str = "COMPLETE",
    *,
    when: str | None = None,
    run_id: str | None = None,
    job: tuple[str, str] = ("airflow-payments", "payments_dag.load"),
    inputs: list[dict[str, Any]] | None = None,
    outputs: list[dict[str, Any]] | None = None,
    run_facets: dict[str, Any] | None = None,
    job_facets: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "eventType": event_type,
        "eventTime": when or at(),
        "producer": PRODUCER,
        "schemaURL": RUN_EVENT,
        "run": {"runId": run_id or str(uuid.uuid4()), "facets": run_facets or {}},
        "job": {"namespace": job[0], "name": job[1], "facets": job_facets or {}},
        "inputs": inputs or [],
        "outputs": outputs or [],
    }
