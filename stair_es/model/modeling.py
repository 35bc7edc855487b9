"""The STAIR dual encoder: ViT + transformer towers, token prediction heads, sparse max-pooled output.

weight_t = log(1 + ReLU(max_j logit_jt)) -- pooled *before* the activation (monotone, so identical, and
the [B, L, V] tensor never goes through log1p). Everything in ``encode_image`` / ``encode_text`` is plain
tensor ops (masked_fill + amax, no data-dependent Python control flow) so both export to ONNX.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stair_es.errors import ModelError
from stair_es.model.config import StairConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
PREPROCESSOR_FILE = "preprocessor_config.json"
OUTPUT_VOCAB_FILE = "output_vocab.txt"


class TokenHead(nn.Module):
    """BERT MLM head layout: Dense -> GELU -> LayerNorm -> projection to the vocabulary (untied)."""

    def __init__(self, in_size: int, hidden_size: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(in_size, hidden_size)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(hidden_size)
        self.projection = nn.Linear(hidden_size, vocab_size)
        # Logits start near zero so ReLU is neither dead nor saturated at step 0 (dead-ReLU collapse).
        nn.init.normal_(self.projection.weight, std=0.02)
        nn.init.zeros_(self.projection.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.projection(self.norm(self.act(self.dense(hidden))))


def sparse_max_pool(
    logits: torch.Tensor, keep: torch.Tensor, mask: torch.Tensor | None = None, mask_value: float = -1e4
) -> torch.Tensor:
    """[B, L, V] logits -> [B, V] weights: masked max over L, then log1p(relu), then zero ``keep == 0``."""
    if mask is not None:
        logits = logits.masked_fill(mask.unsqueeze(-1) == 0, mask_value)
    pooled = logits.amax(dim=1).float()
    return torch.log1p(torch.relu(pooled)) * keep


def caption_token_mask(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, vocab_size: int
) -> torch.Tensor:
    """[B, V] float mask, 1 where the vocabulary entry occurs among the caption's valid tokens (stage 1)."""
    ids = input_ids.masked_fill(attention_mask == 0, 0)
    mask = torch.zeros(input_ids.shape[0], vocab_size, device=input_ids.device)
    return mask.scatter_(1, ids, 1.0)


class ConvStem(nn.Module):
    """Early convolutions in place of the ViT's patchify layer (Xiao et al., 2021, "Early Convolutions
    Help Transformers See Better"): log2(patch) 3x3 stride-2 convs, then a 1x1 conv to the width.

    Why: a patch-16 linear projection must learn edges and corners from scratch, and a small ViT
    trained briefly never separates shapes (it sees colour at once). The stem gives the same
    [B, hidden, grid, grid] output, so the transformer, its position embeddings and export are unchanged.
    No normalisation layers: nothing with running statistics, so a frozen tower stays bit-identical.
    """

    def __init__(self, channels: int, hidden_size: int, patch_size: int) -> None:
        super().__init__()
        steps = int(math.log2(patch_size)) if patch_size > 1 else 0
        if steps < 1 or 2**steps != patch_size:
            raise ModelError(f"a conv stem needs a power-of-two patch size >= 2, got {patch_size}")
        layers: list[nn.Module] = []
        width_in = channels
        for i in range(1, steps + 1):
            width = max(16, hidden_size >> (steps - i))
            layers += [nn.Conv2d(width_in, width, 3, stride=2, padding=1), nn.ReLU()]
            width_in = width
        layers.append(nn.Conv2d(width_in, hidden_size, 1))
        self.body = nn.Sequential(*layers)
        # He init keeps the activation scale through the stack; torch's default conv init shrinks it
        # about 3x per layer, and the patch embeddings then drown under the position embeddings.
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        for conv in convs:
            last = conv is convs[-1]
            nn.init.kaiming_normal_(conv.weight, nonlinearity="linear" if last else "relu")
            nn.init.zeros_(conv.bias)

    @property
    def weight(self) -> torch.Tensor:
        """transformers' CLIPVisionEmbeddings reads ``patch_embedding.weight.dtype``."""
        return self.body[-1].weight

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.body(pixel_values)


def build_towers(config: StairConfig) -> tuple[nn.Module, nn.Module]:
    """Random-init CLIP ViT and BERT (or CLIP text) encoder from the config dicts (``vision_stem`` picks
    the patchify)."""
    from transformers import (
        BertConfig,
        BertModel,
        CLIPTextConfig,
        CLIPTextModel,
        CLIPVisionConfig,
        CLIPVisionModel,
    )

    vision = CLIPVisionModel(CLIPVisionConfig(**_clean(config.vision_config)))
    if config.vision_stem == "conv":
        core = getattr(vision, "vision_model", vision)
        vc = config.vision_config
        core.embeddings.patch_embedding = ConvStem(
            int(vc.get("num_channels", 3)), int(vc["hidden_size"]), int(vc["patch_size"])
        )
    elif config.vision_stem != "patch":
        raise ModelError(f"vision_stem must be 'patch' or 'conv', got {config.vision_stem!r}")
    if config.text_tower == "clip":
        return vision, CLIPTextModel(CLIPTextConfig(**_clean(config.text_config)))
    if config.text_tower != "bert":
        raise ModelError(f"text_tower must be 'bert' or 'clip', got {config.text_tower!r}")
    text = BertModel(BertConfig(**_clean(config.text_config)), add_pooling_layer=False)
    return vision, text


