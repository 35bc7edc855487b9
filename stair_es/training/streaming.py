"""Training pairs whose images are decoded (and optionally augmented) by DataLoader worker processes.

Why: decoding everything into memory once (:func:`stair_es.training.batches.load_pairs`) is the fast
path for small sets, but 100k COCO images at 224 px are 60 GB of float32 pixels, and decoding them
one at a time in the training process starves the accelerator. Here worker processes decode each
micro-batch ahead of the step that needs it. The batches are still a pure function of
(seed, step, micro-batch, rank), exactly those of the in-memory path, so results and resume do not
depend on the number of workers. An image that fails to decode is replaced, inside the batch, by
the next readable pair (the batch keeps its size, so every process of a multi-GPU run stays in
step) and reported once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stair_es.data.images import preprocess_image
from stair_es.data.readers import CaptionedImage
from stair_es.training.batches import ImageFailure, _token_tensors

# decoded float32 pixels up to this size stay in memory (the fast path); larger sets stream
IN_MEMORY_BYTES = 2 << 30
# random crops keep at least this share of the image: captions name what is in it ("on the left")
CROP_SCALE = (0.7, 1.0)
MAX_REPLACEMENTS = 16
REPLACEMENT_BATCH = 2**31 - 1  # the augmentation seed of a replacement image


@dataclass
class DataOptions:
    """How training images reach the steps: ``workers`` None = in memory when they fit, else decode
    workers; 0 = in memory; N = N decode processes. ``augment``: random crops (streams)."""

    workers: int | None = None
    augment: bool = False

    def streams(self, pairs: Sequence[CaptionedImage], preprocessor_config: dict[str, Any]) -> bool:
        if self.augment or (self.workers or 0) > 0:
            return True
        return self.workers is None and decoded_bytes(pairs, preprocessor_config) > IN_MEMORY_BYTES

    def worker_count(self) -> int:
        import os

        return self.workers if self.workers is not None else max(1, min(8, (os.cpu_count() or 2) - 1))


@dataclass
class StreamingPairs:
    """Same interface as :class:`~stair_es.training.batches.PairTensors` minus the decoded pixels."""

    paths: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    captions: list[str]
    preprocessor_config: dict[str, Any]
    image_ids: list[str] | None = None
    bag_ids: torch.Tensor | None = None
    bag_mask: torch.Tensor | None = None
    failures: list[ImageFailure] = field(default_factory=list)
    augment: bool = False
    workers: int = 2

    def __len__(self) -> int:
        return len(self.captions)

    def select_bags(self, indices: torch.Tensor | Sequence[int]) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.bag_ids is None or self.bag_mask is None:
            return None
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.bag_ids[idx], self.bag_mask[idx]

    def loader(
        self, batch_numbers: Iterator[int], indices_of: Callable[[int], np.ndarray], seed: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor, list[ImageFailure]]]:
        """(pair indices, pixels, failures) per micro-batch, in the order of ``batch_numbers``."""
        dataset = _DecodeDataset(self.paths, self.preprocessor_config, self.augment, seed)
        sampler = _Batches(batch_numbers, indices_of)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=self.workers,
            collate_fn=dataset.collate,
            prefetch_factor=4 if self.workers > 0 else None,
            pin_memory=torch.cuda.is_available(),
        )
        return iter(loader)


def stream_pairs(
    pairs: Sequence[CaptionedImage],
    tokenizer: Any,
    preprocessor_config: dict[str, Any],
    max_text_length: int,
    bag_tokenizer: Any = None,
    augment: bool = False,
    workers: int = 2,
) -> StreamingPairs:
    """Tokenise now, decode later; files that do not exist are left out (and reported) up front."""
    failures: list[ImageFailure] = []
    missing: dict[Path, int] = {}
    for p in pairs:
        if not p.image.is_file():
            missing[p.image] = missing.get(p.image, 0) + 1
    for path, captions in missing.items():
        failures.append(ImageFailure(str(path), "missing", f"{path}: file not found", captions))
    pairs = [p for p in pairs if p.image not in missing]
    texts = [p.caption for p in pairs]
    ids, mask = _token_tensors(tokenizer, texts, max_text_length)
    bag_ids, bag_mask = (
        _token_tensors(bag_tokenizer, texts, max_text_length) if bag_tokenizer is not None else (None, None)
    )
    return StreamingPairs(
        [str(p.image) for p in pairs], ids, mask, texts, preprocessor_config,
        [p.image_id for p in pairs], bag_ids, bag_mask, failures, augment, workers,
    )  # fmt: skip


def decoded_bytes(pairs: Sequence[CaptionedImage], preprocessor_config: dict[str, Any]) -> int:
    """Memory the in-memory path needs for the distinct images of ``pairs`` (float32 pixels)."""
    side = int(preprocessor_config["crop_size"])
    return len({p.image for p in pairs}) * 3 * side * side * 4


class _Batches:
    """The batch sampler: (pair index, batch number) keys of each micro-batch, computed lazily."""

    def __init__(self, batch_numbers: Iterator[int], indices_of: Callable[[int], np.ndarray]) -> None:
        self.batch_numbers, self.indices_of = batch_numbers, indices_of

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for number in self.batch_numbers:
            yield [(int(i), number) for i in self.indices_of(number)]


class _DecodeDataset(torch.utils.data.Dataset):
    """Item (pair index, batch number) -> pixels; runs in the worker processes."""

    def __init__(self, paths: list[str], config: dict[str, Any], augment: bool, seed: int) -> None:
        self.paths, self.config, self.augment, self.seed = paths, config, augment, seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int]) -> tuple[int, np.ndarray | None, ImageFailure | None]:
        from stair_es.runtime.images import ImageDecodeError, decode_image

        index, number = key
        path = self.paths[index]
        try:
            image = decode_image(path)
        except ImageDecodeError as exc:
            return index, None, ImageFailure(path, exc.kind, str(exc))
        if self.augment:
            image = random_crop(image, np.random.default_rng([self.seed, number, index, 13]))
        return index, preprocess_image(image, self.config), None

    def collate(
        self, items: list[tuple[int, np.ndarray | None, ImageFailure | None]]
    ) -> tuple[torch.Tensor, torch.Tensor, list[ImageFailure]]:
        """Stack a micro-batch; a failed image is replaced by the next readable pair not in the batch."""
        failures = [f for _, _, f in items if f is not None]
        taken = {i for i, _, _ in items}
        kept: list[tuple[int, np.ndarray]] = [(i, a) for i, a, _ in items if a is not None]
        candidate = max(taken) if taken else 0
        for _ in range(len(items) - len(kept)):
            for _attempt in range(MAX_REPLACEMENTS):
                candidate = (candidate + 1) % len(self.paths)
                if candidate in taken:
                    continue
                taken.add(candidate)
                index, array, failure = self[(candidate, REPLACEMENT_BATCH)]
                if array is not None:
                    kept.append((index, array))
                    break
                failures.append(failure)  # type: ignore[arg-type]
        indices = torch.tensor([i for i, _ in kept], dtype=torch.long)
        pixels = torch.from_numpy(np.stack([a for _, a in kept])) if kept else torch.zeros(0)
        return indices, pixels, failures


def random_crop(image: Any, rng: np.random.Generator) -> Any:
    """A random crop keeping 70-100% of the area (aspect 3:4 to 4:3); never a flip (captions say
    "left" and "right")."""
    width, height = image.size
    area = width * height * rng.uniform(*CROP_SCALE)
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    w = int(round(min(width, np.sqrt(area * aspect))))
    h = int(round(min(height, np.sqrt(area / aspect))))
    left = int(rng.integers(0, width - w + 1))
    top = int(rng.integers(0, height - h + 1))
    return image.crop((left, top, left + w, top + h))
