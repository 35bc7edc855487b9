"""The ``--ray`` stages run as plain Python here (no cluster; the real-cluster run is in
integration_tests/test_ray_index.py): they must do what the single-process run does for images whose
token map is empty (indexed by their caption, counted as caption_only) and for models whose outputs
are named by a separate output vocabulary."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from stair_es.engine import IMAGE_FIELD
from stair_es.ingest import Ledger, RunReport, discover_images
from stair_es.ingest.ray_ingest import _account
from stair_es.ingest.ray_stages import Encode, Gate, SinkSpec, Write, _rows, decode, read_and_hash
from stair_es.ingest.testing import make_messy_folder
from stair_es.runtime import Manifest
from stair_es.runtime.images import DEFAULT_MAX_PIXELS
from stair_es.runtime.tokenizer import file_sha256, vocabulary_hash


def _copy_model(src: Path, dst: Path, **changes: Any) -> Path:
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest.update(changes)
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


def _stages(folder: Path, encode_model: Path, write_model: Path) -> tuple[list[dict[str, Any]], Write]:
    """read+hash -> gate -> decode -> encode -> write over one batch, as the Ray pipeline chains them."""
    items = [item for item in discover_images([folder]) if item.path is not None]
    records = [
        {"i": i, "key": item.key, "abs_path": str(item.path), "caption": item.caption or "", "url": "",
         "id": "", "metadata": "{}"}
        for i, item in enumerate(items)
    ]  # fmt: skip
    batch = {
        k: np.asarray([r[k] for r in records], dtype=np.int64 if k == "i" else object) for k in records[0]
    }
    spec = SinkSpec(connection=None, index="photos", lookup=False)
    batch = read_and_hash(batch, max_file_bytes=50 << 20)
    batch = Gate(spec, skip_existing=False)(batch)
    batch = decode(batch, Manifest.read(encode_model).image.to_dict(), max_pixels=DEFAULT_MAX_PIXELS)
    batch = Encode(str(encode_model), {"provider": "cpu"}, encode_captions=False)(batch)
    writer = Write(spec, str(write_model))
    return list(_rows(writer(batch))), writer


def _report(rows: list[dict[str, Any]], tmp_path: Path) -> RunReport:
    report = RunReport(index="photos")
    ledger = Ledger(report, tmp_path / "failures.jsonl")
    try:
        for row in rows:
            _account(row, {int(r["i"]): str(r["key"]) for r in rows}, report, ledger, ledger.fail, set())
    finally:
        ledger.close()
    return report


def test_empty_token_maps_are_indexed_by_caption_and_counted(tiny_onnx_model: Path, tmp_path: Path) -> None:
    messy = make_messy_folder(tmp_path / "photos", num_images=6)
    model = _copy_model(tiny_onnx_model, tmp_path / "model", pruning={"top_k": None, "min_weight": 1e9})
    rows, writer = _stages(messy.root, model, model)
    report = _report(rows, tmp_path)
    captioned = [p for p in messy.good if p.with_suffix(".txt").is_file()]
    assert captioned and report.caption_only == len(captioned)
    assert report.indexed == len(captioned)  # the uncaptioned ones have nothing searchable: failed
    assert report.failed == len(messy.bad) + len(messy.good) - len(captioned)
    assert all(IMAGE_FIELD not in s and s["caption"] for s in writer.sink.sources.values())


def test_tokens_are_named_by_the_output_vocabulary(tiny_onnx_model: Path, tmp_path: Path) -> None:
    messy = make_messy_folder(tmp_path / "photos", num_images=4)
    size = Manifest.read(tiny_onnx_model).vocab_size
    names = [f"out{i}" for i in range(size)]
    model = _copy_model(
        tiny_onnx_model, tmp_path / "named", vocab_hash=vocabulary_hash(names), format_version=2
    )
    (model / "output_vocab.txt").write_text("".join(f"{n}\n" for n in names))
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["output_vocabulary"] = {
        "file": "output_vocab.txt",
        "sha256": file_sha256(model / "output_vocab.txt"),
    }
    (model / "manifest.json").write_text(json.dumps(manifest))

    rows, writer = _stages(messy.root, tiny_onnx_model, model)
    assert _report(rows, tmp_path).indexed == len(messy.good)
    tokens = {t for s in writer.sink.sources.values() for t in s[IMAGE_FIELD]}
    assert tokens and all(t.startswith("out") for t in tokens)
