"""Synthetic STAIR-like sparse corpora for the engine benchmarks (numpy only, seeded).

Token popularity follows a Zipf law over a BERT-sized vocabulary; documents carry 100-200 tokens
with log-normal weights in the range STAIR's log(1 + ReLU) head produces (mostly 0.1-3), rare tokens
slightly heavier. The Zipf exponent sets how often popular tokens co-occur, i.e. the corpus FLOPS
(:meth:`SparseCorpus.flops`), which is what exact sparse queries pay for. The default, s = 0.9, gives
FLOPS ~11, the densest published sparse bi-encoder (opensearch-neural-sparse-encoding-v1: 11.4 on
BEIR; v2-distill 8.3; doc-only models ~2); s = 1.05 (FLOPS ~21) was the earlier, heavier default. Each document has a pseudo caption drawn from its own tokens, so BM25 runs on
comparable text. Queries are perturbed copies of random documents (a relevant document exists),
with extra popular tokens mixed in, like a text-side expansion.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from stair_es.engine import Document
from stair_es.sparse import SparseVector


def document_key(i: int) -> str:
    """The benchmark's id for document ``i``: 32 hex digits, like the indexer's content-hash ids."""
    return hashlib.sha256(f"synthetic-doc-{i}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CorpusSpec:
    n_docs: int
    vocab: int = 30522
    zipf_s: float = 0.9
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
        """Documents as the product indexes them: ids are the indexer's 32-hex content-hash ids
        (hash of a per-document content hash), which cost more index bytes than short serial ids."""
        for i, (vec, caption) in enumerate(self.documents()):
            yield Document(image_tokens=vec, caption=caption, id=document_key(i))

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


class BruteForce:
    """Exact top-k by dot product over a list of document vectors (numpy postings; no engine).

    Used to price document-side pruning: the engine's ranking equals this one up to its 9-bit
    weight storage (integration-tested), so top-k overlap between pruned and unpruned documents
    can be measured without indexing twice.
    """

    def __init__(self, vectors: list[SparseVector], vocab: int) -> None:
        ids = np.concatenate([v.ids for v in vectors])
        weights = np.concatenate([v.weights for v in vectors])
        docs = np.concatenate([np.full(len(v), i) for i, v in enumerate(vectors)])
        order = np.argsort(ids, kind="stable")
        self.docs, self.weights = docs[order], weights[order].astype(np.float64)
        self.starts = np.searchsorted(ids[order], np.arange(vocab + 1))
        self.n = len(vectors)

    def top(self, query: SparseVector, k: int = 10) -> set[int]:
        scores = np.zeros(self.n)
        for token, weight in zip(query.tokens, query.weights, strict=True):
            t = int(token[1:])  # synthetic token names are "t<id>"
            a, b = self.starts[t], self.starts[t + 1]
            scores[self.docs[a:b]] += float(weight) * self.weights[a:b]
        return set(np.argpartition(-scores, k)[:k].tolist())


def pruning_overlap(
    corpus: SparseCorpus, query_sets: dict[str, list[tuple[SparseVector, str]]], k: int = 10, **prune: float
) -> dict[str, dict[str, float]]:
    """Per query set: mean top-k overlap of exact search over pruned vs unpruned documents, and tokens
    kept. The corpus is generated and both indexes are built once for all query sets."""
    full = [vec for vec, _ in corpus.documents()]
    pruned = [vec.prune(**prune) for vec in full]  # type: ignore[arg-type]
    exact, cut = BruteForce(full, corpus.spec.vocab), BruteForce(pruned, corpus.spec.vocab)
    tokens = {
        "mean_doc_tokens": round(float(np.mean([len(v) for v in pruned])), 1),
        "mean_doc_tokens_unpruned": round(float(np.mean([len(v) for v in full])), 1),
    }
    return {
        name: {
            "topk_overlap_vs_unpruned": round(
                float(np.mean([len(exact.top(q, k) & cut.top(q, k)) / k for q, _ in queries])), 4
            ),
            **tokens,
        }
        for name, queries in query_sets.items()
    }
