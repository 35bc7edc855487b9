"""A Hugging Face ``CLIPModel`` folder on disk -> a STAIR model with sparse heads on its towers (D2S).

Why: the aligned dense dual encoder a person already has is the cheapest start for a sparse one
(dense-to-sparse, Nguyen et al. 2024): both towers keep their weights and their own tokenizer (CLIP's
BPE ``tokenizer.json`` is the text *input*), one small head per tower maps the model's own
L2-normalised embedding (``image_embeds``/``text_embeds``) to a WordPiece *output* vocabulary
(``vocab.txt``, e.g. bert-base-uncased's), whose tokens become the index's feature names. Both
heads start identical, so image and text vectors agree from the first step as far as the dense
embeddings do.

Also here: :class:`ClipDualEncoder`, a trainable wrapper of a ``CLIPModel`` with the dense baseline's
interface (the analog benchmark trains one and saves it as a real CLIPModel folder).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stair_es.errors import ModelError, UsageError
from stair_es.model.config import StairConfig
from stair_es.model.modeling import OUTPUT_VOCAB_FILE, StairModel, _clean
from stair_es.model.tokenizer import (
    DEFAULT_STOP_WORDS,
    build_wordpiece_tokenizer,
    tokenizer_from_vocab_file,
    zeroed_token_ids,
)

# what the runtime pads with when a vocabulary has no [PAD] (stair_es.runtime.tokenizer.PAD_CANDIDATES)
PAD_CANDIDATES = ("[PAD]", "<pad>", "<PAD>", "<|endoftext|>")
OPEN_CLIP_FILES = ("open_clip_config.json", "open_clip_pytorch_model.bin", "open_clip_model.safetensors")


def clip_folder_kind(path: str | Path) -> str | None:
    """``model_type`` of a Hugging Face folder ("clip", "clip_text_model", "bert" ...), "open_clip" for
    an open_clip checkpoint folder, None when there is no readable config.json."""
    root = Path(path)
    if any((root / name).is_file() for name in OPEN_CLIP_FILES) and not (root / "config.json").is_file():
        return "open_clip"
    try:
        data = json.loads((root / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return str(data.get("model_type")) if isinstance(data, dict) else None


def check_clip_folder(path: str | Path) -> None:
    """One clear line for anything but a full CLIPModel folder with a tokenizer."""
    root = Path(path)
    kind = clip_folder_kind(root)
    if kind == "open_clip":
        raise UsageError(
            f"{root} is an open_clip checkpoint: convert it first with "
            f"`stair-es convert-open-clip {root} CLIP_DIR`, then --from-clip CLIP_DIR"
        )
    if kind is None:
        raise UsageError(f"{root}: no readable config.json (expected a Hugging Face CLIPModel folder)")
    if kind != "clip":
        raise UsageError(
            f"{root} holds a '{kind}' model, not a full CLIPModel (both towers): --from-clip needs "
            "the folder a CLIPModel was saved to (config.json with model_type 'clip')"
        )
    if not (root / "tokenizer.json").is_file() and not (root / "vocab.json").is_file():
        raise UsageError(f"{root}: no tokenizer.json (or vocab.json + merges.txt) for the text input")


def load_input_tokenizer(root: Path, max_length: int) -> Any:
    """CLIP's own tokenizer as a ``tokenizers.Tokenizer`` (from tokenizer.json, else vocab.json+merges)."""
    from tokenizers import Tokenizer

    if (root / "tokenizer.json").is_file():
        tokenizer = Tokenizer.from_file(str(root / "tokenizer.json"))
    else:  # older folders: let transformers build the fast tokenizer from vocab.json + merges.txt
        from transformers import AutoTokenizer

        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(root), use_fast=True).backend_tokenizer
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def pad_id(tokenizer: Any) -> int:
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    return next((vocab[t] for t in PAD_CANDIDATES if t in vocab), 0)


