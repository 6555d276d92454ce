"""A small multi-product catalog for the web UI tests: payments' OLTP customers and transactions flow into
BigQuery, fraud reads payments' table (cross-product, PII unmasked in one column, hashed in another), and
an unencrypted FTP hop feeds ledger. Enough for every page to have something to show."""

from __future__ import annotations

from typing import Any

from tests.factories import at, column_lineage, dataset, run_event, schema

PG = "postgres://payments-db.internal:5432"
BQ = "bigquery"
KAFKA = "kafka://fraud-kafka.internal:9092"
FTP = "ftp://partner.example.com"  # plaintext: an unencrypted transfer

CUSTOMERS = (PG, "payments.customers")
TX = (PG, "payments.transactions")
ENRICHED = (BQ, "cw.payments.tx_enriched")
SCORES = (BQ, "cw.fraud.scores")
ALERTS = (KAFKA, "fraud.alerts")
LEDGER = (FTP, "ledger.settlements")


def _sql(query: str) -> dict[str, Any]:
    return {
        "sql": {
            "_producer": "https://github.com/example/tests",
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-0/SQLJobFacet.json",
            "query": query,
        }
    }


def demo_events() -> list[dict[str, Any]]:
    customers = dataset(
        *CUSTOMERS,
        schema=schema(
            ("id", "BIGINT"),
            ("cpf", "TEXT"),
            ("email", "TEXT"),
            ("full_name", "TEXT"),
            ("created_at", "TIMESTAMP"),
        ),
    )
    tx = dataset(*TX, schema=schema(("id", "BIGINT"), ("customer_id", "BIGINT"), ("amount", "NUMERIC")))
    enriched = dataset(
        *ENRICHED,
        schema=schema(
            ("tx_id", "INT64"),
            ("amount", "NUMERIC"),
            ("cpf", "STRING"),
            ("email_hash", "STRING"),
            ("day", "DATE"),
        ),
        columnLineage=column_lineage(
            {
                "tx_id": [(*TX, "id", "DIRECT", "IDENTITY", False)],
                "amount": [(*TX, "amount", "DIRECT", "IDENTITY", False)],
                "cpf": [(*CUSTOMERS, "cpf", "DIRECT", "IDENTITY", False)],
                "email_hash": [(*CUSTOMERS, "email", "DIRECT", "TRANSFORMATION", True)],
            }
        ),
    )
    scores = dataset(
        *SCORES,
        schema=schema(("tx_id", "INT64"), ("cpf", "STRING"), ("score", "FLOAT64")),
        columnLineage=column_lineage(
            {
                "tx_id": [(*ENRICHED, "tx_id", "DIRECT", "IDENTITY", False)],
                "cpf": [(*ENRICHED, "cpf", "DIRECT", "IDENTITY", False)],
                "score": [(*ENRICHED, "amount", "DIRECT", "TRANSFORMATION", False)],
            }
        ),
    )
    alerts = dataset(
        *ALERTS,
        schema=schema(("tx_id", "BIGINT"), ("score", "DOUBLE")),
        columnLineage=column_lineage(
            {
                "tx_id": [(*SCORES, "tx_id", "DIRECT", "IDENTITY", False)],
                "score": [(*SCORES, "score", "DIRECT", "IDENTITY", False)],
            }
        ),
    )
    ledger = dataset(
        *LEDGER,
        schema=schema(("day", "DATE"), ("total", "NUMERIC")),
        dataSource={
            "_producer": "https://github.com/example/tests",
            "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json",
            "name": "partner-ftp",
            "uri": "ftp://partner.example.com/settlements",
        },
        columnLineage=column_lineage(
            {
                "day": [(*ENRICHED, "day", "DIRECT", "IDENTITY", False)],
                "total": [(*ENRICHED, "amount", "DIRECT", "AGGREGATION", False)],
            }
        ),
    )
    enrich_sql = _sql(
        "INSERT INTO cw.payments.tx_enriched\nSELECT t.id, t.amount, c.cpf, SHA256(c.email), DATE(t.created_at)\n"
        "FROM payments.transactions t JOIN payments.customers c ON c.id = t.customer_id"
    )
    return [
        run_event(
            "START",
            when=at(2, 1),
            run_id="11111111-1111-4111-8111-111111111111",
            job=("airflow-payments", "payments_dag.enrich"),
            inputs=[customers, tx],
            outputs=[enriched],
            job_facets=enrich_sql,
        ),
        run_event(
            when=at(2, 1, 7),
            run_id="11111111-1111-4111-8111-111111111111",
            job=("airflow-payments", "payments_dag.enrich"),
            inputs=[customers, tx],
            outputs=[enriched],
            job_facets=enrich_sql,
        ),
        run_event(
            "FAIL",
            when=at(3, 1, 3),
            run_id="11111111-1111-4111-8111-222222222222",
            job=("airflow-payments", "payments_dag.enrich"),
            inputs=[customers, tx],
            outputs=[enriched],
            job_facets=enrich_sql,
            run_facets={
                "errorMessage": {
                    "_producer": "https://github.com/example/tests",
                    "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json",
                    "message": "division by zero in SHA256 shim",
                    "programmingLanguage": "SQL",
                }
            },
        ),
        run_event(
            when=at(2, 3),
            run_id="33333333-3333-4333-8333-333333333333",
            job=("airflow-fraud", "fraud_dag.score"),
            inputs=[dataset(*ENRICHED)],
            outputs=[scores],
            job_facets=_sql("SELECT tx_id, cpf, model.score(amount) FROM cw.payments.tx_enriched"),
        ),
        run_event(
            when=at(2, 4),
            run_id="44444444-4444-4444-8444-444444444444",
            job=("airflow-fraud", "fraud_dag.alert"),
            inputs=[dataset(*SCORES)],
            outputs=[alerts],
        ),
        run_event(
            when=at(2, 5),
            run_id="55555555-5555-4555-8555-555555555555",
            job=("airflow-ledger", "ledger_dag.settle"),
            inputs=[dataset(*ENRICHED)],
            outputs=[ledger],
        ),
    ]
