"""Data readers and the synthetic generator (numpy + pillow only)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from stair_es.data import (
    SyntheticConfig,
    content_words,
    default_preprocessor_config,
    generate_synthetic,
    preprocess_image,
    read_coco_captions,
    read_jsonl,
    read_karpathy,
    read_pairs,
    read_sidecar_folder,
)
from stair_es.errors import UsageError


def _digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_synthetic_is_seeded_and_split(tmp_path) -> None:
    cfg = SyntheticConfig(num_images=40, seed=7, test_fraction=0.25, val_fraction=0.1)
    manifests = generate_synthetic(tmp_path / "a", cfg)
    generate_synthetic(tmp_path / "b", cfg)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    generate_synthetic(tmp_path / "c", SyntheticConfig(num_images=40, seed=8))
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    sizes = {split: len(read_jsonl(path)) for split, path in manifests.items()}
    assert sizes == {"train": 26, "val": 4, "test": 10}
    row = json.loads(manifests["test"].read_text().splitlines()[0])
    assert set(row) >= {"image", "caption", "split", "colours", "shapes"}
    for colour in row["colours"]:
        assert colour in row["caption"].split()
    assert all(shape in row["caption"].split() for shape in row["shapes"])
    with Image.open(tmp_path / "a" / row["image"]) as img:
        assert img.size == (64, 64) and img.mode == "RGB"


def test_synthetic_images_show_the_caption_colour(tmp_path) -> None:
    """The named colour is really in the pixels: the caption is grounded, not arbitrary."""
    from stair_es.data.synthetic import COLOURS

    manifests = generate_synthetic(tmp_path, SyntheticConfig(num_images=30, seed=1, test_fraction=0.0))
    for pair, row in zip(
        read_jsonl(manifests["train"]), map(json.loads, manifests["train"].read_text().splitlines())
    ):
        pixels = np.asarray(Image.open(pair.image), dtype=np.float32).reshape(-1, 3)
        for colour in row["colours"]:
            distance = np.abs(pixels - np.array(COLOURS[colour])).sum(axis=1)
            assert (distance < 60).sum() >= 10, (row["caption"], colour)


def test_synthetic_jpeg_and_content_words(tmp_path) -> None:
    manifests = generate_synthetic(
        tmp_path, SyntheticConfig(num_images=5, image_format="jpeg", test_fraction=0)
    )
    assert all(p.image.suffix == ".jpg" and p.image.exists() for p in read_jsonl(manifests["train"]))
    caption = "two small red circles on the left and one big blue star at the top on a white background"
    assert content_words(caption) == [
        "two",
        "small",
        "red",
        "circles",
        "left",
        "one",
        "big",
        "blue",
        "star",
        "top",
        "white",
        "background",
    ]


def test_jsonl_reader_resolves_paths_and_reports_bad_lines(tmp_path) -> None:
    (tmp_path / "m.jsonl").write_text(
        '{"image": "x.png", "caption": "a"}\n\n{"image": "/abs/y.png", "caption": ["b", "c"], "split": "test"}\n'
    )
    pairs = read_jsonl(tmp_path / "m.jsonl")
    assert [p.caption for p in pairs] == ["a", "b", "c"]
    assert pairs[0].image == tmp_path / "x.png" and str(pairs[1].image) == "/abs/y.png"
    assert [p.caption for p in read_jsonl(tmp_path / "m.jsonl", split="train")] == ["a"]
    (tmp_path / "bad.jsonl").write_text('{"image": "x.png"}\n')
    with pytest.raises(UsageError, match="bad.jsonl:1"):
        read_jsonl(tmp_path / "bad.jsonl")


def test_coco_and_karpathy_readers(tmp_path) -> None:
    coco = {
        "images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}],
        "annotations": [
            {"image_id": 1, "caption": "A dog. "},
            {"image_id": 1, "caption": "a brown dog"},
            {"image_id": 2, "caption": "a cat"},
        ],
    }
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    pairs = read_coco_captions(tmp_path / "coco.json", tmp_path / "imgs")
    assert [(p.image.name, p.caption, p.image_id) for p in pairs] == [
        ("1.jpg", "A dog.", "1"),
        ("1.jpg", "a brown dog", "1"),
        ("2.jpg", "a cat", "2"),
    ]
    karpathy = {
        "dataset": "coco",
        "images": [
            {
                "filepath": "val2014",
                "filename": "a.jpg",
                "split": "test",
                "cocoid": 5,
                "sentences": [{"raw": "x y"}, {"tokens": ["z"]}],
            },
            {
                "filepath": "train2014",
                "filename": "b.jpg",
                "split": "restval",
                "cocoid": 6,
                "sentences": [{"raw": "w"}],
            },
        ],
    }
    (tmp_path / "k.json").write_text(json.dumps(karpathy))
    test = read_karpathy(tmp_path / "k.json", tmp_path, split="test")
    assert [(str(p.image.relative_to(tmp_path)), p.caption) for p in test] == [
        ("val2014/a.jpg", "x y"),
        ("val2014/a.jpg", "z"),
    ]
    assert [p.split for p in read_karpathy(tmp_path / "k.json", tmp_path, split="train")] == ["train"]
    assert len(read_pairs(tmp_path / "coco.json", image_root=tmp_path)) == 3
    assert len(read_pairs(tmp_path / "k.json", image_root=tmp_path, split="test")) == 2
    with pytest.raises(UsageError, match="image-root"):
        read_pairs(tmp_path / "k.json")


def test_sidecar_folder_and_read_pairs_errors(tmp_path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "p1.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "p2.jpg")
    (tmp_path / "p1.txt").write_text("red square\n\nblue circle\n")
    pairs = read_sidecar_folder(tmp_path)
    assert [(p.image.name, p.caption) for p in pairs] == [("p1.png", "red square"), ("p1.png", "blue circle")]
    assert len(read_pairs(tmp_path)) == 2
    with pytest.raises(UsageError, match="not found"):
        read_pairs(tmp_path / "missing.jsonl")
    with pytest.raises(UsageError, match="expected a folder"):
        read_pairs(tmp_path / "p1.txt")


def test_preprocess_resizes_crops_and_normalises(tmp_path) -> None:
    img = Image.new("RGB", (80, 40), (255, 0, 0))
    cfg = default_preprocessor_config(32)
    out = preprocess_image(img, cfg)
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    assert np.allclose(out[0], 1.0) and np.allclose(out[1], -1.0)


def test_data_package_does_not_import_torch() -> None:
    code = "import sys, stair_es.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
