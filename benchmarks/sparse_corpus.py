"""Synthetic STAIR-like sparse corpora for the engine benchmarks (numpy only, seeded).

Token popularity follows a Zipf law over a BERT-sized vocabulary; documents carry 100-200 tokens
with log-normal weights in the range STAIR's log(1 + ReLU) head produces (mostly 0.1-3), rare tokens
slightly heavier. Each document has a pseudo caption drawn from its own tokens, so BM25 runs on
comparable text. Queries are perturbed copies of random documents (a relevant document exists),
with extra popular tokens mixed in, like a text-side expansion.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from stair_es.engine import Document
from stair_es.sparse import SparseVector


@dataclass(frozen=True)
class CorpusSpec:
    n_docs: int
    vocab: int = 30522
    zipf_s: float = 1.05
    min_tokens: int = 100
    max_tokens: int = 200
    caption_words: int = 10
    seed: int = 0


class SparseCorpus:
    def __init__(self, spec: CorpusSpec) -> None:
        self.spec = spec
        ranks = np.arange(1, spec.vocab + 1, dtype=np.float64)
        p = ranks ** (-spec.zipf_s)
        self.cdf = np.cumsum(p / p.sum())
        # a fixed random permutation maps popularity rank -> token id, so ids are not sorted by rank
        self.token_of_rank = np.random.default_rng(spec.seed + 99).permutation(spec.vocab)
        self.rarity = np.log1p(np.arange(spec.vocab)) / np.log1p(spec.vocab)  # 0 popular .. 1 rare

    def _sample_ranks(self, rng: np.random.Generator, n: int) -> np.ndarray:
        draws = np.searchsorted(self.cdf, rng.random(int(n * 2.5) + 16))
        ranks = np.unique(np.minimum(draws, self.spec.vocab - 1))
        rng.shuffle(ranks)
        return ranks[:n]

    def _weights(self, rng: np.random.Generator, ranks: np.ndarray) -> np.ndarray:
        w = rng.lognormal(-0.8, 0.6, len(ranks)) * (0.6 + 0.8 * self.rarity[ranks])
        return np.minimum(w, 4.0).astype(np.float32)

    def vector(self, rng: np.random.Generator, n: int) -> SparseVector:
        ranks = self._sample_ranks(rng, n)
        ids = self.token_of_rank[ranks]
        return SparseVector.from_arrays([f"t{i}" for i in ids], self._weights(rng, ranks), ids)

    def caption(self, rng: np.random.Generator, vec: SparseVector) -> str:
        w = vec.weights.astype(np.float64)
        p = w / w.sum()
        k = min(self.spec.caption_words, len(vec))
        picks = rng.choice(len(vec), size=k, replace=False, p=p)
        return " ".join(vec.tokens[i] for i in picks)

    def documents(self) -> Iterator[tuple[SparseVector, str]]:
        rng = np.random.default_rng(self.spec.seed)
        for _ in range(self.spec.n_docs):
            vec = self.vector(rng, int(rng.integers(self.spec.min_tokens, self.spec.max_tokens + 1)))
            yield vec, self.caption(rng, vec)

    def index_documents(self) -> Iterator[Document]:
        for i, (vec, caption) in enumerate(self.documents()):
            yield Document(image_tokens=vec, caption=caption, id=f"doc{i}")

    def flops(self, sample: int = 3000) -> float:
        """SPLADE's FLOPS: sum over tokens of (fraction of documents containing it)^2, on a sample.

        FLOPs-regularised models land around 1-3; higher means popular tokens sit in most documents
        and every query must score long posting lists.
        """
        n = min(sample, self.spec.n_docs)
        df = np.zeros(self.spec.vocab)
        for i, (vec, _) in enumerate(self.documents()):
            if i == n:
                break
            assert vec.ids is not None
            df[vec.ids] += 1
        return float(((df / n) ** 2).sum())

    def queries(
        self, n: int, min_tokens: int, max_tokens: int, seed: int = 1
    ) -> list[tuple[SparseVector, str]]:
        """(query vector, BM25 text) pairs built from random source documents."""
        rng = np.random.default_rng(self.spec.seed + 1000 + seed)
        sources = set(rng.choice(self.spec.n_docs, size=min(n, self.spec.n_docs), replace=False).tolist())
        out = []
        for i, (vec, caption) in enumerate(self.documents()):
            if i not in sources:
                continue
            size = int(rng.integers(min_tokens, max_tokens + 1))
            own = vec.prune(top_k=int(size * 0.7))
            noise = self.vector(rng, size - len(own))
            tokens = list(own.tokens) + list(noise.tokens)
            weights = np.concatenate([own.weights * rng.lognormal(0, 0.3, len(own)), noise.weights * 0.5])
            words = caption.split()[: max(3, len(caption.split()) - 2)]
            out.append((SparseVector.from_arrays(tokens, weights), " ".join(words)))
            if len(out) == n:
                break
        rng.shuffle(out)  # type: ignore[arg-type]
        return out
