"""Search API: a query (text, image or token map) in, ranked hits with explanations out
(the explanations themselves: :mod:`stair_es.engine.explain`)."""

from __future__ import annotations

import dataclasses
import difflib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from stair_es.engine.backend import Backend
from stair_es.engine.explain import TokenContribution, explain, explain_from_engine
from stair_es.engine.mappings import CAPTION_FIELD, IMAGE_FIELD, TEXT_FIELD, IndexMeta
from stair_es.engine.query import MODES, QueryOptions, QueryPlan, build_query, filter_fields
from stair_es.errors import EngineError, UsageError
from stair_es.sparse import SparseVector

TARGETS = {"image": (IMAGE_FIELD,), "text": (TEXT_FIELD,), "both": (IMAGE_FIELD, TEXT_FIELD)}
FLOAT32_MAX = float(np.finfo(np.float32).max)


def checked_query_tokens(tokens: Mapping[str, Any], what: str = "query") -> SparseVector:
    """A token map as a query vector; a weight that is not a finite float32 is refused with one line
    naming the token (it would otherwise become inf, or vanish in silence)."""
    for token, weight in tokens.items():
        try:
            value = float(weight)
        except (TypeError, ValueError):
            raise UsageError(f"{what}: the weight of {token!r} is not a number ({weight!r})") from None
        if not math.isfinite(value):
            raise UsageError(f"{what}: the weight of {token!r} must be a finite number, got {value}")
        if abs(value) > FLOAT32_MAX:
            raise UsageError(
                f"{what}: the weight of {token!r} is too large ({value:g}; engines store float32, "
                f"at most {FLOAT32_MAX:.3g})"
            )
    return SparseVector.from_dict({str(t): float(w) for t, w in tokens.items()})


class QueryEncoder(Protocol):
    """What the searcher needs from an encoder: :class:`stair_es.runtime.Encoder` (the ONNX
    encoder) has this shape, and so can any object with these read-only attributes."""

    @property
    def model_id(self) -> str: ...

    @property
    def vocab_hash(self) -> str: ...

    def encode_texts(self, texts: list[str]) -> list[SparseVector]: ...

    def encode_images(self, images: list[Any]) -> list[SparseVector]: ...


Encoder = QueryEncoder  # the protocol's earlier name, kept for code that imports it


@dataclass
class Hit:
    id: str
    score: float
    source: dict[str, Any]
    field: str | None = None
    explanation: list[TokenContribution] = dataclasses.field(default_factory=list)
    sort: list[Any] | None = None  # the engine's sort values: pass the last hit's as search_after

    @property
    def explained_score(self) -> float:
        return float(sum(c.contribution for c in self.explanation))

    def to_dict(self, top: int | None = 10) -> dict[str, Any]:
        rows = self.explanation if top is None else self.explanation[:top]
        return {
            "id": self.id,
            "score": self.score,
            "field": self.field,
            "source": self.source,
            "explained_score": self.explained_score,
            "matched_tokens": len(self.explanation),
            "explanation": [c.__dict__ for c in rows],
        }


@dataclass
class SearchResult:
    hits: list[Hit]
    plan: QueryPlan
    took_ms: float
    query_tokens: SparseVector
    total: int | None = None  # matching documents (with ``track_total_hits``), else None
    total_relation: str = "eq"  # "gte": at least ``total`` (the engine stopped counting)

    @property
    def next_search_after(self) -> list[Any] | None:
        """``search_after`` for the next page (a search with ``search_after`` sorts its hits)."""
        return self.hits[-1].sort if self.hits and self.hits[-1].sort else None

    def to_dict(self, top_tokens: int | None = 10) -> dict[str, Any]:
        return {
            "mode": self.plan.mode,
            "took_ms": round(self.took_ms, 2),
            "total": self.total,
            "total_relation": self.total_relation,
            "query_tokens": len(self.query_tokens),
            "used_tokens": len(self.plan.used),
            "pruned_tokens": self.plan.pruned_tokens,
            "notes": self.plan.notes,
            "hits": [h.to_dict(top_tokens) for h in self.hits],
        }


