"""Real captioned images (scikit-learn's handwritten digits, two captions per image): the held-out
numbers in the training log are the numbers `stair-es eval --relevance caption` reports for the
exported model on the same file (issue 11: the log said 0.16 where eval said 0.88)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stair_es_cli.main import main

pytest.importorskip("torch")
pytest.importorskip("sklearn")


def test_training_log_and_eval_agree_on_held_out_recall(tmp_path: Path) -> None:
    from stair_es.data.digits import write_digits

    manifests = write_digits(tmp_path / "digits", captions_per_image=2, test_fraction=0.1)
    runner = CliRunner()
    args = ["train", "--data", str(manifests["train"]), "--eval-data", str(manifests["test"]), "--output",
            str(tmp_path / "m"), "--stage", "3", "--steps", "40", "--batch-size", "32", "--max-pairs", "800",
            "--lr", "3e-3", "--image-size", "32", "--patch-size", "8", "--hidden-size", "32", "--layers", "1",
            "--quiet", "--json"]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    logged = json.loads(result.output.strip().splitlines()[-1])["final_metrics"]
    assert logged["eval_images"] == 180 and logged["eval_captions"] == 360
    result = runner.invoke(main, ["export", str(tmp_path / "m"), str(tmp_path / "onnx")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["eval", str(manifests["test"]), "--model", str(tmp_path / "onnx"), "--relevance",
                                  "caption", "--no-engine", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dataset"]["images"] == 180 and report["dataset"]["captions"] == 360
    for direction, prefix in (("text_to_image", "t2i"), ("image_to_text", "i2t")):
        memory = report["directions"][direction]["memory"]
        for k in (1, 5, 10):
            assert memory[f"R@{k}"] == pytest.approx(logged[f"{prefix}_r{k}"], abs=0.006), (direction, k)
    assert 0 < logged["t2i_r1"] < 1 and 0 < logged["i2t_r1"] < 1  # the agreement is not two zeros (or ones)
