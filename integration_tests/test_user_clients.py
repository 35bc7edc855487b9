"""stair-es inside an existing stack, on the real node: clients the application made (opensearch-py or
elasticsearch-py, sync and async) index and search; a given distribution sends no ``GET /``; AWS
SigV4 (opensearch-py's own signer) and bearer tokens arrive on the wire, seen by a pass-through proxy
in front of the node (a local node without security ignores them)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from integration_tests.recording_proxy import recording_proxy
from stair_es.engine import (
    AsyncSearcher,
    ConnectionConfig,
    Document,
    Indexer,
    ModelMeta,
    Searcher,
    connect,
    connect_async,
)
from stair_es.sparse import SparseVector

MODEL = ModelMeta("clients-model", "c" * 64)


class WordEncoder:
    """Each word of a text is one token of weight 1 (enough to check ranking end to end)."""

    model_id = MODEL.model_id
    vocab_hash = MODEL.vocab_hash

    def encode_texts(self, texts: list[str]) -> list[SparseVector]:
        return [SparseVector.from_dict(dict.fromkeys(t.split(), 1.0)) for t in texts]

    def encode_images(self, images: list[Any]) -> list[SparseVector]:
        raise NotImplementedError


def _user_client(url: str, distribution: str, use_async: bool = False, **kwargs: Any) -> Any:
    """The client an application would make for this engine."""
    if distribution == "opensearch":
        import opensearchpy

        cls = opensearchpy.AsyncOpenSearch if use_async else opensearchpy.OpenSearch
        return cls(hosts=url.split(","), **kwargs)
    import elasticsearch

    cls = elasticsearch.AsyncElasticsearch if use_async else elasticsearch.Elasticsearch
    return cls(url.split(","), **kwargs)


@pytest.fixture
def index_name(engine_url: str) -> Iterator[str]:
    name = f"stair-test-clients-{uuid.uuid4().hex[:8]}"
    yield name
    with connect(ConnectionConfig(urls=engine_url)) as backend:
        backend.delete_index(name)


def _fill(backend: Any, index: str) -> None:
    backend.create_index(index, MODEL)
    docs = [
        Document(text_tokens={"red": 1.0 + i / 10, f"n{i}": 1.0}, caption=f"doc {i}", id=f"d{i}")
        for i in range(12)
    ]
    assert Indexer(backend, index).index_documents(docs).indexed == 12


def test_sync_user_client_indexes_and_searches(
    engine_url: str, engine_distribution: str, index_name: str
) -> None:
    client = _user_client(engine_url, engine_distribution)
    backend = connect(client=client)
    assert backend.client is client and backend.info.detected
    assert backend.info.distribution == engine_distribution
    _fill(backend, index_name)
    result = Searcher(backend, index_name, WordEncoder()).search(text="red", target="text", k=3)
    assert [h.id for h in result.hits] == ["d11", "d10", "d9"]
    backend.close()
    # still the application's client: not closed by stair-es (health: ES 8/9 from Maven have no GET /)
    health = client.cluster.health()
    assert "status" in getattr(health, "body", health)
    client.close()


def test_async_user_client_searches(engine_url: str, engine_distribution: str, index_name: str) -> None:
    pytest.importorskip("aiohttp")
    with connect(ConnectionConfig(urls=engine_url)) as sync:
        _fill(sync, index_name)

    async def scenario() -> list[str]:
        client = _user_client(engine_url, engine_distribution, use_async=True)
        try:
            backend = await connect_async(client=client)
            assert backend.client is client
            searcher = await AsyncSearcher.create(backend, index_name, WordEncoder())
            result = await searcher.search(text="red", target="text", k=2)
            await backend.close()  # leaves the caller's client open
            await client.cluster.health()  # still open (health: ES 8/9 from Maven have no GET /)
            return [h.id for h in result.hits]
        finally:
            await client.close()

    assert asyncio.run(scenario()) == ["d11", "d10"]


def test_given_distribution_skips_get_root(
    engine_url: str, engine_distribution: str, index_name: str
) -> None:
    """Connecting with a given distribution sends nothing; the version is assumed (the client's)."""
    with recording_proxy(engine_url) as proxy:
        backend = connect(urls=proxy.url, distribution=engine_distribution)
        assert proxy.requests == [] and not backend.info.detected
        if backend.info.major == int(engine_info_number(engine_url).split(".")[0]):
            _fill(backend, index_name)  # same major as the client library: everything works as usual
            Searcher(backend, index_name, WordEncoder()).search(text="red", target="text")
            assert any(p.startswith(f"/{index_name}/_search") for p in proxy.paths())
        backend.close()
    assert "/" not in proxy.paths("GET"), proxy.paths()


def engine_info_number(url: str) -> str:
    with connect(ConnectionConfig(urls=url)) as backend:
        return backend.info.number


def test_sigv4_signs_every_request(
    engine_url: str, engine_distribution: str, index_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """opensearch-py's AWSV4SignerAuth signs detection, indexing and search; the node ignores it."""
    pytest.importorskip("boto3")  # the aws extra; installed by scripts/run.sh test ([all])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    with recording_proxy(engine_url) as proxy:
        backend = connect(ConnectionConfig(urls=proxy.url, aws_region="eu-west-1"))
        assert type(backend).__name__ == "OpenSearchBackend" and backend.info.detected
        _fill(backend, index_name)
        hits = Searcher(backend, index_name, WordEncoder()).search(text="red", target="text", k=1).hits
        backend.close()
    assert hits[0].id == "d11"
    shape = re.compile(
        r"^AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/es/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]*host[a-z0-9;-]*, Signature=[0-9a-f]{64}$"
    )
    assert proxy.requests and proxy.paths("GET")[0] == "/"
    for request in proxy.requests:
        headers = {k.lower(): v for k, v in request.headers.items()}
        assert shape.match(headers.get("authorization", "")), (request.path, headers.get("authorization"))
        assert re.match(r"^\d{8}T\d{6}Z$", headers.get("x-amz-date", "")), request.path


def test_bearer_token_on_every_request(engine_url: str, engine_distribution: str, index_name: str) -> None:
    with recording_proxy(engine_url) as proxy:
        backend = connect(ConnectionConfig(urls=proxy.url, bearer_token="tok-123"))
        _fill(backend, index_name)
        backend.close()
    assert proxy.paths("GET")[0] == "/"  # detection carries it too
    seen = [{k.lower(): v for k, v in r.headers.items()}.get("authorization") for r in proxy.requests]
    assert seen and set(seen) == {"Bearer tok-123"}, seen
