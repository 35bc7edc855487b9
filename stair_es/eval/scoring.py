"""Exact sparse dot products in memory (numpy only): the reference the engine is compared with.

Vectors become CSR rows over a shared column space (token -> column, grown as vectors arrive).
Scores are computed per query batch either through an inverted index (work = matching
query-token/document pairs, what sparse retrieval is about) or, when the documents are dense
enough that a BLAS product is cheaper, through a dense block; both give the same numbers.
Top-k is deterministic: higher score first, then lower document index. Documents that share no
token with the query (score 0) are never returned, as the engine would not match them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from stair_es.sparse import SparseVector, truncate_9bit

MAX_PAIRS_PER_BATCH = 4_000_000  # inverted-index pairs per batch (bounds memory: ~32 bytes per pair)
MAX_DENSE_BYTES = 256 * 1024 * 1024  # densify documents only below this size
BLAS_SPEEDUP = 500.0  # a BLAS multiply-add costs ~0.03 ns, a gathered inverted-index pair 15-90 ns (measured)


@dataclass
class SparseMatrix:
    """CSR rows: row ``i`` has columns ``indices[indptr[i]:indptr[i+1]]`` with ``data`` weights."""

    indptr: np.ndarray  # int64, n_rows + 1
    indices: np.ndarray  # int64 column ids
    data: np.ndarray  # float32 weights
    n_cols: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.data)

    @classmethod
    def from_vectors(
        cls, vectors: Sequence[SparseVector], columns: dict[str, int], *, truncate: bool = False
    ) -> SparseMatrix:
        """Rows for ``vectors``; unseen tokens are added to ``columns`` (share it between matrices).

        ``truncate`` stores weights as the engine does (9 significant bits).
        """
        lengths = np.fromiter((len(v) for v in vectors), dtype=np.int64, count=len(vectors))
        indptr = np.zeros(len(vectors) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        indices = np.empty(int(indptr[-1]), dtype=np.int64)
        data = np.empty(int(indptr[-1]), dtype=np.float32)
        for row, vec in enumerate(vectors):
            start, end = indptr[row], indptr[row + 1]
            indices[start:end] = [columns.setdefault(t, len(columns)) for t in vec.tokens]
            data[start:end] = vec.weights
        if truncate:
            data = truncate_9bit(data)
        return cls(indptr, indices, data, len(columns))

    def with_cols(self, n_cols: int) -> SparseMatrix:
        return SparseMatrix(self.indptr, self.indices, self.data, max(n_cols, self.n_cols))

    def dense_rows(self, start: int, end: int) -> np.ndarray:
        """Rows ``start:end`` as a dense float32 block."""
        out = np.zeros((end - start, self.n_cols), dtype=np.float32)
        lo, hi = self.indptr[start], self.indptr[end]
        rows = np.repeat(np.arange(end - start), np.diff(self.indptr[start : end + 1]))
        out[rows, self.indices[lo:hi]] = self.data[lo:hi]
        return out

    def postings(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Column-major view (inverted index): ``colptr``, document rows, weights."""
        order = np.argsort(self.indices, kind="stable")
        rows = np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(self.indptr))[order]
        counts = np.bincount(self.indices, minlength=self.n_cols)
        colptr = np.zeros(self.n_cols + 1, dtype=np.int64)
        np.cumsum(counts, out=colptr[1:])
        return colptr, rows, self.data[order]


def _batches(sizes: np.ndarray, budget: int) -> Iterable[tuple[int, int]]:
    """Consecutive row ranges whose summed ``sizes`` stay within ``budget`` (at least one row each)."""
    start, total = 0, 0
    for row, size in enumerate(sizes.tolist()):
        if row > start and total + size > budget:
            yield start, row
            start, total = row, 0
        total += size
    if start < len(sizes):
        yield start, len(sizes)


