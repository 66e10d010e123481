"""The two protocols' splits and the selection part carved from training data, on made-up file lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.folders import DatasetError, LabelledFolder, carve_validation, split, split_by_class, split_by_images


def folder(sizes: list[int]) -> LabelledFolder:
    classes = [f"class_{c:02d}" for c in range(len(sizes))]
    samples = [(Path(f"/photos/{classes[c]}/{i:03d}.jpg"), c) for c, n in enumerate(sizes) for i in range(n)]
    return LabelledFolder(Path("/photos"), classes, samples)


def test_split_by_images_holds_out_each_class_share_and_never_leaks() -> None:
    whole = folder([40, 20, 10, 4, 3])
    train, held = split_by_images(whole, share=0.2, seed=3)
    assert not set(train.samples) & set(held.samples)
    assert sorted(train.samples + held.samples) == sorted(whole.samples)
    assert train.counts() == {"class_00": 32, "class_01": 16, "class_02": 8, "class_03": 2, "class_04": 3}
    assert held.counts() == {"class_00": 8, "class_01": 4, "class_02": 2, "class_03": 2, "class_04": 0}
    assert split_by_images(whole, seed=3)[1].samples == held.samples  # the same seed, the same images
    assert split_by_images(whole, seed=4)[1].samples != held.samples


def test_split_by_images_needs_two_classes_that_can_spare_images() -> None:
    with pytest.raises(DatasetError, match="at least two classes with 4 or more images"):
        split_by_images(folder([10, 3, 3]))


def test_split_by_protocol() -> None:
    whole = folder([6] * 6)
    assert (
        split(whole, "classes")[0].classes == split_by_class(whole)[0].classes == ["class_00", "class_01", "class_02"]
    )
    assert split(whole, "none") == (whole, None)
    assert len(split(whole, "images")[0].classes) == 6
    with pytest.raises(DatasetError, match="unknown split"):
        split(whole, "halves")


def test_carve_validation_takes_whole_classes_for_new_classes_when_there_are_enough() -> None:
    fitted, chooser = carve_validation(folder([10] * 12), "classes")
    assert chooser is not None and len(chooser.classes) == 3 and not set(fitted.classes) & set(chooser.classes)
    fitted, chooser = carve_validation(folder([10] * 5), "classes")  # 5 training classes: 2 set aside
    assert chooser is not None and len(chooser.classes) == 2 and len(fitted.classes) == 3
    fitted, chooser = carve_validation(folder([10] * 3), "classes")  # nothing can judge new classes
    assert chooser is not None and chooser.samples == [] and fitted.samples == folder([10] * 3).samples
    fitted, chooser = carve_validation(folder([10] * 3), "images")  # my classes: images of each
    assert chooser is not None and chooser.classes == fitted.classes and not set(fitted.samples) & set(chooser.samples)


def test_carve_validation_gives_up_when_nothing_can_be_spared() -> None:
    tiny = folder([3, 3])
    assert carve_validation(tiny, "images") == (tiny, None)
