"""The one query API the command line and the GUI call: a model, the folders it has indexed, queries.

The model is loaded on first use (importing torch and building the network takes seconds, and the window
must show before that); catalogs are opened per folder and kept.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image

from explorer import paths
from explorer.engine.cache import catalog_dir
from explorer.engine.catalog import WHAT_TO_DO, Catalog, CatalogDamaged, CatalogReadOnly, set_aside
from explorer.engine.index_lock import indexing_lock
from explorer.engine.indexer import IndexReport, update_catalog
from explorer.engine.search import Collection, Ranking
from explorer.engine.thumbnail_store import ThumbnailStore
from trainer.card import ModelCard, load_card, model_fingerprint
from trainer.progress import CancelCheck, ProgressCallback, never_cancelled

if TYPE_CHECKING:
    from explorer.engine.relocate import FoundCatalog
    from trainer.embedding_pipeline import Embedder


@dataclass(frozen=True)
class QueryResult:
    """A query's two rankings at one dimension, with the query embedding for plots and comparisons."""

    embedding: npt.NDArray[np.float32]
    float_ranking: Ranking
    binary_ranking: Ranking | None  # None at a dimension that is not a multiple of 8 (no binary codes there)
    excluded_row: int | None = None  # the query's own snapshot row, left out of the rankings (None: not the folder's)

    def ranking(self, binary: bool) -> Ranking:
        if not binary:
            return self.float_ranking
        if self.binary_ranking is None:
            raise ValueError(f"binary codes need a dimension divisible by 8, not {self.float_ranking.dim}")
        return self.binary_ranking


