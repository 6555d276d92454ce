"""The client against the committed OpenAPI document (and the GraphQL schema): every path and method it
calls exists, every query parameter it sends is declared, and every field its models declare exists in
the schema the document gives that body — so changing the API without the client fails here."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any

import graphql
from pydantic import BaseModel

from catalog.api.graphql import Limits
from catalog.api.graphql.schema import build_schema
from catalog_client import AsyncCatalogClient, CatalogClient
from catalog_client import _protocol as protocol
from catalog_client._protocol import Endpoint

SPEC_PATH = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"
Spec = dict[str, Any]


def load_spec() -> Spec:
    return dict(json.loads(SPEC_PATH.read_text()))


def _resolve(spec: Spec, schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        return dict(spec["components"]["schemas"][ref.rsplit("/", 1)[-1]])
    return schema


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model inside `Model`, `list[Model]` or `Model | None`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _nested_model(arg)
        if found is not None:
            return found
    return None


def _subschema(spec: Spec, prop: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema of a property (through $ref, array items and anyOf with null)."""
    prop = _resolve(spec, prop)
    if prop.get("type") == "array":
        return _subschema(spec, prop.get("items", {}))
    for option in prop.get("anyOf", []):
        if option.get("type") != "null":
            return _subschema(spec, option)
    return prop if "properties" in prop else None


def model_drift(spec: Spec, model: type[BaseModel], schema: dict[str, Any], where: str) -> list[str]:
    """Fields the model declares that the schema lacks, and required-ness the schema no longer promises."""
    schema = _resolve(spec, schema)
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    problems = []
    for name, info in model.model_fields.items():
        wire = info.alias or name
        if wire not in props:
            problems.append(f"{where}: {model.__name__}.{name} ({wire!r}) is not in the spec's schema")
            continue
        if info.is_required() and wire not in required:
            problems.append(
                f"{where}: {model.__name__}.{name} is required by the client, optional in the spec"
            )
        inner = _nested_model(info.annotation)
        sub = _subschema(spec, props[wire])
        if inner is not None and sub is not None:
            problems.extend(model_drift(spec, inner, sub, f"{where}.{wire}"))
    return problems


def body_drift(spec: Spec, model: type[BaseModel], schema: dict[str, Any], where: str) -> list[str]:
    """A request body: what the client sends must exist, and what the spec requires the client must require."""
    problems = model_drift(spec, model, schema, where)
    declared = {info.alias or name for name, info in model.model_fields.items()}
    for wire in _resolve(spec, schema).get("required", []):
        if wire not in declared:
            problems.append(f"{where}: the spec requires {wire!r}, which {model.__name__} cannot send")
    return problems


def endpoint_drift(spec: Spec, name: str, ep: Endpoint) -> list[str]:
    where = f"{ep.method} {ep.path} ({name})"
    operation = spec["paths"].get(ep.path, {}).get(ep.method.lower())
    if operation is None:
        return [f"{where}: not in openapi.json"]
    problems = []
    params = operation.get("parameters", [])
    declared_query = {p["name"] for p in params if p["in"] == "query"}
    for q in sorted(set(ep.query) - declared_query):
        problems.append(f"{where}: query parameter {q!r} is not declared")
    spec_path_params = {p["name"] for p in params if p["in"] == "path"}
    client_path_params = set(re.findall(r"{(\w+)}", ep.path))
    if spec_path_params != client_path_params:
        problems.append(
            f"{where}: path parameters {sorted(client_path_params)} != {sorted(spec_path_params)}"
        )
    ok = next((code for code in ("200", "201") if code in operation["responses"]), None)
    content = operation["responses"][ok].get("content", {}) if ok else {}
    body_schema = content.get("application/json", {}).get("schema")
    if ep.response is not None:
        if body_schema is None:
            problems.append(f"{where}: the spec declares no JSON answer")
        elif ep.schema is not None:
            if body_schema.get("$ref", "").rsplit("/", 1)[-1] != ep.schema:
                problems.append(f"{where}: the answer is no longer typed by {ep.schema}")
            elif ep.list_key is not None:
                # A page: the client's model is that of the items listed under `list_key`.
                listed = _resolve(spec, body_schema).get("properties", {}).get(ep.list_key)
                item = _subschema(spec, listed) if listed is not None else None
                if item is None:
                    problems.append(f"{where}: {ep.schema} lists no objects under {ep.list_key!r}")
                else:
                    problems.extend(model_drift(spec, ep.response, item, f"{where}.{ep.list_key}"))
            else:
                problems.extend(model_drift(spec, ep.response, body_schema, where))
        elif "$ref" in body_schema or "properties" in body_schema:
            problems.append(f"{where}: the spec now types the answer ({body_schema}); map it in the client")
    if ep.body is not None:
        request = (
            operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        )
        if request is None:
            problems.append(f"{where}: the spec declares no JSON request body")
        elif request.get("$ref", "").rsplit("/", 1)[-1] != ep.body_schema:
            problems.append(f"{where}: the request body is no longer {ep.body_schema}")
        else:
            problems.extend(body_drift(spec, ep.body, request, where))
    return problems


