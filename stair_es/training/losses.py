"""Losses: symmetric InfoNCE and the FLOPs regulariser (Paria et al. 2020) with a quadratic ramp."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def contrastive_loss(scores: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy over in-batch pairs; ``scores[i, k]`` = image i vs text k (already / tau)."""
    targets = torch.arange(scores.shape[0], device=scores.device)
    return 0.5 * (F.cross_entropy(scores, targets) + F.cross_entropy(scores.T, targets))


def flops_loss(vectors: torch.Tensor) -> torch.Tensor:
    """sum_t (mean_i w_it)^2: penalises tokens active for many items (long posting lists) the most."""
    return vectors.abs().mean(dim=0).pow(2).sum()


def quadratic_ramp(step: int, ramp_steps: int) -> float:
    """lambda_t = lambda * min(1, (t / T)^2): full strength from step 0 kills the ReLUs (dead collapse)."""
    if ramp_steps <= 0:
        return 1.0
    return min(1.0, (step / ramp_steps) ** 2)
