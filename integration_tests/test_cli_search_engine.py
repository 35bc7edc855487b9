"""stair-es search on a real engine with the tiny exported model: table and JSON output, ranking
equal to the exact dot product, image queries, filters, targets, two-phase, hybrid, no hits, model
mismatch. Documents are indexed through the library (stair_es.engine + the runtime encoder)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stair_es.engine import Backend, ConnectionConfig, Document, Indexer, ModelMeta, connect
from stair_es.engine.search import brute_force_top_k
from stair_es_cli.main import main


@pytest.fixture(scope="module")
def backend(engine_url: str) -> Iterator[Backend]:
    b = connect(ConnectionConfig(urls=engine_url))
    yield b
    b.close()


@pytest.fixture(scope="module")
def corpus(
    tiny_onnx_model: Path, backend: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """12 synthetic images with captions, indexed with both token fields; split stored in user.*."""
    from stair_es.data.synthetic import SyntheticConfig, generate_synthetic
    from stair_es.runtime import load_encoder

    root = tmp_path_factory.mktemp("search-set")
    manifest = generate_synthetic(root, SyntheticConfig(num_images=12, image_size=32, test_fraction=0.5))
    rows = []
    for split, path in manifest.items():
        rows += [dict(json.loads(line), split=split) for line in path.read_text().splitlines()]
    encoder = load_encoder(tiny_onnx_model, provider="cpu")
    image_vecs = encoder.encode_images([str(root / r["image"]) for r in rows])
    text_vecs = encoder.encode_texts([r["caption"] for r in rows])
    index = f"stair-test-cli-{uuid.uuid4().hex[:8]}"
    backend.create_index(index, ModelMeta(encoder.model_id, encoder.vocab_hash))
    docs = [
        Document(
            id=f"d{i}",
            image_tokens=iv,
            text_tokens=tv,
            caption=r["caption"],
            path=r["image"],
            user={"split": r["split"]},
        )
        for i, (r, iv, tv) in enumerate(zip(rows, image_vecs, text_vecs, strict=True))
    ]
    summary = Indexer(backend, index).index_documents(docs)
    assert summary.indexed == len(rows)
    yield {
        "index": index,
        "rows": rows,
        "root": root,
        "encoder": encoder,
        "image_vecs": image_vecs,
        "text_vecs": text_vecs,
    }
    backend.delete_index(index)


def run(engine_url: str, model: Path, *args: str):
    return CliRunner().invoke(
        main, ["search", *args, "--model", str(model)], env={"STAIR_ES_URL": engine_url}
    )


def as_json(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_text_query_json_ranks_by_exact_dot_product(
    engine_url: str, tiny_onnx_model: Path, corpus: dict
) -> None:
    query = "two small red circles"
    data = as_json(run(engine_url, tiny_onnx_model, query, "--index", corpus["index"], "-k", "5", "--json"))
    hits = data["hits"]
    assert len(hits) == 5 and data["mode"] == "exact" and data["engine"]
    vec = corpus["encoder"].encode_texts([query])[0]
    docs = [(f"d{i}", v) for i, v in enumerate(corpus["image_vecs"])]
    expected = brute_force_top_k(vec, docs, k=5)  # 9-bit truncated document weights, like the engine
    assert [h["id"] for h in hits] == [doc_id for doc_id, _ in expected]
    for hit, (_, score) in zip(hits, expected, strict=True):
        assert hit["score"] == pytest.approx(score, rel=1e-4)
        assert hit["explained_score"] == pytest.approx(hit["score"], rel=1e-4)
        assert hit["field"] == "image_tokens"
        assert hit["source"]["path"].startswith("images/") and "image_tokens" not in hit["source"]
        contributions = [row["contribution"] for row in hit["explanation"]]
        assert contributions == sorted(contributions, reverse=True) and len(contributions) == 10


def test_table_output_and_explain(engine_url: str, tiny_onnx_model: Path, corpus: dict) -> None:
    result = run(
        engine_url,
        tiny_onnx_model,
        "a red circle",
        "--index",
        corpus["index"],
        "-k",
        "3",
        "--top-tokens",
        "2",
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith('"a red circle" -> ') and "mode exact" in lines[0]
    ranks = [line for line in lines if line.strip()[:2] in ("1 ", "2 ", "3 ")]
    assert len(ranks) == 3 and all("images/" in line and "more)" in line for line in ranks)
    full = run(
        engine_url, tiny_onnx_model, "a red circle", "--index", corpus["index"], "-k", "1", "--explain"
    )
    assert full.exit_code == 0
    assert "contribution" in full.stdout and "sum of contributions" in full.stdout


def test_image_query_finds_itself_first(engine_url: str, tiny_onnx_model: Path, corpus: dict) -> None:
    image = corpus["root"] / corpus["rows"][3]["image"]
    data = as_json(
        run(engine_url, tiny_onnx_model, "--image", str(image), "--index", corpus["index"], "--json")
    )
    assert data["query"]["image"] == str(image)
    # the image's own vector is the best match unless another image has a larger dot product;
    # check against the brute-force ranking rather than assuming
    vec = corpus["image_vecs"][3]
    expected = brute_force_top_k(vec, [(f"d{i}", v) for i, v in enumerate(corpus["image_vecs"])], k=10)
    assert [h["id"] for h in data["hits"]] == [d for d, _ in expected]


def test_filters_target_text_and_two_phase(engine_url: str, tiny_onnx_model: Path, corpus: dict) -> None:
    index = corpus["index"]
    test_ids = {f"d{i}" for i, r in enumerate(corpus["rows"]) if r["split"] == "test"}
    data = as_json(
        run(
            engine_url,
            tiny_onnx_model,
            "a shape",
            "--index",
            index,
            "--filter",
            "user.split=test",
            "--json",
            "-k",
            "20",
        )
    )
    assert {h["id"] for h in data["hits"]} == test_ids
    data = as_json(
        run(
            engine_url,
            tiny_onnx_model,
            "a shape",
            "--index",
            index,
            "--filter-json",
            '{"term": {"user.split": "train"}}',
            "--json",
            "-k",
            "20",
        )
    )
    assert {h["id"] for h in data["hits"]}.isdisjoint(test_ids) and data["hits"]
    text = as_json(
        run(engine_url, tiny_onnx_model, "a shape", "--index", index, "--target", "text", "--json")
    )
    assert {h["field"] for h in text["hits"]} == {"text_tokens"}
    exact = as_json(run(engine_url, tiny_onnx_model, "blue squares", "--index", index, "--json"))
    two = as_json(
        run(engine_url, tiny_onnx_model, "blue squares", "--index", index, "--mode", "two-phase", "--json")
    )
    assert two["mode"] == "two_phase"
    assert [h["id"] for h in two["hits"]] == [h["id"] for h in exact["hits"]]  # window covers all 12 docs
    assert [h["score"] for h in two["hits"]] == pytest.approx([h["score"] for h in exact["hits"]], rel=1e-5)


def test_hybrid_tokens_bm25_and_show_query(engine_url: str, tiny_onnx_model: Path, corpus: dict) -> None:
    index = corpus["index"]
    caption = corpus["rows"][0]["caption"]
    hybrid = as_json(
        run(engine_url, tiny_onnx_model, caption, "--index", index, "--hybrid", "--json", "-k", "3")
    )
    assert hybrid["mode"] == "hybrid" and hybrid["hits"][0]["score"] > hybrid["hits"][0]["explained_score"]
    bm25 = as_json(
        run(engine_url, tiny_onnx_model, caption, "--index", index, "--mode", "bm25", "--json", "-k", "1")
    )
    assert bm25["hits"][0]["source"]["caption"] == caption
    token = corpus["image_vecs"][5].tokens[0]
    tokens = as_json(
        run(engine_url, tiny_onnx_model, "--tokens", json.dumps({token: 2.0}), "--index", index, "--json")
    )
    assert all(h["explanation"][0]["token"] == token for h in tokens["hits"])
    shown = run(engine_url, tiny_onnx_model, "red", "--index", index, "--show-query")
    body = json.loads(shown.stdout)
    first = body["query"]["bool"]["should"][0]
    # linear rank_feature clauses, or term clauses on sparse_vector fields (ES 8/9 without mapper-extras)
    assert shown.exit_code == 0 and (first.get("rank_feature", {}).get("linear") == {} or "term" in first)


def test_no_hits_exit_1_and_model_mismatch_exit_5(
    engine_url: str, tiny_onnx_model: Path, corpus: dict, backend: Backend
) -> None:
    index = corpus["index"]
    none = run(engine_url, tiny_onnx_model, "red", "--index", index, "--filter", "user.split=nope")
    assert none.exit_code == 1 and "no hits" in none.stdout
    other = f"stair-test-other-{uuid.uuid4().hex[:8]}"
    backend.create_index(other, ModelMeta("another-model", "f" * 64))
    try:
        result = run(engine_url, tiny_onnx_model, "red", "--index", other)
        assert result.exit_code == 5
        assert "another-model" in result.output and len(result.output.strip().splitlines()) == 1
    finally:
        backend.delete_index(other)
    missing = run(engine_url, tiny_onnx_model, "red", "--index", "stair-test-does-not-exist")
    assert missing.exit_code == 2 and "does not exist" in missing.output  # a usage mistake, not the engine's
    typo = corpus["index"][:-1] + ("x" if not corpus["index"].endswith("x") else "y")
    mistyped = run(engine_url, tiny_onnx_model, "red", "--index", typo)
    assert mistyped.exit_code == 2 and f"did you mean '{corpus['index']}'" in mistyped.output, mistyped.output
    assert len(mistyped.output.strip().splitlines()) == 1


def test_tokens_query_needs_no_model(engine_url: str, corpus: dict) -> None:
    token = corpus["text_vecs"][0].tokens[0]
    result = CliRunner().invoke(
        main,
        [
            "search",
            "--tokens",
            json.dumps({token: 1.0}),
            "--index",
            corpus["index"],
            "--target",
            "text",
            "--json",
        ],
        env={"STAIR_ES_URL": engine_url, "STAIR_ES_MODEL": "/nonexistent"},
    )
    data = as_json(result)
    assert data["hits"] and all(h["explanation"][0]["token"] == token for h in data["hits"])


def test_native_modes_by_engine(engine_url: str, backend: Backend, corpus: dict) -> None:
    """``native`` where the engine has a native sparse query (ES 9: ``sparse_vector``, exact, the
    same hits and scores as exact mode; ``native-pruned`` its approximate pruning), else one line."""
    vec = corpus["image_vecs"][3]
    tokens = json.dumps(dict(zip(vec.tokens, vec.weights.tolist(), strict=True)))
    base = ["search", "--tokens", tokens, "--index", corpus["index"], "--json", "-k", "5"]
    env = {"STAIR_ES_URL": engine_url}
    exact = as_json(CliRunner().invoke(main, base, env=env))
    native = CliRunner().invoke(main, [*base, "--mode", "native"], env=env)
    pruned = CliRunner().invoke(main, [*base, "--mode", "native-pruned"], env=env)
    meta = backend.index_meta(corpus["index"])
    if meta.token_field_type == "sparse_vector" and backend.has_sparse_vector_query:
        got = as_json(native)
        assert [h["id"] for h in got["hits"]] == [h["id"] for h in exact["hits"]]
        for a, b in zip(got["hits"], exact["hits"], strict=True):
            assert a["score"] == pytest.approx(b["score"], rel=1e-6)
        assert as_json(pruned)["hits"]  # approximate: its top-k is measured by the benchmarks
        return
    for result in (native, pruned):
        assert result.exit_code in (2, 3), result.output
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and "Traceback" not in result.output, result.output
        assert "use mode 'exact'" in lines[0] or "use mode 'native'" in lines[0], lines[0]
