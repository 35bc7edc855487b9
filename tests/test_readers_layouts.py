"""COCO (captions_*.json and Karpathy dataset_coco.json) and Flickr30K (Karpathy dataset_flickr30k.json)
in the layout they are downloaded in: a handful of images, the real JSON structure and folder names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from stair_es.data.readers import read_pairs
from stair_es_cli.main import main

FLICKR = [  # (filename, split, captions)
    ("1000092795.jpg", "train", ["Two young guys with shaggy hair look at their hands while hanging out in the yard .",
                                 "Two young , White males are outside near many bushes ."]),
    ("10002456.jpg", "train", ["Several men in hard hats are operating a giant pulley system .",
                               "Workers look down from up above on a piece of equipment ."]),
    ("1000268201.jpg", "train", ["A child in a pink dress is climbing up a set of stairs in an entry way .",
                                 "A little girl in a pink dress going into a wooden cabin ."]),
    ("1000344755.jpg", "train", ["Someone in a blue shirt and hat is standing on stair and leaning against a window .",
                                 "A man in a blue shirt is standing on a ladder cleaning windows ."]),
    ("1000366164.jpg", "val", ["Two men , one in a gray shirt , one in a black shirt , standing near a stove .",
                               "Two guy cooking and joking around with the camera ."]),
    ("1000523639.jpg", "test", ["A man in an orange hat starring at something .",
                                "A man wears an orange hat and glasses ."]),
]  # fmt: skip


def _jpeg(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (500, 375), colour).save(path, "JPEG")


def _flickr30k(root: Path) -> Path:
    """``dataset_flickr30k.json`` beside ``flickr30k-images/`` (the Karpathy split file has no filepath)."""
    images, sentid = [], 0
    for imgid, (filename, split, captions) in enumerate(FLICKR):
        _jpeg(root / "flickr30k-images" / filename, ["red", "green", "blue"][imgid % 3])
        sentences = []
        for raw in captions:
            tokens = [t for t in raw.lower().replace(",", " ").replace(".", " ").split()]
            sentences.append({"tokens": tokens, "raw": raw, "imgid": imgid, "sentid": sentid})
            sentid += 1
        images.append({"sentids": [s["sentid"] for s in sentences], "imgid": imgid, "sentences": sentences,
                       "split": split, "filename": filename})  # fmt: skip
    path = root / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    return path


def _coco_karpathy(root: Path) -> Path:
    """``dataset_coco.json``: COCO 2014 file names under ``train2014/``/``val2014/``, restval counts as train."""
    rows = [("val2014", "COCO_val2014_000000391895.jpg", 391895, "test"),
            ("val2014", "COCO_val2014_000000522418.jpg", 522418, "restval"),
            ("train2014", "COCO_train2014_000000318556.jpg", 318556, "train"),
            ("val2014", "COCO_val2014_000000184613.jpg", 184613, "val")]  # fmt: skip
    images = []
    for imgid, (folder, filename, cocoid, split) in enumerate(rows):
        _jpeg(root / folder / filename, "white")
        raw = f"A picture number {imgid} of a street ."
        images.append({"filepath": folder, "sentids": [imgid], "filename": filename, "imgid": imgid,
                       "split": split, "sentences": [{"tokens": raw.lower().split()[:-1], "raw": raw,
                                                      "imgid": imgid, "sentid": imgid}], "cocoid": cocoid})  # fmt: skip
    path = root / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path


def _coco_captions(root: Path) -> Path:
    """``annotations/captions_val2017.json`` with the images in ``val2017/``."""
    images = [{"license": 4, "file_name": "000000397133.jpg", "coco_url": "http://images.cocodataset.org/val2017/000000397133.jpg",
               "height": 427, "width": 640, "date_captured": "2013-11-14 17:02:52", "flickr_url": "http://farm7.staticflickr.com/6116/6255196340_da26cf2c9e_z.jpg", "id": 397133},
              {"license": 1, "file_name": "000000037777.jpg", "coco_url": "http://images.cocodataset.org/val2017/000000037777.jpg",
               "height": 230, "width": 352, "date_captured": "2013-11-14 20:55:31", "flickr_url": "http://farm9.staticflickr.com/8429/7839199426_f6d48aa585_z.jpg", "id": 37777}]  # fmt: skip
    annotations = [{"image_id": 397133, "id": 370509, "caption": "A man is in a kitchen making pizzas."},
                   {"image_id": 37777, "id": 405425, "caption": "The dining table near the kitchen has a bowl of fruit on it."},
                   {"image_id": 397133, "id": 370584, "caption": "Man in apron standing on front of oven with pans and bakeware"}]  # fmt: skip
    for image in images:
        _jpeg(root / "val2017" / image["file_name"], "gray")
    path = root / "annotations" / "captions_val2017.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"info": {"description": "COCO 2017 Dataset", "version": "1.0", "year": 2017},
                                "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 1,
                                              "name": "Attribution-NonCommercial-ShareAlike License"}],
                                "images": images, "annotations": annotations}))  # fmt: skip
    return path


def test_flickr30k_karpathy_split(tmp_path: Path) -> None:
    split_file = _flickr30k(tmp_path)
    train = read_pairs(split_file, tmp_path / "flickr30k-images", "train")
    assert len(train) == 8 and all(p.image.is_file() for p in train)
    assert train[0].caption.startswith("Two young guys") and train[0].image_id == "0"
    assert len({p.image_id for p in train}) == 4
    test = read_pairs(split_file, tmp_path / "flickr30k-images", "test")
    assert [p.image.name for p in test] == ["1000523639.jpg"] * 2


def test_coco_karpathy_split_and_captions_json(tmp_path: Path) -> None:
    karpathy = _coco_karpathy(tmp_path)
    train = read_pairs(karpathy, tmp_path, "train")  # restval is training data
    assert sorted(p.image.name for p in train) == [
        "COCO_train2014_000000318556.jpg",
        "COCO_val2014_000000522418.jpg",
    ]
    assert all(p.image.is_file() for p in train) and {p.image_id for p in train} == {"318556", "522418"}
    (test,) = read_pairs(karpathy, tmp_path, "test")
    assert test.image == tmp_path / "val2014" / "COCO_val2014_000000391895.jpg"
    captions = _coco_captions(tmp_path)
    pairs = read_pairs(captions, tmp_path / "val2017")
    assert [(p.image.name, p.image_id) for p in pairs] == [
        ("000000397133.jpg", "397133"), ("000000037777.jpg", "37777"), ("000000397133.jpg", "397133")
    ]  # fmt: skip
    assert all(p.image.is_file() for p in pairs)


def test_train_on_flickr30k_layout_uses_the_train_split(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    split_file = _flickr30k(tmp_path)
    args = ["train", "--data", str(split_file), "--image-root", str(tmp_path / "flickr30k-images"),
            "--eval-split", "test", "--output", str(tmp_path / "m"), "--stage", "3", "--steps", "1",
            "--batch-size", "4", "--image-size", "32", "--patch-size", "8", "--hidden-size", "32", "--layers", "1"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "split 'train'" in result.output  # not every split: the test images stay held out
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert record["train_pairs"] == 8 and record["eval_pairs"] == 2
    assert record["final_metrics"]["eval_images"] == 1
