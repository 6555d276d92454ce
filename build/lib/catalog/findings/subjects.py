"""What a finding is about, by name: a structured subject and one line that says it in words.

A subject is `{kind, namespace, name, field?, job?: {namespace, name}, direction?}`:

- `dataset`: a dataset (`namespace`, `name`);
- `field`: a column of a dataset (`namespace`, `name`, `field` = the column path);
- `job`: a job (`namespace`, `name` are the job's);
- `flow`: a job reading or writing a dataset (`namespace`, `name` of the dataset, `field` when the flow is
  one column's, `job`, `direction` input|output); `name` is null when the job reads a whole database;
- `namespace`: a database or other namespace (`namespace`; `name` is null).

Names are kept as separate members, never joined into one string a reader would have to split (names may
contain `/`, `#` or `:`).
"""

from __future__ import annotations

from typing import Any

Subject = dict[str, Any]


def job_ref(namespace: str | None, name: str | None) -> dict[str, str] | None:
    return {"namespace": namespace, "name": name} if namespace is not None and name is not None else None


def dataset_subject(namespace: str, name: str) -> Subject:
    return {"kind": "dataset", "namespace": namespace, "name": name}


def field_subject(namespace: str, name: str, field: str) -> Subject:
    return {"kind": "field", "namespace": namespace, "name": name, "field": field}


def job_subject(namespace: str, name: str) -> Subject:
    return {"kind": "job", "namespace": namespace, "name": name}


def namespace_subject(namespace: str) -> Subject:
    return {"kind": "namespace", "namespace": namespace, "name": None}


def flow_subject(
    namespace: str,
    name: str,
    *,
    job: dict[str, str] | None,
    direction: str,
    field: str | None = None,
) -> Subject:
    out: Subject = {"kind": "flow", "namespace": namespace, "name": name, "job": job, "direction": direction}
    if field is not None:
        out["field"] = field
    return out


def display(subject: Subject) -> str:
    """One line a person can read without looking anything up."""
    kind = subject.get("kind")
    ns, name, field = subject.get("namespace"), subject.get("name"), subject.get("field")
    dataset = f"dataset {name} in {ns}"
    if kind == "dataset":
        return dataset
    if kind == "field":  # field None: a column the reader may not see, shown as its dataset
        return f"column {field} of {dataset}" if field is not None else dataset
    if kind == "job":
        return f"job {name} in {ns}"
    if kind == "namespace":
        return f"database {ns}"
    if kind == "flow":
        job = subject.get("job")
        who = f"job {job['name']} in {job['namespace']}" if job else "an unknown job"
        verb = "reads" if subject.get("direction") == "input" else "writes"
        if name is None:  # a job reading a whole database (analytics on OLTP)
            what = f"database {ns}"
        else:
            what = f"column {field} of {dataset}" if field is not None else dataset
        return f"{who} {verb} {what}"
    return str(subject)
