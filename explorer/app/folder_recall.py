"""Recall@K of a labelled folder, for the window: computed once per (folder, model), again when the folder changed.

Part of the window's rules (explorer.app.window_controller), kept apart because it has its own job and its own
state: the table (or why there is none) and the key it was computed for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from explorer.app.jobs import Executor, LatestJob, Reply, Task
from explorer.app.window_texts import RECALL_HINT, RECALL_NEEDS_LABELS

if TYPE_CHECKING:
    from explorer.app.analysis import IndexSummary, RecallTable
    from explorer.engine.session import RetrievalSession


class FolderRecall:
    """`changed(table, message, final)` hears every state: computing (with progress), the table, or why not."""

    def __init__(
        self,
        executor: Executor,
        folder_recall: Callable[..., RecallTable | None],
        changed: Callable[[RecallTable | None, str, bool], None],
    ) -> None:
        self.job = LatestJob(executor, "analysis")
        self.folder_recall = folder_recall
        self.changed = changed
        self.recall: tuple[RecallTable | None, str] = (None, "")
        self.key: tuple[str, str] | None = None

    def start(self, session: RetrievalSession, summary: IndexSummary) -> None:
        if not summary.labelled:
            self._set(None, RECALL_NEEDS_LABELS, final=True)
            return
        key = (str(summary.folder), session.fingerprint)
        if key == self.key and not summary.changed and self.recall[0] is not None:
            return
        folder, dims, recall = summary.folder, list(session.card.nested_dims), self.folder_recall

        def work(task: Task) -> Any:
            snapshot = session.collection(folder).snapshot
            return recall(
                snapshot.embeddings, snapshot.relpaths, dims, check=task.check,
                progress=lambda i, n: task.report((i, n)),
            )  # fmt: skip

        self.key = key
        self.job.start(
            "recall",
            work,
            Reply(
                done=lambda table: self._done(table, "" if table is not None else "The folder is not labelled."),
                failed=lambda message: self._done(None, f"Recall@K failed: {message}"),
                cancelled=lambda: self._done(None, "Recall@K was cancelled."),
                progress=lambda p: self._set(None, f"Computing Recall@K for this folder… ({p[0]}/{p[1]} dimensions)"),
            ),
        )
        self._set(None, "Computing Recall@K for this folder…")

    def forget(self) -> None:
        """Another folder: what was computed (or is being computed) belongs to the old one."""
        self.recall = (None, "")
        self.key = None
        self.job.forget()

    def model_changed(self) -> None:
        self.key = None

    def _done(self, table: RecallTable | None, message: str) -> None:
        if table is None:
            self.key = None
        self._set(table, message, final=True)

    def _set(self, table: RecallTable | None, message: str, final: bool = False) -> None:
        self.recall = (table, message)
        self.changed(*self.recall_or_reason(), final)

    def recall_or_reason(self) -> tuple[RecallTable | None, str]:
        table, message = self.recall
        return table, message if table is not None or message else RECALL_HINT
