"""Pairs in memory as tensors: images decoded and preprocessed once, captions tokenised once.

Why: on a small CPU the PNG decode dominates a step; the synthetic and demo sets fit in memory easily.
Batches are a pure function of (seed, step), so a resumed run sees exactly the batches it would have.
An image that cannot be read (missing, corrupt, not an image) is left out with its captions and
reported in ``failures``, the way ``index images`` does; the rest trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stair_es.data.images import preprocess_image
from stair_es.data.readers import CaptionedImage
from stair_es.errors import InvalidArgument
from stair_es.model.modeling import tokenize


@dataclass(frozen=True)
class ImageFailure:
    """One training image left out: its path, the failure kind and the one-line reason."""

    path: str
    kind: str
    error: str
    captions: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "error": self.error, "captions": self.captions}


@dataclass
class PairTensors:
    pixels: torch.Tensor  # [N, 3, H, W] float32
    input_ids: torch.Tensor  # [N, L] int64
    attention_mask: torch.Tensor  # [N, L] int64
    captions: list[str]
    image_ids: list[str] | None = None  # groups the captions of one image (held-out metrics)
    # caption ids in the *output* vocabulary when it differs from the input tokenizer's (D2S on CLIP)
    bag_ids: torch.Tensor | None = None
    bag_mask: torch.Tensor | None = None
    failures: list[ImageFailure] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.captions)

    def select(
        self, indices: torch.Tensor | Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.pixels[idx], self.input_ids[idx], self.attention_mask[idx]

    def select_bags(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Output-vocabulary ids of the selected captions (None: the input ids are those)."""
        if self.bag_ids is None or self.bag_mask is None:
            return None
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.bag_ids[idx], self.bag_mask[idx]


def decode_for_training(
    paths: Sequence[Path], preprocessor_config: dict[str, Any]
) -> tuple[dict[Path, np.ndarray], list[ImageFailure]]:
    """Preprocessed pixels per readable image, and a failure (kind + one-line reason) per other one."""
    from stair_es.runtime.images import ImageDecodeError, decode_image

    decoded: dict[Path, np.ndarray] = {}
    failures: list[ImageFailure] = []
    for path in paths:
        try:
            decoded[path] = preprocess_image(decode_image(str(path)), preprocessor_config)
        except ImageDecodeError as exc:
            failures.append(ImageFailure(str(path), exc.kind, str(exc)))
    return decoded, failures


def load_pairs(
    pairs: Sequence[CaptionedImage],
    tokenizer: Any,
    preprocessor_config: dict[str, Any],
    max_text_length: int,
    limit: int | None = None,
    bag_tokenizer: Any = None,
) -> PairTensors:
    """Decode, preprocess and tokenise ``pairs`` (each image decoded once even with many captions).

    ``bag_tokenizer``: the output vocabulary's tokenizer when it differs from ``tokenizer``.
    """
    pairs = list(pairs)[:limit] if limit else list(pairs)
    unique = sorted({p.image for p in pairs})
    decoded, failures = decode_for_training(unique, preprocessor_config)
    if failures:
        per_image: dict[str, int] = {}
        for p in pairs:
            per_image[str(p.image)] = per_image.get(str(p.image), 0) + 1
        failures = [ImageFailure(f.path, f.kind, f.error, per_image[f.path]) for f in failures]
        pairs = [p for p in pairs if p.image in decoded]
    position = {path: i for i, path in enumerate(sorted(decoded))}
    crop = int(preprocessor_config["crop_size"])
    stacked = np.stack([decoded[p] for p in sorted(decoded)]) if decoded else np.zeros((0, 3, crop, crop))
    pixels = torch.from_numpy(stacked.astype(np.float32))[
        torch.tensor([position[p.image] for p in pairs], dtype=torch.long)
    ]
    captions = [p.caption for p in pairs]
    ids, mask = _token_tensors(tokenizer, captions, max_text_length)
    bag_ids, bag_mask = (
        _token_tensors(bag_tokenizer, captions, max_text_length)
        if bag_tokenizer is not None
        else (None, None)
    )
    return PairTensors(pixels, ids, mask, captions, [p.image_id for p in pairs], bag_ids, bag_mask, failures)


def _token_tensors(tokenizer: Any, texts: list[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and mask, cut to the longest text."""
    ids, mask = tokenize(tokenizer, texts, max_length=max_length, pad_to=max_length)
    width = int(mask.sum(dim=1).max().item()) if len(texts) else 1
    return ids[:, :width].contiguous(), mask[:, :width].contiguous()


def batch_indices(num_items: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of batch ``step``: epoch-wise seeded permutations, batches never straddle epochs."""
    if batch_size > num_items:
        raise InvalidArgument(f"batch size {batch_size} exceeds the {num_items} training pairs")
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
            raise InvalidArgument(f"batch size {batch_size} exceeds the {n} training pairs")
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
