"""The evaluation runner on a deterministic stand-in encoder (no model, no engine): the metrics it
reports must be the ones the vectors imply, and undecodable images must be left out, not crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from stair_es.eval import LabelledSet, RetrievalSet, average_vectors, evaluate_retrieval, evaluate_zeroshot
from stair_es.runtime.results import ImageResult
from stair_es.sparse import SparseVector


class TableEncoder:
    """Vectors looked up by text / image file name; an image named bad*.png fails to decode."""

    model_id = "table"
    vocab_hash = "0" * 64

    def __init__(self, vectors: dict[str, dict[str, float]]) -> None:
        self.vectors = vectors

    def encode_texts(self, texts: list[str], batch_size: int = 64) -> list[SparseVector]:
        return [SparseVector.from_dict(self.vectors[t]) for t in texts]

    def iter_encode_images(self, paths: list[str], batch_size: int = 32):
        for i, path in enumerate(paths):
            name = Path(path).name
            if name.startswith("bad"):
                yield ImageResult(i, path, None, f"{path}: cannot identify image file")
            else:
                yield ImageResult(i, path, SparseVector.from_dict(self.vectors[name]))


def test_retrieval_recall_from_known_vectors() -> None:
    encoder = TableEncoder(
        {
            "dog.png": {"dog": 1.0, "grass": 0.5},
            "cat.png": {"cat": 1.0, "sofa": 0.5},
            "car.png": {"car": 1.0, "road": 0.2},
            "a dog": {"dog": 1.0},
            "a pet on grass": {"grass": 1.0, "cat": 0.1},  # ranks the dog first: a hit
            "a cat": {"cat": 1.0},
            "a road": {"road": 1.0, "sofa": 0.5},  # ranks the cat first: a miss at 1, hit at 2
        }
    )
    data = RetrievalSet(
        "toy",
        [Path("dog.png"), Path("cat.png"), Path("car.png")],
        ["d", "c", "r"],
        ["a dog", "a pet on grass", "a cat", "a road"],
        [0, 0, 1, 2],
    )
    report = evaluate_retrieval(data, encoder, ks=(1, 2, 10)).to_dict()
    t2i = report["directions"]["text_to_image"]
    assert t2i["memory"] == {"R@1": 0.75, "R@2": 1.0, "R@10": 1.0}
    assert t2i["engine"] is None and report["engine"] is None
    i2t = report["directions"]["image_to_text"]
    # dog -> "a pet on grass"? no: "a dog" (1.0) first, a hit; cat -> "a cat"; car -> "a road" (0.2) only
    assert i2t["memory"]["R@1"] == 1.0
    assert report["dataset"]["images"] == 3 and report["dataset"]["captions"] == 4


def test_undecodable_images_and_their_captions_are_left_out() -> None:
    encoder = TableEncoder({"ok.png": {"a": 1.0}, "first": {"a": 1.0}, "second": {"a": 1.0}})
    data = RetrievalSet("toy", [Path("bad.png"), Path("ok.png")], ["b", "o"], ["first", "second"], [0, 1])
    messages: list[str] = []
    report = evaluate_retrieval(data, encoder, log=messages.append).to_dict()
    assert report["dataset"] == {
        "name": "toy",
        "split": None,
        "images": 1,
        "captions": 1,
        "failed_images": 1,
        "relevance": "id",
    }
    assert report["directions"]["text_to_image"]["memory"]["R@1"] == 1.0
    assert any("1 of 2 images could not be decoded" in m and "bad.png" in m for m in messages)


def test_zeroshot_accuracy_and_prompt_averaging() -> None:
    encoder = TableEncoder(
        {
            "1.png": {"red": 1.0},
            "2.png": {"blue": 1.0},
            "3.png": {"blue": 0.2, "red": 0.3},
            "a photo of a red": {"red": 1.0, "photo": 1.0},
            "red": {"red": 1.0},
            "a photo of a blue": {"blue": 1.0, "photo": 1.0},
            "blue": {"blue": 1.0},
        }
    )
    data = LabelledSet(
        "toy",
        [Path("1.png"), Path("2.png"), Path("3.png")],
        [0, 1, 1],
        ["red", "blue"],
        ["a photo of a {label}", "{label}"],
    )
    report = evaluate_zeroshot(data, encoder, ks=(1, 5)).to_dict()
    direction = report["directions"]["image_to_class"]
    assert direction["memory"] == {"top1": pytest.approx(2 / 3)}  # top5 dropped: only 2 classes
    assert report["dataset"]["classes"] == 2


def test_average_vectors() -> None:
    vec = average_vectors([SparseVector.from_dict({"a": 1.0, "b": 2.0}), SparseVector.from_dict({"a": 3.0})])
    assert vec.to_dict() == {"a": 2.0, "b": 1.0}


def test_caption_relevance_changes_the_gold() -> None:
    encoder = TableEncoder({"1.png": {"x": 1.0}, "2.png": {"x": 2.0}, "same": {"x": 1.0}})
    data = RetrievalSet("toy", [Path("1.png"), Path("2.png")], ["1", "2"], ["same", "same"], [0, 1])
    by_id = evaluate_retrieval(data, encoder, ks=(1,)).to_dict()["directions"]["text_to_image"]["memory"]
    by_caption = evaluate_retrieval(data, encoder, ks=(1,), relevance="caption").to_dict()
    assert by_id == {"R@1": 0.5}  # both captions rank image 2 first; only one of them describes it
    assert by_caption["directions"]["text_to_image"]["memory"] == {"R@1": 1.0}
    assert by_caption["dataset"]["relevance"] == "caption"
    with pytest.raises(Exception, match="relevance"):
        evaluate_retrieval(data, encoder, relevance="nope")
