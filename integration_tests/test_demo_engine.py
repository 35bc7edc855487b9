"""`stair-es demo` end to end on the real engine, with the tiny model standing in for the demo model
(the shipped demo model is exercised by the README command; this test checks the flow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stair_es_cli.main import main


@pytest.fixture()
def demo_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STAIR_ES_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_demo_indexes_reports_broken_files_and_searches(
    engine_url: str, tiny_onnx_model: Path, demo_cache: Path
):
    from stair_es.demo import DEMO_INDEX, DEMO_TEXT_QUERIES
    from stair_es.engine import ModelMeta, connect

    backend = connect(urls=engine_url)
    # a demo index left by another model (an earlier run with the demo model, say): the demo owns
    # this index and rebuilds it instead of stopping at the model mismatch
    backend.delete_index(DEMO_INDEX)
    backend.create_index(DEMO_INDEX, ModelMeta("some-other-model", "0" * 16))
    try:
        args = ["demo", "--url", engine_url, "--model", str(tiny_onnx_model), "--images", "12"]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        out = result.output
        assert "holds tokens of model 'some-other-model'" in out and "recreating it" in out, out
        assert "12 indexed" in out and "2 failed" in out, out
        assert "error:" not in out, out
        for query in DEMO_TEXT_QUERIES:
            assert f"stair-es search '{query}'" in out
        failures = [
            json.loads(line) for line in (demo_cache / "demo" / "failures.jsonl").read_text().splitlines()
        ]
        assert sorted(Path(f["path"]).name for f in failures) == [
            "broken-truncated.jpg",
            "not-really-an-image.png",
        ]
        backend.refresh(DEMO_INDEX)
        assert backend.count(DEMO_INDEX) == 12

        # a second run is idempotent: nothing new is indexed, the count stays
        again = CliRunner().invoke(main, args)
        assert again.exit_code == 0, again.output
        assert "recreating" not in again.output
        assert "0 indexed, 12 skipped" in again.output
        assert backend.count(DEMO_INDEX) == 12

        # a smaller sample collection indexes exactly that many (it used to reuse the 12)
        fewer = CliRunner().invoke(main, [*args[:-1], "5"])
        assert fewer.exit_code == 0, fewer.output
        assert "5 indexed" in fewer.output and "2 failed, of 7 images discovered" in fewer.output, (
            fewer.output
        )
        backend.refresh(DEMO_INDEX)
        assert backend.count(DEMO_INDEX) == 5
    finally:
        backend.delete_index(DEMO_INDEX)


def test_shipped_demo_model_answers_the_demos_queries(engine_url: str, demo_cache: Path):
    """Issue 10: the demo's printed queries (and its closing hint) must find what they name, with the
    model that ships in the package, through the engine, on the demo's own 240 images."""
    from stair_es.demo import DEMO_HINT_QUERY, DEMO_INDEX, DEMO_TEXT_QUERIES, shipped_demo_model
    from stair_es.engine import Searcher, connect
    from stair_es.eval.short_queries import caption_answers
    from stair_es.runtime import load_encoder

    backend = connect(urls=engine_url)
    backend.delete_index(DEMO_INDEX)
    try:
        result = CliRunner().invoke(main, ["demo", "--url", engine_url])
        assert result.exit_code == 0, result.output
        assert "DEMO MODEL" in result.output and "240 indexed" in result.output, result.output
        for query in DEMO_TEXT_QUERIES:
            assert f'ok: 3 of the top 3 hold what "{query}" names' in result.output, result.output
        assert "MISS" not in result.output, result.output
        searcher = Searcher(backend, DEMO_INDEX, load_encoder(shipped_demo_model()))
        hits = searcher.search(text=DEMO_HINT_QUERY, k=3, explain=False).hits
        assert [caption_answers(DEMO_HINT_QUERY, h.source.get("caption")) for h in hits] == [True] * 3
    finally:
        backend.delete_index(DEMO_INDEX)
