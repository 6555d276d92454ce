"""Product assignment is a policy fact written with the projection: with the governance rules off on the
ingest path (`findings_incremental=False`), a dataset still gets its product, and authorisation uses it
rather than falling back to products.yaml's name patterns."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from catalog.config import Settings
from tests.conftest import ADMIN_TOKEN
from tests.factories import at, dataset, run_event, schema
from tests.keys import make_key
from tests.policy.test_ownership import (
    EXPORT,
    INTERNALS,
    PRODUCT,
    SHARED,
    dataset_url,
    gql,
    ownership,
    post,
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home", admin_token=ADMIN_TOKEN, log_format="console", findings_incremental=False
    )


async def test_with_findings_off_a_claimed_dataset_gets_its_product_and_access_follows_it(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    merchant_pipeline = await make_key(engine, "pipeline", "merchant")
    merchant_engineer = await make_key(engine, "engineer", "merchant")
    fraud_engineer = await make_key(engine, "engineer", "fraud")

    # products.yaml places nothing in s3://shared-exports; merchant's own key places the export by its
    # ownership facet — an assignment only the stored product knows, the name patterns do not.
    export = dataset(
        SHARED, EXPORT, schema=schema(("card_id", "BIGINT")), ownership=ownership("team:merchant")
    )
    job = ("airflow-merchant", "merchant_dag.export")
    await post(client, merchant_pipeline, run_event(when=at(2), job=job, outputs=[export]))

    for key in (merchant_engineer, fraud_engineer):
        assert (await gql(client, key, PRODUCT, SHARED, EXPORT))["data"]["dataset"]["product"] == "merchant"
    allowed = await client.get(dataset_url(SHARED, EXPORT), headers=merchant_engineer.headers)
    assert allowed.status_code == 200, allowed.text
    denied = await client.get(dataset_url(SHARED, EXPORT), headers=fraud_engineer.headers)
    assert denied.status_code == 403, denied.text
    assert denied.json()["rule"] == INTERNALS

    async with engine.connect() as conn:
        stored = (
            await conn.execute(
                text(
                    "SELECT pa.subject_kind, pa.product, pa.source FROM product_assignments pa "
                    "JOIN datasets d ON pa.subject_kind = 'dataset' AND pa.subject_id = d.id "
                    "WHERE d.name = :name"
                ),
                {"name": EXPORT},
            )
        ).all()
        # the rules did not run: a job that reads nothing would have opened an unlineaged-transfer
        findings = (await conn.execute(text("SELECT count(*) FROM findings"))).scalar_one()
    assert [tuple(r) for r in stored] == [("dataset", "merchant", "ownership")]
    assert findings == 0
