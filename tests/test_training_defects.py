"""Issue 11's defects in training on people's own data, each checked the way a user meets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from stair_es_cli.main import main

torch = pytest.importorskip("torch")

from stair_es.training.batches import PairTensors  # noqa: E402
from stair_es.training.evaluation import retrieval_metrics  # noqa: E402

SMALL = ["--image-size", "32", "--patch-size", "8", "--hidden-size", "32", "--layers", "1"]


class _Lookup(torch.nn.Module):
    """Image vector = one-hot of the image's id, text vector = one-hot of the caption's image."""

    def __init__(self, image_of_caption: dict[int, int], dim: int) -> None:
        super().__init__()
        self.image_of_caption, self.dim = image_of_caption, dim
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(pixels[:, 0, 0, 0].long(), self.dim).float()

    def encode_text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        images = torch.tensor([self.image_of_caption[int(i)] for i in ids[:, 0]])
        return torch.nn.functional.one_hot(images, self.dim).float()


def test_held_out_recall_with_several_captions_per_image_is_perfect_for_a_perfect_model() -> None:
    """Defect 1: the log said t2i R@1 0.16 where `stair-es eval` said 0.88 (two captions per image)."""
    images = [0, 0, 1, 1, 2, 2, 3, 3]  # four images, two different captions each
    captions = ["a seven", "the number 7", "a one", "the number 1", "a two", "the number 2", "a six", "six"]
    pixels = torch.zeros(len(images), 3, 2, 2)
    pixels[:, 0, 0, 0] = torch.tensor(images, dtype=torch.float32)
    ids = torch.arange(len(images)).unsqueeze(1)
    data = PairTensors(pixels, ids, torch.ones_like(ids), captions)
    data.image_ids = [str(i) for i in images]  # what load_pairs records from the manifest
    model = _Lookup(dict(enumerate(images)), dim=4)
    metrics = retrieval_metrics(model, data)
    assert metrics["t2i_r1"] == 1.0 and metrics["i2t_r1"] == 1.0
    assert metrics["eval_images"] == 4 and metrics["eval_captions"] == 8


def _write_set(root: Path, count: int = 12) -> Path:
    colours = ["red", "green", "blue", "yellow"]
    rows = []
    for i in range(count):
        colour = colours[i % len(colours)]
        Image.new("RGB", (32, 32), colour).save(root / f"{i}.png")
        rows.append({"image": f"{i}.png", "caption": f"a {colour} square"})
    manifest = root / "train.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_corrupt_and_missing_images_are_skipped_counted_and_reported(tmp_path) -> None:
    """Defect 2: one bad image stopped `train` with a traceback that did not name the file."""
    manifest = _write_set(tmp_path)
    (tmp_path / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with manifest.open("a") as handle:
        handle.write(json.dumps({"image": "gone.png", "caption": "a lost square"}) + "\n")
    failures = tmp_path / "failed.jsonl"
    args = ["train", "--data", str(manifest), "--output", str(tmp_path / "m"), "--stage", "3", "--steps", "1",
            "--batch-size", "4", "--failures", str(failures), *SMALL]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 10, result.output
    assert "Traceback" not in result.output
    assert "3.png" in result.output and "gone.png" in result.output
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert sorted(Path(r["path"]).name for r in rows) == ["3.png", "gone.png"]
    assert all(r["error"] and r["kind"] for r in rows)
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    assert record["failed_images"] == 2 and record["train_pairs"] == 11


def test_no_decodable_image_is_one_line_and_exit_2(tmp_path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    rows = [{"image": "a.png", "caption": "x"}, {"image": "b.png", "caption": "y"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["train", "--data", str(tmp_path / "m.jsonl"), "--output", str(tmp_path / "o"), "--steps", "1",
            "--batch-size", "2", *SMALL]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "no training image could be read" in result.output
    assert "Traceback" not in result.output


def _tiny_clip(path: Path) -> Path:
    from stair_es.model.testing import save_tiny_clip

    return save_tiny_clip(path, ["a red square", "a blue square", "a green square"])


def test_text_checkpoint_pointing_at_a_clip_folder_is_refused(tmp_path) -> None:
    """Defect 3: a CLIP folder as --text-checkpoint trained a random BERT on BPE tokens, exit 0."""
    manifest = _write_set(tmp_path)
    clip = _tiny_clip(tmp_path / "clip")
    args = ["train", "--data", str(manifest), "--output", str(tmp_path / "m"), "--steps", "1",
            "--batch-size", "4", "--text-checkpoint", str(clip), *SMALL]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "--from-clip" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_vision_checkpoint_alone_in_dense_to_sparse_is_refused(tmp_path) -> None:
    """Defect 3: the text tower stayed random *and frozen* without a word."""
    manifest = _write_set(tmp_path)
    clip = _tiny_clip(tmp_path / "clip")
    args = ["train", "--data", str(manifest), "--output", str(tmp_path / "m"), "--steps", "1",
            "--batch-size", "4", "--stage", "dense-to-sparse", "--vision-checkpoint", str(clip)]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "text tower" in result.output and len(result.output.strip().splitlines()) == 1


def test_bert_tokenizer_of_another_size_is_refused_up_front(tmp_path) -> None:
    """Defect 3: a vocabulary of another size than the BERT's trained, then crashed at the end."""
    from transformers import BertConfig, BertModel

    from stair_es.model.tokenizer import build_wordpiece_tokenizer

    manifest = _write_set(tmp_path)
    tok = build_wordpiece_tokenizer(["red square"], vocab_size=1100)
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "vocab.txt").write_text(
        "\n".join(t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1])) + "\n"
    )
    config = BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(tmp_path / "bert")
    args = ["train", "--data", str(manifest), "--output", str(tmp_path / "m"), "--steps", "1",
            "--batch-size", "4", "--stage", "3", "--text-checkpoint", str(tmp_path / "bert"), *SMALL]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "1100" in result.output and "1000" in result.output
    assert not (tmp_path / "m" / "stages").exists()  # refused before any training


