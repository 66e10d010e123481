"""What the window says about indexing and empty results, without Qt: one place for the sentences, tested here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainer.progress import format_time_left

if TYPE_CHECKING:
    from explorer.app.analysis import IndexSummary
    from trainer.progress import Progress

RECALL_NEEDS_LABELS = "Recall@K needs a labelled folder: one sub-folder per class, two or more."
RECALL_HINT = "Recall@K per dimension appears here for a labelled folder (one sub-folder per class)."
INDEXING = "Indexing… the neighbours appear when it finishes."
NO_FOLDER = "Click here to choose a folder to search in (Ctrl+Shift+O)."
DROP_A_QUERY = "Drop a query image on the left, paste one (Ctrl+V), or click here to open one (Ctrl+O)."


def indexing_text(folder_name: str, progress: Progress, cancelling: bool) -> str:
    """The status strip's line for a run in progress.

    >>> from trainer.progress import Progress
    >>> indexing_text("birds", Progress(0, 0, 0.0, "scanning"), False)
    'Scanning the folder · 0 images found'
    >>> indexing_text("birds", Progress(10, 40, 5.0, "embedding"), True)
    'Cancelling… Embedding 10/40 · 5.0 images/s · 0:06 left'
    """
    prefix = "Cancelling… " if cancelling else ""
    if progress.total <= 0:
        return f"{prefix}Scanning the folder · {progress.done:,} images found"
    eta = format_time_left(progress.seconds_left)
    return f"{prefix}Embedding {progress.done:,}/{progress.total:,} · {progress.rate:.1f} images/s" + (
        f" · {eta}" if eta else ""
    )


def index_outcome_text(summary: IndexSummary) -> tuple[str, int]:
    """(status message, how long it stays in ms; 0: until replaced) for a finished run."""
    report = summary.report
    if summary.resumable:
        return (
            f"Indexing of {summary.folder.name} was cancelled last time: {summary.count:,} images searchable. "
            "Re-index (Ctrl+R) continues where it stopped.",
            0,
        )
    if report.cancelled:
        return f"Indexing cancelled: {summary.count:,} images searchable so far. Re-index (Ctrl+R) resumes.", 15000
    offline = ""
    if report.kept_offline:
        offline = f" {report.kept_offline:,} kept that cannot be seen now (is the drive connected?)."
    return (
        f"Indexed {summary.folder.name}: {report.embedded:,} new, {report.unchanged:,} unchanged, "
        f"{report.removed:,} removed, {len(report.skipped):,} skipped ({summary.seconds:.1f} s).{offline}",
        10000,
    )


def no_results_text(summary: IndexSummary | None) -> str:
    """Why a search found nothing: no picture of the folder could be indexed (and why), or there is no other."""
    if summary is not None and summary.count == 0:
        skipped = len(summary.report.skipped)
        if skipped:
            return f"No picture in this folder could be indexed: {skipped:,} files skipped (the list: Ctrl+K)."
        return "This folder holds no pictures (JPEG, PNG, HEIC, WebP, TIFF, BMP or GIF files)."
    return "The folder holds no other pictures than the query."
