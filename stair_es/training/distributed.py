"""Data-parallel training across processes (``torchrun``): process group, devices, who writes files.

Started by ``torchrun --nproc-per-node N -m stair_es_cli.main train ...``: each process reads
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` from the environment, joins the group (NCCL on CUDA, gloo on
CPU) and trains its own share of every step's micro-batches; DistributedDataParallel averages the
gradients. Rank 0 alone evaluates, logs and writes checkpoints and the model. A run on N processes
with ``--grad-accum A`` takes the same optimizer steps as one process with ``--grad-accum N*A``
(same micro-batches, same losses: in-batch negatives and the FLOPs regulariser are per micro-batch).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from stair_es.errors import UsageError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_CURRENT = DistInfo()


def current() -> DistInfo:
    """The process group this process belongs to (world size 1 when not started by torchrun)."""
    return _CURRENT


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment; a no-op for one process."""
    global _CURRENT
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _CURRENT
    import torch.distributed as dist

    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        if torch.cuda.device_count() <= local_rank:
            raise UsageError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA devices")
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    _CURRENT = DistInfo(rank, world, local_rank)
    return _CURRENT


def device_for(requested: str) -> torch.device:
    """The device this process trains on: ``cuda:LOCAL_RANK`` under torchrun with CUDA."""
    info = current()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", info.local_rank) if info.enabled else torch.device("cuda")
        return torch.device("cpu")
    device = torch.device(requested)
    if info.enabled and device.type == "cuda" and device.index is None:
        return torch.device("cuda", info.local_rank)
    return device


def barrier() -> None:
    if current().enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown() -> None:
    global _CURRENT
    if current().enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _CURRENT = DistInfo()
