"""Query bodies for the STAIR dot product, as plain dicts (no client needed, easy to test).

Exact mode: ``bool.should`` of ``rank_feature`` clauses with ``"linear": {}`` and ``boost`` = query
weight, so the score is sum_t q_t * trunc9(d_t), the STAIR dot product up to the engine's 9-bit
storage. The default ``saturation`` function would silently turn this into something else.

Every query token is one bool clause and engines cap clauses (OpenSearch/ES 7: 1024, whole tree), so
query vectors are pruned (heaviest first) to stay below that cap; the pruned count is reported.

Two-phase mode works on any version without plugins: phase 1 scores only the heaviest tokens, then a
``rescore`` adds the remaining tokens' scores for a window of top documents (``score_mode: total``,
weights 1/1), so rescored scores *equal* the exact dot product while the rescore touches only the
light tokens. With several token fields (``dis_max``, best field) a sum of per-phase maxima is not
the maximum of sums, so there the rescore runs the full query with ``query_weight: 0``.

For 100-token queries over 200k documents (benchmarks/search_latency.py) two-phase is 4.2x faster
than exact on OpenSearch 2.19 (Lucene 9) but 1.5x on OpenSearch 3.8: Lucene 10 already skips
non-competitive postings well enough that exact is 8x faster there. Top-10 overlap: 0.998.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stair_es.engine.modes import MODES
from stair_es.errors import InvalidArgument
from stair_es.sparse import SparseVector, encode_feature_name, unshift_weight

DSL_QUERY_TYPES = frozenset(
    "bool term terms range exists match match_phrase prefix wildcard ids query_string "
    "simple_query_string regexp fuzzy nested match_all match_none".split()
)
NEURAL_SPARSE_MAX_WEIGHT = 64.0  # Lucene FeatureField.newLinearQuery refuses weights outside (0, 64]


@dataclass(frozen=True)
class QueryOptions:
    """Knobs with safe defaults; every pruning step keeps the heaviest tokens.

    ``max_clauses``: cap on sparse clauses, further lowered to stay ``clause_margin`` below the
    engine limit once BM25/filter clauses are counted. ``top_k``/``mass``/``min_weight``: optional
    query-side pruning. Two-phase: phase 1 keeps tokens with weight >= ``phase1_ratio`` x max weight
    (at least ``phase1_min_tokens``, at most ``phase1_max_tokens``); the window is
    ``window_factor`` x (from + size), clamped to [``min_window``, ``max_window``].
    """

    max_clauses: int = 1000
    clause_margin: int = 16
    top_k: int | None = None
    mass: float | None = None
    min_weight: float = 0.0
    phase1_ratio: float = 0.25
    phase1_min_tokens: int = 4
    phase1_max_tokens: int = 64
    window_factor: int = 10
    min_window: int = 100
    max_window: int = 10_000
    sparse_weight: float = 1.0
    bm25_weight: float = 1.0
    track_total_hits: bool = False
    native_prune: bool = False  # mode native on Elasticsearch: let the sparse_vector query prune tokens


@dataclass
class QueryPlan:
    """What was sent and why: the tokens actually used (for explanations) and what was pruned."""

    body: dict[str, Any]
    mode: str
    fields: tuple[str, ...]
    used: SparseVector
    pruned_tokens: int = 0
    phase1_tokens: int = 0
    window: int = 0
    score_scale: float = 1.0  # multiply engine scores by this (neural_sparse weight scaling)
    notes: list[str] = field(default_factory=list)


def prune_query(vec: SparseVector, options: QueryOptions, clause_budget: int) -> tuple[SparseVector, int]:
    """Apply ``min_weight``/``top_k``/``mass`` then the clause budget; returns (kept, dropped count)."""
    kept = vec.prune(top_k=options.top_k, min_weight=options.min_weight, mass=options.mass)
    if len(kept) > clause_budget:
        kept = kept.prune(top_k=max(clause_budget, 1))
    return kept, len(vec) - len(kept)


def clause_budget(options: QueryOptions, engine_limit: int, reserved: int, n_fields: int = 1) -> int:
    """Sparse clauses allowed per token field."""
    room = min(options.max_clauses, engine_limit - options.clause_margin) - reserved
    return max(room // max(n_fields, 1), 1)


def sparse_clauses(
    field_name: str, vec: SparseVector, field_type: str = "rank_features", weight_shift: int = 0
) -> list[dict[str, Any]]:
    """One linear clause per token (``term`` clauses on ES ``sparse_vector`` fields: same score).

    On a compact index (weights stored times 2**-shift) the boost is the query weight times
    2**shift: both factors are exact powers of two apart, so every product, and the score, is the
    same float as on an unshifted index.
    """
    if field_type == "sparse_vector":
        return [
            {
                "term": {
                    field_name: {"value": encode_feature_name(t), "boost": unshift_weight(w, weight_shift)}
                }
            }
            for t, w in zip(vec.tokens, vec.weights, strict=False)
        ]
    return [
        {
            "rank_feature": {
                "field": f"{field_name}.{encode_feature_name(t)}",
                "linear": {},
                "boost": unshift_weight(w, weight_shift),
            }
        }
        for t, w in zip(vec.tokens, vec.weights, strict=False)
    ]


def dot_product_query(
    fields: Sequence[str], vec: SparseVector, field_type: str = "rank_features", weight_shift: int = 0
) -> dict[str, Any]:
    """Exact dot product against one token field, or the best of several (``dis_max``)."""
    per_field = [{"bool": {"should": sparse_clauses(f, vec, field_type, weight_shift)}} for f in fields]
    if len(per_field) == 1:
        return per_field[0]
    return {"dis_max": {"queries": per_field, "tie_breaker": 0.0}}


def native_query(
    fields: Sequence[str], vec: SparseVector, distribution: str, prune: bool = False
) -> tuple[dict[str, Any], float]:
    """ES ``sparse_vector`` (``prune: false`` = exact; ``prune`` = ES's default token pruning, which
    drops frequent low-weight query tokens: faster, approximate) or OpenSearch ``neural_sparse``.

    neural_sparse refuses weights above 64, so the query is scaled down and the returned factor
    scales scores back.
    """
    tokens = {encode_feature_name(t): float(w) for t, w in zip(vec.tokens, vec.weights, strict=False)}
    scale = 1.0
    if distribution == "opensearch":
        top = max(tokens.values(), default=0.0)
        if top > NEURAL_SPARSE_MAX_WEIGHT:
            scale = top / NEURAL_SPARSE_MAX_WEIGHT
            tokens = {t: w / scale for t, w in tokens.items()}
        per_field: list[dict[str, Any]] = [{"neural_sparse": {f: {"query_tokens": tokens}}} for f in fields]
    else:
        per_field = [{"sparse_vector": {"field": f, "query_vector": tokens, "prune": prune}} for f in fields]
    if len(per_field) == 1:
        return per_field[0], scale
    return {"dis_max": {"queries": per_field, "tie_breaker": 0.0}}, scale


def normalize_filters(filter: Any) -> list[dict[str, Any]]:
    """Accept DSL clause(s) or a ``{field: value | [values]}`` shorthand (turned into term/terms)."""
    if filter is None:
        return []
    if isinstance(filter, Sequence) and not isinstance(filter, (str, bytes)):
        out: list[dict[str, Any]] = []
        for item in filter:
            out += normalize_filters(item)
        return out
    if not isinstance(filter, Mapping):
        raise TypeError(f"filter must be a mapping or a list of mappings, got {type(filter).__name__}")
    if len(filter) == 1 and next(iter(filter)) in DSL_QUERY_TYPES:
        return [dict(filter)]
    clauses = []
    for name, value in filter.items():
        if isinstance(value, (list, tuple, set)):
            clauses.append({"terms": {name: list(value)}})
        else:
            clauses.append({"term": {name: value}})
    return clauses


_FIELD_KEYED = frozenset("term terms range match match_phrase prefix wildcard regexp fuzzy".split())
_CLAUSE_OPTIONS = frozenset({"boost", "_name"})


def filter_fields(filters: Any) -> set[str]:
    """The field names that filter clauses (DSL or shorthand) test, to check them against a mapping."""
    names: set[str] = set()
    stack: list[Any] = list(normalize_filters(filters))
    while stack:
        clause = stack.pop()
        if isinstance(clause, Sequence) and not isinstance(clause, (str, bytes)):
            stack.extend(clause)
            continue
        if not isinstance(clause, Mapping):
            continue
        for kind, body in clause.items():
            if kind in _FIELD_KEYED and isinstance(body, Mapping):
                names.update(k for k in body if k not in _CLAUSE_OPTIONS)
            elif kind == "exists" and isinstance(body, Mapping) and isinstance(body.get("field"), str):
                names.add(body["field"])
            elif kind == "bool" and isinstance(body, Mapping):
                stack.extend(
                    body.get(part) for part in ("must", "filter", "should", "must_not") if part in body
                )
    return names


def _with_filters(query: dict[str, Any], filters: list[dict[str, Any]]) -> dict[str, Any]:
    if not filters:
        return query
    return {"bool": {"must": [query], "filter": filters}}


def build_query(
    vec: SparseVector | None,
    fields: Sequence[str],
    *,
    mode: str = "exact",
    size: int = 10,
    from_: int = 0,
    filter: Any = None,
    caption: str | None = None,
    caption_field: str = "caption",
    options: QueryOptions | None = None,
    engine_limit: int = 1024,
    field_type: str = "rank_features",
    distribution: str = "opensearch",
    source: Any = True,
    weight_shift: int = 0,
) -> QueryPlan:
    """The search body for ``mode`` (see :data:`MODES`) with pruning, filters and pagination.

    ``weight_shift`` is the index's ``_meta.stair_es.weight_shift`` (compact indexes store weights
    times 2**-shift); boosts are scaled back so scores stay the plain dot product.
    """
    options = options or QueryOptions()
    if mode not in MODES:
        raise InvalidArgument(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "native" and weight_shift:
        raise InvalidArgument(
            "mode 'native' cannot search a compact index (weights stored times 2**-shift; native "
            "queries cap their weights): use mode 'exact' (same scores)"
        )
    if size < 0 or from_ < 0:
        raise InvalidArgument("size and from must be >= 0")
    if mode in ("hybrid", "bm25") and not caption:
        raise InvalidArgument(f"mode '{mode}' needs query text for BM25 on captions")
    if mode != "bm25" and (vec is None or len(vec) == 0):
        raise InvalidArgument("the query vector has no token with a positive weight")
    filters = normalize_filters(filter)
    notes: list[str] = []
    words = 0
    if caption and mode in ("hybrid", "bm25"):
        # the analyzer makes one clause per term: a long text alone can pass the engine's cap
        caption, words, cut = bm25_text(caption, clause_budget(options, engine_limit, len(filters) + 2) // 2)
        if cut:
            notes.append(f"BM25 text cut to its first {words} words (clause cap)")
    bm25 = {"match": {caption_field: {"query": caption, "boost": options.bm25_weight}}} if caption else None
    reserved = len(filters) + 1 + (words + 1 if bm25 and mode == "hybrid" else 0)
    budget = clause_budget(options, engine_limit, reserved, len(fields))
    body: dict[str, Any] = {"size": size, "track_total_hits": options.track_total_hits, "_source": source}
    if from_:
        body["from"] = from_
    empty = SparseVector.from_arrays([], np.zeros(0, dtype=np.float32))
    plan = QueryPlan(body=body, mode=mode, fields=tuple(fields), used=empty, notes=notes)

    if mode == "bm25":
        body["query"] = _with_filters(bm25 or {"match_none": {}}, filters)
        return plan
    assert vec is not None
    used, plan.pruned_tokens = prune_query(vec, options, budget)
    plan.used = used
    if plan.pruned_tokens:
        plan.notes.append(f"query pruned to {len(used)} of {len(vec)} tokens (clause cap {budget})")
    sent, plan.score_scale = _boost_range(used, weight_shift)  # native was refused above if shifted

    if mode == "native":
        if options.native_prune and distribution != "elasticsearch":
            raise InvalidArgument(
                "native pruning is Elasticsearch's sparse_vector query option; use mode 'native'"
            )
        query, plan.score_scale = native_query(fields, used, distribution, prune=options.native_prune)
        body["query"] = _with_filters(query, filters)
    elif mode == "exact":
        body["query"] = _with_filters(dot_product_query(fields, sent, field_type, weight_shift), filters)
    elif mode == "hybrid":
        sparse = dot_product_query(fields, sent, field_type, weight_shift)
        # a down-scaled query (see _boost_range) is scaled back here, before BM25 is added
        sparse_weight, plan.score_scale = options.sparse_weight * plan.score_scale, 1.0
        if sparse_weight != 1.0:
            sparse = _boosted(sparse, sparse_weight)
        body["query"] = _with_filters({"bool": {"should": [sparse, bm25]}}, filters)
    else:  # two_phase
        phase1 = phase1_tokens(sent, options)
        plan.phase1_tokens = len(phase1)
        window = min(max(options.window_factor * (from_ + size), options.min_window), options.max_window)
        window = max(window, from_ + size)
        plan.window = window
        body["query"] = _with_filters(dot_product_query(fields, phase1, field_type, weight_shift), filters)
        if len(phase1) < len(sent):
            if len(fields) == 1:  # phase-1 score + the remaining tokens = the whole dot product
                rest, query_weight = sent.drop(phase1.tokens), 1.0
            else:  # best field of the sum != sum of best fields: rescore with the full query alone
                rest, query_weight = sent, 0.0
            body["rescore"] = {
                "window_size": window,
                "query": {
                    "rescore_query": dot_product_query(fields, rest, field_type, weight_shift),
                    "query_weight": query_weight,
                    "rescore_query_weight": 1.0,
                    "score_mode": "total",
                },
            }
    return plan


# query weights above 2**64 are scaled down before they are sent (see _boost_range)
MAX_QUERY_BOOST_LOG2 = 64


def _boost_range(vec: SparseVector, weight_shift: int) -> tuple[SparseVector, float]:
    """Query weights scaled by an exact power of two so the engine's float32 cannot overflow.

    Engines parse boosts as float32 (max ~3.4e38) and add up scores in float32: with a 2**112 shift
    a weight above ~6.5e4 would overflow the boost, and on any index a weight near 3e38 would score
    ``inf``. Such queries are scaled down (weights at most 2**64, boosts below 2**126) and the
    returned factor scales scores back, in float64; rankings and explanations are unaffected.
    Tokens the scaling would push below float32's smallest normal number are left out: next to the
    heavy tokens they cannot change a float32 sum.
    """
    if len(vec) == 0:
        return vec, 1.0
    excess = int(np.ceil(np.log2(float(vec.weights[0])))) + max(weight_shift - 126, -MAX_QUERY_BOOST_LOG2)
    if excess <= 0:
        return vec, 1.0
    scaled = np.ldexp(vec.weights.astype(np.float64), -excess).astype(np.float32)
    keep = scaled >= np.finfo(np.float32).tiny
    tokens = tuple(t for t, k in zip(vec.tokens, keep) if k)
    return SparseVector(tokens=tokens, weights=scaled[keep]), float(2.0**excess)


# a word, or one CJK ideograph/kana (the standard tokenizer makes each its own term)
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


def bm25_text(text: str, max_terms: int) -> tuple[str, int, bool]:
    """``text`` cut to its first ``max_terms`` words (word characters, which is at least as many as
    the analyzer's terms); returns (text, words kept, whether it was cut)."""
    found = list(_WORD.finditer(text))
    if len(found) <= max_terms:
        return text, len(found), False
    keep = max(max_terms, 1)
    return text[: found[keep - 1].end()], keep, True


def phase1_tokens(vec: SparseVector, options: QueryOptions) -> SparseVector:
    """The heaviest tokens: weight >= ratio x max, clamped to [min_tokens, max_tokens]."""
    if len(vec) == 0:
        return vec
    threshold = float(vec.weights[0]) * options.phase1_ratio
    n = int(np.searchsorted(-vec.weights, -threshold, side="right"))
    n = min(max(n, options.phase1_min_tokens), options.phase1_max_tokens, len(vec))
    return vec.prune(top_k=n)


def _boosted(query: dict[str, Any], boost: float) -> dict[str, Any]:
    return {"bool": {"should": [query], "boost": float(boost)}}
