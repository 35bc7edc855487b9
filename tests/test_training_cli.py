"""`stair-es make-synthetic` and `stair-es train` through click's CliRunner (tiny preset, seconds)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from stair_es_cli.main import main


def test_make_synthetic_writes_manifests(tmp_path) -> None:
    result = CliRunner().invoke(
        main,
        ["make-synthetic", str(tmp_path / "syn"), "--num-images", "12", "--seed", "3", "--image-size", "32"],
    )
    assert result.exit_code == 0, result.output
    assert "train: 11 pairs" in result.output and "test: 1 pairs" in result.output
    rows = [json.loads(line) for line in (tmp_path / "syn" / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 11 and (tmp_path / "syn" / rows[0]["image"]).is_file()


def test_make_synthetic_rejects_bad_fractions(tmp_path) -> None:
    result = CliRunner().invoke(
        main, ["make-synthetic", str(tmp_path), "--test-fraction", "0.8", "--val-fraction", "0.3"]
    )
    assert result.exit_code == 2 and "fraction" in result.output


def test_train_needs_data(tmp_path) -> None:
    result = CliRunner().invoke(main, ["train", "--output", str(tmp_path / "m")])
    assert result.exit_code == 2 and "--data is required" in result.output


def test_train_tiny_preset_writes_a_loadable_model(tmp_path) -> None:
    pytest.importorskip("torch")
    from stair_es.model import StairModel

    runner = CliRunner()
    assert runner.invoke(main, ["make-synthetic", str(tmp_path / "syn"), "--num-images", "40", "--image-size", "32",
                                "--test-fraction", "0.2"]).exit_code == 0  # fmt: skip
    args = ["train", "--preset", "tiny", "--data", str(tmp_path / "syn" / "train.jsonl"),
            "--eval-data", str(tmp_path / "syn" / "test.jsonl"), "--output", str(tmp_path / "m"), "--quiet"]  # fmt: skip
    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert "t2i_r1" in summary["final_metrics"]
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert [s["config"]["stage"] for s in record["stages"]] == ["1", "2", "3"]
    assert record["recipe"] == "tiny" and record["command"].startswith("stair-es train --data ")
    assert "--preset tiny" in record["command"] and "--resume" not in record["command"]
    assert "--json" not in record["command"]  # how to output is not part of the recipe
    model = StairModel.from_pretrained(tmp_path / "m")
    assert model.config.vocab_size >= 1000
    # a resumed run with every stage finished only reloads and re-saves
    again = runner.invoke(main, [*args, "--resume"])
    assert again.exit_code == 0, again.output


def test_train_single_stage_custom_and_errors(tmp_path) -> None:
    pytest.importorskip("torch")
    runner = CliRunner()
    runner.invoke(main, ["make-synthetic", str(tmp_path / "syn"), "--num-images", "20", "--image-size", "32"])
    data = str(tmp_path / "syn" / "train.jsonl")
    small = ["--image-size", "32", "--patch-size", "8", "--hidden-size", "32", "--layers", "1"]
    result = runner.invoke(main, ["train", "--data", data, "--output", str(tmp_path / "m"), "--stage", "2",
                                  "--steps", "2", "--batch-size", "4", "--quiet", *small])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert [s["config"]["stage"] for s in record["stages"]] == ["2"]
    conv = runner.invoke(main, ["train", "--data", data, "--output", str(tmp_path / "c"), "--stage", "1",
                                "--steps", "2", "--batch-size", "4", "--quiet", "--vision-stem", "conv",
                                "--tag-weight", "2.5", "--pool-temperature", "0.5", *small])  # fmt: skip
    assert conv.exit_code == 0, conv.output
    from stair_es.model import StairModel

    assert StairModel.from_pretrained(tmp_path / "c").config.vision_stem == "conv"
    stage = json.loads((tmp_path / "c" / "training.json").read_text())["stages"][0]
    assert stage["config"]["tag_weight"] == 2.5 and stage["config"]["pool_temperature"] == 0.5
    too_big = runner.invoke(main, ["train", "--data", data, "--output", str(tmp_path / "x"), "--batch-size", "64",
                                   *small])  # fmt: skip
    assert too_big.exit_code == 2 and "exceeds" in too_big.output
    d2s = runner.invoke(
        main, ["train", "--data", data, "--output", str(tmp_path / "y"), "--stage", "dense-to-sparse"]
    )
    assert d2s.exit_code == 2 and "pretrained towers" in d2s.output


def test_preset_without_data_generates_its_synthetic_set(tmp_path) -> None:
    pytest.importorskip("torch")
    result = CliRunner().invoke(
        main, ["train", "--preset", "tiny", "--output", str(tmp_path / "m"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m" / "data" / "train.jsonl").is_file() and (
        tmp_path / "m" / "data" / "test.jsonl"
    ).is_file()
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert record["reproduce"].startswith("stair-es train --preset tiny") and record["eval_pairs"] == 12


def test_training_progress_is_readable_and_the_log_keeps_json(tmp_path) -> None:
    pytest.importorskip("torch")
    runner = CliRunner()
    runner.invoke(main, ["make-synthetic", str(tmp_path / "syn"), "--num-images", "24", "--image-size", "32",
                         "--test-fraction", "0.25"])  # fmt: skip
    args = ["train", "--preset", "tiny", "--steps", "12", "--data", str(tmp_path / "syn" / "train.jsonl"),
            "--eval-data", str(tmp_path / "syn" / "test.jsonl"), "--output", str(tmp_path / "m")]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.lstrip().startswith("{")], lines  # no raw JSON for people
    assert any(line.startswith("stage 1 step ") and "loss" in line and "s/step" in line for line in lines), (
        lines
    )
    assert any("held-out:" in line and "t2i_r1" in line for line in lines), lines
    assert result.stdout.startswith(f"trained model in {tmp_path / 'm'}")
    logged = [json.loads(line) for line in (tmp_path / "m" / "train_log.jsonl").read_text().splitlines()]
    assert logged and all("step" in record for record in logged)


def test_describe_record_lines() -> None:
    from stair_es.training.trainer import describe_record

    step = {"contrastive": 2.5, "flops_image": 0.25, "tagging": 1.5, "total": 4.25, "active_image": 1980.4,
            "active_text": 6.0, "step": 30, "stage": "1", "lr": 1e-3, "temperature": 0.07, "sec_per_step": 0.5}  # fmt: skip
    line = describe_record(step, 150)
    assert line == (
        "stage 1 step 30/150 loss 4.25 (contrastive 2.5, tagging 1.5), active tokens 1980 image / 6 text, "
        "0.50 s/step, ETA 1m00s"
    )
    held = describe_record({"step": 150, "stage": "3", "eval": {"t2i_r1": 0.5, "i2t_r1": 0.25}}, 150)
    assert held == "stage 3 step 150/150 held-out: t2i_r1 0.500, i2t_r1 0.250"
