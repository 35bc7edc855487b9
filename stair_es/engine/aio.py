"""Async variants (``AsyncOpenSearch`` / ``AsyncElasticsearch``) for services that search or index
from an event loop. Same request bodies, same bookkeeping as the sync classes; needs aiohttp
(``pip install "opensearch-py[async]"`` or ``"elasticsearch[async]"``).

    backend = await connect_async()
    searcher = await AsyncSearcher.create(backend, "photos", encoder)
    result = await searcher.search(text="a red bicycle", k=10)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from typing import Any

from stair_es.engine.backend import DEFAULT_MAX_CLAUSES, ClusterInfo, _dig, detect
from stair_es.engine.config import ConnectionConfig
from stair_es.engine.indexer import BulkRun, Document, Indexer, IndexSummary, missing_index
from stair_es.engine.mappings import IndexMeta, parse_meta
from stair_es.engine.query import QueryOptions
from stair_es.engine.search import Encoder, Searcher, SearchResult
from stair_es.errors import EngineError, ModelError, require


class AsyncBackend:
    """The async subset of :class:`~stair_es.engine.backend.Backend` needed to search and index."""

    def __init__(self, config: ConnectionConfig, info: ClusterInfo) -> None:
        require("aiohttp", "async", "Async engine access")
        self.config = config
        self.info = info
        self._max_clauses = DEFAULT_MAX_CLAUSES
        self._plugins: set[str] = set()
        if info.distribution == "opensearch":
            from opensearchpy import AsyncOpenSearch
            from opensearchpy.helpers import async_streaming_bulk

            from stair_es.engine.opensearch_backend import client_kwargs

            self.client: Any = AsyncOpenSearch(**client_kwargs(config))
        else:
            from elasticsearch import AsyncElasticsearch
            from elasticsearch.helpers import async_streaming_bulk  # type: ignore[no-redef]

            from stair_es.engine.elasticsearch_backend import client_kwargs, pin_compat_headers

            self.client = AsyncElasticsearch(**client_kwargs(config))
            pin_compat_headers(self.client, info.major)
        self._async_streaming_bulk = async_streaming_bulk

    @property
    def distribution(self) -> str:
        return self.info.distribution

    @property
    def version(self) -> tuple[int, int, int]:
        return self.info.version

    async def _call(self, what: str, coro: Any) -> Any:
        try:
            resp = await coro
        except Exception as exc:  # noqa: BLE001 - translated, chained
            status = getattr(getattr(exc, "meta", None), "status", None) or getattr(exc, "status_code", None)
            where = f" (HTTP {status})" if isinstance(status, int) else ""
            first = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            raise EngineError(f"{what} failed on {self.info.describe()}{where}: {first}") from exc
        return getattr(resp, "body", resp)

    async def load_capabilities(self) -> None:
        """Clause limit and plugins, read once so the query planner can stay synchronous."""
        if self.distribution == "opensearch" or self.info.major < 8:
            resp = await self._call(
                "reading cluster settings",
                self.client.cluster.get_settings(include_defaults=True, filter_path="**.max_clause_count"),
            )
            for scope in ("transient", "persistent", "defaults"):
                value = _dig(resp.get(scope) or {}, "indices.query.bool.max_clause_count")
                if value is not None:
                    self._max_clauses = int(value)
                    break
        resp = await self._call("listing plugins", self.client.nodes.info(metric="plugins"))
        for node in (resp.get("nodes") or {}).values():
            for kind in ("modules", "plugins"):
                self._plugins.update(str(p.get("name", "")) for p in node.get(kind) or [])

    def max_clause_count(self) -> int:
        return self._max_clauses

    @property
    def has_neural_sparse(self) -> bool:
        return (
            self.distribution == "opensearch"
            and self.version >= (2, 14, 0)
            and any("neural-search" in p for p in self._plugins)
        )

    async def index_exists(self, index: str) -> bool:
        return bool(await self._call(f"checking index '{index}'", self.client.indices.exists(index=index)))

    async def index_meta(self, index: str) -> IndexMeta:
        if not await self.index_exists(index):
            raise EngineError(f"index '{index}' does not exist on {self.info.describe()}")
        resp = await self._call(f"reading mapping of '{index}'", self.client.indices.get_mapping(index=index))
        return parse_meta(index, next(iter(resp.values())).get("mappings") or {})

    async def check_model(self, index: str, model_id: str, vocab_hash: str) -> IndexMeta:
        meta = await self.index_meta(index)
        meta.check(index, model_id, vocab_hash)
        return meta

    async def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self._call(f"searching '{index}'", self.client.search(index=index, body=dict(body)))

    async def count(self, index: str) -> int:
        return int((await self._call(f"counting '{index}'", self.client.count(index=index)))["count"])

    async def get_settings(self, index: str) -> dict[str, Any]:
        resp = await self._call(
            f"reading settings of '{index}'", self.client.indices.get_settings(index=index)
        )
        return next(iter(resp.values()))["settings"]["index"]

    async def put_settings(self, index: str, settings: Mapping[str, Any]) -> None:
        call = self.client.indices.put_settings(index=index, body={"index": dict(settings)})
        await self._call(f"updating settings of '{index}'", call)

    async def refresh(self, index: str) -> None:
        await self._call(f"refreshing '{index}'", self.client.indices.refresh(index=index))

    def streaming_bulk(self, actions: Any, **kwargs: Any) -> AsyncIterator[tuple[bool, Any]]:
        return self._async_streaming_bulk(self.client, actions, **kwargs)

    async def close(self) -> None:
        await self.client.close()


async def connect_async(config: ConnectionConfig | None = None, **overrides: Any) -> AsyncBackend:
    """Async twin of :func:`~stair_es.engine.connect` (detection itself is one short sync request)."""
    config = config if config is not None else ConnectionConfig.from_env(**overrides)
    info = detect(config)
    if config.distribution != "auto":
        info = ClusterInfo(config.distribution, info.number, info.cluster_name, info.lucene_version)
    backend = AsyncBackend(config, info)
    await backend.load_capabilities()
    return backend


class AsyncSearcher(Searcher):
    """:class:`Searcher` over an :class:`AsyncBackend`; build it with :meth:`create`."""

    def __init__(
        self,
        backend: AsyncBackend,
        index: str,
        meta: IndexMeta,
        encoder: Encoder | None = None,
        options: QueryOptions | None = None,
    ) -> None:
        self.backend = backend  # type: ignore[assignment]
        self.index = index
        self.encoder = encoder
        self.options = options or QueryOptions()
        self.meta = meta

    @classmethod
    async def create(
        cls,
        backend: AsyncBackend,
        index: str,
        encoder: Encoder | None = None,
        options: QueryOptions | None = None,
    ) -> AsyncSearcher:
        if encoder is not None:
            meta = await backend.check_model(index, encoder.model_id, encoder.vocab_hash)
        else:
            meta = await backend.index_meta(index)
        return cls(backend, index, meta, encoder, options)

    async def search(self, *args: Any, explain: bool = True, **kwargs: Any) -> SearchResult:  # type: ignore[override]
        plan = self.plan(*args, explain=explain, **kwargs)
        start = time.perf_counter()
        resp = await self.backend.search(self.index, plan.body)  # type: ignore[misc]
        took = (time.perf_counter() - start) * 1000
        hits = [self._hit(raw, plan, explain) for raw in resp["hits"]["hits"]]
        return SearchResult(hits=hits, plan=plan, took_ms=took, query_tokens=plan.used)


class AsyncIndexer(Indexer):
    """:class:`Indexer` over an :class:`AsyncBackend` (``async_streaming_bulk``)."""

    async def index_documents(  # type: ignore[override]
        self, docs: Iterable[Document | Mapping[str, Any]] | AsyncIterable[Document | Mapping[str, Any]]
    ) -> IndexSummary:
        backend: AsyncBackend = self.backend  # type: ignore[assignment]
        if not await backend.index_exists(self.index):
            raise missing_index(self.index)
        try:
            meta: IndexMeta | None = await backend.index_meta(self.index)
        except ModelError:  # not created by stair-es: plain weights
            meta = None
        self.resolve_weight_shift(meta)
        run = BulkRun(self)
        relaxed: dict[str, Any] | None = None

        async def actions() -> AsyncIterator[dict[str, Any]]:
            nonlocal relaxed
            source = docs if isinstance(docs, AsyncIterable) else _aiter(docs)
            async for doc in source:
                action = run.action(doc)
                if action is None:
                    continue
                if relaxed is None and run.should_relax():
                    current = await backend.get_settings(self.index)
                    relaxed = {k: current.get(k) for k in ("refresh_interval", "number_of_replicas")}
                    await backend.put_settings(
                        self.index, {"refresh_interval": "-1", "number_of_replicas": 0}
                    )
                yield action

        try:
            async for ok, item in backend.streaming_bulk(actions(), **self.bulk_kwargs()):
                run.handle(ok, item)
        finally:
            if relaxed is not None:
                await backend.put_settings(self.index, relaxed)
            run.close()
            if self.options.refresh_at_end and run.summary.indexed:
                await backend.refresh(self.index)
            run.finish()
        return run.summary


async def _aiter(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
