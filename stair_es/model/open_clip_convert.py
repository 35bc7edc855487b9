"""An open_clip checkpoint (ViT image tower, CLIP text transformer) -> a Hugging Face ``CLIPModel`` folder.

Why: ``--from-clip`` reads Hugging Face folders; open_clip checkpoints (``open_clip_pytorch_model.bin``
/ ``.safetensors``, OpenAI's ``ViT-B-32.pt`` state dicts) hold the same network under other names.
The mapping is the one transformers' own conversion script uses (fused ``in_proj`` split into
q/k/v, ``ln_1``/``ln_2`` -> ``layer_norm1/2``, ``c_fc``/``c_proj`` -> ``fc1``/``fc2``, projections
transposed); sizes are read from the weights, heads and activation from ``open_clip_config.json``.
The BPE tokenizer is rebuilt from CLIP's merges file (``bpe_simple_vocab_16e6.txt.gz``, shipped in the
open_clip package) as a ``tokenizer.json``. open_clip itself is not needed. Only the standard ViT
layout converts (no ResNet, timm or custom text towers: those are refused with one line).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import torch

from stair_es.errors import UsageError
from stair_es.model.bpe import BOS, EOS, SUFFIX

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Weights from a .safetensors, .bin/.pt state dict (or a {"state_dict": ...} training checkpoint)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise UsageError(f"{path}: cannot read the checkpoint ({str(exc).splitlines()[0][:200]})") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UsageError(f"{path}: not a state dict (a TorchScript archive? save its state_dict() first)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _find_checkpoint(source: Path) -> Path:
    if source.is_file():
        return source
    for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors"):
        if (source / name).is_file():
            return source / name
    raise UsageError(f"{source}: no open_clip_model.safetensors or open_clip_pytorch_model.bin")


def _layers(state: dict[str, torch.Tensor], prefix: str) -> int:
    blocks = {int(k[len(prefix) :].split(".")[0]) for k in state if k.startswith(prefix)}
    return max(blocks) + 1 if blocks else 0


def clip_config(state: dict[str, torch.Tensor], model_cfg: dict[str, Any], quick_gelu: bool | None) -> Any:
    """A ``CLIPConfig`` with the sizes of ``state``; heads/activation from open_clip's ``model_cfg``."""
    from transformers import CLIPConfig

    required = (
        "visual.conv1.weight",
        "visual.positional_embedding",
        "token_embedding.weight",
        "text_projection",
    )
    missing = [k for k in required if k not in state]
    if missing:
        raise UsageError(f"not a ViT open_clip/CLIP checkpoint (no {', '.join(missing)})")
    if quick_gelu is None:
        quick_gelu = model_cfg.get("quick_gelu")
    if quick_gelu is None:
        raise UsageError(
            "the checkpoint does not say whether it uses QuickGELU (OpenAI weights and '-quickgelu' models do): "
            "pass --quick-gelu or --no-quick-gelu"
        )
    vision_cfg, text_cfg = model_cfg.get("vision_cfg", {}), model_cfg.get("text_cfg", {})
    width = int(state["visual.conv1.weight"].shape[0])
    patch = int(state["visual.conv1.weight"].shape[-1])
    grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = int(state["ln_final.weight"].shape[0])
    act = "quick_gelu" if quick_gelu else "gelu"
    vision = {"hidden_size": width, "patch_size": patch, "image_size": grid * patch,
              "num_hidden_layers": _layers(state, "visual.transformer.resblocks."),
              "num_attention_heads": width // int(vision_cfg.get("head_width", 64)),
              "intermediate_size": int(state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
              "hidden_act": act}  # fmt: skip
    text: dict[str, Any] = {"hidden_size": text_width, "vocab_size": int(state["token_embedding.weight"].shape[0]),
            "max_position_embeddings": int(state["positional_embedding"].shape[0]),
            "num_hidden_layers": _layers(state, "transformer.resblocks."),
            "num_attention_heads": int(text_cfg.get("heads", text_width // 64)),
            "intermediate_size": int(state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
            "hidden_act": act, "pad_token_id": 1}  # fmt: skip
    # CLIP's vocabulary ends with <|startoftext|>, <|endoftext|> (49406, 49407); the text tower pools the
    # first end-of-text position
    text.update(bos_token_id=text["vocab_size"] - 2, eos_token_id=text["vocab_size"] - 1)
    return CLIPConfig(
        text_config=text, vision_config=vision, projection_dim=int(state["text_projection"].shape[1])
    )


def hf_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip names -> ``CLIPModel`` names (transformers 5 layout: towers flattened)."""
    out: dict[str, torch.Tensor] = {}
    for ours, tower in (
        ("visual.transformer.resblocks.", "vision_model"),
        ("transformer.resblocks.", "text_model"),
    ):
        for i in range(_layers(state, ours)):
            src, dst = f"{ours}{i}.", f"{tower}.encoder.layers.{i}."
            for name, q in zip("qkv", state[src + "attn.in_proj_weight"].chunk(3, dim=0), strict=True):
                out[f"{dst}self_attn.{name}_proj.weight"] = q
            for name, b in zip("qkv", state[src + "attn.in_proj_bias"].chunk(3, dim=0), strict=True):
                out[f"{dst}self_attn.{name}_proj.bias"] = b
            pairs = {"attn.out_proj": "self_attn.out_proj", "ln_1": "layer_norm1", "ln_2": "layer_norm2",
                     "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2"}  # fmt: skip
            for theirs, mine in pairs.items():
                for kind in ("weight", "bias"):
                    out[f"{dst}{mine}.{kind}"] = state[f"{src}{theirs}.{kind}"]
    out["text_model.embeddings.token_embedding.weight"] = state["token_embedding.weight"]
    out["text_model.embeddings.position_embedding.weight"] = state["positional_embedding"]
    out["vision_model.embeddings.class_embedding"] = state["visual.class_embedding"]
    out["vision_model.embeddings.patch_embedding.weight"] = state["visual.conv1.weight"]
    out["vision_model.embeddings.position_embedding.weight"] = state["visual.positional_embedding"]
    for kind in ("weight", "bias"):
        out[f"text_model.final_layer_norm.{kind}"] = state[f"ln_final.{kind}"]
        out[f"vision_model.pre_layrnorm.{kind}"] = state[f"visual.ln_pre.{kind}"]
        out[f"vision_model.post_layernorm.{kind}"] = state[f"visual.ln_post.{kind}"]
    out["visual_projection.weight"] = state["visual.proj"].T.contiguous()
    out["text_projection.weight"] = state["text_projection"].T.contiguous()
    out["logit_scale"] = state["logit_scale"].reshape(())
    return out


def bpe_tokenizer(merges_file: Path, max_length: int = 77) -> Any:
    """CLIP's byte-level BPE from its merges file (``bpe_simple_vocab_16e6.txt.gz`` or plain text)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    from stair_es.model.bpe import WORD_PATTERN

    opener = gzip.open if merges_file.suffix == ".gz" else open
    try:
        with opener(merges_file, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
            lines = handle.read().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{merges_file}: unreadable BPE merges file ({exc})") from exc
    merges = [(pair[0], pair[1]) for pair in (line.split() for line in lines[1:]) if len(pair) == 2]
    if len(lines) > 49152:  # the official file holds more merges than CLIP's vocabulary uses
        merges = merges[: 49152 - 256 - 2]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())  # CLIP's bytes_to_unicode order
    tokens = alphabet + [c + SUFFIX for c in alphabet] + ["".join(m) for m in merges] + [BOS, EOS]
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab, merges, unk_token=EOS, end_of_word_suffix=SUFFIX,
                                     continuing_subword_prefix=""))  # fmt: skip
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(WORD_PATTERN), behavior="removed", invert=True),
         pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )  # fmt: skip
    tokenizer.add_special_tokens([BOS, EOS])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def convert(
    source: str | Path, out: str | Path, merges_file: str | Path | None = None, quick_gelu: bool | None = None
) -> Path:
    """Write the Hugging Face CLIPModel folder for the open_clip checkpoint ``source``."""
    from stair_es.model.clip import _quiet_transformers, save_clip_folder

    source = Path(source)
    checkpoint = _find_checkpoint(source)
    config_file = (source if source.is_dir() else source.parent) / "open_clip_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    state = load_state_dict(checkpoint)
    hf_config = clip_config(state, config.get("model_cfg", {}), quick_gelu)
    from transformers import CLIPModel

    with _quiet_transformers():
        clip = CLIPModel(hf_config)
    missing, unexpected = clip.load_state_dict(hf_state_dict(state), strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise UsageError(
            f"{checkpoint}: weights do not map onto a CLIPModel (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    merges = Path(merges_file) if merges_file else _packaged_merges()
    tokenizer = bpe_tokenizer(merges, hf_config.text_config.max_position_embeddings)
    if tokenizer.get_vocab_size() != hf_config.text_config.vocab_size:
        raise UsageError(
            f"{merges}: {tokenizer.get_vocab_size()} BPE tokens but the text tower has "
            f"{hf_config.text_config.vocab_size} embeddings (use the merges file the model was trained with)"
        )
    pre = config.get("preprocess_cfg", {})
    return save_clip_folder(clip, tokenizer, out, hf_config.vision_config.image_size,
                            pre.get("mean", OPENAI_MEAN), pre.get("std", OPENAI_STD))  # fmt: skip


def _packaged_merges() -> Path:
    try:
        import open_clip  # type: ignore[import-not-found]
    except ImportError as exc:
        raise UsageError(
            "the BPE merges file is needed: pass --bpe-merges bpe_simple_vocab_16e6.txt.gz (it ships in the "
            "open_clip and CLIP packages)"
        ) from exc
    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise UsageError(f"{path} not found: pass --bpe-merges")
    return path
