"""One query across the folders of a library: each folder's ranking, merged into one.

Every folder of a library is indexed with the same model, so distances are comparable across folders and merging
the folders' top k by distance gives exactly the library's top k (each folder's own top k holds every result of the
library's top k that lies in it). Folders whose drive is away are searched too, from their catalogs in the cache:
their results say so (the picture cannot be opened until the drive is back), and folders never indexed are listed
apart instead of silently missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image

from explorer.engine.search import SearchResult

if TYPE_CHECKING:
    from explorer.engine.session import RetrievalSession


@dataclass(frozen=True)
class LibraryRanking:
    dim: int
    binary: bool
    results: list[SearchResult]  # `path` absolute; `relpath` from where the folders part (`shown_relpath`)
    folder_of: list[Path]  # the library folder of each result
    offline: list[Path]  # folders searched from their catalog while their drive is away
    not_indexed: list[Path]  # folders with nothing indexed yet: not searched


def shown_relpath(path: Path, folder: Path, folders: list[Path]) -> str:
    """What names a result among several folders: its path from where the library's folders part, so that two
    folders both called `Photos` (on two drives) are told apart; a single folder's results start with its name."""
    try:
        common = Path(os.path.commonpath([str(f) for f in folders])) if len(folders) > 1 else folder.parent
        return path.relative_to(common).as_posix()
    except ValueError:  # folders on different Windows drives have nothing in common
        return str(path)


def _query_embedding(
    session: RetrievalSession, image: Path | Image.Image | npt.NDArray[np.float32], folders: list[Path]
) -> npt.NDArray[np.float32]:
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, Path):
        for folder in folders:  # a picture of the library: its stored embedding, no model to load
            if image.resolve().is_relative_to(folder.resolve()):
                stored = session.stored_embedding(image, folder)
                if stored is not None:
                    return stored
    return session.embed_query(image)


def search_library(
    session: RetrievalSession,
    image: Path | Image.Image | npt.NDArray[np.float32],
    folders: list[Path],
    k: int = 20,
    dim: int | None = None,
    binary: bool = False,
    exclude: Path | None = None,
    expand: int = 0,
) -> LibraryRanking:
    """The `k` nearest pictures among all `folders` (float cosine, or Hamming then cosine when `binary`). A query
    that is a picture of the library (`image`, or `exclude` when an embedding is given) is not its own result."""
    folders = [Path(f) for f in folders]
    indexed = [f for f in folders if session.is_indexed(f)]
    d = dim or session.card.dim
    if binary and d % 8:
        raise ValueError(f"binary codes need a dimension divisible by 8, not {d}")
    emb = _query_embedding(session, image, indexed) if indexed else np.zeros(0, np.float32)
    merged: list[tuple[tuple[float, ...], SearchResult, Path]] = []
    exclude = image if isinstance(image, Path) else exclude
    for folder in indexed:
        ranking = session.query(emb, folder, k=k, dim=dim, exclude=exclude, expand=expand).ranking(binary)
        for r in ranking.results:
            key = (float(r.hamming_distance), r.cosine_distance) if binary else (r.cosine_distance,)
            merged.append((key, r, folder))
    merged.sort(key=lambda item: (item[0], str(item[1].path)))
    top = merged[:k]
    return LibraryRanking(
        dim=d,
        binary=binary,
        results=[
            replace(r, rank=i + 1, relpath=shown_relpath(r.path, folder, indexed))
            for i, (_key, r, folder) in enumerate(top)
        ],
        folder_of=[folder for _key, _r, folder in top],
        offline=[f for f in indexed if not f.is_dir()],
        not_indexed=[f for f in folders if f not in indexed],
    )
