"""Evaluation runs: encode a set once, score it in memory and through the engine, side by side.

In memory is the model's own number (float32 dot products over full vectors). Through the engine
the same vectors are indexed into a temporary index and queried with the production query
builder, so the difference between the two columns is exactly what the engine costs: 9-bit weight
storage, query pruning to the clause cap, two-phase windows. Each direction also reports how often
the two agree on the first result and how far the engine's scores are from the exact ones.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stair_es.errors import EngineError, UsageError
from stair_es.eval.datasets import LabelledSet, RetrievalSet
from stair_es.eval.metrics import DEFAULT_KS, recall_at_k, top1_agreement
from stair_es.eval.scoring import SparseMatrix, top_k
from stair_es.sparse import SparseVector

Log = Callable[[str], None]
RELEVANCE = ("id", "caption")


@dataclass
class Direction:
    """One query direction (e.g. text->image): metric name -> value, per side."""

    name: str
    queries: int
    memory: dict[str, float]
    engine: dict[str, float] | None = None
    top1_agreement: float | None = None
    score_rel_diff_max: float | None = None  # engine vs float32 dot product (storage + pruning)
    score_rel_diff_9bit_max: float | None = None  # engine vs exact 9-bit arithmetic (consistency)
    pruned_queries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class EvalReport:
    task: str  # "retrieval" | "zeroshot"
    dataset: dict[str, Any]
    model: dict[str, Any]
    directions: list[Direction]
    engine: dict[str, Any] | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "dataset": self.dataset,
            "model": self.model,
            "engine": self.engine,
            "directions": {d.name: d.to_dict() for d in self.directions},
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


@dataclass
class EngineTarget:
    """Where and how to run the engine side; ``backend`` None means in memory only."""

    backend: Any = None
    mode: str = "exact"
    index: str | None = None  # default: a fresh stair-es-eval-<random> index
    keep: bool = False
    msearch_batch: int = 32
    failures_path: Path | None = None


# --------------------------------------------------------------------------------------------
# encoding


def encode_images(
    encoder: Any, paths: Sequence[Path], batch_size: int, log: Log
) -> tuple[list, dict[int, str]]:
    """Vectors per image (None where decoding failed) and the failures by position."""
    vectors: list[SparseVector | None] = [None] * len(paths)
    failures: dict[int, str] = {}
    for result in encoder.iter_encode_images([str(p) for p in paths], batch_size=batch_size):
        if result.ok:
            vectors[result.index] = result.vector
        else:
            failures[result.index] = str(result.error)
    if failures:
        first = failures[min(failures)]
        log(f"{len(failures)} of {len(paths)} images could not be decoded and are left out (first: {first})")
    return vectors, failures


def average_vectors(vectors: Sequence[SparseVector]) -> SparseVector:
    """Mean token weights of several prompt vectors (one class from several templates)."""
    total: dict[str, float] = {}
    for vec in vectors:
        for token, weight in zip(vec.tokens, vec.weights.tolist(), strict=True):
            total[token] = total.get(token, 0.0) + weight
    return SparseVector.from_dict({t: w / len(vectors) for t, w in total.items()})


# --------------------------------------------------------------------------------------------
# scoring


def memory_rankings(queries: Sequence[SparseVector], docs: Sequence[SparseVector], k: int) -> np.ndarray:
    columns: dict[str, int] = {}
    doc_matrix = SparseMatrix.from_vectors(docs, columns)
    query_matrix = SparseMatrix.from_vectors(queries, columns)
    ids, _scores = top_k(query_matrix, doc_matrix, k)
    return ids


def _as_lists(ids: np.ndarray) -> list[list[int]]:
    return [[int(i) for i in row if i >= 0] for row in ids]


class EngineSide:
    """A temporary index holding both directions' documents, queried with ``msearch``."""

    def __init__(self, target: EngineTarget, encoder: Any, log: Log) -> None:
        from stair_es.engine import ModelMeta

        self.target = target
        self.backend = target.backend
        self.log = log
        self.index = target.index or f"stair-es-eval-{uuid.uuid4().hex[:10]}"
        self.created = False
        if self.backend.index_exists(self.index):
            raise EngineError(
                f"index '{self.index}' already exists: eval writes only to a fresh index "
                "(pick another --index, or delete that one)"
            )
        vocab_size = getattr(getattr(encoder, "manifest", None), "vocab_size", None)
        self.backend.create_index(self.index, ModelMeta(encoder.model_id, encoder.vocab_hash, vocab_size))
        self.created = True
        self.indexed = 0

    def add(self, docs: Sequence[Any]) -> None:
        from stair_es.engine import Indexer, IndexerOptions

        indexer = Indexer(
            self.backend,
            self.index,
            failures_path=self.target.failures_path,
            options=IndexerOptions(relax_after=None),
        )
        summary = indexer.index_documents(docs)
        if summary.failed:
            where = f"; reasons in {summary.failures_path}" if summary.failures_path else ""
            raise EngineError(
                f"{summary.failed} of {summary.total} evaluation documents failed to index{where}"
            )
        self.indexed += summary.indexed

    def rankings(
        self, queries: Sequence[SparseVector], target: str, k: int, positions: dict[str, int]
    ) -> tuple[list[list[int]], list[float | None], list[SparseVector | None], int]:
        """Per query: ranked item positions, the top score, the tokens actually sent; pruned count."""
        from stair_es.engine import Searcher

        searcher = Searcher(self.backend, self.index)
        ranked: list[list[int]] = []
        top_scores: list[float | None] = []
        used: list[SparseVector | None] = []
        pruned = 0
        step = max(1, self.target.msearch_batch)
        for start in range(0, len(queries), step):
            plans: list[Any] = []
            for vec in queries[start : start + step]:
                if len(vec) == 0:
                    plans.append(None)
                    continue
                plan = searcher.plan(tokens=vec, k=k, mode=self.target.mode, target=target, explain=False)
                plan.body["_source"] = False
                pruned += int(plan.pruned_tokens > 0)
                plans.append(plan)
            bodies = [p.body for p in plans if p is not None]
            responses = iter(self.backend.msearch(self.index, bodies) if bodies else [])
            for plan in plans:
                if plan is None:
                    ranked.append([])
                    top_scores.append(None)
                    used.append(None)
                    continue
                resp = next(responses)
                if "error" in resp:
                    raise EngineError(f"evaluation query failed on '{self.index}': {_reason(resp['error'])}")
                hits = resp["hits"]["hits"]
                ranked.append([positions[h["_id"]] for h in hits])
                top_scores.append(float(hits[0]["_score"]) * plan.score_scale if hits else None)
                used.append(plan.used)
        return ranked, top_scores, used, pruned

    def close(self) -> None:
        if self.created and not self.target.keep:
            self.backend.delete_index(self.index)
            self.created = False


