"""stair-es eval in memory (--no-engine) with the tiny exported model on a generated captioned set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stair_es_cli.eval_cmd import render_report
from stair_es_cli.main import main


@pytest.fixture(scope="module")
def captioned_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stair_es.data.synthetic import SyntheticConfig, generate_synthetic

    root = tmp_path_factory.mktemp("eval-set")
    manifests = generate_synthetic(root, SyntheticConfig(num_images=16, image_size=32, test_fraction=0.5))
    return manifests["test"]


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), env={"STAIR_ES_URL": "http://127.0.0.1:9"})


def test_eval_in_memory_json(tiny_onnx_model: Path, captioned_set: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = invoke(
        "eval", str(captioned_set), "--model", str(tiny_onnx_model), "--no-engine", "--json", "-o", str(out)
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report == json.loads(out.read_text())
    assert report["task"] == "retrieval" and report["engine"] is None
    assert report["dataset"]["images"] == 8 and report["dataset"]["captions"] == 8
    for name in ("text_to_image", "image_to_text"):
        recalls = report["directions"][name]["memory"]
        assert list(recalls) == ["R@1", "R@5", "R@10"]
        assert recalls["R@1"] <= recalls["R@5"] <= recalls["R@10"] == 1.0  # 8 items: top 10 holds all


def test_eval_zeroshot_is_detected_and_a_broken_image_is_left_out(
    tiny_onnx_model: Path, captioned_set: Path
) -> None:
    root = captioned_set.parent
    rows = [json.loads(line) for line in captioned_set.read_text().splitlines()]
    (root / "broken.png").write_bytes(b"not a png")
    labelled = root / "labelled.jsonl"
    lines = [{"image": r["image"], "label": r["colours"][0]} for r in rows]
    lines.append({"image": "broken.png", "label": rows[0]["colours"][0]})
    labelled.write_text("".join(json.dumps(x) + "\n" for x in lines))
    result = invoke("eval", str(labelled), "--model", str(tiny_onnx_model), "--no-engine")
    assert result.exit_code == 0, result.output
    assert "zero-shot on labelled.jsonl: 8 images" in result.output
    assert "1 undecodable images left out" in result.output
    assert "image -> class" in result.output and "top1" in result.output


def test_eval_usage_errors(tiny_onnx_model: Path, captioned_set: Path, tmp_path: Path) -> None:
    result = invoke("eval", str(captioned_set), "--model", str(tiny_onnx_model), "--classes", "a,b")
    assert result.exit_code == 2 and "zero-shot" in result.output
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = invoke("eval", str(empty), "--model", str(tiny_onnx_model), "--no-engine")
    assert result.exit_code == 2 and "no image/caption pairs" in result.output


def test_eval_unreachable_engine_exits_3(tiny_onnx_model: Path, captioned_set: Path) -> None:
    result = invoke("eval", str(captioned_set), "--model", str(tiny_onnx_model), "--timeout", "2")
    assert result.exit_code == 3
    assert "cannot reach a search engine" in result.output


def test_render_report_side_by_side() -> None:
    direction = {
        "queries": 10,
        "memory": {"R@1": 0.5, "R@5": 0.9},
        "engine": {"R@1": 0.4, "R@5": 0.9},
        "top1_agreement": 0.9,
        "score_rel_diff_max": 0.002,
        "score_rel_diff_9bit_max": 1e-7,
        "pruned_queries": 3,
    }
    report = {
        "task": "retrieval",
        "dataset": {"name": "d.json", "split": "test", "images": 2, "captions": 10, "failed_images": 0},
        "model": {"id": "m", "provider": "CPUExecutionProvider"},
        "engine": {
            "engine": "OpenSearch 2.19.6",
            "index": "tmp",
            "kept": False,
            "mode": "exact",
            "documents": 12,
        },
        "directions": {"text_to_image": direction},
        "timings": {"encode_s": 1.0, "memory_s": 0.1, "index_s": 0.5, "engine_query_s": 2.0},
    }
    text = render_report(report)
    row = next(line for line in text.splitlines() if "R@1" in line)
    assert row.split()[-3:] == ["0.5000", "0.4000", "-0.1000"]
    assert "same first result for 90.0% of 10 queries" in text
    assert "3 queries pruned" in text and "(deleted)" in text and "(5/s)" in text
