"""Evaluation sets: Karpathy/JSONL captioned images grouped by image, labelled images, class lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stair_es.errors import UsageError
from stair_es.eval.datasets import (
    load_labelled_set,
    load_retrieval_set,
    looks_labelled,
    read_class_names,
)


def write_karpathy(path: Path) -> Path:
    images = [
        {
            "filename": "a.jpg",
            "filepath": "val2014",
            "split": "test",
            "cocoid": 1,
            "sentences": [{"raw": "a dog"}, {"raw": "a brown dog"}],
        },
        {
            "filename": "b.jpg",
            "filepath": "val2014",
            "split": "train",
            "cocoid": 2,
            "sentences": [{"raw": "a cat"}],
        },
        {
            "filename": "c.jpg",
            "filepath": "val2014",
            "split": "test",
            "cocoid": 3,
            "sentences": [{"tokens": ["a", "red", "car"]}],
        },
    ]
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def test_karpathy_split_groups_captions_by_image(tmp_path: Path) -> None:
    data = load_retrieval_set(write_karpathy(tmp_path / "dataset_coco.json"), split="test")
    assert [p.name for p in data.images] == ["a.jpg", "c.jpg"]
    assert data.images[0] == tmp_path / "val2014" / "a.jpg"  # image root defaults to the JSON's folder
    assert data.captions == ["a dog", "a brown dog", "a red car"]
    assert data.caption_image == [0, 0, 1]
    assert data.relevant_images() == [frozenset([0]), frozenset([0]), frozenset([1])]
    assert data.relevant_captions() == [frozenset([0, 1]), frozenset([2])]


def test_max_images_and_drop_images(tmp_path: Path) -> None:
    data = load_retrieval_set(write_karpathy(tmp_path / "d.json"), split=None, max_images=2)
    assert len(data.images) == 2 and data.captions == ["a dog", "a brown dog", "a cat"]
    dropped = data.drop_images({0})
    assert [p.name for p in dropped.images] == ["b.jpg"]
    assert dropped.captions == ["a cat"] and dropped.caption_image == [0]


def test_jsonl_retrieval_set(tmp_path: Path) -> None:
    rows = [{"image": "x.png", "caption": ["one", "two"]}, {"image": "y.png", "caption": "three"}]
    (tmp_path / "set.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = load_retrieval_set(tmp_path / "set.jsonl")
    assert data.image_ids == ["x.png", "y.png"] and data.caption_image == [0, 0, 1]
    assert not looks_labelled(tmp_path / "set.jsonl")


def test_labelled_jsonl_infers_sorted_classes(tmp_path: Path) -> None:
    rows = [
        {"image": "a.png", "label": "dog"},
        {"image": "b.png", "label": "cat"},
        {"image": "c.png", "label": "dog"},
    ]
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert looks_labelled(path)
    data = load_labelled_set(path, templates=("a photo of a {label}", "{label}"))
    assert data.classes == ["cat", "dog"] and data.labels == [1, 0, 1]
    assert data.prompts() == [["a photo of a cat", "cat"], ["a photo of a dog", "dog"]]
    assert data.drop_images({1}).labels == [1, 1]


def test_labelled_integer_labels_index_the_class_list(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"image": "a.png", "label": 2}\n{"image": "b.png", "label": 0}\n')
    data = load_labelled_set(path, classes=["x", "y", "z"])
    assert data.labels == [2, 0]
    path.write_text('{"image": "a.png", "label": 5}\n')
    with pytest.raises(UsageError, match="outside"):
        load_labelled_set(path, classes=["x", "y"])


def test_labelled_errors(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text('{"image": "a.png", "label": "dog"}\n')
    with pytest.raises(UsageError, match="not one of the class names"):
        load_labelled_set(path, classes=["cat", "bird"])
    with pytest.raises(UsageError, match="at least 2 classes"):
        load_labelled_set(path)
    with pytest.raises(UsageError, match="placeholder"):
        load_labelled_set(path, classes=["dog", "cat"], templates=("a photo",))
    path.write_text('{"image": "a.png"}\n')
    with pytest.raises(UsageError, match=":1:"):
        load_labelled_set(path, classes=["dog", "cat"])


def test_labelled_folder_of_class_folders(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("cat", "dog"):
        (tmp_path / cls).mkdir()
        Image.new("RGB", (4, 4)).save(tmp_path / cls / "1.png")
    data = load_labelled_set(tmp_path)
    assert data.classes == ["cat", "dog"] and data.labels == [0, 1]


def test_read_class_names(tmp_path: Path) -> None:
    assert read_class_names(None) is None
    assert read_class_names("cat, dog ,bird") == ["cat", "dog", "bird"]
    (tmp_path / "c.txt").write_text("cat\n\ndog\n")
    assert read_class_names(str(tmp_path / "c.txt")) == ["cat", "dog"]
    (tmp_path / "c.json").write_text('["a", "b"]')
    assert read_class_names(str(tmp_path / "c.json")) == ["a", "b"]
    with pytest.raises(UsageError, match="unique"):
        read_class_names("a,a")
    with pytest.raises(UsageError, match="at least 2"):
        read_class_names("a")


def test_caption_relevance_counts_identical_captions() -> None:
    from stair_es.eval.datasets import RetrievalSet

    data = RetrievalSet(
        "toy",
        [Path("a"), Path("b"), Path("c")],
        ["a", "b", "c"],
        ["red", "red", "blue", "green"],
        [0, 1, 2, 2],
    )
    assert data.relevant_images("caption") == [
        frozenset([0, 1]),
        frozenset([0, 1]),
        frozenset([2]),
        frozenset([2]),
    ]
    assert data.relevant_images() == [frozenset([0]), frozenset([1]), frozenset([2]), frozenset([2])]
    assert data.relevant_captions("caption") == [frozenset([0, 1]), frozenset([0, 1]), frozenset([2, 3])]
    assert data.relevant_captions() == [frozenset([0]), frozenset([1]), frozenset([2, 3])]