def _reason(error: Any) -> str:
    if isinstance(error, dict):
        causes = error.get("root_cause") or [error]
        first = causes[0] if isinstance(causes[0], dict) else error
        return f"{first.get('type', 'error')}: {first.get('reason', '')}"
    return str(error)


def _compare(
    direction: Direction,
    memory_ids: np.ndarray,
    engine_ranked: list[list[int]],
    engine_scores: list[float | None],
    used: list[SparseVector | None],
    queries: Sequence[SparseVector],
    docs: Sequence[SparseVector],
) -> None:
    direction.top1_agreement = top1_agreement(_as_lists(memory_ids[:, :1]), [r[:1] for r in engine_ranked])
    worst = worst9 = 0.0
    for q, (ranking, score, sent) in enumerate(zip(engine_ranked, engine_scores, used, strict=True)):
        if not ranking or score is None or sent is None:
            continue
        doc = docs[ranking[0]]
        exact = queries[q].dot(doc)
        exact9 = sent.dot(doc, truncate_other=True)
        if exact > 0:
            worst = max(worst, abs(score - exact) / exact)
        if exact9 > 0:
            worst9 = max(worst9, abs(score - exact9) / exact9)
    direction.score_rel_diff_max = worst
    direction.score_rel_diff_9bit_max = worst9


