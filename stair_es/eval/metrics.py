"""Retrieval metrics from ranked lists: Recall@K and zero-shot accuracy.

Rankings are lists of item indices, best first, ``-1`` for "nothing retrieved" (so in-memory and
engine rankings go through the same code). A query counts as a hit at K when any of its relevant
items is in its first K results.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stair_es.errors import InvalidArgument

DEFAULT_KS = (1, 5, 10)


def recall_at_k(
    ranked: Sequence[Sequence[int]] | np.ndarray,
    relevant: Sequence[frozenset[int] | set[int]],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[int, float]:
    """Fraction of queries with a relevant item in their top K, for each K in ``ks``."""
    if len(ranked) != len(relevant):
        raise InvalidArgument(f"{len(ranked)} rankings but {len(relevant)} relevance sets")
    if not len(ranked):
        return {k: 0.0 for k in ks}
    first_hit = np.array([_first_hit(row, rel) for row, rel in zip(ranked, relevant, strict=True)])
    return {k: float(np.mean(first_hit < k)) for k in ks}


def _first_hit(row: Sequence[int], relevant: frozenset[int] | set[int]) -> int:
    """0-based rank of the first relevant item, or a large number when there is none."""
    for rank, item in enumerate(list(row)):
        if item >= 0 and item in relevant:
            return rank
    return 1 << 30


def top1_agreement(a: Sequence[Sequence[int]] | np.ndarray, b: Sequence[Sequence[int]] | np.ndarray) -> float:
    """Fraction of queries whose first result is the same item in both rankings."""
    if len(a) != len(b):
        raise InvalidArgument("rankings differ in length")
    if not len(a):
        return 1.0
    same = [
        (len(x) > 0 and len(y) > 0 and int(x[0]) == int(y[0])) or (len(x) == 0 and len(y) == 0)
        for x, y in zip(a, b, strict=True)
    ]
    return float(np.mean(same))


def accuracy(predicted: Sequence[Sequence[int]] | np.ndarray, labels: Sequence[int], k: int = 1) -> float:
    """Zero-shot top-k accuracy: the true class index among the first ``k`` predicted classes."""
    return recall_at_k(predicted, [frozenset([int(y)]) for y in labels], (k,))[k]
