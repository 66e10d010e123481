"""The window's rules, without a display: a recording view, fake engine calls, jobs run when the test says so."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from recording_view import RecordingView

from explorer.app.analysis import IndexSummary
from explorer.app.jobs import InlineExecutor, Task
from explorer.app.window_controller import INDEXING, Engine, WindowController
from explorer.app.window_texts import RECALL_NEEDS_LABELS


def fake_session(name: str = "model", cancelled_last_time: bool = False) -> Any:
    snapshot = SimpleNamespace(embeddings=None, relpaths=[])
    return SimpleNamespace(
        card=SimpleNamespace(nested_dims=[8, 16], dim=16, name=name),
        fingerprint=name,
        last_run_cancelled=lambda folder: cancelled_last_time,
        collection=lambda folder: SimpleNamespace(snapshot=snapshot),
    )


def summary(
    folder: Path, labelled: bool = True, cancelled: bool = False, resumable: bool = False, embedded: int = 3
) -> IndexSummary:
    report = SimpleNamespace(cancelled=cancelled, embedded=embedded, removed=0, unchanged=0, skipped=[], kept_offline=0)
    return IndexSummary(folder, report, 3, labelled, 0.1, resumable)


class FakeEngine:
    def __init__(self) -> None:
        self.indexed: list[Path] = []
        self.opened: list[Path] = []
        self.queries: list[dict[str, Any]] = []
        self.recalls = 0
        self.fail_query: str | None = None
        self.embedded = 3  # what each run reports as new

    def index_folder(self, session: Any, folder: Path, progress: Any, cancel: Any) -> IndexSummary:
        self.indexed.append(folder)
        return summary(folder, cancelled=cancel(), embedded=self.embedded)

    def searchable_now(self, session: Any, folder: Path) -> IndexSummary:
        self.opened.append(folder)
        return summary(folder, cancelled=True, resumable=True)

    def run_query(self, session: Any, query: Any, folder: Path | None, k: int, dim: int | None, label: str,
                  check: Any, query_path: Path | None, expand: int = 0) -> Any:  # fmt: skip
        self.queries.append({"query": query, "folder": folder, "k": k, "dim": dim, "label": label, "expand": expand})
        if self.fail_query is not None and query == self.fail_query:
            raise OSError(f"{query} is not a picture")
        return SimpleNamespace(embedding=f"embedding of {query}", folder=folder, k=k, label=label)

    def folder_recall(self, embeddings: Any, relpaths: Any, dims: Any, check: Any, progress: Any) -> Any:
        self.recalls += 1
        return {"R@1": 1.0}

    def as_engine(self) -> Engine:
        return Engine(self.index_folder, self.searchable_now, self.run_query, self.folder_recall)


@pytest.fixture
def parts() -> tuple[WindowController, RecordingView, InlineExecutor, FakeEngine]:
    view, executor, engine = RecordingView(), InlineExecutor(), FakeEngine()
    sessions = iter([fake_session("first"), fake_session("second")])

    def load(_path: Path | None) -> Any:
        return next(sessions)

    controller = WindowController(view, executor, load, engine.as_engine())  # type: ignore[arg-type]
    return controller, view, executor, engine


def test_a_folder_chosen_before_the_model_is_indexed_once_it_is_loaded_and_its_recall_computed_once(
    parts: tuple[WindowController, RecordingView, InlineExecutor, FakeEngine], tmp_path: Path
) -> None:
    controller, view, executor, engine = parts
    controller.open_folder(tmp_path)
    assert view.named("indexing_progress")[-1] == ("Loading the model…", None) and engine.indexed == []
    controller.start_session()
    executor.run()
    assert engine.indexed == [tmp_path] and controller.summary is not None and not controller.indexing
    assert engine.recalls == 1 and view.named("recall_changed")[-1] == ({"R@1": 1.0}, "", True)
    engine.embedded = 0
    controller.reindex()  # nothing changed: Recall@K is not computed again
    executor.run()
    assert engine.indexed == [tmp_path, tmp_path] and engine.recalls == 1
    engine.embedded = 2
    controller.reindex()  # new pictures: it is
    executor.run()
    assert engine.recalls == 2


def test_only_the_latest_folder_is_shown_and_a_switch_during_a_run_indexes_the_new_folder(
    parts: tuple[WindowController, RecordingView, InlineExecutor, FakeEngine], tmp_path: Path
) -> None:
    controller, view, executor, engine = parts
    controller.start_session()
    executor.run()
    first, second = tmp_path / "a", tmp_path / "b"
    controller.open_folder(first)
    controller.open_folder(second)  # while the first run is queued: it is cancelled, then the second one runs
    executor.run()
    shown = [args[0].folder for args in view.named("index_finished")]
    assert shown == [second] and engine.indexed == [first, second] and controller.summary.folder == second  # type: ignore[union-attr]


def test_cancel_while_the_model_loads_starts_no_run(
    parts: tuple[WindowController, RecordingView, InlineExecutor, FakeEngine], tmp_path: Path
) -> None:
    controller, view, executor, engine = parts
    controller.open_folder(tmp_path)
    controller.start_session()
    controller.cancel()
    executor.run()
    assert engine.indexed == [] and "Indexing will not start" in view.named("status")[-1][0]
    controller.reindex()
    executor.run()
    assert engine.indexed == [tmp_path]


def test_a_query_embeds_while_the_folder_indexes_and_searches_when_it_is_settled(
    parts: tuple[WindowController, RecordingView, InlineExecutor, FakeEngine], tmp_path: Path
) -> None:
    controller, view, executor, engine = parts
    controller.start_session()
    executor.run(1)
    controller.open_folder(tmp_path)
    controller.set_query(Path("q.jpg"), "q.jpg")
    assert (INDEXING,) in view.named("placeholder")
    executor.run()
    assert [q["folder"] for q in engine.queries] == [None, tmp_path]  # embedded first, searched once indexed
    assert engine.queries[1]["query"] == "embedding of q.jpg"  # the kept embedding: the model is not run again


def test_changes_while_a_query_runs_are_searched_once_with_the_latest_state(
    parts: tuple[WindowController, RecordingView, InlineExecutor, FakeEngine], tmp_path: Path
) -> None:
    controller, view, executor, engine = parts
    controller.start_session()
    controller.open_folder(tmp_path)
    executor.run()
    controller.set_query(Path("q.jpg"), "q.jpg")
    for k in (11, 12, 13):
        controller.set_k(k)  # the first query is still running: these only mark it stale
    executor.run()
    assert [q["k"] for q in engine.queries] == [10, 13]
    answered = view.named("query_answered")
    assert len(answered) == 1 and answered[0][0].k == 13  # the stale answer (k=10) was never shown


def test_query_expansion_is_asked_for_and_searched_again(
    parts: tuple[WindowController, RecordingView, InlineExecutor, FakeEngine], tmp_path: Path
) -> None:
    controller, _view, executor, engine = parts
    controller.start_session()
    controller.open_folder(tmp_path)
    executor.run()
    controller.set_query(Path("q.jpg"), "q.jpg")
    executor.run()
    controller.set_expand(True)
    executor.run()
    controller.set_expand(False)
    executor.run()
    assert [q["expand"] for q in engine.queries] == [0, 2, 0]


def test_a_query_that_cannot_be_used_leaves_the_previous_results(
    parts: tuple[WindowController, RecordingView, InlineExecutor, FakeEngine], tmp_path: Path
) -> None:
    controller, view, executor, engine = parts
    controller.start_session()
    controller.open_folder(tmp_path)
    controller.set_query(Path("good.jpg"), "good.jpg")
    executor.run()
    shown = controller.outcome
    engine.fail_query = "notes.txt"
    controller.set_query("notes.txt", "notes.txt")
    executor.run()
    assert view.named("query_failed")[-1] == ("notes.txt", "notes.txt is not a picture", True)
    assert controller.outcome is shown and controller.source == Path("good.jpg")


def test_a_folder_cancelled_last_time_is_offered_at_launch_not_indexed(tmp_path: Path) -> None:
    view, executor, engine = RecordingView(), InlineExecutor(), FakeEngine()
    controller = WindowController(
        view,  # type: ignore[arg-type]
        executor, lambda _p: fake_session(cancelled_last_time=True), engine.as_engine(),
    )  # fmt: skip
    controller.open_folder(tmp_path, at_launch=True)
    controller.start_session()
    executor.run()
    assert engine.indexed == [] and engine.opened == [tmp_path]
    message = view.named("index_finished")[-1][1]
    assert "was cancelled last time" in message and "Re-index (Ctrl+R) continues" in message


def test_an_unlabelled_folder_says_what_recall_needs(
    parts: tuple[WindowController, RecordingView, InlineExecutor, FakeEngine], tmp_path: Path
) -> None:
    controller, view, executor, engine = parts
    controller.start_session()
    executor.run()
    controller.start_recall(summary(tmp_path, labelled=False))
    assert view.named("recall_changed")[-1] == (None, RECALL_NEEDS_LABELS, True) and engine.recalls == 0


def test_a_model_that_cannot_load_falls_back_to_the_bundled_one(tmp_path: Path) -> None:
    view, executor = RecordingView(), InlineExecutor()
    loaded: list[Path | None] = []

    def load(path: Path | None) -> Any:
        loaded.append(path)
        if path is not None:
            raise OSError("damaged model file")
        return fake_session()

    controller = WindowController(view, executor, load, FakeEngine().as_engine())  # type: ignore[arg-type]
    controller.model_path = tmp_path / "mine"
    controller.start_session()
    executor.run()
    assert loaded == [tmp_path / "mine", None] and controller.model_path is None and controller.session is not None
    assert view.named("model_failed")[0] == ("damaged model file", tmp_path / "mine")


def test_work_that_stops_when_asked_answers_cancelled() -> None:
    from explorer.app.jobs import LatestJob, Reply

    executor, said = InlineExecutor(), []

    def work(task: Task) -> None:
        task.check()

    jobs = LatestJob(executor, "index")
    jobs.start("run", work, Reply(done=lambda _r: said.append("done"), cancelled=lambda: said.append("cancelled")))
    jobs.cancel()
    executor.run()
    assert said == ["cancelled"] and not jobs.running
