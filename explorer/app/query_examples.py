"""A query refined by examples: "more like this" and "less like this" on the results, without Qt.

The query picture stays what it is; each example added from the results joins it (wanted) or is held against it
(not wanted), through explorer.engine.multi_query.combined_embedding. The examples themselves are pictures the
person has already seen, so they are never results: the search asks for as many more as there are examples, and
drops them from every ranking (the grid's, the binary one, each dimension's strip) and from the plots' top-k marks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from explorer.engine.multi_query import combined_embedding

if TYPE_CHECKING:
    from explorer.app.analysis import QueryOutcome
    from explorer.engine.search import Ranking
    from explorer.engine.session import RetrievalSession


@dataclass(frozen=True)
class Example:
    path: Path
    wanted: bool


def examples_label(label: str, examples: Sequence[Example]) -> str:
    """What the query area says under the query picture.

    >>> examples_label("bird.jpg", [Example(Path("a.jpg"), True), Example(Path("b.jpg"), False)])
    'bird.jpg + 1 more like it, 1 not'
    >>> examples_label("bird.jpg", [])
    'bird.jpg'
    """
    wanted = sum(e.wanted for e in examples)
    unwanted = len(examples) - wanted
    parts = [f"+ {wanted} more like it"] if wanted else []
    parts += [f"{unwanted} not" if wanted else f"but not like {unwanted}"] if unwanted else []
    return " ".join([label, ", ".join(parts)]) if parts else label


def _without(ranking: Ranking, rows: np.ndarray, dropped: set[Path], k: int) -> tuple[Ranking, np.ndarray]:
    keep = [i for i, r in enumerate(ranking.results) if r.path not in dropped][:k]
    results = [replace(ranking.results[i], rank=n + 1) for n, i in enumerate(keep)]
    kept_rows = rows[keep] if len(rows) == len(ranking.results) else rows
    return replace(ranking, results=results), kept_rows


def answer_with_examples(
    run: Callable[..., QueryOutcome],
    session: RetrievalSession,
    query: Any,
    examples: Sequence[Example],
    k: int,
    **kwargs: Any,
) -> QueryOutcome:
    """`run` (analysis.run_query or library_query.run_library_query, with their `kwargs`) asked with the query
    and its examples combined; the outcome keeps the query's own embedding (the window keeps it for the next
    search) and holds none of the examples."""
    main = query if isinstance(query, np.ndarray) else session.embed_query(query)
    combined = combined_embedding(
        [main, *[session.embed_query(e.path) for e in examples if e.wanted]],
        [session.embed_query(e.path) for e in examples if not e.wanted],
    )
    outcome = run(session, combined, k=k + len(examples), **kwargs)
    dropped = {e.path for e in examples}
    if outcome.float_ranking is not None:
        outcome.float_ranking, outcome.float_rows = _without(outcome.float_ranking, outcome.float_rows, dropped, k)
    if outcome.binary_ranking is not None:
        outcome.binary_ranking, outcome.binary_rows = _without(outcome.binary_ranking, outcome.binary_rows, dropped, k)
    full = next((s.ranking for s in outcome.strips if not s.binary and s.dim == session.card.dim), None)
    full_paths = {r.path for r in full.results[:k]} - dropped if full is not None else set()
    strips = []
    for strip in outcome.strips:
        ranking, _ = _without(strip.ranking, np.zeros(0, np.int64), dropped, k)
        shared = len({r.path for r in ranking.results} & full_paths)
        strips.append(replace(strip, ranking=ranking, overlap=shared, k=len(full_paths)))
    outcome.strips = strips
    outcome.embedding = main
    outcome.k = k
    return outcome
