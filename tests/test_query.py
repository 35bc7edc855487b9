"""Query JSON shapes: linear clauses, escaping, clause cap, two-phase rescore, hybrid, filters."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stair_es.engine.query import (
    QueryOptions,
    build_query,
    clause_budget,
    native_query,
    normalize_filters,
    phase1_tokens,
    prune_query,
)
from stair_es.sparse import SparseVector


def vec(n: int, seed: int = 0) -> SparseVector:
    rng = np.random.default_rng(seed)
    return SparseVector.from_arrays([f"t{i}" for i in range(n)], rng.uniform(0.01, 3.0, n))


def should_clauses(body: dict) -> list[dict]:
    return body["query"]["bool"]["should"]


def test_exact_query_is_linear_rank_features_with_query_weights_as_boost() -> None:
    q = SparseVector.from_dict({"dog": 2.5, "beach": 0.75})
    plan = build_query(q, ["image_tokens"], size=7)
    clauses = should_clauses(plan.body)
    assert clauses == [
        {"rank_feature": {"field": "image_tokens.dog", "linear": {}, "boost": 2.5}},
        {"rank_feature": {"field": "image_tokens.beach", "linear": {}, "boost": 0.75}},
    ]
    assert plan.body["size"] == 7
    assert plan.body["track_total_hits"] is False
    assert "from" not in plan.body and "rescore" not in plan.body


def test_dotted_and_percent_tokens_are_escaped_in_field_paths() -> None:
    q = SparseVector.from_dict({"u.s.": 1.0, ".": 0.5, "100%": 0.25, "##s": 0.125, "[CLS]": 0.1})
    fields = [c["rank_feature"]["field"] for c in should_clauses(build_query(q, ["text_tokens"]).body)]
    assert fields == [
        "text_tokens.u%2Es%2E",
        "text_tokens.%2E",
        "text_tokens.100%25",
        "text_tokens.##s",
        "text_tokens.[CLS]",
    ]
    # the engine splits field.feature at the last dot: the feature part must contain none
    assert all("." not in f.split(".", 1)[1] for f in fields)


def test_clause_cap_keeps_the_heaviest_tokens_and_reports_pruning() -> None:
    q = vec(3000)
    plan = build_query(q, ["image_tokens"], engine_limit=1024)
    clauses = should_clauses(plan.body)
    assert len(clauses) <= 1024 - QueryOptions().clause_margin
    assert len(clauses) == len(plan.used) == 3000 - plan.pruned_tokens
    boosts = [c["rank_feature"]["boost"] for c in clauses]
    assert boosts == sorted(boosts, reverse=True)
    assert min(boosts) >= float(q.weights[len(clauses) - 1])
    assert plan.notes and "pruned" in plan.notes[0]


def test_clause_budget_counts_filters_bm25_and_fields() -> None:
    opts = QueryOptions(max_clauses=5000)
    assert clause_budget(opts, 1024, reserved=0) == 1024 - opts.clause_margin
    assert clause_budget(opts, 1024, reserved=24) == 1000 - opts.clause_margin
    assert clause_budget(opts, 1024, reserved=0, n_fields=2) == (1024 - opts.clause_margin) // 2
    assert clause_budget(QueryOptions(max_clauses=100), 1024, reserved=0) == 100


def test_query_side_pruning_top_k_and_mass() -> None:
    q = SparseVector.from_dict({"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0})
    kept, dropped = prune_query(q, QueryOptions(top_k=2), 1000)
    assert kept.tokens == ("a", "b") and dropped == 2
    kept, dropped = prune_query(q, QueryOptions(mass=0.7), 1000)
    assert kept.tokens == ("a", "b") and dropped == 2  # 7/10 of the mass
    kept, _ = prune_query(q, QueryOptions(), 3)
    assert kept.tokens == ("a", "b", "c")


def test_two_phase_rescore_adds_the_remaining_tokens_to_the_phase1_score() -> None:
    q = vec(200)
    plan = build_query(q, ["image_tokens"], mode="two_phase", size=10, from_=20)
    exact = should_clauses(build_query(q, ["image_tokens"], mode="exact").body)
    phase1 = should_clauses(plan.body)
    rescore = plan.body["rescore"]
    rest = rescore["query"]["rescore_query"]["bool"]["should"]
    # phase 1 = the heaviest tokens, the rescore = all the others: together exactly the exact query
    assert len(phase1) == plan.phase1_tokens < 200 and phase1 + rest == exact
    assert rescore["query"]["query_weight"] == 1.0 == rescore["query"]["rescore_query_weight"]
    assert rescore["query"]["score_mode"] == "total"
    assert rescore["window_size"] >= 30 and rescore["window_size"] == plan.window
    assert plan.body["from"] == 20
    # with two fields the best-field max does not split into phases: full query, phase-1 score dropped
    both = build_query(q, ["image_tokens", "text_tokens"], mode="two_phase").body["rescore"]["query"]
    assert both["query_weight"] == 0.0
    assert [len(d["bool"]["should"]) for d in both["rescore_query"]["dis_max"]["queries"]] == [200, 200]


def test_phase1_tokens_ratio_and_bounds() -> None:
    q = SparseVector.from_dict({"a": 10.0, "b": 5.0, "c": 3.9, "d": 1.0, "e": 0.5})
    opts = QueryOptions(phase1_ratio=0.4, phase1_min_tokens=1, phase1_max_tokens=64)
    assert phase1_tokens(q, opts).tokens == ("a", "b")
    assert len(phase1_tokens(q, QueryOptions(phase1_ratio=0.4, phase1_min_tokens=4))) == 4
    assert len(phase1_tokens(q, QueryOptions(phase1_ratio=0.0, phase1_max_tokens=3))) == 3


def test_hybrid_adds_bm25_on_captions_and_filters_wrap_the_scoring_query() -> None:
    q = SparseVector.from_dict({"dog": 1.0})
    plan = build_query(
        q,
        ["text_tokens"],
        mode="hybrid",
        caption="a dog",
        filter={"modality": ["image", "image+text"], "mime": "image/png"},
        options=QueryOptions(bm25_weight=0.5),
    )
    outer = plan.body["query"]["bool"]
    assert outer["filter"] == [
        {"terms": {"modality": ["image", "image+text"]}},
        {"term": {"mime": "image/png"}},
    ]
    sparse, bm25 = outer["must"][0]["bool"]["should"]
    assert sparse["bool"]["should"][0]["rank_feature"]["linear"] == {}
    assert bm25 == {"match": {"caption": {"query": "a dog", "boost": 0.5}}}


def test_bm25_mode_and_errors() -> None:
    plan = build_query(None, ["image_tokens"], mode="bm25", caption="red car")
    assert plan.body["query"] == {"match": {"caption": {"query": "red car", "boost": 1.0}}}
    with pytest.raises(ValueError, match="needs query text"):
        build_query(vec(3), ["image_tokens"], mode="hybrid")
    with pytest.raises(ValueError, match="mode must be"):
        build_query(vec(3), ["image_tokens"], mode="fuzzy")
    with pytest.raises(ValueError, match="no token"):
        build_query(SparseVector.from_dict({"a": 0.0}), ["image_tokens"])


def test_both_fields_take_the_best_field_with_dis_max() -> None:
    plan = build_query(vec(10), ["image_tokens", "text_tokens"])
    queries = plan.body["query"]["dis_max"]["queries"]
    assert [q["bool"]["should"][0]["rank_feature"]["field"].split(".")[0] for q in queries] == [
        "image_tokens",
        "text_tokens",
    ]
    assert plan.body["query"]["dis_max"]["tie_breaker"] == 0.0


def test_native_queries_escape_names_and_scale_neural_sparse_weights_into_range() -> None:
    q = SparseVector.from_dict({"u.s.": 128.0, "dog": 32.0})
    body, scale = native_query(["image_tokens"], q, "opensearch")
    tokens = body["neural_sparse"]["image_tokens"]["query_tokens"]
    assert scale == 2.0 and tokens == {"u%2Es%2E": 64.0, "dog": 16.0}
    body, scale = native_query(["image_tokens"], q, "elasticsearch")
    assert scale == 1.0
    assert body["sparse_vector"] == {
        "field": "image_tokens",
        "query_vector": {"u%2Es%2E": 128.0, "dog": 32.0},
        "prune": False,
    }


def test_sparse_vector_fields_use_linear_term_clauses() -> None:
    plan = build_query(SparseVector.from_dict({"a.b": 2.0}), ["image_tokens"], field_type="sparse_vector")
    assert should_clauses(plan.body) == [{"term": {"image_tokens": {"value": "a%2Eb", "boost": 2.0}}}]


def test_filter_shorthand_and_dsl_passthrough() -> None:
    assert normalize_filters(None) == []
    assert normalize_filters({"range": {"width": {"gte": 100}}}) == [{"range": {"width": {"gte": 100}}}]
    assert normalize_filters([{"term": {"a": 1}}, {"b": 2}]) == [{"term": {"a": 1}}, {"term": {"b": 2}}]
    with pytest.raises(TypeError):
        normalize_filters("modality:image")


def test_explanations_parse_the_engines_linear_clauses() -> None:
    from stair_es.engine.explain import explain, explain_from_engine

    def linear(field: str, feature: str, w: float, s: float) -> dict:
        return {
            "value": w * s,
            "description": f"Linear function on the {field} field for the {feature} feature, computed as w * S from:",
            "details": [
                {"value": w, "description": "w, weight of this function", "details": []},
                {"value": s, "description": "S, feature value", "details": []},
            ],
        }

    tree = {
        "value": 3.7,
        "description": "sum of:",
        "details": [
            linear("image_tokens", "dog", 2.0, 1.5),
            linear("image_tokens", "u%2Es%2E", 1.0, 0.69921875),
        ],
    }
    query = SparseVector.from_dict({"dog": 2.0, "u.s.": 1.0, "cat": 5.0})
    field, rows = explain_from_engine(query, tree, ["image_tokens", "text_tokens"])
    assert field == "image_tokens"
    assert [(r.token, r.contribution) for r in rows] == [("dog", 3.0), ("u.s.", 0.69921875)]
    # the _source path gives the same rows, using the engine's 9-bit stored weights
    assert explain(query, {"dog": 1.5, "u%2Es%2E": 0.7}) == rows


def test_compact_index_queries_carry_the_shift_in_their_boosts() -> None:
    from stair_es.sparse import shift_weights, truncate_9bit

    q = vec(30)
    plain = build_query(q, ["image_tokens"], mode="exact").body
    compact = build_query(q, ["image_tokens"], mode="exact", weight_shift=112).body
    for a, b in zip(should_clauses(plain), should_clauses(compact), strict=True):
        assert b["rank_feature"]["boost"] == a["rank_feature"]["boost"] * 2.0**112
        assert a["rank_feature"]["field"] == b["rank_feature"]["field"]
    # engine arithmetic (float32): boost x stored value is the same float on both indexes
    d = np.float32(0.7071)
    stored_plain, stored_compact = truncate_9bit(d), truncate_9bit(shift_weights(np.array([d]), 112))[0]
    boost_plain = np.float32(should_clauses(plain)[0]["rank_feature"]["boost"])
    boost_compact = np.float32(should_clauses(compact)[0]["rank_feature"]["boost"])
    assert boost_plain * stored_plain == boost_compact * stored_compact
    two = build_query(q, ["image_tokens"], mode="two_phase", weight_shift=112).body
    rescore = two["rescore"]["query"]["rescore_query"]["bool"]["should"]
    plain_boosts = {c["rank_feature"]["field"]: c["rank_feature"]["boost"] for c in should_clauses(plain)}
    for clause in should_clauses(two) + rescore:
        assert clause["rank_feature"]["boost"] == plain_boosts[clause["rank_feature"]["field"]] * 2.0**112
    with pytest.raises(ValueError, match="compact index"):
        build_query(q, ["image_tokens"], mode="native", weight_shift=112)


def test_explanations_undo_the_compact_shift() -> None:
    from stair_es.engine.explain import explain, explain_from_engine

    stored = 1.5 * 2.0**-112
    tree = {
        "value": 3.0 * 2.0**-112 * 2.0**112,
        "description": "Linear function on the image_tokens field for the dog feature, computed as w * S from:",
        "details": [
            {"value": 2.0 * 2.0**112, "description": "w, weight of this function", "details": []},
            {"value": stored, "description": "S, feature value", "details": []},
        ],
    }
    query = SparseVector.from_dict({"dog": 2.0})
    _, rows = explain_from_engine(query, tree, ["image_tokens"], weight_shift=112)
    assert [(r.token, r.doc_weight, r.contribution) for r in rows] == [("dog", 1.5, 3.0)]
    assert explain(query, {"dog": stored}, weight_shift=112) == rows


def test_huge_query_weights_on_a_compact_index_keep_finite_boosts() -> None:
    q = SparseVector.from_dict({"a": 1e6, "b": 3.0})
    plan = build_query(q, ["image_tokens"], mode="exact", weight_shift=112)
    boosts = [c["rank_feature"]["boost"] for c in should_clauses(plan.body)]
    assert all(np.isfinite(np.float32(b)) for b in boosts)
    # scaled down by a power of two, scaled back through score_scale: the same dot product
    assert boosts[0] * 2.0**-112 * plan.score_scale == 1e6 and plan.score_scale > 1
    assert plan.used.weights.tolist() == q.weights.tolist()  # explanations use the real weights
    hybrid = build_query(q, ["image_tokens"], mode="hybrid", caption="a b", weight_shift=112)
    assert hybrid.score_scale == 1.0  # folded into the sparse clause's boost, before BM25 is added
    assert build_query(vec(5), ["image_tokens"], mode="exact", weight_shift=112).score_scale == 1.0


def test_huge_query_weights_are_scaled_so_engine_scores_stay_finite() -> None:
    # a weight of 3e38 would score inf in the engine's float32 sum (and --json printed Infinity)
    vec = SparseVector.from_dict({"red": 3e38, "blue": 3e38, "dust": 1e-30})
    plan = build_query(vec, ["image_tokens"], mode="exact")
    boosts = [c["rank_feature"]["boost"] for c in plan.body["query"]["bool"]["should"]]
    assert max(boosts) <= 2.0**64 and plan.score_scale > 1
    assert [b * plan.score_scale for b in boosts] == pytest.approx([3e38, 3e38], rel=1e-6)
    assert len(boosts) == 2  # 1e-30 x 2**-65 is no normal float32: left out
    assert build_query(SparseVector.from_dict({"red": 2.0}), ["image_tokens"]).score_scale == 1.0


def test_hybrid_and_bm25_keep_a_long_text_under_the_clause_cap() -> None:
    from stair_es.engine.query import bm25_text

    text = " ".join(f"w{i}" for i in range(3000)) + " 東京タワー"
    vec = SparseVector.from_dict({f"t{i}": 1.0 + i for i in range(1500)})
    for mode in ("hybrid", "bm25"):
        plan = build_query(vec, ["image_tokens"], mode=mode, caption=text, filter={"modality": "image"})
        bool_query = plan.body["query"]["bool"]
        assert json.dumps(plan.body).count('"match"') == 1
        words = bm25_text(_caption_of(plan.body), 10**6)[1]  # terms the analyzer can make of it
        sparse = len(plan.used) if mode == "hybrid" else 0
        assert words + sparse + len(bool_query.get("filter", [])) + 2 <= 1024, (mode, words, sparse)
        assert any("BM25 text cut" in n for n in plan.notes)
    assert bm25_text("東京タワー a b", 3) == ("東京タ", 3, True)


def _caption_of(body: dict) -> str:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "match" in node:
                found.append(next(iter(node["match"].values()))["query"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    return found[0]


def test_sparse_vector_term_boosts_undo_the_compact_shift() -> None:
    vec = SparseVector.from_dict({"a": 2.0})
    plain = build_query(vec, ["image_tokens"], field_type="sparse_vector").body
    shifted = build_query(vec, ["image_tokens"], field_type="sparse_vector", weight_shift=112).body
    boost = shifted["query"]["bool"]["should"][0]["term"]["image_tokens"]["boost"]
    assert boost == plain["query"]["bool"]["should"][0]["term"]["image_tokens"]["boost"] * 2.0**112


def test_native_pruned_sets_the_sparse_vector_prune_flag() -> None:
    from stair_es.engine.query import QueryOptions

    vec = SparseVector.from_dict({"a": 2.0, "b": 1.0})
    exact = build_query(vec, ["image_tokens"], mode="native", distribution="elasticsearch").body
    pruned = build_query(
        vec,
        ["image_tokens"],
        mode="native",
        distribution="elasticsearch",
        options=QueryOptions(native_prune=True),
    ).body
    assert exact["query"]["sparse_vector"]["prune"] is False
    assert pruned["query"]["sparse_vector"]["prune"] is True
