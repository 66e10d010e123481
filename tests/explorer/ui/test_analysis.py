"""The float/binary plots and the dimension panel draw exactly the engine's numbers for the query."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.app.analysis import folder_labels, folder_recall
from trainer.metrics import evaluate

QUERY_TIMEOUT_MS = 60_000


@pytest.fixture
def queried(qtbot, make_window, index_in, image_folder):  # type: ignore[no-untyped-def]
    """A window with the labelled image folder indexed, one query answered, and the plot panels built."""
    window = make_window()
    with qtbot.waitSignal(window.recallFinished, timeout=120_000):
        index_in(window, image_folder)
    qtbot.waitUntil(lambda: window.plots is not None and window.dims is not None, timeout=60_000)
    window.k_spin.setValue(5)
    with qtbot.waitSignal(window.queryFinished, timeout=QUERY_TIMEOUT_MS, check_params_cb=lambda o: o.searched) as b:
        window.set_query_path(image_folder.joinpath(*QUERY))
    return window, b.args[0]


QUERY = ("b", "img_09.png")


def _without_query(collection, image_folder, cos, ham):  # type: ignore[no-untyped-def]
    """The engine's distances to every image but the query's own (one of the folder's images: not plotted)."""
    own = collection.row_of(image_folder.joinpath(*QUERY))
    ids = [i for j, i in enumerate(collection.snapshot.ids) if j != own]
    return np.delete(cos, own), np.delete(ham, own), ids


def test_scatter_and_curves_are_the_collections_distances(queried, ui_session, image_folder):  # type: ignore[no-untyped-def]
    window, outcome = queried
    collection = ui_session.collection(image_folder)
    cos, ham, ids = _without_query(collection, image_folder, *collection.all_distances(outcome.embedding, 1280))
    plots = window.plots

    x, y = plots.all_points.getData()
    np.testing.assert_allclose(x, cos, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(y, ham)

    result = ui_session.query(outcome.embedding, image_folder, k=5, exclude=image_folder.joinpath(*QUERY))
    float_rows = [ids.index(r.id) for r in result.float_ranking.results]
    binary_rows = [ids.index(r.id) for r in result.binary_ranking.results]
    fx, fy = plots.float_top.getData()
    np.testing.assert_allclose(fx, cos[float_rows], atol=1e-7)
    np.testing.assert_array_equal(fy, ham[float_rows])
    bx, by = plots.binary_top.getData()
    np.testing.assert_allclose(bx, cos[binary_rows], atol=1e-7)
    np.testing.assert_array_equal(by, ham[binary_rows])
    np.testing.assert_allclose(fx, [r.cosine_distance for r in result.float_ranking.results], atol=1e-6)
    np.testing.assert_array_equal(by, [r.hamming_distance for r in result.binary_ranking.results])

    _, cos_curve = plots.cos_curve.getOriginalDataset()  # getData() is what is on screen, clipped to the view
    _, ham_curve = plots.ham_curve.getOriginalDataset()
    np.testing.assert_allclose(cos_curve, np.sort(cos), atol=1e-7)
    np.testing.assert_array_equal(ham_curve, np.sort(ham))

    overlap = len({r.id for r in result.float_ranking.results} & {r.id for r in result.binary_ranking.results})
    assert plots.overlap == overlap
    assert f"{overlap} of 5" in plots.header.text()


def test_dimension_strips_are_the_engines_rankings_at_each_dimension(queried, ui_session, image_folder):  # type: ignore[no-untyped-def]
    window, outcome = queried
    collection = ui_session.collection(image_folder)
    card = ui_session.card
    assert window.dims.dims == card.nested_dims
    own = collection.row_of(image_folder.joinpath(*QUERY))
    full = {r.id for r in collection.search(outcome.embedding, 5, card.dim, binary=False, exclude_row=own).results}
    for d in card.nested_dims:
        for binary in (False, True):
            expected = collection.search(outcome.embedding, 5, d, binary=binary, exclude_row=own)
            strip = window.dims.strips[(d, binary)]
            assert [r.relpath for r in strip.model.results] == [r.relpath for r in expected.results]
            overlap = len(full & {r.id for r in expected.results})
            size = d // 8 if binary else 4 * d
            text = strip.caption.text()
            assert f"<b>{overlap}/5</b>" in text
            assert (f"{size} B/image" if size < 1024 else f"{size / 1024:g} KiB/image") in text


def test_changing_the_dimension_replots_at_that_dimension(qtbot, queried, ui_session, image_folder):  # type: ignore[no-untyped-def]
    window, outcome = queried
    with qtbot.waitSignal(window.queryFinished, timeout=QUERY_TIMEOUT_MS, check_params_cb=lambda o: o.dim == 128):
        window.dim_combo.setCurrentIndex(window.dim_combo.findData(128))
    collection = ui_session.collection(image_folder)
    cos, ham, _ = _without_query(collection, image_folder, *collection.all_distances(outcome.embedding, 128))
    x, y = window.plots.all_points.getData()
    np.testing.assert_allclose(x, cos, atol=1e-7)
    np.testing.assert_array_equal(y, ham)
    expected = ui_session.query(outcome.embedding, image_folder, k=5, dim=128, exclude=image_folder.joinpath(*QUERY))
    expected = expected.float_ranking
    assert [r.relpath for r in window.grid_model.results] == [r.relpath for r in expected.results]
    assert "128-d" in window.plots.header.text()


def test_recall_plot_is_the_folders_recall_per_dimension(queried, ui_session, image_folder):  # type: ignore[no-untyped-def]
    window, _ = queried
    snapshot = ui_session.collection(image_folder).snapshot
    labels = [r.split("/")[0] for r in snapshot.relpaths]
    expected = evaluate(snapshot.embeddings, labels, ui_session.card.nested_dims, ks=(1, 4), with_clustering=False)
    table = window.dims.recall
    assert table is not None and table.items == 12 and table.classes == 2
    for kind in ("float", "binary"):
        for k in (1, 4):
            want = [expected[kind][d][f"R@{k}"] for d in ui_session.card.nested_dims]
            x, y = window.dims.recall_curves[(kind, k)].getData()
            np.testing.assert_allclose(y, want)
            np.testing.assert_array_equal(x, np.arange(len(want)))
    ticks = window.dims.recall_plot.getPlotItem().getAxis("bottom")._tickLevels[0]
    assert [label for _, label in ticks] == [str(d) for d in ui_session.card.nested_dims]
    assert "12 images" in window.dims.recall_note.text() and "2 classes" in window.dims.recall_note.text()


def test_unlabelled_folder_explains_why_there_is_no_recall(qtbot, make_window, index_in, make_img, tmp_path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "flat"
    for i in range(4):
        make_img(folder / f"x{i}.png", seed=i, fmt="PNG")
    window = make_window()
    with qtbot.waitSignal(window.recallFinished, timeout=120_000) as blocker:
        index_in(window, folder)
    assert blocker.args[0] is None
    qtbot.waitUntil(lambda: window.dims is not None, timeout=60_000)
    assert window.dims.recall is None
    assert "sub-folder" in window.dims.recall_placeholder.text()


def test_huge_collections_scatter_a_fixed_sample() -> None:
    from explorer.app.analysis import scatter_sample

    assert list(scatter_sample(5, limit=10)) == [0, 1, 2, 3, 4]
    big = scatter_sample(1000, limit=100)
    assert len(big) == 100 and len(set(big)) == 100 and list(big) == sorted(big)
    assert list(big) == list(scatter_sample(1000, limit=100))  # the same points for every query


def test_folder_labels_and_sampled_recall() -> None:
    assert folder_labels(["a.jpg", "b.jpg"]) is None
    assert folder_labels(["x/1.jpg", "y/2.jpg"]) is None  # two classes, but nobody has a same-class neighbour
    found = folder_labels(["top.jpg", "x/1.jpg", "x/2.jpg", "y/3.jpg"])
    assert found is not None and list(found.rows) == [1, 2, 3] and found.classes == ["x", "y"]

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 16)).astype(np.float32)
    rel = [f"c{i % 3}/{i}.jpg" for i in range(30)]
    table = folder_recall(emb, rel, [8, 16], max_items=20)
    assert table is not None and table.items == 20 and table.sampled_from == 30
    full = folder_recall(emb, rel, [8, 16])
    expected = evaluate(emb, [r.split("/")[0] for r in rel], [8, 16], ks=(1, 4), with_clustering=False)
    assert full is not None and full.cosine[16][1] == expected["float"][16]["R@1"]
    assert full.binary[8][4] == expected["binary"][8]["R@4"]
