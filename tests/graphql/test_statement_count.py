"""No N+1: a page of datasets with their fields (nested), owners and producers costs the same, small
number of SQL statements whether it holds 10 datasets or 100."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from catalog.config import Settings
from tests.graphql.conftest import BQ, app_client, data_of, ingest, many_datasets_events

PAGE = """query($first: Int!) {
  datasets(namespace: "bigquery", first: $first) {
    nodes {
      namespace
      name
      fields { path type children { path } }
      owners { name type }
      producers { name owners { name } }
      consumers { name }
    }
    pageInfo { hasNextPage }
  }
}"""


async def test_a_page_costs_a_constant_number_of_statements(settings: Settings, database_url: str) -> None:
    # The listener sees every statement on the app's engine, including the GrantWatcher's background
    # poll (`SELECT coalesce(max(id), 0) FROM grant_changes`, every 0.25 s by default), which lands in
    # a page's window at random (more often in the longer page of 100). Park the watcher so only the
    # statements the GraphQL request sends are counted.
    quiet = settings.model_copy(update={"grants_poll_seconds": 3600.0})
    async with app_client(quiet, database_url) as (app, http):
        await ingest(http, many_datasets_events(100))
        await data_of(http, PAGE, {"first": 1})  # warm up: the key cache, prepared statements

        statements: list[str] = []

        def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
            statements.append(statement)

        counts: dict[int, int] = {}
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", count)
        try:
            for first in (10, 100):
                statements.clear()
                data = await data_of(http, PAGE, {"first": first})
                nodes = data["datasets"]["nodes"]
                assert len(nodes) == first
                assert {n["namespace"] for n in nodes} == {BQ}
                assert nodes[0]["fields"] == [
                    {"path": "address", "type": "STRUCT", "children": [{"path": "address.city"}]},
                    {"path": "id", "type": "STRING", "children": []},
                ]
                assert nodes[0]["owners"] == [{"name": "team:t0", "type": "MAINTAINER"}]
                assert nodes[-1]["producers"] == [{"name": f"wide_dag.load_{first - 1:04d}", "owners": []}]
                counts[first] = len(statements)
        finally:
            event.remove(app.state.engine.sync_engine, "before_cursor_execute", count)

    print(f"SQL statements per page: {counts}")
    assert counts[10] == counts[100], counts
    # SET LOCAL statement_timeout, the page, the fields, the datasets' owners, the producers and
    # consumers (one statement for both), the producers' owners.
    assert counts[100] == 6, counts