def _clean(cfg: dict[str, Any]) -> dict[str, Any]:
    drop = {"transformers_version", "architectures", "model_type", "_name_or_path", "torch_dtype", "dtype"}
    return {k: v for k, v in cfg.items() if k not in drop}


class StairModel(nn.Module):
    """Image and text -> non-negative sparse vectors over the WordPiece vocabulary; score = dot product."""

    def __init__(
        self,
        config: StairConfig,
        tokenizer: Any = None,
        preprocessor_config: dict[str, Any] | None = None,
        towers: tuple[nn.Module, nn.Module] | None = None,
        output_tokenizer: Any = None,
    ) -> None:
        """``output_tokenizer``: the WordPiece tokenizer of the output vocabulary when the text input has
        its own (``config.output_vocab_file``); caption token bags for the grounding losses use it."""
        super().__init__()
        from stair_es.data.images import default_preprocessor_config

        self.config = config
        self.tokenizer = tokenizer
        self.output_tokenizer = output_tokenizer
        self.preprocessor_config = preprocessor_config or default_preprocessor_config(
            config.image_size, config.max_text_length
        )
        self.vision_tower, self.text_tower = towers or build_towers(config)
        v_hidden, t_hidden = int(config.vision_config["hidden_size"]), int(config.text_config["hidden_size"])
        if config.head_input == "pooled":
            if not config.projection_dim:
                raise ModelError("head_input 'pooled' needs projection_dim")
            self.image_projection = nn.Linear(v_hidden, config.projection_dim, bias=False)
            self.text_projection = nn.Linear(t_hidden, config.projection_dim, bias=False)
            v_hidden = t_hidden = config.projection_dim
        elif config.head_input != "positions":
            raise ModelError(f"head_input must be 'positions' or 'pooled', got {config.head_input!r}")
        self.image_head = TokenHead(v_hidden, config.head_hidden_size or v_hidden, config.vocab_size)
        self.text_head = TokenHead(t_hidden, config.head_hidden_size or t_hidden, config.vocab_size)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(config.temperature_init)))
        keep = torch.ones(config.vocab_size)
        if config.zeroed_token_ids:
            keep[torch.tensor(config.zeroed_token_ids, dtype=torch.long)] = 0.0
        self.register_buffer("keep_mask", keep, persistent=False)

    # --- encoders -------------------------------------------------------------------------------
    def image_token_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[B, 1 + patches, V] per-position logits (CLS included); [B, 1, V] for a pooled head."""
        if self.config.head_input == "pooled":
            return self.image_head(self.image_embedding(pixel_values)).unsqueeze(1)
        hidden = self.vision_tower(pixel_values=pixel_values).last_hidden_state
        return self.image_head(self._vision_core().post_layernorm(hidden))

    def image_embedding(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled heads: the dense model's own L2-normalised image embedding (CLIP ``image_embeds``)."""
        pooled = self.vision_tower(pixel_values=pixel_values).pooler_output
        return nn.functional.normalize(self.image_projection(pooled), dim=-1)

    def text_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Pooled heads: the L2-normalised text embedding (CLIP: the end-of-text state, projected)."""
        pooled = self.text_tower(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return nn.functional.normalize(self.text_projection(pooled), dim=-1)

    def _vision_core(self) -> nn.Module:
        """transformers 4.x nests the ViT under ``vision_model``; 5.x flattens it."""
        return getattr(self.vision_tower, "vision_model", self.vision_tower)

    def text_token_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.config.head_input == "pooled":
            return self.text_head(self.text_embedding(input_ids, attention_mask)).unsqueeze(1)
        hidden = self.text_tower(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.text_head(hidden)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """FloatTensor[B, 3, H, W] -> FloatTensor[B, V] sparse non-negative weights."""
        return sparse_max_pool(self.image_token_logits(pixel_values), self.keep_mask)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """LongTensor[B, L] ids + mask -> FloatTensor[B, V]; padded positions never win the max."""
        logits = self.text_token_logits(input_ids, attention_mask)
        if self.config.head_input == "pooled":
            return sparse_max_pool(logits, self.keep_mask)
        return sparse_max_pool(logits, self.keep_mask, attention_mask, self.config.pool_mask_value)

    def output_vocab(self) -> dict[str, int]:
        """Token -> id of the output space (the names of the sparse dimensions)."""
        tokenizer = self.output_tokenizer or self.tokenizer
        if tokenizer is None:
            raise ModelError("this model has no tokenizer attached")
        return tokenizer.get_vocab()

    def tokenize_bags(
        self, texts: Sequence[str], pad_to: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts as ids of the *output* vocabulary (caption token bags for the grounding losses)."""
        if self.output_tokenizer is None:
            return self.tokenize(texts, pad_to)
        return tokenize(self.output_tokenizer, texts, self.config.max_text_length, 0, pad_to)

    @property
    def temperature(self) -> torch.Tensor:
        return self.log_temperature.exp().clamp(min=self.config.temperature_min)

    def similarity(self, image_vectors: torch.Tensor, text_vectors: torch.Tensor) -> torch.Tensor:
        """[Ni, V] x [Nt, V] -> [Ni, Nt] dot products (what the engine computes with linear rank_feature)."""
        return image_vectors @ text_vectors.T

    # --- parameter groups used by the training stages --------------------------------------------
    def image_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.vision_tower.parameters()
        yield from self.image_head.parameters()

    def text_parameters(self) -> Iterator[nn.Parameter]:
        yield from self.text_tower.parameters()
        yield from self.text_head.parameters()

    def last_block_parameters(self, num_blocks: int) -> Iterator[nn.Parameter]:
        """Parameters of the last ``num_blocks`` transformer blocks of both towers (+ final norms)."""
        if num_blocks <= 0:
            return
        yield from self._vision_core().encoder.layers[-num_blocks:].parameters()
        yield from self._vision_core().post_layernorm.parameters()
        if self.config.text_tower == "clip":
            text_core = getattr(self.text_tower, "text_model", self.text_tower)
            yield from text_core.encoder.layers[-num_blocks:].parameters()
            yield from text_core.final_layer_norm.parameters()
        else:
            yield from self.text_tower.encoder.layer[-num_blocks:].parameters()
        if self.config.head_input == "pooled":
            yield from self.image_projection.parameters()
            yield from self.text_projection.parameters()

    # --- convenience: strings and images in, tensors out -----------------------------------------
    def tokenize(self, texts: Sequence[str], pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (input_ids, attention_mask) padded to the longest (or ``pad_to``)."""
        if self.tokenizer is None:
            raise ModelError("this model has no tokenizer attached")
        return tokenize(self.tokenizer, texts, self.config.max_text_length, self.config.pad_token_id, pad_to)

    # --- persistence -----------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path, extra_files: dict[str, Any] | None = None) -> Path:
        """Write config.json, model.safetensors, tokenizer.json, preprocessor_config.json (+ extra JSON)."""
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.config.save(out / CONFIG_FILE)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_FILE), metadata={"format": "pt", "model_type": "stair"})
        os.chmod(out / WEIGHTS_FILE, 0o644)  # safetensors writes 0600; model dirs are shared read-only
        if self.tokenizer is not None:
            self.tokenizer.save(str(out / TOKENIZER_FILE))
        if self.output_tokenizer is not None and self.config.output_vocab_file:
            vocab = sorted(self.output_tokenizer.get_vocab().items(), key=lambda kv: kv[1])
            text = "".join(token + "\n" for token, _ in vocab)
            (out / self.config.output_vocab_file).write_text(text, encoding="utf-8")
        preprocessor = dict(self.preprocessor_config, max_text_length=self.config.max_text_length)
        (out / PREPROCESSOR_FILE).write_text(json.dumps(preprocessor, indent=2) + "\n", encoding="utf-8")
        for name, content in (extra_files or {}).items():
            (out / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, map_location: str = "cpu") -> StairModel:
        """Load a directory written by :meth:`save_pretrained`."""
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        root = Path(path)
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (root / name).is_file():
                raise ModelError(f"{root} is not a STAIR model directory (missing {name})")
        config = StairConfig.load(root / CONFIG_FILE)
        tokenizer = (
            Tokenizer.from_file(str(root / TOKENIZER_FILE)) if (root / TOKENIZER_FILE).is_file() else None
        )
        preprocessor = None
        if (root / PREPROCESSOR_FILE).is_file():
            preprocessor = json.loads((root / PREPROCESSOR_FILE).read_text(encoding="utf-8"))
        output_tokenizer = None
        if config.output_vocab_file:
            from stair_es.model.tokenizer import tokenizer_from_vocab_file

            vocab_path = root / config.output_vocab_file
            if not vocab_path.is_file():
                raise ModelError(f"{root}: output vocabulary {config.output_vocab_file} is missing")
            output_tokenizer = tokenizer_from_vocab_file(vocab_path, config.max_text_length)
        model = cls(config, tokenizer, preprocessor, output_tokenizer=output_tokenizer)
        state = load_file(str(root / WEIGHTS_FILE), device=map_location)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise ModelError(
                f"{root}: weights do not match config (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        names = output_tokenizer or tokenizer
        if names is not None and names.get_vocab_size() != config.vocab_size:
            raise ModelError(
                f"{root}: output vocabulary has {names.get_vocab_size()} tokens, config {config.vocab_size}"
            )
        return model.eval()


def tokenize(
    tokenizer: Any, texts: Sequence[str], max_length: int, pad_id: int = 0, pad_to: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-encode with a ``tokenizers.Tokenizer``; pads with ``pad_id`` and returns int64 tensors."""
    encodings = tokenizer.encode_batch(list(texts))
    rows = [enc.ids[:max_length] for enc in encodings]
    width = pad_to or max((len(r) for r in rows), default=1)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return ids, mask