def clip_preprocessor(root: Path, image_size: int, max_text_length: int) -> dict[str, Any]:
    """The folder's ``preprocessor_config.json`` (CLIPImageProcessor keys) in this project's format."""
    from stair_es.data.images import default_preprocessor_config

    config = default_preprocessor_config(image_size, max_text_length, clip_stats=True)
    path = root / "preprocessor_config.json"
    if not path.is_file():
        return config
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UsageError(f"{path}: unreadable ({exc})") from exc
    size, crop = hf.get("size"), hf.get("crop_size")
    shortest = size.get("shortest_edge") if isinstance(size, dict) else size
    crop_side = crop.get("height") if isinstance(crop, dict) else crop
    if shortest:
        config["resize_shortest_edge"] = int(shortest)
    if crop_side:
        config["crop_size"] = config["image_size"] = int(crop_side)
    for ours, theirs in (("mean", "image_mean"), ("std", "image_std")):
        if isinstance(hf.get(theirs), list) and len(hf[theirs]) == 3:
            config[ours] = [float(v) for v in hf[theirs]]
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "lanczos"}.get(hf.get("resample", 3))
    config["interpolation"] = resample or "bicubic"
    return config


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers prints a load report for every partial load; the user needs none of it."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    previous = logging.getLogger("transformers").level
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()
        logging.getLogger("transformers").setLevel(previous)


def load_clip(root: str | Path) -> Any:
    """``CLIPModel.from_pretrained`` on a local folder, one line on failure."""
    from transformers import CLIPModel

    try:
        with _quiet_transformers():
            return CLIPModel.from_pretrained(str(root)).eval()
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{root}: cannot load the CLIPModel ({str(exc).splitlines()[0][:300]})") from exc


def _core(tower: nn.Module, name: str) -> nn.Module:
    """transformers 4.x nests CLIP towers under ``text_model``/``vision_model``; 5.x flattens them."""
    return getattr(tower, name, tower)


def output_vocab_tokenizer(output_vocab: str | Path | Any, texts: Sequence[str], max_length: int) -> Any:
    """The output vocabulary's WordPiece tokenizer: from a ``vocab.txt``, as given, or built from ``texts``."""
    if output_vocab is None:
        return build_wordpiece_tokenizer(texts, max_length=max_length)
    if not isinstance(output_vocab, (str, Path)):
        return output_vocab
    try:
        return tokenizer_from_vocab_file(output_vocab, max_length)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{output_vocab}: not a WordPiece vocab.txt ({exc})") from exc


def model_from_clip(
    clip_dir: str | Path,
    texts: Sequence[str] = (),
    output_vocab: str | Path | Any = None,
    stop_words: Sequence[str] = DEFAULT_STOP_WORDS,
    max_text_length: int = 77,
    head_hidden_size: int | None = None,
    temperature_init: float = 1.0,
) -> StairModel:
    """A STAIR model on the towers of ``clip_dir`` with fresh pooled heads over the output vocabulary.

    ``output_vocab``: a WordPiece ``vocab.txt`` (or its tokenizer); None builds one from ``texts`` (the
    captions) plus common English words. ``stop_words`` (and special/punctuation tokens) are never
    emitted.
    """
    from transformers import CLIPTextModel, CLIPVisionModel

    root = Path(clip_dir)
    check_clip_folder(root)
    clip = load_clip(root)
    text_config, vision_config = clip.config.text_config, clip.config.vision_config
    max_len = min(int(max_text_length), int(text_config.max_position_embeddings))
    tokenizer = load_input_tokenizer(root, max_len)
    largest = max(tokenizer.get_vocab(with_added_tokens=True).values())
    if largest >= int(text_config.vocab_size):
        raise UsageError(
            f"{root}: tokenizer ids reach {largest} but the text tower has {text_config.vocab_size} embeddings"
        )
    output_tokenizer = output_vocab_tokenizer(output_vocab, texts, max_len)
    vision, text = CLIPVisionModel(vision_config), CLIPTextModel(text_config)
    _core(vision, "vision_model").load_state_dict(_core(clip.vision_model, "vision_model").state_dict())
    _core(text, "text_model").load_state_dict(_core(clip.text_model, "text_model").state_dict())
    vocab_size = output_tokenizer.get_vocab_size()
    config = StairConfig(
        vocab_size=vocab_size,
        vision_config=_clean(vision_config.to_dict()),
        text_config=_clean(text_config.to_dict()),
        zeroed_token_ids=zeroed_token_ids(output_tokenizer, stop_words),
        stop_words=list(stop_words),
        pad_token_id=pad_id(tokenizer),
        max_text_length=max_len,
        head_hidden_size=head_hidden_size,
        temperature_init=temperature_init,
        text_tower="clip",
        head_input="pooled",
        projection_dim=int(clip.config.projection_dim),
        output_vocab_file=OUTPUT_VOCAB_FILE,
        teacher_logit_scale=float(clip.logit_scale.detach().exp()),
    )
    preprocessor = clip_preprocessor(root, config.image_size, max_len)
    model = StairModel(
        config, tokenizer, preprocessor, towers=(vision, text), output_tokenizer=output_tokenizer
    )
    with torch.no_grad():
        model.image_projection.weight.copy_(clip.visual_projection.weight)
        model.text_projection.weight.copy_(clip.text_projection.weight)
        model.text_head.load_state_dict(model.image_head.state_dict())  # one function for both sides
    return model


