"""The Python API a service needs, on the real node: total hit counts, search_after paging, batch search
(one _msearch), the async searcher encoding off the event loop, threads sharing one Searcher."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stair_es.engine import (
    AsyncSearcher,
    Backend,
    ConnectionConfig,
    Document,
    Indexer,
    ModelMeta,
    Searcher,
    connect,
    connect_async,
)
from stair_es.errors import UsageError
from stair_es.sparse import SparseVector

MODEL = ModelMeta("api-model", "d" * 64)


class WordEncoder:
    """Each word is a token of weight 1; ``delay`` makes encoding slow (to see what blocks)."""

    model_id = MODEL.model_id
    vocab_hash = MODEL.vocab_hash

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[int] = []

    def encode_texts(self, texts: list[str]) -> list[SparseVector]:
        self.calls.append(len(texts))
        time.sleep(self.delay)
        return [SparseVector.from_dict(dict.fromkeys(t.split(), 1.0)) for t in texts]

    def encode_images(self, images: list[Any]) -> list[SparseVector]:
        raise NotImplementedError


@pytest.fixture(scope="module")
def corpus(engine_url: str) -> Iterator[tuple[Backend, str]]:
    """25 documents with 'red' (five groups of equal scores: ties must page correctly) + 5 without."""
    backend = connect(ConnectionConfig(urls=engine_url))
    index = f"stair-test-api-{uuid.uuid4().hex[:8]}"
    backend.create_index(index, MODEL)
    docs = [Document(text_tokens={"red": 1.0 + (i % 5) / 4, f"n{i}": 1.0}, id=f"r{i:02d}") for i in range(25)]
    docs += [Document(text_tokens={"blue": 1.0}, id=f"b{i}") for i in range(5)]
    assert Indexer(backend, index).index_documents(docs).indexed == 30
    yield backend, index
    backend.delete_index(index)
    backend.close()


def test_total_hit_count(corpus: tuple[Backend, str]) -> None:
    backend, index = corpus
    searcher = Searcher(backend, index, WordEncoder())
    result = searcher.search(text="red", target="text", k=3, track_total_hits=True)
    assert (result.total, result.total_relation, len(result.hits)) == (25, "eq", 3)
    capped = searcher.search(text="red", target="text", k=3, track_total_hits=10)
    assert (capped.total, capped.total_relation) == (10, "gte")
    assert searcher.search(text="red", target="text", k=3).total is None  # not counted unless asked


def test_search_after_pages_cover_every_hit_once(corpus: tuple[Backend, str]) -> None:
    backend, index = corpus
    searcher = Searcher(backend, index, WordEncoder())
    seen: list[str] = []
    after: list[Any] | None = []
    pages = 0
    while after is not None:
        page = searcher.search(text="red", target="text", k=7, search_after=after)
        seen += [h.id for h in page.hits]
        after = page.next_search_after if len(page.hits) == 7 else None
        pages += 1
    assert pages == 4 and len(seen) == 25 and len(set(seen)) == 25
    by_offset = searcher.search(text="red", target="text", k=25).hits
    assert [h.score for h in by_offset] == sorted((h.score for h in by_offset), reverse=True)
    assert sorted(seen) == sorted(h.id for h in by_offset)
    with pytest.raises(UsageError, match="two-phase"):
        searcher.search(text="red", target="text", mode="two_phase", search_after=[])
    with pytest.raises(UsageError, match="offset or search_after"):
        searcher.search(text="red", target="text", offset=7, search_after=[])


def test_batch_search_is_one_msearch_and_one_encode(corpus: tuple[Backend, str]) -> None:
    backend, index = corpus
    encoder = WordEncoder()
    searcher = Searcher(backend, index, encoder)
    encoder.calls.clear()
    results = searcher.search_many(
        ["red", {"text": "blue", "k": 2}, {"tokens": {"n3": 1.0}}], target="text", k=4
    )
    assert encoder.calls == [2]  # both texts in one batch
    assert [len(r.hits) for r in results] == [4, 2, 1]
    single = [
        searcher.search(text="red", target="text", k=4),
        searcher.search(text="blue", target="text", k=2),
    ]
    assert [h.id for h in results[0].hits] == [h.id for h in single[0].hits]
    assert [h.id for h in results[1].hits] == [h.id for h in single[1].hits]
    assert results[2].hits[0].id == "r03"


def test_async_search_encodes_off_the_event_loop(engine_url: str, corpus: tuple[Backend, str]) -> None:
    pytest.importorskip("aiohttp")
    _, index = corpus

    async def scenario() -> tuple[int, list[str], list[int]]:
        backend = await connect_async(ConnectionConfig(urls=engine_url))
        try:
            searcher = await AsyncSearcher.create(backend, index, WordEncoder(delay=0.6))
            ticks = 0

            async def ticker() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.05)
                    ticks += 1

            task = asyncio.create_task(ticker())
            result = await searcher.search(text="red", target="text", k=2, track_total_hits=True)
            many = await searcher.search_many(["red", "blue"], target="text", k=1)
            task.cancel()
            return ticks, [h.id for h in result.hits] + [str(result.total)], [len(r.hits) for r in many]
        finally:
            await backend.close()

    ticks, ids, many = asyncio.run(scenario())
    assert ticks >= 10, f"the loop ticked only {ticks} times during 1.2 s of encoding"
    assert ids[-1] == "25" and many == [1, 1]


def test_threads_share_one_searcher_and_one_session(
    corpus: tuple[Backend, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eight threads, one Searcher with the real ONNX encoder: one text session, right answers."""
    from stair_es.demo import shipped_demo_model
    from stair_es.runtime import encoder as encoder_module
    from stair_es.runtime import load_encoder

    backend, _ = corpus
    created: list[str] = []
    real = encoder_module.create_session
    monkeypatch.setattr(
        encoder_module, "create_session", lambda p, *a, **k: created.append(str(p)) or real(p, *a, **k)
    )
    encoder = load_encoder(shipped_demo_model(), provider="cpu")
    index = f"stair-test-threads-{uuid.uuid4().hex[:8]}"
    backend.create_index(index, ModelMeta(encoder.model_id, encoder.vocab_hash))
    try:
        captions = ["two red circles", "one blue square", "three green triangles"]
        docs = [
            Document(text_tokens=v, caption=c, id=c) for c, v in zip(captions, encoder.encode_texts(captions))
        ]
        Indexer(backend, index).index_documents(docs)
        created.clear()
        fresh = load_encoder(shipped_demo_model(), provider="cpu")
        searcher = Searcher(backend, index, fresh)
        answers: dict[int, str] = {}
        gate = threading.Barrier(8)

        def worker(i: int) -> None:
            gate.wait()
            answers[i] = searcher.search(text=captions[i % 3], target="text", k=1).hits[0].id

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == {i: captions[i % 3] for i in range(8)}
        assert len(created) == 1, created
    finally:
        backend.delete_index(index)
