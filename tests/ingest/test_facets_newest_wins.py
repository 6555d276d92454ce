"""Which value of a facet a batch writes (catalog/ingest/extract.py `Rows.see_facets`): the newest event
time's, equal times settled by the greater digest, whatever order the events come in; a deleted facet
is written as deleted."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from typing import Any

import orjson

from catalog.ingest.extract import Rows

KEY = ("postgres://db:5432", "public.orders")
EARLY = dt.datetime(2026, 11, 1, 10, 0, tzinfo=dt.UTC)
LATE = EARLY + dt.timedelta(minutes=5)


def _digest(value: Any) -> bytes:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).digest()


def test_the_newest_wins_and_a_tie_goes_to_the_greater_digest_in_any_order() -> None:
    old, tied_a, tied_b = {"rows": 1}, {"rows": 2, "z": [1]}, {"rows": 3}
    winner = max((tied_a, tied_b), key=_digest)
    for order in itertools.permutations([(EARLY, old), (LATE, tied_a), (LATE, tied_b)]):
        rows = Rows()
        for at, value in order:
            rows.see_facets("dataset", KEY, {"stats": value}, at)
        seen = rows.facets[("dataset", KEY, "stats")]
        assert seen.at == LATE
        assert seen.encoded() == (_digest(winner), orjson.dumps(winner, option=orjson.OPT_SORT_KEYS).decode())


def test_an_older_value_never_replaces_a_newer_one() -> None:
    rows = Rows()
    rows.see_facets("job", KEY, {"sql": {"query": "new"}}, LATE)
    rows.see_facets("job", KEY, {"sql": {"query": "old"}}, EARLY)
    seen = rows.facets[("job", KEY, "sql")]
    assert (seen.at, seen.encoded()[1]) == (LATE, '{"query":"new"}')


def test_a_deleted_facet_is_written_as_deleted() -> None:
    rows = Rows()
    rows.see_facets("dataset", KEY, {"schema": {"_deleted": True}}, EARLY)
    assert rows.facets[("dataset", KEY, "schema")].encoded() == (hashlib.sha256(b"").digest(), None)
