"""In-memory retrieval metrics used while training and by the synthetic benchmark.

Items are the held-out *images* (the captions of one image are grouped by image id) and every caption
is a query. A retrieved item counts as correct when it is the query's own image or carries a caption
identical to the query's (the synthetic set's captions are canonical, so identical caption = same
scene content): the numbers equal ``stair-es eval FILE --relevance caption`` on the same file.
Grounding: an image's top-k tokens (k = number of content words of its caption) contain every colour
and shape word of the caption.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from stair_es.data.synthetic import COLOURS, SHAPES, content_words
from stair_es.training.batches import PairTensors

GROUNDING_WORDS = frozenset(COLOURS) | frozenset(SHAPES) | frozenset(SHAPES.values())


@torch.no_grad()
def encode_pairs(
    model: Any, data: PairTensors, batch_size: int = 256, image_rows: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image vectors (of ``image_rows``, default every pair) and text vectors for every pair (model in
    eval mode for the duration)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    rows = list(range(len(data))) if image_rows is None else list(image_rows)
    images, texts = [], []
    for start in range(0, len(rows), batch_size):
        pixels, _, _ = data.select(rows[start : start + batch_size])
        images.append(model.encode_image(pixels.to(device)).float().cpu())
    for start in range(0, len(data), batch_size):
        _, ids, mask = data.select(list(range(start, min(start + batch_size, len(data)))))
        texts.append(model.encode_text(ids.to(device), mask.to(device)).float().cpu())
    model.train(was_training)
    return torch.cat(images), torch.cat(texts)


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
    """t2i/i2t R@1/5/10 over the distinct images (own image or identical caption is right), plus
    sparsity and (when a vocab is given) grounding."""
    from stair_es.eval.datasets import RetrievalSet
    from stair_es.eval.metrics import recall_at_k as ranked_recall

    image_ids = data.image_ids or [str(i) for i in range(len(data))]
    first: dict[str, int] = {}
    for pair, image_id in enumerate(image_ids):
        first.setdefault(image_id, pair)
    image_rows = list(first.values())
    image_of = {image_id: n for n, image_id in enumerate(first)}
    groups = RetrievalSet(
        "held-out", [Path(i) for i in first], list(first), data.captions, [image_of[i] for i in image_ids]
    )
    image_vecs, text_vecs = encode_pairs(model, data, image_rows=image_rows)
    scores = image_vecs @ text_vecs.T  # [images, texts]
    metrics: dict[str, float] = {}
    ks = (1, 5, 10)
    t2i = ranked_recall(_ranked(scores.T, max(ks)), groups.relevant_images("caption"), ks)
    i2t = ranked_recall(_ranked(scores, max(ks)), groups.relevant_captions("caption"), ks)
    for k in ks:
        metrics[f"t2i_r{k}"], metrics[f"i2t_r{k}"] = t2i[k], i2t[k]
    metrics["eval_images"], metrics["eval_captions"] = len(image_rows), len(data)
    if vocab is not None:
        dim = image_vecs.shape[1]
        metrics["active_image"] = float((image_vecs > 0).sum(dim=1).float().mean())
        metrics["active_text"] = float((text_vecs > 0).sum(dim=1).float().mean())
        metrics["active_fraction"] = metrics["active_image"] / dim
        metrics.update(grounding_breakdown(image_vecs, [data.captions[i] for i in image_rows], vocab))
    return metrics


def _ranked(scores: torch.Tensor, k: int) -> list[list[int]]:
    """Top-``k`` column indices per row, best first (ties broken by index, as before)."""
    return scores.topk(min(k, scores.shape[1]), dim=1).indices.tolist()


def top_tokens(vector: torch.Tensor, id_to_token: dict[int, str], k: int = 10) -> list[tuple[str, float]]:
    """Heaviest ``k`` tokens of one sparse vector (for logs: is the image lighting up the right words?)."""
    values, ids = vector.topk(k)
    return [(id_to_token[int(i)], round(float(v), 3)) for v, i in zip(values, ids, strict=True) if v > 0]
