"""`stair-es convert-open-clip`: an open_clip-layout checkpoint (the names and fused attention of
open_clip/OpenAI CLIP state dicts, written here from a tiny CLIPModel) becomes a CLIPModel folder that
computes the same embeddings and that --from-clip reads."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")

from stair_es.model.bpe import build_clip_bpe_tokenizer  # noqa: E402
from stair_es.model.clip import load_clip, load_input_tokenizer, model_from_clip, new_clip  # noqa: E402
from stair_es.model.open_clip_convert import bpe_tokenizer  # noqa: E402
from stair_es_cli.main import main  # noqa: E402

CAPTIONS = ["a red square on the left", "two blue circles", "a yellow star at the top"]


def _open_clip_state(clip) -> dict[str, torch.Tensor]:
    """The inverse of the conversion: CLIPModel weights under open_clip's names."""
    state = clip.state_dict()
    out: dict[str, torch.Tensor] = {}
    for tower, prefix in (
        ("vision_model", "visual.transformer.resblocks."),
        ("text_model", "transformer.resblocks."),
    ):
        layers = (
            clip.config.vision_config.num_hidden_layers
            if tower == "vision_model"
            else clip.config.text_config.num_hidden_layers
        )
        for i in range(layers):
            src, dst = f"{tower}.encoder.layers.{i}.", f"{prefix}{i}."
            out[dst + "attn.in_proj_weight"] = torch.cat(
                [state[f"{src}self_attn.{n}_proj.weight"] for n in "qkv"]
            )
            out[dst + "attn.in_proj_bias"] = torch.cat(
                [state[f"{src}self_attn.{n}_proj.bias"] for n in "qkv"]
            )
            for theirs, ours in {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                                 "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}.items():  # fmt: skip
                for kind in ("weight", "bias"):
                    out[f"{dst}{theirs}.{kind}"] = state[f"{src}{ours}.{kind}"]
    out["token_embedding.weight"] = state["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = state["text_model.embeddings.position_embedding.weight"]
    out["visual.class_embedding"] = state["vision_model.embeddings.class_embedding"]
    out["visual.conv1.weight"] = state["vision_model.embeddings.patch_embedding.weight"]
    out["visual.positional_embedding"] = state["vision_model.embeddings.position_embedding.weight"]
    for kind in ("weight", "bias"):
        out[f"ln_final.{kind}"] = state[f"text_model.final_layer_norm.{kind}"]
        out[f"visual.ln_pre.{kind}"] = state[f"vision_model.pre_layrnorm.{kind}"]
        out[f"visual.ln_post.{kind}"] = state[f"vision_model.post_layernorm.{kind}"]
    out["visual.proj"] = state["visual_projection.weight"].T.contiguous()
    out["text_projection"] = state["text_projection.weight"].T.contiguous()
    out["logit_scale"] = state["logit_scale"]
    out["attn_mask"] = torch.full((16, 16), float("-inf")).triu(1)  # a buffer open_clip saves too
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("open-clip")
    merges = json.loads(build_clip_bpe_tokenizer(CAPTIONS, vocab_size=400).to_str())["model"]["merges"]
    lines = ["#version: 0.2"] + [" ".join(m) if isinstance(m, list) else m for m in merges]
    with gzip.open(root / "bpe_simple_vocab_16e6.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    tokenizer = bpe_tokenizer(root / "bpe_simple_vocab_16e6.txt.gz", 16)
    torch.manual_seed(0)
    clip = new_clip(tokenizer, image_size=32, patch_size=8, hidden_size=32, layers=2, heads=2, projection_dim=16,
                    max_text_length=16).eval()  # fmt: skip
    folder = root / "ViT-tiny"
    folder.mkdir()
    torch.save(_open_clip_state(clip), folder / "open_clip_pytorch_model.bin")
    config = {"model_cfg": {"embed_dim": 16, "quick_gelu": True, "vision_cfg": {"width": 32, "head_width": 16},
                            "text_cfg": {"width": 32, "heads": 2}},
              "preprocess_cfg": {"mean": [0.4, 0.4, 0.4], "std": [0.3, 0.3, 0.3]}}  # fmt: skip
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    return folder, clip


def test_converted_folder_computes_the_same_embeddings(checkpoint, tmp_path: Path) -> None:
    folder, original = checkpoint
    merges = folder.parent / "bpe_simple_vocab_16e6.txt.gz"
    result = CliRunner().invoke(
        main, ["convert-open-clip", str(folder), str(tmp_path / "hf"), "--bpe-merges", str(merges)]
    )
    assert result.exit_code == 0, result.output
    converted = load_clip(tmp_path / "hf")
    tokenizer = load_input_tokenizer(tmp_path / "hf", 16)
    encoding = tokenizer.encode("a red square on the left")
    assert encoding.tokens[0] == "<|startoftext|>" and encoding.tokens[-1] == "<|endoftext|>"
    assert "red</w>" in encoding.tokens
    ids = torch.tensor([encoding.ids])
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for name in ("image_embeds", "text_embeds"):
            a = getattr(original(input_ids=ids, pixel_values=pixels), name)
            b = getattr(converted(input_ids=ids, pixel_values=pixels), name)
            assert torch.allclose(a, b, atol=1e-5), name
    pre = json.loads((tmp_path / "hf" / "preprocessor_config.json").read_text())
    assert pre["image_mean"] == [0.4, 0.4, 0.4] and pre["crop_size"] == {"height": 32, "width": 32}
    sparse = model_from_clip(tmp_path / "hf", CAPTIONS)  # what --from-clip does with it
    assert sparse.config.text_tower == "clip" and sparse.preprocessor_config["mean"] == [0.4, 0.4, 0.4]


def test_conversion_refuses_with_one_line(checkpoint, tmp_path: Path) -> None:
    folder, _ = checkpoint
    merges = folder.parent / "bpe_simple_vocab_16e6.txt.gz"
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "open_clip_pytorch_model.bin").write_bytes((folder / "open_clip_pytorch_model.bin").read_bytes())
    runner = CliRunner()
    result = runner.invoke(
        main, ["convert-open-clip", str(bare), str(tmp_path / "o"), "--bpe-merges", str(merges)]
    )
    assert result.exit_code == 2 and "--quick-gelu" in result.output
    broken = tmp_path / "broken.bin"
    torch.save({"visual.conv1.weight": torch.zeros(1)}, broken)
    result = runner.invoke(
        main, ["convert-open-clip", str(broken), str(tmp_path / "p"), "--bpe-merges", str(merges)]
    )
    assert result.exit_code == 2 and "not a ViT open_clip/CLIP checkpoint" in result.output
    result = runner.invoke(
        main, ["train", "--from-clip", str(folder), "--data", str(merges), "--output", str(tmp_path / "m")]
    )
    assert result.exit_code == 2 and "convert-open-clip" in result.output
