"""Hostile or mistaken queries on a real engine (issue 12, item 7) and index layout options:
engine 400s caused by user input exit 2, scores never overflow to inf, a long hybrid query stays
under the clause cap, index patterns are model-checked, and --shards/--replicas shape new indexes."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from stair_es.engine import Backend, ConnectionConfig, Document, Indexer, ModelMeta, connect
from stair_es_cli.main import main


@pytest.fixture(scope="module")
def backend(engine_url: str) -> Iterator[Backend]:
    b = connect(ConnectionConfig(urls=engine_url))
    yield b
    b.close()


@pytest.fixture(scope="module")
def two_indexes(backend: Backend, tiny_onnx_model: Path) -> Iterator[tuple[str, str]]:
    """``<p>-a`` built with the tiny model, ``<p>-b`` with another model id; both hold two docs."""
    from stair_es.runtime import load_encoder

    encoder = load_encoder(tiny_onnx_model, provider="cpu")
    prefix = f"stair-test-inputs-{uuid.uuid4().hex[:8]}"
    models = {"a": ModelMeta(encoder.model_id, encoder.vocab_hash), "b": ModelMeta("other-model", "v")}
    for suffix, model in models.items():
        backend.create_index(f"{prefix}-{suffix}", model)
        docs = [
            Document(
                id="big", image_tokens={"red": 2.0, "blue": 1.5}, caption="a red and blue scene", width=10
            ),
            Document(id="small", image_tokens={"red": 0.5}, caption="a small red dot", width=20),
        ]
        assert Indexer(backend, f"{prefix}-{suffix}").index_documents(docs).indexed == 2
    yield f"{prefix}-a", f"{prefix}-b"
    for suffix in models:
        backend.delete_index(f"{prefix}-{suffix}")


def search(engine_url: str, *args: str):
    return CliRunner().invoke(main, ["search", *args], env={"STAIR_ES_URL": engine_url})


@pytest.mark.parametrize(
    "args",
    [
        ["--offset", "20000"],
        ["--filter", "width>=abc"],
        ["--filter-json", '{"range": {"width": {"gte": "x"}}}'],
    ],
)
def test_engine_400s_caused_by_user_input_exit_2(engine_url: str, two_indexes, args: list[str]) -> None:
    result = search(engine_url, "--tokens", '{"red": 1}', "--index", two_indexes[0], *args)
    assert result.exit_code == 2, result.output
    assert "HTTP 400" in result.output and "Traceback" not in result.output


def test_huge_weights_score_finite_and_json_stays_strict(engine_url: str, two_indexes) -> None:
    result = search(
        engine_url, "--tokens", '{"red": 3e38, "blue": 3e38}', "--index", two_indexes[0], "--json"
    )
    assert result.exit_code == 0, result.output
    assert "Infinity" not in result.stdout and "NaN" not in result.stdout
    hits = json.loads(result.stdout)["hits"]
    assert [h["id"] for h in hits] == ["big", "small"]
    assert hits[0]["score"] == pytest.approx(3e38 * 2.0 + 3e38 * 1.5, rel=1e-3)  # 1.05e39: past float32


def test_a_long_hybrid_query_stays_under_the_clause_cap(
    engine_url: str, two_indexes, tiny_onnx_model: Path
) -> None:
    text = " ".join(f"red{i} blue{i}" for i in range(1500))
    for extra in (["--hybrid"], ["--mode", "bm25"]):
        result = search(engine_url, text, "--index", two_indexes[0], "--model", str(tiny_onnx_model), *extra)
        assert result.exit_code in (0, 1), result.output  # hits or none, never an engine error
        assert "too_many" not in result.output and "BM25 text cut" in result.output


def test_index_patterns_are_model_checked(engine_url: str, two_indexes, tiny_onnx_model: Path) -> None:
    pattern = two_indexes[0][:-2] + "-*"
    for target in (pattern, f"{two_indexes[0]},{two_indexes[1]}"):
        result = search(engine_url, "red", "--index", target, "--model", str(tiny_onnx_model))
        assert result.exit_code == 5, result.output
        assert "built differently" in result.output
    alone = search(engine_url, "red", "--index", two_indexes[0] + "*", "--model", str(tiny_onnx_model))
    assert alone.exit_code in (0, 1), alone.output  # a pattern matching one stair-es index is fine


def test_shards_and_replicas_shape_a_new_index(
    engine_url: str, backend: Backend, tiny_onnx_model: Path, tmp_path: Path
) -> None:
    corpus = tmp_path / "texts.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"a red shape number {i}"}) + "\n" for i in range(5)))
    index = f"stair-test-layout-{uuid.uuid4().hex[:8]}"
    args = ["index", "texts", str(corpus), "--model", str(tiny_onnx_model), "--index", index]
    try:
        first = CliRunner().invoke(
            main, [*args, "--shards", "3", "--replicas", "1"], env={"STAIR_ES_URL": engine_url}
        )
        assert first.exit_code == 0, first.output
        settings = backend.get_settings(index)
        assert (settings["number_of_shards"], settings["number_of_replicas"]) == ("3", "1")
        assert backend.count(index) == 5
        again = CliRunner().invoke(main, [*args, "--shards", "2"], env={"STAIR_ES_URL": engine_url})
        assert again.exit_code == 0 and "--shards/--replicas apply to new indexes" in again.output
    finally:
        backend.delete_index(index)

    from stair_es.runtime import load_encoder

    encoder = load_encoder(tiny_onnx_model, provider="cpu")
    backend.create_index(index, ModelMeta(encoder.model_id, encoder.vocab_hash), shards=2, replicas=0)
    try:
        assert backend.get_settings(index)["number_of_shards"] == "2"
    finally:
        backend.delete_index(index)
