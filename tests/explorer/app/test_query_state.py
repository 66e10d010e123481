"""The window's query rules, tested without a display: one at a time, coalesced, stale answers never shown."""

from __future__ import annotations

from explorer.app.query_state import QueryCoalescer


def test_changes_while_a_query_runs_are_searched_once_when_it_ends() -> None:
    q = QueryCoalescer()
    first = q.start("model")
    assert first is not None
    for _ in range(3):  # k changed three times while it ran
        q.settings_changed()
        assert q.start("model") is None
    assert not q.is_current(first)  # its answer is not shown
    assert q.same_image(first, "model")  # but its embedding is kept: the image did not change
    assert q.end() is True  # one more search, with the latest state
    second = q.start("model")
    assert second is not None and q.is_current(second)
    assert q.end() is False  # nothing changed meanwhile: done


def test_a_new_image_or_model_makes_an_answer_and_its_embedding_stale() -> None:
    q = QueryCoalescer()
    ticket = q.start("model A")
    assert ticket is not None
    q.source_changed()
    assert not q.is_current(ticket) and not q.same_image(ticket)
    q.end()
    ticket = q.start("model A")
    assert ticket is not None
    assert not q.same_image(ticket, "model B")  # answered by another model: its embedding is not kept
