"""Async backend, indexer and searcher against the real node (needs aiohttp)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from stair_es.engine import ConnectionConfig, Document, ModelMeta, connect
from stair_es.errors import ModelError

aio = pytest.importorskip("aiohttp", reason='async needs aiohttp: pip install "opensearch-py[async]"')

MODEL = ModelMeta("async-model", "a" * 64)


class Enc:
    model_id = MODEL.model_id
    vocab_hash = MODEL.vocab_hash

    def encode_texts(self, texts):  # noqa: ANN001, ANN201 - minimal encoder
        from stair_es.sparse import SparseVector

        return [SparseVector.from_dict({w: 1.0 for w in t.split()}) for t in texts]

    def encode_images(self, images):  # noqa: ANN001, ANN201
        raise NotImplementedError


def test_async_index_and_search_match_the_sync_path(engine_url: str, tmp_path: Path) -> None:
    from stair_es.engine.aio import AsyncIndexer, AsyncSearcher, connect_async

    index = f"stair-test-async-{uuid.uuid4().hex[:8]}"
    sync = connect(ConnectionConfig(urls=engine_url))
    sync.create_index(index, MODEL)
    docs = [Document(text_tokens={"dog": 1.0 + i / 10, f"w{i}": 1.0}, id=f"a{i}") for i in range(30)]
    docs.append(Document(text_tokens={"dog": -1.0}, id="bad"))

    async def scenario() -> tuple:
        backend = await connect_async(ConnectionConfig(urls=engine_url))
        try:
            summary = await AsyncIndexer(backend, index, failures_path=tmp_path / "f.jsonl").index_documents(
                docs
            )
            searcher = await AsyncSearcher.create(backend, index, Enc())
            result = await searcher.search(text="dog", target="text", k=3)
            with pytest.raises(ModelError):
                await backend.check_model(index, "other", "b" * 64)
            return summary, result, await backend.count(index)
        finally:
            await backend.close()

    try:
        summary, result, count = asyncio.run(scenario())
        assert (summary.indexed, summary.skipped, count) == (30, 1, 30)
        assert json.loads((tmp_path / "f.jsonl").read_text())["id"] == "bad"
        assert [h.id for h in result.hits] == ["a29", "a28", "a27"]
        assert result.hits[0].score == pytest.approx(result.hits[0].explained_score, rel=1e-5)
    finally:
        sync.delete_index(index)
        sync.close()
