"""Pairs in memory as tensors: images decoded and preprocessed once, captions tokenised once.

Why: on a small CPU the PNG decode dominates a step; the synthetic and demo sets fit in memory easily.
Batches are a pure function of (seed, step), so a resumed run sees exactly the batches it would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from stair_es.data.images import preprocess_images
from stair_es.data.readers import CaptionedImage
from stair_es.model.modeling import tokenize


@dataclass
class PairTensors:
    pixels: torch.Tensor  # [N, 3, H, W] float32
    input_ids: torch.Tensor  # [N, L] int64
    attention_mask: torch.Tensor  # [N, L] int64
    captions: list[str]

    def __len__(self) -> int:
        return len(self.captions)

    def select(
        self, indices: torch.Tensor | Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.pixels[idx], self.input_ids[idx], self.attention_mask[idx]


def load_pairs(
    pairs: Sequence[CaptionedImage],
    tokenizer: Any,
    preprocessor_config: dict[str, Any],
    max_text_length: int,
    limit: int | None = None,
) -> PairTensors:
    """Decode, preprocess and tokenise ``pairs`` (each image decoded once even with many captions)."""
    pairs = list(pairs)[:limit] if limit else list(pairs)
    unique = sorted({p.image for p in pairs})
    position = {path: i for i, path in enumerate(unique)}
    decoded = torch.from_numpy(preprocess_images(unique, preprocessor_config))
    pixels = decoded[torch.tensor([position[p.image] for p in pairs], dtype=torch.long)]
    captions = [p.caption for p in pairs]
    ids, mask = tokenize(tokenizer, captions, max_length=max_text_length, pad_to=max_text_length)
    width = int(mask.sum(dim=1).max().item()) if len(captions) else 1
    return PairTensors(pixels, ids[:, :width].contiguous(), mask[:, :width].contiguous(), captions)


def batch_indices(num_items: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of batch ``step``: epoch-wise seeded permutations, batches never straddle epochs."""
    if batch_size > num_items:
        raise ValueError(f"batch size {batch_size} exceeds the {num_items} training pairs")
    per_epoch = num_items // batch_size
    epoch, offset = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_items)
    return order[offset * batch_size : (offset + 1) * batch_size]


class HardNegativeSampler:
    """Batches where part of the items have captions that overlap the most with a random anchor's.

    Why: with random batches most negatives differ in an easy attribute (a colour), so the towers
    learn the easy words first and the hard ones (shapes, counts) slowly. Near-duplicate captions in
    the same batch make every word matter. Identical captions are kept out (they are not negatives).
    Generic: overlap is counted on token ids, so it works for any captioned dataset.
    """

    def __init__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, captions: list[str], vocab_size: int
    ):
        ids = input_ids.masked_fill(attention_mask == 0, 0)
        incidence = torch.zeros(len(captions), vocab_size)
        incidence.scatter_(1, ids, 1.0)
        incidence[:, 0] = 0.0
        self.incidence = incidence
        caption_ids: dict[str, int] = {}
        self.caption_group = torch.tensor([caption_ids.setdefault(c, len(caption_ids)) for c in captions])

    def indices(self, batch_size: int, step: int, seed: int, fraction: float) -> np.ndarray:
        n = self.incidence.shape[0]
        if batch_size > n:
            raise ValueError(f"batch size {batch_size} exceeds the {n} training pairs")
        rng = np.random.default_rng([seed, step, 7])
        anchor = int(rng.integers(n))
        overlap = (self.incidence @ self.incidence[anchor]).numpy()
        overlap = overlap + rng.random(n) * 0.5  # random tie-breaking
        overlap[(self.caption_group == self.caption_group[anchor]).numpy()] = -1.0
        hard = int(round(batch_size * fraction)) - 1
        chosen = [anchor, *np.argsort(-overlap)[: max(0, hard)].tolist()]
        taken = set(chosen)
        for i in rng.permutation(n).tolist():
            if len(chosen) >= batch_size:
                break
            if i not in taken:
                chosen.append(i)
                taken.add(i)
        return np.asarray(chosen)
