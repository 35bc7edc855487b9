"""Async variants (``AsyncOpenSearch`` / ``AsyncElasticsearch``) for services that search or index
from an event loop. Same request bodies, same bookkeeping as the sync classes; needs aiohttp
(``pip install "stair-es[async]"``). Queries are encoded in a worker thread, never on the loop.

    backend = await connect_async()                  # or connect_async(client=AsyncOpenSearch(...))
    searcher = await AsyncSearcher.create(backend, "photos", encoder)
    result = await searcher.search(text="a red bicycle", k=10)
    results = await searcher.search_many(["red bicycle", "blue car"], k=5)   # one _msearch
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from stair_es.engine import core
from stair_es.engine.backend import DEFAULT_MAX_CLAUSES, ClusterInfo
from stair_es.engine.bulk import asend
from stair_es.engine.config import ConnectionConfig
from stair_es.engine.connection import assumed_info, cluster_info
from stair_es.engine.indexer import BulkRun, Document, Indexer, IndexSummary, missing_index
from stair_es.engine.mappings import IndexMeta
from stair_es.engine.query import QueryOptions
from stair_es.engine.relax import AsyncLoadSettings
from stair_es.engine.search import QueryEncoder, Searcher, SearchResult
from stair_es.errors import ModelError, StairError, require

logger = logging.getLogger(__name__)


class AsyncBackend:
    """The async subset of :class:`~stair_es.engine.backend.Backend` needed to search and index."""

    def __init__(
        self, config: ConnectionConfig, info: ClusterInfo, client: Any = None, kind: str | None = None
    ) -> None:
        require("aiohttp", "async", "Async engine access")
        self.config = config
        self.info = info
        self._max_clauses = DEFAULT_MAX_CLAUSES
        self._plugins: set[str] = set()
        self._owns_client = client is None  # a client handed in by the caller is theirs to close
        kind = kind or (
            "opensearch" if info.distribution == "opensearch" or config.aws_region else "elasticsearch"
        )
        if kind == "opensearch":
            from opensearchpy import AsyncOpenSearch
            from opensearchpy.helpers import async_streaming_bulk

            from stair_es.engine.opensearch_backend import client_kwargs as os_client_kwargs

            self.client: Any = client or AsyncOpenSearch(**os_client_kwargs(config, use_async=True))
            bulk: Any = async_streaming_bulk
        else:
            from elasticsearch import AsyncElasticsearch
            from elasticsearch.helpers import async_streaming_bulk as es_async_streaming_bulk

            from stair_es.engine.elasticsearch_backend import client_kwargs as es_client_kwargs
            from stair_es.engine.elasticsearch_backend import pin_compat_headers

            self.client = client or AsyncElasticsearch(**es_client_kwargs(config))
            bulk = es_async_streaming_bulk
            if info.detected:
                pin_compat_headers(self.client, info.major)
        self._async_streaming_bulk = bulk

    @classmethod
    async def from_client(
        cls, client: Any, *, distribution: str | None = None, config: ConnectionConfig | None = None
    ) -> AsyncBackend:
        """Wrap your own ``AsyncOpenSearch`` / ``AsyncElasticsearch`` (see :func:`~stair_es.engine.connection.wrap_client`)."""
        from stair_es.engine.clients import check_pair, client_config, client_kind, info_from_async_client

        kind = client_kind(client, want_async=True)
        config = config or client_config(client, distribution or "auto")
        wanted = distribution or config.distribution
        info = check_pair(
            kind, assumed_info(wanted) if wanted != "auto" else await info_from_async_client(client, kind)
        )
        backend = cls(config, info, client=client, kind=kind)
        await backend.load_capabilities()
        return backend

    @property
    def distribution(self) -> str:
        return self.info.distribution

    @property
    def version(self) -> tuple[int, int, int]:
        return self.info.version

    async def _call(self, what: str, coro: Any, *, _user_input: bool = False) -> Any:
        """Await a client call; failures become one line, as in the sync ``Backend._call``."""
        try:
            resp = await coro
        except Exception as exc:  # noqa: BLE001 - translated, chained
            raise core.engine_error(what, exc, self.info.describe(), user_input=_user_input) from exc
        return core.body_of(resp)

    async def load_capabilities(self) -> None:
        """Clause limit and plugins, read once so the query planner can stay synchronous."""
        if core.reads_clause_limit(self.distribution, self.info.major):
            resp = await self._call(
                "reading cluster settings",
                self.client.cluster.get_settings(include_defaults=True, filter_path=core.CLAUSE_LIMIT_FILTER),
            )
            self._max_clauses = core.clause_limit(resp) or DEFAULT_MAX_CLAUSES
        resp = await self._call("listing plugins", self.client.nodes.info(metric="plugins"))
        self._plugins = core.plugin_names(resp)

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
            from stair_es.engine.aliases import not_found

            resp = await self._call("listing indexes", self.client.indices.get_alias(index="*"))
            raise not_found(index, core.index_aliases(resp), self.info.describe())
        resp = await self._call(f"reading mapping of '{index}'", self.client.indices.get_mapping(index=index))
        return core.combined_meta(index, resp)

    async def field_names(self, index: str) -> set[str]:
        resp = await self._call(f"reading mapping of '{index}'", self.client.indices.get_mapping(index=index))
        return core.mapping_fields(resp)

    async def check_model(self, index: str, model_id: str, vocab_hash: str) -> IndexMeta:
        meta = await self.index_meta(index)
        meta.check(index, model_id, vocab_hash)
        return meta

    async def search(self, index: str, body: Mapping[str, Any]) -> dict[str, Any]:
        call = self.client.search(index=index, body=dict(body))
        resp = await self._call(f"searching '{index}'", call, _user_input=True)
        core.check_shards(index, resp)
        return resp

    async def msearch(self, index: str, bodies: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        call = self.client.msearch(body=core.msearch_body(index, bodies))
        resp = await self._call(f"multi-searching '{index}'", call, _user_input=True)
        return list(resp["responses"])

    async def count(self, index: str) -> int:
        return int((await self._call(f"counting '{index}'", self.client.count(index=index)))["count"])

    async def get_settings(self, index: str) -> dict[str, Any]:
        resp = await self._call(
            f"reading settings of '{index}'", self.client.indices.get_settings(index=index)
        )
        return core.index_settings(resp)

    async def put_settings(self, index: str, settings: Mapping[str, Any]) -> None:
        call = self.client.indices.put_settings(index=index, body={"index": dict(settings)})
        await self._call(f"updating settings of '{index}'", call)

    async def mapping_meta(self, index: str) -> dict[str, Any]:
        resp = await self._call(f"reading mapping of '{index}'", self.client.indices.get_mapping(index=index))
        return core.mapping_meta(resp)

    async def put_mapping_meta(self, index: str, meta: Mapping[str, Any]) -> None:
        call = self.client.indices.put_mapping(index=index, body={"_meta": dict(meta)})
        await self._call(f"updating the mapping of '{index}'", call)

    async def bulk_lines(self, lines: list[str]) -> dict[str, Any]:
        if self.distribution == "opensearch":
            return await self._call("bulk request", self.client.bulk(body="".join(lines)))
        return await self._call("bulk request", self.client.bulk(operations=lines))

    async def refresh(self, index: str) -> None:
        await self._call(f"refreshing '{index}'", self.client.indices.refresh(index=index))

    def streaming_bulk(self, actions: Any, **kwargs: Any) -> AsyncIterator[tuple[bool, Any]]:
        return self._async_streaming_bulk(self.client, actions, **kwargs)

    async def close(self) -> None:
        if self._owns_client:
            await self.client.close()


async def connect_async(
    config: ConnectionConfig | Any = None, *, client: Any = None, **overrides: Any
) -> AsyncBackend:
    """Async twin of :func:`~stair_es.engine.connect`; ``client=`` wraps your own async client.

    Detection is one short request, run in a worker thread so the loop keeps going.
    """
    from stair_es.engine.clients import is_client

    if client is None and config is not None and is_client(config):
        client, config = config, None
    if client is not None:
        return await AsyncBackend.from_client(
            client, config=config, distribution=overrides.get("distribution")
        )
    config = config if config is not None else ConnectionConfig.from_env(**overrides)
    if config.aws_region:  # signed requests: identify the engine through the signing client
        from opensearchpy import AsyncOpenSearch

        from stair_es.engine.opensearch_backend import client_kwargs

        own = AsyncOpenSearch(**client_kwargs(config, use_async=True))
        try:
            backend = await AsyncBackend.from_client(own, config=config)
        except BaseException:
            await own.close()
            raise
        backend._owns_client = True
        return backend
    info = await asyncio.to_thread(cluster_info, config)
    backend = AsyncBackend(config, info)
    try:
        await backend.load_capabilities()
    except BaseException:
        await backend.close()
        raise
    return backend


class AsyncSearcher(Searcher):
    """:class:`Searcher` over an :class:`AsyncBackend`; build it with :meth:`create`."""

    def __init__(
        self,
        backend: AsyncBackend,
        index: str,
        meta: IndexMeta,
        encoder: QueryEncoder | None = None,
        options: QueryOptions | None = None,
    ) -> None:
        super().__init__(backend, index, encoder, options=options, meta=meta)  # type: ignore[arg-type]

    @property
    def _aio(self) -> AsyncBackend:
        """``self.backend`` as what it is here (the base class types it as the sync backend)."""
        return self.backend  # type: ignore[return-value]

    def check_filter_fields(self, filter: Any) -> None:
        """Checked when the fields were read (:meth:`create` reads them); else left to the engine."""
        if self.fields is not None:
            super().check_filter_fields(filter)

    @classmethod
    async def create(
        cls,
        backend: AsyncBackend,
        index: str,
        encoder: QueryEncoder | None = None,
        options: QueryOptions | None = None,
    ) -> AsyncSearcher:
        if encoder is not None:
            meta = await backend.check_model(index, encoder.model_id, encoder.vocab_hash)
        else:
            meta = await backend.index_meta(index)
        searcher = cls(backend, index, meta, encoder, options)
        searcher.fields = frozenset(await backend.field_names(index))
        return searcher

    async def search(  # type: ignore[override]
        self,
        text: str | None = None,
        image: Any = None,
        tokens: Any = None,
        *,
        explain: bool = True,
        **kwargs: Any,
    ) -> SearchResult:
        """Like :meth:`Searcher.search`; a text or image is encoded in a worker thread."""
        encoded = None
        if (
            tokens is None
            and kwargs.get("mode", "exact") != "bm25"
            and (text is not None) != (image is not None)
        ):
            encoded = await asyncio.to_thread(self.query_vector, text, image, None)
        plan = self.plan(text, image, tokens, explain=explain, encoded=encoded, **kwargs)
        start = time.perf_counter()
        resp = await self._aio.search(self.index, plan.body)
        return self.result(resp, plan, explain, (time.perf_counter() - start) * 1000)

    async def search_many(  # type: ignore[override]
        self, queries: Sequence[str | Mapping[str, Any]], *, explain: bool = True, **common: Any
    ) -> list[SearchResult]:
        """Like :meth:`Searcher.search_many`: one batch encode (in a worker thread), one ``_msearch``."""
        specs = [{"text": q} if isinstance(q, str) else dict(q) for q in queries]
        vectors = await asyncio.to_thread(self.encode_queries, specs, common.get("mode", "exact"))
        plans = self.plans(specs, vectors, explain, common)
        start = time.perf_counter()
        responses = await self._aio.msearch(self.index, [p.body for p in plans])
        took = (time.perf_counter() - start) * 1000
        return [
            self.result(r, p, explain, took, position=i) for i, (r, p) in enumerate(zip(responses, plans))
        ]


class AsyncIndexer(Indexer):
    """:class:`Indexer` over an :class:`AsyncBackend` (the same bulk loop, awaited)."""

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
        settings = AsyncLoadSettings(backend, self.index)
        await settings.recover()
        run = BulkRun(self)
        relaxed = False

        async def actions() -> AsyncIterator[dict[str, Any]]:
            nonlocal relaxed
            source = docs if isinstance(docs, AsyncIterable) else _aiter(docs)
            async for doc in source:
                action = run.action(doc)
                if action is None:
                    continue
                if not relaxed and run.should_relax():
                    relaxed = True
                    try:
                        await settings.relax()
                    except StairError as exc:  # only an optimisation; a blocked index stops below
                        logger.warning("index '%s': bulk-load settings not applied: %s", self.index, exc)
                yield action

        problems: list[StairError] = []
        opts = self.options
        try:
            async for ok, item in asend(
                backend, self.index, actions(), opts.chunk_size, opts.max_chunk_bytes, self.retry()
            ):
                run.handle(ok, item)
        except StairError as exc:
            problems.append(exc)
        finally:
            if relaxed:
                problems += await _attempt(settings.restore())
            if self.options.refresh_at_end and run.summary.indexed:
                problems += await _attempt(backend.refresh(self.index))
            problems += run.settle(None, refresh=False)
        if problems:
            raise run.stopped(problems)
        return run.summary


async def _attempt(step: Any) -> list[StairError]:
    try:
        await step
    except StairError as exc:
        return [exc]
    return []


async def _aiter(items: Iterable[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item
