"""The propagation search on small graphs, without a database: cycles, masking, rejects, tie-breaks."""

from __future__ import annotations

from catalog.classification.propagate import MAX_DEPTH, _Walk, shortest_walks

NAMES = {i: f"ns/ds{i}#f" for i in range(1, 40)}


def seed(field: int, tag: str = "PII.CPF") -> tuple[tuple[int, str, bool], _Walk]:
    return (field, tag, False), _Walk(0, (NAMES[field],), (field,), "personal_identifier", 0.97)


def test_a_cycle_terminates_and_each_field_keeps_its_shortest_path() -> None:
    # 1 -> 2 -> 3 -> 1, and 1 -> 3 directly
    edges = [(1, 2, False), (2, 3, False), (3, 1, False), (1, 3, False)]
    rows = shortest_walks(region={1, 2, 3}, edges=edges, starts=[seed(1)], rejected=set(), names=NAMES)
    assert {state: walk.path for state, walk in rows.items()} == {
        (2, "PII.CPF", False): (1, 2),
        (3, "PII.CPF", False): (1, 3),
    }  # the seed itself gets no row: every way back to it enters it twice


def test_masking_makes_a_separate_state_and_sticks_downstream() -> None:
    edges = [(1, 2, True), (2, 3, False), (1, 3, False)]
    rows = shortest_walks(region={2, 3}, edges=edges, starts=[seed(1)], rejected=set(), names=NAMES)
    assert {(s, w.depth) for s, w in rows.items()} == {
        ((2, "PII.CPF", True), 1),
        ((3, "PII.CPF", True), 2),
        ((3, "PII.CPF", False), 1),
    }


def test_a_reject_is_a_barrier_and_ties_break_by_names() -> None:
    edges = [(1, 2, False), (2, 4, False), (1, 3, False), (3, 4, False)]
    rows = shortest_walks(region={2, 3, 4}, edges=edges, starts=[seed(1)], rejected=set(), names=NAMES)
    assert rows[(4, "PII.CPF", False)].path == (1, 2, 4)  # "ns/ds2#f" < "ns/ds3#f"
    rows = shortest_walks(
        region={2, 3, 4}, edges=edges, starts=[seed(1)], rejected={(2, "PII.CPF")}, names=NAMES
    )
    assert rows[(4, "PII.CPF", False)].path == (1, 3, 4)
    assert (2, "PII.CPF", False) not in rows


def test_depth_is_capped() -> None:
    edges = [(i, i + 1, False) for i in range(1, 39)]
    rows = shortest_walks(
        region=set(range(2, 40)), edges=edges, starts=[seed(1)], rejected=set(), names=NAMES
    )
    assert max(w.depth for w in rows.values()) == MAX_DEPTH