def all_drift(spec: Spec) -> list[str]:
    problems = []
    for name, ep in protocol.ENDPOINTS.items():
        if not ep.graphql:
            problems.extend(endpoint_drift(spec, name, ep))
    return problems


def test_every_endpoint_the_client_calls_matches_the_committed_spec() -> None:
    assert all_drift(load_spec()) == []


def test_the_problem_model_matches_the_spec() -> None:
    from catalog_client.models import Problem

    spec = load_spec()
    assert model_drift(spec, Problem, {"$ref": "#/components/schemas/ProblemModel"}, "problem") == []


def test_drift_is_caught() -> None:
    """The checker is not vacuous: a removed path, parameter, property or requirement each fail it."""
    spec = load_spec()
    del spec["paths"]["/api/v1/search"]
    spec["paths"]["/api/v1/lineage"]["get"]["parameters"] = [
        p for p in spec["paths"]["/api/v1/lineage"]["get"]["parameters"] if p["name"] != "asOf"
    ]
    del spec["components"]["schemas"]["SigningKeyOut"]["properties"]["publicKeyPem"]
    spec["components"]["schemas"]["GrantIn"]["required"].append("ticket")
    spec["paths"]["/api/v1/namespaces"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ] = {"$ref": "#/components/schemas/NamespacePage"}
    del spec["components"]["schemas"]["FindingOut"]["properties"]["subjectDisplay"]
    problems = "\n".join(all_drift(spec))
    assert "GET /api/v1/search (search): not in openapi.json" in problems
    assert "GET /api/v1/findings (findings).findings: Finding.subject_display" in problems
    assert "query parameter 'asOf' is not declared" in problems
    assert "publicKeyPem" in problems
    assert "requires 'ticket'" in problems
    assert "GET /api/v1/namespaces (namespaces): the spec now types the answer" in problems


def test_graphql_queries_are_valid_against_the_schema() -> None:
    limits = Limits(
        max_depth=50,
        max_aliases=50,
        max_tokens=10_000,
        max_page_size=1000,
        max_lineage_depth=20,
        timeout_seconds=5,
    )
    schema = build_schema(limits).as_str()
    built = graphql.build_schema(schema)
    for name, query in protocol.GQL_QUERIES.items():
        errors = graphql.validate(built, graphql.parse(query))
        assert errors == [], f"{name}: {errors}"


def test_sync_and_async_clients_offer_the_same_methods() -> None:
    def public(cls: type) -> dict[str, inspect.Signature]:
        return {
            n: inspect.signature(f)
            for n, f in inspect.getmembers(cls, inspect.isfunction)
            if not n.startswith("_") and n not in {"close", "aclose"}
        }

    sync, async_ = public(CatalogClient), public(AsyncCatalogClient)
    assert sync.keys() == async_.keys()
    for name, signature in sync.items():
        assert list(signature.parameters) == list(async_[name].parameters), name


def test_the_client_does_not_import_the_service() -> None:
    code = (
        "import sys, catalog_client, catalog_client.audit, catalog_client.pipelines\n"
        "assert not [m for m in sys.modules if m == 'catalog' or m.startswith('catalog.')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent)
