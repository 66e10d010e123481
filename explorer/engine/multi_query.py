"""A query made of several pictures: examples of what is wanted and of what is not, and a distance cut-off.

One photo is a narrow question ("like this one"); three photos of the same bird are a better one ("this bird"), and
a photo of the feeder it sits on says what to leave out. The positives' unit embeddings are averaged (the centre of
what they share) and the negatives' mean is subtracted at half weight (Rocchio's relevance feedback weighs negatives
lower than positives: a full subtraction of a near-duplicate negative would leave mostly noise). The result is an
ordinary query embedding: every index, dimension and ranking takes it as it is.

A cut-off lets a ranking say "nothing here is close" instead of always filling k places.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from explorer.engine.search import SearchResult

NEGATIVE_WEIGHT = 0.5


def _unit(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def combined_embedding(
    positives: Sequence[npt.NDArray[np.float32]], negatives: Sequence[npt.NDArray[np.float32]] = ()
) -> npt.NDArray[np.float32]:
    """The mean of the positives' unit embeddings minus half the mean of the negatives'.

    Two wanted pictures at right angles give their bisector; a negative along the second pulls the query back
    towards the first:

    >>> combined_embedding([np.array([1.0, 0.0]), np.array([0.0, 1.0])]).tolist()
    [0.5, 0.5]
    >>> combined_embedding([np.array([1.0, 0.0]), np.array([0.0, 2.0])], [np.array([0.0, 3.0])]).tolist()
    [0.5, 0.0]
    """
    if not positives:
        raise ValueError("a query needs at least one picture of what is wanted")
    query = _unit(np.stack(positives)).mean(axis=0)
    if negatives:
        query = query - NEGATIVE_WEIGHT * _unit(np.stack(negatives)).mean(axis=0)
    if not np.any(query):
        raise ValueError("the pictures wanted and not wanted cancel out: leave out a picture that is in both lists")
    return query.astype(np.float32)


def within(results: Sequence[SearchResult], max_distance: float | None, binary: bool) -> list[SearchResult]:
    """The results no farther than `max_distance` (cosine distance, or Hamming bits when `binary`), ranks kept."""
    if max_distance is None:
        return list(results)
    return [r for r in results if (r.hamming_distance if binary else r.cosine_distance) <= max_distance]
