"""A few dozen datasets of a product-organised fintech: OLTP tables with PII, their CDC topics, analytics
tables, and some cross-product reads — enough to see whether the report's picture stays legible."""

from __future__ import annotations

from typing import Any

from tests.factories import at, column_lineage, dataset, run_event, schema

PRODUCTS = ("payments", "merchant", "fraud", "risk", "ledger", "cards", "onboarding", "pix")


def _ns(product: str) -> str:
    return f"postgres://{product}-db:5432"


def fintech_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    day = 1
    for product in PRODUCTS:
        oltp = f"{product}.public.customers"
        topic = f"{product}.cdc.customers"
        fact = f"analytics.{product}_customers"
        cols = ("id", "email", "cpf", "amount_cents")
        lineage = {c: [(_ns(product), oltp, c, "DIRECT", "IDENTITY", False)] for c in cols}
        events.append(
            run_event(
                when=at(day),
                job=(f"debezium-{product}", f"{product}_cdc"),
                inputs=[dataset(_ns(product), oltp, schema=schema(*cols))],
                outputs=[
                    dataset(
                        f"kafka://{product}-kafka:9093",
                        topic,
                        schema=schema(*cols),
                        columnLineage=column_lineage(lineage),
                    )
                ],
            )
        )
        masked = {
            "id": [(f"kafka://{product}-kafka:9093", topic, "id", "DIRECT", "IDENTITY", False)],
            "email": [(f"kafka://{product}-kafka:9093", topic, "email", "DIRECT", "TRANSFORMATION", True)],
            "amount_cents": [
                (f"kafka://{product}-kafka:9093", topic, "amount_cents", "DIRECT", "IDENTITY", False)
            ],
        }
        events.append(
            run_event(
                when=at(day, 1),
                job=("airflow-analytics", f"{product}_to_bq"),
                inputs=[dataset(f"kafka://{product}-kafka:9093", topic)],
                outputs=[
                    dataset(
                        "bigquery",
                        fact,
                        schema=schema("id", "email", "amount_cents"),
                        columnLineage=column_lineage(masked),
                    )
                ],
            )
        )
        day += 1
    # Cross-product reads straight from other products' databases, and a few analytics roll-ups.
    for reader, owner in (("fraud", "payments"), ("risk", "cards"), ("ledger", "payments"), ("fraud", "pix")):
        target = f"{reader}.public.{owner}_copy"
        events.append(
            run_event(
                when=at(day),
                job=(f"airflow-{reader}", f"copy_{owner}"),
                inputs=[dataset(_ns(owner), f"{owner}.public.customers")],
                outputs=[
                    dataset(
                        _ns(reader),
                        target,
                        schema=schema("id", "cpf"),
                        columnLineage=column_lineage(
                            {
                                "cpf": [
                                    (
                                        _ns(owner),
                                        f"{owner}.public.customers",
                                        "cpf",
                                        "DIRECT",
                                        "IDENTITY",
                                        False,
                                    )
                                ],
                                "id": [
                                    (
                                        _ns(owner),
                                        f"{owner}.public.customers",
                                        "id",
                                        "DIRECT",
                                        "IDENTITY",
                                        False,
                                    )
                                ],
                            }
                        ),
                    )
                ],
            )
        )
    # Services consuming other products' CDC topics (cross-product reads of PII off the stream).
    for reader, owner, target in (
        ("ledger", "payments", "ledger.public.reconciliation"),
        ("fraud", "onboarding", "fraud.public.kyc_signals"),
    ):
        topic = f"{owner}.cdc.customers"
        kafka = f"kafka://{owner}-kafka:9093"
        events.append(
            run_event(
                when=at(day, 2),
                job=(f"{reader}-consumer", f"consume_{owner}_customers"),
                inputs=[dataset(kafka, topic)],
                outputs=[
                    dataset(
                        _ns(reader),
                        target,
                        schema=schema("cpf", "amount_cents"),
                        columnLineage=column_lineage(
                            {
                                c: [(kafka, topic, c, "DIRECT", "IDENTITY", False)]
                                for c in ("cpf", "amount_cents")
                            }
                        ),
                    )
                ],
            )
        )
    for name, sources in (
        ("analytics.customer_360", ("payments", "merchant", "cards", "pix")),
        ("analytics.risk_features", ("fraud", "risk", "onboarding")),
    ):
        lineage = {
            "email": [
                ("bigquery", f"analytics.{p}_customers", "email", "DIRECT", "IDENTITY", False)
                for p in sources
            ]
        }
        events.append(
            run_event(
                when=at(day, 5),
                job=("dbt", name.replace("analytics.", "model_")),
                inputs=[dataset("bigquery", f"analytics.{p}_customers") for p in sources],
                outputs=[
                    dataset("bigquery", name, schema=schema("email"), columnLineage=column_lineage(lineage))
                ],
            )
        )
    events.append(
        run_event(
            when=at(day, 6),
            job=("dbt", "model_exec_dashboard"),
            inputs=[
                dataset("bigquery", "analytics.customer_360"),
                dataset("bigquery", "analytics.risk_features"),
            ],
            outputs=[
                dataset(
                    "bigquery",
                    "analytics.exec_dashboard",
                    schema=schema("email"),
                    columnLineage=column_lineage(
                        {
                            "email": [
                                ("bigquery", "analytics.customer_360", "email", "DIRECT", "AGGREGATION", True)
                            ]
                        }
                    ),
                )
            ],
        )
    )
    return events
