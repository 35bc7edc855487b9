"""Parity between torch and onnxruntime on fixed sample inputs, measured before a graph is written.

fp32 must match numerically (max abs diff on the final weights); fp16 and int8 are judged on
rankings (top-k token agreement), because sparse outputs are discontinuous at the ReLU: a token
can appear or vanish under reduced precision without the retrieval changing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from stair_es.runtime.images import ImagePreprocessing, load_pixels

SAMPLE_TEXTS = [
    "a photo of a dog",
    "two red circles and a blue square on a white background",
    "",
    "A man riding a horse along the beach at sunset, with waves in the background.",
    "Café crème, naïve façade -- punctuation!!! and ünïcödé",
    "the " * 200,  # longer than any max length: exercises truncation
    "x",
    "yellow triangle",
]


@dataclass(frozen=True)
class Tolerance:
    """Limits one precision must meet; ``max_abs_diff`` None means judged on rankings only."""

    max_abs_diff: float | None
    min_topk_agreement: float
    k: int = 10


DEFAULT_TOLERANCES = {
    "fp32": Tolerance(max_abs_diff=1e-3, min_topk_agreement=0.99),
    "fp16": Tolerance(max_abs_diff=None, min_topk_agreement=0.9),
    "int8": Tolerance(max_abs_diff=None, min_topk_agreement=0.9),
}


def sample_images(count: int = 8, seed: int = 0) -> list[Image.Image]:
    """Deterministic images with structure (gradients, shapes, aspect ratios), not just noise."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        w, h = [(320, 240), (240, 320), (256, 256), (500, 180)][i % 4]
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([(xx * (i + 1)) % 256, (yy * (i + 2)) % 256, ((xx + yy) * 3) % 256], -1).astype(
            np.uint8
        )
        img = Image.fromarray(base, "RGB")
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x0, y0 = int(rng.integers(0, w - 40)), int(rng.integers(0, h - 40))
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.ellipse((x0, y0, x0 + 40, y0 + 40), fill=color)
        images.append(img)
    return images


def sample_pixels(spec: ImagePreprocessing, count: int = 8, seed: int = 0) -> np.ndarray:
    """Sample images through the runtime's own preprocessing, so parity covers the real inputs."""
    return np.stack([load_pixels(img, spec) for img in sample_images(count, seed)])


def dense_from_output(outputs: tuple[np.ndarray, ...] | list[np.ndarray], vocab_size: int) -> np.ndarray:
    """Graph output (weights, or indices+values) as dense [B, V] weights."""
    if len(outputs) == 1:
        return np.asarray(outputs[0], dtype=np.float32)
    indices, values = outputs
    dense = np.zeros((indices.shape[0], vocab_size), dtype=np.float32)
    np.put_along_axis(
        dense, np.asarray(indices, dtype=np.int64), np.asarray(values, dtype=np.float32), axis=1
    )
    return dense


def topk_agreement(reference: np.ndarray, candidate: np.ndarray, k: int = 10) -> float:
    """Mean over rows of |top-k(ref) ∩ top-k(cand)| / |top-k(ref)|, counting positive weights only.

    Rows where the reference has no positive weight count as agreeing when the candidate has none.
    """
    scores = []
    for ref_row, cand_row in zip(reference, candidate):
        ref_top = _top_positive(ref_row, k)
        cand_top = _top_positive(cand_row, k)
        if not ref_top:
            scores.append(1.0 if not cand_top else 0.0)
        else:
            scores.append(len(ref_top & cand_top) / max(len(ref_top), len(cand_top)))
    return float(np.mean(scores)) if scores else 1.0


def _top_positive(row: np.ndarray, k: int) -> set[int]:
    positive = np.flatnonzero(row > 0)
    if len(positive) > k:
        positive = positive[np.argsort(-row[positive], kind="stable")[:k]]
    return set(positive.tolist())


def compare(reference: np.ndarray, candidate: np.ndarray, tolerance: Tolerance) -> dict[str, Any]:
    """Parity numbers for one graph and whether they pass ``tolerance``."""
    diff = float(np.max(np.abs(reference - candidate))) if reference.size else 0.0
    agreement = topk_agreement(reference, candidate, tolerance.k)
    ok = agreement >= tolerance.min_topk_agreement and (
        tolerance.max_abs_diff is None or diff <= tolerance.max_abs_diff
    )
    active_ref = float(np.mean(np.sum(reference > 0, axis=1))) if reference.size else 0.0
    return {
        "samples": int(reference.shape[0]),
        "max_abs_diff": diff,
        "max_abs_weight": float(np.max(np.abs(reference))) if reference.size else 0.0,
        f"top{tolerance.k}_agreement": round(agreement, 4),
        "mean_active_tokens": round(active_ref, 1),
        "tolerance": {
            "max_abs_diff": tolerance.max_abs_diff,
            f"min_top{tolerance.k}_agreement": tolerance.min_topk_agreement,
        },
        "passed": bool(ok),
    }
