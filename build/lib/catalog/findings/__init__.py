"""Governance findings: the rules of the design table, evaluated per ingest batch and by `catalog scan`."""
