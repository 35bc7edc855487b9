"""In-memory retrieval metrics used while training and by the synthetic benchmark.

A retrieved item counts as correct when its caption is identical to the query's (the synthetic set's
captions are canonical, so identical caption = same scene content). Grounding: an image's top-k tokens
(k = number of content words of its caption) contain every colour and shape word of the caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from stair_es.data.synthetic import COLOURS, SHAPES, content_words
from stair_es.training.batches import PairTensors

GROUNDING_WORDS = frozenset(COLOURS) | frozenset(SHAPES) | frozenset(SHAPES.values())


@torch.no_grad()
def encode_pairs(model: Any, data: PairTensors, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Image and text vectors for every pair (model in eval mode for the duration)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    images, texts = [], []
    for start in range(0, len(data), batch_size):
        idx = list(range(start, min(start + batch_size, len(data))))
        pixels, ids, mask = data.select(idx)
        images.append(model.encode_image(pixels.to(device)).float().cpu())
        texts.append(model.encode_text(ids.to(device), mask.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(images), torch.cat(texts)


def recall_at_k(
    scores: torch.Tensor, query_captions: Sequence[str], item_captions: Sequence[str], k: int
) -> float:
    """Fraction of queries whose top-k items include one with the query's caption (ties broken by index)."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    hits = 0
    for q, row in enumerate(top.tolist()):
        hits += any(item_captions[i] == query_captions[q] for i in row)
    return hits / max(1, len(query_captions))


def grounding_score(
    image_vectors: torch.Tensor, captions: Sequence[str], vocab: dict[str, int]
) -> float | None:
    """Fraction of images whose top-k tokens hold all colour/shape words of their caption (None if none)."""
    return grounding_breakdown(image_vectors, captions, vocab).get("grounding")


def grounding_breakdown(
    image_vectors: torch.Tensor, captions: Sequence[str], vocab: dict[str, int]
) -> dict[str, float]:
    """``grounding`` plus its parts: colour words only, shape words only (diagnostics for training logs)."""
    graded = hits = colour_hits = shape_hits = 0
    for row, caption in zip(image_vectors, captions, strict=True):
        words = [w for w in caption.lower().split() if w in GROUNDING_WORDS]
        if not words:
            continue
        graded += 1
        top = set(row.topk(len(content_words(caption))).indices.tolist())
        found = {w: vocab.get(w, -1) in top for w in words}
        hits += all(found.values())
        colour_hits += all(ok for w, ok in found.items() if w in COLOURS)
        shape_hits += all(ok for w, ok in found.items() if w not in COLOURS)
    if not graded:
        return {}
    return {
        "grounding": hits / graded,
        "grounding_colour": colour_hits / graded,
        "grounding_shape": shape_hits / graded,
    }


def retrieval_metrics(model: Any, data: PairTensors, vocab: dict[str, int] | None = None) -> dict[str, float]:
    """t2i/i2t R@1/5/10 by identical caption, plus sparsity and (when a vocab is given) grounding."""
    image_vecs, text_vecs = encode_pairs(model, data)
    scores = image_vecs @ text_vecs.T  # [images, texts]
    captions = data.captions
    metrics: dict[str, float] = {}
    for k in (1, 5, 10):
        metrics[f"t2i_r{k}"] = recall_at_k(scores.T, captions, captions, k)
        metrics[f"i2t_r{k}"] = recall_at_k(scores, captions, captions, k)
    if vocab is not None:
        dim = image_vecs.shape[1]
        metrics["active_image"] = float((image_vecs > 0).sum(dim=1).float().mean())
        metrics["active_text"] = float((text_vecs > 0).sum(dim=1).float().mean())
        metrics["active_fraction"] = metrics["active_image"] / dim
        metrics.update(grounding_breakdown(image_vecs, captions, vocab))
    return metrics


def top_tokens(vector: torch.Tensor, id_to_token: dict[int, str], k: int = 10) -> list[tuple[str, float]]:
    """Heaviest ``k`` tokens of one sparse vector (for logs: is the image lighting up the right words?)."""
    values, ids = vector.topk(k)
    return [(id_to_token[int(i)], round(float(v), 3)) for v, i in zip(values, ids, strict=True) if v > 0]
