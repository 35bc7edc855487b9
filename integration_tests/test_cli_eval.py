"""stair-es eval through a real engine with the tiny exported model: side-by-side numbers, engine
scores equal to exact 9-bit arithmetic, the temporary index deleted (or kept with --keep)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from stair_es.engine import Backend, ConnectionConfig, connect
from stair_es_cli.main import main


@pytest.fixture(scope="module")
def backend(engine_url: str) -> Iterator[Backend]:
    b = connect(ConnectionConfig(urls=engine_url))
    yield b
    b.close()


@pytest.fixture(scope="module")
def captioned_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stair_es.data.synthetic import SyntheticConfig, generate_synthetic

    root = tmp_path_factory.mktemp("eval-set")
    return generate_synthetic(root, SyntheticConfig(num_images=16, image_size=32, test_fraction=0.5))["test"]


def run(engine_url: str, model: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["eval", *args, "--model", str(model)], env={"STAIR_ES_URL": engine_url})


def report_of(result: Any) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def check_engine_side(direction: dict[str, Any]) -> None:
    assert direction["engine"] is not None and set(direction["engine"]) == set(direction["memory"])
    # the engine's score for its first hit is the exact dot product of the query tokens it was sent
    # with the 9-bit stored document weights, and within storage precision of the float32 score
    assert direction["score_rel_diff_9bit_max"] < 1e-4
    assert direction["score_rel_diff_max"] < 0.01
    assert 0.0 <= direction["top1_agreement"] <= 1.0


def test_retrieval_side_by_side_and_index_deleted(
    engine_url: str, tiny_onnx_model: Path, captioned_set: Path, backend: Backend
) -> None:
    report = report_of(run(engine_url, tiny_onnx_model, str(captioned_set), "--json"))
    assert report["engine"]["documents"] == 16  # 8 images + 8 captions
    assert report["engine"]["kept"] is False and not backend.index_exists(report["engine"]["index"])
    for name in ("text_to_image", "image_to_text"):
        direction = report["directions"][name]
        check_engine_side(direction)
        # 8 candidates and k=10: both sides return every document, so R@10 is 1 on both
        assert direction["memory"]["R@10"] == direction["engine"]["R@10"] == 1.0
    assert set(report["timings"]) == {"encode_s", "memory_s", "index_s", "engine_query_s"}


def test_keep_and_two_phase_table(
    engine_url: str, tiny_onnx_model: Path, captioned_set: Path, backend: Backend
) -> None:
    index = "stair-test-eval-kept"
    backend.delete_index(index)
    try:
        result = run(
            engine_url, tiny_onnx_model, str(captioned_set), "--keep", "--index", index, "--mode", "two-phase"
        )
        assert result.exit_code == 0, result.output
        assert backend.count(index) == 16
        assert f"index '{index}' (kept)" in result.stdout and "mode two_phase" in result.stdout
        header = next(line for line in result.stdout.splitlines() if "in memory" in line)
        assert header.split() == ["metric", "in", "memory", "engine", "diff"]
        assert "text -> image: same first result for" in result.stdout
        again = run(engine_url, tiny_onnx_model, str(captioned_set), "--index", index)
        assert again.exit_code == 3 and "already exists" in again.output  # never overwrites an index
    finally:
        backend.delete_index(index)


def test_zeroshot_through_the_engine(engine_url: str, tiny_onnx_model: Path, captioned_set: Path) -> None:
    rows = [json.loads(line) for line in captioned_set.read_text().splitlines()]
    labelled = captioned_set.parent / "labelled.jsonl"
    labelled.write_text(
        "".join(json.dumps({"image": r["image"], "label": r["colours"][0]}) + "\n" for r in rows)
    )
    classes = sorted({r["colours"][0] for r in rows} | {"white", "black", "gray"})
    report = report_of(
        run(
            engine_url,
            tiny_onnx_model,
            str(labelled),
            "--classes",
            ",".join(classes),
            "--template",
            "{label} shapes",
            "--json",
        )
    )
    assert report["task"] == "zeroshot" and report["dataset"]["classes"] == len(classes)
    assert report["engine"]["documents"] == len(classes)
    direction = report["directions"]["image_to_class"]
    check_engine_side(direction)
    assert list(direction["memory"]) == ["top1", "top5"]
