"""The classification domain's entry points, by use: what ingest calls (`ingest_hook`), stewards'
decisions (`decisions`), reads of effective classifications and the PII inventory (`reads`) and a
column's flow (`flow`). New code imports the module it uses; these names stay importable from here
for the callers outside this package that name them so (ingest, the REST authoriser).
"""

from __future__ import annotations

from catalog.classification.decisions import (
    DatasetNotFound,
    DecisionNotFound,
    FieldNotFound,
    InvalidDecision,
    decision_author,
    list_decisions,
    record_decision,
    retire_decision,
)
from catalog.classification.flow import FLOW_DEPTH, pii_flow
from catalog.classification.ingest_hook import ClassifyOutcome, classify_batch
from catalog.classification.reads import (
    classifications_for_datasets,
    list_classifications,
    pii_inventory,
    pii_tags_by_dataset,
    propagated_paths,
    unmasked_pii_columns,
    with_paths,
)

__all__ = [
    "FLOW_DEPTH",
    "ClassifyOutcome",
    "DatasetNotFound",
    "DecisionNotFound",
    "FieldNotFound",
    "InvalidDecision",
    "classifications_for_datasets",
    "classify_batch",
    "decision_author",
    "list_classifications",
    "list_decisions",
    "pii_flow",
    "pii_inventory",
    "pii_tags_by_dataset",
    "propagated_paths",
    "record_decision",
    "retire_decision",
    "unmasked_pii_columns",
    "with_paths",
]