class Searcher:
    """Searches one index; refuses an encoder whose model/vocabulary differs from the index's."""

    def __init__(
        self,
        backend: Backend,
        index: str,
        encoder: QueryEncoder | None = None,
        *,
        options: QueryOptions | None = None,
        meta: IndexMeta | None = None,
    ) -> None:
        """``meta``: the index's metadata when the caller has read it already (the async searcher
        reads it awaited); otherwise it is read here, and an encoder must match it."""
        self.backend = backend
        self.index = index
        self.encoder = encoder
        self.options = options or QueryOptions()
        self.fields: frozenset[str] | None = None  # the mapping's fields, read when a filter is used
        if meta is None:
            meta = (
                backend.check_model(index, encoder.model_id, encoder.vocab_hash)
                if encoder is not None
                else backend.index_meta(index)
            )
        self.meta: IndexMeta = meta

    def query_vector(self, text: str | None = None, image: Any = None, tokens: Any = None) -> SparseVector:
        given = [x is not None for x in (text, image, tokens)]
        if sum(given) != 1:
            raise UsageError("give exactly one of text, image or tokens")
        if tokens is not None:
            return tokens if isinstance(tokens, SparseVector) else checked_query_tokens(tokens)
        if self.encoder is None:
            raise UsageError("text and image queries need an encoder (a model); pass tokens otherwise")
        if text is not None:
            return self.encoder.encode_texts([text])[0]
        return self.encoder.encode_images([image])[0]

    def plan(
        self,
        text: str | None = None,
        image: Any = None,
        tokens: Any = None,
        *,
        k: int = 10,
        offset: int = 0,
        filter: Any = None,
        mode: str = "exact",
        target: str = "image",
        explain: bool = True,
        search_after: Sequence[Any] | None = None,
        track_total_hits: bool | int | None = None,
        encoded: SparseVector | None = None,
    ) -> QueryPlan:
        """The request body :meth:`search` would send (for ``--show-query`` and tests).

        ``encoded``: the query vector of ``text``/``image`` when the caller already encoded it (the
        async searcher encodes in a worker thread, batch search encodes all queries at once).
        """
        if mode not in MODES:
            raise UsageError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if target not in TARGETS:
            raise UsageError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
        if mode in ("hybrid", "bm25") and text is None:
            raise UsageError(f"mode '{mode}' needs a text query (BM25 runs on captions)")
        if encoded is not None:
            vec: SparseVector | None = encoded
        else:
            vec = None if mode == "bm25" else self.query_vector(text, image, tokens)
        if vec is not None and len(vec) == 0:
            raise UsageError("the query has no token with a positive weight; nothing to search for")
        fields = TARGETS[target]
        if filter is not None:
            self.check_filter_fields(filter)
        if mode == "native":
            self._require_native()
        source: Any = True if explain else {"excludes": [IMAGE_FIELD, TEXT_FIELD]}
        plan = build_query(
            vec,
            fields,
            mode=mode,
            size=k,
            from_=offset,
            filter=filter,
            caption=text,
            caption_field=CAPTION_FIELD,
            options=self.options,
            engine_limit=self.backend.max_clause_count(),
            field_type=self.meta.token_field_type,
            distribution=self.backend.distribution,
            source=source,
            weight_shift=self.meta.weight_shift,
        )
        if explain and mode != "bm25" and not self.meta.tokens_in_source:
            plan.body["explain"] = True  # token maps are not stored in _source: ask the engine
        if track_total_hits is not None:
            plan.body["track_total_hits"] = track_total_hits
        if search_after is not None:
            self._page_after(plan, search_after, offset)
        return plan

    def check_filter_fields(self, filter: Any) -> None:
        """A filter on a field the index does not have matches nothing: say so instead."""
        if self.fields is None:
            self.fields = frozenset(self.backend.field_names(self.index))
        missing = sorted(filter_fields(filter) - self.fields)
        if not missing:
            return
        known = sorted(f for f in self.fields if f not in (IMAGE_FIELD, TEXT_FIELD))
        name = missing[0]
        close = [f for f in known if f.endswith("." + name)] or difflib.get_close_matches(name, known, n=2)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UsageError(
            f"filter on '{name}': index '{self.index}' has no such field ({hint}fields: {', '.join(known)}; "
            "metadata from manifests and sidecars is under user.*)"
        )

    def _page_after(self, plan: QueryPlan, search_after: Sequence[Any], offset: int) -> None:
        """Sort by score with a unique tiebreak so ``search_after`` pages never skip or repeat."""
        if plan.mode == "two_phase":
            raise UsageError(
                "search_after cannot page two-phase results (rescored hits cannot be sorted); use offset"
            )
        if offset:
            raise UsageError("give either offset or search_after, not both")
        # _id sorts on OpenSearch and ES 7; ES 8+ disables _id field data: index order breaks ties
        tiebreak = (
            "_doc" if self.backend.distribution == "elasticsearch" and self.backend.info.major >= 8 else "_id"
        )
        plan.body["sort"] = [{"_score": "desc"}, {tiebreak: "asc"}]
        if search_after:
            plan.body["search_after"] = list(search_after)

    def search(
        self,
        text: str | None = None,
        image: Any = None,
        tokens: Any = None,
        *,
        k: int = 10,
        offset: int = 0,
        filter: Any = None,
        mode: str = "exact",
        target: str = "image",
        explain: bool = True,
        search_after: Sequence[Any] | None = None,
        track_total_hits: bool | int | None = None,
    ) -> SearchResult:
        """Top ``k`` hits (from ``offset``) for one query; see :data:`~stair_es.engine.query.MODES`.

        Paging: ``offset`` for the first pages; for deep pages pass ``search_after=[]`` on the first
        call and ``result.next_search_after`` afterwards. ``track_total_hits=True`` fills
        ``result.total`` (an int caps the count, which then has ``total_relation`` "gte").
        """
        plan = self.plan(
            text,
            image,
            tokens,
            k=k,
            offset=offset,
            filter=filter,
            mode=mode,
            target=target,
            explain=explain,
            search_after=search_after,
            track_total_hits=track_total_hits,
        )
        start = time.perf_counter()
        resp = self.backend.search(self.index, plan.body)
        return self.result(resp, plan, explain, (time.perf_counter() - start) * 1000)

    def search_many(
        self, queries: Sequence[str | Mapping[str, Any]], *, explain: bool = True, **common: Any
    ) -> list[SearchResult]:
        """Several queries in one ``_msearch`` request; texts (and images) are encoded in one batch.

        Each query is a text, or a mapping with ``text``/``image``/``tokens`` and optionally its own
        ``k``, ``filter``, ``mode`` ... (``common`` holds the defaults). Results come back in order;
        a query the engine refused raises :class:`EngineError` naming its position.
        """
        specs = [{"text": q} if isinstance(q, str) else dict(q) for q in queries]
        vectors = self.encode_queries(specs, common.get("mode", "exact"))
        plans = self.plans(specs, vectors, explain, common)
        start = time.perf_counter()
        responses = self.backend.msearch(self.index, [p.body for p in plans])
        took = (time.perf_counter() - start) * 1000
        return [
            self.result(r, p, explain, took, position=i) for i, (r, p) in enumerate(zip(responses, plans))
        ]

    def plans(
        self,
        specs: Sequence[Mapping[str, Any]],
        vectors: Sequence[SparseVector | None],
        explain: bool,
        common: Mapping[str, Any],
    ) -> list[QueryPlan]:
        """One plan per query spec, with its vector already encoded."""
        return [
            self.plan(
                **{k: v for k, v in {**common, **spec}.items() if k not in ("image", "tokens")},
                explain=explain,
                encoded=vec,
            )
            for spec, vec in zip(specs, vectors, strict=True)
        ]

    def encode_queries(
        self, specs: Sequence[Mapping[str, Any]], default_mode: str
    ) -> list[SparseVector | None]:
        """Query vectors of many queries: one text batch, one image batch (None for bm25)."""
        out: list[SparseVector | None] = [None] * len(specs)
        texts, images = [], []
        for i, spec in enumerate(specs):
            given = [spec.get(key) is not None for key in ("text", "image", "tokens")]
            if sum(given) != 1:
                raise UsageError(f"query #{i}: give exactly one of text, image or tokens")
            if spec.get("mode", default_mode) == "bm25":
                continue
            if spec.get("tokens") is not None:
                out[i] = self.query_vector(tokens=spec["tokens"])
            elif spec.get("text") is not None:
                texts.append(i)
            else:
                images.append(i)
        if (texts or images) and self.encoder is None:
            raise UsageError("text and image queries need an encoder (a model); pass tokens otherwise")
        if texts:
            assert self.encoder is not None
            for i, vec in zip(texts, self.encoder.encode_texts([specs[i]["text"] for i in texts])):
                out[i] = vec
        if images:
            assert self.encoder is not None
            for i, vec in zip(images, self.encoder.encode_images([specs[i]["image"] for i in images])):
                out[i] = vec
        return out

    def result(
        self,
        resp: Mapping[str, Any],
        plan: QueryPlan,
        explain: bool,
        took_ms: float,
        position: int | None = None,
    ) -> SearchResult:
        """A :class:`SearchResult` from one search response (or one ``_msearch`` item)."""
        if "error" in resp and "hits" not in resp:
            where = f"query #{position}" if position is not None else "the search"
            reason = resp["error"].get("reason") if isinstance(resp["error"], Mapping) else resp["error"]
            raise EngineError(f"{where} failed on {self.backend.info.describe()}: {reason}")
        hits = [self._hit(raw, plan, explain) for raw in resp["hits"]["hits"]]
        total = resp["hits"].get("total")
        count, relation = (
            (total.get("value"), total.get("relation", "eq")) if isinstance(total, Mapping) else (total, "eq")
        )
        return SearchResult(
            hits=hits,
            plan=plan,
            took_ms=took_ms,
            query_tokens=plan.used,
            total=int(count) if count is not None else None,
            total_relation=str(relation),
        )

    def _hit(self, raw: Mapping[str, Any], plan: QueryPlan, with_explanation: bool) -> Hit:
        source = dict(raw.get("_source") or {})
        token_maps = {f: source.pop(f, None) for f in (IMAGE_FIELD, TEXT_FIELD)}
        score = float(raw.get("_score") or 0.0)
        if plan.score_scale != 1.0:  # engine scores are float32: undo the JSON decimal, then scale
            score = float(np.float32(score)) * plan.score_scale
        hit = Hit(id=str(raw["_id"]), score=score, source=source, sort=raw.get("sort"))
        if with_explanation and plan.mode != "bm25" and "_explanation" in raw:
            hit.field, hit.explanation = explain_from_engine(
                plan.used, raw["_explanation"], plan.fields, self.meta.weight_shift
            )
        elif with_explanation and plan.mode != "bm25":
            best: list[TokenContribution] = []
            for name in plan.fields:
                if token_maps.get(name):
                    rows = explain(plan.used, token_maps[name], self.meta.weight_shift)
                    if hit.field is None or sum(r.contribution for r in rows) > sum(
                        r.contribution for r in best
                    ):
                        best, hit.field = rows, name
            hit.explanation = best
        return hit

    def _require_native(self) -> None:
        backend = self.backend
        if self.meta.weight_shift:
            raise UsageError(
                f"index '{self.index}' is compact (weights stored times 2**-{self.meta.weight_shift}), "
                "which native sparse queries cannot undo: use mode 'exact' (same scores)"
            )
        if self.options.native_prune and backend.distribution != "elasticsearch":
            raise UsageError(
                "native pruning is an option of Elasticsearch's sparse_vector query; "
                f"{backend.info.describe()} has none: use mode 'native' or 'two-phase'"
            )
        if backend.distribution == "opensearch":
            if not backend.has_neural_sparse:
                raise EngineError(
                    "mode 'native' needs the neural-search plugin (OpenSearch 2.14+); "
                    f"{backend.info.describe()} does not have it: use mode 'exact' (same scores)"
                )
        elif self.meta.token_field_type != "sparse_vector":
            raise EngineError(
                f"mode 'native' needs sparse_vector token fields; index '{self.index}' has "
                f"{self.meta.token_field_type} (mapper-extras is installed): use mode 'exact' (same scores)"
            )
        elif not backend.has_sparse_vector_query:
            raise EngineError(
                f"mode 'native' needs the sparse_vector query (Elasticsearch 9.x, or 8.15+ with the "
                f"machine-learning plugin); {backend.info.describe()} lacks it: use mode 'exact' (same scores)"
            )


def brute_force_top_k(
    query: SparseVector, docs: Sequence[tuple[str, SparseVector]], k: int = 10, truncate: bool = True
) -> list[tuple[str, float]]:
    """Reference ranking by exact dot product (9-bit truncated doc weights by default)."""
    scored = [(doc_id, query.dot(vec, truncate_other=truncate)) for doc_id, vec in docs]
    scored = [s for s in scored if s[1] > 0]
    scored.sort(key=lambda s: (-s[1], s[0]))
    return scored[:k]
