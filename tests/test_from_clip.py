"""`stair-es train --from-clip`: a Hugging Face CLIPModel folder -> sparse heads -> ONNX -> runtime.

The CLIP folders are tiny real ``transformers.CLIPModel``s with a BPE ``tokenizer.json`` built here; the
output vocabulary is a separate WordPiece ``vocab.txt``, as bert-base-uncased's would be.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

torch = pytest.importorskip("torch")

from stair_es.model import StairModel  # noqa: E402
from stair_es.model.clip import load_clip, model_from_clip  # noqa: E402
from stair_es.model.testing import save_tiny_clip  # noqa: E402
from stair_es.model.tokenizer import build_wordpiece_tokenizer  # noqa: E402
from stair_es_cli.main import main  # noqa: E402

COLOURS = ["red", "green", "blue", "yellow"]
SHAPES = ["square", "circle"]


def _captioned_set(root: Path, count: int = 16) -> Path:
    rows = []
    for i in range(count):
        colour, shape = COLOURS[i % 4], SHAPES[(i // 4) % 2]
        image = Image.new("RGB", (32, 32), "white")
        image.paste(Image.new("RGB", (16, 16) if shape == "square" else (24, 8), colour), (8, 8))
        image.save(root / f"{i}.png")
        rows.append({"image": f"{i}.png", "caption": [f"a {colour} {shape}", f"one {shape} in {colour}"]})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root / "train.jsonl"


def _vocab_txt(path: Path) -> Path:
    """A WordPiece vocab.txt that is *not* the CLIP tokenizer's vocabulary."""
    tokenizer = build_wordpiece_tokenizer([" ".join(COLOURS + SHAPES)], vocab_size=1200)
    tokens = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    path.write_text("".join(token + "\n" for token, _ in tokens))
    return path


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    captions = [f"a {c} {s}" for c in COLOURS for s in SHAPES] + [
        f"one {s} in {c}" for c in COLOURS for s in SHAPES
    ]
    return save_tiny_clip(tmp_path_factory.mktemp("clip") / "clip", captions)


