"""Training that scales, checked on CPU: decode workers, bf16 autocast, torchrun/DDP on gloo, resume."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from stair_es.data import SyntheticConfig, generate_synthetic, read_jsonl  # noqa: E402
from stair_es.model.testing import tiny_model  # noqa: E402
from stair_es.training.batches import load_pairs  # noqa: E402
from stair_es.training.streaming import DataOptions, random_crop, stream_pairs  # noqa: E402
from stair_es.training.trainer import TrainConfig, Trainer  # noqa: E402
from stair_es_cli.main import main  # noqa: E402

SMALL = ["--image-size", "32", "--patch-size", "8", "--hidden-size", "32", "--layers", "1"]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("scale")
    generate_synthetic(root, SyntheticConfig(num_images=40, seed=3, test_fraction=0.2, image_size=32))
    return root


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _train(runner: CliRunner, synthetic: Path, out: Path, *extra: str) -> None:
    args = ["train", "--data", str(synthetic / "train.jsonl"), "--output", str(out), "--stage", "3",
            "--steps", "3", "--batch-size", "4", "--quiet", *SMALL, *extra]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output


def test_decode_workers_train_exactly_like_the_in_memory_path(synthetic: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    _train(runner, synthetic, tmp_path / "memory", "--workers", "0")
    _train(runner, synthetic, tmp_path / "workers", "--workers", "2")
    memory, workers = _weights(tmp_path / "memory"), _weights(tmp_path / "workers")
    assert memory.keys() == workers.keys()
    for name, value in memory.items():
        assert torch.equal(value, workers[name]), name


def test_a_corrupt_image_found_by_a_worker_is_replaced_and_reported(synthetic: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(synthetic, data)
    pairs = read_jsonl(data / "train.jsonl")
    broken = pairs[5].image
    broken.write_bytes(broken.read_bytes()[:300])  # a truncated PNG: exists, so only decoding finds it
    failures = tmp_path / "failed.jsonl"
    args = ["train", "--data", str(data / "train.jsonl"), "--output", str(tmp_path / "m"), "--stage", "3",
            "--steps", "12", "--batch-size", "8", "--workers", "2", "--failures", str(failures), *SMALL]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 10, result.output
    assert f"skipped {broken}" in result.output and "Traceback" not in result.output
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert [Path(r["path"]).name for r in rows] == [broken.name] and rows[0]["kind"] == "corrupt"
    assert json.loads((tmp_path / "m" / "training.json").read_text())["failed_images"] == 1


def test_streamed_training_resumes_exactly(synthetic: Path, tmp_path: Path) -> None:
    pairs = read_jsonl(synthetic / "train.jsonl")

    def run(steps: int, out: Path, resume: bool, checkpoint_every: int = 0) -> torch.nn.Module:
        model = tiny_model(seed=4, max_text_length=24)
        data = stream_pairs(pairs, model.tokenizer, model.preprocessor_config, 24, augment=True, workers=1)
        config = TrainConfig(stage="3", steps=steps, batch_size=4, checkpoint_every=checkpoint_every, seed=2)
        Trainer(model, config, data, output_dir=out).train(resume=resume)
        return model

    straight = run(4, tmp_path / "a", False)
    run(4, tmp_path / "b", False, checkpoint_every=2)  # writes step-2 (and would finish)
    checkpoints = sorted((tmp_path / "b" / "checkpoints" / "stage-3").glob("step-*"))
    assert [c.name for c in checkpoints] == ["step-0000002"]
    resumed = run(4, tmp_path / "b", True)  # continues from step 2: workers start at micro-batch 2
    for (name, p), (_, q) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.allclose(p, q, atol=1e-6), name


def test_random_crops_keep_most_of_the_image_and_never_flip() -> None:
    import numpy as np
    from PIL import Image

    image = Image.new("RGB", (100, 80))
    for seed in range(20):
        crop = random_crop(image, np.random.default_rng(seed))
        assert crop.size[0] * crop.size[1] >= 0.6 * 100 * 80
    assert DataOptions(augment=True).streams([], {"crop_size": 32})
    assert not DataOptions().streams([], {"crop_size": 32})


def test_bf16_autocast_step_runs_on_cpu(synthetic: Path) -> None:
    model = tiny_model(seed=1, max_text_length=24)
    data = load_pairs(read_jsonl(synthetic / "train.jsonl"), model.tokenizer, model.preprocessor_config, 24)
    trainer = Trainer(model, TrainConfig(stage="3", steps=2, batch_size=8, precision="bf16"), data)
    assert trainer.use_amp and trainer.amp_dtype == torch.bfloat16
    parts = trainer.train_step()
    assert all(torch.isfinite(torch.tensor(v)) for v in parts.values())
    assert not Trainer(tiny_model(), TrainConfig(stage="3", steps=1, batch_size=8), data).use_amp  # CPU: fp32


@pytest.mark.slow
def test_torchrun_two_gloo_processes_equal_one_process_with_grad_accum(
    synthetic: Path, tmp_path: Path
) -> None:
    """DDP across 2 CPU processes (gloo) takes the optimizer steps of 1 process with --grad-accum 2."""
    common = ["train", "--data", str(synthetic / "train.jsonl"), "--stage", "3", "--steps", "3", "--batch-size",
              "4", "--quiet", "--json", "--threads", "1", "--device", "cpu", *SMALL]  # fmt: skip
    CliRunner().invoke(main, [*common, "--output", str(tmp_path / "one"), "--grad-accum", "2"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29561",
               "-m", "stair_es_cli.main", *common, "--output", str(tmp_path / "two")]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])  # rank 0 alone prints the summary
    assert summary["output"] == str(tmp_path / "two")
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for name, value in one.items():
        assert torch.allclose(value, two[name], atol=1e-5, rtol=1e-4), name
    # the comparison can fail: one process without accumulation takes other steps
    CliRunner().invoke(main, [*common, "--output", str(tmp_path / "plain")])
    plain = _weights(tmp_path / "plain")
    assert any(not torch.allclose(value, plain[name], atol=1e-5, rtol=1e-4) for name, value in one.items())
