"""Issue 11 defect 4: an image whose token map is empty is still indexed when it has a caption (BM25 and
hybrid search find it), counted apart, and not a failure (no exit 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stair_es.engine import IMAGE_FIELD
from stair_es.engine.indexer import Document, Indexer, IndexSummary
from stair_es.ingest import Ledger, MemorySink, PipelineOptions, RunReport, discover_images, index_images
from stair_es.ingest.testing import make_messy_folder
from stair_es.sparse import SparseVector


def test_prepare_keeps_a_captioned_document_without_tokens() -> None:
    indexer, summary = Indexer(None, "photos"), IndexSummary(index="photos")  # type: ignore[arg-type]
    empty = SparseVector.from_arrays([], [])
    _, source = indexer.prepare(Document(image_tokens=empty, caption="the number 7", path="/a.png"), summary)
    assert source["caption"] == "the number 7" and IMAGE_FIELD not in source and source["modality"] == "image"
    with pytest.raises(ValueError, match="nothing searchable"):
        indexer.prepare(Document(image_tokens=empty, path="/b.png"), summary)


def test_pipeline_indexes_images_with_empty_maps_by_caption(tiny_onnx_model: Path, tmp_path: Path) -> None:
    from stair_es.runtime import load_encoder

    messy = make_messy_folder(tmp_path / "photos", num_images=6)
    encoder = load_encoder(tiny_onnx_model, provider="cpu")
    encoder.manifest.pruning = {"top_k": None, "min_weight": 1e9}  # every image map comes out empty
    sink, report = MemorySink("photos"), RunReport(index="photos")
    ledger = Ledger(report, tmp_path / "failures.jsonl")
    try:
        index_images(discover_images([messy.root]), encoder, sink, report, ledger, options=PipelineOptions())
    finally:
        ledger.close()
    captioned = [p for p in messy.good if p.with_suffix(".txt").is_file()]
    assert captioned and report.balanced
    assert report.failed == len(messy.bad) + len(messy.good) - len(captioned)  # only uncaptioned ones fail
    assert report.indexed == len(captioned) and report.caption_only == len(captioned)
    assert report.to_dict()["caption_only"] == len(captioned)
    assert any("caption only" in line for line in report.summary_lines())
    assert all(IMAGE_FIELD not in s and s["caption"] for s in sink.sources.values())