def _top_k_block(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the ``k`` best columns (score desc, index asc), ``-1`` where fewer scored > 0."""
    n_rows, n_docs = scores.shape
    k = min(k, n_docs)
    if k == 0:
        return np.full((n_rows, 0), -1, dtype=np.int64), np.zeros((n_rows, 0), dtype=np.float32)
    if k < n_docs:
        # widen the partition by ties at the k-th score so that tie order is by index, deterministically
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
    else:
        kth = np.full((n_rows, 1), -np.inf)
    ids = np.empty((n_rows, k), dtype=np.int64)
    vals = np.empty((n_rows, k), dtype=np.float32)
    for r in range(n_rows):
        cand = np.flatnonzero(scores[r] >= kth[r, 0])
        order = np.lexsort((cand, -scores[r, cand]))[:k]
        ids[r], vals[r] = cand[order], scores[r, cand[order]]
    ids[vals <= 0] = -1
    vals[vals <= 0] = 0.0
    return ids, vals


def top_k(queries: SparseMatrix, docs: SparseMatrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, scores)``, each ``[n_queries, min(k, n_docs)]``: the exact top-k by dot product."""
    n_cols = max(queries.n_cols, docs.n_cols)
    queries, docs = queries.with_cols(n_cols), docs.with_cols(n_cols)
    colptr, post_rows, post_data = docs.postings()
    plen = np.diff(colptr)
    cum = np.zeros(queries.nnz + 1, dtype=np.int64)
    np.cumsum(plen[queries.indices], out=cum[1:])
    pairs_per_query = cum[queries.indptr[1:]] - cum[queries.indptr[:-1]]
    dense_bytes = docs.n_rows * n_cols * 4
    dense_cost = queries.n_rows * docs.n_rows * n_cols / BLAS_SPEEDUP
    use_dense = dense_bytes <= MAX_DENSE_BYTES and dense_cost < int(pairs_per_query.sum())
    out_ids, out_scores = [], []
    if use_dense:
        doc_block = docs.dense_rows(0, docs.n_rows)
        rows_per_batch = max(1, MAX_PAIRS_PER_BATCH // max(1, docs.n_rows + n_cols))
        for start in range(0, queries.n_rows, rows_per_batch):
            end = min(start + rows_per_batch, queries.n_rows)
            scores = queries.dense_rows(start, end) @ doc_block.T
            ids, vals = _top_k_block(scores, k)
            out_ids.append(ids)
            out_scores.append(vals)
    else:
        for start, end in _batches(pairs_per_query + docs.n_rows, MAX_PAIRS_PER_BATCH):
            scores = _inverted_scores(queries, start, end, colptr, post_rows, post_data, docs.n_rows)
            ids, vals = _top_k_block(scores, k)
            out_ids.append(ids)
            out_scores.append(vals)
    width = min(k, docs.n_rows)
    if not out_ids:
        return np.zeros((0, width), dtype=np.int64), np.zeros((0, width), dtype=np.float32)
    return np.concatenate(out_ids), np.concatenate(out_scores)


def _inverted_scores(
    queries: SparseMatrix,
    start: int,
    end: int,
    colptr: np.ndarray,
    post_rows: np.ndarray,
    post_data: np.ndarray,
    n_docs: int,
) -> np.ndarray:
    """Scores of query rows ``start:end`` against all documents, summed over matching postings."""
    lo, hi = queries.indptr[start], queries.indptr[end]
    cols = queries.indices[lo:hi]
    weights = queries.data[lo:hi].astype(np.float64)
    local_rows = np.repeat(np.arange(end - start, dtype=np.int64), np.diff(queries.indptr[start : end + 1]))
    lengths = colptr[cols + 1] - colptr[cols]
    entry = np.repeat(np.arange(len(cols), dtype=np.int64), lengths)
    first = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    offset = np.arange(len(entry), dtype=np.int64) - first[entry]
    pidx = colptr[cols][entry] + offset
    flat = local_rows[entry] * n_docs + post_rows[pidx]
    values = weights[entry] * post_data[pidx]
    scores = np.bincount(flat, weights=values, minlength=(end - start) * n_docs)
    return scores.reshape(end - start, n_docs).astype(np.float32)


def pair_score(query: SparseVector, doc: SparseVector, *, truncate: bool = False) -> float:
    """One exact dot product (for comparing a single engine score)."""
    return query.dot(doc, truncate_other=truncate)
