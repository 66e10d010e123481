"""Bring a folder's catalog up to date: scan, compare stamps, embed only what is new or changed."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.engine.catalog import Catalog, FileStamp, SkippedFile
from explorer.engine.thumbnail_store import ThumbnailStore, thumbnail_jpeg
from trainer.images import LISTING_STOPPED, Skipped, scan_images
from trainer.progress import CancelCheck, Cancelled, ProgressCallback, never_cancelled

if TYPE_CHECKING:
    from trainer.embedding_pipeline import Embedder


@dataclass
class IndexReport:
    folder: Path
    scanned: int = 0
    embedded: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    """Every file of the folder that is not in the catalog, with its reason (new and remembered ones)."""
    cancelled: bool = False
    kept_offline: int = 0
    """Indexed images kept although not seen: their folder cannot be read now, or the whole folder is empty
    (an unplugged drive's mount point). They are removed only once their folder is readable and they are gone."""

    @property
    def indexed(self) -> int:
        return self.embedded + self.unchanged + self.kept_offline


def _relpath(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


ALL: list[str] = ["<the whole folder>"]


def _offline(folder: Path, images: list[Path], ignored: list[Skipped]) -> list[str]:
    """Relative prefixes whose files must be kept though unseen: folders that could not be read, or ALL when the
    folder holds nothing at all (a drive unplugged from its mount point looks exactly like that) or its listing
    stopped at the scan's ceiling."""
    if not images and not ignored and not any(os.scandir(folder)):
        return ALL
    if any(item.reason.startswith(LISTING_STOPPED) for item in ignored):  # an incomplete listing proves no absence
        return ALL
    prefixes = []
    for item in ignored:
        if item.reason.startswith("cannot read folder"):
            rel = _relpath(item.path, folder) if item.path != folder else ""
            prefixes.append(f"{rel}/" if rel else "")
    return prefixes


READ_RUN = 32
"""Files read one after another from one folder before the next folder's turn (the indexer uses one batch of the
model: a batch is decoded together)."""


def read_order(paths: list[Path], inodes: dict[Path, int] | None = None, run: int = READ_RUN) -> list[Path]:
    """The files in the order they are read: each folder's files in inode order, and the folders taking turns by
    runs of `run` files.

    Runs of neighbouring files suit spinning disks and network shares (a file system lays out a folder's files
    roughly in inode order; one file from each folder in turn made a disk seek between every two files), and the
    turns keep what the previous order was for: a run cancelled half-way has indexed a fair sample of every folder
    (in name order it had only the alphabetically first ones).

    >>> names = ["a/1", "a/2", "a/3", "b/1", "c/1", "c/2"]
    >>> [p.as_posix() for p in read_order([Path(x) for x in names], run=2)]
    ['a/1', 'a/2', 'b/1', 'c/1', 'c/2', 'a/3']
    >>> inodes = {Path("a/1"): 30, Path("a/2"): 10, Path("a/3"): 20}
    >>> [p.as_posix() for p in read_order([Path(x) for x in names[:3]], inodes)]
    ['a/2', 'a/3', 'a/1']
    """
    by_folder: dict[Path, list[Path]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, []).append(path)
    queues = [sorted(by_folder[f], key=lambda p: (inodes or {}).get(p, 0)) for f in sorted(by_folder)]
    out: list[Path] = []
    for start in range(0, max((len(q) for q in queues), default=0), run):
        for queue in queues:
            out.extend(queue[start : start + run])
    return out


def update_catalog(
    folder: Path,
    catalog: Catalog,
    embedder: Embedder | Callable[[], Embedder],
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = never_cancelled,
    follow_outside: bool = False,
    thumbnails: ThumbnailStore | None = None,
) -> IndexReport:
    """Embed new and changed files batch by batch (each batch committed on its own), drop deleted ones;
    `follow_outside` follows symlinks that lead out of `folder` (trainer.images.scan_images); `thumbnails` keeps a
    thumbnail of each embedded picture, made from the decode the model needed.

    Cancellation stops after the last finished batch was committed (`report.cancelled`), so a cancelled
    or killed run resumes where it stopped.
    """
    report = IndexReport(Path(folder))
    try:
        _sync(report, catalog, embedder, progress, cancel, follow_outside, thumbnails)
    except Cancelled:  # during the scan (nothing changed yet) or between two committed batches
        report.cancelled = True
    finally:
        report.skipped = catalog.skipped()
    return report


def _sync(
    report: IndexReport,
    catalog: Catalog,
    embedder: Embedder | Callable[[], Embedder],
    progress: ProgressCallback | None,
    cancel: CancelCheck,
    follow_outside: bool = False,
    thumbnails: ThumbnailStore | None = None,
) -> None:
    folder = report.folder
    images, ignored = scan_images(folder, progress, cancel, follow_outside=follow_outside)
    report.scanned = len(images)
    known = catalog.stamps()
    known_skipped = catalog.skipped_stamps()

    todo: list[tuple[Path, FileStamp]] = []
    present: set[str] = set()
    unreadable: list[tuple[FileStamp, str]] = []
    inodes: dict[Path, int] = {}
    for path in images:
        rel = _relpath(path, folder)
        present.add(rel)
        try:
            st = os.stat(path)
        except OSError as exc:
            unreadable.append((FileStamp(rel, 0, 0), f"cannot stat: {exc.strerror or exc}"))
            continue
        stamp = FileStamp(rel, st.st_size, st.st_mtime_ns)
        if known.get(rel) == stamp:
            report.unchanged += 1
        elif known_skipped.get(rel) == stamp:
            continue  # remembered failure, file unchanged: do not retry
        else:
            todo.append((path, stamp))
            inodes[path] = st.st_ino
    for item in ignored:
        present.add(_relpath(item.path, folder))
        unreadable.append((FileStamp(_relpath(item.path, folder), 0, 0), item.reason))

    gone = (set(known) | set(known_skipped)) - present
    offline = _offline(folder, images, ignored)
    kept = {rel for rel in gone if offline is ALL or any(rel.startswith(prefix) for prefix in offline)}
    report.kept_offline = len(kept & set(known))
    gone -= kept
    report.removed = len(set(known) & gone)
    if gone:
        catalog.remove(sorted(gone))
        if thumbnails is not None:
            thumbnails.remove(gone)
    if unreadable:
        catalog.commit_batch([], unreadable)

    stamp_of = {path: stamp for path, stamp in todo}
    if not todo:
        return  # nothing to embed: the model (torch and its weights, seconds) is never loaded
    model = embedder() if callable(embedder) else embedder
    thumbnailer = (lambda picture: thumbnail_jpeg(picture, thumbnails.size)) if thumbnails is not None else None
    order = read_order([p for p, _ in todo], inodes, model.batch_size)
    for batch in model.embed_paths(order, progress, cancel, thumbnailer):
        stamps = [stamp_of[p] for p in batch.paths]
        catalog.commit_batch(
            list(zip(stamps, batch.embeddings, strict=True)), [(stamp_of[s.path], s.reason) for s in batch.skipped]
        )
        if thumbnails is not None:
            thumbnails.put_many(
                (st.relpath, st.size, st.mtime_ns, jpeg) for st, jpeg in zip(stamps, batch.thumbnails, strict=True)
            )
        report.embedded += len(batch.paths)