# --------------------------------------------------------------------------------------------
# tasks


def evaluate_retrieval(
    data: RetrievalSet,
    encoder: Any,
    *,
    engine: EngineTarget | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int = 64,
    relevance: str = "id",
    log: Log = lambda m: None,
) -> EvalReport:
    """Recall@K text->image and image->text, in memory and (when ``engine``) through the engine.

    ``relevance``: "id" (a caption matches its own image, the usual COCO/Flickr30K protocol) or
    "caption" (also any image with an identical caption).
    """
    if relevance not in RELEVANCE:
        raise UsageError(f"relevance must be one of {', '.join(RELEVANCE)}, got {relevance!r}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    log(f"encoding {len(data.images)} images and {len(data.captions)} captions ...")
    image_vecs, failures = encode_images(encoder, data.images, batch_size, log)
    data = data.drop_images(set(failures))
    image_vecs = [v for v in image_vecs if v is not None]
    text_vecs = encoder.encode_texts(data.captions, batch_size=batch_size)
    timings["encode_s"] = time.perf_counter() - t0
    if not data.images or not data.captions:
        raise EngineError("nothing left to evaluate: every image failed to decode")

    k = max(ks)
    t0 = time.perf_counter()
    t2i_ids = memory_rankings(text_vecs, image_vecs, k)
    i2t_ids = memory_rankings(image_vecs, text_vecs, k)
    timings["memory_s"] = time.perf_counter() - t0
    t2i_gold, i2t_gold = data.relevant_images(relevance), data.relevant_captions(relevance)
    t2i = Direction("text_to_image", len(text_vecs), _recall_names(recall_at_k(t2i_ids, t2i_gold, ks)))
    i2t = Direction("image_to_text", len(image_vecs), _recall_names(recall_at_k(i2t_ids, i2t_gold, ks)))

    engine_info = None
    if engine is not None and engine.backend is not None:
        from stair_es.engine import Document

        side = EngineSide(engine, encoder, log)
        try:
            t0 = time.perf_counter()
            log(f"indexing {len(image_vecs) + len(text_vecs)} documents into '{side.index}' ...")
            docs = [
                Document(id=f"i{n}", image_tokens=v, path=str(p))
                for n, (v, p) in enumerate(zip(image_vecs, data.images))
            ]
            docs += [
                Document(id=f"c{n}", text_tokens=v, caption=c)
                for n, (v, c) in enumerate(zip(text_vecs, data.captions))
            ]
            side.add(docs)
            timings["index_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            log(f"querying the engine ({engine.mode}) with {len(text_vecs) + len(image_vecs)} queries ...")
            image_pos = {f"i{n}": n for n in range(len(image_vecs))}
            text_pos = {f"c{n}": n for n in range(len(text_vecs))}
            for direction, queries, docs_vecs, target, positions, gold, mem_ids in (
                (t2i, text_vecs, image_vecs, "image", image_pos, t2i_gold, t2i_ids),
                (i2t, image_vecs, text_vecs, "text", text_pos, i2t_gold, i2t_ids),
            ):
                ranked, scores, used, pruned = side.rankings(queries, target, k, positions)
                direction.engine = _recall_names(recall_at_k(ranked, gold, ks))
                direction.pruned_queries = pruned
                _compare(direction, mem_ids, ranked, scores, used, queries, docs_vecs)
            timings["engine_query_s"] = time.perf_counter() - t0
            engine_info = _engine_info(side, engine)
        finally:
            side.close()

    return EvalReport(
        task="retrieval",
        dataset={
            "name": data.name,
            "split": data.split,
            "images": len(data.images),
            "captions": len(data.captions),
            "failed_images": len(failures),
            "relevance": relevance,
        },
        model=_model_info(encoder),
        directions=[t2i, i2t],
        engine=engine_info,
        timings=timings,
    )


def evaluate_zeroshot(
    data: LabelledSet,
    encoder: Any,
    *,
    engine: EngineTarget | None = None,
    ks: Sequence[int] = (1, 5),
    batch_size: int = 64,
    log: Log = lambda m: None,
) -> EvalReport:
    """Top-K accuracy: each image's nearest class prompt (in memory and through the engine)."""
    ks = tuple(k for k in ks if k <= len(data.classes)) or (1,)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    log(
        f"encoding {len(data.images)} images and {len(data.classes)} classes x {len(data.templates)} prompts ..."
    )
    image_vecs, failures = encode_images(encoder, data.images, batch_size, log)
    data = data.drop_images(set(failures))
    image_vecs = [v for v in image_vecs if v is not None]
    prompts = data.prompts()
    flat = encoder.encode_texts([p for group in prompts for p in group], batch_size=batch_size)
    per = len(data.templates)
    class_vecs = [average_vectors(flat[i * per : (i + 1) * per]) for i in range(len(prompts))]
    timings["encode_s"] = time.perf_counter() - t0
    if not image_vecs:
        raise EngineError("nothing left to evaluate: every image failed to decode")

    k = max(ks)
    gold = [frozenset([y]) for y in data.labels]
    t0 = time.perf_counter()
    mem_ids = memory_rankings(image_vecs, class_vecs, k)
    timings["memory_s"] = time.perf_counter() - t0
    direction = Direction("image_to_class", len(image_vecs), _accuracy_names(recall_at_k(mem_ids, gold, ks)))

    engine_info = None
    if engine is not None and engine.backend is not None:
        from stair_es.engine import Document

        side = EngineSide(engine, encoder, log)
        try:
            t0 = time.perf_counter()
            side.add(
                [Document(id=f"k{n}", text_tokens=v, caption=prompts[n][0]) for n, v in enumerate(class_vecs)]
            )
            timings["index_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            positions = {f"k{n}": n for n in range(len(class_vecs))}
            ranked, scores, used, pruned = side.rankings(image_vecs, "text", k, positions)
            direction.engine = _accuracy_names(recall_at_k(ranked, gold, ks))
            direction.pruned_queries = pruned
            _compare(direction, mem_ids, ranked, scores, used, image_vecs, class_vecs)
            timings["engine_query_s"] = time.perf_counter() - t0
            engine_info = _engine_info(side, engine)
        finally:
            side.close()

    return EvalReport(
        task="zeroshot",
        dataset={
            "name": data.name,
            "images": len(data.images),
            "classes": len(data.classes),
            "templates": data.templates,
            "failed_images": len(failures),
        },
        model=_model_info(encoder),
        directions=[direction],
        engine=engine_info,
        timings=timings,
    )


def _recall_names(values: dict[int, float]) -> dict[str, float]:
    return {f"R@{k}": v for k, v in values.items()}


def _accuracy_names(values: dict[int, float]) -> dict[str, float]:
    return {f"top{k}": v for k, v in values.items()}


def _model_info(encoder: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"id": getattr(encoder, "model_id", None)}
    try:
        provider = encoder.provider_info("text")
        info["provider"] = provider.active
        info["provider_reason"] = provider.reason
    except Exception:  # noqa: BLE001 - informational only (fake encoders in tests have no sessions)
        pass
    return info


def _engine_info(side: EngineSide, target: EngineTarget) -> dict[str, Any]:
    return {
        "engine": side.backend.info.describe(),
        "index": side.index,
        "kept": target.keep,
        "mode": target.mode,
        "documents": side.indexed,
    }
