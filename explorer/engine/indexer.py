"""Bring a folder's catalog up to date: scan, compare stamps, embed only what is new or changed."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from explorer.engine.catalog import Catalog, FileStamp, SkippedFile
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


def interleaved(paths: list[Path]) -> list[Path]:
    """The files in an order that takes one from each folder in turn, so that a run cancelled half-way has indexed
    a fair sample of every folder (in name order it had only the alphabetically first ones).

    >>> [p.as_posix() for p in interleaved([Path(x) for x in ["a/1", "a/2", "a/3", "b/1", "c/1", "c/2"]])]
    ['a/1', 'b/1', 'c/1', 'a/2', 'c/2', 'a/3']
    """
    by_folder: dict[Path, list[Path]] = {}
    for path in paths:
        by_folder.setdefault(path.parent, []).append(path)
    queues = [by_folder[folder] for folder in sorted(by_folder)]
    out: list[Path] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def update_catalog(
    folder: Path,
    catalog: Catalog,
    embedder: Embedder | Callable[[], Embedder],
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = never_cancelled,
    follow_outside: bool = False,
) -> IndexReport:
    """Embed new and changed files batch by batch (each batch committed on its own), drop deleted ones;
    `follow_outside` follows symlinks that lead out of `folder` (trainer.images.scan_images).

    Cancellation stops after the last finished batch was committed (`report.cancelled`), so a cancelled
    or killed run resumes where it stopped.
    """
    report = IndexReport(Path(folder))
    try:
        _sync(report, catalog, embedder, progress, cancel, follow_outside)
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
) -> None:
    folder = report.folder
    images, ignored = scan_images(folder, progress, cancel, follow_outside=follow_outside)
    report.scanned = len(images)
    known = catalog.stamps()
    known_skipped = catalog.skipped_stamps()

    todo: list[tuple[Path, FileStamp]] = []
    present: set[str] = set()
    unreadable: list[tuple[FileStamp, str]] = []
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
    if unreadable:
        catalog.commit_batch([], unreadable)

    stamp_of = {path: stamp for path, stamp in todo}
    if not todo:
        return  # nothing to embed: the model (torch and its weights, seconds) is never loaded
    model = embedder() if callable(embedder) else embedder
    for batch in model.embed_paths(interleaved([p for p, _ in todo]), progress, cancel):
        catalog.commit_batch(
            list(zip((stamp_of[p] for p in batch.paths), batch.embeddings, strict=True)),
            [(stamp_of[s.path], s.reason) for s in batch.skipped],
        )
        report.embedded += len(batch.paths)
