"""Ingestion: the event log and the projection of events into the catalog (the hot path)."""
