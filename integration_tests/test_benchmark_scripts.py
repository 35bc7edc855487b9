"""The engine benchmarks run end to end on a tiny corpus (their figures come from full-size runs;
this only keeps the scripts working and their JSON keys stable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _run(engine_url: str, script: str, *args: str, timeout: float = 300) -> dict:
    env = {**os.environ, "STAIR_ES_URL": engine_url}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_search_latency_reports_both_query_profiles(engine_url: str) -> None:
    result = _run(engine_url, "search_latency.py", "--docs", "300", "--queries", "4", "--warmup", "1",
                  "--tokens-in-source", "no", "--retention-wait", "0", "--index", "stair-bench-smoke")  # fmt: skip
    for key in (
        "two_phase_speedup",
        "two_phase_top10_overlap",
        "exact_vs_bm25_p50",
        "bytes_per_doc_vs_dense512",
    ):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert set(result["profiles"]) == {"text", "image"}
    text, image = result["profiles"]["text"], result["profiles"]["image"]
    assert 15 <= text["mean_query_tokens"] <= 30 and 50 <= image["mean_query_tokens"] <= 150
    assert result["docs"] == 300


def test_index_size_prices_document_pruning(engine_url: str) -> None:
    result = _run(engine_url, "index_size.py", "--docs", "300", "--retention-wait", "0",
                  "--variants", "no_token_source,no_token_source_doc_mass_0.9")  # fmt: skip
    pruned = result["no_token_source_doc_mass_0.9"]
    assert pruned["bytes_per_doc"] < result["no_token_source"]["bytes_per_doc"]
    quality = pruned["text_queries"]
    assert quality["mean_doc_tokens"] < quality["mean_doc_tokens_unpruned"]
    assert 0 < quality["topk_overlap_vs_unpruned"] <= 1


def test_quality_short_queries_runs_every_system_through_the_engine(engine_url: str, tmp_path: Path) -> None:
    result = _run(
        engine_url,
        "quality_short_queries.py",
        "--json",
        "--preset",
        "tiny",
        "--collection-images",
        "60",
        "--val-images",
        "40",
        "--min-relevant",
        "1",
        "--clip-grid",
        "1e-3:0.07",
        "--index",
        "stair-bench-sq-smoke",
        "--threads",
        "1",
        "--workdir",
        str(tmp_path),
        timeout=900,
    )  # fmt: skip (training + export + indexing)
    families = {"colour+shape", "count+shape", "size+shape", "colour+shape+position", "single word"}
    for system in ("stair", "clip", "bm25"):
        report = result[system]
        assert 0 <= report["p_at_5"] <= 1 and 0 <= report["p_at_1"] <= 1, system
        assert set(report["families"]) == families and report["queries"] > 0
    # BM25 over the ground-truth captions finds what the queries name: the hits map back to the
    # collection and relevance is read from the right scenes (a broken mapping scores about 0)
    assert result["bm25"]["full_caption_r1"] >= 0.9
    if result["details"]["caption_analyzer"] == "english":  # stemming: "circles" meets "circle"
        assert result["bm25"]["p_at_1"] >= 0.9
    assert result["details"]["indexed"] == 60


def test_search_load_runs_concurrent_clients_for_both_modes(engine_url: str) -> None:
    result = _run(engine_url, "search_load.py", "--docs", "300", "--clients", "2", "--seconds", "1",
                  "--warmup", "0.2", "--queries", "5", "--index", "stair-bench-load-smoke", "--json")  # fmt: skip
    for mode in ("exact", "two_phase"):
        m = result["modes"][mode]
        assert m["queries"] > 0 and m["errors"] == 0 and m["p99_ms"] >= m["p50_ms"] > 0, m
    assert result["docs"] == 300 and result["errors"] == 0


def test_quality_d2s_runs_end_to_end(engine_url: str, tmp_path: Path) -> None:
    """Tiny sizes: a CLIPModel trained and saved, --from-clip, export, eval and short queries on the engine."""
    result = _run(engine_url, "quality_d2s.py", "--json", "--num-images", "120", "--test-images", "20",
                  "--dense-steps", "4", "--d2s-steps", "3", "--patch-size", "16", "--hidden-size", "32",
                  "--layers", "1", "--batch-size", "8", "--collection-images", "60", "--min-relevant", "1",
                  "--index", "stair-bench-d2s-smoke", "--threads", "1", "--workdir", str(tmp_path),
                  timeout=900)  # fmt: skip
    for side in ("dense", "d2s"):
        assert 0 <= result[side]["short_query_p_at_5"] <= 1 and result[side]["steps"] > 0
    assert 0 <= result["d2s"]["t2i_r1_engine"] <= 1 and 0 < result["d2s"]["active_fraction"] <= 1
    assert set(result["target"]) == {
        "r1_kept_t2i",
        "r1_kept_i2t",
        "active_fraction",
        "steps_vs_three_stage",
        "met",
    }
    assert (
        result["details"]["command"].startswith("stair-es train")
        and "--from-clip" in result["details"]["command"]
    )
    assert (tmp_path / "clip" / "config.json").is_file() and (tmp_path / "clip" / "tokenizer.json").is_file()
