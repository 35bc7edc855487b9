"""Recall@K, zero-shot accuracy and top-1 agreement on hand-made rankings."""

from __future__ import annotations

import numpy as np
import pytest

from stair_es.eval.metrics import accuracy, recall_at_k, top1_agreement


def test_recall_counts_first_relevant_rank() -> None:
    ranked = [[3, 1, 2], [0, 5, 4], [9, 8, 7], [-1, -1, -1]]
    relevant = [frozenset([3]), frozenset([4, 5]), frozenset([1]), frozenset([0])]
    assert recall_at_k(ranked, relevant, (1, 2, 3)) == {1: 0.25, 2: 0.5, 3: 0.5}


def test_recall_accepts_arrays_with_padding_and_short_lists() -> None:
    ranked = np.array([[2, -1], [1, 0]])
    assert recall_at_k(ranked, [frozenset([0]), frozenset([0])], (1, 2)) == {1: 0.0, 2: 0.5}
    assert recall_at_k([[]], [frozenset([0])], (1,)) == {1: 0.0}


def test_recall_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError):
        recall_at_k([[1]], [frozenset([1]), frozenset([2])])


def test_accuracy_top_k() -> None:
    predicted = [[1, 0, 2], [2, 1, 0], [0, 2, 1]]
    labels = [1, 1, 1]
    assert accuracy(predicted, labels, 1) == pytest.approx(1 / 3)
    assert accuracy(predicted, labels, 2) == pytest.approx(2 / 3)
    assert accuracy(predicted, labels, 3) == 1.0


def test_top1_agreement() -> None:
    assert top1_agreement([[1, 2], [3], []], [[1], [4, 3], []]) == pytest.approx(2 / 3)
    assert top1_agreement([], []) == 1.0