class RetrievalSession:
    def __init__(self, model_path: Path | None = None, device: str = "auto", batch_size: int | None = None) -> None:
        self.model_path = Path(model_path) if model_path else paths.BUNDLED_MODEL
        self.card: ModelCard = load_card(self.model_path)
        self.fingerprint = model_fingerprint(self.model_path)
        self.device = device
        self.batch_size = batch_size
        self._embedder: Embedder | None = None
        self.runtime = ""  # what runs the model, once it is loaded ("ONNX Runtime (CPU)", "torch (cpu)")
        self._collections: dict[Path, Collection] = {}
        self._thumbnails: dict[Path, ThumbnailStore] = {}
        self.notes: list[str] = []
        """What the session did on its own that a person should hear of (a damaged catalog set aside)."""
        self._lock = threading.RLock()

    @property
    def embedder(self) -> Embedder:
        """Built on first use (explorer.engine.runtime: ONNX Runtime where it can, else torch, whose import and
        weights are the slow part of start-up)."""
        with self._lock:
            if self._embedder is None:
                from explorer.engine.runtime import load_embedder

                embedder, self.runtime, note = load_embedder(
                    self.model_path, self.card, self.fingerprint, self.device, self.batch_size
                )
                if note:
                    self.notes.append(note)
                self._embedder = embedder
            return self._embedder

    # -- folders ----------------------------------------------------------------------------------------
    def catalog_path(self, folder: Path) -> Path:
        return catalog_dir(folder, self.fingerprint) / "catalog.sqlite"

    def thumbnails(self, folder: Path) -> ThumbnailStore:
        """The folder's thumbnails, made while it is indexed (explorer.engine.thumbnail_store); one per folder."""
        folder = Path(folder).resolve()
        with self._lock:
            if folder not in self._thumbnails:
                self._thumbnails[folder] = ThumbnailStore(folder)
            return self._thumbnails[folder]

    def stored_thumbnail(self, path: Path) -> bytes | None:
        """The JPEG thumbnail made when this picture was indexed, if one of the session's folders holds it as it is
        now (views call this from their decoding threads; None: decode the file)."""
        path = Path(path)
        with self._lock:
            folders = [f for f in self._collections if path.is_relative_to(f)]
        if not folders:
            return None
        return self.thumbnails(max(folders, key=lambda f: len(f.parts))).lookup(path)

    def is_indexed(self, folder: Path) -> bool:
        """True once an indexing run has committed something (a cancelled run's partial catalog counts)."""
        meta = self.catalog_meta(folder)
        return "updated" in meta or "completed" in meta

    def catalog_meta(self, folder: Path) -> dict[str, str]:
        """The folder's catalog metadata, read without creating a catalog (empty when there is none): from the open
        catalog when the folder's collection is open (a library query asks for every folder, many times a query),
        else from the file."""
        folder = Path(folder).resolve()
        with self._lock:
            open_collection = self._collections.get(folder)
        if open_collection is not None:
            with contextlib.suppress(sqlite3.Error):
                return open_collection.catalog.meta()
        return Catalog.peek_meta(self.catalog_path(folder))

    def indexed_count(self, folder: Path) -> int:
        """Images in the folder's catalog, read without creating one (offline folders too)."""
        return Catalog.peek_count(self.catalog_path(Path(folder).resolve()))

    def last_run_cancelled(self, folder: Path) -> bool:
        """Whether the folder's last indexing run was cancelled (read without opening the catalog for writing)."""
        return Catalog.peek_meta(self.catalog_path(Path(folder).resolve())).get("last_run") == "cancelled"

    def is_damaged(self, folder: Path) -> bool:
        """The folder's catalog exists but is damaged: `index` sets it aside and rebuilds it."""
        return Catalog.is_damaged(self.catalog_path(Path(folder).resolve()))

    def note(self, text: str) -> None:
        """Something the user should hear once (the CLI prints these, the window shows them)."""
        if text not in self.notes:
            self.notes.append(text)

    def _catalog(self, folder: Path) -> Catalog:
        meta = {"folder": str(folder), "model": self.card.name, "model_fingerprint": self.fingerprint}
        path = self.catalog_path(folder)
        try:
            catalog = Catalog(path, self.card.dim, meta)
        except CatalogDamaged as exc:
            try:
                moved = set_aside(path)
            except OSError as failed:
                raise CatalogReadOnly(
                    f"{exc}, and the cache folder cannot be written to set it aside: {failed}"
                ) from exc
            self.note(f"{exc}; it was set aside as {moved.name} and the folder is indexed again")
            catalog = Catalog(path, self.card.dim, meta)
        if catalog.read_only_reason is not None:
            self.note(f"{catalog.read_only_reason}: searching what is already indexed, nothing new is saved")
        return catalog

    def collection(self, folder: Path) -> Collection:
        """The folder's collection as last indexed (empty if never indexed)."""
        folder = Path(folder).resolve()
        with self._lock:
            if folder not in self._collections:
                self._collections[folder] = Collection(folder, self._catalog(folder), note=self.note)
            return self._collections[folder]

    def index(
        self,
        folder: Path,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck = never_cancelled,
        follow_outside: bool = False,
        on_wait: Callable[[str], None] | None = None,
    ) -> IndexReport:
        """Embed what is new or changed in `folder`, then refresh its collection and indexes. One run per folder at a
        time across processes: a second one waits (`on_wait` hears why; the session's notes otherwise)."""
        on_wait = on_wait or self.note
        folder = Path(folder).resolve()
        if not folder.is_dir():
            raise NotADirectoryError(f"not a folder: {folder}")
        self.find_again(folder)
        collection = self.collection(folder)
        if collection.catalog.read_only_reason is not None:
            raise CatalogReadOnly(f"{collection.catalog.read_only_reason}: cannot index now; {WHAT_TO_DO}")
        lock = collection.catalog.path.with_name("index.lock")
        with indexing_lock(lock, on_wait=on_wait, cancel=cancel):  # another process indexing it: wait, say so
            # the model is loaded only when something needs embedding: an unchanged folder answers in a moment
            report = update_catalog(
                folder, collection.catalog, lambda: self.embedder, progress, cancel, follow_outside,
                self.thumbnails(folder),
            )  # fmt: skip
            collection.reload()
            # Read now, which writes the contiguous copy of the vectors (explorer.engine.vector_store) that the
            # next query maps instead of reading SQLite.
            _ = collection.snapshot
            now = time.strftime("%Y-%m-%d %H:%M:%S")
            if report.cancelled:  # remembered, so that the next launch offers to continue instead of starting
                collection.catalog.set_meta({"last_run": "cancelled", "cancelled": now})
            else:
                collection.catalog.set_meta({"last_run": "completed", "completed": now})
                collection.prepare(self.card.nested_dims, progress, cancel)
        return report

    def find_again(self, folder: Path) -> FoundCatalog | None:
        """A folder not indexed yet whose photos were indexed under another path (renamed, moved, another drive
        letter) gets that index (explorer.engine.relocate): only what changed is embedded. Returns what was found."""
        from explorer.engine.relocate import adopt_catalog, find_moved_catalog

        folder = Path(folder).resolve()
        if self.is_indexed(folder) or not folder.is_dir():
            return None
        found = find_moved_catalog(folder, self.fingerprint)
        if found is None:
            return None
        with self._lock:
            stale = self._collections.pop(folder, None)
            if stale is not None:
                stale.catalog.close()
            try:
                adopt_catalog(found, folder, self.fingerprint)
            except (OSError, sqlite3.Error) as exc:
                self.note(f"the index of {found.old_folder} could not be reused here ({exc}); indexing from scratch")
                return None
        where = "still there" if found.old_folder_online else "no longer there"
        self.note(
            f"found this folder's photos indexed as {found.old_folder} ({where}; {found.matched} of "
            f"{found.sampled} sampled files alike): that index was copied, only changes are embedded"
        )
        return found

    # -- queries ----------------------------------------------------------------------------------------
    def embed_query(self, image: Path | Image.Image) -> npt.NDArray[np.float32]:
        """Raises trainer.images.ImageLoadError with the reason when the file cannot be read."""
        if isinstance(image, Image.Image):
            return self.embedder.embed_image(image)
        return self.embedder.embed_file(Path(image))

    def query(
        self,
        image: Path | Image.Image | npt.NDArray[np.float32],
        folder: Path,
        k: int = 20,
        dim: int | None = None,
        exclude: Path | None = None,
        expand: int = 0,
    ) -> QueryResult:
        """Both rankings (float, and binary at a dimension divisible by 8) of the folder for one query image or
        embedding. A query that is itself one of the folder's images (or `exclude`) is not its own first result.
        `expand`: rank by query expansion with that many nearest (explorer.engine.search.Collection.search)."""
        collection = self.collection(folder)
        own = collection.row_of(exclude if exclude is not None else image if isinstance(image, Path) else None)
        if isinstance(image, np.ndarray):
            emb = image
        elif isinstance(image, Path) and (stored := self.stored_embedding(image, folder)) is not None:
            emb = stored  # already embedded: no model to load (seconds saved)
        else:
            emb = self.embed_query(image)
        if not np.isfinite(emb).all():
            raise ValueError("the query's embedding is not a number: the model or the image is damaged")
        d = collection.check_dim(dim)
        return QueryResult(
            emb,
            collection.search(emb, k, d, binary=False, exclude_row=own, expand=expand),
            collection.search(emb, k, d, binary=True, exclude_row=own, expand=expand) if d % 8 == 0 else None,
            own,
        )

    def stored_embedding(self, image: Path, folder: Path) -> npt.NDArray[np.float32] | None:
        """The embedding `folder`'s catalog holds for `image`, when the file is unchanged since it was indexed."""
        collection = self.collection(folder)
        row = collection.row_of(image)
        if row is None or not self._unchanged_since_indexed(collection, row, image):
            return None
        return collection.snapshot.embeddings[row]

    @staticmethod
    def _unchanged_since_indexed(collection: Collection, row: int, path: Path) -> bool:
        stamp = collection.catalog.stamp_of(collection.snapshot.relpaths[row])
        try:
            st = Path(path).stat()
        except OSError:
            return False
        return stamp is not None and (stamp.size, stamp.mtime_ns) == (st.st_size, st.st_mtime_ns)

    def close(self) -> None:
        with self._lock:
            for c in self._collections.values():
                c.catalog.close()
            self._collections.clear()
