"""``stair-es index images|texts`` into a real engine: a generated folder with broken files, counts,
the failures file, resume (a second run indexes nothing new), and a search that finds the documents."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stair_es.engine import IMAGE_FIELD, TEXT_FIELD, ConnectionConfig, connect
from stair_es.ingest.testing import MessyFolder, make_messy_folder
from stair_es_cli.index_cmd import EXIT_SOME_FAILED
from stair_es_cli.main import main


@pytest.fixture()
def backend(engine_url: str):
    with connect(ConnectionConfig.from_env(env={}, urls=engine_url)) as b:
        yield b


@pytest.fixture()
def index_name(backend) -> Iterator[str]:
    name = f"test-cli-index-{uuid.uuid4().hex[:8]}"
    yield name
    backend.delete_index(name)


def _index(engine_url: str, *args: str):
    return CliRunner().invoke(main, ["index", *args, "--url", engine_url, "--json"], catch_exceptions=False)


def _search(backend, index: str, field: str, tokens: dict[str, float], size: int = 5) -> list[dict]:
    from stair_es.engine.query import sparse_clauses
    from stair_es.sparse import SparseVector

    meta = backend.index_meta(index)  # rank_features or sparse_vector, as the node allowed
    clauses = sparse_clauses(field, SparseVector.from_dict(tokens), meta.token_field_type, meta.weight_shift)
    body = {
        "query": {"bool": {"should": clauses}},
        "size": size,
        "_source": {"excludes": [IMAGE_FIELD, TEXT_FIELD]},
    }
    return backend.search(index, body)["hits"]["hits"]


def test_index_images_counts_failures_resume_and_search(
    engine_url: str, backend, index_name: str, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    messy: MessyFolder = make_messy_folder(tmp_path / "photos", num_images=16)
    failures = tmp_path / "failures.jsonl"
    args = ["images", str(messy.root), "--model", str(tiny_onnx_model), "--index", index_name,
            "--failures", str(failures), "--batch-size", "4", "--bulk-docs", "5"]  # fmt: skip

    first = _index(engine_url, *args)
    assert first.exit_code == EXIT_SOME_FAILED, first.output
    summary = json.loads(first.stdout)
    assert summary["balanced"] and summary["discovered"] == messy.discovered
    assert summary["indexed"] == len(messy.good) and summary["skipped_duplicate"] == len(messy.duplicates)
    assert summary["failed"] == len(messy.bad)
    assert backend.count(index_name) == len(messy.good)
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert sorted(Path(r["path"]).name for r in rows) == sorted(p.name for p in messy.bad)
    assert {Path(r["path"]).name: r["kind"] for r in rows} == {p.name: k for p, k in messy.bad.items()}

    second = _index(engine_url, *args)
    again = json.loads(second.stdout)
    assert again["indexed"] == 0 and again["skipped_existing"] == len(messy.good) and again["balanced"]
    assert backend.count(index_name) == len(messy.good)

    # the search with an image's own tokens finds its document, scored by the exact dot product
    # (the tiny model has random weights, so other images may score as high: no rank is asserted)
    from stair_es.runtime import load_encoder
    from stair_es.sparse import truncate_9bit

    target = messy.good[3]
    vector = load_encoder(tiny_onnx_model, provider="cpu").encode_images([target])[0]
    hits = _search(
        backend, index_name, IMAGE_FIELD, dict(zip(vector.tokens, vector.weights.tolist())), size=20
    )
    by_path = {h["_source"]["path"]: h for h in hits}
    assert str(target.resolve()) in by_path
    hit = by_path[str(target.resolve())]
    assert hit["_source"]["caption"] == target.with_suffix(".txt").read_text().strip()
    expected = float((vector.weights * truncate_9bit(vector.weights)).sum())
    assert hit["_score"] == pytest.approx(expected, rel=0.02)


def test_engine_rejections_are_failures_with_reasons(
    engine_url: str, backend, index_name: str, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    """A document the engine refuses (metadata whose type conflicts with the mapping) is counted as
    failed, with the engine's reason and the file's path in the failures file; the others are indexed."""
    messy = make_messy_folder(tmp_path / "photos", num_images=4)
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"image": str(messy.good[0]), "caption": "first", "rating": 5},
        {"image": str(messy.good[1]), "caption": "second", "rating": {"stars": 4}},  # object vs long
        {"image": str(messy.good[2]), "caption": "third", "rating": 3},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    failures = tmp_path / "f.jsonl"
    result = _index(engine_url, "images", str(manifest), "--model", str(tiny_onnx_model), "--index", index_name,
                    "--failures", str(failures), "--bulk-docs", "1")  # fmt: skip
    assert result.exit_code == EXIT_SOME_FAILED, result.output
    summary = json.loads(result.stdout)
    assert (summary["indexed"], summary["failed"], summary["failed_by_kind"]) == (2, 1, {"engine": 1})
    (row,) = [json.loads(line) for line in failures.read_text().splitlines()]
    assert row["path"] == str(messy.good[1].resolve()) and row["stage"] == "engine"
    assert "mapper_parsing_exception" in row["reason"] or "illegal_argument" in row["reason"]
    assert backend.count(index_name) == 2


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus.jsonl"
    rows = [
        {"id": "r1", "text": "a red circle", "topic": "shapes"},
        {"text": "three green stars"},
        {"text": ""},
    ]
    corpus.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return corpus


def test_index_texts_into_engine(
    engine_url: str, backend, index_name: str, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    corpus = _corpus(tmp_path)
    args = ["texts", str(corpus), "--model", str(tiny_onnx_model), "--index", index_name, "--recreate"]
    first = _index(engine_url, *args)
    assert first.exit_code == EXIT_SOME_FAILED
    summary = json.loads(first.stdout)
    assert (summary["indexed"], summary["failed"], summary["balanced"]) == (2, 1, True)
    assert backend.count(index_name) == 2
    resumed = json.loads(_index(engine_url, *args[:-1]).stdout)
    assert resumed["indexed"] == 0 and resumed["skipped_existing"] == 2

    from stair_es.runtime import load_encoder

    vector = load_encoder(tiny_onnx_model, provider="cpu").encode_texts(["a red circle"])[0]
    hits = _search(backend, index_name, TEXT_FIELD, dict(zip(vector.tokens, vector.weights.tolist())))
    assert hits[0]["_id"] == "r1" and hits[0]["_source"]["user"] == {"topic": "shapes"}


def test_compact_index_from_the_cli_scores_like_a_plain_one(
    engine_url: str, backend, index_name: str, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    from stair_es.engine import Searcher
    from stair_es.engine.mappings import COMPACT_WEIGHT_SHIFT
    from stair_es.runtime import load_encoder

    corpus = _corpus(tmp_path)
    compact_name = f"{index_name}-compact"
    try:
        for name, extra in ((index_name, []), (compact_name, ["--compact"])):
            args = ["texts", str(corpus), "--model", str(tiny_onnx_model), "--index", name, "--recreate"]
            assert json.loads(_index(engine_url, *args, *extra).stdout)["indexed"] == 2
        meta = backend.index_meta(compact_name)
        assert (meta.weight_shift, meta.tokens_in_source) == (COMPACT_WEIGHT_SHIFT, False)
        assert backend.index_meta(index_name).weight_shift == 0
        encoder = load_encoder(tiny_onnx_model, provider="cpu")
        plain = Searcher(backend, index_name, encoder).search(text="a red circle", target="text")
        compact = Searcher(backend, compact_name, encoder).search(text="a red circle", target="text")
        assert [(h.id, h.score) for h in compact.hits] == [(h.id, h.score) for h in plain.hits]
        assert [h.explanation for h in compact.hits] == [h.explanation for h in plain.hits]
        assert TEXT_FIELD not in compact.hits[0].source
    finally:
        backend.delete_index(compact_name)