def test_the_dense_model_inside_is_the_clip_model(clip_dir: Path, tmp_path: Path) -> None:
    """Towers, projections and tokenizer are CLIP's own: the sparse model's dense embeddings equal
    CLIPModel's image_embeds/text_embeds."""
    model = model_from_clip(clip_dir, output_vocab=_vocab_txt(tmp_path / "vocab.txt")).eval()
    clip = load_clip(clip_dir)
    ids, mask = model.tokenize(["a red square", "one circle in blue"])
    assert model.tokenizer.encode("a red square").tokens[0] == "<|startoftext|>"
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = clip(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        assert torch.allclose(
            model.image_embedding(pixels), torch.nn.functional.normalize(out.image_embeds), atol=1e-5
        )
        assert torch.allclose(
            model.text_embedding(ids, mask), torch.nn.functional.normalize(out.text_embeds), atol=1e-5
        )
        text, image = model.encode_text(ids, mask), model.encode_image(pixels)
    assert text.shape == image.shape == (2, 1200) and (text >= 0).all()
    vocab = model.output_vocab()
    assert vocab["[PAD]"] == 0 and "red" in vocab and model.config.vocab_size == 1200
    assert all(float(text[:, i].max()) == 0.0 for i in (vocab["the"], vocab["[CLS]"], vocab["."]))


def test_train_from_clip_export_and_encode(clip_dir: Path, tmp_path: Path) -> None:
    data = _captioned_set(tmp_path)
    vocab = _vocab_txt(tmp_path / "vocab.txt")
    runner = CliRunner()
    args = ["train", "--from-clip", str(clip_dir), "--output-vocab", str(vocab), "--data", str(data),
            "--eval-data", str(data), "--output", str(tmp_path / "sparse"), "--steps", "3", "--batch-size", "8",
            "--tag-weight", "1", "--lr", "3e-3"]  # fmt: skip
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "sparse" / "training.json").read_text())
    assert [s["config"]["stage"] for s in record["stages"]] == ["dense-to-sparse"]
    config = record["stages"][0]["config"]
    assert config["distill_weight"] > 0 and config["expansion_control"] == 0.5  # --from-clip defaults
    assert config["flops_image"] == 5e-2 and config["l1_text"] == 3e-3
    assert config["steps"] == 3 and config["tag_weight"] == 1.0 and config["lr"] == 3e-3  # given: kept
    assert record["from_clip"] == str(clip_dir) and "--from-clip" in record["command"]
    logged = [json.loads(line) for line in (tmp_path / "sparse" / "train_log.jsonl").read_text().splitlines()]
    assert any("distill" in r and "tagging" in r and "grounding" in r for r in logged)
    final = record["final_metrics"]
    assert final["eval_images"] == 16 and final["eval_captions"] == 32

    # the towers stayed CLIP's; the saved folder reloads with both vocabularies
    model = StairModel.from_pretrained(tmp_path / "sparse")
    clip = load_clip(clip_dir)
    for (name, p), (_, q) in zip(
        model.text_tower.named_parameters(), clip.text_model.named_parameters(), strict=True
    ):
        assert torch.equal(p, q), name
    assert (
        model.output_tokenizer.get_vocab()
        == build_wordpiece_tokenizer([" ".join(COLOURS + SHAPES)], vocab_size=1200).get_vocab()
    )

    out = tmp_path / "onnx"
    result = runner.invoke(main, ["export", str(tmp_path / "sparse"), str(out), "--int8"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == 2 and manifest["output_vocabulary"]["file"] == "output_vocab.txt"
    assert manifest["vocab_size"] == 1200 and manifest["parity"]["int8"]["text"]["passed"]
    assert (out / "output_vocab.txt").read_text() == vocab.read_text()

    from stair_es.runtime import load_encoder
    from stair_es.runtime.tokenizer import vocabulary_hash

    encoder = load_encoder(out, provider="cpu", precision="fp32")  # the check is tokenization, not int8
    assert encoder.vocab_hash == vocabulary_hash(vocab.read_text().splitlines())
    text = encoder.encode_texts(["a red square"])[0]
    assert set(text.tokens) <= set(vocab.read_text().splitlines()) and not any(
        "</w>" in t for t in text.tokens
    )
    ids, mask = model.tokenize(["a red square"])
    with torch.no_grad():
        reference = model.encode_text(ids, mask)[0].numpy()
    dense = np.zeros(1200, dtype=np.float32)
    dense[np.asarray(text.ids)] = text.weights
    assert np.abs(dense - reference).max() < 1e-3  # tokenized with CLIP's BPE, named in WordPiece
    image = encoder.encode_images([str(tmp_path / "0.png")])[0]
    assert len(image) > 0 and set(image.tokens) <= set(vocab.read_text().splitlines())

    # the text graph itself names both vocabularies, so a graph from another export is refused
    import onnx

    from stair_es.errors import ModelError
    from stair_es.export.exporter import stamp_graph

    props = {p.key: p.value for p in onnx.load(str(out / "text.int8.onnx")).metadata_props}
    assert props["stair_es.vocab_hash"] == manifest["vocab_hash"]
    assert props["stair_es.input_tokenizer_sha256"] == manifest["tokenizer"]["sha256"]
    stamp_graph(out / "text.onnx", {"stair_es.vocab_hash": "0" * 64})
    with pytest.raises(ModelError, match="another vocabulary"):
        load_encoder(out, provider="cpu", precision="fp32").encode_texts(["a red square"])


def test_from_clip_refuses_what_it_cannot_use(clip_dir: Path, tmp_path: Path) -> None:
    data = _captioned_set(tmp_path)
    runner = CliRunner()
    base = [
        "train",
        "--data",
        str(data),
        "--output",
        str(tmp_path / "m"),
        "--steps",
        "1",
        "--batch-size",
        "4",
    ]
    vision_only = tmp_path / "vision"
    load_clip(clip_dir).vision_model.save_pretrained(vision_only)
    cases = {
        "not a full CLIPModel": [*base, "--from-clip", str(vision_only)],
        "both towers": [*base, "--from-clip", str(clip_dir), "--vision-checkpoint", str(clip_dir)],
        "--stage dense-to-sparse": [*base, "--from-clip", str(clip_dir), "--stage", "2"],
        "output vocabulary of a --from-clip": [*base, "--output-vocab", str(_vocab_txt(tmp_path / "v.txt"))],
    }
    for expected, args in cases.items():
        result = runner.invoke(main, args)
        assert result.exit_code == 2, (expected, result.output)
        assert expected in result.output and len(result.output.strip().splitlines()) <= 2, result.output
    bad_vocab = tmp_path / "bad.txt"
    bad_vocab.write_text("hello\nworld\n")
    result = runner.invoke(main, [*base, "--from-clip", str(clip_dir), "--output-vocab", str(bad_vocab)])
    assert result.exit_code == 2 and "not a WordPiece vocab.txt" in result.output
