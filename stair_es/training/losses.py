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


def token_tagging_loss(pooled_logits: torch.Tensor, bag: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Multi-label loss: each word of the batch's captions is a detector of "this word is in my caption".

    ``pooled_logits`` [B, V] are the images' max-pooled logits (> 0 exactly when the token is active),
    ``bag`` [B, V] is 1 on each caption's tokens. The candidates are the (kept) words of *any* caption
    in the batch: the wrong shape word of one image is the right one of another, and pushing it down
    is what teaches a detector to tell shapes apart (in-batch negatives, as in the contrastive loss).
    Each detector is class-balanced (its positives and its negatives averaged apart): plain BCE would
    switch rare words off (a word in 1 caption of 12 is "absent" 92% of the time), and an inactive
    token is a dead ReLU the contrastive loss can no longer revive. Words in no caption of the batch
    are left to the FLOPs regulariser.
    """
    candidates = bag.amax(dim=0) * keep  # [V]
    positives = bag.sum(dim=0)  # [V] images whose caption has the word
    negatives = bag.shape[0] - positives
    up = (F.softplus(-pooled_logits) * bag).sum(dim=0) / positives.clamp(min=1.0)
    down = (F.softplus(pooled_logits) * (1.0 - bag)).sum(dim=0) / negatives.clamp(min=1.0)
    return ((up + down) * candidates).sum() / candidates.sum().clamp(min=1.0)


def multi_positive_loss(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Contrastive loss with several right answers: ``scores[v, j]`` = view v vs image j (already / tau),
    ``positives[v, j]`` true where image j answers view v (each row and column has at least one).

    Both directions use a target spread evenly over the positives (SupCon-style), so *every* image
    holding "red circles" must outrank every image that does not, not just one of them; the image ->
    view direction is what teaches an image to score "yellow triangles" below "yellow stars".
    """
    target = positives.float()
    views_to_images = -(target / target.sum(1, keepdim=True) * F.log_softmax(scores, dim=1)).sum(1).mean()
    images_to_views = -(target / target.sum(0, keepdim=True) * F.log_softmax(scores, dim=0)).sum(0).mean()
    return 0.5 * (views_to_images + images_to_views)


def distillation_loss(scores: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the sparse in-batch scores against the dense teacher's softmax, both directions
    (D2S): the sparse model learns the dense model's whole ranking of the batch, not just the positive."""
    image_to_text = -(F.softmax(teacher, dim=1) * F.log_softmax(scores, dim=1)).sum(dim=1).mean()
    text_to_image = -(F.softmax(teacher, dim=0) * F.log_softmax(scores, dim=0)).sum(dim=0).mean()
    return 0.5 * (image_to_text + text_to_image)
