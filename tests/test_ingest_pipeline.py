"""The image and text pipelines with the tiny exported model and the in-memory sink: every file ends
indexed, skipped or failed (counts add up), resume skips by content hash, shards split the work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stair_es.engine import IMAGE_FIELD, TEXT_FIELD
from stair_es.ingest import (
    Ledger,
    MemorySink,
    PipelineOptions,
    RunReport,
    discover_images,
    index_images,
    index_texts,
    read_text_corpus,
    select_shard,
)
from stair_es.ingest.testing import MessyFolder, make_messy_folder


@pytest.fixture(scope="module")
def encoder(tiny_onnx_model: Path):
    from stair_es.runtime import load_encoder

    return load_encoder(tiny_onnx_model, provider="cpu", decode_workers=2)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory) -> MessyFolder:
    return make_messy_folder(tmp_path_factory.mktemp("ingest") / "photos", num_images=12)


def _run(items, encoder, sink, failures: Path | None = None, **options) -> RunReport:
    report = RunReport(index=sink.name)
    ledger = Ledger(report, failures)
    try:
        index_images(items, encoder, sink, report, ledger, options=PipelineOptions(**options))
    finally:
        ledger.close()
    return report


def test_messy_folder_every_file_accounted_for(encoder, messy: MessyFolder, tmp_path: Path) -> None:
    sink = MemorySink("photos")
    failures = tmp_path / "failures.jsonl"
    report = _run(discover_images([messy.root]), encoder, sink, failures, batch_size=4)

    assert report.discovered == messy.discovered
    assert report.indexed == len(messy.good) == len(sink.sources)
    assert report.skipped_duplicate == len(messy.duplicates) and report.skipped_existing == 0
    assert report.failed == len(messy.bad) and report.balanced
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert {Path(r["path"]).name: r["kind"] for r in rows} == {p.name: k for p, k in messy.bad.items()}
    assert all(r["reason"] and "\n" not in r["reason"] for r in rows)
    assert not any(r["reason"].startswith("<") for r in rows)  # the path, not "<123 bytes>"

    source = next(s for s in sink.sources.values() if s["path"].endswith(messy.good[0].name))
    assert source[IMAGE_FIELD] and source["caption"] == messy.good[0].with_suffix(".txt").read_text().strip()
    assert source["width"] == 64 and source["mime"] == "image/png" and len(source["content_hash"]) == 64
    assert (
        report.stage_seconds["inference"] > 0 and report.seconds >= sum(report.stage_seconds.values()) * 0.5
    )


def test_resume_skips_already_indexed_and_adds_new_files(encoder, messy: MessyFolder) -> None:
    sink = MemorySink("photos")
    items = discover_images([messy.root])
    _run(items, encoder, sink)
    again = _run(discover_images([messy.root]), encoder, sink)
    assert again.indexed == 0 and again.balanced
    assert again.skipped_existing == len(messy.good) and again.skipped_duplicate == len(messy.duplicates)
    assert again.failed == len(messy.bad)  # bad files are reported on every run: they are still bad

    # incremental: a copy elsewhere (same bytes + caption) is already indexed; an edited file is new
    extra = messy.root.parent / "extra"
    extra.mkdir()
    original = messy.good[1]
    (extra / "copy.png").write_bytes(original.read_bytes())
    (extra / "copy.txt").write_text(original.with_suffix(".txt").read_text())
    (extra / "edited.png").write_bytes(messy.good[2].read_bytes()[:-12] + messy.good[3].read_bytes()[-12:])
    edited_ok = _run(discover_images([extra / "edited.png"]), encoder, MemorySink("probe"))
    fresh = _run(discover_images([extra]), encoder, sink)
    assert fresh.skipped_existing == 1 and fresh.discovered == 2 and fresh.balanced
    assert fresh.indexed == edited_ok.indexed  # the edited file is new (indexed if it still decodes)
    assert fresh.indexed + fresh.failed == 1


def test_reindex_existing_encodes_again(encoder, messy: MessyFolder) -> None:
    sink = MemorySink("photos")
    _run(discover_images([messy.root]), encoder, sink)
    report = _run(discover_images([messy.root]), encoder, sink, skip_existing=False)
    assert report.indexed == len(messy.good) and report.skipped_existing == 0


def test_shards_together_index_exactly_one_full_run(encoder, messy: MessyFolder) -> None:
    full = MemorySink("full")
    _run(discover_images([messy.root]), encoder, full)
    parts = [MemorySink(f"part{s}") for s in range(3)]
    reports = [
        _run(list(select_shard(discover_images([messy.root]), s, 3)), encoder, parts[s]) for s in range(3)
    ]
    merged: dict[str, dict] = {}
    for part in parts:
        merged.update(part.sources)
    assert merged.keys() == full.sources.keys()
    # shards split by path, so two copies of one file may land in two shards: both write the same id
    assert sum(len(p.sources) for p in parts) - len(merged) <= len(messy.duplicates)
    assert sum(r.discovered for r in reports) == messy.discovered
    assert sum(r.failed for r in reports) == len(messy.bad)


def test_encode_captions_fills_text_tokens(encoder, messy: MessyFolder) -> None:
    sink = MemorySink("photos")
    _run(
        [i for i in discover_images([messy.root]) if i.path in messy.good[:2]],
        encoder,
        sink,
        encode_captions=True,
    )
    assert len(sink.sources) == 2
    assert all(
        s[TEXT_FIELD] and s[IMAGE_FIELD] and s["modality"] == "image+text" for s in sink.sources.values()
    )


def test_texts_pipeline(encoder, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    lines = [{"id": "t1", "text": "a red circle", "lang": "en"}, {"text": "two blue squares"}]
    lines += [{"text": "two blue squares"}, {"text": ""}]
    corpus.write_text("\n".join(json.dumps(x) for x in lines) + "\n{bad json\n", encoding="utf-8")
    sink = MemorySink("texts")
    failures = tmp_path / "f.jsonl"

    def run() -> RunReport:
        report = RunReport(index="texts", kind="texts")
        ledger = Ledger(report, failures)
        index_texts(read_text_corpus(corpus), encoder, sink, report, ledger, chunk_size=2)
        ledger.close()
        return report

    report = run()
    assert (report.discovered, report.indexed, report.skipped_duplicate, report.failed) == (5, 2, 1, 2)
    assert report.balanced
    assert sink.sources["t1"]["caption"] == "a red circle" and sink.sources["t1"]["user"] == {"lang": "en"}
    assert all(s[TEXT_FIELD] and IMAGE_FIELD not in s for s in sink.sources.values())
    assert len(failures.read_text().splitlines()) == 2
    again = run()
    assert (again.indexed, again.skipped_existing, again.skipped_duplicate, again.failed) == (0, 2, 1, 2)
