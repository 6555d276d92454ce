"""Every operation as a sans-IO `Call` (or `Pager`): the one implementation both clients send."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from catalog_client import _protocol as p
from catalog_client import models as m

Direction = Literal["UPSTREAM", "DOWNSTREAM", "BOTH"]
FindingStatus = Literal["open", "resolved", "waived"]


def dataset_node(namespace: str, name: str) -> str:
    return f"dataset:{namespace}:{name}"


def job_node(namespace: str, name: str) -> str:
    return f"job:{namespace}:{name}"


def field_node(namespace: str, dataset: str, field: str) -> str:
    return f"datasetField:{namespace}:{dataset}:{field}"


class Requests:
    """Builds the calls; stateless apart from the default page size."""

    def __init__(self, page_size: int = 100) -> None:
        self.page_size = page_size

    # -- catalog -------------------------------------------------------------------------------------
    def namespaces(self) -> p.Pager[m.Namespace]:
        return p.offset_pager(p.NAMESPACES, page_size=self.page_size)

    def namespace(self, name: str) -> p.Call[m.Namespace]:
        return p.build(p.NAMESPACE, p.model(m.Namespace), path={"namespace": name})

    def datasets(self, namespace: str) -> p.Pager[m.Dataset]:
        return p.offset_pager(p.DATASETS, path={"namespace": namespace}, page_size=self.page_size)

    def dataset(self, namespace: str, name: str) -> p.Call[m.Dataset]:
        return p.build(p.DATASET, p.model(m.Dataset), path={"namespace": namespace, "dataset": name})

    def dataset_versions(self, namespace: str, name: str) -> p.Pager[m.DatasetVersion]:
        return p.offset_pager(
            p.DATASET_VERSIONS, path={"namespace": namespace, "dataset": name}, page_size=self.page_size
        )

    def jobs(self, namespace: str) -> p.Pager[m.Job]:
        return p.offset_pager(p.JOBS, path={"namespace": namespace}, page_size=self.page_size)

    def job(self, namespace: str, name: str) -> p.Call[m.Job]:
        return p.build(p.JOB, p.model(m.Job), path={"namespace": namespace, "job": name})

    def runs(self, namespace: str, job: str) -> p.Pager[m.Run]:
        return p.offset_pager(p.RUNS, path={"namespace": namespace, "job": job}, page_size=self.page_size)

    def run(self, run_id: str | uuid.UUID) -> p.Call[m.Run]:
        return p.build(p.RUN, p.model(m.Run), path={"run_id": str(run_id)})

    def events(
        self,
        *,
        before: dt.datetime | None = None,
        after: dt.datetime | None = None,
        ascending: bool = False,
    ) -> p.Pager[m.LineageEvent]:
        params: dict[str, p.ParamValue] = {
            "before": before,
            "after": after,
            "sortDirection": "asc" if ascending else "desc",
        }
        return p.offset_pager(p.EVENTS, params=params, page_size=self.page_size)

    def all_datasets(self, namespace: str | None, search: str | None) -> p.Pager[m.GqlDataset]:
        return p.graphql_datasets_pager(namespace, search, min(self.page_size, 100))

    def fields(self, namespace: str, dataset: str, path: str | None) -> p.Call[list[m.GqlField] | None]:
        return p.graphql_fields(namespace, dataset, path)

    # -- lineage -------------------------------------------------------------------------------------
    def lineage(
        self, node_id: str, *, depth: int | None, direction: Direction, as_of: dt.datetime | None
    ) -> p.Call[m.LineageGraph]:
        params: dict[str, p.ParamValue] = {
            "nodeId": node_id,
            "depth": depth,
            "direction": direction,
            "asOf": as_of,
        }
        return p.build(p.LINEAGE, p.model(m.LineageGraph), params=params)

    def column_lineage(
        self, node_id: str, *, depth: int | None, with_downstream: bool, as_of: dt.datetime | None
    ) -> p.Call[m.ColumnLineageGraph]:
        params: dict[str, p.ParamValue] = {
            "nodeId": node_id,
            "depth": depth,
            "withDownstream": with_downstream,
            "asOf": as_of,
        }
        return p.build(p.COLUMN_LINEAGE, p.model(m.ColumnLineageGraph), params=params)

    def search(
        self,
        q: str,
        *,
        kind: Literal["DATASET", "JOB"] | None,
        sort: Literal["NAME", "UPDATE_AT"],
        limit: int,
        namespace: str | None,
    ) -> p.Call[m.SearchResults]:
        params: dict[str, p.ParamValue] = {
            "q": q,
            "filter": kind,
            "sort": sort,
            "limit": limit,
            "namespace": namespace,
        }
        return p.build(p.SEARCH, p.model(m.SearchResults), params=params)

    # -- tags ----------------------------------------------------------------------------------------
    def tags(self) -> p.Pager[m.Tag]:
        # GET /tags answers no totalCount: the pager stops at the first short page.
        return p.offset_pager(p.TAGS, page_size=self.page_size)

    def tag(
        self, namespace: str, dataset: str, tag: str, field: str | None, *, add: bool
    ) -> p.Call[m.Dataset]:
        path = {"namespace": namespace, "dataset": dataset, "tag": tag}
        if field is None:
            return p.build(p.TAG_DATASET if add else p.UNTAG_DATASET, p.model(m.Dataset), path=path)
        endpoint = p.TAG_FIELD if add else p.UNTAG_FIELD
        return p.build(endpoint, p.model(m.Dataset), path={**path, "field": field})

    # -- classification / PII ------------------------------------------------------------------------
    def classifications(
        self, namespace: str, dataset: str, field: str | None
    ) -> p.Call[list[m.Classification]]:
        params: dict[str, p.ParamValue] = {"namespace": namespace, "dataset": dataset, "field": field}
        return p.build(p.CLASSIFICATIONS, p.items(m.Classification, "classifications"), params=params)

    def decisions(
        self, namespace: str | None, dataset: str | None, include_retired: bool
    ) -> p.Pager[m.Decision]:
        params: dict[str, p.ParamValue] = {
            "namespace": namespace,
            "dataset": dataset,
            "includeRetired": include_retired,
        }
        return p.offset_pager(p.DECISIONS, params=params, page_size=self.page_size)

    def record_decision(self, decision: m.DecisionIn) -> p.Call[m.Decision]:
        ep = p.RECORD_DECISION
        return p.build(ep, p.model(m.Decision), json=p.body_of(ep, decision))

    def retire_decision(self, decision_id: int) -> p.Call[m.Decision]:
        return p.build(p.RETIRE_DECISION, p.model(m.Decision), path={"decision_id": str(decision_id)})

    def pii_inventory(
        self,
        namespace: str | None,
        as_of: dt.datetime | None,
        product: str | None = None,
        tier: str | None = None,
    ) -> p.Pager[m.Classification]:
        params: dict[str, p.ParamValue] = {
            "namespace": namespace,
            "product": product,
            "tier": tier,
            "asOf": as_of,
        }
        return p.offset_pager(p.PII_INVENTORY, params=params, page_size=self.page_size)

    def pii_flow(
        self, namespace: str, dataset: str, field: str, depth: int | None = None
    ) -> p.Call[m.PiiFlow]:
        params: dict[str, p.ParamValue] = {
            "namespace": namespace,
            "dataset": dataset,
            "field": field,
            "depth": depth,
        }
        return p.build(p.PII_FLOW, p.model(m.PiiFlow), params=params)

    # -- governance ----------------------------------------------------------------------------------
    def findings(
        self,
        *,
        product: str | None,
        rule: str | None,
        severity: str | None,
        status: FindingStatus | None,
    ) -> p.Pager[m.Finding]:
        params: dict[str, p.ParamValue] = {
            "product": product,
            "rule": rule,
            "severity": severity,
            "status": status,
        }
        return p.offset_pager(p.FINDINGS, params=params, page_size=self.page_size)

    def finding(self, finding_id: int) -> p.Call[m.Finding]:
        return p.build(p.FINDING, p.model(m.Finding), path={"finding_id": str(finding_id)})

    def findings_summary(self, product: str | None) -> p.Call[m.FindingsSummary]:
        return p.build(p.FINDINGS_SUMMARY, p.model(m.FindingsSummary), params={"product": product})

    def subject_findings(
        self, kind: Literal["dataset", "job"], namespace: str, name: str, status: FindingStatus | None
    ) -> p.Call[list[m.Finding]]:
        if kind == "dataset":
            path = {"namespace": namespace, "dataset": name}
            return p.build(
                p.DATASET_FINDINGS, p.items(m.Finding, "findings"), path=path, params={"status": status}
            )
        path = {"namespace": namespace, "job": name}
        return p.build(p.JOB_FINDINGS, p.items(m.Finding, "findings"), path=path, params={"status": status})

    def waive(self, finding_id: int, waiver: m.WaiverIn) -> p.Call[m.Finding]:
        ep = p.WAIVE
        return p.build(
            ep, p.model(m.Finding), path={"finding_id": str(finding_id)}, json=p.body_of(ep, waiver)
        )

    def unwaive(self, finding_id: int, body: m.UnwaiveIn) -> p.Call[m.Finding]:
        ep = p.UNWAIVE
        return p.build(ep, p.model(m.Finding), path={"finding_id": str(finding_id)}, json=p.body_of(ep, body))

    def grants(self, product: str | None, include_revoked: bool) -> p.Call[list[m.Grant]]:
        params: dict[str, p.ParamValue] = {"product": product, "includeRevoked": include_revoked}
        return p.build(p.GRANTS, p.items(m.Grant, "grants"), params=params)

    def create_grant(self, grant: m.GrantIn) -> p.Call[m.Grant]:
        ep = p.CREATE_GRANT
        return p.build(ep, p.model(m.Grant), json=p.body_of(ep, grant))

    def revoke_grant(self, grant_id: int) -> p.Call[m.Grant]:
        return p.build(p.REVOKE_GRANT, p.model(m.Grant), path={"grant_id": str(grant_id)})

    # -- ingestion and audit -------------------------------------------------------------------------
    def ingest(self, event: dict[str, Any], *, wait: str | None = None) -> p.Call[m.IngestResult]:
        return p.build(p.INGEST, p.model(m.IngestResult), json=event, params={"wait": wait})

    def signing_keys(self) -> p.Call[m.SigningKeys]:
        return p.build(p.SIGNING_KEYS, p.model(m.SigningKeys))

    def export(
        self,
        *,
        as_of: dt.datetime | None,
        period_from: dt.datetime | None,
        period_to: dt.datetime | None,
        product: str | None,
    ) -> p.Call[None]:
        params: dict[str, p.ParamValue] = {
            "asOf": as_of,
            "from": period_from,
            "to": period_to,
            "product": product,
        }
        return p.build(p.EXPORT, lambda _: None, params=params)
