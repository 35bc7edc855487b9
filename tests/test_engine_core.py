"""The I/O-free core the sync and async backends share: failures read the same either way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stair_es.engine import core
from stair_es.engine.aio import AsyncBackend
from stair_es.engine.backend import Backend, ClusterInfo
from stair_es.engine.config import ConnectionConfig
from stair_es.errors import EngineError, EngineRejectedInput


class _Meta:
    status = 400


class _ElasticsearchBadRequest(Exception):
    """elasticsearch-py 8+: the status on ``meta``, the engine's answer on ``body``."""

    meta = _Meta()
    body = {"error": {"root_cause": [{"type": "parsing_exception", "reason": "unknown query [nope]"}]}}


class _OpenSearchBadRequest(Exception):
    """opensearch-py: ``status_code`` and ``info``."""

    status_code = 400
    info = {"error": {"root_cause": [{"type": "parsing_exception", "reason": "unknown query [nope]"}]}}


def _shells() -> tuple[Backend, AsyncBackend]:
    info = ClusterInfo("elasticsearch", "9.1.0")
    sync = Backend(ConnectionConfig(urls=("http://x:9200",)), info)
    aio = AsyncBackend.__new__(AsyncBackend)  # no client: only the translation is exercised
    aio.info = info
    return sync, aio


@pytest.mark.parametrize("error", [_ElasticsearchBadRequest, _OpenSearchBadRequest])
def test_sync_and_async_failures_are_the_same_line(error: type[Exception]) -> None:
    sync, aio = _shells()

    def fail(**_: Any) -> None:
        raise error("raw client text")

    async def fail_async() -> None:
        raise error("raw client text")

    with pytest.raises(EngineRejectedInput) as plain:
        sync._call("searching 'photos'", fail, _user_input=True)
    with pytest.raises(EngineRejectedInput) as awaited:
        asyncio.run(aio._call("searching 'photos'", fail_async(), _user_input=True))
    assert str(plain.value) == str(awaited.value)
    assert str(plain.value) == (
        "searching 'photos' failed on Elasticsearch 9.1.0 (HTTP 400): parsing_exception: unknown query [nope]"
    )
    assert (plain.value.status, awaited.value.status) == (400, 400)
    with pytest.raises(EngineError) as internal:  # a request stair-es built itself: not the user's fault
        asyncio.run(aio._call("listing plugins", fail_async()))
    assert not isinstance(internal.value, EngineRejectedInput)


def test_answers_are_read_once_for_both_shells() -> None:
    assert core.clause_limit({"defaults": {"indices.query.bool.max_clause_count": "4096"}}) == 4096
    assert core.clause_limit({"persistent": {"indices": {"query": {"bool": {"max_clause_count": 99}}}}}) == 99
    assert core.clause_limit({}) is None
    assert not core.reads_clause_limit("elasticsearch", 8) and core.reads_clause_limit("opensearch", 3)
    nodes = {"nodes": {"a": {"modules": [{"name": "mapper-extras"}], "plugins": [{"name": "x"}]}, "b": {}}}
    assert core.plugin_names(nodes) == {"mapper-extras", "x"}
    assert core.index_aliases({"p": {"aliases": {"z": {}, "a": {}}}, ".hidden": {}}) == {"p": ["a", "z"]}
    assert core.msearch_body("i", [{"size": 1}, {"size": 2}]) == [
        {"index": "i"},
        {"size": 1},
        {"index": "i"},
        {"size": 2},
    ]