class ClipDualEncoder(nn.Module):
    """A ``transformers.CLIPModel`` with the dense baseline's interface (encode_*, temperature)."""

    def __init__(self, clip: Any, config: StairConfig | None = None) -> None:
        super().__init__()
        self.clip = clip
        self.config = config  # max_text_length for the trainer's short views

    @property
    def log_temperature(self) -> nn.Parameter:
        return self.clip.logit_scale  # temperature = exp(-logit_scale); learned either way

    @property
    def temperature(self) -> torch.Tensor:
        return (-self.clip.logit_scale).exp().clamp(min=0.01)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pooled = self.clip.vision_model(pixel_values=pixel_values).pooler_output
        return nn.functional.normalize(self.clip.visual_projection(pooled).float(), dim=-1)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return nn.functional.normalize(self.clip.text_projection(pooled).float(), dim=-1)

    def similarity(self, image_vectors: torch.Tensor, text_vectors: torch.Tensor) -> torch.Tensor:
        return image_vectors @ text_vectors.T


def new_clip(
    tokenizer: Any,
    image_size: int = 64,
    patch_size: int = 8,
    hidden_size: int = 128,
    layers: int = 2,
    heads: int = 4,
    projection_dim: int = 128,
    max_text_length: int = 32,
) -> Any:
    """A randomly initialised ``CLIPModel`` sized for ``tokenizer`` (its bos/eos/pad ids in the config)."""
    from transformers import CLIPConfig, CLIPModel

    vocab = tokenizer.get_vocab(with_added_tokens=True)
    ids = {"bos_token_id": vocab.get("<|startoftext|>", 0), "eos_token_id": vocab.get("<|endoftext|>", 1)}
    tower = {"hidden_size": hidden_size, "intermediate_size": 4 * hidden_size, "num_hidden_layers": layers,
             "num_attention_heads": heads}  # fmt: skip
    config = CLIPConfig(
        text_config={
            **tower,
            "vocab_size": max(vocab.values()) + 1,
            "max_position_embeddings": max_text_length,
            "pad_token_id": pad_id(tokenizer),
            **ids,
        },  # fmt: skip
        vision_config={**tower, "image_size": image_size, "patch_size": patch_size},
        projection_dim=projection_dim,
    )
    with _quiet_transformers():
        return CLIPModel(config)


def save_clip_folder(
    clip: Any,
    tokenizer: Any,
    out: str | Path,
    image_size: int,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.5, 0.5, 0.5),
) -> Path:
    """Write a CLIPModel folder as Hugging Face does: weights, config, tokenizer.json and the
    CLIPImageProcessor ``preprocessor_config.json`` (default 0.5 stats, as this project's fresh towers use)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with _quiet_transformers():
        clip.save_pretrained(str(out))
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "CLIPTokenizer",
                "model_max_length": clip.config.text_config.max_position_embeddings,
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "<|endoftext|>",
            },
            indent=2,
        )
        + "\n"  # fmt: skip
    )
    processor = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": image_size},
        "do_center_crop": True,
        "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [float(v) for v in mean],
        "image_std": [float(v) for v in std],
        "resample": 3,
    }
    (out / "preprocessor_config.json").write_text(json.dumps(processor, indent=2) + "\n")
    return out
