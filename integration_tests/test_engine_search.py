"""Engine integration on a real node: exact dot product, two-phase, clause cap, escaping, failures,
idempotent re-indexing, model checks, modality targets, filters and pagination."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from stair_es.engine import (
    Backend,
    ConnectionConfig,
    Document,
    Indexer,
    IndexerOptions,
    ModelMeta,
    Searcher,
    connect,
)
from stair_es.engine.query import sparse_clauses
from stair_es.engine.search import brute_force_top_k
from stair_es.errors import EngineError, ModelError
from stair_es.sparse import SparseVector

MODEL = ModelMeta("test-model", "0123456789abcdef" * 4)
VOCAB = 2000


class WordEncoder:
    """A deterministic stand-in encoder: words of a text, or a ready token map for an 'image'."""

    model_id = MODEL.model_id
    vocab_hash = MODEL.vocab_hash

    def encode_texts(self, texts: list[str]) -> list[SparseVector]:
        return [SparseVector.from_dict({w: 1.0 + len(w) / 10 for w in t.lower().split()}) for t in texts]

    def encode_images(self, images: list[dict[str, float]]) -> list[SparseVector]:
        return [SparseVector.from_dict(img) for img in images]


@pytest.fixture(scope="module")
def backend(engine_url: str) -> Iterator[Backend]:
    b = connect(ConnectionConfig(urls=engine_url))
    yield b
    b.close()


@pytest.fixture
def fresh_index(backend: Backend) -> Iterator[str]:
    name = f"stair-test-{uuid.uuid4().hex[:10]}"
    backend.create_index(name, MODEL)
    yield name
    backend.delete_index(name)


def random_vector(rng: np.random.Generator, n_tokens: int) -> SparseVector:
    # Zipf-ish token popularity so that queries and documents overlap realistically
    p = 1.0 / np.arange(1, VOCAB + 1) ** 0.8
    ids = rng.choice(VOCAB, size=n_tokens, replace=False, p=p / p.sum())
    return SparseVector.from_arrays([f"w{i}" for i in ids], rng.lognormal(-0.5, 0.8, n_tokens))


@pytest.fixture(scope="module")
def random_corpus(backend: Backend) -> Iterator[tuple[str, list[tuple[str, SparseVector]]]]:
    rng = np.random.default_rng(7)
    name = f"stair-test-rank-{uuid.uuid4().hex[:8]}"
    backend.create_index(name, MODEL)
    vectors = [random_vector(rng, int(rng.integers(30, 120))) for _ in range(3000)]
    docs = [Document(image_tokens=v, id=f"d{i}") for i, v in enumerate(vectors)]
    summary = Indexer(backend, name).index_documents(docs)
    assert summary.indexed == 3000, summary.line()
    yield name, [(f"d{i}", v) for i, v in enumerate(vectors)]
    backend.delete_index(name)


def test_exact_ranking_and_scores_equal_the_truncated_dot_product(backend: Backend, random_corpus) -> None:
    index, docs = random_corpus
    searcher = Searcher(backend, index)
    rng = np.random.default_rng(11)
    overlaps, worst_rel = [], 0.0
    for _ in range(40):
        query = random_vector(rng, int(rng.integers(10, 200)))
        result = searcher.search(tokens=query, k=10)
        expected = brute_force_top_k(query, docs, k=10)
        overlaps.append(len({h.id for h in result.hits} & {d for d, _ in expected}) / max(len(expected), 1))
        lookup = dict(docs)
        for hit in result.hits:
            truth = query.dot(lookup[hit.id], truncate_other=True)
            worst_rel = max(worst_rel, abs(hit.score - truth) / truth)
            assert hit.explained_score == pytest.approx(hit.score, rel=1e-5)
            contributions = [c.contribution for c in hit.explanation]
            assert contributions == sorted(contributions, reverse=True)
    assert np.mean(overlaps) >= 0.99, overlaps
    assert worst_rel < 1e-5


def test_two_phase_scores_are_exact_and_ranking_close(backend: Backend, random_corpus) -> None:
    index, docs = random_corpus
    searcher = Searcher(backend, index)
    rng = np.random.default_rng(12)
    lookup = dict(docs)
    overlaps = []
    for _ in range(20):
        query = random_vector(rng, 150)
        exact = searcher.search(tokens=query, k=10, explain=False)
        two = searcher.search(tokens=query, k=10, mode="two_phase", explain=False)
        assert "rescore" in two.plan.body and two.plan.phase1_tokens < len(query)
        for hit in two.hits:  # rescored scores are the full dot product, not phase-1 + rescore
            assert hit.score == pytest.approx(query.dot(lookup[hit.id], truncate_other=True), rel=1e-5)
        overlaps.append(len({h.id for h in exact.hits} & {h.id for h in two.hits}) / 10)
    # random log-normal weights are a hard case for phase 1; the benchmark measures realistic corpora
    assert np.mean(overlaps) >= 0.97, overlaps


def test_clause_cap_prunes_instead_of_failing(backend: Backend, random_corpus) -> None:
    index, _ = random_corpus
    limit = backend.max_clause_count()
    big = SparseVector.from_arrays([f"w{i}" for i in range(limit + 500)], np.linspace(2.0, 0.01, limit + 500))
    result = Searcher(backend, index).search(tokens=big, k=5)
    assert result.plan.pruned_tokens >= 500 and len(result.hits) == 5
    if backend.distribution == "elasticsearch" and backend.info.major >= 8:
        return  # 8.1+ sizes its limit from the heap (at least 1024): the 1024 cap is only conservative
    # the raw query without the cap is refused by the engine: the cap is what keeps us working
    meta = backend.index_meta(index)
    raw = {"query": {"bool": {"should": sparse_clauses(
        "image_tokens", big.prune(top_k=limit + 10), meta.token_field_type, meta.weight_shift
    )}}}  # fmt: skip
    with pytest.raises(EngineError, match="(?i)too many|clause"):
        backend.search(index, raw)


def test_dotted_and_special_tokens_round_trip(backend: Backend, fresh_index: str) -> None:
    specials = [".", "u.s.", "%", "100%", "%2E", "##s", "[CLS]", "a.b.c", "é", "日本", "..."]
    docs = [
        Document(text_tokens={tok: 1.0 + i / 8, "common": 0.5}, id=f"s{i}") for i, tok in enumerate(specials)
    ]
    summary = Indexer(backend, fresh_index).index_documents(docs)
    assert summary.indexed == len(specials) and summary.failed == 0
    searcher = Searcher(backend, fresh_index)
    for i, tok in enumerate(specials):
        hits = searcher.search(tokens={tok: 2.0}, target="text", k=3).hits
        assert [h.id for h in hits] == [f"s{i}"], tok  # "%2E" must not collide with "."
        assert hits[0].explanation[0].token == tok
        assert hits[0].score == pytest.approx(2.0 * (1.0 + i / 8), rel=4e-3)


def test_failures_file_and_idempotent_reindex(backend: Backend, fresh_index: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    good = [
        Document(image_tokens=random_vector(rng, 40), content_hash=f"h{i}", caption=f"c {i}")
        for i in range(20)
    ]
    bad_width = Document(image_tokens={"w1": 1.0}, content_hash="bad", width="very wide")  # type: ignore[arg-type]
    empty = Document(image_tokens={"w1": -1.0}, content_hash="empty")
    failures = tmp_path / "failures.jsonl"
    indexer = Indexer(backend, fresh_index, failures_path=failures)
    first = indexer.index_documents([*good[:10], bad_width, empty, *good[10:]])
    assert (first.indexed, first.failed, first.skipped, first.total) == (20, 1, 1, 22)
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert {r["content_hash"] for r in rows} == {"bad", "empty"}
    engine_row = next(r for r in rows if r["stage"] == "engine")
    assert engine_row["status"] == 400 and "width" in engine_row["reason"]
    assert backend.count(fresh_index) == 20
    again = indexer.index_documents(good)
    assert (again.indexed, again.updated, again.created) == (20, 20, 0)
    assert backend.count(fresh_index) == 20


def test_bulk_load_settings_are_restored(backend: Backend, fresh_index: str) -> None:
    rng = np.random.default_rng(4)
    docs = [Document(image_tokens=random_vector(rng, 20), id=f"r{i}") for i in range(50)]
    Indexer(backend, fresh_index, options=IndexerOptions(chunk_size=10, relax_after=5)).index_documents(docs)
    settings = backend.get_settings(fresh_index)
    assert settings["refresh_interval"] == "1s" and settings["number_of_replicas"] == "0"
    assert backend.count(fresh_index) == 50


def test_model_mismatch_is_refused_with_a_clear_message(backend: Backend, fresh_index: str) -> None:
    class OtherEncoder(WordEncoder):
        model_id = "other-model"
        vocab_hash = "f" * 64

    with pytest.raises(ModelError, match=f"index '{fresh_index}' was built with model 'test-model'"):
        Searcher(backend, fresh_index, OtherEncoder())
    with pytest.raises(ModelError, match="re-index"):
        backend.create_index(fresh_index, ModelMeta("other-model", "f" * 64), exist_ok=True)
    Searcher(backend, fresh_index, WordEncoder())  # the right model is accepted
    with pytest.raises(EngineError, match="does not exist"):
        backend.check_model("stair-test-missing-index", MODEL.model_id, MODEL.vocab_hash)


def test_modalities_targets_filters_and_pagination(backend: Backend, fresh_index: str) -> None:
    docs = [
        Document(image_tokens={"dog": 2.0, "grass": 1.0}, path="dog.png", mime="image/png", id="img-dog"),
        Document(image_tokens={"dog": 1.0, "beach": 2.0}, caption="a dog running on a beach", id="img-cap"),
        Document(text_tokens={"dog": 1.5, "story": 1.0}, caption="a story about a dog", id="txt-dog"),
        Document(text_tokens={"cat": 2.0}, caption="a cat", id="txt-cat"),
    ]
    Indexer(backend, fresh_index).index_documents(docs)
    s = Searcher(backend, fresh_index, WordEncoder())
    assert [h.id for h in s.search(text="dog", target="image").hits] == ["img-dog", "img-cap"]  # text->image
    assert [h.id for h in s.search(text="dog", target="text").hits] == ["txt-dog"]  # text->text
    assert [h.id for h in s.search(image={"cat": 1.0}, target="text").hits] == ["txt-cat"]  # image->text
    assert s.search(image={"beach": 1.0}, target="image").hits[0].id == "img-cap"  # image->image
    both = s.search(text="dog", target="both").hits
    assert {h.id for h in both} == {"img-dog", "img-cap", "txt-dog"}
    assert next(h for h in both if h.id == "txt-dog").field == "text_tokens"
    filtered = s.search(text="dog", target="image", filter={"mime": "image/png"}).hits
    assert [h.id for h in filtered] == ["img-dog"]
    assert [h.id for h in s.search(text="dog", target="image", filter={"modality": "image+text"}).hits] == [
        "img-cap"
    ]
    pages = [s.search(text="dog", target="both", k=1, offset=i).hits[0].id for i in range(3)]
    assert pages == [h.id for h in both]
    assert [h.id for h in s.search(text="beach", mode="bm25").hits] == ["img-cap"]
    hybrid = s.search(text="cat", mode="hybrid", target="text").hits
    assert hybrid[0].id == "txt-cat" and hybrid[0].score > hybrid[0].explained_score  # BM25 adds on top


def test_explanations_come_from_the_engine_when_tokens_are_not_in_source(backend: Backend) -> None:
    name = f"stair-test-nosrc-{uuid.uuid4().hex[:8]}"
    backend.create_index(name, MODEL, tokens_in_source=False)
    try:
        docs = [
            Document(image_tokens={"dog": 1.3, "u.s.": 0.7}, caption="c1", id="a"),
            Document(text_tokens={"dog": 0.9, "cat": 2.0}, caption="c2", id="b"),
        ]
        Indexer(backend, name).index_documents(docs)
        searcher = Searcher(backend, name)
        assert searcher.plan(tokens={"dog": 1.0}).body.get("explain") is True
        hits = searcher.search(tokens={"dog": 2.0, "u.s.": 1.5, "cat": 0.5}, target="both").hits
        assert [h.id for h in hits] == ["a", "b"]
        assert "image_tokens" not in hits[0].source  # not stored, not returned
        assert [c.token for c in hits[0].explanation] == ["dog", "u.s."]
        assert hits[0].field == "image_tokens" and hits[1].field == "text_tokens"
        for hit in hits:
            assert hit.explained_score == pytest.approx(hit.score, rel=1e-5)
        two = searcher.search(tokens={"dog": 2.0, "u.s.": 1.5, "cat": 0.5}, mode="two_phase", target="both")
        assert [h.score for h in two.hits] == pytest.approx([h.score for h in hits], rel=1e-6)
    finally:
        backend.delete_index(name)


def test_compact_index_ranks_and_scores_exactly_like_the_plain_one(backend: Backend, random_corpus) -> None:
    """Weights stored times 2**-112 (tokens out of _source) give the same hits and the same scores,
    float for float, because the query boosts carry 2**112 back; explanations read true weights."""
    from stair_es.engine.mappings import COMPACT_WEIGHT_SHIFT
    from stair_es.sparse import min_storable_weight, truncate_9bit

    index, docs = random_corpus
    name = f"stair-test-compact-{uuid.uuid4().hex[:8]}"
    backend.create_index(name, MODEL, tokens_in_source=False)
    try:
        assert backend.index_meta(name).weight_shift == COMPACT_WEIGHT_SHIFT
        floor = min_storable_weight(COMPACT_WEIGHT_SHIFT)
        extra = Document(image_tokens={"w0": 0.5, "w1": floor / 4}, id="tiny")  # w1 cannot be stored
        summary = Indexer(backend, name).index_documents(
            [Document(image_tokens=v, id=d) for d, v in docs] + [extra]
        )
        assert summary.indexed == len(docs) + 1 and summary.dropped_weights == 1
        plain, compact = Searcher(backend, index), Searcher(backend, name)
        lookup = dict(docs)
        rng = np.random.default_rng(21)
        for _ in range(15):
            query = random_vector(rng, int(rng.integers(10, 200)))
            a = plain.search(tokens=query, k=10, explain=False)
            b = compact.search(tokens=query, k=10)
            assert [(h.id, h.score) for h in b.hits] == [(h.id, h.score) for h in a.hits]
            for hit in b.hits:  # explanation from the engine, with the stored weights un-shifted
                doc = lookup[hit.id]
                stored = dict(zip(doc.tokens, truncate_9bit(doc.weights).tolist(), strict=True))
                assert all(c.doc_weight == stored[c.token] for c in hit.explanation)
                assert hit.explained_score == pytest.approx(hit.score, rel=1e-5)
            two_a = plain.search(tokens=query, k=10, mode="two_phase", explain=False)
            two_b = compact.search(tokens=query, k=10, mode="two_phase", explain=False)
            assert [(h.id, h.score) for h in two_b.hits] == [(h.id, h.score) for h in two_a.hits]
        huge = {"w0": 1e6, "w1": 2.0, "w2": 0.5}  # boosts x 2**112 would overflow float32 unscaled
        a, b = plain.search(tokens=huge, k=10), compact.search(tokens=huge, k=10)
        assert [(h.id, h.score) for h in b.hits] == [(h.id, h.score) for h in a.hits] and b.hits
        with pytest.raises(Exception, match="compact"):
            compact.search(tokens={"w0": 1.0}, mode="native")
    finally:
        backend.delete_index(name)


def test_indexing_into_a_missing_index_is_refused_not_auto_created(backend: Backend) -> None:
    name = f"stair-test-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(EngineError, match="does not exist: create it first"):
        Indexer(backend, name).index_documents([Document(image_tokens={"dog": 1.0}, id="a")])
    assert not backend.index_exists(name)  # the engine did not guess a float mapping for it
