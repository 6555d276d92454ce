"""`catalog serve`'s banner says where the projector runs, at what priority, and that it yields to acceptance."""

from __future__ import annotations

from catalog.cli import _projector_placement
from catalog.config import Settings


def _settings(**given: object) -> Settings:
    # explicit: the suite's environment runs projectors on threads
    defaults = Settings(projector_process=True, projector_nice=10, projector_busy_share=0.25)
    return defaults.model_copy(update=given)


def test_the_banner_names_the_priority_and_the_share_it_folds_while_acceptance_is_busy() -> None:
    assert _projector_placement(_settings()) == (
        "in a process of its own (nice 10; a 25% share while its service process is CPU-bound accepting), "
        "folding the log behind the accepting path"
    )
    assert "(idle CPU priority; a 40% share" in _projector_placement(
        _settings(projector_idle=True, projector_busy_share=0.4)
    )
    assert _projector_placement(_settings(projector_nice=0)).startswith(
        "in a process of its own (a 25% share"
    )
    never = _projector_placement(_settings(projector_busy_share=1))
    assert never == "in a process of its own (nice 10), folding the log behind the accepting path"
    assert _projector_placement(_settings(projector_process=False)).startswith("on a thread")
