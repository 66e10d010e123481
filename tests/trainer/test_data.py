"""Labelled folders: scanning, refusals with reasons, class splits and the training dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.data import (
    VERIFY_STAGE,
    DatasetError,
    ImageDataset,
    LabelledFolder,
    collate_uint8,
    eval_transform,
    require_trainable,
    scan_labelled_folder,
    split_by_class,
    train_transform,
    trainability_problems,
)
from trainer.images import SCAN_STAGE
from trainer.progress import Cancelled, Progress


def make_image(path: Path, seed: int, size: tuple[int, int] = (48, 40)) -> Path:
    """A small deterministic picture (the conftest helper is not importable under --import-mode=importlib)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


def make_folder(root: Path, counts: dict[str, int]) -> Path:
    for c, (name, n) in enumerate(counts.items()):
        for i in range(n):
            make_image(root / name / f"img_{i:02d}.png", seed=100 * c + i)
    return root


# -- scanning -------------------------------------------------------------------------------------------


def test_scan_finds_sorted_classes_and_reports_what_it_leaves_out(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_image(root / "zebra" / "z1.png", 1)
    make_image(root / "zebra" / "z2.jpg", 2)
    make_image(root / "apple" / "a1.png", 3)
    make_image(root / "apple" / "deeper" / "a2.png", 4)  # deeper images count for their first-level class
    make_image(root / "mango" / "m1.png", 5)
    make_image(root / "mango" / "m2.png", 6)
    (root / "mango" / "broken.jpg").write_bytes(b"this is not a jpeg at all")
    (root / "apple" / "notes.txt").write_text("not a picture")
    make_image(root / "loose.png", 7)  # not inside any class folder
    (root / "empty").mkdir()

    folder = scan_labelled_folder(root)

    assert folder.classes == ["apple", "mango", "zebra"]  # sorted; the empty folder is no class
    by_name = {p.name: folder.classes[y] for p, y in folder.samples}
    assert by_name == {
        "a1.png": "apple",
        "a2.png": "apple",
        "m1.png": "mango",
        "m2.png": "mango",
        "z1.png": "zebra",
        "z2.jpg": "zebra",
    }
    assert folder.counts() == {"apple": 2, "mango": 2, "zebra": 2}
    assert folder.labels.tolist() == [y for _, y in folder.samples]
    assert folder.labels.dtype == np.int64

    reasons = {s.path.name: s.reason for s in folder.skipped}
    assert set(reasons) == {"broken.jpg", "notes.txt", "loose.png"}
    assert reasons["loose.png"] == "not in a class sub-folder"
    assert "not an image file type" in reasons["notes.txt"]
    assert reasons["broken.jpg"]  # a readable reason, whatever the decoder says
    assert all(p.name != "broken.jpg" for p, _ in folder.samples)
    assert trainability_problems(folder) == []
    require_trainable(folder)  # does not raise


def test_scan_without_verify_keeps_files_it_has_not_opened(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", {"a": 2, "b": 2})
    (root / "b" / "broken.png").write_bytes(b"garbage")
    assert len(scan_labelled_folder(root, verify=False).samples) == 5
    assert len(scan_labelled_folder(root, verify=True).samples) == 4


def test_the_check_reports_progress_and_can_be_cancelled(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "data", {"a": 50, "b": 50})
    seen: list[Progress] = []
    scan_labelled_folder(root, progress=seen.append)
    checking = [p for p in seen if p.stage == VERIFY_STAGE]
    scanning = [p for p in seen if p.stage == SCAN_STAGE]
    assert seen[: len(scanning)] == scanning and scanning[-1].done == 100  # the scan's count comes first
    assert [p.done for p in checking] == [64, 100] and {p.total for p in checking} == {100}

    def cancel_after_first_chunk() -> bool:
        return any(p.stage == VERIFY_STAGE for p in seen)

    seen.clear()
    with pytest.raises(Cancelled, match="after 64 of 100 images"):
        scan_labelled_folder(root, progress=seen.append, cancel=cancel_after_first_chunk)


def test_subset_relabels_to_the_given_classes(tmp_path: Path) -> None:
    folder = scan_labelled_folder(make_folder(tmp_path / "data", {"a": 1, "b": 2, "c": 3}))
    sub = folder.subset(["c", "a"])
    assert sub.classes == ["c", "a"]
    assert sorted((p.parent.name, y) for p, y in sub.samples) == [("a", 1), ("c", 0), ("c", 0), ("c", 0)]


# -- refusals -------------------------------------------------------------------------------------------


def test_empty_folder_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    folder = scan_labelled_folder(root)
    assert folder.classes == [] and folder.samples == []
    with pytest.raises(DatasetError, match="no readable images in class sub-folders"):
        require_trainable(folder)


def test_images_only_in_the_root_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    for i in range(4):
        make_image(root / f"img_{i}.png", i)
    folder = scan_labelled_folder(root)
    assert [s.reason for s in folder.skipped] == ["not in a class sub-folder"] * 4
    with pytest.raises(DatasetError, match="no readable images in class sub-folders"):
        require_trainable(folder)


def test_one_class_is_refused(tmp_path: Path) -> None:
    folder = scan_labelled_folder(make_folder(tmp_path / "data", {"onlyone": 5}))
    with pytest.raises(DatasetError, match=r"only one class \('onlyone'\).*at least two"):
        require_trainable(folder)


def test_a_class_with_a_single_image_is_refused_by_name(tmp_path: Path) -> None:
    folder = scan_labelled_folder(make_folder(tmp_path / "data", {"many": 3, "lonely": 1, "more": 2}))
    problems = trainability_problems(folder)
    assert len(problems) == 1
    assert "'lonely'" in problems[0] and "'many'" not in problems[0] and "'more'" not in problems[0]
    assert "fewer than 2 images" in problems[0]
    with pytest.raises(DatasetError, match="'lonely'"):
        require_trainable(folder)
    assert trainability_problems(folder, min_per_class=1) == []


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    folder = scan_labelled_folder(make_folder(tmp_path / "data", {"solo": 1}))
    problems = trainability_problems(folder)
    assert len(problems) == 2
    with pytest.raises(DatasetError) as info:
        require_trainable(folder)
    assert "only one class" in str(info.value) and "'solo'" in str(info.value)


def test_missing_folder_and_file_are_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        scan_labelled_folder(tmp_path / "does-not-exist")
    a_file = make_image(tmp_path / "picture.png", 0)
    with pytest.raises(DatasetError, match="not a folder"):
        scan_labelled_folder(a_file)


# -- splits ---------------------------------------------------------------------------------------------


@pytest.fixture
def six_classes(tmp_path: Path) -> LabelledFolder:
    return scan_labelled_folder(make_folder(tmp_path / "data", {f"c{i}": 2 + i % 2 for i in range(6)}))


def _class_names(folder: LabelledFolder) -> set[str]:
    return {p.parent.name for p, _ in folder.samples}


def test_split_by_class_halves_the_sorted_names(six_classes: LabelledFolder) -> None:
    train, test = split_by_class(six_classes)
    assert train.classes == ["c0", "c1", "c2"]
    assert test.classes == ["c3", "c4", "c5"]
    # Samples follow their class and are relabelled into the half's own class list.
    for half in (train, test):
        assert all(p.parent.name == half.classes[y] for p, y in half.samples)
        assert sorted(set(half.labels.tolist())) == [0, 1, 2]
    all_paths = sorted(p for p, _ in six_classes.samples)
    assert sorted(p for p, _ in train.samples + test.samples) == all_paths


def test_odd_class_count_gives_the_extra_class_to_the_test_half(tmp_path: Path) -> None:
    folder = scan_labelled_folder(make_folder(tmp_path / "data", {f"k{i}": 2 for i in range(5)}))
    train, test = split_by_class(folder)
    assert train.classes == ["k0", "k1"] and test.classes == ["k2", "k3", "k4"]


def test_seeded_split_is_reproducible_and_differs_from_the_sorted_one(six_classes: LabelledFolder) -> None:
    plain = split_by_class(six_classes)[0].classes
    splits = {seed: split_by_class(six_classes, seed) for seed in range(5)}
    for seed, (train, test) in splits.items():
        again_train, again_test = split_by_class(six_classes, seed)
        assert (again_train.classes, again_test.classes) == (train.classes, test.classes)
        assert len(train.classes) == len(test.classes) == 3
        assert set(train.classes).isdisjoint(test.classes)
        assert set(train.classes) | set(test.classes) == set(six_classes.classes)
        assert train.classes == sorted(train.classes)  # each half stays in sorted order
        assert _class_names(train) == set(train.classes)
    assert any(train.classes != plain for train, _ in splits.values())
    assert len({tuple(train.classes) for train, _ in splits.values()}) > 1


def test_fewer_than_four_classes_cannot_be_split(tmp_path: Path) -> None:
    folder = scan_labelled_folder(make_folder(tmp_path / "data", {"a": 2, "b": 2, "c": 2}))
    with pytest.raises(DatasetError, match="at least 4"):
        split_by_class(folder)
    with pytest.raises(DatasetError, match="at least 4"):
        split_by_class(folder, seed=3)


# -- datasets -------------------------------------------------------------------------------------------


def test_image_dataset_yields_uint8_crops_with_labels(tmp_path: Path) -> None:
    folder = scan_labelled_folder(make_folder(tmp_path / "data", {"a": 2, "b": 3}))
    for transform in (eval_transform(73, 64), train_transform(64)):
        ds = ImageDataset(folder.samples, transform, min_side=73)
        assert len(ds) == 5
        for i in range(len(ds)):
            image, label = ds[i]
            assert isinstance(image, torch.Tensor)
            assert image.dtype == torch.uint8 and image.shape == (64, 64, 3)
            assert label == folder.samples[i][1]
        images, labels = collate_uint8([ds[i] for i in range(len(ds))])
        assert images.shape == (5, 64, 64, 3) and images.dtype == torch.uint8
        assert labels.dtype == torch.int64 and labels.tolist() == folder.labels.tolist()


def test_eval_transform_is_the_centre_crop_of_the_image(tmp_path: Path) -> None:
    path = make_image(tmp_path / "data" / "a" / "x.png", 9, size=(64, 64))
    ds = ImageDataset([(path, 0)], eval_transform(64, 48), min_side=64)
    image, _ = ds[0]
    expected = np.asarray(Image.open(path).convert("RGB"))[8:56, 8:56]
    assert np.array_equal(image.numpy(), expected)


def test_a_file_broken_after_the_scan_becomes_a_grey_image_with_its_label(tmp_path: Path) -> None:
    folder = scan_labelled_folder(make_folder(tmp_path / "data", {"a": 2, "b": 2}))
    broken_path, broken_label = folder.samples[3]
    broken_path.write_bytes(b"corrupted since the scan")
    ds = ImageDataset(folder.samples, eval_transform(73, 64), min_side=73)
    image, label = ds[3]
    assert label == broken_label == 1
    assert image.shape == (64, 64, 3)
    assert torch.all(image == 128)
    assert not torch.all(ds[0][0] == 128)
