"""Dense-to-sparse on an aligned dual encoder (``--from-clip``): the sparse vectors of a batch and the
dense model's own embeddings, which the distillation loss turns into a teacher.

Why a separate path: the heads read each tower's pooled, projected embedding (CLIP's image_embeds /
text_embeds), so each tower runs once per step and the same embeddings give the teacher's scores.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from stair_es.errors import UsageError
from stair_es.model.modeling import caption_token_mask


class Pooled(NamedTuple):
    image: torch.Tensor  # [B, V] sparse image vectors
    text: torch.Tensor  # [B, V] sparse text vectors (masked as the stage or expansion control says)
    pooled: torch.Tensor  # [B, V] image logits (the tagging loss reads them)
    dense: tuple[torch.Tensor, torch.Tensor]  # the dense model's L2-normalised embeddings, no gradient


def pooled_heads(model: Any, config: Any) -> bool:
    """Whether ``model`` has pooled heads on a dense model; refuses settings that need otherwise."""
    model_config = getattr(model, "config", None)
    pooled = getattr(model_config, "head_input", "positions") == "pooled"
    if getattr(model_config, "output_vocab_file", None) and config.stage == "1" and config.short_view_weight:
        raise UsageError("stage 1 short views need the output vocabulary to be the input tokenizer's")
    if config.distill_weight > 0 and not pooled:
        raise UsageError("distillation needs a model with pooled heads on a dense model (--from-clip)")
    return pooled


def encode_pooled(
    model: Any,
    config: Any,
    step: int,
    pixels: torch.Tensor,
    ids: torch.Tensor,
    mask: torch.Tensor,
    bags: tuple[torch.Tensor, torch.Tensor] | None,
) -> Pooled:
    """== ``encode_image``/``encode_text`` for pooled heads. With ``config.expansion_control`` p, a
    step's text vectors keep only their caption's tokens with chance p x (1 - step/steps) (one draw
    per step, the same in every process): D2S's expansion control, which makes the image side score
    with caption words instead of an arbitrary code."""
    image_embedding = model.image_embedding(pixels)
    text_embedding = model.text_embedding(ids, mask)
    pooled = model.image_head(image_embedding).float()
    image = torch.log1p(torch.relu(pooled)) * model.keep_mask
    text = torch.log1p(torch.relu(model.text_head(text_embedding).float())) * model.keep_mask
    chance = config.expansion_control * max(0.0, 1.0 - step / max(1, config.steps))
    masked = chance > 0 and np.random.default_rng([config.seed, step, 17]).random() < chance
    if config.stage == "1" or masked:
        bag_ids, bag_mask = bags if bags is not None else (ids, mask)
        bag = caption_token_mask(bag_ids, bag_mask, text.shape[1]) * model.keep_mask
        text = bag if config.stage == "1" and config.stage1_text == "binary" else text * bag
    dense = (image_embedding.detach().float(), text_embedding.detach().float())
    return Pooled(image, text, pooled, dense)


def teacher_scores(model: Any, dense: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """[images, texts] logits of the dense model itself (cosine x its own learned logit scale)."""
    image, text = dense
    return image @ text.T * float(model.config.teacher_logit_scale or 100.0)
