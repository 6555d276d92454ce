"""Governance and lineage catalog: OpenLineage in, a governed catalog of datasets, columns and flows out."""

__version__ = "0.1.0"
