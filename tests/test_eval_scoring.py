"""Exact sparse top-k in memory: both code paths against a brute-force dot product."""

from __future__ import annotations

import numpy as np
import pytest

from stair_es.eval import scoring
from stair_es.eval.scoring import SparseMatrix, top_k
from stair_es.sparse import SparseVector, truncate_9bit


def random_vectors(
    rng: np.random.Generator, n: int, vocab: int = 200, max_tokens: int = 30
) -> list[SparseVector]:
    out = []
    for _ in range(n):
        m = int(rng.integers(0, max_tokens))
        ids = rng.choice(vocab, m, replace=False)
        out.append(SparseVector.from_arrays([f"t{i}" for i in ids], rng.random(m).astype(np.float32) + 0.01))
    return out


def brute_force(queries: list[SparseVector], docs: list[SparseVector], k: int) -> list[list[int]]:
    ranked = []
    for q in queries:
        scores = [(q.dot(d), j) for j, d in enumerate(docs)]
        ranked.append([j for s, j in sorted(scores, key=lambda x: (-x[0], x[1])) if s > 0][:k])
    return ranked


def run(queries: list[SparseVector], docs: list[SparseVector], k: int) -> tuple[np.ndarray, np.ndarray]:
    columns: dict[str, int] = {}
    d = SparseMatrix.from_vectors(docs, columns)
    q = SparseMatrix.from_vectors(queries, columns)
    return top_k(q, d, k)


@pytest.mark.parametrize("path", ["inverted", "dense"])
def test_top_k_matches_brute_force(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    queries, docs = random_vectors(rng, 60), random_vectors(rng, 90)
    if path == "dense":
        monkeypatch.setattr(scoring, "BLAS_SPEEDUP", 1e12)
    else:
        monkeypatch.setattr(scoring, "BLAS_SPEEDUP", 1e-12)
        monkeypatch.setattr(scoring, "MAX_PAIRS_PER_BATCH", 300)  # many small batches
    ids, scores = run(queries, docs, 10)
    expected = brute_force(queries, docs, 10)
    for row, want, q, row_scores in zip(ids, expected, queries, scores, strict=True):
        got = [int(i) for i in row if i >= 0]
        assert got == want
        assert np.allclose(row_scores[: len(got)], [q.dot(docs[j]) for j in got], rtol=1e-5)
        assert (row_scores[len(got) :] == 0).all()


def test_documents_sharing_no_token_are_not_returned() -> None:
    docs = [SparseVector.from_dict({"a": 1.0}), SparseVector.from_dict({"b": 2.0})]
    ids, scores = run([SparseVector.from_dict({"a": 0.5}), SparseVector.from_dict({"zzz": 1.0})], docs, 5)
    assert ids.shape == (2, 2)
    assert ids[0].tolist() == [0, -1] and scores[0, 0] == pytest.approx(0.5)
    assert ids[1].tolist() == [-1, -1]


def test_ties_are_broken_by_document_order() -> None:
    docs = [SparseVector.from_dict({"x": 1.0}) for _ in range(6)]
    ids, _ = run([SparseVector.from_dict({"x": 1.0})], docs, 4)
    assert ids[0].tolist() == [0, 1, 2, 3]


def test_empty_inputs() -> None:
    ids, scores = run([], [SparseVector.from_dict({"a": 1.0})], 3)
    assert ids.shape == (0, 1) and scores.shape == (0, 1)
    ids, _ = run([SparseVector.from_dict({"a": 1.0}), SparseVector.from_arrays([], [])], [], 3)
    assert ids.shape == (2, 0)


def test_truncate_stores_engine_weights() -> None:
    vec = SparseVector.from_dict({"a": 0.123456789, "b": 3.14159})
    matrix = SparseMatrix.from_vectors([vec], {}, truncate=True)
    assert np.array_equal(matrix.data, truncate_9bit(vec.weights))
    assert matrix.n_rows == 1 and matrix.nnz == 2


def test_shared_columns_grow_across_matrices() -> None:
    columns: dict[str, int] = {}
    SparseMatrix.from_vectors([SparseVector.from_dict({"a": 1.0})], columns)
    second = SparseMatrix.from_vectors([SparseVector.from_dict({"b": 1.0, "a": 2.0})], columns)
    assert columns == {"a": 0, "b": 1}
    assert second.n_cols == 2
    assert second.dense_rows(0, 1).tolist() == [[2.0, 1.0]]
