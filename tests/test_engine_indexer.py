"""Indexer logic against an in-process stand-in for the bulk API (the real engine is covered in
integration_tests/test_engine_ranking.py): chunking, ids, failures file, 429 retries, settings."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opensearchpy import helpers as os_helpers

from stair_es.engine.backend import Backend, ClusterInfo
from stair_es.engine.config import ConnectionConfig
from stair_es.engine.indexer import Document, Indexer, IndexerOptions, document_id
from stair_es.sparse import SparseVector


class FakeIndices:
    def __init__(self) -> None:
        self.settings: dict[str, Any] = {"refresh_interval": "1s", "number_of_replicas": "1"}
        self.history: list[dict[str, Any]] = []
        self.refreshed = 0
        self.meta: dict[str, Any] = {}

    def get_settings(self, index: str) -> dict:
        return {index: {"settings": {"index": dict(self.settings)}}}

    def exists(self, index: str) -> bool:
        return index != "missing"

    def get_mapping(self, index: str) -> dict:
        # no stair-es model _meta: the indexer stores plain weights
        return {index: {"mappings": {"_meta": dict(self.meta)} if self.meta else {}}}

    def put_mapping(self, index: str, body: dict) -> dict:
        self.meta = dict(body["_meta"])
        return {"acknowledged": True}

    def put_settings(self, index: str, body: dict) -> dict:
        self.history.append(dict(body["index"]))
        self.settings.update(body["index"])
        return {"acknowledged": True}

    def refresh(self, index: str) -> dict:
        self.refreshed += 1
        return {}


class FakeBulkClient:
    """Parses NDJSON like the engine; rejects docs whose caption says so, throttles on request."""

    def __init__(self, throttle_once: set[str] | None = None) -> None:
        from opensearchpy.serializer import JSONSerializer

        self.transport = type("Transport", (), {"serializer": JSONSerializer()})()
        self.indices = FakeIndices()
        self.requests: list[tuple[int, int]] = []  # (docs, bytes) per request
        self.stored: dict[str, dict] = {}
        self.throttle_once = set(throttle_once or ())
        self.settings_during_bulk: list[dict] = []

    def bulk(self, body: str, **_: Any) -> dict:
        lines = body.strip("\n").split("\n")
        self.requests.append((len(lines) // 2, len(body.encode())))
        self.settings_during_bulk.append(dict(self.indices.settings))
        items = []
        for action_line, source_line in zip(lines[::2], lines[1::2], strict=True):
            meta = json.loads(action_line)["index"]
            source = json.loads(source_line)
            doc_id = meta["_id"]
            if doc_id in self.throttle_once:
                self.throttle_once.discard(doc_id)
                items.append({"index": {"_id": doc_id, "status": 429, "error": {"type": "es_rejected"}}})
            elif source.get("caption") == "reject me":
                error = {"type": "mapper_parsing_exception", "reason": "failed to parse field [x]"}
                items.append({"index": {"_id": doc_id, "status": 400, "error": error}})
            else:
                result = "updated" if doc_id in self.stored else "created"
                self.stored[doc_id] = source
                items.append({"index": {"_id": doc_id, "status": 201, "result": result}})
        return {"errors": any(i["index"]["status"] >= 300 for i in items), "items": items}


class FakeBackend(Backend):
    def __init__(self, client: FakeBulkClient) -> None:
        super().__init__(ConnectionConfig(), ClusterInfo("opensearch", "2.19.6"))
        self.client = client
        self.helpers = os_helpers


def docs(n: int, tokens: int = 50, seed: int = 0) -> list[Document]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        names = [f"tok{j}" for j in rng.choice(5000, tokens, replace=False)]
        out.append(
            Document(
                image_tokens=SparseVector.from_arrays(names, rng.uniform(0.1, 2, tokens)), path=f"{i}.png"
            )
        )
    return out


def test_chunks_are_capped_by_documents_and_by_bytes() -> None:
    client = FakeBulkClient()
    summary = Indexer(FakeBackend(client), "i", options=IndexerOptions(chunk_size=40)).index_documents(
        docs(100)
    )
    assert [d for d, _ in client.requests] == [40, 40, 20]
    assert summary.indexed == summary.created == 100 and summary.failed == summary.skipped == 0

    client = FakeBulkClient()
    opts = IndexerOptions(chunk_size=1000, max_chunk_bytes=20_000)
    Indexer(FakeBackend(client), "i", options=opts).index_documents(docs(100))
    assert len(client.requests) > 1
    assert all(size <= 20_000 for _, size in client.requests)
    assert sum(d for d, _ in client.requests) == 100


def test_bad_documents_are_written_to_the_failures_file_and_the_rest_indexed(tmp_path: Path) -> None:
    client = FakeBulkClient()
    good = docs(5)
    bad_engine = Document(image_tokens={"a": 1.0}, caption="reject me", path="bad.png")
    empty = Document(image_tokens={"a": 0.0, "b": -1.0, "c": float("nan")}, path="empty.png")
    not_numbers = {"image_tokens": {"a": "heavy"}, "path": "words.png"}
    failures = tmp_path / "f" / "failures.jsonl"
    summary = Indexer(FakeBackend(client), "i", failures_path=failures).index_documents(
        [*good[:2], bad_engine, empty, not_numbers, 42, *good[2:]]
    )
    assert (summary.total, summary.indexed, summary.failed, summary.skipped) == (9, 5, 1, 3)
    assert summary.indexed + summary.failed + summary.skipped == summary.total
    rows = [json.loads(line) for line in failures.read_text().splitlines()]
    assert len(rows) == 4
    engine_row = next(r for r in rows if r["stage"] == "engine")
    assert engine_row["path"] == "bad.png" and engine_row["status"] == 400
    assert "mapper_parsing_exception" in engine_row["reason"]
    reasons = {r.get("path", r.get("position")): r["reason"] for r in rows if r["stage"] == "prepare"}
    assert "positive finite" in reasons["empty.png"]
    assert "numbers" in reasons["words.png"]
    assert "document object" in reasons[5]
    assert str(failures) in summary.line()


def test_unstorable_weights_are_dropped_and_document_pruning_applies() -> None:
    client = FakeBulkClient()
    doc = Document(
        text_tokens={"a": 3.0, "b": 2.0, "c": 1.0, "zero": 0.0, "neg": -2.0, "inf": math.inf, "big": 1e60},
        caption="x",
    )
    summary = Indexer(FakeBackend(client), "i", options=IndexerOptions(top_k=2)).index_documents([doc])
    (source,) = client.stored.values()
    assert source["text_tokens"] == {"a": 3.0, "b": 2.0}
    assert summary.dropped_weights == 4 and summary.pruned_weights == 1
    assert source["modality"] == "text"


def test_feature_names_are_escaped_once_on_the_way_in() -> None:
    client = FakeBulkClient()
    Indexer(FakeBackend(client), "i").index_documents(
        [Document(image_tokens={"u.s.": 1.0, "100%": 2.0}, caption="c")]
    )
    (source,) = client.stored.values()
    assert source["image_tokens"] == {"100%25": 2.0, "u%2Es%2E": 1.0}
    assert source["modality"] == "image+text"


def test_ids_are_deterministic_so_a_rerun_replaces_instead_of_duplicating() -> None:
    client = FakeBulkClient()
    backend = FakeBackend(client)
    first = Indexer(backend, "i").index_documents(docs(30))
    second = Indexer(backend, "i").index_documents(docs(30))
    assert len(client.stored) == 30
    assert (first.created, second.created, second.updated) == (30, 0, 30)


def test_document_id_rules() -> None:
    a = Document(image_tokens={"x": 1.0}, content_hash="abc", caption="one")
    b = Document(image_tokens={"y": 2.0}, content_hash="abc", caption="two")
    same = Document(image_tokens={"z": 3.0}, content_hash="abc", caption="one", path="elsewhere.png")
    assert document_id(a, {}) != document_id(b, {})  # one image, two captions: two documents
    assert document_id(a, {}) == document_id(same, {})  # same bytes + caption: same document
    assert document_id(Document(id="mine"), {}) == "mine"
    t1 = document_id(Document(), {"text_tokens": {"a": 1.0}})
    t2 = document_id(Document(), {"text_tokens": {"a": 2.0}})
    assert t1 != t2 and len(t1) == 32


def test_429_rejections_are_retried_with_backoff() -> None:
    corpus = docs(10)
    first_id = document_id(corpus[0], {})  # path-based ids do not depend on the source
    client = FakeBulkClient(throttle_once={first_id})
    opts = IndexerOptions(initial_backoff=0.01, max_backoff=0.01)
    summary = Indexer(FakeBackend(client), "i", options=opts).index_documents(corpus)
    assert summary.indexed == 10 and summary.failed == 0
    assert len(client.requests) == 2 and client.requests[1][0] == 1


def test_large_loads_relax_refresh_and_replicas_then_restore_them() -> None:
    client = FakeBulkClient()
    opts = IndexerOptions(chunk_size=10, relax_after=5)
    Indexer(FakeBackend(client), "i", options=opts).index_documents(docs(30))
    assert client.settings_during_bulk[0]["refresh_interval"] == "-1"
    assert client.settings_during_bulk[0]["number_of_replicas"] == 0
    assert client.indices.settings == {"refresh_interval": "1s", "number_of_replicas": "1"}
    assert client.indices.refreshed == 1


def test_from_mapping_accepts_pairs_and_keeps_unknown_keys_as_user_fields() -> None:
    doc = Document.from_mapping({"text_tokens": [["a", 1.0]], "caption": "c", "album": "x"})
    assert doc.text_tokens == {"a": 1.0} and doc.user == {"album": "x"}
    with pytest.raises(ValueError, match="token->weight"):
        Document.from_mapping({"image_tokens": "a b c"})


def test_short_weights_are_stored_exactly_like_the_originals() -> None:
    from stair_es.engine.indexer import short_storable_weights
    from stair_es.sparse import truncate_9bit

    rng = np.random.default_rng(0)
    w = np.concatenate([rng.lognormal(-1, 2, 20_000), [1.0, 2.0, 64.0, 1e-6, 1.2e-38, 3.0e38]]).astype(
        np.float32
    )
    short = np.asarray(short_storable_weights(w))
    assert np.array_equal(truncate_9bit(short.astype(np.float32)), truncate_9bit(w))
    assert np.mean([len(repr(float(x))) for x in short]) < 8  # vs ~19 characters for a raw float


def test_a_compact_index_gets_shifted_weights_and_drops_what_it_cannot_store() -> None:
    from stair_es.engine.indexer import IndexSummary
    from stair_es.engine.mappings import ModelMeta, index_body, parse_meta
    from stair_es.sparse import min_storable_weight, truncate_9bit

    meta = parse_meta("i", index_body("opensearch", ModelMeta("m", "v"), tokens_in_source=False)["mappings"])
    indexer = Indexer(FakeBackend(FakeBulkClient()), "i")
    indexer.resolve_weight_shift(meta)
    summary = IndexSummary("i")
    floor = min_storable_weight(meta.weight_shift)
    _, source = indexer.prepare(Document(image_tokens={"dog": 1.3, "flea": floor / 3}, caption="x"), summary)
    assert list(source["image_tokens"]) == ["dog"] and summary.dropped_weights == 1
    stored = np.float32(source["image_tokens"]["dog"])
    assert truncate_9bit(stored) == truncate_9bit(np.float32(1.3 * 2.0**-meta.weight_shift))
    indexer.resolve_weight_shift(None)  # an index without stair-es metadata: plain weights
    _, plain = indexer.prepare(Document(image_tokens={"dog": 1.3}, caption="x"), summary)
    assert plain["image_tokens"] == {"dog": 1.3}


def test_indexing_into_a_missing_index_is_refused_instead_of_auto_created() -> None:
    from stair_es.errors import EngineError

    client = FakeBulkClient()
    with pytest.raises(EngineError, match="does not exist: create it first"):
        Indexer(FakeBackend(client), "missing").index_documents(docs(3))
    assert client.requests == []


def test_prefetch_keeps_order_raises_in_the_consumer_and_stops_when_closed() -> None:
    import threading

    from stair_es.ahead import prefetch

    assert list(prefetch(iter(range(1000)), 7)) == list(range(1000))

    def broken():
        yield 1
        raise RuntimeError("decoder died")

    got = prefetch(broken(), 4)
    assert next(got) == 1
    with pytest.raises(RuntimeError, match="decoder died"):
        next(got)
    endless = prefetch(iter(int, 1), 3)  # never ends on its own
    assert next(endless) == 0
    endless.close()
    assert not any(t.name == "stair-es-bulk-prepare" for t in threading.enumerate())


def test_user_fields_are_serialized_like_the_clients_do_and_bad_ones_are_skipped(tmp_path: Path) -> None:
    import datetime

    client = FakeBulkClient()
    good = Document(
        image_tokens={"a": 1.0}, id="g", user={"n": np.int64(3), "when": datetime.date(2026, 1, 2)}
    )
    bad = Document(image_tokens={"a": 1.0}, id="b", user={"obj": object()})
    failures = tmp_path / "f.jsonl"
    summary = Indexer(FakeBackend(client), "i", failures_path=failures).index_documents([good, bad])
    assert (summary.indexed, summary.skipped, summary.total) == (1, 1, 2)
    assert client.stored["g"]["user"] == {"n": 3, "when": "2026-01-02"}
    assert "not JSON serializable" in json.loads(failures.read_text())["reason"]


def test_a_bad_document_is_rejected_as_data_not_as_a_bug() -> None:
    from stair_es.engine import IndexSummary
    from stair_es.errors import DataError, DocumentRejected

    indexer = Indexer(None, "x")  # type: ignore[arg-type]  # prepare() never touches the backend
    for doc, reason in (({"id": "a", "text_tokens": {}}, "nothing searchable"), ([1], "document object")):
        with pytest.raises(DocumentRejected, match=reason) as caught:
            indexer.prepare(doc, IndexSummary(index="x"))  # type: ignore[arg-type]
        assert isinstance(caught.value, DataError) and isinstance(
            caught.value, ValueError
        )  # callers unchanged
