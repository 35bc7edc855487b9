"""How a step gets its data and its arithmetic: micro-batch numbering across processes, in-memory or
worker-decoded batches, DistributedDataParallel, autocast precision.

Kept apart from the trainer's losses: a step's batches are a pure function of (seed, step,
micro-batch, rank), whether the pixels come from memory or from decode workers, and whether one
process or several run the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from stair_es.errors import UsageError
from stair_es.training.batches import batch_indices
from stair_es.training.distributed import DistInfo

if TYPE_CHECKING:
    from stair_es.training.trainer import TrainConfig


def resolve_precision(config: TrainConfig, device: torch.device) -> tuple[bool, torch.dtype]:
    """(autocast on, its dtype). ``auto``: bf16 on CUDA where supported, else fp16 (with a gradient
    scaler); fp32 on CPU. ``bf16`` also works on CPU (slow there; it is how the CPU tests cover it)."""
    precision = config.precision if config.amp else "fp32"
    if precision == "auto":
        if device.type != "cuda":
            return False, torch.float32
        return True, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs CUDA (use bf16 or fp32 on CPU)")
    return precision != "fp32", {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
        precision
    ]


class _LossModule(nn.Module):
    """A loss function as a module's forward, so DistributedDataParallel can wrap it."""

    def __init__(self, model: nn.Module, compute: Callable[..., dict[str, torch.Tensor]]) -> None:
        super().__init__()
        self.model = model
        self._compute = compute

    def forward(self, *args: Any) -> dict[str, torch.Tensor]:
        return self._compute(*args)


def wrap_ddp(
    model: nn.Module, compute: Callable[..., dict[str, torch.Tensor]], device: torch.device
) -> nn.Module:
    """Gradients averaged over the processes of a torchrun job (DistributedDataParallel)."""
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    # find_unused_parameters: some trainable parameters get no gradient in some stages (the text
    # tower under stage 1's caption bags)
    return DistributedDataParallel(
        _LossModule(model, compute), device_ids=device_ids, find_unused_parameters=True
    )


class MicroBatches:
    """The micro-batches of one stage: which pairs, and their pixels (memory or decode workers)."""

    def __init__(
        self, data: Any, config: TrainConfig, dist: DistInfo, sampler: Any, log: Callable[[str], None]
    ) -> None:
        self.data, self.config, self.dist, self.sampler, self.log = data, config, dist, sampler, log
        self.stream: Any = None

    def number(self, step: int, micro: int) -> int:
        """Global number of a micro-batch: process ``rank`` of ``world`` takes every world-th one, so
        N processes x A micro-batches see exactly the batches of one process with N x A."""
        return (step * self.config.grad_accum + micro) * self.dist.world_size + self.dist.rank

    def indices(self, number: int) -> np.ndarray:
        cfg = self.config
        if self.sampler is not None:
            return self.sampler.indices(cfg.batch_size, number, cfg.seed, cfg.hard_negative_fraction)
        return batch_indices(len(self.data), cfg.batch_size, number, cfg.seed)

    def open(self, step: int) -> None:
        """Decode workers start on the micro-batches from ``step`` on (streamed data only)."""
        if hasattr(self.data, "loader"):
            cfg = self.config
            numbers = (self.number(s, m) for s in range(step, cfg.steps) for m in range(cfg.grad_accum))
            self.stream = self.data.loader(numbers, self.indices, cfg.seed)

    def close(self) -> None:
        self.stream = None

    def take(self, number: int) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pair indices, pixels, ids, mask) of micro-batch ``number`` (the next one when streaming)."""
        if self.stream is None:
            idx = self.indices(number)
            return (idx, *self.data.select(idx))
        idx_tensor, pixels, failures = next(self.stream)
        self._note_failures(failures)
        return (
            idx_tensor.numpy(),
            pixels,
            self.data.input_ids[idx_tensor],
            self.data.attention_mask[idx_tensor],
        )

    def _note_failures(self, failures: list[Any]) -> None:
        known = {f.path for f in self.data.failures}
        for failure in failures:
            if failure.path not in known:
                known.add(failure.path)
                self.data.failures.append(failure)
                self.log(f"skipped {failure.path} while training: {failure.error} ({failure.kind})")