def test_train_and_eval_read_csv_manifests(tmp_path) -> None:
    """Defect 5: `index images` took a CSV manifest that `train` and `eval` refused."""
    from stair_es.data.readers import read_pairs

    _write_set(tmp_path)
    lines = ["image,caption"] + [f"{i}.png,a {'red' if i % 2 else 'blue'} square" for i in range(8)]
    (tmp_path / "pairs.csv").write_text("\n".join(lines) + "\n")
    pairs = read_pairs(tmp_path / "pairs.csv")
    assert [p.image.name for p in pairs] == [f"{i}.png" for i in range(8)]
    assert pairs[1].caption == "a red square" and pairs[0].image.parent == tmp_path
    args = ["train", "--data", str(tmp_path / "pairs.csv"), "--output", str(tmp_path / "m"), "--stage", "3",
            "--steps", "1", "--batch-size", "4", "--quiet", *SMALL]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    from stair_es.eval.datasets import load_retrieval_set

    assert len(load_retrieval_set(tmp_path / "pairs.csv").images) == 8


def test_final_train_seconds_cover_every_stage(tmp_path) -> None:
    """Defect 5: train_seconds said 48 s for a 151 s run (only the last stage was counted)."""
    result = CliRunner().invoke(
        main, ["train", "--preset", "tiny", "--output", str(tmp_path / "m"), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "m" / "training.json").read_text())
    stage_seconds = [s["metrics"]["train_seconds"] for s in record["stages"]]
    assert len(stage_seconds) == 3
    assert record["final_metrics"]["train_seconds"] == pytest.approx(sum(stage_seconds), abs=0.05)
    assert record["final_metrics"]["train_seconds"] <= record["total_seconds"]


def _text_tokens_after(flops: float, l1: float) -> float:
    import tempfile

    from stair_es.data import SyntheticConfig, generate_synthetic, read_jsonl
    from stair_es.model.testing import tiny_model
    from stair_es.training.batches import load_pairs
    from stair_es.training.trainer import TrainConfig, Trainer

    with tempfile.TemporaryDirectory() as tmp:
        manifests = generate_synthetic(Path(tmp), SyntheticConfig(num_images=48, seed=5, image_size=32))
        model = tiny_model(seed=1, max_text_length=24)
        data = load_pairs(read_jsonl(manifests["train"]), model.tokenizer, model.preprocessor_config, 24)
    config = TrainConfig(stage="3", steps=25, batch_size=16, lr=3e-3, flops_image=flops, flops_text=flops,
                         l1_text=l1, flops_ramp_fraction=0.2, seed=2)  # fmt: skip
    Trainer(model, config, data).train()
    model.eval()
    with torch.no_grad():
        return float((model.encode_text(data.input_ids, data.attention_mask) > 0).sum(1).float().mean())


def test_l1_ends_the_long_tail_of_query_expansion_that_flops_leaves() -> None:
    """Defect 4: a 3-word query expanded into 957 tokens; FLOPs barely penalises many tiny weights."""
    flops_only = _text_tokens_after(1e-3, 0.0)
    with_l1 = _text_tokens_after(1e-3, 0.05)
    assert with_l1 < 0.3 * flops_only, (with_l1, flops_only)


def test_training_warns_when_texts_expand_to_hundreds_of_tokens(tmp_path) -> None:
    manifest = _write_set(tmp_path)
    args = ["train", "--data", str(manifest), "--eval-data", str(manifest), "--output", str(tmp_path / "m"),
            "--stage", "3", "--steps", "1", "--batch-size", "4", "--flops-text", "0", *SMALL]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "warning: held-out texts expand to" in result.output and "--l1-text" in result.output


def test_training_options_given_with_a_preset_apply_instead_of_being_ignored(tmp_path) -> None:
    """`--preset demo --tag-weight ...` trained the preset unchanged, without a word."""
    manifest = _write_set(tmp_path, count=16)
    runner = CliRunner()
    args = ["train", "--preset", "tiny", "--data", str(manifest), "--output", str(tmp_path / "m"), "--steps", "3",
            "--tag-weight", "2.5", "--batch-size", "4", "--quiet"]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    stages = json.loads((tmp_path / "m" / "training.json").read_text())["stages"]
    assert [s["config"]["tag_weight"] for s in stages] == [2.5, 2.5, 2.5]
    assert [s["config"]["batch_size"] for s in stages] == [4, 4, 4]
    sized = runner.invoke(main, [*args[:-1], "--hidden-size", "64"])
    assert sized.exit_code == 2 and "--hidden-size" in sized.output
    bare = runner.invoke(main, ["train", "--preset", "tiny", "--output", str(tmp_path / "n"), "--lr", "1"])
    assert bare.exit_code == 2 and "--lr needs --data" in bare.output
