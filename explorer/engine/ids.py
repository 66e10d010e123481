"""Catalog row ids as the indexes take them: one check at the boundary, so the index internals can trust them."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def as_ids(ids: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Validate ids once at the boundary so the index internals can trust them."""
    a = np.asarray(ids)
    if a.ndim != 1:
        a = a.reshape(-1)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"ids must be integers, got {a.dtype}")
    out = a.astype(np.int64, copy=False)
    # hnswlib labels are unsigned (size_t); a negative catalog id would silently wrap around.
    if out.size and out.min() < 0:
        raise ValueError("ids must be non-negative")
    if out.size > 1 and (out[1:] > out[:-1]).all():  # sorted, so unique (a catalog's ids): no sort needed
        return out
    if np.unique(out).size != out.size:
        raise ValueError("ids must be unique within one call")
    return out
