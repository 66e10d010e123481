"""The window's rules for queries, without Qt: one query runs at a time, changes while it runs only mark it stale,
the latest state is searched when it ends, and an answer is shown only if nothing changed since it was asked.

The window used to keep these as generation counters patched onto its `Job` objects; here they are one object
that the window drives and that is tested without a display (tests/explorer/app/test_query_state.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueryTicket:
    """What a running query was asked with: the state's generation, the query image's, and the model session."""

    generation: int
    source_generation: int
    session: object


class QueryCoalescer:
    """
    >>> q = QueryCoalescer()
    >>> first = q.start(session="model")
    >>> q.start(session="model") is None  # one at a time: the change is remembered
    True
    >>> q.settings_changed()  # k or the dimension changed while it ran
    >>> q.is_current(first), q.end()  # its answer is stale, and the latest state must be searched
    (False, True)
    """

    def __init__(self) -> None:
        self.generation = 0  # bumped by every change that makes a shown answer stale
        self.source_generation = 0  # bumped when the query image itself changes
        self.running: QueryTicket | None = None
        self._dirty = False

    def source_changed(self) -> None:
        """A new query image: its embedding must be computed again, and every answer so far is stale."""
        self.source_generation += 1
        self.generation += 1

    def settings_changed(self) -> None:
        """k, the dimension, the folder or the model changed: the answer is stale, the embedding may not be."""
        self.generation += 1

    def start(self, session: object) -> QueryTicket | None:
        """The ticket of a query to run now, or None while one runs (it is searched again when that one ends)."""
        if self.running is not None:
            self._dirty = True
            return None
        self._dirty = False
        self.running = QueryTicket(self.generation, self.source_generation, session)
        return self.running

    def end(self) -> bool:
        """The running query ended (answered, failed or cancelled); True when the latest state must be searched."""
        self.running = None
        dirty, self._dirty = self._dirty, False
        return dirty

    def is_current(self, ticket: QueryTicket) -> bool:
        """Whether the ticket's answer is still the answer to what the window shows."""
        return ticket.generation == self.generation

    def same_image(self, ticket: QueryTicket, session: object | None = None) -> bool:
        """Whether the ticket was for the query image shown now (and, if given, the same model session): its
        embedding can be kept, and its failure is this image's."""
        return ticket.source_generation == self.source_generation and (session is None or ticket.session is session)
