"""StairConfig: everything needed to rebuild a StairModel, saved as ``config.json``.

The towers are stored as transformers config dicts (CLIPVisionConfig, BertConfig) so a pretrained CLIP
vision checkpoint or BERT text checkpoint fits without translation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MODEL_TYPE = "stair"
CONFIG_VERSION = 1


@dataclass
class StairConfig:
    """Architecture and output space. ``zeroed_token_ids`` are never emitted (weight exactly 0)."""

    vocab_size: int
    vision_config: dict[str, Any]
    text_config: dict[str, Any]
    zeroed_token_ids: list[int] = field(default_factory=list)
    stop_words: list[str] = field(default_factory=list)
    pad_token_id: int = 0
    max_text_length: int = 32
    head_hidden_size: int | None = None  # None: the tower's hidden size (BERT MLM head layout)
    temperature_init: float = 1.0  # score = dot / temperature; temperature is learned
    temperature_min: float = 0.01
    pool_mask_value: float = -1e4  # fp16-safe "minus infinity" for padded text positions
    vision_stem: str = "patch"  # "patch" (ViT/CLIP patchify conv) or "conv" (early-convolution stem)
    # "bert" (BertModel over the output vocabulary) or "clip" (CLIPTextModel over its own BPE input
    # vocabulary, text_config is then a CLIPTextConfig dict)
    text_tower: str = "bert"
    # "positions": a head on every position, max-pooled (STAIR); "pooled": one head on each tower's
    # projected, L2-normalised embedding (D2S on an aligned dual encoder: CLIP's image_embeds/text_embeds)
    head_input: str = "positions"
    projection_dim: int | None = None  # head_input "pooled": size of the towers' projections
    # a separate output vocabulary (WordPiece vocab.txt in the model folder) when the text input is
    # tokenized with another tokenizer (CLIP's BPE); None: tokenizer.json is both
    output_vocab_file: str | None = None
    teacher_logit_scale: float | None = None  # the dense model's own logit scale (distillation)
    model_type: str = MODEL_TYPE
    config_version: int = CONFIG_VERSION

    @property
    def separate_output_vocab(self) -> bool:
        return self.output_vocab_file is not None

    @property
    def image_size(self) -> int:
        return int(self.vision_config["image_size"])

    @classmethod
    def small(
        cls,
        vocab_size: int,
        zeroed_token_ids: list[int],
        *,
        image_size: int = 48,
        patch_size: int = 8,
        hidden_size: int = 128,
        layers: int = 2,
        heads: int = 4,
        text_hidden_size: int | None = None,
        text_layers: int | None = None,
        max_text_length: int = 32,
        stop_words: list[str] | None = None,
        temperature_init: float = 1.0,
        vision_stem: str = "patch",
    ) -> StairConfig:
        """A randomly initialised ViT + BERT-style pair of the given size (no checkpoint needed)."""
        text_hidden = text_hidden_size or hidden_size
        vision = {
            "hidden_size": hidden_size,
            "intermediate_size": hidden_size * 4,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "image_size": image_size,
            "patch_size": patch_size,
            "num_channels": 3,
            "hidden_act": "gelu",
            "attention_dropout": 0.0,
        }
        text = {
            "vocab_size": vocab_size,
            "hidden_size": text_hidden,
            "intermediate_size": text_hidden * 4,
            "num_hidden_layers": text_layers or layers,
            "num_attention_heads": heads,
            "max_position_embeddings": max_text_length,
            "type_vocab_size": 1,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "pad_token_id": 0,
        }
        return cls(
            vocab_size=vocab_size,
            vision_config=vision,
            text_config=text,
            zeroed_token_ids=sorted(int(i) for i in zeroed_token_ids),
            stop_words=list(stop_words or []),
            max_text_length=max_text_length,
            temperature_init=temperature_init,
            vision_stem=vision_stem,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StairConfig:
        if data.get("model_type") != MODEL_TYPE:
            from stair_es.errors import ModelError

            raise ModelError(
                f"config.json has model_type {data.get('model_type')!r}, expected {MODEL_TYPE!r}"
            )
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> StairConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
