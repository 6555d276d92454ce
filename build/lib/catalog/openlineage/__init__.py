"""OpenLineage events in: request-body decoding, envelope validation, sanitising and secret redaction.

Pure Python (no database, no web framework): the HTTP ingest, the batch CLI and the Kafka worker share it.
"""
